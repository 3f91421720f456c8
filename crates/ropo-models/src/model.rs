//! [`CausalLm`]: one type for a model of any family, so scoring, generation and training are
//! written once.

use burn::{
    module::Module,
    tensor::{backend::Backend, Int, Tensor},
};

use crate::{
    attention::{AttentionBackend, AttentionMask},
    cache::KvCache,
    config::ModelConfig,
    gpt2::Gpt2,
    gpt_neox::GptNeox,
    head::Head,
    llama::Llama,
    vocab_logps,
};

/// A causal language model of any supported family.
#[derive(Module, Debug)]
pub enum CausalLm<B: Backend> {
    /// GPT-2.
    Gpt2(Gpt2<B>),
    /// GPT-NeoX (Pythia).
    GptNeox(GptNeox<B>),
    /// Llama-2/3, Mistral, Qwen2.
    Llama(Llama<B>),
}

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
        match self {
            Self::Gpt2(model) => model.hidden(tokens, mask, cache),
            Self::GptNeox(model) => model.hidden(tokens, mask, cache),
            Self::Llama(model) => model.hidden(tokens, mask, cache),
        }
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
        match self {
            Self::Gpt2(model) => model.head(),
            Self::GptNeox(model) => model.head(),
            Self::Llama(model) => model.head(),
        }
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> ModelConfig {
        match self {
            Self::Gpt2(model) => ModelConfig::Gpt2(model.config().clone()),
            Self::GptNeox(model) => ModelConfig::GptNeox(model.config().clone()),
            Self::Llama(model) => ModelConfig::Llama(model.config().clone()),
        }
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Gpt2(model) => model.config().vocab_size,
            Self::GptNeox(model) => model.config().vocab_size,
            Self::Llama(model) => model.config().vocab_size,
        }
    }

    /// The longest sequence (prompt plus response) the model takes.
    pub fn context_length(&self) -> usize {
        match self {
            Self::Gpt2(model) => model.config().n_positions,
            Self::GptNeox(model) => model.config().max_position_embeddings,
            Self::Llama(model) => model.config().max_position_embeddings,
        }
    }

    /// Number of decoder layers (the size of a [`KvCache`]).
    pub fn num_layers(&self) -> usize {
        match self {
            Self::Gpt2(model) => model.config().n_layer,
            Self::GptNeox(model) => model.config().num_hidden_layers,
            Self::Llama(model) => model.config().num_hidden_layers,
        }
    }

    /// An empty KV cache sized for this model.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.num_layers())
    }
}
