//! Fused scaled dot-product attention on the CPU, forward and backward, over plain `f32`
//! slices in the projections' `[batch, seq, heads, head_dim]` layout: one task per batch row
//! spread over rayon's threads, keys past the causal limit never touched, grouped-query heads
//! read in place, and no `[batch, heads, queries, keys]` tensor ever built. The backward recomputes each row's probabilities from the saved
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

/// Forward pass. `query`: `[batch, queries, heads, head_dim]`; `key`, `value`: `[batch, keys,
/// kv_heads, head_dim]`; `blocked`: `[batch, queries, keys]` (`true` = the query must not see
/// the key), on top of the causal limit. Returns the output `[batch, queries, heads, head_dim]`
/// and each row's log-sum-exp of scaled scores `[batch, heads, queries]` (`−∞` for a row with
/// no visible key, whose output is 0).
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
    let mut output = vec![0.0; batch * queries * heads * head_dim];
    let mut lse = vec![0.0; batch * heads * queries];
    output
        .par_chunks_mut(queries * heads * head_dim)
        .zip(lse.par_chunks_mut(heads * queries))
        .enumerate()
        .for_each(|(row, (output, lse))| {
            let input = RowInput::new(query, key, value, blocked, dims, row);
            let mut head_output = vec![0.0; queries * head_dim];
            for (head, lse) in lse.chunks_exact_mut(queries).enumerate() {
                let head_input = input.head(head);
                run_forward(&head_input, &mut head_output, lse);
                scatter_head(&head_output, output, heads, head, head_dim);
            }
        });
    (output, lse)
}

/// Backward pass: from the forward's inputs, its `output` and `lse`, and the gradient of the
/// output `grad` (`[batch, queries, heads, head_dim]`), the gradients of query, key and value,
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
    let row_len = queries * heads * head_dim;
    let mut grad_query = vec![0.0; batch * row_len];
    let mut grad_key = vec![0.0; batch * keys * kv_heads * head_dim];
    let mut grad_value = vec![0.0; batch * keys * kv_heads * head_dim];
    grad_query
        .par_chunks_mut(row_len)
        .zip(grad_key.par_chunks_mut(keys * kv_heads * head_dim))
        .zip(grad_value.par_chunks_mut(keys * kv_heads * head_dim))
        .enumerate()
        .for_each(|(row, ((grad_query, grad_key), grad_value))| {
            let input = RowInput::new(query, key, value, blocked, dims, row);
            let (output, grad) = (&output[row * row_len..], &grad[row * row_len..]);
            let mut head_grad_query = vec![0.0; queries * head_dim];
            for kv_head in 0..kv_heads {
                let mut key_acc = vec![0.0; keys * head_dim];
                let mut value_acc = vec![0.0; keys * head_dim];
                for head in kv_head * groups..(kv_head + 1) * groups {
                    let lse = &lse[(row * heads + head) * queries..][..queries];
                    run_backward(
                        &input.head(head),
                        HeadGrads {
                            output: &gather_head(output, queries, heads, head, head_dim),
                            lse,
                            grad: &gather_head(grad, queries, heads, head, head_dim),
                            grad_query: &mut head_grad_query,
                            key_t: &mut key_acc,
                            value_t: &mut value_acc,
                        },
                    );
                    scatter_head(&head_grad_query, grad_query, heads, head, head_dim);
                }
                scatter_transposed(&key_acc, grad_key, kv_heads, kv_head, head_dim);
                scatter_transposed(&value_acc, grad_value, kv_heads, kv_head, head_dim);
            }
        });
    (grad_query, grad_key, grad_value)
}

/// One batch row's slices of the inputs.
struct RowInput<'a> {
    query: &'a [f32],
    key: &'a [f32],
    value: &'a [f32],
    blocked: Option<&'a [bool]>,
    dims: Dims,
}

impl<'a> RowInput<'a> {
    fn new(
        query: &'a [f32],
        key: &'a [f32],
        value: &'a [f32],
        blocked: Option<&'a [bool]>,
        dims: Dims,
        row: usize,
    ) -> Self {
        let Dims {
            heads,
            kv_heads,
            queries,
            keys,
            head_dim,
            ..
        } = dims;
        let (q_len, kv_len) = (queries * heads * head_dim, keys * kv_heads * head_dim);
        Self {
            query: &query[row * q_len..(row + 1) * q_len],
            key: &key[row * kv_len..(row + 1) * kv_len],
            value: &value[row * kv_len..(row + 1) * kv_len],
            blocked: blocked.map(|b| &b[row * queries * keys..(row + 1) * queries * keys]),
            dims,
        }
    }

    /// Query head `head`'s inputs, laid out for the kernels.
    fn head(&self, head: usize) -> HeadInput<'a> {
        let Dims {
            heads,
            kv_heads,
            queries,
            keys,
            head_dim,
            ..
        } = self.dims;
        let kv_head = head / self.dims.groups();
        HeadInput {
            query: gather_head(self.query, queries, heads, head, head_dim),
            key_t: transpose_head(self.key, keys, kv_heads, kv_head, head_dim),
            value_t: transpose_head(self.value, keys, kv_heads, kv_head, head_dim),
            blocked: self.blocked,
            dims: self.dims,
        }
    }
}

/// One (batch row, head)'s query `[queries, head_dim]`, with its kv head's keys and values
/// transposed to `[head_dim, keys]` so that every inner loop runs along the keys.
struct HeadInput<'a> {
    query: Vec<f32>,
    key_t: Vec<f32>,
    value_t: Vec<f32>,
    blocked: Option<&'a [bool]>,
    dims: Dims,
}

impl HeadInput<'_> {
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

/// Head `head` of a `[seq, heads, head_dim]` row, as `[seq, head_dim]`.
fn gather_head(row: &[f32], seq: usize, heads: usize, head: usize, head_dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(seq * head_dim);
    for position in row.chunks_exact(heads * head_dim).take(seq) {
        out.extend_from_slice(&position[head * head_dim..(head + 1) * head_dim]);
    }
    out
}

/// Head `head` of a `[seq, heads, head_dim]` row, transposed to `[head_dim, seq]`.
fn transpose_head(row: &[f32], seq: usize, heads: usize, head: usize, head_dim: usize) -> Vec<f32> {
    let mut out = vec![0.0; head_dim * seq];
    for (j, position) in row.chunks_exact(heads * head_dim).take(seq).enumerate() {
        for (c, x) in position[head * head_dim..(head + 1) * head_dim]
            .iter()
            .enumerate()
        {
            out[c * seq + j] = *x;
        }
    }
    out
}

/// Writes `[seq, head_dim]` values into head `head` of a `[seq, heads, head_dim]` row.
fn scatter_head(values: &[f32], row: &mut [f32], heads: usize, head: usize, head_dim: usize) {
    for (position, values) in row
        .chunks_exact_mut(heads * head_dim)
        .zip(values.chunks_exact(head_dim))
    {
        position[head * head_dim..(head + 1) * head_dim].copy_from_slice(values);
    }
}

/// Writes `[head_dim, seq]` values, transposed, into head `head` of a `[seq, heads, head_dim]`
/// row.
fn scatter_transposed(values: &[f32], row: &mut [f32], heads: usize, head: usize, head_dim: usize) {
    let seq = values.len() / head_dim.max(1);
    for (j, position) in row.chunks_exact_mut(heads * head_dim).enumerate() {
        for (c, x) in position[head * head_dim..(head + 1) * head_dim]
            .iter_mut()
            .enumerate()
        {
            *x = values[c * seq + j];
        }
    }
}
