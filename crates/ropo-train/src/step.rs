//! One optimiser step of each stage: SFT (NLL of response tokens) and preference training with
//! any `ropo-core` loss, with gradient accumulation and NaN/inf detection.

use burn::{
    optim::{GradientsAccumulator, GradientsParams},
    tensor::{backend::AutodiffBackend, ElementConversion, Tensor, TensorData},
};
use ropo_core::{LossConfig, PairLogps, PreferenceMetrics};
use ropo_data::TokenizedPair;
use ropo_models::{score, CausalLm, ScoreRow};

use crate::{
    optim::{StepReport, Trainer},
    reference::{pair_rows, ReferenceLogps},
    TrainError,
};

/// The metrics of one preference step, TRL's names plus the optimiser's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreferenceStep {
    /// Loss and reward metrics, averaged over the whole (accumulated) batch.
    pub metrics: PreferenceMetrics,
    /// Learning rate and gradient norm.
    pub optim: StepReport,
    /// Tokens (prompt plus response, chosen and rejected) in the batch.
    pub tokens: usize,
}

/// One preference step on `pairs` (one batch, split into `micro_batches` forwards whose
/// gradients are accumulated; losses are scaled so any split gives the same update).
pub fn preference_step<B: AutodiffBackend>(
    model: CausalLm<B>,
    trainer: &mut Trainer<CausalLm<B>, B>,
    loss: &LossConfig,
    pairs: &[&TokenizedPair],
    reference: &[ReferenceLogps],
    micro_batches: usize,
    device: &B::Device,
) -> Result<(CausalLm<B>, PreferenceStep), TrainError> {
    let total = pairs.len() as f64;
    let mut accumulator = GradientsAccumulator::<CausalLm<B>>::new();
    let mut sums = [0.0; 7];
    let micro = pairs.len().div_ceil(micro_batches.max(1)).max(1);
    for (chunk, refs) in pairs.chunks(micro).zip(reference.chunks(micro)) {
        let logps = pair_logps(&model, chunk, refs, device)?;
        let output = loss.forward(&logps);
        let weight = chunk.len() as f64 / total;
        let metrics = PreferenceMetrics::of_batch(&output, &logps);
        for (sum, (_, value)) in sums.iter_mut().zip(metrics.named()) {
            *sum += value * weight;
        }
        let scaled: Tensor<B, 1> = output.losses.sum().mul_scalar(1.0 / total);
        let grads = GradientsParams::from_grads(scaled.backward(), &model);
        accumulator.accumulate(&model, grads);
    }
    let metrics = PreferenceMetrics {
        loss: sums[0],
        rewards_chosen: sums[1],
        rewards_rejected: sums[2],
        rewards_accuracies: sums[3],
        rewards_margins: sums[4],
        logps_chosen: sums[5],
        logps_rejected: sums[6],
    };
    check_finite(trainer.steps_done(), "loss", metrics.loss)?;
    let (model, optim) = trainer.step(model, accumulator.grads());
    check_finite(trainer.steps_done() - 1, "grad_norm", optim.grad_norm)?;
    let tokens = pairs
        .iter()
        .map(|p| 2 * p.prompt.len() + p.chosen.len() + p.rejected.len())
        .sum();
    Ok((
        model,
        PreferenceStep {
            metrics,
            optim,
            tokens,
        },
    ))
}

/// Policy log-probs of a batch (chosen and rejected in one forward) beside the cached
/// reference ones, as `ropo-core` takes them.
pub fn pair_logps<B: burn::tensor::backend::Backend>(
    model: &CausalLm<B>,
    pairs: &[&TokenizedPair],
    reference: &[ReferenceLogps],
    device: &B::Device,
) -> Result<PairLogps<B>, TrainError> {
    let n = pairs.len();
    let scores = score(model, &pair_rows(pairs.iter().copied()), device)?;
    let column = |values: Vec<f64>| Tensor::from_data(TensorData::from(values.as_slice()), device);
    Ok(PairLogps {
        policy_chosen: scores.sum.clone().narrow(0, 0, n),
        policy_rejected: scores.sum.narrow(0, n, n),
        reference_chosen: column(reference.iter().map(|r| r.chosen).collect()),
        reference_rejected: column(reference.iter().map(|r| r.rejected).collect()),
        chosen_tokens: scores.count.clone().narrow(0, 0, n),
        rejected_tokens: scores.count.narrow(0, n, n),
    })
}

/// One SFT step: mean NLL per response token over the batch. Returns the loss.
pub fn sft_step<B: AutodiffBackend>(
    model: CausalLm<B>,
    trainer: &mut Trainer<CausalLm<B>, B>,
    examples: &[(&[u32], &[u32])],
    device: &B::Device,
) -> Result<(CausalLm<B>, f64, StepReport), TrainError> {
    let rows: Vec<ScoreRow<'_>> = examples
        .iter()
        .map(|(prompt, response)| ScoreRow { prompt, response })
        .collect();
    let scores = score(&model, &rows, device)?;
    let loss = scores.sum.sum().neg() / scores.count.sum().clamp_min(1.0);
    let value = loss.clone().into_scalar().elem::<f64>();
    check_finite(trainer.steps_done(), "loss", value)?;
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let (model, report) = trainer.step(model, grads);
    check_finite(trainer.steps_done() - 1, "grad_norm", report.grad_norm)?;
    Ok((model, value, report))
}

fn check_finite(step: usize, what: &'static str, value: f64) -> Result<(), TrainError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(TrainError::NonFinite {
            step,
            what,
            value,
            last_good: "the model before this step is unchanged".into(),
        })
    }
}
