//! Attention masks: which keys each query may see, built on the host once per forward.

use std::{
    any::Any,
    sync::{Arc, OnceLock},
};

use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};

/// Which keys each query may not see, shared by every head, on top of the causal rule that a
/// query sees only itself and earlier keys (the queries are the last `queries` of the `keys`
/// positions). Kept on the host, where the CPU kernel reads it directly; backends that need a
/// tensor get it built once per forward (see [`KeyMask::tensor`]).
#[derive(Clone)]
pub struct KeyMask {
    /// `[batch, queries, keys]`, `true` = blocked; `None`: the causal rule alone.
    blocked: Option<Arc<[bool]>>,
    /// `[batch, queries]`: the queries that see no key but themselves (padding), whose
    /// attention output is their own value; `None` when `blocked` is.
    alone: Option<Arc<[bool]>>,
    batch: usize,
    queries: usize,
    keys: usize,
    /// The whole mask, causal rule included, as a `[batch, heads, queries, keys]` tensor of the
    /// backend that first asked for it.
    tensor: Arc<OnceLock<Box<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for KeyMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMask")
            .field("batch", &self.batch)
            .field("queries", &self.queries)
            .field("keys", &self.keys)
            .field("padded", &self.blocked.is_some())
            .finish()
    }
}

impl KeyMask {
    /// The causal rule alone over `keys` positions, the last `queries` of which are queries.
    pub fn causal(batch: usize, queries: usize, keys: usize) -> Self {
        Self::new(None, batch, queries, keys)
    }

    /// `blocked`: `[batch, queries, keys]` row-major, `true` = the query must not see the key.
    pub fn blocked(blocked: Vec<bool>, batch: usize, queries: usize, keys: usize) -> Self {
        assert_eq!(
            blocked.len(),
            batch * queries * keys,
            "mask is [batch, queries, keys]"
        );
        let offset = keys - queries;
        let alone = blocked
            .chunks_exact(keys.max(1))
            .enumerate()
            .map(|(row, seen)| {
                let own = offset + row % queries;
                seen.iter().enumerate().all(|(key, b)| *b || key == own)
            })
            .collect::<Vec<bool>>();
        let mut mask = Self::new(Some(blocked.into()), batch, queries, keys);
        mask.alone = Some(alone.into());
        mask
    }

    fn new(blocked: Option<Arc<[bool]>>, batch: usize, queries: usize, keys: usize) -> Self {
        assert!(queries <= keys, "queries are the last of the keys");
        Self {
            blocked,
            alone: None,
            batch,
            queries,
            keys,
            tensor: Arc::default(),
        }
    }

    /// The blocked keys beyond the causal rule, `[batch, queries, keys]`; `None` if there are
    /// none.
    pub fn blocked_keys(&self) -> Option<&[bool]> {
        self.blocked.as_deref()
    }

    /// Which queries see no key but themselves (padding rows), `[batch, queries]`; `None` if
    /// there is no mask beyond the causal rule.
    pub fn queries_alone(&self) -> Option<&[bool]> {
        self.alone.as_deref()
    }

    /// `[batch, queries, keys]`.
    pub fn dims(&self) -> [usize; 3] {
        [self.batch, self.queries, self.keys]
    }

    /// The whole mask (causal rule and blocked keys) as a tensor `[batch, heads, queries,
    /// keys]` (`true` = blocked), built on the first call and reused by every later layer
    /// that asks with the same backend.
    pub fn tensor<B: Backend>(&self, heads: usize, device: &B::Device) -> Tensor<B, 4, Bool> {
        let build = || {
            let [batch, queries, keys] = self.dims();
            let offset = keys - queries;
            let mut data = Vec::with_capacity(batch * heads * queries * keys);
            for row in 0..batch {
                for _ in 0..heads {
                    for query in 0..queries {
                        let start = (row * queries + query) * keys;
                        data.extend((0..keys).map(|key| {
                            key > offset + query
                                || self.blocked.as_ref().is_some_and(|b| b[start + key])
                        }));
                    }
                }
            }
            Tensor::<B, 4, Bool>::from_data(
                TensorData::new(data, [batch, heads, queries, keys]),
                device,
            )
        };
        let cached = self
            .tensor
            .get_or_init(|| Box::new(build()))
            .downcast_ref::<Tensor<B, 4, Bool>>()
            .filter(|t| t.dims()[1] == heads);
        match cached {
            Some(tensor) => tensor.clone(),
            None => build(),
        }
    }
}

/// Which keys each query may see (a [`KeyMask`]), plus the position of every query,
/// `[batch, queries]`: everything a forward pass needs to know about padding and about tokens
/// already in the KV cache.
#[derive(Debug, Clone)]
pub struct AttentionMask<B: Backend> {
    keys: KeyMask,
    device: B::Device,
    positions: Vec<i64>,
}

impl<B: Backend> AttentionMask<B> {
    /// A causal mask for `queries` new tokens that follow `offset` cached ones.
    ///
    /// `key_valid[b]` has `offset + queries` entries and marks real tokens (`false` = padding).
    /// Padding keys are blocked, except that a query always sees itself, so no softmax row is
    /// empty; a padding query sees only itself (no real token reads its output). A query's position counts the real tokens before it, so left-padded prompts get
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
                    let both_real = *key_is_real && valid[query];
                    blocked.push(key > query || !(key == query || both_real));
                }
            }
        }
        Self {
            keys: KeyMask::blocked(blocked, batch, queries, keys),
            device: device.clone(),
            positions,
        }
    }

    /// A plain causal mask over `seq` tokens for every row of a right-padded batch: padding sits
    /// after the real tokens, so a causal mask alone keeps it from changing any real position.
    pub fn right_padded(batch: usize, seq: usize, device: &B::Device) -> Self {
        Self {
            keys: KeyMask::causal(batch, seq, seq),
            device: device.clone(),
            positions: (0..batch).flat_map(|_| 0..seq as i64).collect(),
        }
    }

    /// The keys each query may see.
    pub fn keys(&self) -> &KeyMask {
        &self.keys
    }

    /// Position of every query, `batch × queries` row-major.
    pub fn positions(&self) -> &[i64] {
        &self.positions
    }

    /// Rows in the batch.
    pub fn batch(&self) -> usize {
        self.keys.batch
    }

    /// Position of every query as a tensor, `[batch, queries]` (for learned position embeddings).
    pub fn position_ids(&self) -> Tensor<B, 2, Int> {
        let [batch, queries, _] = self.keys.dims();
        Tensor::from_data(
            TensorData::new(self.positions.clone(), [batch, queries]),
            &self.device,
        )
    }
}
