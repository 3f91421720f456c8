//! The runs earlier sessions of a run folder finished (`checkpoints/finished.jsonl`, one JSON
//! record per line), so that a resumed grid does not train them again.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use crate::TrainError;

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
    let mut text = String::new();
    for run in runs {
        text += &super::to_json(path, run)?;
        text.push('\n');
    }
    super::write_atomic(path, &text)
}
