//! `summary.json`: mean and standard deviation over seeds of each metric, per (loss, η).

use serde::{Deserialize, Serialize};

use crate::{
    config::GoldExperiment,
    records::{ExperimentOutcome, RunResult},
};

/// `summary.json`: one entry per loss, noise rate and metric, averaged over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The entries, in loss order then noise order.
    pub results: Vec<SummaryEntry>,
}

/// Mean and standard deviation of one metric over the seeds of one (loss, η).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryEntry {
    /// Loss name.
    pub loss: String,
    /// Noise rate η.
    pub noise: f64,
    /// `gold_win_rate`, `clean_accuracy` or `gold_reward`.
    pub metric: String,
    /// Mean over seeds.
    pub mean: f64,
    /// Sample standard deviation over seeds (0 for one seed).
    pub std: f64,
    /// Number of seeds.
    pub seeds: usize,
}

/// Reads one metric from a run.
pub type MetricReader<R = RunResult> = fn(&R) -> f64;

/// The metrics every summary reports, with how to read them from a run.
pub const METRICS: [(&str, MetricReader); 3] = [
    ("gold_win_rate", |r| r.gold_win_rate),
    ("clean_accuracy", |r| r.clean_accuracy),
    ("gold_reward", |r| r.gold_reward),
];

impl Summary {
    /// Averages the runs of `outcome` over seeds, keeping the experiment's loss and noise order.
    pub fn of(experiment: &GoldExperiment, outcome: &ExperimentOutcome) -> Self {
        Self::over_seeds(
            (&experiment.loss_names(), &experiment.noise),
            &outcome.runs,
            |r| (r.loss.as_str(), r.noise),
            &METRICS,
        )
    }

    /// Mean and std over seeds of each `metrics` reader, for every (loss, η) in the given
    /// order; `cell` says which (loss, η) a run belongs to.
    pub fn over_seeds<R>(
        (losses, noise): (&[String], &[f64]),
        runs: &[R],
        cell: impl Fn(&R) -> (&str, f64),
        metrics: &[(&str, MetricReader<R>)],
    ) -> Self {
        let mut results = Vec::new();
        for loss in losses {
            for &eta in noise {
                let here: Vec<&R> = runs
                    .iter()
                    .filter(|r| cell(r) == (loss.as_str(), eta))
                    .collect();
                for (metric, read) in metrics {
                    let values: Vec<f64> = here.iter().map(|r| read(r)).collect();
                    let (mean, std) = mean_std(&values);
                    results.push(SummaryEntry {
                        loss: loss.clone(),
                        noise: eta,
                        metric: (*metric).into(),
                        mean,
                        std,
                        seeds: values.len(),
                    });
                }
            }
        }
        Self { results }
    }

    /// The entry for a loss, η and metric.
    pub fn get(&self, loss: &str, noise: f64, metric: &str) -> Option<&SummaryEntry> {
        self.results
            .iter()
            .find(|e| e.loss == loss && e.noise == noise && e.metric == metric)
    }

    /// A markdown table of `metric`: one row per loss, one column per η, `mean ± std`.
    pub fn table(&self, (losses, noise): (&[String], &[f64]), metric: &str) -> String {
        let mut out = format!("| {metric} |");
        for eta in noise {
            out += &format!(" η = {eta} |");
        }
        out += "\n|---|";
        out += &"---|".repeat(noise.len());
        for loss in losses {
            out += &format!("\n| {loss} |");
            for &noise in noise {
                match self.get(loss, noise, metric) {
                    Some(e) => out += &format!(" {:.3} ± {:.3} |", e.mean, e.std),
                    None => out += " – |",
                }
            }
        }
        out + "\n"
    }
}

/// Mean and sample standard deviation (0 for one value; NaN for none).
pub(crate) fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}
