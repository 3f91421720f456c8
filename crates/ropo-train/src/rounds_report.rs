//! What the ROPO framework's data step did in the gold experiment: for each method with one
//! (`ropo+filter`), η and round, the pairs the filter dropped, its precision and recall
//! against the recorded flips, and the share of resampled pairs the gold reward orders as
//! labelled (means over seeds).

use crate::{
    records::{RoundReport, RunResult},
    summary::mean_std,
};

/// A markdown table of the data steps of `runs`, methods in `methods` order; empty when no
/// run has a data step.
pub fn rounds_table(methods: &[String], noise: &[f64], runs: &[RunResult]) -> String {
    let mut out = String::from(
        "| method | η | round | dropped | precision | recall | resampled | gold-correct | gold-reversed |\n\
         |---|---|---|---|---|---|---|---|---|",
    );
    let mut rows = 0;
    for method in methods {
        for &eta in noise {
            let cell: Vec<&RunResult> = runs
                .iter()
                .filter(|r| &r.loss == method && r.noise == eta)
                .collect();
            let rounds = cell.iter().map(|r| r.rounds.len()).min().unwrap_or(0);
            for index in 0..rounds {
                let of = |f: &dyn Fn(&RoundReport) -> f64| {
                    mean(cell.iter().map(|r| f(&r.rounds[index])).collect())
                };
                let resampled: f64 = cell.iter().map(|r| r.rounds[index].resampled as f64).sum();
                let share = |f: &dyn Fn(&RoundReport) -> usize| {
                    if resampled == 0.0 {
                        return "–".to_string();
                    }
                    let count: f64 = cell.iter().map(|r| f(&r.rounds[index]) as f64).sum();
                    format!("{:.3}", count / resampled)
                };
                out += &format!(
                    "\n| {method} | {eta} | {} | {:.0} | {:.3} | {:.3} | {:.1} | {} | {} |",
                    index + 1,
                    of(&|r| r.filter.dropped as f64),
                    of(&|r| r.filter.precision),
                    of(&|r| r.filter.recall),
                    resampled / cell.len() as f64,
                    share(&|r| r.resampled_correct),
                    share(&|r| r.resampled_reversed),
                );
                rows += 1;
            }
        }
    }
    if rows == 0 {
        return String::new();
    }
    out + "\n"
}

/// The mean of the finite values (NaN when there are none: e.g. precision with nothing
/// dropped).
fn mean(values: Vec<f64>) -> f64 {
    let finite: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    mean_std(&finite).0
}
