use std::path::PathBuf;

use thiserror::Error;

/// Errors of `ropo-models`: a checkpoint that cannot be read, or input a model cannot take.
/// Each names the file (and the tensor or field) at fault.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// `config.json` (or another JSON file) is malformed or misses a field.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column where serde gives them.
        message: String,
    },
    /// A checkpoint's weights do not fit the model its config describes.
    #[error("{path}: weights do not match the model: {details}")]
    Weights {
        /// The checkpoint file (or index).
        path: PathBuf,
        /// Missing, unexpected and wrongly shaped tensors, by name.
        details: String,
    },
    /// A weights file is truncated or corrupt.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A sequence longer than the model's context.
    #[error("sequence of {tokens} tokens exceeds the model's context of {context} tokens")]
    ContextExceeded {
        /// Tokens asked for.
        tokens: usize,
        /// The model's maximum.
        context: usize,
    },
    /// A request the model cannot serve (an empty batch, a token id outside the vocabulary, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// The model computed NaN or infinity where a number was due; the message says where.
    #[error(
        "{0}: not finite (NaN or ∞); the model's weights or config hold a value that overflows"
    )]
    NonFinite(String),
}

impl ModelError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
