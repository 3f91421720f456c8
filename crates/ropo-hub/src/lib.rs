//! Hugging Face Hub ids, resolved into the cache Python's `huggingface_hub` uses.
//!
//! Wherever ropo takes a model, tokenizer or dataset path it also takes a Hub id,
//! `org/name[@revision]` ([`HubId`]). [`Hub::snapshot`] fetches the files of a repository that
//! a caller wants (over `ureq`) into the shared cache folder and layout of
//! `huggingface_hub` (`models--org--name/{blobs,snapshots,refs}` under `HF_HUB_CACHE`), so
//! that both share downloads, and returns the snapshot folder, which the rest of ropo reads
//! as a local path. `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE=1` (the cache only) are
//! honoured ([`HubConfig::from_env`]), and so are `HF_HUB_ETAG_TIMEOUT` and
//! `HF_HUB_DOWNLOAD_TIMEOUT`. Every download is cut at and checked against the size (and, for
//! LFS files, the SHA-256) the Hub lists, and every path it writes is made from checked values
//! only, inside the cache. Each failure is one [`HubError`] naming the repository, revision or
//! file and what to do.
//!
//! It does not use the `hf-hub` crate: hf-hub 0.4 joins the server's `ETag` and
//! `X-Repo-Commit` to cache paths unchecked (an answer could make it write anywhere) and sets
//! no timeouts and no size limits.
//!
//! The crate knows nothing of models or datasets: callers say which files they want
//! ([`model_files`] is the choice for a model folder).

mod cache;
mod config;
mod download;
mod error;
mod files;
mod hub;
mod id;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use config::HubConfig;
pub use error::HubError;
pub use files::model_files;
pub use hub::{Hub, RepoKind, LISTING_BYTES};
pub use id::HubId;
