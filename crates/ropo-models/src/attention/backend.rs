//! [`AttentionBackend`]: the burn backends ropo's models run on, each with its best scaled
//! dot-product attention, forward and backward.
//!
//! burn 0.21's `Autodiff` backend runs attention as separate tensor operations (scores, mask,
//! softmax, weighted sum), each kept for the backward pass. This trait gives attention one
//! backward step of its own instead (see `autodiff.rs`), so a backend can supply fused kernels
//! for both passes: the CPU backend does (`flex.rs`); the others use the provided methods:
//! burn's own attention for inference (a fused flash kernel on cuda and wgpu, where burn's
//! autotune finds it faster) and, for training, burn tensor operations over blocks of queries
//! (`blocked.rs`).

use burn::tensor::{
    backend::{AutodiffBackend, Backend},
    module,
    ops::AttentionModuleOptions,
    Tensor,
};

use super::{
    blocked::{self, SCORE_BLOCK_ELEMENTS},
    rotation::{self, RotateHalf},
    KeyMask,
};
use crate::{activation_backend::ActivationBackend, vocab_logps::VocabBackend};

/// A burn backend with scaled dot-product attention (scale `1/√head_dim`) for every head
/// layout ropo's models use, in the projections' layout: `query` `[batch, queries, heads,
/// head_dim]`, `key` and `value` `[batch, keys, kv_heads, head_dim]`, where query head `h` reads
/// kv head `h / (heads / kv_heads)` (grouped-query attention), and `mask` says which keys each
/// query may see. The provided methods swap to burn's `[batch, heads, seq, head_dim]` and back.
/// It is also a [`VocabBackend`] and a [`ActivationBackend`], so one bound gives a model everything
/// it runs.
pub trait AttentionBackend: VocabBackend + ActivationBackend {
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
    /// uses to rebuild the probabilities. Provided: one block of queries at a time
    /// ([`blocked::attention_with_lse`]).
    fn masked_attention_with_lse(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        mask: &KeyMask,
    ) -> (Tensor<Self, 4>, Tensor<Self, 3>) {
        blocked::attention_with_lse(query, key, value, mask, SCORE_BLOCK_ELEMENTS)
    }

    /// The rotary embedding `x·cos + (x·R)·sin` over the last dimension of `x` (`[batch, seq,
    /// heads, head_dim]`, `cos` and `sin` shaped like it), where `R` is the rotate-half map.
    /// Provided: burn tensor operations, `R` as a matrix product; under autodiff, one node
    /// whose backward is [`Self::rotary_backward`] (`rotation.rs`).
    fn rotary(
        x: Tensor<Self, 4>,
        cos: Tensor<Self, 4>,
        sin: Tensor<Self, 4>,
        rotate_half: &RotateHalf<Self>,
    ) -> Tensor<Self, 4> {
        rotation::rotate(x, cos, sin, rotate_half)
    }

    /// The gradient of [`Self::rotary`]'s `x` from that of its output, `grad` (both `[batch,
    /// seq, heads, head_dim]`): `grad·cos − (grad·sin)·R`, the inverse rotation. Provided: burn
    /// tensor operations.
    fn rotary_backward(
        grad: Tensor<Self, 4>,
        cos: Tensor<Self, 4>,
        sin: Tensor<Self, 4>,
        rotate_half: &RotateHalf<Self>,
    ) -> Tensor<Self, 4> {
        rotation::rotate_back(grad, cos, sin, rotate_half)
    }

    /// The gradients of `query`, `key` and `value` (shaped like them) from the gradient of the
    /// output, `grad`, and what the forward gave (`output`, `lse`). Provided: one block of
    /// queries at a time ([`blocked::attention_backward`]).
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
        blocked::attention_backward(
            query,
            key,
            value,
            output,
            lse,
            grad,
            mask,
            SCORE_BLOCK_ELEMENTS,
        )
    }
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
