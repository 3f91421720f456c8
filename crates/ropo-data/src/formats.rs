//! Readers of preference datasets in the common formats, one record a line (JSONL), gzipped or
//! not.
//!
//! [`open`] streams a file record by record in constant memory (one line at a time, `.gz`
//! recognised by its magic bytes, not its name); [`read_pairs`] collects it. The format is
//! named in [`ReadOptions::format`] or detected from the first record ([`Format::detect`]).
//! A record that cannot be read as a pair is an error naming the file, the line and the field
//! ([`DataError::InvalidRecord`]), or, with [`OnInvalid::Skip`], counted in the
//! [`ReadReport`] with its reason and skipped. Records that read but make a doubtful pair
//! (identical responses; HH transcripts whose responses do not follow one shared prompt) are
//! kept and listed by line, or treated as invalid with [`Degenerate::Reject`].

mod generic;
mod hh;
mod orca;
mod summarize;
mod trl;
mod ultrafeedback;

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use flate2::bufread::MultiGzDecoder;
use serde_json::{Map, Value};

use crate::{ChatPair, DataError, Message};

/// A preference-dataset format: which fields hold the prompt and the two responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `{"prompt": str, "chosen": str, "rejected": str}`.
    Generic,
    /// TRL's conversational form: `prompt`, `chosen`, `rejected` as lists of
    /// `{"role", "content"}` messages, or, without `prompt` (TRL's implicit prompt), `chosen`
    /// and `rejected` as whole conversations that share all but their last message.
    Trl,
    /// Anthropic HH-RLHF: `{"chosen": str, "rejected": str}`, each a whole
    /// `\n\nHuman: …\n\nAssistant: …` transcript; the prompt is the text through the last
    /// `\n\nAssistant:`.
    Hh,
    /// OpenAI summarize-from-feedback comparisons: `info.post` (with `info.title`,
    /// `info.subreddit`), `summaries[0|1].text`, `choice` (the preferred summary's index).
    Summarize,
    /// UltraFeedback-binarized: `prompt` (str), `chosen`/`rejected` as conversations ending in
    /// the assistant's answer.
    UltraFeedback,
    /// Orca-style: `input.messages`, `preferred_output` and `non_preferred_output` (lists of one
    /// assistant message).
    Orca,
}

/// What to do with a record that cannot be read as a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInvalid {
    /// Stop with an error naming file, line and field.
    #[default]
    Error,
    /// Count it, keep its reason in the [`ReadReport`], and go on.
    Skip,
}

/// What to do with a record that reads but makes a doubtful pair: identical responses, or an
/// HH transcript pair that shares no prompt through its last `\n\nAssistant:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Degenerate {
    /// Keep it and list its line in the [`ReadReport`] (public datasets hold such rows: the HH
    /// test splits have 36 identical pairs and 7 without a shared prompt).
    #[default]
    Keep,
    /// Treat it as invalid (an error, or skipped under [`OnInvalid::Skip`]).
    Reject,
}

/// How to read a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOptions {
    /// The format, or `None` to detect it from the first record.
    pub format: Option<Format>,
    /// Invalid records: an error, or skipped and counted.
    pub on_invalid: OnInvalid,
    /// Doubtful pairs: kept and listed, or invalid.
    pub degenerate: Degenerate,
}

/// One pair read from a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its line in the file, from 1.
    pub line: u64,
    /// The pair.
    pub pair: ChatPair,
    /// The record as it is in the file (to write a modified copy, see [`Format::swap_labels`]).
    pub raw: Value,
}

/// A record that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Its line, from 1.
    pub line: u64,
    /// The field at fault (`None`: the whole line).
    pub field: Option<String>,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "line {}: field {field:?}: {}", self.line, self.problem),
            None => write!(f, "line {}: {}", self.line, self.problem),
        }
    }
}

