//! The bf16 product's kernel on AVX-512 BF16 dot products (`vdpbf16ps`), for x86-64 CPUs that
//! have them without AMX tiles (AMD Zen 4 and later, Intel Cooper Lake): a chunk of 32 packed
//! rows times two panels into a `[32, 32]` block (`bf16.rs` packs and drives).
//!
//! A panel's row of 16 words (two bf16 of consecutive depths per column) is the pair layout
//! `vdpbf16ps` reads, so one instruction adds `a[r, 2q]·b[2q, j] + a[r, 2q + 1]·b[2q + 1, j]`
//! to 16 columns' f32 sums, `a`'s word broadcast to every lane. A group of rows keeps its 16
//! accumulators in registers over the whole depth: 8 rows × 2 panels, or 16 rows × 1 panel
//! where only the left panel holds columns (a LoRA factor's 16, the last columns of a product),
//! so that the padding panel costs nothing.

use std::arch::x86_64::*;

use super::bf16_pack::{PANEL, ROWS};

/// Whether this CPU has AVX-512 F, BW and BF16 (asked of the standard library, which caches).
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

/// Rows `0..live` of `block` (`[32, 32]` f32) `= chunk · [left right]` over `depth`: `chunk`
/// `[32, depth]` bf16, `left` and `right` panels `[depth / 2, 16]` words. Rows from `live` on
/// are written for whole groups of 8 only, and the driver does not read them.
///
/// # Safety
/// The CPU must have AVX-512 BF16 ([`available`]); the slices must be the sizes above, `depth`
/// a positive even number and `live` at most 32.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn two_panels(
    chunk: &[u16],
    depth: usize,
    live: usize,
    left: &[u32],
    right: &[u32],
    block: &mut [f32],
) {
    debug_assert!(right.len() == left.len());
    groups::<2, 8>(chunk, depth, live, [left, right], block);
}

/// Rows `0..live` of `block`'s left 16 columns `= chunk · left`, as [`two_panels`] with the
/// right panel left out (16 rows at a time).
///
/// # Safety
/// As [`two_panels`].
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn one_panel(
    chunk: &[u16],
    depth: usize,
    live: usize,
    left: &[u32],
    block: &mut [f32],
) {
    groups::<1, 16>(chunk, depth, live, [left], block);
}

/// `PANELS` panels' columns of `block` for rows `0..live`, `ROWS_PER_GROUP` rows at a time:
/// `PANELS × ROWS_PER_GROUP` accumulators.
///
/// # Safety
/// As [`two_panels`], with `PANELS` panels.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn groups<const PANELS: usize, const ROWS_PER_GROUP: usize>(
    chunk: &[u16],
    depth: usize,
    live: usize,
    panels: [&[u32]; PANELS],
    block: &mut [f32],
) {
    debug_assert!(chunk.len() == ROWS * depth && block.len() == ROWS * 2 * PANEL);
    debug_assert!(panels.iter().all(|p| p.len() == depth / 2 * PANEL) && live <= ROWS);
    let pairs = depth / 2;
    let words = chunk.as_ptr().cast::<u32>();
    for first in (0..live).step_by(ROWS_PER_GROUP) {
        let rows = words.add(first * pairs);
        let mut sums = [[_mm512_setzero_ps(); PANELS]; ROWS_PER_GROUP];
        for q in 0..pairs {
            let columns: [__m512bh; PANELS] = std::array::from_fn(|p| {
                std::mem::transmute(_mm512_loadu_si512(panels[p].as_ptr().add(q * PANEL).cast()))
            });
            for (i, row) in sums.iter_mut().enumerate() {
                let word = rows.add(i * pairs + q).read_unaligned();
                let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(word as i32));
                for (sum, &column) in row.iter_mut().zip(&columns) {
                    *sum = _mm512_dpbf16_ps(*sum, a, column);
                }
            }
        }
        for (i, row) in sums.iter().enumerate() {
            let out = block.as_mut_ptr().add((first + i) * 2 * PANEL);
            for (p, &sum) in row.iter().enumerate() {
                _mm512_storeu_ps(out.add(p * PANEL), sum);
            }
        }
    }
}
