//! The run folder of an experiment, the gold grid's ([`write_run_folder`]) or a real-data
//! comparison's ([`write_dataset_folder`]): the resolved config, `metrics.jsonl`,
//! `timing.jsonl`, `summary.json`, `report.md` and, for the grid, SVG plots. Every file is written under a temporary name and renamed, so an
//! interrupted run never leaves a half-written file.

use std::{collections::BTreeSet, path::Path};

use serde_json::json;

use crate::{
    config::GoldExperiment,
    dataset_experiment::{DataCounts, DatasetExperiment, DatasetRun},
    plots::{self, CurveMetric, CURVE_METRICS},
    records::{ExperimentOutcome, RunResult, StepRecord},
    rounds_report::rounds_table,
    store::write_atomic,
    summary::{mean_std, Summary, METRICS},
    TrainError,
};

/// Writes the whole run folder: with the tables and plots, for seed 0 the losses of clean
/// and flipped pairs at each data step of a method trained in rounds.
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
    for metric in &CURVE_METRICS {
        if measured(outcome, metric) {
            let svg = plots::validation_curves(experiment, outcome, metric)?;
            write_atomic(&dir.join(curve_file(metric)), &svg)?;
        }
    }
    for run in outcome.runs.iter().filter(|r| r.seed == 0) {
        for round in &run.rounds {
            let title = format!(
                "{} at η = {}, after round {}: precision {:.2}, recall {:.2}",
                run.loss, run.noise, round.round, round.filter.precision, round.filter.recall
            );
            let name = format!(
                "losses-{}-eta{}-round{}.svg",
                run.loss, run.noise, round.round
            );
            write_atomic(
                &dir.join(name),
                &plots::loss_histogram(&round.histogram, &title)?,
            )?;
        }
    }
    write_atomic(
        &dir.join("report.md"),
        &report_md(experiment, outcome, &summary, wall_seconds),
    )?;
    Ok(summary)
}

/// Writes a real-data comparison's folder: `metrics.jsonl`, `timing.jsonl`, `summary.json`
/// (the results with the counts of pairs), `suspect_labels.jsonl` (every pair a filter
/// dropped, by run) and `report.md` (headed `title`, the config's name: a table per measured
/// metric). Returns the table of clean held-out accuracy the report holds.
pub fn write_dataset_folder(
    dir: &Path,
    title: &str,
    experiment: &DatasetExperiment,
    (counts, runs): (&DataCounts, &[DatasetRun]),
    wall_seconds: f64,
) -> Result<String, TrainError> {
    let summary = experiment.summarise(runs);
    let names = crate::loss_entry::names(&experiment.losses);
    let table = summary.table((&names, &experiment.noise), "clean_accuracy");
    let histories = || {
        runs.iter()
            .map(|r| (r.loss.as_str(), r.noise, r.seed, r.history.as_slice()))
    };
    write_atomic(&dir.join("metrics.jsonl"), &metrics_lines(histories()))?;
    write_atomic(&dir.join("timing.jsonl"), &timing_lines(histories()))?;
    write_atomic(&dir.join("suspect_labels.jsonl"), &suspect_lines(runs))?;
    let mut report = format!(
        "# {title}\n\n{} pairs read, {} dropped (prompt over budget), {} train, {} held out; \
         wall time {wall_seconds:.0} s.\n\n{table}\n",
        counts.read, counts.dropped, counts.train, counts.heldout
    );
    let noisy: Vec<f64> = experiment
        .noise
        .iter()
        .copied()
        .filter(|n| *n > 0.0)
        .collect();
    for metric in ["noise_auc", "filter_precision", "filter_recall"] {
        let measured: Vec<String> = names
            .iter()
            .filter(|m| noisy.iter().any(|&n| summary.get(m, n, metric).is_some()))
            .cloned()
            .collect();
        if !measured.is_empty() {
            report += &format!("\n{}\n", summary.table((&measured, &noisy), metric));
        }
    }
    let summary = json!({ "results": summary.results, "data": counts });
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| TrainError::Config(format!("cannot write the summary: {e}")))?;
    write_atomic(&dir.join("summary.json"), &text)?;
    write_atomic(&dir.join("report.md"), &report)?;
    Ok(table)
}

