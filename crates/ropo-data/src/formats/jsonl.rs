//! JSONL records: one JSON object a line, gzipped or not, read one line at a time with the
//! line's length bounded, so that memory stays constant whatever the file holds.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use serde_json::Value;

use super::raw::{record_error, Raw};
use super::{fields::FieldError, unique_keys, FileKind};
use crate::DataError;

/// The first bytes of a gzip stream.
pub(super) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The lines of one JSONL file.
pub(super) struct Lines {
    path: PathBuf,
    lines: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    line: u64,
    max_line_bytes: usize,
}

impl Lines {
    /// The lines of `file` (at `path`), gunzipped if it is `gzipped` (it starts with
    /// [`GZIP_MAGIC`]).
    pub(super) fn new(
        path: &Path,
        file: BufReader<File>,
        gzipped: bool,
        max_line_bytes: usize,
    ) -> Self {
        let lines: Box<dyn BufRead + Send> = if gzipped {
            Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(file)))
        } else {
            Box::new(file)
        };
        Self {
            path: path.to_owned(),
            lines,
            buf: Vec::new(),
            line: 0,
            max_line_bytes,
        }
    }

    /// The next line, blank or not, or `None` at the end of the file. A line longer than the
    /// limit, or a stream that cannot be read, is an error.
    pub(super) fn next(&mut self) -> Result<Option<Raw>, DataError> {
        self.buf.clear();
        let line = self.line + 1;
        let limit = self.max_line_bytes;
        let read = (&mut self.lines)
            .take(limit as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| {
                record_error(
                    &self.path,
                    FileKind::Jsonl,
                    line,
                    format!("cannot read (a truncated or corrupt file?): {source}"),
                )
            })?;
        if read == 0 {
            return Ok(None);
        }
        if read > limit && self.buf.last() != Some(&b'\n') {
            return Err(record_error(
                &self.path,
                FileKind::Jsonl,
                line,
                format!(
                    "longer than {limit} bytes without a line break (not JSONL, or one record of \
                     that size: raise the limit with --max-line-bytes)"
                ),
            ));
        }
        self.line = line;
        // A UTF-8 byte-order mark (written by some Windows editors) is not part of a record.
        let text = std::str::from_utf8(&self.buf).map(|text| {
            if line == 1 {
                text.trim_start_matches('\u{feff}')
            } else {
                text
            }
        });
        let value = match text {
            Ok(text) if text.trim().is_empty() => None,
            Ok(text) => Some(parse(text.trim())),
            Err(e) => Some(Err(FieldError::line(format!(
                "not valid UTF-8 (byte {} of the line)",
                e.valid_up_to() + 1
            )))),
        };
        Ok(Some(Raw {
            line,
            bytes: read as u64,
            value,
        }))
    }
}

/// A line's JSON object; a key given twice is an error, since parsers disagree on which value
/// wins.
fn parse(text: &str) -> Result<Value, FieldError> {
    let raw: Value = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or_default();
        FieldError::line(format!("invalid JSON at column {}: {message}", e.column()))
    })?;
    unique_keys::check_unique_keys(text).map_err(|e| {
        let message = e.split(" at line ").next().unwrap_or_default();
        FieldError::line(format!("ambiguous JSON: {message}"))
    })?;
    Ok(raw)
}
