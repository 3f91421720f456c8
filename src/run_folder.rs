//! A run folder has one writer and one run: `train` holds an exclusive lock on `OUT/.lock`
//! while it runs, refuses to start afresh in a folder that already holds something (unless
//! `--overwrite` clears a run folder ropo made, removing only what ropo wrote there), and
//! writes the config and environment it runs with. Every refusal comes before the lock file
//! is created, so a refused folder is left as it was.

use std::{
    fs::{File, OpenOptions, TryLockError},
    path::{Path, PathBuf},
};

use crate::train::{
    config::GoldExperiment, dataset_experiment::DatasetExperiment, store::write_atomic,
    trainer::TrainerConfig,
};

/// How a command enters its run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A new run: the folder must be missing or empty; with `overwrite`, a run folder ropo
    /// made may hold an earlier run, whose files (and only those) are removed first.
    Fresh {
        /// `--overwrite`.
        overwrite: bool,
    },
    /// `--resume`: continue the run a run folder ropo made holds.
    Resume,
}

/// A run folder this process writes: the lock on `.lock` is held until it is dropped or the
/// process ends, however it ends (the system releases it), so no lock outlives its run.
#[derive(Debug)]
pub struct RunFolder {
    _lock: File,
}

/// The name of the lock file inside a run folder.
const LOCK: &str = ".lock";

/// The record ropo writes into every run folder it creates, with `config.toml`: together they
/// mark a folder as ropo's (see [`not_a_run_folder`]).
const ENVIRONMENT: &str = "environment.json";

/// The files ropo writes in a run folder besides the plots ([`is_plot`]): the trainer's
/// (`crates/ropo-train/src/trainer_output.rs`), the experiments' (`report.rs`)
/// and this module's. `--overwrite` removes these, the plots, the folders of [`RUN_FOLDERS`]
/// and their interrupted temporary files, and nothing else.
const RUN_FILES: [&str; 7] = [
    "config.toml",
    ENVIRONMENT,
    "metrics.jsonl",
    "timing.jsonl",
    "summary.json",
    "report.md",
    "suspect_labels.jsonl",
];

/// The folders ropo writes in a run folder: the exported model, the model's interrupted write
/// and the checkpoints.
const RUN_FOLDERS: [&str; 3] = ["model", ".tmp-model", "checkpoints"];

/// Creates or opens `dir` as `entry` says, takes its lock, and writes `config.toml` (the
/// resolved `config`) and `environment.json`. Every refusal comes before anything is created
/// or locked in `dir`; `inputs` (the run's model, data and tokenizer paths) are never removed.
pub fn open_run_folder(
    dir: &Path,
    config: &impl serde::Serialize,
    seed: u64,
    entry: Entry,
    inputs: &[&Path],
) -> Result<RunFolder, Box<dyn std::error::Error>> {
    admit(dir, entry, inputs)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: cannot create the run folder: {e}", dir.display()))?;
    let lock_path = dir.join(LOCK);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: the run folder is not writable: {e}", dir.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(format!(
                "{}: another ropo run is writing to this folder (it holds {LOCK}); wait for it \
                 to finish, or choose another --out",
                dir.display()
            )
            .into())
        }
        Err(TryLockError::Error(e)) => {
            return Err(format!("{}: cannot lock: {e}", lock_path.display()).into())
        }
    }
    // Again under the lock: another run may have written here since the first look.
    for path in admit(dir, entry, inputs)? {
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| format!("{}: cannot remove: {e}", path.display()))?;
    }
    let config = toml::to_string_pretty(config)?;
    let libraries: serde_json::Map<String, serde_json::Value> = env!("ROPO_LIBRARY_VERSIONS")
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, version)| (name.to_string(), version.into()))
        .collect();
    let environment = serde_json::json!({
        "seed": seed,
        "backend": crate::backend::NAME,
        "matmul_precision": match crate::backend::products_precision() {
            crate::models::product::MatmulPrecision::F32 => "f32",
            crate::models::product::MatmulPrecision::Bf16 => "bf16",
        },
        "ropo": env!("CARGO_PKG_VERSION"),
        "libraries": libraries,
        "rustc": env!("ROPO_RUSTC_VERSION"),
        "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
    });
    // The record first: a folder with a config.toml then always has it, however the run ends.
    write_atomic(
        &dir.join(ENVIRONMENT),
        &serde_json::to_string_pretty(&environment)?,
    )?;
    write_atomic(&dir.join("config.toml"), &config)?;
    Ok(RunFolder { _lock: lock })
}

