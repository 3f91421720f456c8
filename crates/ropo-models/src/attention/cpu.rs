//! Fused scaled dot-product attention on the CPU, forward and backward, over plain `f32`
//! slices in the projections' `[batch, seq, heads, head_dim]` layout: one task per batch row
//! spread over rayon's threads, keys past the causal limit never touched, grouped-query heads
//! read in place, and no `[batch, heads, queries, keys]` tensor ever built. The backward
//! recomputes each row's probabilities from the saved log-sum-exp (as FlashAttention does)
//! instead of keeping them.

use rayon::prelude::*;

use super::lanes::{add_outer, dot, dots, exp_shifted, max, rows_times, sum, LANES, ROWS};

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

    /// Keys rounded up to whole lanes: the row length of every transposed `[head_dim,
    /// key_stride]` buffer, so that the kernels' loops run over whole `LANES`-wide tiles (the padding
    /// holds zeros).
    fn key_stride(&self) -> usize {
        self.keys.next_multiple_of(LANES)
    }

    /// The keys the rows `first .. first + rows` need between them, in whole tiles.
    fn block_width(&self, first: usize, rows: usize) -> usize {
        self.visible(first + rows - 1).next_multiple_of(LANES)
    }
}

/// Forward pass. `query`: `[batch, queries, heads, head_dim]`; `key`, `value`: `[batch, keys,
/// kv_heads, head_dim]`; `blocked`: `[batch, queries, keys]` (`true` = the query must not see
/// the key), on top of the causal limit; `alone`: `[batch, queries]`, the queries `blocked`
/// leaves nothing but themselves (padding rows, whose output is their own value, computed
/// without the score loops). Returns the output `[batch, queries, heads, head_dim]`
/// and each row's log-sum-exp of scaled scores `[batch, heads, queries]` (`−∞` for a row with
/// no visible key, whose output is 0).
pub fn forward(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    blocked: Option<&[bool]>,
    alone: Option<&[bool]>,
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
            let input = RowInput::new(query, key, value, (blocked, alone), dims, row);
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
    alone: Option<&[bool]>,
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
            let input = RowInput::new(query, key, value, (blocked, alone), dims, row);
            let (output, grad) = (&output[row * row_len..], &grad[row * row_len..]);
            let mut head_grad_query = vec![0.0; queries * head_dim];
            for kv_head in 0..kv_heads {
                let mut key_acc = vec![0.0; dims.key_stride() * head_dim];
                let mut value_acc = vec![0.0; dims.key_stride() * head_dim];
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
                let stride = dims.key_stride();
                scatter_transposed(&key_acc, stride, grad_key, kv_heads, kv_head, head_dim);
                scatter_transposed(&value_acc, stride, grad_value, kv_heads, kv_head, head_dim);
            }
        });
    (grad_query, grad_key, grad_value)
}

/// One batch row's slices of the inputs, with each kv head's keys and values transposed to
/// `[head_dim, key_stride]` once, for every query head that reads them, so that every inner
/// loop runs along the keys.
struct RowInput<'a> {
    query: &'a [f32],
    key_t: Vec<Vec<f32>>,
    value_t: Vec<Vec<f32>>,
    blocked: Option<&'a [bool]>,
    alone: Option<&'a [bool]>,
    dims: Dims,
}

impl<'a> RowInput<'a> {
    fn new(
        query: &'a [f32],
        key: &[f32],
        value: &[f32],
        (blocked, alone): (Option<&'a [bool]>, Option<&'a [bool]>),
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
        let transposed = |t: &[f32]| -> Vec<Vec<f32>> {
            let t = &t[row * kv_len..(row + 1) * kv_len];
            (0..kv_heads)
                .map(|kv_head| {
                    transpose_head(t, keys, dims.key_stride(), kv_heads, kv_head, head_dim)
                })
                .collect()
        };
        Self {
            query: &query[row * q_len..(row + 1) * q_len],
            key_t: transposed(key),
            value_t: transposed(value),
            blocked: blocked.map(|b| &b[row * queries * keys..(row + 1) * queries * keys]),
            alone: alone.map(|a| &a[row * queries..(row + 1) * queries]),
            dims,
        }
    }

    /// Query head `head`'s inputs, laid out for the kernels.
    fn head(&self, head: usize) -> HeadInput<'_> {
        let Dims {
            heads,
            queries,
            head_dim,
            ..
        } = self.dims;
        let kv_head = head / self.dims.groups();
        HeadInput {
            row: self,
            query: gather_head(self.query, queries, heads, head, head_dim),
            key_t: &self.key_t[kv_head],
            value_t: &self.value_t[kv_head],
        }
    }
}

