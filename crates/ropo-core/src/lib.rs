//! Preference-optimisation losses and their metrics, generic over burn's [`Backend`].
//!
//! Every loss here is a pure function of per-sequence summed log-probabilities — policy and
//! reference, chosen and rejected, each `[batch]` — and returns *unreduced* per-pair losses
//! together with the implicit rewards, so a trainer can weight, filter and log them. It knows
//! nothing of models, tokenizers or files: a user can take this crate alone and call
//! [`LossConfig::forward`] inside their own training loop. [`LossSpec`] declares every loss
//! hyper-parameter once, for config files (serde) and, with the `clap` feature, flags.
//!
//! The losses are DPO (`sigmoid`), ROPO and its noise-aware term, conservative DPO, unbiased
//! robust DPO, IPO, hinge (SLiC) and SimPO; see [`Loss`] for the formulas and papers.
//!
//! [`Backend`]: burn::tensor::backend::Backend

mod error;
mod logps;
mod loss;
mod loss_spec;
mod metrics;
mod stable;

pub use error::CoreError;
pub use logps::PairLogps;
pub use loss::{IpoMargin, Loss, LossConfig, LossOutput, RePoBase};
pub use loss_spec::{LossParams, LossSpec, RePoForm, UnusedParameter, DEFAULT_BETA};
pub use metrics::PreferenceMetrics;
pub use stable::{log_sigmoid, sigmoid, softplus};
