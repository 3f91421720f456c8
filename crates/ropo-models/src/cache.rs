//! The key/value cache that makes generation cost one token's forward per step.

use burn::tensor::{backend::Backend, Tensor};

/// Per-layer keys and values of every token seen so far, each `[batch, len, kv_heads, head_dim]`
/// (keys already rotated). Shared by every family.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model with `layers` layers.
    pub fn new(layers: usize) -> Self {
        Self {
            layers: vec![None; layers],
        }
    }

    /// How many token positions the cache holds.
    pub fn len(&self) -> usize {
        match self.layers.first() {
            Some(Some((keys, _))) => keys.dims()[1],
            _ => 0,
        }
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same cache with every row repeated `times` times along the batch, rows
    /// `[0..batch]` then again: so one prompt's keys and values serve several continuations.
    pub fn repeat_batch(&self, times: usize) -> Self {
        let repeat = |t: &Tensor<B, 4>| Tensor::cat(vec![t.clone(); times], 0);
        Self {
            layers: self
                .layers
                .iter()
                .map(|layer| layer.as_ref().map(|(k, v)| (repeat(k), repeat(v))))
                .collect(),
        }
    }

    /// Appends this step's `key`/`value` for `layer` and returns all keys and values so far.
    pub(crate) fn extend(
        &mut self,
        layer: usize,
        key: Tensor<B, 4>,
        value: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let joined = match self.layers[layer].take() {
            Some((keys, values)) => (
                Tensor::cat(vec![keys, key], 1),
                Tensor::cat(vec![values, value], 1),
            ),
            None => (key, value),
        };
        self.layers[layer] = Some(joined.clone());
        joined
    }
}

/// Keys and values to attend to: this step's alone, or the cache's after appending them.
pub(crate) fn with_cache<B: Backend>(
    cache: Option<&mut KvCache<B>>,
    layer: usize,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    match cache {
        Some(cache) => cache.extend(layer, key, value),
        None => (key, value),
    }
}
