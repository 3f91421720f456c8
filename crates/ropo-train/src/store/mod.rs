//! Everything a run folder keeps on disk, in one place: sealed snapshots ([`snapshot`]), the
//! preference checkpoints and whole models inside them ([`checkpoint`]), the records of
//! finished runs ([`finished`]), a framework method's state between rounds ([`round`]), and
//! [`write_atomic`] for every other file. Integrity sums and flushing come from
//! [`ropo_models::integrity`], the one implementation both crates use.

pub mod checkpoint;
pub mod fault;
pub mod finished;
mod record_file;
pub mod round;
pub mod snapshot;

use std::path::Path;

use serde::Serialize;

use crate::TrainError;

/// Writes `text` to `path` through a temporary file that is flushed to disk and renamed.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), TrainError> {
    Ok(ropo_models::integrity::write_atomic(path, text.as_bytes())?)
}

/// `value` as compact JSON; a value that cannot be written is an error naming `path`, never
/// an empty file.
pub(crate) fn to_json(path: &Path, value: &impl Serialize) -> Result<String, TrainError> {
    serde_json::to_string(value)
        .map_err(|e| TrainError::Checkpoint(format!("{}: cannot encode: {e}", path.display())))
}
