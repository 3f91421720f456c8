//! The output head's log-softmax on a bf16 unit without the logits: each `[32, 32]` block of
//! `hidden · weight` that the kernel computes (`bf16.rs`) is used while still in registers and
//! cache, so that the `[rows, vocab]` logits are never written, read back for the maximum,
//! exponentiated into a second copy and read again, as the block-by-block burn operations of
//! `vocab_logps.rs` do. The forward folds each block into its rows' log-sum-exp
//! ([`target_logits_and_lse`]); the backward turns a block of recomputed logits into their
//! gradient ([`logit_gradients`]).
//!
//! In the forward each row keeps one running maximum and sum per column of a block (32 lanes): a new logit `x`
//! against a lane's maximum `m` and sum `s` makes `s·e + 1` (and `m = x`) when `x > m`, else
//! `s + e`, with `e = exp(−|x − m|)`: one exponential per logit, no reduction per block. The
//! lanes are combined once at the end, `lse = M + ln Σ s_l · exp(m_l − M)`, `M` their maximum.

use std::{mem::MaybeUninit, ops::Range};

use super::bf16::{
    for_each_block, multiply_block, prefetch_block_row, unit, Block, PackedB, Strided, Unit,
};
use super::bf16_pack::{convert, PANEL, ROWS};
use crate::vector_exp::{exp, widest};

/// Lanes of a row's running log-sum-exp: the columns of one block.
const LANES: usize = 2 * PANEL;

/// The running log-sum-exp of a chunk's 32 rows and their targets' logits.
struct Rows<'t> {
    /// The chunk's rows' target columns.
    targets: &'t [usize],
    /// Per row and lane, the largest logit seen, `[32, 32]`.
    max: [[f32; LANES]; ROWS],
    /// Per row and lane, `Σ exp(x − max)` over the logits seen, `[32, 32]`.
    sum: [[f32; LANES]; ROWS],
    /// Per row, the logit of its target column.
    picked: [f32; ROWS],
}

impl Rows<'_> {
    /// Folds `block`'s logits into its rows' lanes and takes the targets that lie in it.
    fn fold(&mut self, block: Block<'_>) {
        widest(
            #[inline(always)]
            || {
                for r in 0..block.live {
                    let (max, sum) = (&mut self.max[r], &mut self.sum[r]);
                    for ((m, s), &x) in max.iter_mut().zip(sum.iter_mut()).zip(block.row(r)) {
                        let e = exp(-(x - *m).abs());
                        let above = x > *m;
                        *s = if above { *s * e + 1.0 } else { *s + e };
                        *m = if above { x } else { *m };
                    }
                }
            },
        );
        for (r, &target) in self.targets.iter().enumerate() {
            if (block.column..block.column + block.width).contains(&target) {
                self.picked[r] = block.row(r)[target - block.column];
            }
        }
    }

    /// Row `r`'s log-sum-exp from its lanes.
    fn log_sum_exp(&self, r: usize) -> f32 {
        let top = self.max[r].iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let sum: f32 = self.max[r]
            .iter()
            .zip(&self.sum[r])
            .map(|(&m, &s)| s * exp(m - top))
            .sum();
        top + sum.ln()
    }
}

/// The unit a head of `m` rows runs on, after checking one target per row, each a column of
/// `b`.
fn head_unit(m: usize, b: &PackedB, targets: &[usize]) -> Unit {
    assert_eq!(targets.len(), m, "one target per row");
    assert!(
        targets.iter().all(|&t| t < b.columns()),
        "every target is a column of b"
    );
    unit().expect("this CPU has no bf16 matrix unit")
}

/// `(logits[i, targets[i]], log Σ_j exp(logits[i, j]))` of every row `i` of `logits = a · b`
/// (`a` `[m, k]` rounded to bf16, `b` packed, sums in f32, each `[m]`) on this CPU's fastest
/// bf16 unit, without the `[m, n]` logits. Call only where a unit is present; every target
/// must be below `n`.
pub fn target_logits_and_lse(
    m: usize,
    k: usize,
    a: Strided,
    b: &PackedB,
    targets: &[usize],
) -> (Vec<f32>, Vec<f32>) {
    let unit = head_unit(m, b, targets);
    let mut chunks: Vec<Rows<'_>> = targets
        .chunks(ROWS)
        .map(|targets| Rows {
            targets,
            max: [[f32::NEG_INFINITY; LANES]; ROWS],
            sum: [[0.0; LANES]; ROWS],
            picked: [0.0; ROWS],
        })
        .collect();
    let columns = 0..b.columns();
    for_each_block(unit, m, k, a, b, columns, &mut chunks, |rows, block| {
        rows.fold(block)
    });
    let picked = chunks
        .iter()
        .flat_map(|rows| rows.picked[..rows.targets.len()].iter().copied())
        .collect();
    let lse = chunks
        .iter()
        .flat_map(|rows| (0..rows.targets.len()).map(|r| rows.log_sum_exp(r)))
        .collect();
    (picked, lse)
}

