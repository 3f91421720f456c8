//! One optimiser step of each stage: SFT (NLL of response tokens) and preference training with
//! any `ropo-core` loss, with gradient accumulation and NaN/inf detection.

use burn::{
    optim::{GradientsAccumulator, GradientsParams},
    tensor::{backend::Backend, ElementConversion, Tensor, TensorData},
};
use ropo_core::{LossConfig, PairLogps, PreferenceMetrics};
use ropo_data::TokenizedPair;
use ropo_models::{
    attention::{AttentionBackend, TrainingBackend},
    layer_stages::{run_stages, LayerStages},
    score_pairs, CausalLm, PairRow, PairStages, ResponseLogps, ScoreRow, ScoreStages,
};

use crate::{
    layer_checkpointing::checkpointed_gradients,
    optim::{StepReport, Trainer},
    records::StepRecord,
    reference::ReferenceLogps,
    scoring::pair_row,
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

impl PreferenceStep {
    /// The record of this step as optimiser step `step` (1-based), which took `seconds`.
    pub fn record(&self, step: usize, seconds: f64) -> StepRecord {
        StepRecord {
            step,
            loss: self.metrics.loss,
            accuracy: self.metrics.rewards_accuracies,
            margin: self.metrics.rewards_margins,
            rewards_chosen: self.metrics.rewards_chosen,
            rewards_rejected: self.metrics.rewards_rejected,
            logps_chosen: self.metrics.logps_chosen,
            logps_rejected: self.metrics.logps_rejected,
            lr: self.optim.lr,
            grad_norm: self.optim.grad_norm,
            tokens_per_s: self.tokens as f64 / seconds.max(1e-9),
            reliability: None,
        }
    }
}

/// A batch's metrics as the weighted sum of its micro-batches, field by field.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct WeightedMetrics(pub(crate) PreferenceMetrics);

impl WeightedMetrics {
    /// Adds a micro-batch's `metrics`, weighted by its share of the batch.
    pub(crate) fn add(&mut self, metrics: &PreferenceMetrics, weight: f64) {
        let sum = &mut self.0;
        sum.loss += metrics.loss * weight;
        sum.rewards_chosen += metrics.rewards_chosen * weight;
        sum.rewards_rejected += metrics.rewards_rejected * weight;
        sum.rewards_accuracies += metrics.rewards_accuracies * weight;
        sum.rewards_margins += metrics.rewards_margins * weight;
        sum.logps_chosen += metrics.logps_chosen * weight;
        sum.logps_rejected += metrics.logps_rejected * weight;
        if let Some(posterior) = metrics.label_posterior {
            sum.label_posterior = Some(sum.label_posterior.unwrap_or(0.0) + posterior * weight);
        }
    }

    /// The sums as numbers to add up over nodes, in [`Self::from_values`]'s order (RE-PO's
    /// posterior is not among them: RE-PO trains on one rank).
    pub(crate) fn to_values(self) -> Vec<f32> {
        let m = self.0;
        [
            m.loss,
            m.rewards_chosen,
            m.rewards_rejected,
            m.rewards_accuracies,
            m.rewards_margins,
            m.logps_chosen,
            m.logps_rejected,
        ]
        .map(|value| value as f32)
        .to_vec()
    }

    /// The sums [`Self::to_values`] gave, after adding up.
    pub(crate) fn from_values(values: &[f32]) -> Self {
        let value = |i: usize| f64::from(values[i]);
        Self(PreferenceMetrics {
            loss: value(0),
            rewards_chosen: value(1),
            rewards_rejected: value(2),
            rewards_accuracies: value(3),
            rewards_margins: value(4),
            logps_chosen: value(5),
            logps_rejected: value(6),
            label_posterior: None,
        })
    }
}

/// One preference step on `pairs` (one batch, split into `micro_batches` forwards whose
/// gradients are accumulated; losses are scaled so any split gives the same update).
pub fn preference_step<B: TrainingBackend>(
    model: CausalLm<B>,
    trainer: &mut Trainer<CausalLm<B>, B>,
    loss: &LossConfig,
    pairs: &[&TokenizedPair],
    reference: &[ReferenceLogps],
    micro_batches: usize,
    device: &B::Device,
) -> Result<(CausalLm<B>, PreferenceStep), TrainError> {
    let share = Share {
        pairs,
        reference,
        batch: pairs.len(),
        micro_batches,
        layer_checkpointing: trainer.layer_checkpointing(),
    };
    let (grads, metrics) = share.gradients(&model, loss, device)?;
    trainer.check_last_update()?;
    check_finite(trainer.steps_done() + 1, "loss", metrics.0.loss)?;
    apply(model, trainer, grads, metrics, pairs)
}

/// One rank's part of a batch: its pairs and their reference log-probs, the size of the whole
/// batch (every loss is divided by it, so the parts' gradients sum to the batch's), the
/// forwards it is split into, and whether they recompute each layer's activations in the
/// backward ([`crate::layer_checkpointing`]).
pub(crate) struct Share<'a> {
    pub(crate) pairs: &'a [&'a TokenizedPair],
    pub(crate) reference: &'a [ReferenceLogps],
    pub(crate) batch: usize,
    pub(crate) micro_batches: usize,
    pub(crate) layer_checkpointing: bool,
}

