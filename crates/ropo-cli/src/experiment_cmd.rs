//! `ropo experiment gold|practical|length`: the gold-reward grid of a config file, a preset
//! or the default, with the command line's overrides; writes the run folder and prints the
//! result tables.

use std::{path::Path, time::Instant};

use ropo::backend::Training;
use ropo::run_folder::open_run_folder;
use ropo::train::{
    config::GoldExperiment, loss_entry::LossEntry, records::Progress, report::write_run_folder,
    TrainError,
};

use crate::{
    choices::NoiseModelChoice,
    dataset_cmd,
    experiment_args::{ExperimentCommand, GridFlags, Preset},
    progress_bar::GridProgress,
    run_flags::entry,
    settings::{in_config, parse_toml, read_toml},
    CmdResult,
};

/// Runs the experiment `command` names.
pub fn run(command: &ExperimentCommand) -> CmdResult {
    match command {
        ExperimentCommand::Gold(args) => run_grid(&args.grid, args.config.as_deref(), None),
        ExperimentCommand::Practical(flags) => run_grid(flags, None, Some(Preset::Practical)),
        ExperimentCommand::Length(flags) => run_grid(flags, None, Some(Preset::Length)),
        ExperimentCommand::Dataset(args) => dataset_cmd::run(args),
    }
}

/// Runs a gold-reward grid: `config` (a file), `preset` or the default, under `flags`; or, with
/// `--resume`, the run in that folder as its config.toml has it.
fn run_grid(flags: &GridFlags, config: Option<&Path>, preset: Option<Preset>) -> CmdResult {
    flags.session.prepare()?;
    let (experiment, out, source) = match &flags.resume {
        Some(folder) => {
            let source = folder.join("config.toml");
            (read_toml(&source)?, folder.clone(), Some(source))
        }
        None => {
            let default = preset.map_or("runs/gold", Preset::folder);
            let experiment = resolve(flags, config, preset)?;
            (
                experiment,
                flags.output.folder(default),
                config.map(Path::to_path_buf),
            )
        }
    };
    experiment
        .validate()
        .map_err(|e| in_config(source.as_deref(), e))?;
    let _folder = open_run_folder(
        &out,
        &experiment,
        experiment.seed,
        entry(flags.resume.as_deref(), &flags.output),
        &[],
    )?;
    let steps_per_seed: usize = experiment
        .losses
        .iter()
        .map(|entry| experiment.preference_steps(entry))
        .sum();
    let total = (experiment.sft.steps
        + steps_per_seed * experiment.noise.len() * experiment.seeds as usize)
        as u64;
    let jobs = flags.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let mut shown = GridProgress::new(total, flags.output.quiet);
    let start = Instant::now();
    let outcome = experiment.run::<Training>(
        &Default::default(),
        Some(&out),
        (flags.session.stop_after_steps, jobs),
        &mut |progress| {
            shown.show(&progress);
            if let (Progress::RunFinished(r), true) = (&progress, flags.output.quiet) {
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
        },
    );
    shown.bar.finish_and_clear();
    let outcome = match outcome {
        Err(TrainError::Stopped(steps)) => {
            println!(
                "stopped after {steps} preference steps; continue with --resume {}",
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

/// The experiment: `config`, the preset's or the default, with the command-line overrides
/// applied.
fn resolve(
    flags: &GridFlags,
    config: Option<&Path>,
    preset: Option<Preset>,
) -> Result<GoldExperiment, Box<dyn std::error::Error>> {
    let mut experiment = match (config, preset) {
        (Some(path), _) => read_toml(path)?,
        (None, Some(preset)) => {
            let (name, text) = preset.config();
            parse_toml(name, text)?
        }
        (None, None) => GoldExperiment::default(),
    };
    check_flags(flags, &experiment.preference)?;
    flags.grid.override_into(
        &mut experiment.losses,
        &mut experiment.noise,
        &mut experiment.seeds,
        &mut experiment.preference.steps,
    );
    match (preset, flags.noise_model) {
        (Some(Preset::Practical), Some(NoiseModelChoice::Symmetric)) => {
            return Err(
                "experiment practical is the grid under bradley_terry noise; drop \
                 --noise-model symmetric"
                    .into(),
            )
        }
        (_, Some(model)) => experiment.noise_model = model.into(),
        (_, None) => {}
    }
    if let Some(scorer) = flags.framework.scorer {
        experiment.framework.scorer = scorer.into();
    }
    if let Some(schedule) = flags.framework.round_schedule {
        experiment.framework.schedule = schedule.into();
    }
    Ok(experiment)
}

/// Checks the values of the flags that override a config, so that an error names the flag
/// and not the config file it overrides.
fn check_flags(
    flags: &GridFlags,
    preference: &ropo::train::config::PreferenceStage,
) -> Result<(), Box<dyn std::error::Error>> {
    let grid = &flags.grid;
    if let Some(eta) = grid
        .noise
        .iter()
        .flatten()
        .find(|eta| !(0.0..0.5).contains(*eta))
    {
        return Err(format!("--noise: rate {eta} must be in [0, 0.5)").into());
    }
    for name in grid.losses.iter().flatten() {
        LossEntry::from(name.as_str())
            .loss(&preference.loss)
            .map_err(|e| format!("--losses: {e}"))?;
    }
    if grid.steps == Some(0) || grid.seeds == Some(0) || flags.jobs == Some(0) {
        return Err("--steps, --seeds and --jobs: must be at least 1".into());
    }
    Ok(())
}