/// `suspect_labels.jsonl` of a dataset comparison: one line per pair a run's filter dropped,
/// with the run's `method`, `noise` and `seed`.
fn suspect_lines(runs: &[DatasetRun]) -> String {
    let mut out = String::new();
    for run in runs {
        for s in &run.suspects {
            let line = json!({
                "method": run.loss, "noise": run.noise, "seed": run.seed, "index": s.index,
                "round": s.round, "loss": s.loss, "margin": s.margin,
                "injected_flip": s.injected_flip,
            });
            out += &line.to_string();
            out.push('\n');
        }
    }
    out
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
    let names = experiment.loss_names();
    let flipped: Vec<String> = outcome
        .flipped
        .iter()
        .map(|f| format!("{:.3} at η = {}", f.share, f.noise))
        .collect();
    let mut out = format!(
        "# ropo: methods under label noise (built-in gold-reward task)\n\n\
         {} methods × {} noise rates × {} seeds, {} preference steps each; wall time {:.0} s.\n\
         Noise model `{}`; share of training labels flipped: {}.\n\
         SFT reference: mean gold reward {:.3}. Win rates are against the SFT model's samples \
         (0.5 = no better); accuracy is the implicit reward's on clean held-out pairs. \
         \"vs DPO\" is the mean over seeds of the difference from DPO on the same seed (same \
         noise, batch order and evaluation samples), with a 95% bootstrap interval over seeds \
         ({} resamples).\n",
        names.len(),
        experiment.noise.len(),
        experiment.seeds,
        experiment.preference.steps,
        wall_seconds,
        config_name(&experiment.noise_model),
        flipped.join(", "),
        sft_mean,
        crate::paired::RESAMPLES,
    );
    for (metric, _) in METRICS {
        out += &format!(
            "\n## {metric} (mean ± std over seeds)\n\n{}",
            summary.table((&names, &experiment.noise), metric)
        );
        out += &format!("\n![{metric} against noise]({metric}_vs_noise.svg)\n");
    }
    let rounds = rounds_table(&names, &experiment.noise, &outcome.runs);
    if !rounds.is_empty() {
        out += &format!(
            "\n## The framework's data step ({} rounds, ρ = {}, {} samples per dropped prompt \
             ranked by `{}`; means over seeds)\n\n{rounds}",
            experiment.framework.rounds,
            experiment.framework.rho,
            experiment.framework.samples,
            config_name(&experiment.framework.scorer)
        );
    }
    for metric in CURVE_METRICS.iter().filter(|m| measured(outcome, m)) {
        out += &curve_table(experiment, outcome, metric);
        out += &format!("\n![{}]({})\n", metric.title, curve_file(metric));
    }
    out
}

/// A setting as a config writes it (`bradley_terry`, `policy_log_prob_per_token`).
fn config_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

/// Whether any run has a validation point with `metric`.
fn measured(outcome: &ExperimentOutcome, metric: &CurveMetric) -> bool {
    outcome
        .runs
        .iter()
        .any(|r| r.curve.iter().any(|p| (metric.read)(p).is_some()))
}

/// The plot of `metric` against training length (`curves.svg` for the gold reward, as
/// always).
fn curve_file(metric: &CurveMetric) -> String {
    match metric.name {
        "gold_reward" => "curves.svg".into(),
        name => format!("curves-{name}.svg"),
    }
}

/// `metric` at each step any run was validated at, mean over the seeds of each (method, η)
/// (methods trained in rounds are validated at other steps: `–` where a method has no
/// point).
fn curve_table(
    experiment: &GoldExperiment,
    outcome: &ExperimentOutcome,
    metric: &CurveMetric,
) -> String {
    let steps: BTreeSet<usize> = outcome
        .runs
        .iter()
        .flat_map(|r| r.curve.iter().map(|p| p.step))
        .collect();
    let mut out = format!(
        "\n## {} against training length (mean over seeds)\n\n| method | η |",
        metric.title
    );
    for step in &steps {
        out += &format!(" {step} |");
    }
    out += "\n|---|---|";
    out += &"---|".repeat(steps.len());
    for method in &experiment.loss_names() {
        for &eta in &experiment.noise {
            let runs: Vec<&RunResult> = outcome
                .runs
                .iter()
                .filter(|r| &r.loss == method && r.noise == eta)
                .collect();
            out += &format!("\n| {method} | {eta} |");
            for step in &steps {
                let values: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.curve.iter().find(|p| p.step == *step))
                    .filter_map(metric.read)
                    .collect();
                if values.is_empty() {
                    out += " – |";
                } else {
                    out += &format!(" {:.3} |", mean_std(&values).0);
                }
            }
        }
    }
    out + "\n"
}
