//! The output head shared by every family: its own projection, or the token embedding read
//! backwards when the two are tied.

use burn::{
    nn::{Embedding, Linear},
    tensor::{backend::Backend, module::linear, Tensor},
};

/// A model's output head, borrowed from it.
pub struct Head<'a, B: Backend> {
    /// The head's own projection, absent when tied to the embedding.
    pub projection: Option<&'a Linear<B>>,
    /// The token embedding, `[vocab, d_model]`.
    pub embedding: &'a Embedding<B>,
}

impl<B: Backend> Head<'_, B> {
    /// Next-token logits of hidden states `x`: `[batch, seq, d_model]` -> `[batch, seq, vocab]`.
    pub fn logits(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match self.projection {
            Some(head) => head.forward(x),
            None => linear(x, self.embedding.weight.val().transpose(), None),
        }
    }

    /// The head as a `[d_model, vocab]` matrix (burn stores a linear layer as `[d_in, d_out]`;
    /// the tied embedding `[vocab, d_model]` is transposed): logits are `hidden · weight`.
    pub fn weight(&self) -> Tensor<B, 2> {
        match self.projection {
            Some(head) => head.weight.val(),
            None => self.embedding.weight.val().transpose(),
        }
    }
}
