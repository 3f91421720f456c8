//! Hugging Face Hub ids, resolved into the cache Python's `huggingface_hub` uses.
//!
//! Wherever ropo takes a model, tokenizer or dataset path it also takes a Hub id,
//! `org/name[@revision]` ([`HubId`]). [`Hub::snapshot`] fetches the files of a repository that
//! a caller wants (through the `hf-hub` crate) into the shared cache folder and layout of
//! `huggingface_hub` (`models--org--name/{blobs,snapshots,refs}` under `HF_HUB_CACHE`), so
//! that both share downloads, and returns the snapshot folder, which the rest of ropo reads
//! as a local path. `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE=1` (the cache only) are
//! honoured ([`HubConfig::from_env`]). Every download is checked against the size (and, for
//! LFS files, the SHA-256) the Hub lists. Each failure is one [`HubError`] naming the
//! repository, revision or file and what to do.
//!
//! The crate knows nothing of models or datasets: callers say which files they want
//! ([`model_files`] is the choice for a model folder).

mod config;
mod error;
mod files;
mod hub;
mod id;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use config::HubConfig;
pub use error::HubError;
pub use files::model_files;
pub use hub::{Hub, RepoKind};
pub use id::HubId;