/// A chunk's running log-sum-exp as in [`Rows`], but with one maximum per row, and with each
/// row's sum of the head's columns weighted by `exp(logit − max)`: what a frozen head's
/// backward needs ([`target_logits_lse_and_expected`]).
struct ExpectedRows<'t> {
    /// The chunk's rows' target columns.
    targets: &'t [usize],
    /// Per row, the largest logit seen.
    max: [f32; ROWS],
    /// Per row, `Σ_j exp(x_j − max)` over the logits seen.
    sum: [f32; ROWS],
    /// Per row, the logit of its target column.
    picked: [f32; ROWS],
    /// Per row, `Σ_j exp(x_j − max) · bt[j, :]`, `[32, k]`.
    weighted: Vec<f32>,
    /// The block's `exp(x − max)` in bf16, `[32, depth]`, as the kernels read a chunk (rows
    /// and columns past the block's zero).
    numerators: [u16; ROWS * LANES],
}

impl ExpectedRows<'_> {
    /// Folds `block` into its rows' maxima and sums, adds the block's numerators times the
    /// head's columns (`bt`'s rows `block.column ..`, one product of depth 32 per pair of
    /// `bt`'s panels) into `weighted`, and takes the targets that lie in it.
    fn fold(&mut self, unit: Unit, bt: &PackedB, block: Block<'_>) {
        let k = bt.columns();
        let depth = LANES.min(bt.depth() - block.column);
        let (weighted, max, sum) = (&mut self.weighted, &mut self.max, &mut self.sum);
        let mut numerators = [0f32; ROWS * LANES];
        widest(
            #[inline(always)]
            || {
                for r in 0..block.live {
                    let logits = block.row(r);
                    let top = logits.iter().fold(max[r], |a, &b| a.max(b));
                    if top > max[r] {
                        let scale = exp(max[r] - top);
                        sum[r] *= scale;
                        for w in &mut weighted[r * k..(r + 1) * k] {
                            *w *= scale;
                        }
                        max[r] = top;
                    }
                    let row = &mut numerators[r * LANES..][..logits.len()];
                    for (e, &x) in row.iter_mut().zip(logits) {
                        *e = exp(x - top);
                    }
                    sum[r] += row.iter().sum::<f32>();
                }
            },
        );
        let chunk = &mut self.numerators[..ROWS * depth];
        for (row, exps) in chunk.chunks_mut(depth).zip(numerators.chunks(LANES)) {
            // SAFETY: AVX-512 BF16 is present wherever a bf16 unit is (`bf16::unit`).
            unsafe { convert(&exps[..depth], row) };
        }
        let depths = block.column..block.column + depth;
        let mut product = [0f32; ROWS * 2 * PANEL];
        for pair in 0..k.div_ceil(LANES) {
            let width = LANES.min(k - pair * LANES);
            let panels = bt.pair_at_depths(pair, depths.clone());
            // SAFETY: `unit` ran this block's kernel on this thread (`for_each_block`), so it is
            // present and configured here; `chunk` is `[32, depth]`, each panel `depth / 2` rows
            // of 16 words, `depth` a multiple of the unit's step (`bt.depth()` and the block's
            // column are), `live` ≤ 32.
            unsafe { multiply_block(unit, chunk, depth, block.live, panels, width, &mut product) };
            widest(
                #[inline(always)]
                || {
                    for r in 0..block.live {
                        let out = &mut weighted[r * k + pair * LANES..][..width];
                        for (w, &p) in out.iter_mut().zip(&product[r * LANES..][..width]) {
                            *w += p;
                        }
                    }
                },
            );
        }
        for (r, &target) in self.targets.iter().enumerate() {
            if (block.column..block.column + block.width).contains(&target) {
                self.picked[r] = block.row(r)[target - block.column];
            }
        }
    }
}

