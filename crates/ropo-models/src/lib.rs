//! Transformer language models for preference training (scaffolding for now).
//!
//! This crate will hold the GPT-2, GPT-NeoX/Pythia and Llama-family model definitions on burn,
//! loading of Hugging Face and llama2.c checkpoints, per-sequence response log-probs and
//! KV-cached generation. It sees token ids only, never text.
