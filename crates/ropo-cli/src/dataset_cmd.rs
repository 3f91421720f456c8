//! `ropo experiment dataset`: a comparison on real pairs (`[dataset]` in the config): SFT,
//! then each method and noise rate, judged by clean held-out accuracy and flip detection;
//! ropo-train's `write_dataset_folder` writes the folder. Finished runs are kept in the run
//! folder's `checkpoints/`, so running the same command again continues an interrupted grid.

use std::{path::Path, time::Instant};

use ropo::backend::Training;
use ropo::paths::anchor;
use ropo::run_folder::open_run_folder;
use ropo::train::{
    dataset_experiment::DatasetExperiment, records::Progress, report::write_dataset_folder,
};

use crate::{
    experiment_args::DatasetArgs,
    progress_bar::GridProgress,
    run_flags::entry,
    settings::{in_config, read_toml},
    CmdResult,
};

/// Runs the comparison (the runs not yet finished in the run folder) and writes its folder:
/// `metrics.jsonl`, `timing.jsonl`, `summary.json`, `suspect_labels.jsonl` and `report.md`.
pub fn run(args: &DatasetArgs) -> CmdResult {
    let (experiment, out, source) = match (&args.resume, &args.config) {
        (Some(folder), _) => {
            let source = folder.join("config.toml");
            (read_toml(&source)?, folder.clone(), source)
        }
        (None, Some(path)) => (
            from_config(args, path)?,
            args.output.folder(default_folder(path)),
            path.clone(),
        ),
        (None, None) => {
            return Err("experiment dataset: give --config FILE or --resume FOLDER".into())
        }
    };
    experiment
        .validate()
        .map_err(|e| in_config(Some(&source), e))?;
    let data = &experiment.dataset;
    let _folder = open_run_folder(
        &out,
        &experiment,
        data.split_seed,
        entry(args.resume.as_deref(), &args.output),
        &[&data.model, &data.tokenizer, &data.pairs],
    )?;
    let start = Instant::now();
    let store = out.join("checkpoints");
    let device = Default::default();
    let mut shown = GridProgress::new(experiment.total_steps(), args.output.quiet);
    let outcome = experiment.run::<Training>(&device, Some(&store), &mut |progress| {
        shown.show(&progress);
        let started = match &progress {
            Progress::RunStarted {
                index,
                total,
                method,
                noise,
                seed,
            } if args.output.quiet => {
                format!("run {}/{total}: {method} η={noise} seed={seed}", index + 1)
            }
            _ => return,
        };
        eprintln!("{:.0}s {started}", start.elapsed().as_secs_f64());
    });
    shown.bar.finish_and_clear();
    let (counts, runs) = outcome?;
    let wall = start.elapsed().as_secs_f64();
    let title = source.display().to_string();
    let table = write_dataset_folder(&out, &title, &experiment, (&counts, &runs), wall)?;
    println!(
        "{table}\n\n{} runs in {wall:.0} s; run folder {}",
        runs.len(),
        out.display()
    );
    Ok(())
}

/// The experiment of a config file: its paths read against the file's folder, the command
/// line's overrides applied.
fn from_config(
    args: &DatasetArgs,
    path: &Path,
) -> Result<DatasetExperiment, Box<dyn std::error::Error>> {
    let mut experiment: DatasetExperiment = read_toml(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    for file in [
        &mut experiment.dataset.model,
        &mut experiment.dataset.tokenizer,
        &mut experiment.dataset.pairs,
    ] {
        anchor(file, base);
    }
    args.grid.override_into(
        &mut experiment.losses,
        &mut experiment.noise,
        &mut experiment.seeds,
        &mut experiment.preference.steps,
    );
    if let Some(model) = args.noise_model {
        experiment.noise_model = model.into();
    }
    Ok(experiment)
}

/// The run folder when `--out` is not given: `runs/` and the config file's name without its
/// extension.
fn default_folder(config: &Path) -> std::path::PathBuf {
    let name = config.file_stem().unwrap_or_else(|| "dataset".as_ref());
    Path::new("runs").join(name)
}
