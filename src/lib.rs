//! ropo: robust preference optimisation (ROPO) and the baselines it is compared with, on burn.
//!
//! This root crate re-exports the member crates and picks the compute backend from the cargo
//! features (`cpu`, the default; `cuda`; `wgpu`), so that end-to-end tests and the `xtask`
//! entry points share one definition of it.

pub mod backend;

pub use ropo_core as core;
pub use ropo_data as data;
pub use ropo_hub as hub;
pub use ropo_models as models;
pub use ropo_train as train;