impl Share<'_> {
    /// The gradient of this share's summed losses over the batch size, accumulated over its
    /// micro-batches, and its metrics weighted by its part of the batch.
    pub(crate) fn gradients<B: TrainingBackend>(
        &self,
        model: &CausalLm<B>,
        loss: &LossConfig,
        device: &B::Device,
    ) -> Result<(GradientsParams, WeightedMetrics), TrainError> {
        let total = self.batch as f64;
        let mut accumulator = GradientsAccumulator::<CausalLm<B>>::new();
        let mut metrics = WeightedMetrics::default();
        let micro = self.pairs.len().div_ceil(self.micro_batches.max(1)).max(1);
        for (chunk, refs) in self.pairs.chunks(micro).zip(self.reference.chunks(micro)) {
            let stages = PairStages::new(model, &pair_rows(chunk), device)?;
            let loss_of = |(chosen, rejected)| {
                let logps = with_reference(chosen, rejected, refs, device);
                let output = loss.forward(&logps);
                let chunk_metrics = PreferenceMetrics::of_batch(&output, &logps);
                (output.losses.sum().mul_scalar(1.0 / total), chunk_metrics)
            };
            let (grads, chunk_metrics) =
                gradients(model, &stages, self.layer_checkpointing, loss_of);
            metrics.add(&chunk_metrics, chunk.len() as f64 / total);
            accumulator.accumulate(model, grads);
        }
        Ok((accumulator.grads(), metrics))
    }
}

/// Applies a whole batch's gradients and reports the step (its `metrics`, the optimiser's
/// numbers and the batch's tokens).
pub(crate) fn apply<B: TrainingBackend>(
    model: CausalLm<B>,
    trainer: &mut Trainer<CausalLm<B>, B>,
    grads: GradientsParams,
    metrics: WeightedMetrics,
    pairs: &[&TokenizedPair],
) -> Result<(CausalLm<B>, PreferenceStep), TrainError> {
    let (model, optim) = trainer.step(model, grads);
    check_finite(trainer.steps_done(), "grad_norm", optim.grad_norm)?;
    let tokens = pairs
        .iter()
        .map(|p| 2 * p.prompt.len() + p.chosen.len() + p.rejected.len())
        .sum();
    Ok((
        model,
        PreferenceStep {
            metrics: metrics.0,
            optim,
            tokens,
        },
    ))
}

