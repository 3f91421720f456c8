use burn::tensor::{backend::Backend, ElementConversion, Tensor};

use crate::{LossOutput, PairLogps};

/// Batch means of a preference loss's outputs, under the names TRL logs them by.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PreferenceMetrics {
    /// Mean per-pair loss.
    pub loss: f64,
    /// `rewards/chosen`: mean `β·(log πθ(y_w) − log π_ref(y_w))`.
    pub rewards_chosen: f64,
    /// `rewards/rejected`: mean `β·(log πθ(y_l) − log π_ref(y_l))`.
    pub rewards_rejected: f64,
    /// `rewards/accuracies`: fraction of pairs whose chosen reward is strictly greater.
    pub rewards_accuracies: f64,
    /// `rewards/margins`: mean of chosen minus rejected reward.
    pub rewards_margins: f64,
    /// `logps/chosen`: mean summed policy log-prob of the chosen responses.
    pub logps_chosen: f64,
    /// `logps/rejected`: mean summed policy log-prob of the rejected responses.
    pub logps_rejected: f64,
    /// RE-PO's mean posterior that a label is right (`None` for every other loss).
    pub label_posterior: Option<f64>,
}

impl PreferenceMetrics {
    /// The metrics of one batch from its loss output and the log-probs it was computed from.
    pub fn of_batch<B: Backend>(output: &LossOutput<B>, logps: &PairLogps<B>) -> Self {
        let chosen = output.chosen_rewards.clone();
        let rejected = output.rejected_rewards.clone();
        Self {
            loss: mean(output.losses.clone()),
            rewards_chosen: mean(chosen.clone()),
            rewards_rejected: mean(rejected.clone()),
            rewards_accuracies: mean(chosen.clone().greater(rejected.clone()).float()),
            rewards_margins: mean(chosen - rejected),
            logps_chosen: mean(logps.policy_chosen.clone()),
            logps_rejected: mean(logps.policy_rejected.clone()),
            label_posterior: output.label_posteriors.clone().map(mean),
        }
    }

    /// `(name, value)` pairs in TRL's naming, for logs and `metrics.jsonl`.
    pub fn named(&self) -> [(&'static str, f64); 7] {
        [
            ("loss", self.loss),
            ("rewards/chosen", self.rewards_chosen),
            ("rewards/rejected", self.rewards_rejected),
            ("rewards/accuracies", self.rewards_accuracies),
            ("rewards/margins", self.rewards_margins),
            ("logps/chosen", self.logps_chosen),
            ("logps/rejected", self.logps_rejected),
        ]
    }
}

fn mean<B: Backend>(values: Tensor<B, 1>) -> f64 {
    values.detach().mean().into_scalar().elem::<f64>()
}
