//! Fused scaled dot-product attention on the CPU, forward and backward, over plain `f32`
//! slices: one task per (batch row, head) spread over rayon's threads, keys past the causal
//! limit never touched, grouped-query heads read in place, and no `[batch, heads, queries,
//! keys]` tensor ever built. The backward recomputes each row's probabilities from the saved
//! log-sum-exp (as FlashAttention does) instead of keeping them.

use rayon::prelude::*;

use super::lanes::{axpy, dot, exp_shifted, max, sum};

/// The sizes of one attention call. Query heads `h·groups .. (h+1)·groups` read kv head `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Rows in the batch.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Query positions; they are the last `queries` of the `keys` positions.
    pub queries: usize,
    /// Key positions (`≥ queries`).
    pub keys: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl Dims {
    fn groups(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// How many keys query `i` can see at most: itself and everything before it.
    fn visible(&self, query: usize) -> usize {
        (self.keys - self.queries + query + 1).min(self.keys)
    }

    fn scale(&self) -> f32 {
        (self.head_dim as f32).sqrt().recip()
    }
}

/// Forward pass. `query`: `[batch, heads, queries, head_dim]`; `key`, `value`: `[batch,
/// kv_heads, keys, head_dim]`; `blocked`: `[batch, queries, keys]` (`true` = the query must not
/// see the key), on top of the causal limit. Returns the output `[batch, heads, queries,
/// head_dim]` and each row's log-sum-exp of scaled scores `[batch, heads, queries]` (`−∞` for a
/// row with no visible key, whose output is 0).
pub fn forward(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    blocked: Option<&[bool]>,
    dims: Dims,
) -> (Vec<f32>, Vec<f32>) {
    let Dims {
        batch,
        heads,
        queries,
        head_dim,
        ..
    } = dims;
    let mut output = vec![0.0; batch * heads * queries * head_dim];
    let mut lse = vec![0.0; batch * heads * queries];
    output
        .par_chunks_mut(queries * head_dim)
        .zip(lse.par_chunks_mut(queries))
        .enumerate()
        .for_each(|(task, (output, lse))| {
            let (row, head) = (task / heads, task % heads);
            let input = HeadInput::new(query, key, value, blocked, dims, row, head);
            run_forward(&input, output, lse);
        });
    (output, lse)
}

/// Backward pass: from the forward's inputs, its `output` and `lse`, and the gradient of the
/// output `grad` (`[batch, heads, queries, head_dim]`), the gradients of query, key and value,
/// shaped like them.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    output: &[f32],
    lse: &[f32],
    grad: &[f32],
    blocked: Option<&[bool]>,
    dims: Dims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Dims {
        batch,
        heads,
        kv_heads,
        queries,
        keys,
        head_dim,
    } = dims;
    let groups = dims.groups();
    let mut grad_query = vec![0.0; batch * heads * queries * head_dim];
    let mut grad_key = vec![0.0; batch * kv_heads * keys * head_dim];
    let mut grad_value = vec![0.0; batch * kv_heads * keys * head_dim];
    grad_query
        .par_chunks_mut(groups * queries * head_dim)
        .zip(grad_key.par_chunks_mut(keys * head_dim))
        .zip(grad_value.par_chunks_mut(keys * head_dim))
        .enumerate()
        .for_each(|(task, ((grad_query, grad_key), grad_value))| {
            let (row, kv_head) = (task / kv_heads, task % kv_heads);
            let mut key_acc = vec![0.0; keys * head_dim];
            let mut value_acc = vec![0.0; keys * head_dim];
            for member in 0..groups {
                let head = kv_head * groups + member;
                let input = HeadInput::new(query, key, value, blocked, dims, row, head);
                let start = (row * heads + head) * queries;
                let rows = start * head_dim..(start + queries) * head_dim;
                let slot = member * queries * head_dim;
                run_backward(
                    &input,
                    HeadGrads {
                        output: &output[rows.clone()],
                        lse: &lse[start..start + queries],
                        grad: &grad[rows],
                        grad_query: &mut grad_query[slot..slot + queries * head_dim],
                        key_t: &mut key_acc,
                        value_t: &mut value_acc,
                    },
                );
            }
            transpose_into(&key_acc, head_dim, keys, grad_key);
            transpose_into(&value_acc, head_dim, keys, grad_value);
        });
    (grad_query, grad_key, grad_value)
}

/// One (batch row, head)'s slices, with its kv head's keys and values transposed to
/// `[head_dim, keys]` so that every inner loop runs along the keys.
struct HeadInput<'a> {
    query: &'a [f32],
    key_t: Vec<f32>,
    value_t: Vec<f32>,
    blocked: Option<&'a [bool]>,
    dims: Dims,
}

impl<'a> HeadInput<'a> {
    fn new(
        query: &'a [f32],
        key: &[f32],
        value: &[f32],
        blocked: Option<&'a [bool]>,
        dims: Dims,
        row: usize,
        head: usize,
    ) -> Self {
        let Dims {
            heads,
            kv_heads,
            queries,
            keys,
            head_dim,
            ..
        } = dims;
        let q_start = (row * heads + head) * queries * head_dim;
        let kv_start = (row * kv_heads + head / dims.groups()) * keys * head_dim;
        let kv = kv_start..kv_start + keys * head_dim;
        let mut key_t = vec![0.0; keys * head_dim];
        let mut value_t = vec![0.0; keys * head_dim];
        transpose_into(&key[kv.clone()], keys, head_dim, &mut key_t);
        transpose_into(&value[kv], keys, head_dim, &mut value_t);
        Self {
            query: &query[q_start..q_start + queries * head_dim],
            key_t,
            value_t,
            blocked: blocked.map(|b| &b[row * queries * keys..(row + 1) * queries * keys]),
            dims,
        }
    }

