//! Readers of preference datasets in the common formats: JSON Lines (gzipped or not) and
//! parquet (the Hugging Face Hub's dataset format), one file or a folder of them.
//!
//! [`open`] streams a dataset record by record in bounded memory (a JSONL file one line at a
//! time, `.gz` recognised by its magic bytes, not its name; a parquet file, also told by its
//! magic bytes, one row at a time, its columns read a page at a time); [`read_pairs`] collects
//! it. A folder is read as one dataset, every data file under it in path order, and
//! [`open_split`] keeps the files of one split (by the Hub's file names:
//! `train-00000-of-00002.parquet`, `test.jsonl`, `train_prefs/0000.parquet`). The format is
//! named in [`ReadOptions::format`] or detected from the first record ([`Format::detect`]); a
//! parquet row is read as the JSON object of its columns (lists as arrays, structs as objects),
//! so each format has the same columns in parquet as fields in JSONL. A record that cannot be read as a pair is an error naming the
//! file, the line (or row) and the field ([`DataError::InvalidRecord`]), or, with
//! [`OnInvalid::Skip`], counted in its file's [`ReadReport`] with its reason and skipped. Records
//! that read but make a doubtful pair (identical responses; HH transcripts whose responses do not
//! follow one shared prompt) are kept and listed by line, or treated as invalid with
//! [`Degenerate::Reject`].

mod data_files;
mod fields;
mod generic;
mod hh;
mod jsonl;
mod orca;
mod parquet_rows;
mod raw;
mod reader;
mod summarize;
mod trl;
mod ultrafeedback;
mod unique_keys;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde_json::Value;

use crate::ChatPair;
pub use data_files::{is_data_file, DATA_FILE_SUFFIXES};
use fields::{kind, swap_fields, FieldError, Parsed};
pub use reader::{open, open_split, read_pairs, PairReader};

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

/// What to do with a record that reads but makes a doubtful pair: identical responses, a
/// response of whitespace only, or an HH transcript pair that shares no prompt through its
/// last `\n\nAssistant:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Degenerate {
    /// Keep it and list its line in the [`ReadReport`] (public datasets hold such rows: the HH
    /// test splits have 36 identical pairs, 7 without a shared prompt, and responses in which
    /// the assistant says nothing).
    #[default]
    Keep,
    /// Treat it as invalid (an error, or skipped under [`OnInvalid::Skip`]).
    Reject,
}

/// How a data file holds its records, told by its first bytes (not its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// JSON Lines, one record a line, plain or gzipped.
    Jsonl,
    /// Parquet, one record a row.
    Parquet,
}

impl FileKind {
    /// What errors and reports call a record's place in the file: `line` or `row`.
    pub fn record_name(self) -> &'static str {
        match self {
            FileKind::Jsonl => "line",
            FileKind::Parquet => "row",
        }
    }
}

/// How to read a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// The format, or `None` to detect it from the first record.
    pub format: Option<Format>,
    /// Invalid records: an error, or skipped and counted.
    pub on_invalid: OnInvalid,
    /// Doubtful pairs: kept and listed, or invalid.
    pub degenerate: Degenerate,
    /// The longest line of a JSONL file (bytes, after decompression): a longer one is an error
    /// naming its line, so that a file without line breaks (a gzip of zeros, a device) cannot
    /// fill memory, and no record is so long that tokenizing it would. Parquet files have no
    /// lines; their pages are read one at a time.
    pub max_line_bytes: usize,
    /// The most bytes read in all files of the dataset (after decompression; for a parquet
    /// file, each row group's uncompressed size as its metadata gives it, counted at the group's
    /// first row): reading stops with an error past it, so that a small file that expands to
    /// gigabytes cannot fill memory when the pairs are collected.
    pub max_total_bytes: u64,
    /// The most records read in all files of the dataset (kept or skipped): reading stops with
    /// an error past it, so that millions of tiny records cannot fill memory when the pairs are
    /// collected.
    pub max_records: u64,
}

/// [`ReadOptions::max_line_bytes`] unless raised: 1 MiB, fifty times the longest record of
/// the HH and Orca files in the shared assets (20,117 bytes, HH helpful-online). Tokenizing a
/// line of this size with the GPT-2 tokenizer takes about 300 MB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// [`ReadOptions::max_total_bytes`] unless raised: 2 GiB of JSONL, about six times Anthropic
/// HH-RLHF's whole training set; collected as pairs it takes a few GiB of memory.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 2 << 30;

/// [`ReadOptions::max_records`] unless raised: a million, above the public preference sets
/// (HH-RLHF 161k pairs, SHP 385k, UltraFeedback 64k prompts).
pub const DEFAULT_MAX_RECORDS: u64 = 1_000_000;

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            format: None,
            on_invalid: OnInvalid::default(),
            degenerate: Degenerate::default(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_records: DEFAULT_MAX_RECORDS,
        }
    }
}

/// One pair read from a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its file: the index of the file's report in [`PairReader::reports`] (0 for a dataset of
    /// one file).
    pub file: usize,
    /// Its line in the file (its row, in a parquet file), from 1.
    pub line: u64,
    /// The pair.
    pub pair: ChatPair,
    /// The record as it is in the file, a parquet row as the JSON object of its columns (to
    /// write a modified copy, see [`Format::swap_labels`]).
    pub raw: Value,
}

/// A record that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Its line (its row, in a parquet file), from 1.
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

/// What a reader saw in one data file: the format, how many pairs it gave, and what it skipped
/// or doubted. Lines are rows in a parquet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReport {
    /// The file.
    pub path: PathBuf,
    /// JSONL or parquet.
    pub kind: FileKind,
    /// The format, once named or detected.
    pub format: Option<Format>,
    /// Lines read (blank ones included), or rows.
    pub lines: u64,
    /// Pairs given out.
    pub pairs: usize,
    /// Records skipped under [`OnInvalid::Skip`], with their reasons, in file order.
    pub skipped: Vec<Invalid>,
    /// Lines of kept pairs whose two responses are identical (no preference signal).
    pub identical: Vec<u64>,
    /// Lines of kept pairs with a response of whitespace only.
    pub blank_response: Vec<u64>,
    /// Lines of kept HH pairs whose `rejected` does not start with the prompt of `chosen` (the
    /// text through its last `\n\nAssistant:`); they were split after the last
    /// `\n\nAssistant:` of the text both share, so a response may hold more than one turn.
    pub no_shared_prompt: Vec<u64>,
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

#[cfg(test)]
mod tests;
