//! Preference data and tokenizers.
//!
//! This crate turns text into the token ids that models see: readers of the common
//! preference-dataset formats ([`formats`]), chat templates (built-in ones and the model's own
//! Jinja template: [`template`], [`chat_template`]), tokenization with
//! prompt/response masks and truncation ([`tokenize`]; [`encoder`] opens a tokenizer with its
//! chat format and budgets for a run), seeded label noise with flip masks
//! ([`noise`]), resumable length-bucketed batching ([`batches`]) and the built-in gold-reward
//! task ([`gold`]). It knows nothing of models: [`Tokenizer`] is the whole
//! contract between text and a model, and [`load_tokenizer`] opens any tokenizer it reads
//! (Hugging Face `tokenizer.json`, GPT-2's `encoder.json` + `vocab.bpe`, llama2.c `.bin`, the
//! `tokenizer.*` keys of a llama.cpp `.gguf` file).
//! Every fallible function returns [`DataError`], whose message names the file and the place
//! in it.

pub mod batches;
pub mod chat_template;
pub mod encoder;
mod error;
pub mod formats;
pub mod gold;
pub mod noise;
mod pair;
pub mod split;
pub mod template;
pub mod tokenize;
pub mod tokenizer;

#[cfg(test)]
mod test_support;

pub use error::DataError;
pub use pair::{ChatPair, Message, Preference, Prompt, TextPair, TokenizedPair};
pub use tokenizer::{load_tokenizer, GgufVocab, HfTokenizer, Llama2cTokenizer, Tokenizer};
