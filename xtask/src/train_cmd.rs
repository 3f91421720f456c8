//! `cargo xtask train`: the main job — the built-in noisy-preference experiment, or one given
//! by a TOML config.

use std::{path::PathBuf, time::Instant};

use ropo::backend::Training;
use ropo::models::text_file::read_settings;
use ropo::train::{
    config::GoldExperiment,
    dataset_experiment::DatasetExperiment,
    loss_entry::LossEntry,
    records::Progress,
    report::{metrics_lines, timing_lines, write_run_folder},
    store::{fault, write_atomic},
    TrainError,
};

use crate::{
    align_cmd,
    run_folder::open_run_folder,
    train_args::{
        anchor, entry, one_line, progress_bar, ExperimentKind, NoiseModelChoice, TrainArgs,
    },
    CmdResult,
};

impl TrainArgs {
    /// Applies the command-line overrides to the fields every experiment has.
    fn override_into(
        &self,
        losses: &mut Vec<LossEntry>,
        noise: &mut Vec<f64>,
        seeds: &mut u64,
        steps: &mut usize,
    ) {
        if let Some(value) = &self.losses {
            *losses = value
                .iter()
                .map(|name| LossEntry::from(name.as_str()))
                .collect();
        }
        if let Some(value) = &self.noise {
            noise.clone_from(value);
        }
        if let Some(value) = self.seeds {
            *seeds = value;
        }
        if let Some(value) = self.steps {
            *steps = value;
        }
    }
}

/// Runs the experiment, writes the run folder and prints the result tables. `trainer_flags`:
/// the trainer's flags given on the command line, which only the trainer takes.
pub fn run(args: &TrainArgs, trainer_flags: &[String]) -> CmdResult {
    if args.stop_after_steps == Some(0) {
        return Err(
            "--stop-after-steps: must be at least 1 (leave it out to run to the end)".into(),
        );
    }
    if let Some(fault) = &args.fault {
        fault::plan(fault.parse()?)?;
    }
    let resumed = args
        .resume
        .as_ref()
        .map(|folder| folder.join("config.toml"));
    if let Some(path) = args.config.as_ref().or(resumed.as_ref()) {
        let text = read_settings(path)?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| format!("{}: {}", path.display(), one_line(&e.to_string())))?;
        if align_cmd::wanted(args, Some(&table)) {
            return align_cmd::run(args);
        }
        if table.contains_key("dataset") {
            refuse_trainer_flags(trainer_flags, "a [dataset] comparison")?;
            return run_dataset(args, path, &text);
        }
    } else if align_cmd::wanted(args, None) {
        return align_cmd::run(args);
    }
    refuse_trainer_flags(trainer_flags, "the gold experiment")?;
    let (experiment, out) = match &args.resume {
        Some(folder) => (read_config(&folder.join("config.toml"))?, folder.clone()),
        None => {
            let out = match args.experiment {
                Some(kind) if args.out == std::path::Path::new("runs/gold") => {
                    PathBuf::from(kind.folder())
                }
                _ => args.out.clone(),
            };
            (resolve(args)?, out)
        }
    };
    experiment
        .validate()
        .map_err(|e| in_config(config_file(args).as_deref(), e))?;
    let _folder = open_run_folder(&out, &experiment, experiment.seed, entry(args), &[])?;
    let steps_per_seed: usize = experiment
        .losses
        .iter()
        .map(|entry| experiment.preference_steps(entry))
        .sum();
    let total = (experiment.sft.steps
        + steps_per_seed * experiment.noise.len() * experiment.seeds as usize)
        as u64;
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let bar = progress_bar(total, args.quiet, "");
    let start = Instant::now();
    let mut current = String::new();
    let outcome = experiment.run::<Training>(&Default::default(), Some(&out), (args.stop_after_steps, jobs), &mut |progress| match progress {
        Progress::Sft { step, total: steps, loss } => {
            bar.inc(1);
            bar.set_message(format!("sft {step}/{steps} loss {loss:.3}"));
        }
        Progress::RunStarted { index, total, method, noise, seed } => {
            current = format!("run {}/{total} {method} η={noise} seed={seed}", index + 1);
        }
        Progress::Step(s) => {
            bar.inc(1);
            bar.set_message(format!(
                "{current} | loss {:.3} acc {:.2} lr {:.1e} {:.0} tok/s",
                s.loss, s.accuracy, s.lr, s.tokens_per_s
            ));
        }
        Progress::Warning(warning) => bar.suspend(|| eprintln!("warning: {warning}")),
        Progress::Stage(stage) => bar.suspend(|| eprintln!("{stage}")),
        Progress::Scoring { pass, done, total } => {
            bar.set_message(format!("{pass} {done}/{total} pairs"))
        }
        Progress::Evaluated(_) => {}
        Progress::RunFinished(r) => {
            if args.quiet {
                eprintln!(
                    "{:.0}s {} η={} seed={}: clean accuracy {:.3}, gold reward {:.3}, win rate {:.3}",
                    start.elapsed().as_secs_f64(),
                    r.loss,
                    r.noise,
                    r.seed,
                    r.clean_accuracy,
                    r.gold_reward,
                    r.gold_win_rate
                );
            }
        }
    });
    bar.finish_and_clear();
    let outcome = match outcome {
        Err(TrainError::Stopped(steps)) => {
            println!(
                "stopped after {steps} preference steps; continue with: cargo xtask train --resume {}",
                out.display()
            );
            return Ok(());
        }
        other => other?,
    };
    let wall = start.elapsed().as_secs_f64();
    let summary = write_run_folder(&out, &experiment, &outcome, wall)?;
    for metric in ["gold_win_rate", "clean_accuracy"] {
        println!(
            "{}",
            summary.table((&experiment.loss_names(), &experiment.noise), metric)
        );
    }
    println!(
        "{} runs in {wall:.0} s; report, plots, metrics.jsonl and summary.json in {}",
        outcome.runs.len(),
        out.display()
    );
    Ok(())
}

