use std::path::PathBuf;

use thiserror::Error;

/// Errors of `ropo-train`: bad configuration, a failing model or data step, a diverged step,
/// or a run folder that cannot be written.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A configuration value is missing, unknown or impossible.
    #[error("{0}")]
    Config(String),
    /// A loss hyper-parameter is invalid.
    #[error(transparent)]
    Loss(#[from] ropo_core::CoreError),
    /// The model refused a batch or a checkpoint.
    #[error(transparent)]
    Model(#[from] ropo_models::ModelError),
    /// The data could not be read or prepared.
    #[error(transparent)]
    Data(#[from] ropo_data::DataError),
    /// A step produced NaN or infinity.
    #[error("step {step}: {what} is {value} (not finite); stopping. {last_good}")]
    NonFinite {
        /// The optimiser step (1-based) at which it appeared.
        step: usize,
        /// Which quantity (`loss`, `grad_norm`).
        what: &'static str,
        /// The value.
        value: f64,
        /// Where the last good state is.
        last_good: String,
    },
    /// A step's update left weights that are not finite, or the trained model gives
    /// non-finite log-probs: the run diverged, and nothing is exported.
    #[error(
        "step {step}: {what}; the run diverged (lower the learning rate), so it stops without \
         exporting a model"
    )]
    Diverged {
        /// The optimiser step (1-based) whose update it was.
        step: usize,
        /// What was found.
        what: String,
    },
    /// A checkpoint could not be written, or is missing, truncated or corrupt.
    #[error("checkpoint {0}")]
    Checkpoint(String),
    /// The run stopped on request (a time box); its last checkpoint resumes it.
    #[error("stopped after {0} preference steps as asked; resume from the run folder")]
    Stopped(usize),
    /// A data-parallel rank failed, stopped answering, or could not join the group.
    #[error("data-parallel peer {rank}: {message}")]
    Peer {
        /// The rank (0: the one that writes the run).
        rank: usize,
        /// What went wrong.
        message: String,
    },
    /// The nodes of a multi-node run disagree, or one stopped answering (`node`: the one
    /// reporting it).
    #[error("node {node}: {message}")]
    Node {
        /// The node that reports it.
        node: usize,
        /// What went wrong, naming the node at fault where it is known.
        message: String,
    },
    /// A file of the run could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl TrainError {
    /// Wraps an I/O error with its path, for `map_err`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