/// What a reader saw: the format, how many pairs it gave, and what it skipped or doubted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReport {
    /// The file.
    pub path: PathBuf,
    /// The format, once named or detected.
    pub format: Option<Format>,
    /// Lines read (blank ones included).
    pub lines: u64,
    /// Pairs given out.
    pub pairs: usize,
    /// Records skipped under [`OnInvalid::Skip`], with their reasons, in file order.
    pub skipped: Vec<Invalid>,
    /// Lines of kept pairs whose two responses are identical (no preference signal).
    pub identical: Vec<u64>,
    /// Lines of kept HH pairs whose `rejected` does not start with the prompt of `chosen` (the
    /// text through its last `\n\nAssistant:`); they were split after the last
    /// `\n\nAssistant:` of the text both share, so a response may hold more than one turn.
    pub no_shared_prompt: Vec<u64>,
}

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
        options: *options,
        finished: false,
        report: ReadReport {
            path: path.into(),
            format: options.format,
            lines: 0,
            pairs: 0,
            skipped: Vec::new(),
            identical: Vec::new(),
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
            let read = self
                .lines
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
            self.report.lines = line;
            // Taken out for the parse, which updates the report, and put back for the next line.
            let buf = std::mem::take(&mut self.buf);
            let outcome = match std::str::from_utf8(&buf) {
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
        if self.options.degenerate == Degenerate::Reject {
            if identical {
                let [chosen, rejected] = format.label_fields();
                return Err(FieldError::at(rejected, format!("identical to {chosen:?}")));
            }
            if parsed.no_shared_prompt {
                return Err(FieldError::at("rejected", hh::NO_SHARED_PROMPT));
            }
        }
        if identical {
            self.report.identical.push(line);
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

impl Format {
    /// Every format.
    pub const ALL: [Format; 6] = [
        Format::Generic,
        Format::Trl,
        Format::Hh,
        Format::Summarize,
        Format::UltraFeedback,
        Format::Orca,
    ];

    /// The name used on the command line: `generic`, `trl`, `hh`, `summarize`,
    /// `ultrafeedback`, `orca`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Generic => "generic",
            Format::Trl => "trl",
            Format::Hh => "hh",
            Format::Summarize => "summarize",
            Format::UltraFeedback => "ultrafeedback",
            Format::Orca => "orca",
        }
    }

    /// The format a record's fields suggest: `input` + `preferred_output` → orca; `info` +
    /// `summaries` → summarize; `chosen` + `rejected` with no `prompt` → HH (strings) or TRL
    /// implicit prompt (message lists); with a `prompt` string → generic (string responses) or
    /// UltraFeedback (message lists); with a `prompt` list → TRL. `None` for anything else.
    pub fn detect(record: &Value) -> Option<Format> {
        let record = record.as_object()?;
        let has = |key: &str| record.contains_key(key);
        if has("input") && has("preferred_output") {
            return Some(Format::Orca);
        }
        if has("info") && has("summaries") {
            return Some(Format::Summarize);
        }
        if !(has("chosen") && has("rejected")) {
            return None;
        }
        match (record.get("prompt"), record.get("chosen")) {
            (None, Some(Value::String(_))) => Some(Format::Hh),
            (None, Some(Value::Array(_))) | (Some(Value::Array(_)), Some(Value::Array(_))) => {
                Some(Format::Trl)
            }
            (Some(Value::String(_)), Some(Value::String(_))) => Some(Format::Generic),
            (Some(Value::String(_)), Some(Value::Array(_))) => Some(Format::UltraFeedback),
            _ => None,
        }
    }

    /// Exchanges the preferred and the dispreferred response of a record of this format in
    /// place (`chosen`/`rejected`, orca's outputs, summarize's `choice`), so that the record
    /// reads as the swapped pair. Fields it lacks are left alone.
    pub fn swap_labels(self, record: &mut Value) {
        let Some(record) = record.as_object_mut() else {
            return;
        };
        match self {
            Format::Generic | Format::Trl | Format::Hh => swap_fields(record, "chosen", "rejected"),
            Format::UltraFeedback => {
                swap_fields(record, "chosen", "rejected");
                swap_fields(record, "score_chosen", "score_rejected");
            }
            Format::Orca => swap_fields(record, "preferred_output", "non_preferred_output"),
            Format::Summarize => summarize::swap_choice(record),
        }
    }

    /// The fields that hold the preferred and the dispreferred response, as errors name them.
    fn label_fields(self) -> [&'static str; 2] {
        match self {
            Format::Orca => ["preferred_output", "non_preferred_output"],
            Format::Summarize => ["summaries[choice].text", "summaries[1 - choice].text"],
            _ => ["chosen", "rejected"],
        }
    }

    fn parse(self, record: &Value) -> Result<Parsed, FieldError> {
        let record = record.as_object().ok_or_else(|| {
            FieldError::line(format!("expected a JSON object, found {}", kind(record)))
        })?;
        let parsed = match self {
            Format::Generic => generic::parse(record),
            Format::Trl => trl::parse(record),
            Format::Hh => hh::parse(record),
            Format::Summarize => summarize::parse(record),
            Format::UltraFeedback => ultrafeedback::parse(record),
            Format::Orca => orca::parse(record),
        }?;
        let [chosen, rejected] = self.label_fields();
        for (field, response) in [
            (chosen, &parsed.pair.chosen),
            (rejected, &parsed.pair.rejected),
        ] {
            if response.is_empty() {
                return Err(FieldError::at(field, "empty response"));
            }
        }
        Ok(parsed)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|format| format.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown dataset format {name:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A pair as a format's parser reads it.
struct Parsed {
    pair: ChatPair,
    /// HH only: `rejected` does not start with the prompt of `chosen`.
    no_shared_prompt: bool,
}

impl Parsed {
    fn new(pair: ChatPair) -> Self {
        Self {
            pair,
            no_shared_prompt: false,
        }
    }
}

/// What is wrong with a record, before the file and line are known.
#[derive(Debug)]
struct FieldError {
    field: Option<String>,
    problem: String,
}

impl FieldError {
    fn at(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            problem: problem.into(),
        }
    }

    fn line(problem: String) -> Self {
        Self {
            field: None,
            problem,
        }
    }

    fn into_invalid(self, line: u64) -> Invalid {
        Invalid {
            line,
            field: self.field,
            problem: self.problem,
        }
    }
}

/// `null`, `a string`, `an array`, ...: how error messages name what they found.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn describe_keys(record: &Value) -> String {
    match record.as_object() {
        Some(object) if object.is_empty() => "an empty object".into(),
        Some(object) => {
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            format!("fields: {}", keys.join(", "))
        }
        None => format!("not an object but {}", kind(record)),
    }
}

/// `parent.key`, or `key` at the top.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The field `key` of `object` (whose own path is `parent`): missing is an error.
fn field<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a Value, FieldError> {
    object
        .get(key)
        .ok_or_else(|| FieldError::at(join(parent, key), "missing"))
}

fn string<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a str, FieldError> {
    match field(object, parent, key)? {
        Value::String(text) => Ok(text),
        other => Err(FieldError::at(
            join(parent, key),
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

fn object<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a Map<String, Value>, FieldError> {
    match field(object, parent, key)? {
        Value::Object(inner) => Ok(inner),
        other => Err(FieldError::at(
            join(parent, key),
            format!("expected an object, found {}", kind(other)),
        )),
    }
}

/// A list of `{"role": str, "content": str}` messages.
fn messages(
    object: &Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Vec<Message>, FieldError> {
    let path = join(parent, key);
    let items = match field(object, parent, key)? {
        Value::Array(items) => items,
        other => {
            return Err(FieldError::at(
                path,
                format!("expected a list of messages, found {}", kind(other)),
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{path}[{i}]");
            let message = item.as_object().ok_or_else(|| {
                FieldError::at(
                    &at,
                    format!(
                        "expected a message {{\"role\", \"content\"}}, found {}",
                        kind(item)
                    ),
                )
            })?;
            Ok(Message {
                role: string(message, &at, "role")?.to_owned(),
                content: string(message, &at, "content")?.to_owned(),
            })
        })
        .collect()
}

/// The assistant's answer that `list[from..]` must be: exactly one message, role `assistant`.
fn answer(list: &[Message], from: usize, field: &str) -> Result<String, FieldError> {
    match list.get(from..) {
        Some([only]) if only.role == "assistant" => Ok(only.content.clone()),
        Some([only]) => Err(FieldError::at(
            format!("{field}[{from}].role"),
            format!("expected \"assistant\", found {:?}", only.role),
        )),
        Some(rest) => Err(FieldError::at(
            field,
            format!(
                "expected one assistant message after the prompt, found {}",
                rest.len()
            ),
        )),
        None => Err(FieldError::at(field, "expected an assistant message")),
    }
}

/// Exchanges two fields' values where both are present.
fn swap_fields(record: &mut Map<String, Value>, a: &str, b: &str) {
    if !(record.contains_key(a) && record.contains_key(b)) {
        return;
    }
    if let (Some(first), Some(second)) = (record.remove(a), record.remove(b)) {
        record.insert(a.to_owned(), second);
        record.insert(b.to_owned(), first);
    }
}

#[cfg(test)]
mod tests;
