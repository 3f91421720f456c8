//! Attention's forward at bf16 products on the CPU's bf16 units (scoring, the reference pass,
//! evaluation, and training, whose backward is `bf16_backward.rs`): per batch row and kv head,
//! `S = Q·Kᵀ` and `O = P·V` are two bf16 products (`product::bf16`, the keys and values packed
//! once per block of queries for every query head that reads them), the scaling, masks and
//! softmax in f32 between them. As under PyTorch's bf16 autocast, `Q`, `K`, `V` and the
//! probabilities are rounded to bf16 and every sum is f32. Each row's log-sum-exp is kept for
//! the backward, which rebuilds the probabilities from it.

use rayon::prelude::*;

use super::{
    cpu::Dims,
    lanes::{exp_shifted, max, sum},
};
use crate::product::bf16::{self, PackedB, Strided};

/// Queries per block: one block's scores are `[QUERY_BLOCK, keys]` f32.
pub(super) const QUERY_BLOCK: usize = 64;

/// The attention output `[batch, queries, heads, head_dim]` of `query` (`[batch, queries,
/// heads, head_dim]`), `key` and `value` (`[batch, keys, kv_heads, head_dim]`), row-major, with
/// `blocked` (`[batch, queries, keys]`, `true` = hidden) on top of the causal limit, and each
/// row's log-sum-exp of scaled scores `[batch, heads, queries]`. A query that sees no key gets
/// 0 and a log-sum-exp of `−∞`. Call only when [`bf16::available`].
pub(super) fn forward(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    blocked: Option<&[bool]>,
    dims: Dims,
) -> (Vec<f32>, Vec<f32>) {
    let Dims {
        batch,
        heads,
        kv_heads,
        queries,
        keys,
        head_dim,
    } = dims;
    let groups = heads / kv_heads;
    let (q_row, kv_row) = (queries * heads * head_dim, keys * kv_heads * head_dim);
    let mut output = vec![0.0f32; batch * q_row];
    let mut lse = vec![f32::NEG_INFINITY; batch * heads * queries];
    if output.is_empty() {
        return (output, lse);
    }
    output
        .par_chunks_mut(q_row)
        .zip(lse.par_chunks_mut(heads * queries))
        .enumerate()
        .for_each(|(row, (output, lse))| {
            let (query, key, value) = (
                &query[row * q_row..(row + 1) * q_row],
                &key[row * kv_row..(row + 1) * kv_row],
                &value[row * kv_row..(row + 1) * kv_row],
            );
            let blocked = blocked.map(|b| &b[row * queries * keys..(row + 1) * queries * keys]);
            for first in (0..queries).step_by(QUERY_BLOCK) {
                let rows = QUERY_BLOCK.min(queries - first);
                // The keys the block's last query sees: later keys get no weight in any row.
                let width = (keys - queries + first + rows).min(keys);
                let block = Block {
                    first,
                    rows,
                    width,
                    dims,
                    blocked,
                };
                for kv_head in 0..kv_heads {
                    let key_t = PackedB::new(
                        Strided {
                            data: &key[kv_head * head_dim..],
                            row_stride: 1,
                            col_stride: kv_heads * head_dim,
                        },
                        head_dim,
                        width,
                    );
                    let values = PackedB::new(
                        Strided {
                            data: &value[kv_head * head_dim..],
                            row_stride: kv_heads * head_dim,
                            col_stride: 1,
                        },
                        width,
                        head_dim,
                    );
                    for head in kv_head * groups..(kv_head + 1) * groups {
                        let q = Strided {
                            data: &query[first * heads * head_dim + head * head_dim..],
                            row_stride: heads * head_dim,
                            col_stride: 1,
                        };
                        let mut probs = bf16::product(rows, head_dim, q, &key_t);
                        block.softmax(&mut probs, &mut lse[head * queries + first..][..rows]);
                        let p = Strided {
                            data: &probs,
                            row_stride: width,
                            col_stride: 1,
                        };
                        let out = bf16::product(rows, width, p, &values);
                        for (i, out) in out.chunks_exact(head_dim).enumerate() {
                            let at = (first + i) * heads * head_dim + head * head_dim;
                            output[at..at + head_dim].copy_from_slice(out);
                        }
                    }
                }
            }
        });
    (output, lse)
}

