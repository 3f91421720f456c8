//! Evaluation on clean held-out data: implicit-reward accuracy and margin for any pairs, and for
//! the gold-reward task the gold reward of sampled generations and their win rate against the
//! SFT reference.

use ropo_core::{LossConfig, PairLogps, PreferenceMetrics};
use ropo_data::{gold::GoldTask, TokenizedPair};
use ropo_models::attention::AttentionBackend;
use ropo_models::{generate, CausalLm, SamplingConfig};

use crate::{
    records::{Progress, ScoringPass},
    reference::ReferenceLogps,
    scoring::{score_spread, Spread},
    TrainError,
};

/// How well a policy's implicit reward `β·(log π − log π_ref)` orders held-out pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairEval {
    /// Fraction of pairs whose chosen response gets the strictly higher implicit reward.
    pub accuracy: f64,
    /// Mean implicit-reward margin, chosen minus rejected.
    pub margin: f64,
}

/// Implicit-reward accuracy and mean margin of `model` on `pairs` (whose labels are clean).
pub fn implicit_reward_eval<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    reference: &[ReferenceLogps],
    beta: f64,
    batch_size: usize,
    device: &B::Device,
) -> Result<PairEval, TrainError> {
    let margins = implicit_margins(
        model,
        pairs,
        reference,
        beta,
        (batch_size, Spread::local(1)),
        device,
        &mut |_| {},
    )?;
    let n = margins.len().max(1) as f64;
    Ok(PairEval {
        accuracy: margins.iter().filter(|m| **m > 0.0).count() as f64 / n,
        margin: margins.iter().sum::<f64>() / n,
    })
}

/// The margin `h` and the loss of every pair under `model`, scored spread over ranks and
/// nodes as `spread` says and reported as [`ScoringPass::Filter`]: how the framework's filter
/// and the flip detection rank pairs (a high loss says "this label looks wrong").
pub fn pair_losses<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    reference: &[ReferenceLogps],
    loss: &LossConfig,
    spread: Spread<'_>,
    device: &B::Device,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<(Vec<f64>, Vec<f64>), TrainError> {
    let total = pairs.len();
    let scaled = implicit_margins(
        model,
        pairs,
        reference,
        loss.beta(),
        (256, spread),
        device,
        &mut |done| {
            on_progress(Progress::Scoring {
                pass: ScoringPass::Filter,
                done,
                total,
            })
        },
    )?;
    let margins: Vec<f64> = scaled.iter().map(|m| m / loss.beta()).collect();
    let losses = loss
        .loss_of_margin(burn::tensor::Tensor::<B, 1>::from_data(
            burn::tensor::TensorData::from(margins.as_slice()),
            device,
        ))
        .into_data()
        .iter::<f64>()
        .collect();
    Ok((margins, losses))
}

/// `β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]` of every pair, at most
/// `max_pairs` pairs per forward spread as `spread` says; `on_batch(done)` reports the pairs
/// scored so far (on this node).
pub fn implicit_margins<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    reference: &[ReferenceLogps],
    beta: f64,
    (max_pairs, spread): (usize, Spread<'_>),
    device: &B::Device,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<f64>, TrainError> {
    Ok(
        score_spread(model, pairs, max_pairs, spread, device, on_batch)?
            .into_iter()
            .zip(reference)
            .map(|((c, r), re)| beta * ((c - re.chosen) - (r - re.rejected)))
            .collect(),
    )
}

/// Loss and reward metrics of `model` on `pairs` (TRL's `eval_*`), at most 16 pairs per
/// forward spread over ranks and nodes as `spread` says (the same numbers for any number),
/// reported as [`ScoringPass::Evaluation`].
pub fn eval_metrics<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    reference: &[ReferenceLogps],
    loss: &LossConfig,
    spread: Spread<'_>,
    device: &B::Device,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<PreferenceMetrics, TrainError> {
    let total = pairs.len();
    let policy = score_spread(model, pairs, 16, spread, device, &mut |done| {
        on_progress(Progress::Scoring {
            pass: ScoringPass::Evaluation,
            done,
            total,
        })
    })?;
    let tensor = |values: Vec<f64>| {
        burn::tensor::Tensor::<B, 1>::from_data(
            burn::tensor::TensorData::from(values.as_slice()),
            device,
        )
    };
    let count =
        |f: fn(&TokenizedPair) -> usize| tensor(pairs.iter().map(|p| f(p) as f64).collect());
    let logps = PairLogps {
        policy_chosen: tensor(policy.iter().map(|p| p.0).collect()),
        policy_rejected: tensor(policy.iter().map(|p| p.1).collect()),
        reference_chosen: tensor(reference.iter().map(|r| r.chosen).collect()),
        reference_rejected: tensor(reference.iter().map(|r| r.rejected).collect()),
        chosen_tokens: count(|p| p.chosen.len()),
        rejected_tokens: count(|p| p.rejected.len()),
    };
    Ok(PreferenceMetrics::of_batch(&loss.forward(&logps), &logps))
}

/// Gold-task quality of a policy's samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoldEval {
    /// Mean gold reward `r*` of one sampled response per prompt.
    pub mean_reward: f64,
    /// Fraction of prompts where the policy's sample beats the baseline's (ties count ½).
    pub win_rate: f64,
}

/// Samples one response per prompt (temperature 1, seeded) from a model.
pub fn sample_responses<B: AttentionBackend>(
    model: &CausalLm<B>,
    task: &GoldTask,
    prompts: &[Vec<u32>],
    seed: u64,
    device: &B::Device,
) -> Result<Vec<Vec<u32>>, TrainError> {
    let sampling = SamplingConfig {
        max_new_tokens: task.length + 1,
        temperature: 1.0,
        seed,
        stop_tokens: vec![ropo_data::gold::EOS],
        ..SamplingConfig::default()
    };
    Ok(generate(model, prompts, &sampling, device)?)
}

/// Gold reward of `model`'s samples and their win rate against `baseline` samples of the same
/// prompts (e.g. the SFT model's).
pub fn gold_eval<B: AttentionBackend>(
    model: &CausalLm<B>,
    task: &GoldTask,
    prompts: &[Vec<u32>],
    baseline: &[Vec<u32>],
    seed: u64,
    device: &B::Device,
) -> Result<GoldEval, TrainError> {
    let samples = sample_responses(model, task, prompts, seed, device)?;
    let mut reward = 0.0;
    let mut wins = 0.0;
    for ((prompt, sample), base) in prompts.iter().zip(&samples).zip(baseline) {
        let (mine, theirs) = (task.reward(prompt, sample), task.reward(prompt, base));
        reward += mine;
        wins += if mine > theirs {
            1.0
        } else if mine == theirs {
            0.5
        } else {
            0.0
        };
    }
    let n = prompts.len().max(1) as f64;
    Ok(GoldEval {
        mean_reward: reward / n,
        win_rate: wins / n,
    })
}
