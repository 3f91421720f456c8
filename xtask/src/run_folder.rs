//! A run folder has one writer and one run: `train` holds an exclusive lock on `OUT/.lock`
//! while it runs, refuses to start afresh in a folder that already holds something (unless
//! `--overwrite` clears a run folder), and writes the config and environment it runs with.

use std::{
    fs::{File, OpenOptions, TryLockError},
    path::{Path, PathBuf},
};

use ropo::train::store::write_atomic;

/// How a command enters its run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A new run: the folder must be missing or empty; with `overwrite`, a run folder's
    /// contents (it holds `config.toml`) are removed first.
    Fresh {
        /// `--overwrite`.
        overwrite: bool,
    },
    /// `--resume`: continue what the folder holds.
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

/// Creates or opens `dir` as `entry` says, takes its lock, and writes `config.toml` (the
/// resolved `config`) and `environment.json`.
pub fn open_run_folder(
    dir: &Path,
    config: &impl serde::Serialize,
    seed: u64,
    entry: Entry,
) -> Result<RunFolder, Box<dyn std::error::Error>> {
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
    if let Entry::Fresh { overwrite } = entry {
        let held = contents(dir)?;
        if !held.is_empty() {
            if !overwrite {
                return Err(format!(
                    "{}: already holds {} (a run folder is for one run); continue that run with \
                     --resume {0}, clear it with --overwrite, or choose another --out",
                    dir.display(),
                    names(&held)
                )
                .into());
            }
            if !dir.join("config.toml").is_file() {
                return Err(format!(
                    "{}: --overwrite clears run folders only, and this one holds no config.toml \
                     ({}); choose another --out",
                    dir.display(),
                    names(&held)
                )
                .into());
            }
            for path in held {
                let removed = if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|e| format!("{}: cannot remove: {e}", path.display()))?;
            }
        }
    }
    write_atomic(&dir.join("config.toml"), &toml::to_string_pretty(config)?)?;
    let libraries: serde_json::Map<String, serde_json::Value> = env!("ROPO_LIBRARY_VERSIONS")
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, version)| (name.to_string(), version.into()))
        .collect();
    let environment = serde_json::json!({
        "seed": seed,
        "backend": ropo::backend::NAME,
        "ropo": env!("CARGO_PKG_VERSION"),
        "libraries": libraries,
        "rustc": env!("ROPO_RUSTC_VERSION"),
        "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
    });
    write_atomic(
        &dir.join("environment.json"),
        &serde_json::to_string_pretty(&environment)?,
    )?;
    Ok(RunFolder { _lock: lock })
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
