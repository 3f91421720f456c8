use thiserror::Error;

/// Errors of `ropo-core`: a loss asked for with a name or hyper-parameter it cannot take.
#[derive(Debug, Error, PartialEq)]
pub enum CoreError {
    /// A hyper-parameter is outside the range where its loss is defined.
    #[error("invalid {name} = {value}: {requirement}")]
    InvalidParameter {
        /// The parameter's name as users write it (`beta`, `alpha`, `epsilon`, ...).
        name: &'static str,
        /// The value given.
        value: f64,
        /// What the value must satisfy.
        requirement: &'static str,
    },
    /// A loss name that is none of [`crate::Loss::NAMES`].
    #[error(
        "unknown loss '{0}': expected one of sigmoid (or dpo), {names}",
        names = crate::Loss::NAMES[1..].join(", ")
    )]
    UnknownLoss(String),
}
