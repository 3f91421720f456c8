//! The streaming reader: a dataset (one file, or a folder's data files) read one record at a
//! time, each record read as a pair in the dataset's format and checked, in bounded memory.
//! Where records come from is the business of [`jsonl`](super::jsonl) (a line) and
//! [`parquet_rows`](super::parquet_rows) (a row); what follows, the limits, the format, the
//! checks and the report, is done here, once for both.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    data_files,
    fields::{describe_keys, FieldError},
    hh, jsonl, parquet_rows,
    raw::{record_error, Raw},
    Degenerate, FileKind, Format, OnInvalid, ReadOptions, ReadReport, Record,
};
use crate::{ChatPair, DataError};

/// Opens a dataset for streaming: a file (JSONL, gzipped or not, or parquet, told by its first
/// bytes), or a folder, read as every data file under it in path order (see [`open_split`]).
/// The reader is an iterator of [`Record`]s, whose [`PairReader::reports`] are complete once it
/// is exhausted. Errors name the file or folder (absent, unreadable, holding no data file).
pub fn open(path: &Path, options: &ReadOptions) -> Result<PairReader, DataError> {
    open_split(path, None, options)
}

/// [`open`], reading only the files of `split` if one is given: those whose name starts with
/// `{split}-` or `{split}.` (`data/train-00000-of-00002.parquet`, `test.jsonl`) or that lie in a
/// folder named `split` (`train_prefs/0000.parquet`), as on the Hugging Face Hub. A split
/// without files is an error listing the splits found ([`DataError::NoDataFiles`]).
pub fn open_split(
    path: &Path,
    split: Option<&str>,
    options: &ReadOptions,
) -> Result<PairReader, DataError> {
    let mut reader = PairReader {
        files: data_files::list(path, split)?.into_iter(),
        source: None,
        reports: Vec::new(),
        options: *options,
        format: options.format,
        bytes_read: 0,
        records: 0,
        finished: false,
    };
    reader.open_next_file()?;
    Ok(reader)
}

/// Reads a whole dataset: its pairs in file order and the [`ReadReport`] of each file.
pub fn read_pairs(
    path: &Path,
    options: &ReadOptions,
) -> Result<(Vec<ChatPair>, Vec<ReadReport>), DataError> {
    open(path, options)?.into_pairs()
}

/// A streaming reader of a dataset (see [`open`]). After the first error it yields nothing more.
pub struct PairReader {
    /// The files not yet begun.
    files: std::vec::IntoIter<PathBuf>,
    /// The file being read (its report is the last of `reports`); `None` once all are read.
    source: Option<Source>,
    reports: Vec<ReadReport>,
    options: ReadOptions,
    format: Option<Format>,
    bytes_read: u64,
    records: u64,
    finished: bool,
}

/// Where a file's records come from.
enum Source {
    Jsonl(jsonl::Lines),
    Parquet(parquet_rows::Rows),
}

impl Source {
    /// Opens the file at `path`, a parquet or a JSONL file by its first bytes.
    fn open(path: &Path, options: &ReadOptions) -> Result<(Self, FileKind), DataError> {
        let file = File::open(path).map_err(DataError::io(path))?;
        let mut buffered = BufReader::with_capacity(1 << 16, file);
        let head = buffered.fill_buf().map_err(DataError::io(path))?;
        if head.starts_with(parquet_rows::PARQUET_MAGIC) {
            let rows = parquet_rows::Rows::open(path, buffered.into_inner())?;
            return Ok((Source::Parquet(rows), FileKind::Parquet));
        }
        let gzipped = head.starts_with(&jsonl::GZIP_MAGIC);
        let lines = jsonl::Lines::new(path, buffered, gzipped, options.max_line_bytes);
        Ok((Source::Jsonl(lines), FileKind::Jsonl))
    }

    fn next(&mut self) -> Result<Option<Raw>, DataError> {
        match self {
            Source::Jsonl(lines) => lines.next(),
            Source::Parquet(rows) => rows.next(),
        }
    }
}

impl PairReader {
    /// The report of each file begun so far, in reading order (one for a dataset of one file);
    /// all complete once the iterator is exhausted.
    pub fn reports(&self) -> &[ReadReport] {
        &self.reports
    }

    /// The reports, consuming the reader.
    pub fn into_reports(self) -> Vec<ReadReport> {
        self.reports
    }

