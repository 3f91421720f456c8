//! The attention core shared by every family: masks, grouped-query expansion and scaled
//! dot-product attention through burn's fused `attention` op.

use burn::tensor::{
    backend::Backend, module::attention, ops::AttentionModuleOptions, Bool, Int, Tensor, TensorData,
};

/// Which keys each query may see (`true` = blocked), plus the position of every query,
/// `[batch, queries]`: everything a forward pass needs to know about padding and about tokens
/// already in the KV cache.
///
/// The mask is kept on the host and becomes a tensor already expanded to every head, once
/// per forward: every layer then uses it as it is, where a `[batch, 1, …]` tensor would be
/// broadcast (copied element by element) in each layer's forward and backward.
#[derive(Debug, Clone)]
pub struct AttentionMask<B: Backend> {
    /// `[batch, queries, keys]` (`true` = blocked); `None`: plain causal attention, left to
    /// the backend's causal path (no mask tensor).
    blocked: Option<Vec<bool>>,
    /// `blocked` expanded to `[batch, heads, queries, keys]`, made by the first layer.
    expanded: std::sync::OnceLock<Tensor<B, 4, Bool>>,
    device: B::Device,
    positions: Vec<i64>,
    batch: usize,
}

impl<B: Backend> AttentionMask<B> {
    /// A causal mask for `queries` new tokens that follow `offset` cached ones.
    ///
    /// `key_valid[b]` has `offset + queries` entries and marks real tokens (`false` = padding).
    /// Padding keys are blocked, except that a query always sees itself, so no softmax row is
    /// empty. A query's position counts the real tokens before it, so left-padded prompts get
    /// the positions they would have alone.
    pub fn causal(
        key_valid: &[Vec<bool>],
        offset: usize,
        queries: usize,
        device: &B::Device,
    ) -> Self {
        let batch = key_valid.len();
        let keys = offset + queries;
        let mut blocked = Vec::with_capacity(batch * queries * keys);
        let mut positions = Vec::with_capacity(batch * queries);
        for valid in key_valid {
            debug_assert_eq!(valid.len(), keys, "key_valid rows cover cache and queries");
            let mut seen = valid[..offset].iter().filter(|v| **v).count() as i64;
            for query in offset..keys {
                positions.push(seen);
                seen += i64::from(valid[query]);
                for (key, key_is_real) in valid.iter().enumerate() {
                    blocked.push(key > query || (!key_is_real && key != query));
                }
            }
        }
        Self {
            blocked: Some(blocked),
            expanded: std::sync::OnceLock::new(),
            device: device.clone(),
            positions,
            batch,
        }
    }

    /// A plain causal mask over `seq` tokens for every row of a right-padded batch: padding sits
    /// after the real tokens, so a causal mask alone keeps it from changing any real position.
    pub fn right_padded(batch: usize, seq: usize, device: &B::Device) -> Self {
        Self {
            blocked: None,
            expanded: std::sync::OnceLock::new(),
            device: device.clone(),
            positions: (0..batch).flat_map(|_| 0..seq as i64).collect(),
            batch,
        }
    }

    /// Position of every query, `batch × queries` row-major.
    pub fn positions(&self) -> &[i64] {
        &self.positions
    }

    /// Rows in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Position of every query as a tensor, `[batch, queries]` (for learned position embeddings).
    pub fn position_ids(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        let queries = self.positions.len() / self.batch.max(1);
        Tensor::from_data(
            TensorData::new(self.positions.clone(), [self.batch, queries]),
            device,
        )
    }
}

/// Scaled dot-product attention with grouped-query heads.
///
/// `query`: `[batch, heads, queries, head_dim]`; `key`, `value`: `[batch, kv_heads, keys,
/// head_dim]` with `heads` a multiple of `kv_heads` (query head `i` reads kv head
/// `i / (heads / kv_heads)`). Returns `[batch, queries, heads * head_dim]`.
pub fn attend<B: Backend>(
    query: Tensor<B, 4>,
    key: Tensor<B, 4>,
    value: Tensor<B, 4>,
    mask: &AttentionMask<B>,
) -> Tensor<B, 3> {
    let [batch, heads, queries, head_dim] = query.dims();
    let keys = key.dims()[2];
    let key = repeat_kv(key, heads);
    let value = repeat_kv(value, heads);
    let blocked = mask.blocked.as_ref().map(|blocked| {
        mask.expanded
            .get_or_init(|| {
                let per_head = queries * keys;
                let data: Vec<bool> = blocked
                    .chunks(per_head)
                    .flat_map(|row| std::iter::repeat_n(row, heads).flatten().copied())
                    .collect();
                Tensor::from_data(
                    TensorData::new(data, [batch, heads, queries, keys]),
                    &mask.device,
                )
            })
            .clone()
    });
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: blocked.is_none(),
    };
    attention(query, key, value, blocked, None, options)
        .swap_dims(1, 2)
        .reshape([batch, queries, heads * head_dim])
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

/// Splits `[batch, seq, heads * head_dim]` into `[batch, heads, seq, head_dim]`.
pub fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [batch, seq, width] = x.dims();
    x.reshape([batch, seq, heads, width / heads])
        .swap_dims(1, 2)
}
