//! Transformer language models for preference training, on burn.
//!
//! One file per family — [`gpt2`], [`gpt_neox`] (Pythia) and [`llama`] (Llama-2/3, Mistral,
//! Qwen2) — each with its Hugging Face config, modules and parameter names, implementing
//! [`family::FamilyConfig`] and [`family::Family`], and registered in one line of
//! [`families`]. What every family
//! shares lives once: the attention core and masks ([`attention`]), rotary embeddings
//! ([`rotary`]), the KV cache ([`cache`]), response log-probs and sampling. Checkpoints load
//! from Hugging Face folders (`config.json` + `*.safetensors`, sharded or not, f32/f16/bf16,
//! including the original un-prefixed `gpt2`), llama2.c `.bin` files and llama.cpp's GGUF
//! files (llama architecture, de-quantised to f32 through `ropo-gguf`) ([`checkpoint`]).
//! The crate sees token ids only: text and tokenizers belong to `ropo-data`.

pub mod activation;
pub mod activation_backend;
pub mod attention;
pub mod cache;
pub mod checkpoint;
pub mod config;
mod error;
pub mod families;
pub mod family;
#[cfg(feature = "flex")]
mod flex_storage;
mod float_primitive;
mod generate;
mod gguf;
pub mod gpt2;
pub mod gpt_neox;
pub mod head;
pub mod integrity;
pub mod layer_stages;
pub mod llama;
mod llama2c;
mod logprobs;
pub mod lora;
mod model;
pub mod model_size;
pub mod norm;
pub mod peft;
pub mod product;
pub mod rotary;
mod shared_prompt;
pub mod text_file;
mod vector_exp;
pub mod vocab_logps;
mod weight_report;
pub mod weights_file;

pub use error::ModelError;
pub use families::CausalLm;
pub use generate::{generate, SamplingConfig};
pub use logprobs::{score, token_logps, ResponseLogps, ScoreRow, ScoreStages};
pub use shared_prompt::{score_pairs, PairRow, PairStages};