/// One (batch row, head)'s query `[queries, head_dim]`, with its kv head's transposed keys and
/// values.
struct HeadInput<'a> {
    row: &'a RowInput<'a>,
    query: Vec<f32>,
    key_t: &'a [f32],
    value_t: &'a [f32],
}

impl HeadInput<'_> {
    /// Whether every one of the `rows` queries from `first` sees only itself.
    #[inline(always)]
    fn all_alone(&self, first: usize, rows: usize) -> bool {
        self.row
            .alone
            .is_some_and(|alone| alone[first..first + rows].iter().all(|a| *a))
    }

    /// The key query `i` sits at.
    #[inline(always)]
    fn own_key(&self, i: usize) -> usize {
        self.row.dims.keys - self.row.dims.queries + i
    }

    /// The `ROWS` query rows from `first` (zero rows past the last query), each `head_dim`
    /// wide, times `factor`.
    #[inline(always)]
    fn query_rows(&self, first: usize, factor: f32) -> Vec<f32> {
        block_rows(
            &self.query,
            first,
            self.row.dims.queries,
            self.row.dims.head_dim,
            factor,
        )
    }

    /// Writes the scaled scores of the `rows` queries from `first` over `width` keys into
    /// `scores` (`ROWS` rows of `key_stride`), with `−∞` wherever a query may not see a key.
    #[inline(always)]
    fn block_scores(&self, first: usize, rows: usize, width: usize, scores: &mut [f32]) {
        let Dims { keys, head_dim, .. } = self.row.dims;
        let stride = self.row.dims.key_stride();
        let query = self.query_rows(first, self.row.dims.scale());
        rows_times(&query, head_dim, self.key_t, stride, width, scores);
        for r in 0..rows {
            let i = first + r;
            let row = &mut scores[r * stride..r * stride + width];
            let visible = self.row.dims.visible(i);
            row[visible..].fill(f32::NEG_INFINITY);
            if let Some(blocked) = self.row.blocked {
                for (score, blocked) in row.iter_mut().zip(&blocked[i * keys..(i + 1) * keys]) {
                    if *blocked {
                        *score = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }
}

/// The parts of one head's backward that are not inputs of the forward: `[queries, head_dim]`
/// slices of output, upstream gradient and query gradient; `lse` `[queries]`; and key and
/// value gradients accumulated transposed, `[head_dim, key_stride]`, across the heads of a
/// group.
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
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { forward_head_avx512(input, output, lse) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { forward_head_avx2(input, output, lse) };
    }
    forward_head(input, output, lse)
}

fn run_backward(input: &HeadInput<'_>, grads: HeadGrads<'_>) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { backward_head_avx512(input, grads) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { backward_head_avx2(input, grads) };
    }
    backward_head(input, grads)
}

/// [`forward_head`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn forward_head_avx512(input: &HeadInput<'_>, output: &mut [f32], lse: &mut [f32]) {
    forward_head(input, output, lse)
}

/// [`backward_head`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn backward_head_avx512(input: &HeadInput<'_>, grads: HeadGrads<'_>) {
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

/// One head's forward, `ROWS` queries at a time: scores → softmax → weighted sum of values.
#[inline(always)]
fn forward_head(input: &HeadInput<'_>, output: &mut [f32], lse: &mut [f32]) {
    let Dims {
        queries, head_dim, ..
    } = input.row.dims;
    let stride = input.row.dims.key_stride();
    let mut probs = vec![0.0; ROWS * stride];
    for first in (0..queries).step_by(ROWS) {
        let rows = ROWS.min(queries - first);
        if input.all_alone(first, rows) {
            // Softmax over one key: the query's own value, and its own scaled score as lse.
            let scale = input.row.dims.scale();
            for i in first..first + rows {
                let own = input.own_key(i);
                let query = &input.query[i * head_dim..(i + 1) * head_dim];
                lse[i] = query.iter().enumerate().fold(0.0, |score, (c, q)| {
                    score + q * scale * input.key_t[c * stride + own]
                });
                for (c, out) in output[i * head_dim..(i + 1) * head_dim]
                    .iter_mut()
                    .enumerate()
                {
                    *out = input.value_t[c * stride + own];
                }
            }
            continue;
        }
        let width = input.row.dims.block_width(first, rows);
        input.block_scores(first, rows, width, &mut probs);
        let mut norm = [0.0f32; ROWS];
        for r in 0..ROWS {
            let row = &mut probs[r * stride..r * stride + width];
            let top = if r < rows {
                max(row)
            } else {
                f32::NEG_INFINITY
            };
            if top == f32::NEG_INFINITY {
                row.fill(0.0);
                if r < rows {
                    lse[first + r] = f32::NEG_INFINITY;
                }
                continue;
            }
            exp_shifted(row, top);
            let total = sum(row);
            lse[first + r] = top + total.ln();
            norm[r] = total.recip();
        }
        for c in 0..head_dim {
            let values = &input.value_t[c * stride..c * stride + width];
            let weighted = dots(&probs, stride, values);
            for r in 0..rows {
                output[(first + r) * head_dim + c] = weighted[r] * norm[r];
            }
        }
    }
}

