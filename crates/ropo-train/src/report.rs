//! The run folder of an experiment: the resolved config, `metrics.jsonl`, `summary.json`,
//! `report.md` and SVG plots. Every file is written under a temporary name and renamed, so an
//! interrupted run never leaves a half-written file.

use std::{collections::BTreeMap, path::Path};

use serde_json::json;

use crate::{
    config::GoldExperiment,
    plots,
    records::{ExperimentOutcome, RunResult, StepRecord},
    store::write_atomic,
    summary::{mean_std, Summary, METRICS},
    TrainError,
};

/// Writes the whole run folder.
pub fn write_run_folder(
    dir: &Path,
    experiment: &GoldExperiment,
    outcome: &ExperimentOutcome,
    wall_seconds: f64,
) -> Result<Summary, TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let config = toml::to_string_pretty(experiment)
        .map_err(|e| TrainError::Config(format!("cannot write the config: {e}")))?;
    write_atomic(&dir.join("config.toml"), &config)?;
    let runs = || {
        outcome
            .runs
            .iter()
            .map(|r| (r.loss.as_str(), r.noise, r.seed, r.history.as_slice()))
    };
    write_atomic(&dir.join("metrics.jsonl"), &metrics_lines(runs()))?;
    write_atomic(&dir.join("timing.jsonl"), &timing_lines(runs()))?;
    let summary = Summary::of(experiment, outcome);
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| TrainError::Config(format!("cannot write the summary: {e}")))?;
    write_atomic(&dir.join("summary.json"), &text)?;
    for (metric, _) in METRICS {
        let svg = plots::metric_against_noise(experiment, &summary, metric);
        write_atomic(&dir.join(format!("{metric}_vs_noise.svg")), &svg?)?;
    }
    write_atomic(
        &dir.join("curves.svg"),
        &plots::validation_curves(experiment, outcome)?,
    )?;
    write_atomic(
        &dir.join("report.md"),
        &report_md(experiment, outcome, &summary, wall_seconds),
    )?;
    Ok(summary)
}

/// `metrics.jsonl` lines of runs given as `(method, noise, seed, steps)`: what the run
/// computed, equal byte for byte between an uninterrupted and a resumed run.
pub fn metrics_lines<'a>(
    runs: impl Iterator<Item = (&'a str, f64, u64, &'a [StepRecord])>,
) -> String {
    step_lines(runs, |s| {
        json!({
            "loss": s.loss, "rewards/chosen": s.rewards_chosen,
            "rewards/rejected": s.rewards_rejected, "rewards/accuracies": s.accuracy,
            "rewards/margins": s.margin, "lr": s.lr, "grad_norm": s.grad_norm,
        })
    })
}

/// `timing.jsonl` lines of runs given as `(method, noise, seed, steps)`: each step's
/// `tokens_per_s`, which differs from run to run and so is kept out of `metrics.jsonl`.
pub fn timing_lines<'a>(
    runs: impl Iterator<Item = (&'a str, f64, u64, &'a [StepRecord])>,
) -> String {
    step_lines(runs, |s| json!({ "tokens_per_s": s.tokens_per_s }))
}

/// One JSON line per step of each run: its `method`, `noise`, `seed` and `step`, then the
/// object `fields` makes of the step.
fn step_lines<'a>(
    runs: impl Iterator<Item = (&'a str, f64, u64, &'a [StepRecord])>,
    fields: impl Fn(&StepRecord) -> serde_json::Value,
) -> String {
    let mut out = String::new();
    for (method, noise, seed, history) in runs {
        for s in history {
            let mut line =
                json!({ "method": method, "noise": noise, "seed": seed, "step": s.step });
            if let (Some(line), serde_json::Value::Object(extra)) =
                (line.as_object_mut(), fields(s))
            {
                line.extend(extra);
            }
            out += &line.to_string();
            out.push('\n');
        }
    }
    out
}

fn report_md(
    experiment: &GoldExperiment,
    outcome: &ExperimentOutcome,
    summary: &Summary,
    wall_seconds: f64,
) -> String {
    let sft_gold: Vec<f64> = outcome.sft.iter().map(|s| s.gold_reward).collect();
    let (sft_mean, _) = mean_std(&sft_gold);
    let mut out = format!(
        "# ropo: losses under label noise (built-in gold-reward task)\n\n\
         {} losses × {} noise rates × {} seeds, {} preference steps each; wall time {:.0} s.\n\
         SFT reference: mean gold reward {:.3}. Win rates are against the SFT model's samples \
         (0.5 = no better); accuracy is the implicit reward's on clean held-out pairs.\n",
        experiment.losses.len(),
        experiment.noise.len(),
        experiment.seeds,
        experiment.preference.steps,
        wall_seconds,
        sft_mean,
    );
    for (metric, _) in METRICS {
        out += &format!(
            "\n## {metric} (mean ± std over seeds)\n\n{}",
            summary.table((&experiment.loss_names(), &experiment.noise), metric)
        );
        out += &format!("\n![{metric} against noise]({metric}_vs_noise.svg)\n");
    }
    out += "\n## Validation gold reward against training length (mean over seeds)\n\n| loss | η |";
    let steps: Vec<usize> = outcome
        .runs
        .first()
        .map(|r| r.curve.iter().map(|p| p.step).collect())
        .unwrap_or_default();
    for step in &steps {
        out += &format!(" {step} |");
    }
    out += "\n|---|---|";
    out += &"---|".repeat(steps.len());
    let names = experiment.loss_names();
    let mut curves: BTreeMap<(usize, usize), Vec<&RunResult>> = BTreeMap::new();
    for run in &outcome.runs {
        let loss = names.iter().position(|l| *l == run.loss).unwrap_or(0);
        let noise = experiment
            .noise
            .iter()
            .position(|n| *n == run.noise)
            .unwrap_or(0);
        curves.entry((loss, noise)).or_default().push(run);
    }
    for ((loss, noise), runs) in &curves {
        out += &format!("\n| {} | {} |", names[*loss], experiment.noise[*noise]);
        for index in 0..steps.len() {
            let values: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.curve.get(index).map(|p| p.gold_reward))
                .collect();
            out += &format!(" {:.3} |", mean_std(&values).0);
        }
    }
    out += "\n\n![validation curves](curves.svg)\n";
    out
}
