//! Preference pairs, as text and as the token ids a model sees.

use serde::{Deserialize, Serialize};

/// One preference judgement in text: for `prompt`, `chosen` was preferred over `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextPair {
    /// The shared context (for chat data, the conversation up to the assistant's turn).
    pub prompt: String,
    /// The preferred response.
    pub chosen: String,
    /// The dispreferred response.
    pub rejected: String,
}

/// One preference pair as token ids: `prompt` holds BOS and the template around the user's
/// text; `chosen` and `rejected` hold the response tokens and end with EOS. The response mask
/// of a sequence `prompt ++ response` is therefore `[0; prompt.len()] ++ [1; response.len()]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizedPair {
    /// Prompt token ids (conditioning, never scored).
    pub prompt: Vec<u32>,
    /// Preferred response token ids.
    pub chosen: Vec<u32>,
    /// Dispreferred response token ids.
    pub rejected: Vec<u32>,
}

/// Anything whose preference label can be flipped by exchanging chosen and rejected.
pub trait Preference {
    /// The same pair with the label flipped.
    fn swapped(self) -> Self;
    /// Lengths of (chosen, rejected), in whatever unit the pair holds (bytes or tokens).
    fn response_lengths(&self) -> (usize, usize);
}

impl Preference for TextPair {
    fn swapped(self) -> Self {
        Self {
            chosen: self.rejected,
            rejected: self.chosen,
            ..self
        }
    }

    fn response_lengths(&self) -> (usize, usize) {
        (self.chosen.len(), self.rejected.len())
    }
}

impl Preference for TokenizedPair {
    fn swapped(self) -> Self {
        Self {
            chosen: self.rejected,
            rejected: self.chosen,
            ..self
        }
    }

    fn response_lengths(&self) -> (usize, usize) {
        (self.chosen.len(), self.rejected.len())
    }
}

impl TokenizedPair {
    /// Tokens of the longer of the two full sequences (prompt plus response).
    pub fn max_len(&self) -> usize {
        self.prompt.len() + self.chosen.len().max(self.rejected.len())
    }
}

/// One turn of a conversation: who speaks (`system`, `user`, `assistant`, ...) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The speaker, as the dataset names it.
    pub role: String,
    /// What was said.
    pub content: String,
}

/// A prompt as a dataset gives it: final text, or a conversation for a chat template to render.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prompt {
    /// Text already in the form the model sees (an HH transcript through `\n\nAssistant:`, a
    /// TL;DR prompt, a plain string); templates leave it and its responses as they are.
    Text(String),
    /// The conversation before the assistant's answer; a chat template renders it and adds the
    /// assistant's turn markers around the responses.
    Messages(Vec<Message>),
}

/// A preference pair as read from a dataset, before any chat template: the [`TextPair`] of
/// a dataset whose prompt may be a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatPair {
    /// The shared context.
    pub prompt: Prompt,
    /// The preferred response's text (the assistant's content only).
    pub chosen: String,
    /// The dispreferred response's text.
    pub rejected: String,
}

impl Preference for ChatPair {
    fn swapped(self) -> Self {
        Self {
            chosen: self.rejected,
            rejected: self.chosen,
            ..self
        }
    }

    fn response_lengths(&self) -> (usize, usize) {
        (self.chosen.len(), self.rejected.len())
    }
}

impl From<TextPair> for ChatPair {
    fn from(pair: TextPair) -> Self {
        Self {
            prompt: Prompt::Text(pair.prompt),
            chosen: pair.chosen,
            rejected: pair.rejected,
        }
    }
}
