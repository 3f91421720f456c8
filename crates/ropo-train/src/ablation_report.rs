//! The ablation's report: markdown tables of final quality per variant and η, and of what the
//! filter and rejection sampling did at each round.

use crate::{
    ablation::{AblationRun, VARIANTS},
    run::{DataStep, RoundReport},
};

/// Markdown tables of an ablation: final quality per variant and η, then the filter's
/// precision/recall and rejection sampling per round (means over seeds).
pub fn ablation_report(noise: &[f64], runs: &[AblationRun]) -> String {
    let mean = |values: Vec<f64>| {
        let finite: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            f64::NAN
        } else {
            finite.iter().sum::<f64>() / finite.len() as f64
        }
    };
    let mut out = String::from("| variant |");
    for eta in noise {
        out += &format!(" win rate η={eta} | accuracy η={eta} |");
    }
    out += &format!("\n|---|{}", "---|---|".repeat(noise.len()));
    for variant in VARIANTS {
        out += &format!("\n| {} |", variant.name);
        for &eta in noise {
            let cell: Vec<&AblationRun> = runs
                .iter()
                .filter(|r| r.variant == variant.name && r.noise == eta)
                .collect();
            out += &format!(
                " {:.3} | {:.3} |",
                mean(cell.iter().map(|r| r.gold_win_rate).collect()),
                mean(cell.iter().map(|r| r.clean_accuracy).collect())
            );
        }
    }
    out += "\n\n| variant | η | round | dropped | precision | recall | resampled | gold-correct | gold-reversed |\n|---|---|---|---|---|---|---|---|---|";
    for variant in VARIANTS.iter().filter(|v| v.data_step != DataStep::None) {
        for &eta in noise {
            let cell: Vec<&AblationRun> = runs
                .iter()
                .filter(|r| r.variant == variant.name && r.noise == eta)
                .collect();
            let rounds = cell.first().map_or(0, |r| r.rounds.len());
            for index in 0..rounds {
                let at = |f: &dyn Fn(&RoundReport) -> f64| {
                    mean(cell.iter().map(|r| f(&r.rounds[index])).collect())
                };
                let resampled = at(&|r| r.resampled as f64);
                let total: f64 = cell.iter().map(|r| r.rounds[index].resampled as f64).sum();
                let share = |f: &dyn Fn(&RoundReport) -> usize| {
                    let count: f64 = cell.iter().map(|r| f(&r.rounds[index]) as f64).sum();
                    if variant.data_step == DataStep::FilterResample {
                        format!("{:.3}", count / total.max(1.0))
                    } else {
                        "–".into()
                    }
                };
                out += &format!(
                    "\n| {} | {eta} | {} | {:.0} | {:.3} | {:.3} | {:.1} | {} | {} |",
                    variant.name,
                    index + 1,
                    at(&|r| r.filter.dropped as f64),
                    at(&|r| r.filter.precision),
                    at(&|r| r.filter.recall),
                    resampled,
                    share(&|r| r.resampled_correct),
                    share(&|r| r.resampled_reversed),
                );
            }
        }
    }
    out + "\n"
}