/// One block of queries of one batch row: which keys each may see.
struct Block<'a> {
    first: usize,
    rows: usize,
    width: usize,
    dims: Dims,
    blocked: Option<&'a [bool]>,
}

impl Block<'_> {
    /// Turns the block's raw scores `q·k` (`[rows, width]`) into probabilities in place: scaled
    /// by `1/√head_dim`, keys past the causal limit or blocked given 0, each row normalised
    /// (a row with no visible key all 0); each row's log-sum-exp of scaled scores into `lse`
    /// (`[rows]`, left as it is for a row with no visible key).
    fn softmax(&self, scores: &mut [f32], lse: &mut [f32]) {
        let Dims {
            queries,
            keys,
            head_dim,
            ..
        } = self.dims;
        let scale = (head_dim as f32).sqrt().recip();
        for (r, row) in scores
            .chunks_exact_mut(self.width)
            .enumerate()
            .take(self.rows)
        {
            let i = self.first + r;
            let visible = (keys - queries + i + 1).min(self.width);
            let (seen, unseen) = row.split_at_mut(visible);
            unseen.fill(0.0);
            seen.iter_mut().for_each(|s| *s *= scale);
            if let Some(blocked) = self.blocked {
                for (s, &hidden) in seen.iter_mut().zip(&blocked[i * keys..]) {
                    if hidden {
                        *s = f32::NEG_INFINITY;
                    }
                }
            }
            let top = max(seen);
            if top == f32::NEG_INFINITY {
                seen.fill(0.0);
                continue;
            }
            exp_shifted(seen, top);
            let total = sum(seen);
            lse[r] = top + total.ln();
            let norm = total.recip();
            seen.iter_mut().for_each(|p| *p *= norm);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::attention::cpu;

    /// Deterministic values in [-1, 1].
    pub(in crate::attention) fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }

    /// The sizes both bf16 attention tests run: grouped-query heads, a prompt cache (more keys
    /// than queries) with more queries than one block, one kv head for three query heads.
    pub(in crate::attention) fn cases() -> [Dims; 3] {
        [
            (2, 6, 2, 37, 37, 16),
            (1, 4, 4, 300, 310, 64),
            (3, 3, 1, 20, 20, 32),
        ]
        .map(|(batch, heads, kv_heads, queries, keys, head_dim)| Dims {
            batch,
            heads,
            kv_heads,
            queries,
            keys,
            head_dim,
        })
    }

    /// `[batch, queries, keys]` with every seventh key blocked and query 1 of row 0 seeing no
    /// key at all.
    pub(in crate::attention) fn blocked_keys(dims: Dims) -> Vec<bool> {
        let Dims {
            batch,
            queries,
            keys,
            ..
        } = dims;
        let mut blocked: Vec<bool> = (0..batch * queries * keys).map(|i| i % 7 == 3).collect();
        blocked[keys..2 * keys].fill(true);
        blocked
    }

    /// The bf16 forward equals the f32 kernel within bf16 rounding, with grouped-query heads,
    /// a prompt cache (more keys than queries), blocked keys, a query that sees nothing and
    /// more queries than one block.
    #[test]
    fn bf16_forward_matches_the_f32_kernel() {
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
            let blocked = blocked_keys(dims);
            let (want, want_lse) = cpu::forward(&query, &key, &value, Some(&blocked), None, dims);
            let (got, got_lse) = forward(&query, &key, &value, Some(&blocked), dims);
            for (g, w) in got_lse.iter().zip(&want_lse) {
                assert!(
                    g == w || (g - w).abs() < 2e-2 * (1.0 + w.abs()),
                    "{dims:?}: log-sum-exp {g} vs {w}"
                );
            }
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 2e-2, "{dims:?}: largest difference {worst}");
            assert!(worst > 0.0, "{dims:?}: bf16 rounding shows");
            assert!(got[head_dim * heads..2 * head_dim * heads]
                .iter()
                .all(|&x| x == 0.0));
        }
    }
}
