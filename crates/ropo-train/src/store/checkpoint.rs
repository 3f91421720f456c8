//! Checkpoints of a preference run: the model and the optimiser's moments in burn's
//! full-precision record format (which keeps parameter ids, so moments reattach to their
//! parameters), and a JSON manifest with the schedule position, data cursor and metrics so far.
//! Each is a sealed [`snapshot`] `step-N`: written to a temporary folder, flushed, check-summed
//! and renamed into place, so a crash never leaves a half-written one, and a corrupted one is
//! set aside at resume in favour of the one before; only the newest `keep` are kept.

use std::path::{Path, PathBuf};

use burn::{module::Module, tensor::backend::AutodiffBackend};
use ropo_data::batches::BatchCursor;
use ropo_models::CausalLm;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{record_file, snapshot};
use crate::{optim::Trainer, records::StepRecord, TrainError};

/// Where a run stands, besides its weights and moments; `P` is the run's validation point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest<P> {
    /// Optimiser steps done.
    pub step: usize,
    /// The batch sampler's position.
    pub cursor: BatchCursor,
    /// Training metrics so far.
    pub history: Vec<StepRecord>,
    /// Validation curve so far.
    pub curve: Vec<P>,
}

/// Saves a checkpoint at `folder/step-{step:06}`, then deletes all but the newest `keep`.
pub fn save<B: AutodiffBackend, P: Serialize>(
    folder: &Path,
    model: &CausalLm<B>,
    trainer: &Trainer<CausalLm<B>, B>,
    manifest: &Manifest<P>,
    keep: usize,
) -> Result<(), TrainError> {
    snapshot::save(folder, &format!("step-{:06}", manifest.step), |dir| {
        write_model(model, dir)?;
        record_file::write::<B, _>(trainer.moments(), &dir.join(OPTIMIZER_FILE))?;
        let path = dir.join(MANIFEST_FILE);
        let text = super::to_json(&path, manifest)?;
        std::fs::write(&path, text).map_err(TrainError::io(&path))
    })?;
    snapshot::prune(folder, "step-", keep)
}

/// The newest intact checkpoint under `folder`, if any; corrupt newer ones are set aside and
/// reported through `warn`.
pub fn newest(folder: &Path, warn: &mut dyn FnMut(String)) -> Result<Option<PathBuf>, TrainError> {
    snapshot::newest(folder, "step-", warn)
}

/// A run restored from a checkpoint.
pub struct Restored<B: AutodiffBackend, P> {
    /// The model's weights at the checkpoint.
    pub model: CausalLm<B>,
    /// The optimiser with its moments and schedule position.
    pub trainer: Trainer<CausalLm<B>, B>,
    /// Cursor and metrics so far.
    pub manifest: Manifest<P>,
}

/// Restores the model, the optimiser and the manifest of `checkpoint` onto freshly built ones.
pub fn load<B: AutodiffBackend, P: DeserializeOwned>(
    checkpoint: &Path,
    model: CausalLm<B>,
    trainer: Trainer<CausalLm<B>, B>,
    device: &B::Device,
) -> Result<Restored<B, P>, TrainError> {
    let manifest_path = checkpoint.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).map_err(TrainError::io(&manifest_path))?;
    let manifest: Manifest<P> = serde_json::from_str(&text)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", manifest_path.display())))?;
    let model = load_model(checkpoint, model, device)?;
    let moments = record_file::read::<B, _>(&checkpoint.join(OPTIMIZER_FILE), device)?;
    let trainer = trainer.with_moments(moments, manifest.step);
    Ok(Restored {
        model,
        trainer,
        manifest,
    })
}

/// Saves a whole model (e.g. the SFT result) as the sealed snapshot `folder/name`, with
/// `extra` files (name, content) beside it.
pub fn save_model<B: AutodiffBackend>(
    model: &CausalLm<B>,
    folder: &Path,
    name: &str,
    extra: &[(&str, &str)],
) -> Result<(), TrainError> {
    snapshot::save(folder, name, |dir| {
        write_model(model, dir)?;
        for (file, text) in extra {
            std::fs::write(dir.join(file), text).map_err(TrainError::io(dir.join(file)))?;
        }
        Ok(())
    })
    .map(drop)
}

/// Loads the model of snapshot `snapshot` (written by [`save_model`] or [`save`]) onto a
/// freshly built one.
pub fn load_model<B: AutodiffBackend>(
    snapshot: &Path,
    model: CausalLm<B>,
    device: &B::Device,
) -> Result<CausalLm<B>, TrainError> {
    let record = record_file::read::<B, _>(&snapshot.join(MODEL_FILE), device)?;
    Ok(model.load_record(record))
}

/// The weights' file in a snapshot.
const MODEL_FILE: &str = "model.mpk";

/// The manifest's file in a checkpoint.
const MANIFEST_FILE: &str = "manifest.json";

/// The optimiser state's file in a checkpoint.
const OPTIMIZER_FILE: &str = "optimizer.mpk";

/// Writes `model`'s weights into snapshot folder `dir`.
fn write_model<B: AutodiffBackend>(model: &CausalLm<B>, dir: &Path) -> Result<(), TrainError> {
    record_file::write::<B, _>(model.clone().into_record(), &dir.join(MODEL_FILE))
}
