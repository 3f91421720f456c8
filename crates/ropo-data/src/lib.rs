//! Preference data (scaffolding for now).
//!
//! This crate will hold the readers of the common preference-dataset formats, tokenizers,
//! prompt/response masks, seeded label-noise injection and the built-in gold-reward task. It
//! knows nothing of models.
