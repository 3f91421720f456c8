//! `ropo experiment dataset`: a comparison on real pairs (`[dataset]` in the config): SFT,
//! then each loss and noise rate, judged by clean held-out accuracy; ropo-train's
//! `write_dataset_folder` writes the folder.

use std::{path::Path, time::Instant};

use ropo::backend::Training;
use ropo::paths::anchor;
use ropo::run_folder::open_run_folder;
use ropo::train::{
    dataset_experiment::DatasetExperiment, records::Progress, report::write_dataset_folder,
};

use crate::{
    experiment_args::DatasetArgs,
    run_flags::entry,
    settings::{in_config, read_toml},
    CmdResult,
};

/// Runs the comparison and writes its folder: `metrics.jsonl`, `timing.jsonl`, `summary.json`
/// and `report.md`.
pub fn run(args: &DatasetArgs) -> CmdResult {
    let path = args.config.as_path();
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
    experiment
        .validate()
        .map_err(|e| in_config(Some(path), e))?;
    let out = args.output.folder(default_folder(path));
    let source = &experiment.dataset;
    let _folder = open_run_folder(
        &out,
        &experiment,
        source.split_seed,
        entry(None, &args.output),
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
    let title = path.display().to_string();
    let table = write_dataset_folder(&out, &title, &experiment, (&counts, &runs), wall)?;
    println!(
        "{table}\n\n{} runs in {wall:.0} s; run folder {}",
        runs.len(),
        out.display()
    );
    Ok(())
}

/// The run folder when `--out` is not given: `runs/` and the config file's name without its
/// extension.
fn default_folder(config: &Path) -> std::path::PathBuf {
    let name = config.file_stem().unwrap_or_else(|| "dataset".as_ref());
    Path::new("runs").join(name)
}