/// Whether `entry` may enter `dir`, looking only: the paths `--overwrite` will remove (ropo's
/// own files of an earlier run), or the reason it may not. A fresh run needs a missing or
/// empty folder, or with `--overwrite` a run folder ropo made whose removed files hold none of
/// `inputs`; `--resume` needs a run folder ropo made.
fn admit(
    dir: &Path,
    entry: Entry,
    inputs: &[&Path],
) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    // A folder that cannot be looked at is not there yet, or cannot be created: creating it
    // says which, naming the folder.
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(Vec::new());
    };
    if !meta.is_dir() {
        return Err(format!(
            "{}: exists and is not a folder; choose another --out",
            dir.display()
        )
        .into());
    }
    let canonical = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let inputs: Vec<(&Path, PathBuf)> = inputs
        .iter()
        .filter_map(|input| Some((*input, std::fs::canonicalize(input).ok()?)))
        .collect();
    if let Some((input, _)) = inputs.iter().find(|(_, path)| *path == canonical) {
        return Err(format!(
            "{}: is the input {} (a run writes its own folder); choose another --out",
            dir.display(),
            input.display()
        )
        .into());
    }
    let held = contents(dir)?;
    let overwrite = match entry {
        Entry::Resume => {
            return match not_a_run_folder(dir) {
                Some(reason) => Err(format!(
                    "{}: --resume continues a run folder ropo made, and this one {reason}",
                    dir.display()
                )
                .into()),
                None => Ok(Vec::new()),
            }
        }
        Entry::Fresh { overwrite } => overwrite,
    };
    if held.is_empty() {
        return Ok(Vec::new());
    }
    if !overwrite {
        return Err(format!(
            "{}: already holds {} (a run folder is for one run); continue that run with \
             --resume {0}, clear it with --overwrite, or choose another --out",
            dir.display(),
            names(&held)
        )
        .into());
    }
    if let Some(reason) = not_a_run_folder(dir) {
        return Err(format!(
            "{}: --overwrite clears only a run folder ropo made (its config.toml and \
             {ENVIRONMENT}), and this one {reason} ({}); nothing was removed, choose another \
             --out",
            dir.display(),
            names(&held)
        )
        .into());
    }
    let removed: Vec<PathBuf> = held.into_iter().filter(|path| is_run_entry(path)).collect();
    for path in &removed {
        let Ok(inside) = std::fs::canonicalize(path) else {
            continue;
        };
        if let Some((input, _)) = inputs.iter().find(|(_, p)| p.starts_with(&inside)) {
            return Err(format!(
                "{}: --overwrite would remove {}, which holds the input {}; nothing was \
                 removed, choose another --out",
                dir.display(),
                path.display(),
                input.display()
            )
            .into());
        }
    }
    Ok(removed)
}

/// Why `dir` is not a run folder ropo made (`None` when it is): ropo writes `environment.json`
/// (an object with the run's seed, backend and rustc) and a `config.toml` that reads back as a
/// trainer or experiment config into every run folder it creates, and a folder without both is
/// someone else's, whatever its files are called.
fn not_a_run_folder(dir: &Path) -> Option<String> {
    let config = dir.join("config.toml");
    let Ok(text) = std::fs::read_to_string(&config) else {
        return Some("holds no config.toml".into());
    };
    let is_config = toml::from_str::<TrainerConfig>(&text).is_ok()
        || toml::from_str::<GoldExperiment>(&text).is_ok()
        || toml::from_str::<DatasetExperiment>(&text).is_ok();
    if !is_config {
        return Some("holds a config.toml that is not a ropo trainer or experiment config".into());
    }
    let environment = std::fs::read_to_string(dir.join(ENVIRONMENT))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
    let is_ropos = environment.is_some_and(|e| {
        e.get("seed").is_some_and(serde_json::Value::is_u64)
            && e.get("backend").is_some_and(serde_json::Value::is_string)
            && e.get("rustc").is_some_and(serde_json::Value::is_string)
    });
    if !is_ropos {
        return Some(format!("holds no {ENVIRONMENT} that ropo wrote"));
    }
    None
}

/// Whether `path`, an entry of a run folder, is one ropo writes there: a file of
/// [`RUN_FILES`], a plot, a folder of [`RUN_FOLDERS`], or the temporary file of an
/// interrupted write of one of them (`NAME.tmp`, as `write_atomic` names it).
fn is_run_entry(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let meta = std::fs::symlink_metadata(path);
    if meta.as_ref().is_ok_and(std::fs::Metadata::is_dir) {
        return RUN_FOLDERS.contains(&name);
    }
    if !meta.is_ok_and(|m| m.is_file()) {
        return false;
    }
    if RUN_FILES.contains(&name) || is_plot(name) {
        return true;
    }
    name.strip_suffix(".tmp").is_some_and(|stem| {
        RUN_FILES
            .iter()
            .any(|file| Path::new(file).file_stem().is_some_and(|s| s == stem))
            || is_plot(&format!("{stem}.svg"))
    })
}

/// Whether `name` is a plot ropo writes: the trainer's `loss.svg`, `accuracy.svg` and
/// `margin.svg`; an experiment's `METRIC_vs_noise.svg`, `curves.svg`, `curves-METRIC.svg` and
/// `losses-METHOD-etaN-roundN.svg`.
fn is_plot(name: &str) -> bool {
    name.strip_suffix(".svg").is_some_and(|stem| {
        ["loss", "accuracy", "margin", "curves"].contains(&stem)
            || stem.ends_with("_vs_noise")
            || stem.starts_with("curves-")
            || stem.starts_with("losses-")
    })
}

/// Everything in `dir` but its lock file, sorted.
fn contents(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut held = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if entry.file_name() != LOCK {
            held.push(entry.path());
        }
    }
    held.sort();
    Ok(held)
}

/// The first few of `paths` by file name, for a message.
fn names(paths: &[PathBuf]) -> String {
    let mut shown: Vec<String> = paths
        .iter()
        .take(3)
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    if paths.len() > 3 {
        shown.push(format!("and {} more", paths.len() - 3));
    }
    shown.join(", ")
}
