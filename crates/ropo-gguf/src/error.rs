use std::path::{Path, PathBuf};

use thiserror::Error;

/// Errors of `ropo-gguf`, each one line naming the file and the field at fault
/// (`model.gguf: tensor 'blk.0.attn_q.weight': offset 100 is not a multiple of the alignment 32`).
#[derive(Debug, Error)]
pub enum GgufError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not a well-formed GGUF file (truncated, an unknown type, a count or offset
    /// that does not fit in the file, ...), or a metadata value is not what its reader needs.
    #[error("{path}: {field}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where in the file: `header`, `metadata 'general.alignment'`, `tensor 'token_embd.weight'`, ...
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A well-formed file that asks for something this crate does not do (GGUF version 1, a
    /// tensor type without a de-quantiser here, arrays of arrays).
    #[error("{path}: {field}: {problem}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Where in the file.
        field: String,
        /// What is not supported.
        problem: String,
    },
}

impl GgufError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. } | Self::Invalid { path, .. } | Self::Unsupported { path, .. } => {
                path
            }
        }
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
