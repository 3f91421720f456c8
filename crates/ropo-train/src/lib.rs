//! Training orchestration (scaffolding for now).
//!
//! This crate will hold SFT, preference training with any `ropo-core` loss, evaluation and
//! resumable checkpoints, and the iterative ROPO framework (noise filtering and rejection
//! sampling), tying `ropo-models` and `ropo-data` together.