/// One head's backward, `ROWS` queries at a time, with probabilities `p = softmax(s)`:
/// `dV += pᵀ·dO`, `dp = dO·Vᵀ`, `ds = p ∘ (dp − dO·O)`, `dQ = scale·ds·K`, `dK += scale·dsᵀ·Q`.
#[inline(always)]
fn backward_head(input: &HeadInput<'_>, grads: HeadGrads<'_>) {
    let Dims {
        queries, head_dim, ..
    } = input.row.dims;
    let stride = input.row.dims.key_stride();
    let scale = input.row.dims.scale();
    let mut probs = vec![0.0; ROWS * stride];
    let mut dscores = vec![0.0; ROWS * stride];
    for first in (0..queries).step_by(ROWS) {
        let rows = ROWS.min(queries - first);
        if input.all_alone(first, rows) {
            // p = 1 on the query's own key: dV gets dO there; ds = p·(dp − dO·O) = 0.
            for i in first..first + rows {
                let own = input.own_key(i);
                let grad = &grads.grad[i * head_dim..(i + 1) * head_dim];
                for (c, g) in grad.iter().enumerate() {
                    grads.value_t[c * stride + own] += g;
                }
                grads.grad_query[i * head_dim..(i + 1) * head_dim].fill(0.0);
            }
            continue;
        }
        let width = input.row.dims.block_width(first, rows);
        input.block_scores(first, rows, width, &mut probs);
        for r in 0..ROWS {
            let row = &mut probs[r * stride..r * stride + width];
            match grads.lse.get(first + r) {
                Some(&lse) if r < rows && lse != f32::NEG_INFINITY => exp_shifted(row, lse),
                _ => row.fill(0.0),
            }
        }
        let grad = block_rows(grads.grad, first, queries, head_dim, 1.0);
        rows_times(&grad, head_dim, input.value_t, stride, width, &mut dscores);
        add_outer(&grad, head_dim, &probs, stride, width, grads.value_t);
        for r in 0..rows {
            let at = (first + r) * head_dim;
            let centre = dot(
                &grad[r * head_dim..(r + 1) * head_dim],
                &grads.output[at..at + head_dim],
            );
            let row = r * stride..r * stride + width;
            for (ds, p) in dscores[row.clone()].iter_mut().zip(&probs[row]) {
                *ds = p * (*ds - centre) * scale;
            }
        }
        for r in rows..ROWS {
            dscores[r * stride..r * stride + width].fill(0.0);
        }
        for c in 0..head_dim {
            let keys = &input.key_t[c * stride..c * stride + width];
            for (r, dq) in dots(&dscores, stride, keys)
                .into_iter()
                .take(rows)
                .enumerate()
            {
                grads.grad_query[(first + r) * head_dim + c] = dq;
            }
        }
        let query = input.query_rows(first, 1.0);
        add_outer(&query, head_dim, &dscores, stride, width, grads.key_t);
    }
}

/// `ROWS` rows of `[rows, width]` row-major `values` from `first`, times `factor`, with zero
/// rows past the end.
fn block_rows(values: &[f32], first: usize, rows: usize, width: usize, factor: f32) -> Vec<f32> {
    let mut block = vec![0.0; ROWS * width];
    let last = (first + ROWS).min(rows);
    for (to, from) in block
        .chunks_exact_mut(width)
        .zip(values[first * width..last * width].chunks_exact(width))
    {
        for (t, f) in to.iter_mut().zip(from) {
            *t = f * factor;
        }
    }
    block
}

