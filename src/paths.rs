//! What a path in a config file or on a command line names. A relative path in a config file
//! is read against the config's folder ([`anchor`]). A Hub id stands where a path may:
//! `--model Qwen/Qwen2.5-0.5B-Instruct`, `--data trl-lib/ultrafeedback_binarized`. A path that
//! exists is a path; otherwise text of the form `org/name[@revision]` is fetched into the
//! shared Hugging Face cache (see `ropo_hub`) and replaced by its snapshot folder, so
//! everything after reads local files and a run's `config.toml` records the exact commit it
//! used.

use std::path::{Path, PathBuf};

use crate::data::formats::is_data_file;
use crate::hub::{model_files, Hub, HubId, RepoKind};

/// Makes a path a config names absolute, resolving a relative one against `base` (the config
/// file's folder; empty for the current folder). An empty path stays empty, for validation to
/// name, and a Hub id (`org/name[@rev]` where no such path exists) stays as it is, for
/// [`fetch_model`] and [`fetch_dataset`] to fetch.
pub fn anchor(path: &mut PathBuf, base: &Path) {
    if path.as_os_str().is_empty() || is_hub_id(path, base) {
        return;
    }
    let joined = base.join(&*path);
    *path = std::path::absolute(&joined).unwrap_or(joined);
}

/// Whether `path`, as a config or flag gives it, is a Hub id: nothing exists at
/// `base/path` and it reads as `org/name[@revision]`.
pub fn is_hub_id(path: &Path, base: &Path) -> bool {
    hub_id(path, base).is_some()
}

fn hub_id(path: &Path, base: &Path) -> Option<HubId> {
    if base.join(path).exists() {
        return None;
    }
    HubId::parse(path.to_str()?)
}

/// Replaces a Hub id at `path` by the snapshot folder of the model repository it names
/// (config, tokenizer files, safetensors weights, PEFT adapter files; never pickles).
pub fn fetch_model(path: &mut PathBuf, quiet: bool) -> Result<(), String> {
    fetch(path, RepoKind::Model, &model_files, quiet)
}

/// Replaces a Hub id at `path` by the snapshot folder of the dataset repository it names,
/// holding the data files (parquet, JSONL) of `split`; with no split given, `train` (TRL's
/// default), written into `split` so that only its files are read from the shared snapshot.
pub fn fetch_dataset(
    path: &mut PathBuf,
    split: &mut Option<String>,
    quiet: bool,
) -> Result<(), String> {
    if hub_id(path, Path::new("")).is_none() {
        return Ok(());
    }
    let split = split.get_or_insert_with(|| "train".to_owned()).clone();
    let wanted = |name: &str| is_data_file(Path::new(name), Some(&split));
    fetch(path, RepoKind::Dataset, &wanted, quiet)
}

fn fetch(
    path: &mut PathBuf,
    kind: RepoKind,
    wanted: &dyn Fn(&str) -> bool,
    quiet: bool,
) -> Result<(), String> {
    let Some(id) = hub_id(path, Path::new("")) else {
        return Ok(());
    };
    let hub = Hub::from_env(!quiet).map_err(|e| e.to_string())?;
    let snapshot = hub.snapshot(&id, kind, wanted).map_err(|e| {
        format!(
            "{}: no such file or folder here, and as a Hub id: {e}",
            path.display()
        )
    })?;
    if !quiet {
        eprintln!("{id}: {}", snapshot.display());
    }
    *path = snapshot;
    Ok(())
}
