//! burn records (model weights, optimiser moments) as files in burn's named MessagePack format
//! at full precision. The bytes are made in memory and written with `std::fs`, so a failed
//! write reports the operating system's reason (`No space left on device`, `File too large`),
//! which burn's file recorder replaces with a generic encoding error.

use std::path::Path;

use burn::{
    record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder},
    tensor::backend::Backend,
};

use crate::TrainError;

/// Writes `record` to `path`.
pub fn write<B: Backend, R: Record<B>>(record: R, path: &Path) -> Result<(), TrainError> {
    let bytes = Recorder::<B>::record(&recorder(), record, ())
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    std::fs::write(path, bytes).map_err(TrainError::io(path))
}

/// Reads a record written by [`write`].
pub fn read<B: Backend, R: Record<B>>(path: &Path, device: &B::Device) -> Result<R, TrainError> {
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    Recorder::<B>::load(&recorder(), bytes, device)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}

fn recorder() -> NamedMpkBytesRecorder<FullPrecisionSettings> {
    NamedMpkBytesRecorder::new()
}