/// [`target_logits_and_lse`] and, per row, the softmax-weighted mean of the head's columns,
/// `Σ_j softmax(logits[i])_j · bt[j, :]` (`[m, k]`, `bt` the packing of `bᵀ`, `[n, k]`), in
/// the same pass: a frozen head's backward is then `grad · (b[:, target] − mean)` with no
/// second pass over the vocabulary. Each block's `exp(logit − running max)` is rounded to bf16
/// and multiplied by the block's rows of `bt` on the unit, the sums rescaled as the maximum
/// moves (as flash attention rescales its output). Call only where a unit is present.
pub fn target_logits_lse_and_expected(
    m: usize,
    k: usize,
    a: Strided,
    b: &PackedB,
    bt: &PackedB,
    targets: &[usize],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(
        bt.columns() == k && bt.depth() >= b.columns(),
        "bt is the packing of b's transpose"
    );
    let unit = head_unit(m, b, targets);
    let mut chunks: Vec<ExpectedRows<'_>> = targets
        .chunks(ROWS)
        .map(|targets| ExpectedRows {
            targets,
            max: [f32::NEG_INFINITY; ROWS],
            sum: [0.0; ROWS],
            picked: [0.0; ROWS],
            weighted: vec![0.0; ROWS * k],
            numerators: [0; ROWS * LANES],
        })
        .collect();
    let columns = 0..b.columns();
    for_each_block(unit, m, k, a, b, columns, &mut chunks, |rows, block| {
        rows.fold(unit, bt, block)
    });
    let mut picked = Vec::with_capacity(m);
    let mut lse = Vec::with_capacity(m);
    let mut expected = Vec::with_capacity(m * k);
    for rows in &chunks {
        for r in 0..rows.targets.len() {
            picked.push(rows.picked[r]);
            lse.push(rows.max[r] + rows.sum[r].ln());
            let inverse = 1.0 / rows.sum[r];
            expected.extend(
                rows.weighted[r * k..(r + 1) * k]
                    .iter()
                    .map(|w| w * inverse),
            );
        }
    }
    (picked, lse, expected)
}

/// What the backward knows of each row of the head (`[m]` each).
pub struct TargetRows<'a> {
    /// The target column.
    pub targets: &'a [usize],
    /// The log-sum-exp of the row's logits.
    pub lse: &'a [f32],
    /// The gradient of the target's log-prob.
    pub grad: &'a [f32],
}

/// The gradient of `logits[:, columns]` (`[m, columns.len()]`, row-major) where `logits = a · b`
/// as in [`target_logits_and_lse`]: `grad[i] · (1[j = targets[i]] − exp(logits[i, j] −
/// lse[i]))`. `columns` starts at a multiple of 32.
pub fn logit_gradients(
    m: usize,
    k: usize,
    a: Strided,
    b: &PackedB,
    columns: Range<usize>,
    rows: TargetRows<'_>,
) -> Vec<f32> {
    let TargetRows { targets, lse, grad } = rows;
    assert!(
        targets.len() == m && lse.len() == m && grad.len() == m,
        "one target, log-sum-exp and gradient per row"
    );
    let unit = unit().expect("this CPU has no bf16 matrix unit");
    let (start, width) = (columns.start, columns.len());
    let mut out = Vec::with_capacity(m * width);
    if width == 0 {
        return out;
    }
    // Each chunk's first row and its `[32, width]` rows of the gradient.
    let mut chunks: Vec<(usize, &mut [MaybeUninit<f32>])> = out.spare_capacity_mut()[..m * width]
        .chunks_mut(ROWS * width)
        .enumerate()
        .map(|(i, rows)| (i * ROWS, rows))
        .collect();
    for_each_block(
        unit,
        m,
        k,
        a,
        b,
        columns,
        &mut chunks,
        |(first, rows), block| {
            let at = block.column - start;
            widest(
                #[inline(always)]
                || {
                    for r in 0..block.live {
                        let i = *first + r;
                        let (shift, scale) = (lse[i], -grad[i]);
                        let row = &mut rows[r * width..][..width];
                        for (out, &x) in row[at..].iter_mut().zip(block.row(r)) {
                            out.write(scale * exp(x - shift));
                        }
                        prefetch_block_row(row, at + 2 * PANEL);
                    }
                },
            );
            for r in 0..block.live {
                let i = *first + r;
                if let Some(j) = targets[i]
                    .checked_sub(block.column)
                    .filter(|&j| j < block.width)
                {
                    let out = &mut rows[r * width + at + j];
                    // SAFETY: written just above, as every column of the block.
                    let p = unsafe { out.assume_init() };
                    out.write(p + grad[i]);
                }
            }
        },
    );
    // SAFETY: every block of `columns` wrote its live rows' columns (`for_each_block` visits
    // each pair of panels of `columns` for every chunk).
    unsafe { out.set_len(m * width) };
    out
}
