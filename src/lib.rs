//! ropo: robust preference optimisation (ROPO) and the baselines it is compared with, on burn.
//!
//! This root crate re-exports the member crates and picks the compute backend from the cargo
//! features (`cpu`, the default; `cuda`; `wgpu`), so that end-to-end tests and the command
//! lines (`ropo-cli`, `xtask`) share one definition of it. It also holds the rules every entry
//! point follows for the files a run names and writes: [`paths`] (relative paths, Hub ids) and
//! [`run_folder`] (one writer per run folder, what `--overwrite` may remove).

pub mod backend;
pub mod paths;
pub mod run_folder;

pub use ropo_core as core;
pub use ropo_data as data;
pub use ropo_hub as hub;
pub use ropo_models as models;
pub use ropo_train as train;
