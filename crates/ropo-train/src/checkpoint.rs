//! Checkpoints of a preference run: the model and the optimiser's moments in burn's
//! full-precision record format (which keeps parameter ids, so moments reattach to their
//! parameters), and a JSON manifest with the schedule position, data cursor and metrics so far.
//! A checkpoint is written into a temporary folder that is renamed into place, so a crash
//! never leaves a half-written one; only the newest `keep` are kept.

use std::path::{Path, PathBuf};

use burn::{
    module::Module,
    record::{FullPrecisionSettings, NamedMpkFileRecorder},
    tensor::backend::AutodiffBackend,
};
use ropo_data::batches::BatchCursor;
use ropo_models::CausalLm;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    experiment::{CurvePoint, StepRecord},
    optim::Trainer,
    TrainError,
};

/// Where a run stands, besides its weights and moments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Optimiser steps done.
    pub step: usize,
    /// The batch sampler's position.
    pub cursor: BatchCursor,
    /// Training metrics so far.
    pub history: Vec<StepRecord>,
    /// Validation curve so far.
    pub curve: Vec<CurvePoint>,
}

/// Saves a checkpoint at `folder/step-{step:06}`, then deletes all but the newest `keep`.
pub fn save<B: AutodiffBackend>(
    folder: &Path,
    model: &CausalLm<B>,
    trainer: &Trainer<CausalLm<B>, B>,
    manifest: &Manifest,
    keep: usize,
) -> Result<(), TrainError> {
    let target = folder.join(format!("step-{:06}", manifest.step));
    let tmp = folder.join(format!(".tmp-step-{:06}", manifest.step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    model
        .clone()
        .save_file(tmp.join("model"), &recorder())
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", tmp.display())))?;
    trainer.save_state(&tmp.join("optimizer"))?;
    let text = serde_json::to_string(manifest).unwrap_or_default();
    std::fs::write(tmp.join("manifest.json"), text).map_err(TrainError::io(&tmp))?;
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&tmp, &target).map_err(TrainError::io(&target))?;
    let mut all = checkpoints(folder);
    while all.len() > keep.max(1) {
        let oldest = all.remove(0);
        std::fs::remove_dir_all(&oldest).map_err(TrainError::io(&oldest))?;
    }
    Ok(())
}

/// The newest checkpoint under `folder`, if any.
pub fn latest(folder: &Path) -> Option<PathBuf> {
    checkpoints(folder).pop()
}

/// A run restored from a checkpoint.
pub struct Restored<B: AutodiffBackend> {
    /// The model's weights at the checkpoint.
    pub model: CausalLm<B>,
    /// The optimiser with its moments and schedule position.
    pub trainer: Trainer<CausalLm<B>, B>,
    /// Cursor and metrics so far.
    pub manifest: Manifest,
}

/// Restores the model, the optimiser and the manifest of `checkpoint` onto freshly built ones.
pub fn load<B: AutodiffBackend>(
    checkpoint: &Path,
    model: CausalLm<B>,
    trainer: Trainer<CausalLm<B>, B>,
    device: &B::Device,
) -> Result<Restored<B>, TrainError> {
    let manifest_path = checkpoint.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).map_err(TrainError::io(&manifest_path))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", manifest_path.display())))?;
    let model = model
        .load_file(checkpoint.join("model"), &recorder(), device)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", checkpoint.display())))?;
    let trainer = trainer.load_state(&checkpoint.join("optimizer"), manifest.step, device)?;
    Ok(Restored {
        model,
        trainer,
        manifest,
    })
}

/// Saves a whole model (e.g. the SFT result) in the same record format.
pub fn save_model<B: AutodiffBackend>(model: &CausalLm<B>, path: &Path) -> Result<(), TrainError> {
    // The recorder sets the extension itself, so the temporary name differs in its stem.
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let partial = path.with_file_name(format!("{stem}-partial"));
    model
        .clone()
        .save_file(&partial, &recorder())
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", partial.display())))?;
    let written = partial.with_extension("mpk");
    let target = path.with_extension("mpk");
    std::fs::rename(&written, &target).map_err(TrainError::io(&target))
}

/// Loads a model saved by [`save_model`] onto a freshly built one, if the file exists.
pub fn load_model<B: AutodiffBackend>(
    path: &Path,
    model: CausalLm<B>,
    device: &B::Device,
) -> Result<Option<CausalLm<B>>, TrainError> {
    if !path.with_extension("mpk").exists() {
        return Ok(None);
    }
    model
        .load_file(path.to_path_buf(), &recorder(), device)
        .map(Some)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}

/// Results of runs finished by earlier sessions of the same run folder (one JSON per line).
pub fn load_finished<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, TrainError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// Rewrites the finished-runs file (through a temporary file and a rename).
pub fn save_finished<T: Serialize>(path: &Path, runs: &[T]) -> Result<(), TrainError> {
    let text: String = runs
        .iter()
        .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
        .collect();
    crate::report::write_atomic(path, &text)
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

/// Checkpoint folders under `folder`, oldest first.
fn checkpoints(folder: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
                && path.join("manifest.json").exists()
        })
        .collect();
    found.sort();
    found
}