/// Refuses the trainer's flags in an experiment (`mode`), which takes its settings from its
/// config, as the trainer refuses the experiments' flags (`--losses`, `--seeds`, …).
fn refuse_trainer_flags(trainer_flags: &[String], mode: &str) -> CmdResult {
    match trainer_flags {
        [] => Ok(()),
        flags => Err(format!(
            "{} belong{} to the trainer (with --model and --data); {mode} takes its settings \
             from a --config file (e.g. [preference] warmup, lr; docs/training.md)",
            flags.join(", "),
            if flags.len() == 1 { "s" } else { "" }
        )
        .into()),
    }
}

/// A real-data experiment (`[dataset]` in the config): SFT, then each loss and noise rate,
/// judged by clean held-out accuracy.
fn run_dataset(args: &TrainArgs, path: &std::path::Path, text: &str) -> CmdResult {
    if let Some(folder) = &args.resume {
        return Err(format!(
            "--resume {0}: a [dataset] comparison keeps no checkpoints; run it again with \
             --config {1} --out {0}",
            folder.display(),
            path.display()
        )
        .into());
    }
    for (given, flag) in [
        (args.stop_after_steps.is_some(), "--stop-after-steps"),
        (args.experiment.is_some(), "--experiment"),
        (args.scorer.is_some(), "--scorer"),
        (args.round_schedule.is_some(), "--round-schedule"),
        (args.noise_model.is_some(), "--noise-model"),
        (args.jobs.is_some(), "--jobs"),
    ] {
        if given {
            return Err(format!(
                "{flag} does not apply to a [dataset] comparison ({}), which keeps no \
                 checkpoints, trains its runs one after another with symmetric noise and no \
                 data step",
                path.display()
            )
            .into());
        }
    }
    let mut experiment: DatasetExperiment = toml::from_str(text)
        .map_err(|e| format!("{}: {}", path.display(), one_line(&e.to_string())))?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    for file in [
        &mut experiment.dataset.model,
        &mut experiment.dataset.tokenizer,
        &mut experiment.dataset.pairs,
    ] {
        anchor(file, base);
    }
    args.override_into(
        &mut experiment.losses,
        &mut experiment.noise,
        &mut experiment.seeds,
        &mut experiment.preference.steps,
    );
    experiment
        .validate()
        .map_err(|e| in_config(Some(path), e))?;
    let source = &experiment.dataset;
    let _folder = open_run_folder(
        &args.out,
        &experiment,
        source.split_seed,
        entry(args),
        &[&source.model, &source.tokenizer, &source.pairs],
    )?;
    let start = Instant::now();
    let (counts, runs) = experiment.run::<Training>(&Default::default(), &mut |progress| {
        if let Progress::RunStarted {
            index,
            total,
            method,
            noise,
            seed,
        } = progress
        {
            eprintln!(
                "{:.0}s run {}/{total}: {method} η={noise} seed={seed}",
                start.elapsed().as_secs_f64(),
                index + 1
            );
        }
    })?;
    let wall = start.elapsed().as_secs_f64();
    let summary = experiment.summarise(&runs);
    let names = ropo::train::loss_entry::names(&experiment.losses);
    let table = summary.table((&names, &experiment.noise), "clean_accuracy");
    let histories = || {
        runs.iter()
            .map(|r| (r.loss.as_str(), r.noise, r.seed, r.history.as_slice()))
    };
    write_atomic(&args.out.join("metrics.jsonl"), &metrics_lines(histories()))?;
    write_atomic(&args.out.join("timing.jsonl"), &timing_lines(histories()))?;
    let summary = serde_json::json!({ "results": summary.results, "data": counts });
    write_atomic(
        &args.out.join("summary.json"),
        &serde_json::to_string_pretty(&summary)?,
    )?;
    let report = format!(
        "# {}\n\n{} pairs read, {} dropped (prompt over budget), {} train, {} held out; \
         wall time {wall:.0} s.\n\n{table}\n",
        path.display(),
        counts.read,
        counts.dropped,
        counts.train,
        counts.heldout
    );
    write_atomic(&args.out.join("report.md"), &report)?;
    println!(
        "{table}\n\n{} runs in {wall:.0} s; run folder {}",
        runs.len(),
        args.out.display()
    );
    Ok(())
}