    /// The dataset's format, once named or detected (the same for all its files).
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Reads the rest of the dataset: its pairs in file order and the report of each file.
    pub fn into_pairs(mut self) -> Result<(Vec<ChatPair>, Vec<ReadReport>), DataError> {
        let pairs = self
            .by_ref()
            .map(|record| record.map(|record| record.pair))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((pairs, self.into_reports()))
    }

    /// Begins the next file, if there is one.
    fn open_next_file(&mut self) -> Result<(), DataError> {
        self.source = None;
        let Some(path) = self.files.next() else {
            return Ok(());
        };
        let (source, kind) = Source::open(&path, &self.options)?;
        self.reports.push(ReadReport {
            path,
            kind,
            format: self.format,
            lines: 0,
            pairs: 0,
            skipped: Vec::new(),
            identical: Vec::new(),
            blank_response: Vec::new(),
            no_shared_prompt: Vec::new(),
        });
        self.source = Some(source);
        Ok(())
    }

    /// The next record, or `Ok(None)` at the end of the dataset; invalid records are errors
    /// here, whatever the policy (the iterator applies it). A file that holds no record is an
    /// error.
    fn next_record(&mut self) -> Result<Option<Result<Record, FieldError>>, DataError> {
        loop {
            let (Some(source), Some(report)) = (&mut self.source, self.reports.last_mut()) else {
                return Ok(None);
            };
            let Some(raw) = source.next()? else {
                if report.pairs == 0 && report.skipped.is_empty() {
                    let problem = match report.kind {
                        FileKind::Jsonl => "no records: the file is empty",
                        FileKind::Parquet => "no records: the file has no rows",
                    };
                    let line = report.lines.max(1);
                    return Err(record_error(
                        &report.path,
                        report.kind,
                        line,
                        problem.into(),
                    ));
                }
                self.open_next_file()?;
                continue;
            };
            let line = raw.line;
            report.lines = line;
            self.bytes_read += raw.bytes;
            let limit_error =
                |problem: String| record_error(&report.path, report.kind, line, problem);
            if self.bytes_read > self.options.max_total_bytes {
                return Err(limit_error(format!(
                    "more than {} bytes read in all (raise the limit with --max-total-bytes)",
                    self.options.max_total_bytes
                )));
            }
            let Some(value) = raw.value else {
                continue;
            };
            if self.records >= self.options.max_records {
                return Err(limit_error(format!(
                    "more than {} records (raise the limit with --max-records)",
                    self.options.max_records
                )));
            }
            self.records += 1;
            let file = self.reports.len() - 1;
            let record = value.and_then(|raw| self.read_record(file, line, raw));
            return Ok(Some(record));
        }
    }

    /// Reads `raw`, the record at `line` of file `file`, as a pair in the dataset's format
    /// (detecting it from this record if it is not known yet), and checks the pair; doubtful
    /// pairs are listed in the file's report, or invalid under [`Degenerate::Reject`].
    fn read_record(&mut self, file: usize, line: u64, raw: Value) -> Result<Record, FieldError> {
        let report = &mut self.reports[file];
        let format = match self.format {
            Some(format) => format,
            None => {
                let format = Format::detect(&raw).ok_or_else(|| {
                    FieldError::line(format!(
                        "cannot tell the dataset format from this record ({}); name it",
                        describe_keys(&raw)
                    ))
                })?;
                self.format = Some(format);
                report.format = Some(format);
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
            report.identical.push(line);
        }
        if blank.is_some() {
            report.blank_response.push(line);
        }
        if parsed.no_shared_prompt {
            report.no_shared_prompt.push(line);
        }
        Ok(Record {
            file,
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
            let error = match self.next_record() {
                Ok(Some(Ok(record))) => {
                    self.reports[record.file].pairs += 1;
                    return Some(Ok(record));
                }
                Ok(Some(Err(invalid))) => {
                    let Some(report) = self.reports.last_mut() else {
                        break;
                    };
                    let invalid = invalid.into_invalid(report.lines);
                    if self.options.on_invalid == OnInvalid::Skip {
                        report.skipped.push(invalid);
                        continue;
                    }
                    DataError::InvalidRecord {
                        path: report.path.clone(),
                        kind: report.kind,
                        line: invalid.line,
                        field: invalid.field,
                        problem: invalid.problem,
                    }
                }
                Ok(None) => break,
                Err(error) => error,
            };
            self.finished = true;
            return Some(Err(error));
        }
        self.finished = true;
        None
    }
}
