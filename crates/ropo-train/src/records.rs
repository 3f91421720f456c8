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

/// The outcome of one (loss, η, seed) run of the gold experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Loss name.
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
    /// One entry per (loss, η, seed).
    pub runs: Vec<RunResult>,
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
        /// The method trained (a loss name, or an ablation variant's).
        method: String,
        /// Its noise rate η.
        noise: f64,
        /// Its seed index.
        seed: u64,
    },
    /// A preference step finished.
    Step(StepRecord),
    /// A preference run of the gold experiment finished.
    RunFinished(RunResult),
    /// Something was recovered from and the run goes on (e.g. a corrupt checkpoint set aside).
    Warning(String),
    /// Reference log-probs of `done` of `total` pairs are computed.
    Reference {
        /// Pairs scored so far.
        done: usize,
        /// Pairs to score.
        total: usize,
    },
    /// A stage without steps of its own began (e.g. computing reference log-probs).
    Stage(String),
}