/// The gradients of `loss` of the `stages`' output with respect to `model`'s parameters, and
/// what `loss` gives beside its value: one backward over the whole forward, or a layer at a
/// time recomputing each layer's activations when `layer_checkpointing`.
fn gradients<B: TrainingBackend, S: LayerStages<B>, M>(
    model: &CausalLm<B>,
    stages: &S,
    layer_checkpointing: bool,
    loss: impl FnOnce(S::Output) -> (Tensor<B, 1>, M),
) -> (GradientsParams, M) {
    if layer_checkpointing {
        return checkpointed_gradients(model, stages, loss);
    }
    let (value, metrics) = loss(run_stages(model, stages));
    (
        GradientsParams::from_grads(value.backward(), model),
        metrics,
    )
}

/// The rows of `pairs` as the models crate scores them.
fn pair_rows<'a>(pairs: &[&'a TokenizedPair]) -> Vec<PairRow<'a>> {
    pairs.iter().map(|p| pair_row(p)).collect()
}

/// Policy log-probs of a batch (chosen and rejected in one forward) beside the cached
/// reference ones, as `ropo-core` takes them.
pub fn pair_logps<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[&TokenizedPair],
    reference: &[ReferenceLogps],
    device: &B::Device,
) -> Result<PairLogps<B>, TrainError> {
    let (chosen, rejected) = score_pairs(model, &pair_rows(pairs), device)?;
    Ok(with_reference(chosen, rejected, reference, device))
}

/// The policy's log-probs of the chosen and rejected responses beside the cached reference
/// ones, as `ropo-core` takes them.
fn with_reference<B: Backend>(
    chosen: ResponseLogps<B>,
    rejected: ResponseLogps<B>,
    reference: &[ReferenceLogps],
    device: &B::Device,
) -> PairLogps<B> {
    let column = |values: Vec<f64>| Tensor::from_data(TensorData::from(values.as_slice()), device);
    PairLogps {
        policy_chosen: chosen.sum,
        policy_rejected: rejected.sum,
        reference_chosen: column(reference.iter().map(|r| r.chosen).collect()),
        reference_rejected: column(reference.iter().map(|r| r.rejected).collect()),
        chosen_tokens: chosen.count,
        rejected_tokens: rejected.count,
    }
}

/// One SFT step: mean NLL per response token over the batch. Returns the loss.
pub fn sft_step<B: TrainingBackend>(
    model: CausalLm<B>,
    trainer: &mut Trainer<CausalLm<B>, B>,
    examples: &[(&[u32], &[u32])],
    device: &B::Device,
) -> Result<(CausalLm<B>, f64, StepReport), TrainError> {
    let rows: Vec<ScoreRow<'_>> = examples
        .iter()
        .map(|(prompt, response)| ScoreRow { prompt, response })
        .collect();
    let stages = ScoreStages::new(&model, &rows, device)?;
    let mean_nll = |scores: ResponseLogps<B>| {
        let loss = scores.sum.sum().neg() / scores.count.sum().clamp_min(1.0);
        let value = loss.clone().into_scalar().elem::<f64>();
        (loss, value)
    };
    let (grads, value) = gradients(&model, &stages, trainer.layer_checkpointing(), mean_nll);
    trainer.check_last_update()?;
    check_finite(trainer.steps_done() + 1, "loss", value)?;
    let (model, report) = trainer.step(model, grads);
    check_finite(trainer.steps_done(), "grad_norm", report.grad_norm)?;
    Ok((model, value, report))
}

/// Refuses a trained `model` (after `step` steps) whose log-probs of `pair` are not finite:
/// an update can leave every weight finite yet so large (a learning rate far too high) that
/// the forward overflows, and such a model must not be exported. One forward of one pair.
pub fn check_trained<B: AttentionBackend>(
    model: &CausalLm<B>,
    pair: &TokenizedPair,
    step: usize,
    device: &B::Device,
) -> Result<(), TrainError> {
    let (chosen, rejected) = score_pairs(model, &[pair_row(pair)], device)?;
    for (response, logps) in [("chosen", chosen.sum), ("rejected", rejected.sum)] {
        let value = logps.into_data().iter::<f64>().next().unwrap_or(f64::NAN);
        if !value.is_finite() {
            return Err(TrainError::Diverged {
                step,
                what: format!(
                    "the trained model's log-prob of a training pair's {response} response is \
                     {value}"
                ),
            });
        }
    }
    Ok(())
}

