//! The streaming reader: a dataset file opened (gzipped or not, told by its magic bytes), read
//! one line at a time, each line parsed in the file's format and checked, in constant memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use serde_json::Value;

use super::{
    fields::{describe_keys, FieldError},
    hh, unique_keys, Degenerate, Format, OnInvalid, ReadOptions, ReadReport, Record,
};
use crate::{ChatPair, DataError};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens a dataset for streaming: an iterator of [`Record`]s, whose [`PairReader::report`] is
/// complete once it is exhausted. Errors name the file (absent, unreadable).
pub fn open(path: &Path, options: &ReadOptions) -> Result<PairReader, DataError> {
    let file = File::open(path).map_err(DataError::io(path))?;
    let mut buffered = BufReader::with_capacity(1 << 16, file);
    let head = buffered.fill_buf().map_err(DataError::io(path))?;
    let lines: Box<dyn BufRead + Send> = if head.starts_with(&GZIP_MAGIC) {
        Box::new(BufReader::with_capacity(
            1 << 16,
            MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Ok(PairReader {
        path: path.into(),
        lines,
        buf: Vec::new(),
        bytes_read: 0,
        options: *options,
        finished: false,
        report: ReadReport {
            path: path.into(),
            format: options.format,
            lines: 0,
            pairs: 0,
            skipped: Vec::new(),
            identical: Vec::new(),
            blank_response: Vec::new(),
            no_shared_prompt: Vec::new(),
        },
    })
}

/// Reads a whole dataset: its pairs in file order and the [`ReadReport`].
pub fn read_pairs(
    path: &Path,
    options: &ReadOptions,
) -> Result<(Vec<ChatPair>, ReadReport), DataError> {
    let mut reader = open(path, options)?;
    let pairs = reader
        .by_ref()
        .map(|record| record.map(|record| record.pair))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((pairs, reader.into_report()))
}

/// A streaming reader of one dataset file (see [`open`]). After the first error it yields
/// nothing more.
pub struct PairReader {
    path: PathBuf,
    lines: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    bytes_read: u64,
    options: ReadOptions,
    finished: bool,
    report: ReadReport,
}

impl PairReader {
    /// What has been read so far (everything, once the iterator is exhausted).
    pub fn report(&self) -> &ReadReport {
        &self.report
    }

    /// The report, consuming the reader.
    pub fn into_report(self) -> ReadReport {
        self.report
    }

    /// The next record, or `Ok(None)` at the end; invalid records are errors here, whatever
    /// the policy (the iterator applies it).
    fn next_line(&mut self) -> Result<Option<Result<Record, FieldError>>, DataError> {
        loop {
            self.buf.clear();
            let line = self.report.lines + 1;
            let limit = self.options.max_line_bytes;
            let read = (&mut self.lines)
                .take(limit as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| DataError::InvalidRecord {
                    path: self.path.clone(),
                    line,
                    field: None,
                    problem: format!("cannot read (a truncated or corrupt file?): {source}"),
                })?;
            if read == 0 {
                return Ok(None);
            }
            self.bytes_read += read as u64;
            if self.bytes_read > self.options.max_total_bytes {
                return Err(DataError::InvalidRecord {
                    path: self.path.clone(),
                    line,
                    field: None,
                    problem: format!(
                        "more than {} bytes read in all (raise the limit with --max-total-bytes)",
                        self.options.max_total_bytes
                    ),
                });
            }
            if read > limit && self.buf.last() != Some(&b'\n') {
                return Err(DataError::InvalidRecord {
                    path: self.path.clone(),
                    line,
                    field: None,
                    problem: format!(
                        "longer than {limit} bytes without a line break (not JSONL, or one \
                         record of that size: raise the limit with --max-line-bytes)"
                    ),
                });
            }
            self.report.lines = line;
            let records = self.report.pairs as u64 + self.report.skipped.len() as u64;
            if records >= self.options.max_records && !self.buf.trim_ascii().is_empty() {
                return Err(DataError::InvalidRecord {
                    path: self.path.clone(),
                    line,
                    field: None,
                    problem: format!(
                        "more than {} records (raise the limit with --max-records)",
                        self.options.max_records
                    ),
                });
            }
            // Taken out for the parse, which updates the report, and put back for the next line.
            let buf = std::mem::take(&mut self.buf);
            // A UTF-8 byte-order mark (written by some Windows editors) is not part of a record.
            let text = std::str::from_utf8(&buf).map(|text| {
                if line == 1 {
                    text.trim_start_matches('\u{feff}')
                } else {
                    text
                }
            });
            let outcome = match text {
                Ok(text) if text.trim().is_empty() => None,
                Ok(text) => Some(self.parse(line, text.trim())),
                Err(e) => Some(Err(FieldError::line(format!(
                    "not valid UTF-8 (byte {} of the line)",
                    e.valid_up_to() + 1
                )))),
            };
            self.buf = buf;
            if outcome.is_some() {
                return Ok(outcome);
            }
        }
    }

    fn parse(&mut self, line: u64, text: &str) -> Result<Record, FieldError> {
        let raw: Value = serde_json::from_str(text).map_err(|e| {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or_default();
            FieldError::line(format!("invalid JSON at column {}: {message}", e.column()))
        })?;
        unique_keys::check_unique_keys(text).map_err(|e| {
            let message = e.split(" at line ").next().unwrap_or_default();
            FieldError::line(format!("ambiguous JSON: {message}"))
        })?;
        let format = match self.report.format {
            Some(format) => format,
            None => {
                let format = Format::detect(&raw).ok_or_else(|| {
                    FieldError::line(format!(
                        "cannot tell the dataset format from this record ({}); name it",
                        describe_keys(&raw)
                    ))
                })?;
                self.report.format = Some(format);
                format
            }
        };
        let parsed = format.parse(&raw)?;
        let identical = parsed.pair.chosen == parsed.pair.rejected;
        let [chosen_field, rejected_field] = format.label_fields();
        let blank = [
            (chosen_field, &parsed.pair.chosen),
            (rejected_field, &parsed.pair.rejected),
        ]
        .into_iter()
        .find(|(_, response)| response.trim().is_empty())
        .map(|(field, _)| field);
        if self.options.degenerate == Degenerate::Reject {
            if identical {
                return Err(FieldError::at(
                    rejected_field,
                    format!("identical to {chosen_field:?}"),
                ));
            }
            if let Some(field) = blank {
                return Err(FieldError::at(field, "a response of whitespace only"));
            }
            if parsed.no_shared_prompt {
                return Err(FieldError::at("rejected", hh::NO_SHARED_PROMPT));
            }
        }
        if identical {
            self.report.identical.push(line);
        }
        if blank.is_some() {
            self.report.blank_response.push(line);
        }
        if parsed.no_shared_prompt {
            self.report.no_shared_prompt.push(line);
        }
        Ok(Record {
            line,
            pair: parsed.pair,
            raw,
        })
    }
}

impl Iterator for PairReader {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            let outcome = self.next_line();
            let error = match outcome {
                Ok(Some(Ok(record))) => {
                    self.report.pairs += 1;
                    return Some(Ok(record));
                }
                Ok(Some(Err(invalid))) => {
                    let invalid = invalid.into_invalid(self.report.lines);
                    if self.options.on_invalid == OnInvalid::Skip {
                        self.report.skipped.push(invalid);
                        continue;
                    }
                    DataError::InvalidRecord {
                        path: self.path.clone(),
                        line: invalid.line,
                        field: invalid.field,
                        problem: invalid.problem,
                    }
                }
                Ok(None) if self.report.pairs == 0 && self.report.skipped.is_empty() => {
                    DataError::InvalidRecord {
                        path: self.path.clone(),
                        line: self.report.lines.max(1),
                        field: None,
                        problem: "no records: the file is empty".into(),
                    }
                }
                Ok(None) => {
                    self.finished = true;
                    return None;
                }
                Err(error) => error,
            };
            self.finished = true;
            return Some(Err(error));
        }
        None
    }
}
