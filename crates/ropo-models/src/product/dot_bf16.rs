//! The bf16 product's kernel on AVX-512 BF16 dot products (`vdpbf16ps`), for x86-64 CPUs that
//! have them without AMX tiles (AMD Zen 4 and later, Intel Cooper Lake): a chunk of 32 packed
//! rows times two panels into a `[32, 32]` block (`bf16.rs` packs and drives).
//!
//! A panel's row of 16 words (two bf16 of consecutive depths per column) is the pair layout
//! `vdpbf16ps` reads, so one instruction adds `a[r, 2q]·b[2q, j] + a[r, 2q + 1]·b[2q + 1, j]`
//! to 16 columns' f32 sums, `a`'s word broadcast to every lane. Eight rows at a time keep their
//! 16 sums (8 rows × 2 panels) in registers over the whole depth.

use std::arch::x86_64::*;

use super::bf16_pack::{PANEL, ROWS};

/// Rows per pass over the depth: 8 rows × 2 panels = 16 accumulator registers of the 32.
const GROUP: usize = 8;

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
/// a positive multiple of 32 and `live` at most 32.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn kernel(
    chunk: &[u16],
    depth: usize,
    live: usize,
    left: &[u32],
    right: &[u32],
    block: &mut [f32],
) {
    debug_assert!(chunk.len() == ROWS * depth && left.len() == depth / 2 * PANEL);
    debug_assert!(right.len() == left.len() && block.len() == ROWS * 2 * PANEL);
    debug_assert!(live <= ROWS);
    let pairs = depth / 2;
    let words = chunk.as_ptr().cast::<u32>();
    for first in (0..live).step_by(GROUP) {
        let rows = words.add(first * pairs);
        let mut sums = [[_mm512_setzero_ps(); 2]; GROUP];
        for q in 0..pairs {
            let l: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(left.as_ptr().add(q * PANEL).cast()));
            let r: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(right.as_ptr().add(q * PANEL).cast()));
            for (i, sum) in sums.iter_mut().enumerate() {
                let word = rows.add(i * pairs + q).read_unaligned();
                let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(word as i32));
                sum[0] = _mm512_dpbf16_ps(sum[0], a, l);
                sum[1] = _mm512_dpbf16_ps(sum[1], a, r);
            }
        }
        for (i, sum) in sums.iter().enumerate() {
            let out = block.as_mut_ptr().add((first + i) * 2 * PANEL);
            _mm512_storeu_ps(out, sum[0]);
            _mm512_storeu_ps(out.add(PANEL), sum[1]);
        }
    }
}
