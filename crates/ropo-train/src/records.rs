//! What training records as it goes: per-step metrics, validation points, the results of
//! runs, and the progress events a caller sees. Every module of the crate may import this
//! one, and it imports nothing of the crate, so records flow one way: from the loop out to
//! the store, the reports and the caller.

use serde::{Deserialize, Serialize};

/// One logged training step (TRL's names in `metrics.jsonl`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimiser step (1-based).
    pub step: usize,
    /// Mean loss.
    pub loss: f64,
    /// `rewards/accuracies` on the (noisy) training batch.
    pub accuracy: f64,
    /// `rewards/margins`.
    pub margin: f64,
    /// `rewards/chosen`.
    pub rewards_chosen: f64,
    /// `rewards/rejected`.
    pub rewards_rejected: f64,
    /// `logps/chosen`: mean summed policy log-prob of the chosen responses.
    pub logps_chosen: f64,
    /// `logps/rejected`: mean summed policy log-prob of the rejected responses.
    pub logps_rejected: f64,
    /// Learning rate.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Training tokens processed per second in this step.
    pub tokens_per_s: f64,
    /// RE-PO's reliability η after this step (`None` for every other loss); a resumed run
    /// continues from the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reliability: Option<f64>,
}

/// Validation metrics after some number of preference steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Preference steps taken.
    pub step: usize,
    /// Implicit-reward accuracy on the clean validation pairs.
    pub clean_accuracy: f64,
    /// Mean gold reward of samples on the validation prompts.
    pub gold_reward: f64,
    /// Win rate against the SFT model's samples on the validation prompts.
    pub gold_win_rate: f64,
    /// How well the policy's loss ranks the run's flipped training labels above its clean
    /// ones (ROC AUC), when the experiment tracks it (`noise_detection`) and there are flips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_auc: Option<f64>,
}

/// The trainer's metrics on its evaluation pairs at one point (TRL's `eval_*`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Optimiser steps taken.
    pub step: usize,
    /// Mean loss.
    pub loss: f64,
    /// `rewards/accuracies`.
    pub accuracy: f64,
    /// `rewards/margins`.
    pub margin: f64,
    /// `rewards/chosen`.
    pub rewards_chosen: f64,
    /// `rewards/rejected`.
    pub rewards_rejected: f64,
    /// `logps/chosen`.
    pub logps_chosen: f64,
    /// `logps/rejected`.
    pub logps_rejected: f64,
}

impl EvalRecord {
    /// The record of `metrics` measured after `step` steps.
    pub fn of(step: usize, metrics: &ropo_core::PreferenceMetrics) -> Self {
        Self {
            step,
            loss: metrics.loss,
            accuracy: metrics.rewards_accuracies,
            margin: metrics.rewards_margins,
            rewards_chosen: metrics.rewards_chosen,
            rewards_rejected: metrics.rewards_rejected,
            logps_chosen: metrics.logps_chosen,
            logps_rejected: metrics.logps_rejected,
        }
    }
}

/// What happened between two rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// The round after which the filter ran (1-based).
    pub round: usize,
    /// How well the dropped set matches the flips.
    pub filter: FilterQuality,
    /// New pairs from rejection sampling.
    pub resampled: usize,
    /// Of those, how many the judge orders the same way (chosen strictly better).
    pub resampled_correct: usize,
    /// Of those, how many the judge orders the other way (chosen strictly worse).
    pub resampled_reversed: usize,
    /// The losses of clean and flipped pairs the filter ranked.
    pub histogram: LossHistogram,
}

/// How well a drop decision found the flipped pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FilterQuality {
    /// Pairs dropped.
    pub dropped: usize,
    /// Fraction of dropped pairs that were truly flipped (NaN when nothing was dropped; JSON
    /// writes it `null`, read back as NaN).
    #[serde(deserialize_with = "null_as_nan")]
    pub precision: f64,
    /// Fraction of flipped pairs that were dropped (NaN when nothing was flipped).
    #[serde(deserialize_with = "null_as_nan")]
    pub recall: f64,
}

/// Reads a number that JSON may hold as `null`, the way serde_json writes NaN, as NaN: a run
/// kept in `finished.jsonl` with an undefined ratio reads back as it was written.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(reader: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(reader)?.unwrap_or(f64::NAN))
}

impl FilterQuality {
    /// Compares a keep mask with the true flip mask.
    pub fn of(keep: &[bool], flipped: &[bool]) -> Self {
        let dropped = keep.iter().filter(|k| !**k).count();
        let caught = keep
            .iter()
            .zip(flipped)
            .filter(|(k, f)| !**k && **f)
            .count();
        let flips = flipped.iter().filter(|f| **f).count();
        let ratio = |a: usize, b: usize| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        Self {
            dropped,
            precision: ratio(caught, dropped),
            recall: ratio(caught, flips),
        }
    }
}

/// Counts of clean and of flipped pairs' losses in equal-width bins: the picture of how well a
/// loss separates the noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossHistogram {
    /// Bin edges, one more than bins.
    pub edges: Vec<f64>,
    /// Clean pairs per bin.
    pub clean: Vec<usize>,
    /// Flipped pairs per bin.
    pub flipped: Vec<usize>,
}