/// The experiment: the config file (`--config`, a preset's, or the default) with the
/// command-line overrides applied.
fn resolve(args: &TrainArgs) -> Result<GoldExperiment, Box<dyn std::error::Error>> {
    let mut experiment = match (&args.config, args.experiment) {
        (Some(path), _) => read_config(path)?,
        (None, Some(kind)) => {
            let (name, text) = kind.preset();
            toml::from_str::<GoldExperiment>(text)
                .map_err(|e| format!("{name}: {}", one_line(&e.to_string())))?
        }
        (None, None) => GoldExperiment::default(),
    };
    check_flags(args, &experiment.preference)?;
    args.override_into(
        &mut experiment.losses,
        &mut experiment.noise,
        &mut experiment.seeds,
        &mut experiment.preference.steps,
    );
    match (args.experiment, args.noise_model) {
        (Some(ExperimentKind::Practical), Some(NoiseModelChoice::Symmetric)) => {
            return Err(
                "--experiment practical is the grid under bradley_terry noise; drop \
                        --noise-model symmetric"
                    .into(),
            )
        }
        (_, Some(model)) => experiment.noise_model = model.into(),
        (_, None) => {}
    }
    if let Some(scorer) = args.scorer {
        experiment.framework.scorer = scorer.into();
    }
    if let Some(schedule) = args.round_schedule {
        experiment.framework.schedule = schedule.into();
    }
    Ok(experiment)
}

/// Checks the values of the flags that override a config, so that an error names the flag
/// and not the config file it overrides.
fn check_flags(
    args: &TrainArgs,
    preference: &ropo::train::config::PreferenceStage,
) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(eta) = args
        .noise
        .iter()
        .flatten()
        .find(|eta| !(0.0..0.5).contains(*eta))
    {
        return Err(format!("--noise: rate {eta} must be in [0, 0.5)").into());
    }
    for name in args.losses.iter().flatten() {
        LossEntry::from(name.as_str())
            .loss(&preference.loss)
            .map_err(|e| format!("--losses: {e}"))?;
    }
    if args.steps == Some(0) || args.seeds == Some(0) || args.jobs == Some(0) {
        return Err("--steps, --seeds and --jobs: must be at least 1".into());
    }
    Ok(())
}

fn read_config(path: &std::path::Path) -> Result<GoldExperiment, Box<dyn std::error::Error>> {
    let text = read_settings(path)?;
    Ok(toml::from_str::<GoldExperiment>(&text)
        .map_err(|e| format!("{}: {}", path.display(), one_line(&e.to_string())))?)
}

/// The config file the experiment comes from: the run folder's on resume, else `--config`.
fn config_file(args: &TrainArgs) -> Option<PathBuf> {
    match &args.resume {
        Some(folder) => Some(folder.join("config.toml")),
        None => args.config.clone(),
    }
}

/// A validation error, prefixed with the config file it is about (when there is one).
fn in_config(path: Option<&std::path::Path>, error: TrainError) -> Box<dyn std::error::Error> {
    match path {
        Some(path) => format!("{}: {error}", path.display()).into(),
        None => error.into(),
    }
}
