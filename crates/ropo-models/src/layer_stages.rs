//! A forward pass as stages: the embedding, each decoder layer, the head. Every stage maps the
//! hidden states of each of the forward's segments (a pair batch's prompts, then its responses,
//! which attend to the prompts' keys and values), `[batch, seq, d_model]` each.
//!
//! Scoring runs the stages straight through ([`run_stages`]). A training step with activation
//! checkpointing (as PyTorch's per-block `gradient_checkpointing`) runs them without the
//! autodiff graph keeping only each layer's input, then runs its backward a stage at a time
//! from the head down, recomputing each layer from its kept input (`ropo-train`'s
//! `layer_checkpointing`): the activations of one layer are held at a time, not of all.

use burn::tensor::Tensor;

use crate::{attention::AttentionBackend, CausalLm};

/// A forward split at its decoder layers.
pub trait LayerStages<B: AttentionBackend> {
    /// What the head stage gives: the log-probs a loss reads.
    type Output;

    /// The first layer's inputs, one `[batch, seq, d_model]` per segment.
    fn embed(&self, model: &CausalLm<B>) -> Vec<Tensor<B, 3>>;

    /// Decoder layer `index` on every segment's hidden states (same shapes out).
    fn layer(
        &self,
        model: &CausalLm<B>,
        index: usize,
        hidden: Vec<Tensor<B, 3>>,
    ) -> Vec<Tensor<B, 3>>;

    /// The final norm and the output head on the last layer's outputs.
    fn head(&self, model: &CausalLm<B>, hidden: Vec<Tensor<B, 3>>) -> Self::Output;
}

/// Every stage in order: the forward without checkpoints.
pub fn run_stages<B: AttentionBackend, S: LayerStages<B>>(
    model: &CausalLm<B>,
    stages: &S,
) -> S::Output {
    let hidden = (0..model.num_layers()).fold(stages.embed(model), |hidden, index| {
        stages.layer(model, index, hidden)
    });
    stages.head(model, hidden)
}
