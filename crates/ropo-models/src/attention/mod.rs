//! The attention core shared by every family: masks, grouped-query heads and scaled
//! dot-product attention through each backend's [`AttentionBackend`].

mod autodiff;
mod backend;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod bf16_backward;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod bf16_forward;
pub mod blocked;
mod cpu;
#[cfg(feature = "flex")]
mod flex;
mod lanes;
mod mask;
mod rotation;
#[cfg(feature = "flex")]
mod rotation_cpu;
mod rotation_node;

use burn::tensor::Tensor;

pub use backend::{AttentionBackend, TrainingBackend};
pub use mask::{AttentionMask, KeyMask};
pub use rotation::RotateHalf;

/// Scaled dot-product attention with grouped-query heads.
///
/// `query`: `[batch, queries, heads, head_dim]`; `key`, `value`: `[batch, keys, kv_heads,
/// head_dim]` with `heads` a multiple of `kv_heads` (query head `i` reads kv head
/// `i / (heads / kv_heads)`). Returns `[batch, queries, heads * head_dim]`.
pub fn attend<B: AttentionBackend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    mask: &AttentionMask<B>,
) -> Tensor<B, 3> {
    let [batch, queries, heads, head_dim] = query.dims();
    B::masked_attention(query, key, value, mask.keys()).reshape([batch, queries, heads * head_dim])
}

/// Splits `[batch, seq, heads * head_dim]` into `[batch, seq, heads, head_dim]` (a reshape: the
/// layout attention, rotary embeddings and the KV cache all use).
pub fn split_heads<B: burn::tensor::backend::Backend>(
    x: Tensor<B, 3>,
    heads: usize,
) -> Tensor<B, 4> {
    let [batch, seq, width] = x.dims();
    x.reshape([batch, seq, heads, width / heads])
}
