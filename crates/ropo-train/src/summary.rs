//! `summary.json`: per (method, η) and metric, the per-seed values, their mean and standard
//! deviation, and the paired difference from DPO with its bootstrap interval.

use serde::{Deserialize, Serialize};

use crate::{
    config::GoldExperiment,
    grid::GridResult,
    paired::PairedDifference,
    records::{ExperimentOutcome, RunResult},
};

/// The names DPO goes by in a grid, the baseline every method is compared with.
const BASELINE_NAMES: [&str; 2] = ["dpo", "sigmoid"];

/// `summary.json`: one entry per loss, noise rate and metric, averaged over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The entries, in loss order then noise order.
    pub results: Vec<SummaryEntry>,
}

/// One metric over the seeds of one (method, η).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryEntry {
    /// Method name (`dpo`, `ropo+filter`).
    pub method: String,
    /// The same name, under the field name of earlier summaries.
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
    /// The value of each seed, in seed order.
    pub values: Vec<f64>,
    /// The paired difference from DPO's value on the same seeds (absent for DPO itself, and
    /// when the grid has no DPO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_dpo: Option<PairedDifference>,
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
    /// Summarises the runs of `outcome`, keeping the experiment's method and noise order.
    pub fn of(experiment: &GoldExperiment, outcome: &ExperimentOutcome) -> Self {
        Self::over_seeds(
            (&experiment.loss_names(), &experiment.noise),
            &outcome.runs,
            &METRICS,
        )
    }

    /// Each `metrics` reader over the seeds of every (method, η), in the given order, with
    /// the paired difference from the grid's DPO (`dpo` or `sigmoid`) when it has one.
    pub fn over_seeds<R: GridResult>(
        (methods, noise): (&[String], &[f64]),
        runs: &[R],
        metrics: &[(&str, MetricReader<R>)],
    ) -> Self {
        let baseline = methods
            .iter()
            .find(|m| BASELINE_NAMES.contains(&m.as_str()));
        let values_of = |method: &str, eta: f64, read: MetricReader<R>| {
            let mut here: Vec<&R> = runs
                .iter()
                .filter(|r| (r.key().0, r.key().1) == (method, eta))
                .collect();
            here.sort_by_key(|r| r.key().2);
            here.into_iter().map(read).collect::<Vec<f64>>()
        };
        let mut results = Vec::new();
        for method in methods {
            for &eta in noise {
                for (metric, read) in metrics {
                    let values = values_of(method, eta, *read);
                    let (mean, std) = mean_std(&values);
                    let vs_dpo = baseline
                        .filter(|b| *b != method)
                        .and_then(|b| PairedDifference::of(&values, &values_of(b, eta, *read)));
                    results.push(SummaryEntry {
                        method: method.clone(),
                        loss: method.clone(),
                        noise: eta,
                        metric: (*metric).into(),
                        mean,
                        std,
                        seeds: values.len(),
                        values,
                        vs_dpo,
                    });
                }
            }
        }
        Self { results }
    }

    /// The entry for a method, η and metric.
    pub fn get(&self, method: &str, noise: f64, metric: &str) -> Option<&SummaryEntry> {
        self.results
            .iter()
            .find(|e| e.method == method && e.noise == noise && e.metric == metric)
    }

    /// A markdown table of `metric`: one row per method; per η a column `mean ± std` and,
    /// when the grid has DPO, a column of the paired difference from it with its 95% interval.
    pub fn table(&self, (methods, noise): (&[String], &[f64]), metric: &str) -> String {
        let paired = self.results.iter().any(|e| e.vs_dpo.is_some());
        let mut out = format!("| {metric} |");
        for eta in noise {
            out += &format!(" η = {eta} |");
            if paired {
                out += " vs DPO |";
            }
        }
        out += "\n|---|";
        out += &"---|".repeat(noise.len() * if paired { 2 } else { 1 });
        for method in methods {
            out += &format!("\n| {method} |");
            for &noise in noise {
                let entry = self.get(method, noise, metric);
                match entry {
                    Some(e) => out += &format!(" {:.3} ± {:.3} |", e.mean, e.std),
                    None => out += " – |",
                }
                if paired {
                    match entry.and_then(|e| e.vs_dpo) {
                        Some(d) => out += &format!(" {} |", d.display()),
                        None => out += " – |",
                    }
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
