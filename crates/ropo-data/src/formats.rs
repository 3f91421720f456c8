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
mod tests {
    use std::io::Write;

    use super::*;
    use crate::test_support::{assets, TempPath};
    use crate::{Preference, Prompt};

    fn preferences(name: &str) -> PathBuf {
        assets().join("preferences").join(name)
    }

    fn strict(format: Option<Format>) -> ReadOptions {
        ReadOptions {
            format,
            on_invalid: OnInvalid::Error,
            degenerate: Degenerate::Reject,
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Reads `contents` (written to a temp file `name`) and returns the error's line, field
    /// and message; panics if the file reads.
    fn invalid(
        name: &str,
        contents: impl AsRef<[u8]>,
        options: ReadOptions,
    ) -> (u64, Option<String>, String) {
        let file = TempPath::file(name, contents);
        match read_pairs(file.path(), &options) {
            Ok((pairs, _)) => panic!("{name}: expected an error, read {} pairs", pairs.len()),
            Err(error) => {
                let message = error.to_string();
                assert!(
                    message.starts_with(&file.path().display().to_string()),
                    "{message}"
                );
                match error {
                    DataError::InvalidRecord { line, field, .. } => (line, field, message),
                    other => panic!("{name}: expected an invalid record, got {other}"),
                }
            }
        }
    }

    /// Asserts that `contents` fails at `line`, in `field`, with `problem` in the message.
    fn assert_invalid(
        contents: impl AsRef<[u8]>,
        options: ReadOptions,
        line: u64,
        field: Option<&str>,
        problem: &str,
    ) {
        let (at, at_field, message) = invalid("data.jsonl", contents, options);
        assert_eq!((at, at_field.as_deref()), (line, field), "{message}");
        assert!(message.contains(problem), "{message}");
        let expected = match field {
            Some(field) => format!(": line {line}: field {field:?}: "),
            None => format!(": line {line}: "),
        };
        assert!(message.contains(&expected), "{message}");
    }

    const GOOD: &str = r#"{"prompt": "p", "chosen": "good", "rejected": "bad"}"#;

    #[test]
    fn every_asset_file_reads_with_its_pair_count_and_format() {
        let cases = [
            ("helpful-base-test.jsonl.gz", 2354, Format::Hh),
            ("helpful-online-test.jsonl.gz", 1137, Format::Hh),
            ("helpful-rejection-sampled-test.jsonl.gz", 2749, Format::Hh),
            ("harmless-base-test.jsonl.gz", 2312, Format::Hh),
            ("orca_dpo_pairs_validation.jsonl", 284, Format::Orca),
        ];
        for (name, count, format) in cases {
            let (pairs, report) = read_pairs(&preferences(name), &ReadOptions::default())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((pairs.len(), report.pairs), (count, count), "{name}");
            assert_eq!(report.format, Some(format), "{name}");
            assert!(report.skipped.is_empty(), "{name}");
            for pair in &pairs {
                assert!(
                    !pair.chosen.is_empty() && !pair.rejected.is_empty(),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn hh_rows_without_a_shared_prompt_are_listed_by_line() {
        let cases: [(&str, &[u64], usize); 4] = [
            ("helpful-base-test.jsonl.gz", &[568, 1167], 2),
            ("helpful-online-test.jsonl.gz", &[], 2),
            ("helpful-rejection-sampled-test.jsonl.gz", &[1598], 32),
            ("harmless-base-test.jsonl.gz", &[1255, 1689, 1953, 2037], 0),
        ];
        for (name, lines, identical) in cases {
            let (_, report) = read_pairs(&preferences(name), &ReadOptions::default()).unwrap();
            assert_eq!(report.no_shared_prompt, lines, "{name}");
            assert_eq!(report.identical.len(), identical, "{name}");
        }
        // Rejected instead, they are counted with their reason, as are identical pairs.
        let options = ReadOptions {
            on_invalid: OnInvalid::Skip,
            ..strict(None)
        };
        let (pairs, report) =
            read_pairs(&preferences("harmless-base-test.jsonl.gz"), &options).unwrap();
        assert_eq!(pairs.len(), 2312 - 4);
        let lines: Vec<u64> = report.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [1255, 1689, 1953, 2037]);
        assert!(report.skipped[0]
            .problem
            .contains("does not start with the prompt"));
    }

    #[test]
    fn hh_prompt_runs_through_the_last_assistant_marker_and_responses_keep_their_space() {
        let mut reader = open(
            &preferences("helpful-base-test.jsonl.gz"),
            &ReadOptions::default(),
        )
        .unwrap();
        let record = reader.next().unwrap().unwrap();
        let Prompt::Text(prompt) = &record.pair.prompt else {
            panic!("HH prompts are text");
        };
        assert_eq!(
            prompt,
            "\n\nHuman: Do you know why turkeys became the official food of thanksgiving?\n\nAssistant:"
        );
        assert!(record.pair.chosen.starts_with(" To be honest"));
        assert!(record
            .pair
            .rejected
            .starts_with(" I know that the American"));
        assert_eq!(record.line, 1);
    }

    #[test]
    fn orca_prompt_is_the_input_conversation() {
        let (pairs, _) = read_pairs(
            &preferences("orca_dpo_pairs_validation.jsonl"),
            &ReadOptions::default(),
        )
        .unwrap();
        let Prompt::Messages(messages) = &pairs[0].prompt else {
            panic!("orca prompts are conversations");
        };
        let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user"]);
        assert!(pairs[0].chosen.starts_with("Step 1: Identify"));
        assert!(pairs[0].rejected.starts_with("Sure, I'd be happy"));
    }

    /// One record of each format and the pair it must read as.
    fn one_of_each() -> Vec<(Format, &'static str, ChatPair)> {
        let msg = |role: &str, content: &str| Message {
            role: role.into(),
            content: content.into(),
        };
        let conversation = Prompt::Messages(vec![msg("system", "s"), msg("user", "u")]);
        let pair = |prompt: &Prompt, chosen: &str, rejected: &str| ChatPair {
            prompt: prompt.clone(),
            chosen: chosen.into(),
            rejected: rejected.into(),
        };
        vec![
            (
                Format::Generic,
                GOOD,
                pair(&Prompt::Text("p".into()), "good", "bad"),
            ),
            (
                Format::Trl,
                r#"{"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                   "chosen": [{"role": "assistant", "content": "good"}],
                   "rejected": [{"role": "assistant", "content": "bad"}]}"#,
                pair(&conversation, "good", "bad"),
            ),
            (
                Format::Trl,
                r#"{"chosen": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "good"}],
                   "rejected": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "bad"}]}"#,
                pair(&conversation, "good", "bad"),
            ),
            (
                Format::Hh,
                r#"{"chosen": "\n\nHuman: u\n\nAssistant: good", "rejected": "\n\nHuman: u\n\nAssistant: bad"}"#,
                pair(
                    &Prompt::Text("\n\nHuman: u\n\nAssistant:".into()),
                    " good",
                    " bad",
                ),
            ),
            (
                Format::Summarize,
                r#"{"info": {"id": "t3", "post": "P", "title": "T", "subreddit": "r1"},
                   "summaries": [{"text": " bad"}, {"text": " good"}], "choice": 1}"#,
                pair(
                    &Prompt::Text("SUBREDDIT: r/r1\nTITLE: T\nPOST: P\nTL;DR:".into()),
                    " good",
                    " bad",
                ),
            ),
            (
                Format::UltraFeedback,
                r#"{"prompt": "u", "chosen": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "good"}],
                   "rejected": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "bad"}],
                   "score_chosen": 8.0, "score_rejected": 3.0}"#,
                pair(&Prompt::Messages(vec![msg("user", "u")]), "good", "bad"),
            ),
            (
                Format::Orca,
                r#"{"input": {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
                   "preferred_output": [{"role": "assistant", "content": "good"}],
                   "non_preferred_output": [{"role": "assistant", "content": "bad"}]}"#,
                pair(&conversation, "good", "bad"),
            ),
        ]
    }

    #[test]
    fn each_format_is_detected_and_read() {
        for (format, json, expected) in one_of_each() {
            let line = json.replace('\n', " ");
            let file = TempPath::file("one.jsonl", format!("{line}\n"));
            let (pairs, report) = read_pairs(file.path(), &ReadOptions::default())
                .unwrap_or_else(|e| panic!("{format}: {e}"));
            assert_eq!(report.format, Some(format));
            assert_eq!(pairs, std::slice::from_ref(&expected), "{format}");
            // Named, and gzipped, it reads the same.
            let gz = TempPath::file("one.jsonl.gz", gzip(line.as_bytes()));
            let options = ReadOptions {
                format: Some(format),
                ..ReadOptions::default()
            };
            assert_eq!(read_pairs(gz.path(), &options).unwrap().0, [expected]);
        }
    }

    #[test]
    fn swapped_labels_read_as_the_swapped_pair_in_every_format() {
        for (format, json, expected) in one_of_each() {
            let mut raw: Value = serde_json::from_str(json).unwrap();
            format.swap_labels(&mut raw);
            let file = TempPath::file("swapped.jsonl", raw.to_string());
            let (pairs, _) = read_pairs(file.path(), &ReadOptions::default()).unwrap();
            assert_eq!(pairs, [expected.swapped()], "{format}");
            if format == Format::UltraFeedback {
                assert_eq!(raw["score_chosen"], 3.0);
            }
        }
    }

    #[test]
    fn format_names_round_trip() {
        for format in Format::ALL {
            assert_eq!(format.name().parse::<Format>(), Ok(format));
        }
        let message = "alpaca".parse::<Format>().unwrap_err();
        assert!(message.contains("generic, trl"), "{message}");
    }

    #[test]
    fn blank_lines_are_skipped_and_crlf_is_accepted() {
        let file = TempPath::file("crlf.jsonl", format!("\r\n{GOOD}\r\n\n{GOOD}\r\n"));
        let (pairs, report) = read_pairs(file.path(), &ReadOptions::default()).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(report.lines, 4);
    }

    #[test]
    fn records_carry_their_line_numbers() {
        let file = TempPath::file("lines.jsonl", format!("{GOOD}\n\n{GOOD}\n"));
        let reader = open(file.path(), &ReadOptions::default()).unwrap();
        let lines: Vec<u64> = reader.map(|r| r.unwrap().line).collect();
        assert_eq!(lines, [1, 3]);
    }

    // Malformed inputs: each an error naming the file, the line and the field.

    #[test]
    fn invalid_json_names_the_line_and_column() {
        assert_invalid(
            format!("{GOOD}\n{{\"prompt\": \"p\", \"chosen\": \n"),
            ReadOptions::default(),
            2,
            None,
            "invalid JSON at column",
        );
    }

    #[test]
    fn text_that_is_not_json_is_invalid() {
        assert_invalid(
            "prompt,chosen,rejected\n",
            ReadOptions::default(),
            1,
            None,
            "invalid JSON",
        );
    }

    #[test]
    fn missing_chosen_is_named() {
        assert_invalid(
            format!("{GOOD}\n{{\"prompt\": \"p\", \"rejected\": \"r\"}}\n"),
            ReadOptions::default(),
            2,
            Some("chosen"),
            "missing",
        );
    }

    #[test]
    fn null_chosen_is_a_mistyped_field() {
        assert_invalid(
            format!(
                "{GOOD}\n{GOOD}\n{{\"prompt\": \"p\", \"chosen\": null, \"rejected\": \"r\"}}\n"
            ),
            ReadOptions::default(),
            3,
            Some("chosen"),
            "expected a string, found null",
        );
    }

    #[test]
    fn numeric_rejected_is_a_mistyped_field() {
        assert_invalid(
            format!("{GOOD}\n{{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": 3}}\n"),
            ReadOptions::default(),
            2,
            Some("rejected"),
            "expected a string, found a number",
        );
    }

    #[test]
    fn empty_chosen_is_invalid() {
        assert_invalid(
            r#"{"prompt": "p", "chosen": "", "rejected": "r"}"#,
            ReadOptions::default(),
            1,
            Some("chosen"),
            "empty response",
        );
    }

    #[test]
    fn chosen_identical_to_rejected_is_invalid_when_degenerate_pairs_are_rejected() {
        let same = r#"{"prompt": "p", "chosen": "same", "rejected": "same"}"#;
        assert_invalid(
            same,
            strict(None),
            1,
            Some("rejected"),
            "identical to \"chosen\"",
        );
        // Kept by default, and listed.
        let file = TempPath::file("same.jsonl", format!("{GOOD}\n{same}\n"));
        let (pairs, report) = read_pairs(file.path(), &ReadOptions::default()).unwrap();
        assert_eq!((pairs.len(), report.identical), (2, vec![2]));
    }

    #[test]
    fn non_utf8_bytes_are_invalid() {
        let mut bytes = format!("{GOOD}\n").into_bytes();
        bytes.extend_from_slice(
            b"{\"prompt\": \"p\xff\xfe\", \"chosen\": \"c\", \"rejected\": \"r\"}\n",
        );
        assert_invalid(
            bytes,
            ReadOptions::default(),
            2,
            None,
            "not valid UTF-8 (byte 14",
        );
    }

    #[test]
    fn truncated_gzip_is_an_error_at_the_line_where_it_stops() {
        let text: String = (0..2000).map(|_| format!("{GOOD}\n")).collect();
        let gz = gzip(text.as_bytes());
        let cut = &gz[..gz.len() / 2];
        let (line, field, message) = invalid("cut.jsonl.gz", cut, ReadOptions::default());
        assert!(line > 1 && field.is_none(), "{message}");
        assert!(message.contains("cannot read"), "{message}");
        // Skipping cannot step over a broken stream.
        let options = ReadOptions {
            on_invalid: OnInvalid::Skip,
            ..ReadOptions::default()
        };
        invalid("cut.jsonl.gz", cut, options);
    }

    #[test]
    fn gzip_magic_with_garbage_after_it_is_an_error() {
        let (line, _, message) = invalid(
            "fake.jsonl.gz",
            b"\x1f\x8b\x08\x00garbage garbage",
            ReadOptions::default(),
        );
        assert_eq!(line, 1, "{message}");
    }

    #[test]
    fn empty_file_is_an_error() {
        assert_invalid(
            "",
            ReadOptions::default(),
            1,
            None,
            "no records: the file is empty",
        );
    }

    #[test]
    fn file_of_blank_lines_is_an_error() {
        assert_invalid("\n  \n\n", ReadOptions::default(), 3, None, "no records");
    }

    #[test]
    fn empty_gzip_is_an_error() {
        let (line, _, message) = invalid("empty.jsonl.gz", gzip(b""), ReadOptions::default());
        assert_eq!(line, 1);
        assert!(message.contains("no records"), "{message}");
    }

    #[test]
    fn record_that_is_not_an_object_is_invalid() {
        assert_invalid(
            format!("{GOOD}\n[1, 2]\n"),
            ReadOptions::default(),
            2,
            None,
            "expected a JSON object, found an array",
        );
    }

    #[test]
    fn record_of_unknown_shape_cannot_be_detected() {
        assert_invalid(
            r#"{"question": "q", "answer": "a"}"#,
            ReadOptions::default(),
            1,
            None,
            "cannot tell the dataset format from this record (fields: answer, question)",
        );
    }

    #[test]
    fn hh_transcript_without_an_assistant_turn_is_invalid() {
        assert_invalid(
            r#"{"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: hey"}"#,
            ReadOptions::default(),
            1,
            Some("chosen"),
            "no \"\\n\\nAssistant:\" turn",
        );
    }

    #[test]
    fn hh_transcripts_sharing_no_assistant_turn_are_invalid() {
        assert_invalid(
            r#"{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}"#,
            ReadOptions::default(),
            1,
            Some("rejected"),
            "shares no prompt",
        );
    }

    #[test]
    fn hh_transcript_ending_at_the_assistant_marker_has_an_empty_response() {
        assert_invalid(
            r#"{"chosen": "\n\nHuman: a\n\nAssistant:", "rejected": "\n\nHuman: a\n\nAssistant: b"}"#,
            ReadOptions::default(),
            1,
            Some("chosen"),
            "empty response",
        );
    }

    #[test]
    fn hh_pair_without_a_shared_prompt_is_invalid_when_rejected() {
        let row = r#"{"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d", "rejected": "\n\nHuman: a\n\nAssistant: e"}"#;
        assert_invalid(
            row,
            strict(None),
            1,
            Some("rejected"),
            "does not start with the prompt",
        );
        let file = TempPath::file("hh.jsonl", row);
        let (pairs, report) = read_pairs(file.path(), &ReadOptions::default()).unwrap();
        assert_eq!(report.no_shared_prompt, [1]);
        assert_eq!(
            pairs[0].prompt,
            Prompt::Text("\n\nHuman: a\n\nAssistant:".into())
        );
        assert_eq!(pairs[0].chosen, " b\n\nHuman: c\n\nAssistant: d");
    }

    #[test]
    fn message_without_content_is_named_by_its_path() {
        assert_invalid(
            r#"{"prompt": [{"role": "user", "content": "u"}], "chosen": [{"role": "assistant"}], "rejected": [{"role": "assistant", "content": "r"}]}"#,
            ReadOptions::default(),
            1,
            Some("chosen[0].content"),
            "missing",
        );
    }

    #[test]
    fn message_that_is_not_an_object_is_invalid() {
        assert_invalid(
            r#"{"prompt": [{"role": "user", "content": "u"}, "hi"], "chosen": [{"role": "assistant", "content": "c"}], "rejected": [{"role": "assistant", "content": "r"}]}"#,
            ReadOptions::default(),
            1,
            Some("prompt[1]"),
            "expected a message {\"role\", \"content\"}, found a string",
        );
    }

    #[test]
    fn response_from_the_user_is_invalid() {
        assert_invalid(
            r#"{"prompt": [{"role": "user", "content": "u"}], "chosen": [{"role": "user", "content": "c"}], "rejected": [{"role": "assistant", "content": "r"}]}"#,
            ReadOptions::default(),
            1,
            Some("chosen[0].role"),
            "expected \"assistant\", found \"user\"",
        );
    }

    #[test]
    fn response_of_two_messages_is_invalid() {
        assert_invalid(
            r#"{"prompt": [{"role": "user", "content": "u"}], "chosen": [{"role": "assistant", "content": "c"}], "rejected": [{"role": "assistant", "content": "r"}, {"role": "assistant", "content": "s"}]}"#,
            ReadOptions::default(),
            1,
            Some("rejected"),
            "expected one assistant message after the prompt, found 2",
        );
    }

    #[test]
    fn implicit_prompt_conversations_sharing_nothing_are_invalid() {
        assert_invalid(
            r#"{"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}], "rejected": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "r"}]}"#,
            ReadOptions::default(),
            1,
            Some("rejected"),
            "shares no prompt",
        );
    }

    #[test]
    fn ultrafeedback_conversations_with_different_contexts_are_invalid() {
        assert_invalid(
            r#"{"prompt": "u", "chosen": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "c"}], "rejected": [{"role": "user", "content": "v"}, {"role": "assistant", "content": "r"}]}"#,
            ReadOptions::default(),
            1,
            Some("rejected"),
            "differs from that of \"chosen\"",
        );
    }

    #[test]
    fn summarize_choice_out_of_range_is_invalid() {
        assert_invalid(
            r#"{"info": {"post": "P"}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 2}"#,
            ReadOptions::default(),
            1,
            Some("choice"),
            "expected 0 or 1, found 2",
        );
    }

    #[test]
    fn summarize_with_one_summary_is_invalid() {
        assert_invalid(
            r#"{"info": {"post": "P"}, "summaries": [{"text": "a"}], "choice": 0}"#,
            ReadOptions::default(),
            1,
            Some("summaries"),
            "expected 2 summaries, found 1",
        );
    }

    #[test]
    fn summarize_without_a_post_is_invalid() {
        assert_invalid(
            r#"{"info": {"title": "T"}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 0}"#,
            ReadOptions::default(),
            1,
            Some("info.post"),
            "missing",
        );
    }

    #[test]
    fn summarize_title_of_the_wrong_type_is_invalid() {
        assert_invalid(
            r#"{"info": {"post": "P", "title": 7}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 0}"#,
            ReadOptions::default(),
            1,
            Some("info.title"),
            "expected a string or null, found a number",
        );
    }

    #[test]
    fn orca_messages_that_are_not_a_list_are_invalid() {
        assert_invalid(
            r#"{"input": {"messages": "hi"}, "preferred_output": [], "non_preferred_output": []}"#,
            ReadOptions::default(),
            1,
            Some("input.messages"),
            "expected a list of messages, found a string",
        );
    }

    #[test]
    fn orca_empty_output_is_invalid() {
        assert_invalid(
            r#"{"input": {"messages": [{"role": "user", "content": "u"}]}, "preferred_output": [], "non_preferred_output": [{"role": "assistant", "content": "r"}]}"#,
            ReadOptions::default(),
            1,
            Some("preferred_output"),
            "found 0",
        );
    }

    #[test]
    fn a_named_format_that_does_not_fit_names_the_field() {
        assert_invalid(
            GOOD,
            ReadOptions {
                format: Some(Format::Orca),
                ..ReadOptions::default()
            },
            1,
            Some("input"),
            "missing",
        );
    }

    #[test]
    fn absent_file_is_an_error_naming_it() {
        let path = TempPath::new("absent.jsonl");
        let message = match read_pairs(path.path(), &ReadOptions::default()) {
            Ok(_) => panic!("absent file read"),
            Err(e) => e.to_string(),
        };
        assert!(message.contains("absent.jsonl: cannot read"), "{message}");
    }

    #[test]
    fn skip_invalid_counts_every_bad_record_with_its_reason_and_reads_the_rest() {
        let mut bytes = Vec::new();
        for line in [
            GOOD,
            "{not json",
            r#"{"prompt": "p", "chosen": null, "rejected": "r"}"#,
            GOOD,
            r#"{"prompt": "p", "rejected": "r"}"#,
            r#"{"prompt": "p", "chosen": "", "rejected": "r"}"#,
            r#"{"prompt": "p", "chosen": "same", "rejected": "same"}"#,
            "[]",
            GOOD,
        ] {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(b"\xff\n");
        let file = TempPath::file("mixed.jsonl", &bytes);
        let options = ReadOptions {
            on_invalid: OnInvalid::Skip,
            ..strict(None)
        };
        let (pairs, report) = read_pairs(file.path(), &options).unwrap();
        assert_eq!(pairs.len(), 3);
        assert_eq!(report.pairs, 3);
        let skipped: Vec<String> = report.skipped.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            skipped,
            [
                "line 2: invalid JSON at column 2: key must be a string",
                "line 3: field \"chosen\": expected a string, found null",
                "line 5: field \"chosen\": missing",
                "line 6: field \"chosen\": empty response",
                "line 7: field \"rejected\": identical to \"chosen\"",
                "line 8: expected a JSON object, found an array",
                "line 10: not valid UTF-8 (byte 1 of the line)",
            ]
        );
    }

    #[test]
    fn skip_invalid_detects_the_format_from_the_first_valid_record() {
        let file = TempPath::file("late.jsonl", format!("[]\n{{\"x\": 1}}\n{GOOD}\n"));
        let options = ReadOptions {
            on_invalid: OnInvalid::Skip,
            ..ReadOptions::default()
        };
        let (pairs, report) = read_pairs(file.path(), &options).unwrap();
        assert_eq!((pairs.len(), report.skipped.len()), (1, 2));
        assert_eq!(report.format, Some(Format::Generic));
    }

    #[test]
    fn reader_yields_nothing_after_an_error() {
        let file = TempPath::file("stop.jsonl", format!("{GOOD}\nbad\n{GOOD}\n"));
        let mut reader = open(file.path(), &ReadOptions::default()).unwrap();
        assert!(reader.next().unwrap().is_ok());
        assert!(reader.next().unwrap().is_err());
        assert!(reader.next().is_none());
    }
}