    /// Writes query `i`'s scaled scores over its visible keys into `scores` (masked keys `−∞`)
    /// and returns how many keys that is.
    #[inline(always)]
    fn scores(&self, i: usize, scores: &mut [f32]) -> usize {
        let Dims { keys, head_dim, .. } = self.dims;
        let visible = self.dims.visible(i);
        let scores = &mut scores[..visible];
        scores.fill(0.0);
        let scale = self.dims.scale();
        for (c, q) in self.query[i * head_dim..(i + 1) * head_dim]
            .iter()
            .enumerate()
        {
            axpy(q * scale, &self.key_t[c * keys..c * keys + visible], scores);
        }
        if let Some(blocked) = self.blocked {
            for (score, blocked) in scores.iter_mut().zip(&blocked[i * keys..]) {
                if *blocked {
                    *score = f32::NEG_INFINITY;
                }
            }
        }
        visible
    }
}

/// The parts of one head's backward that are not inputs of the forward: `[queries, head_dim]`
/// slices of output, upstream gradient and query gradient; `lse` `[queries]`; and key and
/// value gradients accumulated transposed, `[head_dim, keys]`, across the heads of a group.
struct HeadGrads<'a> {
    output: &'a [f32],
    lse: &'a [f32],
    grad: &'a [f32],
    grad_query: &'a mut [f32],
    key_t: &'a mut [f32],
    value_t: &'a mut [f32],
}

fn run_forward(input: &HeadInput<'_>, output: &mut [f32], lse: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { forward_head_avx2(input, output, lse) };
    }
    forward_head(input, output, lse)
}

fn run_backward(input: &HeadInput<'_>, grads: HeadGrads<'_>) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { backward_head_avx2(input, grads) };
    }
    backward_head(input, grads)
}

/// [`forward_head`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_head_avx2(input: &HeadInput<'_>, output: &mut [f32], lse: &mut [f32]) {
    forward_head(input, output, lse)
}

/// [`backward_head`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_head_avx2(input: &HeadInput<'_>, grads: HeadGrads<'_>) {
    backward_head(input, grads)
}

/// One head's forward: for each query, scores → softmax → weighted sum of values.
#[inline(always)]
fn forward_head(input: &HeadInput<'_>, output: &mut [f32], lse: &mut [f32]) {
    let Dims { keys, head_dim, .. } = input.dims;
    let mut scores = vec![0.0; keys];
    for (i, (output, lse)) in output.chunks_exact_mut(head_dim).zip(lse).enumerate() {
        let visible = input.scores(i, &mut scores);
        let probs = &mut scores[..visible];
        let top = max(probs);
        if top == f32::NEG_INFINITY {
            output.fill(0.0);
            *lse = f32::NEG_INFINITY;
            continue;
        }
        exp_shifted(probs, top);
        let total = sum(probs);
        *lse = top + total.ln();
        let norm = total.recip();
        for (c, out) in output.iter_mut().enumerate() {
            *out = dot(probs, &input.value_t[c * keys..c * keys + visible]) * norm;
        }
    }
}

/// One head's backward, for each query `i` with probabilities `p = softmax(s)`:
/// `dV += pᵀ·dO`, `dp = dO·Vᵀ`, `ds = p ∘ (dp − dO·O)`, `dQ = scale·ds·K`, `dK += scale·dsᵀ·Q`.
#[inline(always)]
fn backward_head(input: &HeadInput<'_>, grads: HeadGrads<'_>) {
    let Dims { keys, head_dim, .. } = input.dims;
    let scale = input.dims.scale();
    let mut probs = vec![0.0; keys];
    let mut dscores = vec![0.0; keys];
    for i in 0..input.dims.queries {
        let lse = grads.lse[i];
        if lse == f32::NEG_INFINITY {
            continue;
        }
        let visible = input.scores(i, &mut probs);
        let probs = &mut probs[..visible];
        exp_shifted(probs, lse);
        let row = i * head_dim..(i + 1) * head_dim;
        let grad = &grads.grad[row.clone()];
        let dscores = &mut dscores[..visible];
        dscores.fill(0.0);
        for (c, g) in grad.iter().enumerate() {
            let cols = c * keys..c * keys + visible;
            axpy(*g, &input.value_t[cols.clone()], dscores);
            axpy(*g, probs, &mut grads.value_t[cols]);
        }
        let centre = dot(grad, &grads.output[row.clone()]);
        for (ds, p) in dscores.iter_mut().zip(probs.iter()) {
            *ds = p * (*ds - centre) * scale;
        }
        let query = &input.query[row.clone()];
        for (c, (dq, q)) in grads.grad_query[row].iter_mut().zip(query).enumerate() {
            let cols = c * keys..c * keys + visible;
            *dq = dot(dscores, &input.key_t[cols.clone()]);
            axpy(*q, dscores, &mut grads.key_t[cols]);
        }
    }
}

/// Writes the transpose of the row-major `[rows, cols]` matrix `from` into `to`.
fn transpose_into(from: &[f32], rows: usize, cols: usize, to: &mut [f32]) {
    for (r, row) in from.chunks_exact(cols).enumerate().take(rows) {
        for (c, x) in row.iter().enumerate() {
            to[c * rows + r] = *x;
        }
    }
}
