//! [`CausalLm`]'s methods: one type for a model of any family, so scoring, generation and
//! training are written once.

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::{
    attention::{AttentionBackend, AttentionMask},
    cache::KvCache,
    families::CausalLm,
    head::Head,
    vocab_logps,
};

impl<B: AttentionBackend> CausalLm<B> {
    /// Next-token logits. `tokens`: `[batch, seq]` (the tokens after those already in `cache`,
    /// if any); returns `[batch, seq, vocab]`.
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        mask: &AttentionMask<B>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        self.head().logits(self.hidden(tokens, mask, cache))
    }

    /// The final hidden states the output head reads, `[batch, seq, d_model]`; same arguments
    /// as [`Self::forward`].
    pub fn hidden(
        &self,
        tokens: Tensor<B, 2, Int>,
        mask: &AttentionMask<B>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let family = self.family();
        let positions = family.positions(mask, &tokens.device());
        let x = family.embed(tokens, mask);
        family.final_norm(family.layers(0..self.num_layers(), x, &positions, cache))
    }

    /// `log p(targets[b, t] | hidden[b, t])` through the output head, `[batch, seq]`, from
    /// `hidden` `[batch, seq, d_model]` and `targets` `[batch, seq]`, a block of vocabulary
    /// columns at a time so that the `[batch, seq, vocab]` logits never exist whole (see [`vocab_logps`]).
    pub fn target_logps(&self, hidden: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let [batch, seq, width] = hidden.dims();
        B::target_logps(
            hidden.reshape([batch * seq, width]),
            self.head().weight(),
            targets.reshape([batch * seq]),
            vocab_logps::block_columns(batch * seq),
        )
        .reshape([batch, seq])
    }
}

impl<B: Backend> CausalLm<B> {
    /// The output head.
    pub fn head(&self) -> Head<'_, B> {
        self.family().head()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.family().family_config().vocab_size()
    }

    /// The longest sequence (prompt plus response) the model takes.
    pub fn context_length(&self) -> usize {
        self.family().family_config().context_length()
    }

    /// Number of decoder layers (the size of a [`KvCache`]).
    pub fn num_layers(&self) -> usize {
        self.family().family_config().num_layers()
    }

    /// An empty KV cache sized for this model.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.num_layers())
    }
}
