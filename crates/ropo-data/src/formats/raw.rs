//! One record as a file gives it, before it is read as a pair: what [`jsonl`](super::jsonl)
//! (a line) and [`parquet_rows`](super::parquet_rows) (a row) hand to the
//! [`reader`](super::reader), and the error for a record that is not one.

use std::path::Path;

use serde_json::Value;

use super::{fields::FieldError, FileKind};
use crate::DataError;

/// One line of a JSONL file or one row of a parquet file, before it is read as a pair.
pub(super) struct Raw {
    /// Its line (row), from 1.
    pub(super) line: u64,
    /// The bytes read for it, counted against
    /// [`ReadOptions::max_total_bytes`](super::ReadOptions::max_total_bytes).
    pub(super) bytes: u64,
    /// The record as JSON, or what is wrong with it; `None` for a blank line.
    pub(super) value: Option<Result<Value, FieldError>>,
}

/// A [`DataError::InvalidRecord`] of the file at `path` with no field at fault.
pub(super) fn record_error(path: &Path, kind: FileKind, line: u64, problem: String) -> DataError {
    DataError::InvalidRecord {
        path: path.to_owned(),
        kind,
        line,
        field: None,
        problem,
    }
}
