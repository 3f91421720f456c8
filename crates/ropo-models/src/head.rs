//! The output head shared by every family: its own projection, or the token embedding read
//! backwards when the two are tied.

use burn::{
    nn::{Embedding, Linear},
    tensor::{backend::Backend, module::linear, Tensor},
};

/// Next-token logits of hidden states `x`: `[batch, seq, d_model]` -> `[batch, seq, vocab]`,
/// through `head` when the model has one, else through the transposed `embedding` (tied).
pub fn logits<B: Backend>(
    x: Tensor<B, 3>,
    head: Option<&Linear<B>>,
    embedding: &Embedding<B>,
) -> Tensor<B, 3> {
    match head {
        Some(head) => head.forward(x),
        None => linear(x, embedding.weight.val().transpose(), None),
    }
}

/// The output head as a `[d_model, vocab]` matrix: `head`'s weight (burn stores a linear layer
/// as `[d_in, d_out]`), else the token embedding `[vocab, d_model]` transposed (tied).
pub fn weight<B: Backend>(head: Option<&Linear<B>>, embedding: &Embedding<B>) -> Tensor<B, 2> {
    match head {
        Some(head) => head.weight.val(),
        None => embedding.weight.val().transpose(),
    }
}
