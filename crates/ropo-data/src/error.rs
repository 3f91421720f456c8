use std::path::PathBuf;

use thiserror::Error;

use crate::formats::FileKind;

/// Errors of `ropo-data`. Every one names the file (or folder) it is about and, where there is
/// one, the place in it (byte offset, line, field) and what is wrong there, so that a caller can
/// print it as a single line.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file or folder could not be read (absent, unreadable, not valid UTF-8 where text is
    /// required).
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A binary file ends before a field that it must hold.
    #[error("{}: truncated at byte {offset}: expected {expected} (the file ends at byte {len})", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where the missing field starts.
        offset: u64,
        /// What was expected there, e.g. `4 bytes of token 17's length`.
        expected: String,
        /// The file's length in bytes.
        len: u64,
    },

    /// A file is readable but breaks its format at a known place.
    #[error("{}: {location}: {problem}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where: `byte 1234`, `line 7`, `field "bos_token"`, ...
        location: String,
        /// What is wrong there.
        problem: String,
    },

    /// A JSON file that does not parse, or does not have the expected shape.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        #[source]
        source: serde_json::Error,
    },

    /// The `tokenizers` library refused a file or an operation.
    #[error("{}: {context}: {source}", path.display())]
    Tokenizers {
        /// The tokenizer's file.
        path: PathBuf,
        /// What was being done: `not a valid tokenizer.json`, `cannot encode`, ...
        context: String,
        /// The library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A folder holds no tokenizer that [`crate::load_tokenizer`] knows.
    #[error(
        "{}: no tokenizer found (looked for tokenizer.json, encoder.json + vocab.bpe, tokenizer.bin, tok*.bin)",
        path.display()
    )]
    NoTokenizer {
        /// The folder.
        path: PathBuf,
    },

    /// A folder holds several llama2.c tokenizers and nothing says which one to use.
    #[error("{}: several llama2.c tokenizers ({}): name one of them", path.display(), candidates.join(", "))]
    AmbiguousTokenizer {
        /// The folder.
        path: PathBuf,
        /// The candidates' file names.
        candidates: Vec<String>,
    },

    /// A tokenizer made of two files (GPT-2's `encoder.json` + `vocab.bpe`) lacks one of them.
    #[error("{}: needs {} beside it, which does not exist", path.display(), missing.display())]
    MissingCompanion {
        /// The file that was found (or the folder).
        path: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },

    /// A file whose name says nothing of a tokenizer format this crate reads.
    #[error(
        "{}: not a tokenizer this crate reads (expected a tokenizer.json, a llama2.c .bin, encoder.json or vocab.bpe)",
        path.display()
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },

    /// A token id at or past the vocabulary size was given to decode.
    #[error("{}: token id {id} is out of range: the vocabulary has {vocab_size} ids", path.display())]
    TokenOutOfRange {
        /// The tokenizer's file.
        path: PathBuf,
        /// The offending id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// A record (a JSONL line, a parquet row) of a preference dataset that cannot be read as a
    /// pair.
    #[error("{}: {} {line}: {}", path.display(), kind.record_name(), field_problem(field.as_deref(), problem))]
    InvalidRecord {
        /// The dataset file.
        path: PathBuf,
        /// JSONL or parquet: whether `line` is a line or a row.
        kind: FileKind,
        /// The record's line (row), from 1.
        line: u64,
        /// The field at fault, as a path into the record (`chosen`, `input.messages[2].role`);
        /// `None` where the line as a whole is at fault (not UTF-8, not JSON, unknown shape).
        field: Option<String>,
        /// What is wrong there.
        problem: String,
    },

    /// A dataset folder with no data file to read, or none of the split asked for.
    #[error("{}: {}", path.display(), no_data_files(split.as_deref(), splits))]
    NoDataFiles {
        /// The folder (or the file, when it is not of the split).
        path: PathBuf,
        /// The split asked for, if one was.
        split: Option<String>,
        /// The splits its data files belong to, sorted.
        splits: Vec<String>,
    },

    /// A parameter outside the range where it means something (a noise rate of 0.5, ...).
    #[error("invalid {name} = {value}: {requirement}")]
    InvalidParameter {
        /// The parameter's name as users write it.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What the value must satisfy.
        requirement: &'static str,
    },
}

/// `field "chosen": problem`, or the problem alone when no field is at fault.
fn field_problem(field: Option<&str>, problem: &str) -> String {
    match field {
        Some(field) => format!("field {field:?}: {problem}"),
        None => problem.to_owned(),
    }
}

/// `no data files (...)`, or `no data files of split "x" (splits found: a, b)`.
fn no_data_files(split: Option<&str>, splits: &[String]) -> String {
    match split {
        None => format!(
            "no data files ({})",
            crate::formats::DATA_FILE_SUFFIXES.join(", ")
        ),
        Some(split) if splits.is_empty() => {
            format!("no data files of split {split:?} (no split found)")
        }
        Some(split) => format!(
            "no data files of split {split:?} (splits found: {})",
            splits.join(", ")
        ),
    }
}

impl DataError {
    /// An [`DataError::Io`] for `path`, as a closure for `map_err`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| DataError::Io { path, source }
    }
}
