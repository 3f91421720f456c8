//! What turns a run's pairs into token ids: a tokenizer opened from its path with the chat
//! format resolved for it and the length budgets, the one preparation the trainer and the
//! real-data comparison share.

use std::path::Path;

use crate::template::{ChatFormat, Template};
use crate::tokenize::{tokenize, TokenizeOptions, Tokenized};
use crate::{load_tokenizer, ChatPair, DataError, Tokenizer};

/// A tokenizer with the chat format and budgets every pair of a run is tokenized with.
pub struct PairEncoder {
    /// The tokenizer.
    pub tokenizer: Box<dyn Tokenizer>,
    /// The chat format and the budgets.
    pub options: TokenizeOptions,
}

impl PairEncoder {
    /// Opens the tokenizer at `tokenizer` (any [`load_tokenizer`] reads) with `template`
    /// resolved for it (`auto`: the tokenizer folder's own chat template, else ChatML), at most
    /// `max_length` tokens in prompt plus either response and `max_prompt_length` in the
    /// prompt.
    pub fn open(
        tokenizer: &Path,
        template: Template,
        (max_length, max_prompt_length): (usize, usize),
    ) -> Result<Self, DataError> {
        let opened = load_tokenizer(tokenizer)?;
        let options = TokenizeOptions {
            max_prompt_length: Some(max_prompt_length),
            ..TokenizeOptions::new(ChatFormat::resolve(template, tokenizer)?, max_length)
        };
        Ok(Self {
            tokenizer: opened,
            options,
        })
    }

    /// `pairs` tokenized with masks and truncation ([`tokenize`]).
    pub fn encode(&self, pairs: &[ChatPair]) -> Result<Tokenized, DataError> {
        tokenize(pairs, self.tokenizer.as_ref(), &self.options)
    }
}
