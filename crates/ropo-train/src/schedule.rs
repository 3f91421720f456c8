//! How a preference run steps ([`StepSchedule`]) and its learning rate over the steps
//! ([`LrSchedule`]: linear warmup, then cosine or linear decay).

use serde::{Deserialize, Serialize};

/// How a preference run steps: how many optimiser steps of how many pairs, and AdamW's
/// learning rate, warmup and weight decay. The gold experiment's stage and the trainer's
/// settings each give one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSchedule {
    /// Optimiser steps.
    pub steps: usize,
    /// Pairs per step.
    pub batch: usize,
    /// Peak learning rate (cosine decay to 0 after warmup).
    pub lr: f64,
    /// Warmup steps.
    pub warmup: usize,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Forwards each batch is split into, their gradients accumulated.
    pub grad_accum: usize,
    /// Whether steps recompute each decoder layer's activations in their backward instead of
    /// keeping them (TRL: `gradient_checkpointing`; [`crate::layer_checkpointing`]).
    pub layer_checkpointing: bool,
}

/// How the learning rate decays after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// Half a cosine from the peak to zero at the last step.
    Cosine,
    /// A straight line from the peak to zero at the last step.
    Linear,
    /// Stay at the peak.
    Constant,
}

/// Warmup to `peak` over `warmup` steps, then `decay` to zero at `total` steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Steps of linear warmup from 0.
    pub warmup: usize,
    /// Total optimiser steps.
    pub total: usize,
    /// Shape after warmup.
    pub decay: Decay,
}

impl LrSchedule {
    /// `peak` at every one of `total` steps, with no warmup (benchmarks and tests).
    pub fn constant(peak: f64, total: usize) -> Self {
        Self {
            peak,
            warmup: 0,
            total,
            decay: Decay::Constant,
        }
    }

    /// The learning rate of optimiser step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        match self.decay {
            Decay::Cosine => self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            Decay::Linear => self.peak * (1.0 - progress),
            Decay::Constant => self.peak,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_rises_linearly_then_cosine_reaches_zero() {
        let schedule = LrSchedule {
            peak: 1.0,
            warmup: 4,
            total: 104,
            decay: Decay::Cosine,
        };
        assert_eq!(schedule.at(0), 0.25);
        assert_eq!(schedule.at(3), 1.0);
        assert!((schedule.at(4) - 1.0).abs() < 1e-12);
        assert!((schedule.at(54) - 0.5).abs() < 1e-12);
        assert!(schedule.at(104).abs() < 1e-12);
        let linear = LrSchedule {
            decay: Decay::Linear,
            ..schedule
        };
        assert!((linear.at(54) - 0.5).abs() < 1e-12);
    }
}
