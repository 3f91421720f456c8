//! Attention's backward at bf16 products on the CPU's bf16 units, for the forward of
//! `bf16_forward.rs`: per batch row, kv head and block of queries, the probabilities are
//! rebuilt from the saved log-sum-exp (`P = exp(S − lse)`, `S = Q·Kᵀ/√d`, as FlashAttention
//! does) and the five products `S = Q·Kᵀ`, `dP = dO·Vᵀ`, `dQ = dS·K`, `dK += dSᵀ·Q` and
//! `dV += Pᵀ·dO` run on the unit (`product::bf16`), with `dS = P ∘ (dP − rowsum(dO ∘ O)) / √d`
//! and the masks in f32 between them. As under PyTorch's bf16 autocast, every product's inputs
//! are rounded to bf16 and every sum is f32; the key and value gradients of a group's query
//! heads are summed in f32.

use rayon::prelude::*;

use super::{bf16_forward::QUERY_BLOCK, cpu::Dims};
use crate::{
    product::bf16::{self, PackedB, Strided},
    vector_exp::{exp, widest},
};

/// From the forward's inputs (`query` `[batch, queries, heads, head_dim]`, `key` and `value`
/// `[batch, keys, kv_heads, head_dim]`, `blocked` `[batch, queries, keys]` on top of the causal
/// limit), its `output` and log-sum-exp `lse` (`[batch, heads, queries]`, `−∞` for a query
/// that sees no key) and the output's gradient `grad`, the gradients of query, key and value,
/// shaped like them. Call only when [`bf16::available`].
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
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
    let (q_row, kv_row) = (queries * heads * head_dim, keys * kv_heads * head_dim);
    let mut grad_query = vec![0.0; batch * q_row];
    let mut grad_key = vec![0.0; batch * kv_row];
    let mut grad_value = vec![0.0; batch * kv_row];
    if q_row == 0 || kv_row == 0 {
        return (grad_query, grad_key, grad_value);
    }
    grad_query
        .par_chunks_mut(q_row)
        .zip(grad_key.par_chunks_mut(kv_row))
        .zip(grad_value.par_chunks_mut(kv_row))
        .enumerate()
        .for_each(|(row, ((grad_query, grad_key), grad_value))| {
            let row_input = Row {
                query: span(query, row, q_row),
                key: span(key, row, kv_row),
                value: span(value, row, kv_row),
                output: span(output, row, q_row),
                grad: span(grad, row, q_row),
                lse: span(lse, row, heads * queries),
                blocked: blocked.map(|b| span(b, row, queries * keys)),
                dims,
            };
            for kv_head in 0..kv_heads {
                let mut key_sums = vec![0.0; keys * head_dim];
                let mut value_sums = vec![0.0; keys * head_dim];
                for first in (0..queries).step_by(QUERY_BLOCK) {
                    row_input.block(kv_head, first, grad_query, [&mut key_sums, &mut value_sums]);
                }
                for (k, (key_sum, value_sum)) in key_sums
                    .chunks_exact(head_dim)
                    .zip(value_sums.chunks_exact(head_dim))
                    .enumerate()
                {
                    let at = (k * kv_heads + kv_head) * head_dim;
                    grad_key[at..at + head_dim].copy_from_slice(key_sum);
                    grad_value[at..at + head_dim].copy_from_slice(value_sum);
                }
            }
        });
    (grad_query, grad_key, grad_value)
}

/// Batch row `index` of `t`, `len` elements a row.
fn span<T>(t: &[T], index: usize, len: usize) -> &[T] {
    &t[index * len..][..len]
}

/// The matrix at `data` with these strides, as the bf16 products read it.
fn matrix(data: &[f32], row_stride: usize, col_stride: usize) -> Strided<'_> {
    Strided {
        data,
        row_stride,
        col_stride,
    }
}

/// One batch row's slices of the backward's inputs.
struct Row<'a> {
    query: &'a [f32],
    key: &'a [f32],
    value: &'a [f32],
    output: &'a [f32],
    grad: &'a [f32],
    lse: &'a [f32],
    blocked: Option<&'a [bool]>,
    dims: Dims,
}

impl<'a> Row<'a> {
    /// One kv head's share of the gradients from the block of queries at `first`: each query
    /// head's rows of `grad_query` (`[queries, heads, head_dim]`) written, and the block's
    /// terms added to the kv head's `[keys, head_dim]` key and value gradient sums.
    fn block(
        &self,
        kv_head: usize,
        first: usize,
        grad_query: &mut [f32],
        [key_sums, value_sums]: [&mut [f32]; 2],
    ) {
        let Dims {
            heads,
            kv_heads,
            queries,
            keys,
            head_dim,
            ..
        } = self.dims;
        let rows = QUERY_BLOCK.min(queries - first);
        // The keys the block's last query sees: later keys get no weight in any row.
        let width = (keys - queries + first + rows).min(keys);
        // One kv head's `[keys, head_dim]` in `[keys, kv_heads, head_dim]`, and its transpose.
        let kv_stride = kv_heads * head_dim;
        let kv_rows = |t: &'a [f32]| matrix(&t[kv_head * head_dim..], kv_stride, 1);
        let kv_columns = |t: &'a [f32]| matrix(&t[kv_head * head_dim..], 1, kv_stride);
        let key_t = PackedB::new(kv_columns(self.key), head_dim, width);
        let value_t = PackedB::new(kv_columns(self.value), head_dim, width);
        let key_rows = PackedB::new(kv_rows(self.key), width, head_dim);
        let groups = heads / kv_heads;
        for head in kv_head * groups..(kv_head + 1) * groups {
            // The block's `[rows, head_dim]` of one query head in `[queries, heads, head_dim]`.
            let at = first * heads * head_dim + head * head_dim;
            let head_rows = |t: &'a [f32]| matrix(&t[at..], heads * head_dim, 1);
            let (query, grad) = (head_rows(self.query), head_rows(self.grad));
            let mut probs = bf16::product(rows, head_dim, query, &key_t);
            let mut score_grads = bf16::product(rows, head_dim, grad, &value_t);
            self.softmax_gradient(head, first, width, &mut probs, &mut score_grads);
            let by_rows = |t| matrix(t, width, 1);
            let by_columns = |t| matrix(t, 1, width);
            let query_grad = bf16::product(rows, width, by_rows(&score_grads), &key_rows);
            for (r, out) in query_grad.chunks_exact(head_dim).enumerate() {
                let at = (first + r) * heads * head_dim + head * head_dim;
                grad_query[at..at + head_dim].copy_from_slice(out);
            }
            let query_packed = PackedB::new(query, rows, head_dim);
            let key_grad = bf16::product(width, rows, by_columns(&score_grads), &query_packed);
            let grad_packed = PackedB::new(grad, rows, head_dim);
            let value_grad = bf16::product(width, rows, by_columns(&probs), &grad_packed);
            widest(
                #[inline(always)]
                || {
                    for (sum, term) in key_sums.iter_mut().zip(&key_grad) {
                        *sum += term;
                    }
                    for (sum, term) in value_sums.iter_mut().zip(&value_grad) {
                        *sum += term;
                    }
                },
            );
        }
    }

