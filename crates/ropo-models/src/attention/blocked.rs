//! Attention for training, forward (with the log-sum-exp) and backward, written in burn tensor
//! operations and run over blocks of query rows: what the backends without attention kernels
//! of their own (cuda, wgpu, ndarray) train with, through [`AttentionBackend`]'s provided
//! methods.
//!
//! A block's scaled scores are `[batch, heads, rows, keys]`; all the queries' at once would be
//! `[batch, heads, queries, keys]` (at 12 heads and 2,048 tokens, 192 MiB per sequence per
//! copy, and the forward and backward each hold three or four such copies). Blocks of at most
//! `block_elements` scores bound that to a few blocks, whatever the sequence length, and keep
//! every tensor under the largest buffer a wgpu adapter can bind (128 MiB on Mesa's lavapipe).
//! The mask is one `[batch, 1, queries, keys]` tensor that every head reads (`expand`), and
//! the query heads that share a kv head are grouped into one matrix product with it, so keys
//! and values are never repeated per query head.
//!
//! [`AttentionBackend`]: super::AttentionBackend

use burn::tensor::{backend::Backend, Bool, Tensor};

use super::KeyMask;

/// Scores per block in the provided methods: 2^24 f32 (64 MiB), half the largest storage
/// binding of Mesa's lavapipe, and large enough that each block's matrix products run at full
/// speed on a GPU.
pub const SCORE_BLOCK_ELEMENTS: usize = 1 << 24;

/// The attention output, `[batch, queries, heads, head_dim]`, and the log-sum-exp of each
/// query's scaled scores, `[batch, heads, queries]`, computed `block_elements` scores at a time.
/// `query`: `[batch, queries, heads, head_dim]`; `key`, `value`: `[batch, keys, kv_heads,
/// head_dim]` (grouped-query heads as in [`super::AttentionBackend`]).
pub fn attention_with_lse<B: Backend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    mask: &KeyMask,
    block_elements: usize,
) -> (Tensor<B, 4>, Tensor<B, 3>) {
    let [query, key, value] = [query, key, value].map(|t| t.swap_dims(1, 2));
    let [batch, heads, _, _] = query.dims();
    let kv_heads = key.dims()[1];
    let blocked = mask.tensor::<B>(1, &query.device());
    let (outputs, lses): (Vec<_>, Vec<_>) = query_blocks(batch * heads, mask, block_elements)
        .map(|(start, rows)| {
            let scores = masked_scores(
                grouped(query.clone().narrow(2, start, rows), kv_heads),
                key.clone(),
                blocked.clone().narrow(2, start, rows),
                heads,
            );
            let top = scores.clone().max_dim(3);
            let lse = top.clone() + (scores.clone() - top).exp().sum_dim(3).log();
            let probs = grouped((scores - lse.clone()).exp(), kv_heads);
            let output = ungrouped(probs.matmul(value.clone()), heads);
            (output, lse.squeeze_dim::<3>(3))
        })
        .unzip();
    (cat(outputs, 2).swap_dims(1, 2), cat(lses, 2))
}