/// Head `head` of a `[seq, heads, head_dim]` row, as `[seq, head_dim]`.
fn gather_head(row: &[f32], seq: usize, heads: usize, head: usize, head_dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(seq * head_dim);
    for position in row.chunks_exact(heads * head_dim).take(seq) {
        out.extend_from_slice(&position[head * head_dim..(head + 1) * head_dim]);
    }
    out
}

/// Head `head` of a `[seq, heads, head_dim]` row, transposed to `[head_dim, stride]` (zeros
/// past `seq`).
fn transpose_head(
    row: &[f32],
    seq: usize,
    stride: usize,
    heads: usize,
    head: usize,
    head_dim: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; head_dim * stride];
    for (j, position) in row.chunks_exact(heads * head_dim).take(seq).enumerate() {
        for (c, x) in position[head * head_dim..(head + 1) * head_dim]
            .iter()
            .enumerate()
        {
            out[c * stride + j] = *x;
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

/// Writes `[head_dim, stride]` values, transposed, into head `head` of a `[seq, heads,
/// head_dim]` row.
fn scatter_transposed(
    values: &[f32],
    stride: usize,
    row: &mut [f32],
    heads: usize,
    head: usize,
    head_dim: usize,
) {
    for (j, position) in row.chunks_exact_mut(heads * head_dim).enumerate() {
        for (c, x) in position[head * head_dim..(head + 1) * head_dim]
            .iter_mut()
            .enumerate()
        {
            *x = values[c * stride + j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which build of the kernels a run uses.
    #[derive(Clone, Copy, PartialEq)]
    enum Build {
        Avx512,
        Avx2,
        Portable,
    }

    /// The kernels compiled for AVX-512, for AVX2 + FMA and the portable build (what a CPU
    /// without them runs) give bit-identical results: the compiler fuses no multiply-adds on
    /// its own, so only the vector width differs.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_avx2_and_portable_kernels_agree_bit_for_bit() {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return;
        }
        let dims = Dims {
            batch: 1,
            heads: 2,
            kv_heads: 1,
            queries: 11,
            keys: 21,
            head_dim: 6,
        };
        let values = |n: usize, seed: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
        };
        let query = values(dims.queries * dims.heads * dims.head_dim, 1.0);
        let key = values(dims.keys * dims.head_dim, 2.0);
        let value = values(dims.keys * dims.head_dim, 3.0);
        let blocked: Vec<bool> = (0..dims.queries * dims.keys).map(|i| i % 7 == 3).collect();
        let row = RowInput::new(&query, &key, &value, (Some(&blocked), None), dims, 0);
        let input = row.head(1);
        let run = |build: Build| {
            let mut output = vec![0.0; dims.queries * dims.head_dim];
            let mut lse = vec![0.0; dims.queries];
            let grad = values(output.len(), 4.0);
            let mut grad_query = vec![0.0; output.len()];
            let mut key_t = vec![0.0; dims.key_stride() * dims.head_dim];
            let mut value_t = key_t.clone();
            // SAFETY: the CPU has AVX2 and FMA, checked at the top, and AVX-512 where asked.
            match build {
                Build::Avx512 => unsafe { forward_head_avx512(&input, &mut output, &mut lse) },
                Build::Avx2 => unsafe { forward_head_avx2(&input, &mut output, &mut lse) },
                Build::Portable => forward_head(&input, &mut output, &mut lse),
            }
            let grads = HeadGrads {
                output: &output,
                lse: &lse,
                grad: &grad,
                grad_query: &mut grad_query,
                key_t: &mut key_t,
                value_t: &mut value_t,
            };
            // SAFETY: as above.
            match build {
                Build::Avx512 => unsafe { backward_head_avx512(&input, grads) },
                Build::Avx2 => unsafe { backward_head_avx2(&input, grads) },
                Build::Portable => backward_head(&input, grads),
            }
            [output, lse, grad_query, key_t, value_t]
        };
        let bits =
            |parts: [Vec<f32>; 5]| parts.map(|p| p.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        let fast = run(Build::Avx2);
        assert!(
            fast.iter().all(|part| part.iter().any(|x| *x != 0.0)),
            "every result is used"
        );
        let portable = bits(run(Build::Portable));
        assert_eq!(bits(fast), portable);
        if std::is_x86_feature_detected!("avx512f") {
            assert_eq!(bits(run(Build::Avx512)), portable);
        }
    }
}