    /// Turns the block's raw scores `q·k` (`probs`, `[rows, width]`) into the probabilities
    /// `exp(q·k/√d − lse)` and `dO·vᵀ` (`score_grads`, alike) into the scores' gradient
    /// `P ∘ (dO·vᵀ − rowsum(dO ∘ O)) / √d`, both 0 past the causal limit, at blocked keys and
    /// in a row that sees no key.
    fn softmax_gradient(
        &self,
        head: usize,
        first: usize,
        width: usize,
        probs: &mut [f32],
        score_grads: &mut [f32],
    ) {
        let Dims {
            heads,
            queries,
            keys,
            head_dim,
            ..
        } = self.dims;
        let scale = (head_dim as f32).sqrt().recip();
        for (r, (probs, score_grads)) in probs
            .chunks_exact_mut(width)
            .zip(score_grads.chunks_exact_mut(width))
            .enumerate()
        {
            let i = first + r;
            let lse = self.lse[head * queries + i];
            let visible = (keys - queries + i + 1).min(width);
            if lse == f32::NEG_INFINITY {
                probs.fill(0.0);
                score_grads.fill(0.0);
                continue;
            }
            let at = i * heads * head_dim + head * head_dim;
            let (output, grad) = (
                &self.output[at..at + head_dim],
                &self.grad[at..at + head_dim],
            );
            let carried: f32 = output.iter().zip(grad).map(|(o, g)| o * g).sum();
            widest(
                #[inline(always)]
                || {
                    for (p, g) in probs[..visible].iter_mut().zip(&mut score_grads[..visible]) {
                        *p = exp(*p * scale - lse);
                        *g = *p * (*g - carried) * scale;
                    }
                },
            );
            probs[visible..].fill(0.0);
            score_grads[visible..].fill(0.0);
            if let Some(blocked) = self.blocked {
                let hidden = &blocked[i * keys..i * keys + visible];
                for ((p, g), &hidden) in probs.iter_mut().zip(score_grads.iter_mut()).zip(hidden) {
                    if hidden {
                        *p = 0.0;
                        *g = 0.0;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::{
        bf16_forward::{
            self,
            tests::{blocked_keys, cases, values},
        },
        cpu,
    };

    /// The bf16 backward (from the bf16 forward's output and log-sum-exp) equals the f32
    /// kernel's within bf16 rounding, with grouped-query heads, a prompt cache (more keys than
    /// queries), blocked keys, a query that sees nothing and more queries than one block.
    #[test]
    fn bf16_backward_matches_the_f32_kernel() {
        if !bf16::available() {
            eprintln!("skipped: this CPU has no bf16 unit (AMX-BF16 or AVX-512 BF16)");
            return;
        }
        for dims in cases() {
            let Dims {
                batch,
                heads,
                kv_heads,
                queries,
                keys,
                head_dim,
            } = dims;
            let query = values(batch * queries * heads * head_dim, 1);
            let key = values(batch * keys * kv_heads * head_dim, 2);
            let value = values(batch * keys * kv_heads * head_dim, 3);
            let grad = values(batch * queries * heads * head_dim, 4);
            let blocked = blocked_keys(dims);
            let blocked = Some(&blocked[..]);
            let (output, lse) = cpu::forward(&query, &key, &value, blocked, None, dims);
            let want = cpu::backward(
                &query, &key, &value, &output, &lse, &grad, blocked, None, dims,
            );
            let (output, lse) = bf16_forward::forward(&query, &key, &value, blocked, dims);
            let got = backward(&query, &key, &value, &output, &lse, &grad, blocked, dims);
            for (name, got, want) in [
                ("query", &got.0, &want.0),
                ("key", &got.1, &want.1),
                ("value", &got.2, &want.2),
            ] {
                let largest = want.iter().fold(0.0f32, |m, w| m.max(w.abs()));
                let worst = got
                    .iter()
                    .zip(want)
                    .map(|(g, w)| (g - w).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    worst <= 2e-2 * largest,
                    "{dims:?} {name}: largest difference {worst} against values up to {largest}"
                );
                assert!(worst > 0.0, "{dims:?} {name}: bf16 rounding shows");
            }
            assert!(got.0[head_dim * heads..2 * head_dim * heads]
                .iter()
                .all(|&x| x == 0.0));
        }
    }
}
