//! The attention core shared by every family: masks, grouped-query heads and scaled
//! dot-product attention through each backend's [`AttentionBackend`].

mod autodiff;
mod backend;
mod cpu;
#[cfg(feature = "flex")]
mod flex;
mod lanes;
mod mask;

use burn::tensor::Tensor;

pub use backend::{AttentionBackend, TrainingBackend};
pub use mask::{AttentionMask, KeyMask};

/// Scaled dot-product attention with grouped-query heads.
///
/// `query`: `[batch, heads, queries, head_dim]`; `key`, `value`: `[batch, kv_heads, keys,
/// head_dim]` with `heads` a multiple of `kv_heads` (query head `i` reads kv head
/// `i / (heads / kv_heads)`). Returns `[batch, queries, heads * head_dim]`.
pub fn attend<B: AttentionBackend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    mask: &AttentionMask<B>,
) -> Tensor<B, 3> {
    let [batch, heads, queries, head_dim] = query.dims();
    B::masked_attention(query, key, value, mask.keys())
        .swap_dims(1, 2)
        .reshape([batch, queries, heads * head_dim])
}

/// Splits `[batch, seq, heads * head_dim]` into `[batch, heads, seq, head_dim]`.
pub fn split_heads<B: burn::tensor::backend::Backend>(
    x: Tensor<B, 3>,
    heads: usize,
) -> Tensor<B, 4> {
    let [batch, seq, width] = x.dims();
    x.reshape([batch, seq, heads, width / heads])
        .swap_dims(1, 2)
}