pub(crate) fn check_finite(step: usize, what: &'static str, value: f64) -> Result<(), TrainError> {
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

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::backend::Backend;
    use ropo_core::Loss;
    use ropo_data::gold::GoldTask;
    use ropo_models::token_logps;

    use super::*;
    use crate::{
        config::GoldExperiment,
        reference::reference_logps,
        schedule::{Decay, LrSchedule},
    };

    type B = Autodiff<Flex>;

    fn setup() -> (CausalLm<B>, Vec<TokenizedPair>, Vec<ReferenceLogps>) {
        let experiment = GoldExperiment::default();
        let device = Default::default();
        B::seed(&device, 3);
        let model = experiment.model_config().init::<B>(&device);
        let pairs = GoldTask::default().pairs(16, 1);
        let refs = reference_logps(&model, &pairs, 16, 1, &device, &mut |_| {}).unwrap();
        (model, pairs, refs)
    }

    fn trainer() -> Trainer<CausalLm<B>, B> {
        let schedule = LrSchedule {
            peak: 1e-2,
            warmup: 0,
            total: 10,
            decay: Decay::Constant,
        };
        Trainer::new(schedule, 0.0, Some(1.0))
    }

    #[test]
    fn accumulating_micro_batches_gives_the_same_update_as_one_batch() {
        let (model, pairs, refs) = setup();
        let device = Default::default();
        let batch: Vec<&TokenizedPair> = pairs.iter().collect();
        let loss = LossConfig::new(Loss::Ropo { alpha: 14.0 }, 0.1).unwrap();
        let probe = [0, 3, 4, 5, 6, 2, 4, 5];
        let mut logps = Vec::new();
        let mut norms = Vec::new();
        for micro in [1, 4] {
            let (updated, step) = preference_step(
                model.clone(),
                &mut trainer(),
                &loss,
                &batch,
                &refs,
                micro,
                &device,
            )
            .unwrap();
            logps.push(token_logps(&updated, &probe, &device).unwrap());
            norms.push(step.optim.grad_norm);
        }
        assert!((norms[0] - norms[1]).abs() < 1e-5 * norms[0], "{norms:?}");
        for (a, b) in logps[0].iter().zip(&logps[1]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_ne!(logps[0], token_logps(&model, &probe, &device).unwrap());
    }

    #[test]
    fn activation_checkpointing_gives_the_same_update_as_keeping_activations() {
        let (model, pairs, refs) = setup();
        let device = Default::default();
        let batch: Vec<&TokenizedPair> = pairs.iter().collect();
        let loss = LossConfig::new(Loss::Ropo { alpha: 14.0 }, 0.1).unwrap();
        let probe = [0, 3, 4, 5, 6, 2, 4, 5];
        let before = token_logps(&model, &probe, &device).unwrap();
        let (kept, kept_step) = preference_step(
            model.clone(),
            &mut trainer(),
            &loss,
            &batch,
            &refs,
            2,
            &device,
        )
        .unwrap();
        let mut checkpointed = trainer().with_layer_checkpointing(true);
        let (recomputed, recomputed_step) =
            preference_step(model, &mut checkpointed, &loss, &batch, &refs, 2, &device).unwrap();
        let (a, b) = (kept_step.optim.grad_norm, recomputed_step.optim.grad_norm);
        assert!((a - b).abs() <= 1e-5 * a, "gradient norm {a} vs {b}");
        assert_eq!(kept_step.metrics, recomputed_step.metrics);
        let after = token_logps(&kept, &probe, &device).unwrap();
        assert_ne!(after, before);
        for (x, y) in after
            .iter()
            .zip(token_logps(&recomputed, &probe, &device).unwrap())
        {
            assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
        }
    }

    #[test]
    fn an_update_that_leaves_weights_not_finite_stops_the_next_step_naming_it() {
        let (model, pairs, refs) = setup();
        let device = Default::default();
        let batch: Vec<&TokenizedPair> = pairs.iter().collect();
        let loss = LossConfig::new(Loss::Sigmoid, 0.1).unwrap();
        // A learning rate beyond f32's range: the first update makes the weights infinite.
        let schedule = LrSchedule {
            peak: 1e300,
            warmup: 0,
            total: 10,
            decay: Decay::Constant,
        };
        let mut trainer = Trainer::new(schedule, 0.0, Some(1.0));
        let (model, _) =
            preference_step(model, &mut trainer, &loss, &batch, &refs, 1, &device).unwrap();
        let error = preference_step(model, &mut trainer, &loss, &batch, &refs, 1, &device)
            .expect_err("the weights step 1 left must stop step 2");
        assert!(
            matches!(error, TrainError::Diverged { step: 1, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("not finite"), "{error}");
        assert_eq!(trainer.steps_done(), 1);
    }

    #[test]
    fn a_non_finite_loss_stops_the_step_and_names_it() {
        let (model, pairs, mut refs) = setup();
        refs[2].chosen = f64::NAN;
        let batch: Vec<&TokenizedPair> = pairs.iter().collect();
        let loss = LossConfig::new(Loss::Sigmoid, 0.1).unwrap();
        let mut trainer = trainer();
        let error = preference_step(
            model,
            &mut trainer,
            &loss,
            &batch,
            &refs,
            1,
            &Default::default(),
        )
        .expect_err("a NaN reference must stop the step");
        assert!(
            matches!(
                error,
                TrainError::NonFinite {
                    step: 1,
                    what: "loss",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(trainer.steps_done(), 0);
    }

    #[test]
    fn a_batch_with_margins_of_ten_thousand_trains_without_nan_for_every_loss() {
        let (model, pairs, refs) = setup();
        let device = Default::default();
        let batch: Vec<&TokenizedPair> = pairs.iter().collect();
        let losses = [
            Loss::Sigmoid,
            Loss::Ropo { alpha: 14.0 },
            Loss::NoiseAware,
            Loss::Cdpo { epsilon: 0.2 },
            Loss::Rdpo { epsilon: 0.2 },
            Loss::Ipo {
                margin: ropo_core::IpoMargin::Summed,
            },
            Loss::Hinge,
            Loss::Simpo { gamma: 1.0 },
        ];
        let probe = [0, 3, 4, 5, 6, 2, 4, 5];
        for loss in losses {
            for shift in [1e5, -1e5] {
                // β = 0.1, so βh is about ∓1e4 for every pair.
                let shifted: Vec<ReferenceLogps> = refs
                    .iter()
                    .map(|r| ReferenceLogps {
                        chosen: r.chosen + shift,
                        rejected: r.rejected,
                    })
                    .collect();
                let config = LossConfig::new(loss, 0.1).unwrap();
                let mut trainer = trainer();
                let mut current = model.clone();
                for _ in 0..2 {
                    let (next, step) = preference_step(
                        current,
                        &mut trainer,
                        &config,
                        &batch,
                        &shifted,
                        1,
                        &device,
                    )
                    .unwrap_or_else(|e| panic!("{loss:?} at shift {shift}: {e}"));
                    assert!(step.metrics.loss.is_finite(), "{loss:?} {shift}");
                    assert!(step.optim.grad_norm.is_finite(), "{loss:?} {shift}");
                    current = next;
                }
                let logps = token_logps(&current, &probe, &device).unwrap();
                assert!(logps.iter().all(|v| v.is_finite()), "{loss:?} {shift}");
            }
        }
    }
}