impl LossHistogram {
    /// `bins` equal bins from the smallest to the largest finite loss.
    pub fn of(losses: &[f64], flipped: &[bool], bins: usize) -> Self {
        let finite = losses.iter().copied().filter(|l| l.is_finite());
        let low = finite.clone().fold(f64::INFINITY, f64::min);
        let high = finite.fold(f64::NEG_INFINITY, f64::max);
        let bins = bins.max(1);
        let width = if high > low {
            (high - low) / bins as f64
        } else {
            1.0
        };
        let mut histogram = Self {
            edges: (0..=bins).map(|i| low + width * i as f64).collect(),
            clean: vec![0; bins],
            flipped: vec![0; bins],
        };
        for (loss, flip) in losses.iter().zip(flipped) {
            if !loss.is_finite() {
                continue;
            }
            let bin = (((loss - low) / width) as usize).min(bins - 1);
            if *flip {
                histogram.flipped[bin] += 1;
            } else {
                histogram.clean[bin] += 1;
            }
        }
        histogram
    }
}
/// The outcome of one (method, η, seed) run of the gold experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Method name (`dpo`, `ropo+filter`; the field keeps its first name).
    pub loss: String,
    /// Noise rate η.
    pub noise: f64,
    /// Seed index.
    pub seed: u64,
    /// Implicit-reward accuracy on clean held-out pairs.
    pub clean_accuracy: f64,
    /// Mean implicit-reward margin on clean held-out pairs.
    pub clean_margin: f64,
    /// Mean gold reward of samples.
    pub gold_reward: f64,
    /// Win rate of samples against the SFT model's.
    pub gold_win_rate: f64,
    /// Validation metrics against training length.
    pub curve: Vec<CurvePoint>,
    /// Per-step training metrics.
    pub history: Vec<StepRecord>,
    /// What the data step did at each round boundary (methods with one: `ropo+filter`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<RoundReport>,
}

/// The SFT model's own numbers, the baseline every run starts from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SftResult {
    /// Seed index.
    pub seed: u64,
    /// Mean gold reward of the SFT model's samples.
    pub gold_reward: f64,
    /// Implicit-reward accuracy of the SFT model itself (0: every margin is 0).
    pub clean_accuracy: f64,
}

/// Everything the gold experiment measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentOutcome {
    /// SFT model quality per seed (its samples against another draw of its own).
    pub sft: Vec<SftResult>,
    /// One entry per (method, η, seed).
    pub runs: Vec<RunResult>,
    /// The share of training labels flipped at each η, mean over seeds (as drawn, which
    /// differs from η by chance).
    #[serde(default)]
    pub flipped: Vec<FlipShare>,
}

/// The share of training labels the noise flipped at one rate η.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlipShare {
    /// The noise rate η.
    pub noise: f64,
    /// Flipped labels over all labels, mean over seeds.
    pub share: f64,
}

/// What an experiment reports as it goes, for progress bars and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// An SFT step finished.
    Sft {
        /// The step (1-based).
        step: usize,
        /// SFT steps in all.
        total: usize,
        /// Its mean loss.
        loss: f64,
    },
    /// A preference run started.
    RunStarted {
        /// The run's position in the experiment (0-based).
        index: usize,
        /// Runs in the experiment.
        total: usize,
        /// The method trained (`dpo`, `ropo+filter`).
        method: String,
        /// Its noise rate η.
        noise: f64,
        /// Its seed index.
        seed: u64,
    },
    /// A preference step finished.
    Step(StepRecord),
    /// The trainer evaluated the policy on its evaluation pairs.
    Evaluated(EvalRecord),
    /// A preference run of the gold experiment finished.
    RunFinished(RunResult),
    /// Something was recovered from and the run goes on (e.g. a corrupt checkpoint set aside).
    Warning(String),
    /// A pass that scores pairs without training has scored `done` of its `total` pairs.
    Scoring {
        /// Which pass.
        pass: ScoringPass,
        /// Pairs scored so far.
        done: usize,
        /// Pairs to score.
        total: usize,
    },
    /// A stage without steps of its own began (e.g. computing reference log-probs).
    Stage(String),
}

/// A pass over pairs that scores them without training, as progress names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoringPass {
    /// The reference model's log-probs of the training or evaluation pairs.
    Reference,
    /// The policy on the evaluation pairs.
    Evaluation,
    /// The policy on the training pairs, for the filter between rounds.
    Filter,
}

impl std::fmt::Display for ScoringPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Reference => "reference log-probs",
            Self::Evaluation => "evaluation",
            Self::Filter => "filter scoring",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_every_finite_loss_in_its_group() {
        let losses = [0.0, 1.0, 2.0, 3.0, f64::NAN];
        let flipped = [false, false, true, true, true];
        let histogram = LossHistogram::of(&losses, &flipped, 2);
        assert_eq!(histogram.edges, [0.0, 1.5, 3.0]);
        assert_eq!(histogram.clean, [2, 0]);
        assert_eq!(histogram.flipped, [0, 2]);
    }

    #[test]
    fn an_undefined_filter_ratio_survives_the_finished_runs_file() {
        let nothing_flipped = FilterQuality::of(&[false, true, true], &[false, false, false]);
        assert!(nothing_flipped.recall.is_nan());
        let text = serde_json::to_string(&nothing_flipped).unwrap();
        let read: FilterQuality = serde_json::from_str(&text).unwrap();
        assert_eq!((read.dropped, read.precision), (1, 0.0));
        assert!(read.recall.is_nan());
    }
}