/// The gradients of `query`, `key` and `value` (shaped like them) from the gradient of the
/// output, `grad`, and what [`attention_with_lse`] gave (`output`, `lse`), `block_elements`
/// scores at a time: each block's probabilities are rebuilt from the log-sum-exp, and its
/// shares of the key and value gradients are summed.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<B: Backend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    output: Tensor<B, 4>,
    lse: Tensor<B, 3>,
    grad: Tensor<B, 4>,
    mask: &KeyMask,
    block_elements: usize,
) -> [Tensor<B, 4>; 3] {
    let [query, key, value, output, grad] =
        [query, key, value, output, grad].map(|t| t.swap_dims(1, 2));
    let [batch, heads, _, head_dim] = query.dims();
    let kv_heads = key.dims()[1];
    let scale = (head_dim as f64).sqrt().recip();
    let blocked = mask.tensor::<B>(1, &query.device());
    let centre = (grad.clone() * output).sum_dim(3);
    let mut grad_query = Vec::new();
    let mut grad_key = key.zeros_like();
    let mut grad_value = value.zeros_like();
    for (start, rows) in query_blocks(batch * heads, mask, block_elements) {
        let query = grouped(query.clone().narrow(2, start, rows), kv_heads);
        let grad = grouped(grad.clone().narrow(2, start, rows), kv_heads);
        let scores = masked_scores(
            query.clone(),
            key.clone(),
            blocked.clone().narrow(2, start, rows),
            heads,
        );
        let probs = (scores - lse.clone().narrow(2, start, rows).unsqueeze_dim(3)).exp();
        let grad_probs = ungrouped(grad.clone().matmul(value.clone().swap_dims(2, 3)), heads);
        grad_value = grad_value
            + grouped(probs.clone(), kv_heads)
                .swap_dims(2, 3)
                .matmul(grad);
        let centre = centre.clone().narrow(2, start, rows);
        let grad_scores = grouped((probs * (grad_probs - centre)).mul_scalar(scale), kv_heads);
        grad_query.push(ungrouped(grad_scores.clone().matmul(key.clone()), heads));
        grad_key = grad_key + grad_scores.swap_dims(2, 3).matmul(query);
    }
    [cat(grad_query, 2), grad_key, grad_value].map(|t| t.swap_dims(1, 2))
}

/// The query blocks `(first row, rows)` covering every query, each with at most
/// `block_elements` scores over `batch_heads` (batch × heads) rows of scores (at least one
/// query per block).
fn query_blocks(
    batch_heads: usize,
    mask: &KeyMask,
    block_elements: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let [_, queries, keys] = mask.dims();
    let rows = (block_elements / (batch_heads * keys).max(1)).max(1);
    (0..queries)
        .step_by(rows)
        .map(move |start| (start, rows.min(queries - start)))
}

/// Scaled scores `q·kᵀ/√head_dim` of a block of queries grouped by kv head (`query`
/// `[batch, kv_heads, groups · rows, head_dim]`, `key` `[batch, kv_heads, keys, head_dim]`),
/// as `[batch, heads, rows, keys]`, with the keys `blocked` (`[batch, 1, rows, keys]`, shared
/// by the heads) at `−∞`.
fn masked_scores<B: Backend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    blocked: Tensor<B, 4, Bool>,
    heads: usize,
) -> Tensor<B, 4> {
    let head_dim = query.dims()[3];
    let scores = ungrouped(
        query
            .matmul(key.swap_dims(2, 3))
            .mul_scalar((head_dim as f64).sqrt().recip()),
        heads,
    );
    let shape = scores.dims();
    scores.mask_fill(blocked.expand(shape), f32::NEG_INFINITY)
}

/// `[batch, heads, rows, n]` -> `[batch, kv_heads, groups · rows, n]`: the query heads that
/// read one kv head, one after another, so that one matrix product per kv head serves them
/// all and no key or value is repeated per query head.
fn grouped<B: Backend>(x: Tensor<B, 4>, kv_heads: usize) -> Tensor<B, 4> {
    let [batch, heads, rows, n] = x.dims();
    x.reshape([batch, kv_heads, heads / kv_heads * rows, n])
}

/// The inverse of [`grouped`]: `[batch, kv_heads, groups · rows, n]` -> `[batch, heads, rows,
/// n]`.
fn ungrouped<B: Backend>(x: Tensor<B, 4>, heads: usize) -> Tensor<B, 4> {
    let [batch, kv_heads, grouped_rows, n] = x.dims();
    x.reshape([batch, heads, grouped_rows * kv_heads / heads, n])
}

/// `tensors` joined along `dim`; a single block is returned as it is, without a copy.
fn cat<B: Backend, const D: usize>(mut tensors: Vec<Tensor<B, D>>, dim: usize) -> Tensor<B, D> {
    match tensors.len() {
        1 => tensors.remove(0),
        _ => Tensor::cat(tensors, dim),
    }
}
