//! [`AttentionBackend`]: the burn backends ropo's models run on, each with its best scaled
//! dot-product attention, forward and backward.
//!
//! burn 0.21's `Autodiff` backend runs attention as separate tensor operations (scores, mask,
//! softmax, weighted sum), each kept for the backward pass. This trait gives attention one
//! backward step of its own instead (see `autodiff.rs`), so a backend can supply fused kernels
//! for both passes: the CPU backend does (`flex.rs`); the others use the provided methods,
//! which are built from burn tensor operations.

use burn::tensor::{
    backend::{AutodiffBackend, Backend},
    module,
    ops::AttentionModuleOptions,
    Tensor,
};

use super::KeyMask;
use crate::vocab_logps::VocabBackend;

/// A burn backend with scaled dot-product attention (scale `1/√head_dim`) for every head
/// layout ropo's models use, in the projections' layout: `query` `[batch, queries, heads,
/// head_dim]`, `key` and `value` `[batch, keys, kv_heads, head_dim]`, where query head `h` reads
/// kv head `h / (heads / kv_heads)` (grouped-query attention), and `mask` says which keys each
/// query may see. The provided methods swap to burn's `[batch, heads, seq, head_dim]` and back.
/// It is also a [`VocabBackend`], so one bound gives a model everything it runs.
pub trait AttentionBackend: VocabBackend {
    /// The attention output, `[batch, queries, heads, head_dim]`.
    fn masked_attention(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        mask: &KeyMask,
    ) -> Tensor<Self, 4> {
        let [query, key, value] = [query, key, value].map(|t| t.swap_dims(1, 2));
        let heads = query.dims()[1];
        let [_, queries, keys] = mask.dims();
        let plain_causal = mask.blocked_keys().is_none() && queries == keys;
        let blocked = (!plain_causal).then(|| mask.tensor::<Self>(heads, &query.device()));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: plain_causal,
        };
        module::attention(
            query,
            repeat_kv(key, heads),
            repeat_kv(value, heads),
            blocked,
            None,
            options,
        )
        .swap_dims(1, 2)
    }

    /// The attention output, `[batch, queries, heads, head_dim]`, and the log-sum-exp of each
    /// query's scaled scores, `[batch, heads, queries]`, which [`Self::masked_attention_backward`]
    /// uses to rebuild the probabilities.
    fn masked_attention_with_lse(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        mask: &KeyMask,
    ) -> (Tensor<Self, 4>, Tensor<Self, 3>) {
        let [query, key, value] = [query, key, value].map(|t| t.swap_dims(1, 2));
        let heads = query.dims()[1];
        let value = repeat_kv(value, heads);
        let scores = masked_scores(query, key, mask);
        let top = scores.clone().max_dim(3);
        let lse = top.clone() + (scores.clone() - top).exp().sum_dim(3).log();
        let probs = (scores - lse.clone()).exp();
        (probs.matmul(value).swap_dims(1, 2), lse.squeeze_dim(3))
    }

    /// The gradients of `query`, `key` and `value` (shaped like them) from the gradient of the
    /// output, `grad`, and what the forward gave (`output`, `lse`).
    #[allow(clippy::too_many_arguments)]
    fn masked_attention_backward(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        output: Tensor<Self, 4>,
        lse: Tensor<Self, 3>,
        grad: Tensor<Self, 4>,
        mask: &KeyMask,
    ) -> [Tensor<Self, 4>; 3] {
        let [query, key, value, output, grad] =
            [query, key, value, output, grad].map(|t| t.swap_dims(1, 2));
        let [_, heads, _, head_dim] = query.dims();
        let kv_heads = key.dims()[1];
        let scale = (head_dim as f64).sqrt().recip();
        let key = repeat_kv(key, heads);
        let value = repeat_kv(value, heads);
        let probs = (masked_scores(query.clone(), key.clone(), mask) - lse.unsqueeze_dim(3)).exp();
        let grad_value = probs.clone().swap_dims(2, 3).matmul(grad.clone());
        let grad_probs = grad.clone().matmul(value.swap_dims(2, 3));
        let centre = (grad * output).sum_dim(3);
        let grad_scores = (probs * (grad_probs - centre)).mul_scalar(scale);
        let grad_query = grad_scores.clone().matmul(key);
        let grad_key = grad_scores.swap_dims(2, 3).matmul(query);
        [
            grad_query,
            sum_groups(grad_key, kv_heads),
            sum_groups(grad_value, kv_heads),
        ]
        .map(|t| t.swap_dims(1, 2))
    }
}

/// Scaled scores `q·kᵀ/√head_dim` with blocked keys at `−∞`, `[batch, heads, queries, keys]`.
fn masked_scores<B: Backend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    mask: &KeyMask,
) -> Tensor<B, 4> {
    let [_, heads, _, head_dim] = query.dims();
    let blocked = mask.tensor::<B>(heads, &query.device());
    query
        .matmul(repeat_kv(key, heads).swap_dims(2, 3))
        .mul_scalar((head_dim as f64).sqrt().recip())
        .mask_fill(blocked, f32::NEG_INFINITY)
}

/// `[batch, kv_heads, keys, d]` -> `[batch, heads, keys, d]`, each kv head repeated in place.
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, heads: usize) -> Tensor<B, 4> {
    let [batch, kv_heads, keys, head_dim] = x.dims();
    if kv_heads == heads {
        return x;
    }
    let groups = heads / kv_heads;
    x.unsqueeze_dim::<5>(2)
        .expand([batch, kv_heads, groups, keys, head_dim])
        .reshape([batch, heads, keys, head_dim])
}

/// The inverse of [`repeat_kv`] for gradients: `[batch, heads, keys, d]` -> `[batch, kv_heads,
/// keys, d]`, summing the heads that share a kv head.
fn sum_groups<B: Backend>(x: Tensor<B, 4>, kv_heads: usize) -> Tensor<B, 4> {
    let [batch, heads, keys, head_dim] = x.dims();
    if kv_heads == heads {
        return x;
    }
    x.reshape([batch, kv_heads, heads / kv_heads, keys, head_dim])
        .sum_dim(2)
        .squeeze_dim(2)
}

#[cfg(feature = "ndarray")]
impl AttentionBackend for burn::backend::NdArray {}

#[cfg(feature = "cuda")]
impl AttentionBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl AttentionBackend for burn::backend::Wgpu {}

/// What ropo trains on: an autodiff backend whose attention and whose inner backend's
/// attention (reference and evaluation passes) are [`AttentionBackend`]s.
pub trait TrainingBackend:
    AutodiffBackend<InnerBackend: AttentionBackend> + AttentionBackend
{
}

impl<B> TrainingBackend for B where
    B: AutodiffBackend<InnerBackend: AttentionBackend> + AttentionBackend
{
}
