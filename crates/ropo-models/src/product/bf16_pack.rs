//! Packing the operands of the bf16 product (`bf16.rs`) with AVX-512: f32 rounded to bf16 by
//! `vcvtne2ps2bf16` (to nearest, ties to even; every CPU with either bf16 unit has it), written
//! in the layouts the AMX tiles load and `vdpbf16ps` reads. Row-major sources are read in runs
//! of 16 floats; transposed (column-major) ones are read along their contiguous dimension and
//! written with scatters.

use std::{arch::x86_64::*, mem::MaybeUninit};

/// Rows of `A` per kernel call: two AMX tiles of 16.
pub(super) const ROWS: usize = 32;
/// Columns of `B` per packed panel: one AMX tile's 16, one AVX-512 register's f32 lanes.
pub(super) const PANEL: usize = 16;

/// A read-only strided matrix: element `(row, col)` at `data[row * row_stride + col *
/// col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    /// The elements, from the matrix's first.
    pub data: &'a [f32],
    /// Elements between consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns.
    pub col_stride: usize,
}

/// Rows `first..first + 32` of `a` into `chunk`, `[32, depth]` bf16, zero past `m` and `k`.
pub(super) fn pack_rows(
    a: Strided,
    m: usize,
    k: usize,
    first: usize,
    depth: usize,
    chunk: &mut [MaybeUninit<u16>],
) {
    let chunk = zeroed(chunk);
    let rows = ROWS.min(m - first);
    // SAFETY: AVX-512 BF16 is present wherever a bf16 unit is (`bf16::unit`), and every
    // access stays inside `a` (rows < m, depths < k) and `chunk` ([32, depth]).
    unsafe {
        if a.row_stride == 1 && a.col_stride != 1 {
            rows_from_columns(a, k, first, rows, depth, chunk);
        } else if a.col_stride == 1 {
            for i in 0..rows {
                let row = &a.data[(first + i) * a.row_stride..][..k];
                convert(row, &mut chunk[i * depth..i * depth + k]);
            }
        } else {
            for i in 0..rows {
                for p in 0..k {
                    chunk[i * depth + p] =
                        bf16(a.data[(first + i) * a.row_stride + p * a.col_stride]);
                }
            }
        }
    }
}

/// Columns `first..first + 16` of `b` into `panel`, `[depth / 2, 16]` words of two bf16 of
/// consecutive depths (the even one low), zero past `n` and `k`.
pub(super) fn pack_panel(
    b: Strided,
    k: usize,
    n: usize,
    first: usize,
    panel: &mut [MaybeUninit<u32>],
) {
    let panel = zeroed(panel);
    let columns = PANEL.min(n.saturating_sub(first));
    if columns == 0 {
        return;
    }
    // SAFETY: as in `pack_rows`; columns < n, depths < k, and `panel` is [depth / 2, 16].
    unsafe {
        if b.col_stride == 1 {
            panel_from_rows(b, k, first, columns, panel);
        } else if b.row_stride == 1 {
            panel_from_columns(b, k, first, columns, panel);
        } else {
            for q in 0..k.div_ceil(2) {
                for j in 0..columns {
                    let at = |p: usize| {
                        if p < k {
                            b.data[p * b.row_stride + (first + j) * b.col_stride]
                        } else {
                            0.0
                        }
                    };
                    panel[q * PANEL + j] =
                        bf16(at(2 * q)) as u32 | (bf16(at(2 * q + 1)) as u32) << 16;
                }
            }
        }
    }
}

/// `slice` with every element set to 0, as initialised integers: the packers write into
/// fresh buffers, zeroed here one task's part at a time while it is about to be written
/// rather than all at once beforehand.
fn zeroed<T: Copy + Default>(slice: &mut [MaybeUninit<T>]) -> &mut [T] {
    slice.fill(MaybeUninit::new(T::default()));
    // SAFETY: every element was just initialised, and `MaybeUninit<T>` has `T`'s layout.
    unsafe { &mut *(slice as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// `x` rounded to bf16 as `vcvtne2ps2bf16` rounds it: to nearest, ties to even, denormals to
/// zero, NaN quiet.
fn bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        ((bits >> 16) | 0x40) as u16
    } else if bits & 0x7F80_0000 == 0 {
        ((bits >> 16) & 0x8000) as u16
    } else {
        (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
    }
}

/// A mask of the first `len` of 16 lanes.
fn lanes(len: usize) -> __mmask16 {
    if len >= 16 {
        0xFFFF
    } else {
        ((1u32 << len) - 1) as __mmask16
    }
}

/// Up to 16 floats from `src` (the rest zero), `len` of them.
#[target_feature(enable = "avx512f")]
unsafe fn load(src: *const f32, len: usize) -> __m512 {
    _mm512_maskz_loadu_ps(lanes(len), src)
}

/// Words `[lo[j], hi[j]]` as bf16 pairs, lane `j` of 16: `lo` in the low half.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn interleave(lo: __m512, hi: __m512) -> __m512i {
    // `vcvtne2ps2bf16`: bf16 lanes 0..16 from `lo`, 16..32 from `hi`; then lane 2j ← j and
    // 2j + 1 ← 16 + j.
    let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
    let order = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
        19, 3, 18, 2, 17, 1, 16, 0,
    );
    _mm512_permutexvar_epi16(order, halves)
}

/// `dst` = `src` rounded to bf16, element by element.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn convert(src: &[f32], dst: &mut [u16]) {
    let mut start = 0;
    while start + 32 <= src.len() {
        let lo = _mm512_loadu_ps(src.as_ptr().add(start));
        let hi = _mm512_loadu_ps(src.as_ptr().add(start + 16));
        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(dst.as_mut_ptr().add(start).cast(), packed);
        start += 32;
    }
    for (d, &s) in dst[start..].iter_mut().zip(&src[start..]) {
        *d = bf16(s);
    }
}

/// A chunk of rows from column-major `a` (`row_stride` 1): two depths at a time, each run of
/// 16 rows read contiguously, interleaved into words and scattered one word per row.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn rows_from_columns(
    a: Strided,
    k: usize,
    first: usize,
    rows: usize,
    depth: usize,
    chunk: &mut [u16],
) {
    let words = chunk.as_mut_ptr().cast::<u32>();
    let row_words = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32((depth / 2) as i32),
    );
    for q in 0..k.div_ceil(2) {
        for i0 in (0..rows).step_by(16) {
            let len = (rows - i0).min(16);
            let even = load(a.data.as_ptr().add(2 * q * a.col_stride + first + i0), len);
            let odd = if 2 * q + 1 < k {
                load(
                    a.data.as_ptr().add((2 * q + 1) * a.col_stride + first + i0),
                    len,
                )
            } else {
                _mm512_setzero_ps()
            };
            let base = words.add(i0 * depth / 2 + q);
            _mm512_mask_i32scatter_epi32(
                base.cast(),
                lanes(len),
                row_words,
                interleave(even, odd),
                4,
            );
        }
    }
}

/// A panel from row-major `b` (`col_stride` 1): per pair of depths, 16 columns of each row.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn panel_from_rows(b: Strided, k: usize, first: usize, columns: usize, panel: &mut [u32]) {
    for q in 0..k.div_ceil(2) {
        let even = load(b.data.as_ptr().add(2 * q * b.row_stride + first), columns);
        let odd = if 2 * q + 1 < k {
            load(
                b.data.as_ptr().add((2 * q + 1) * b.row_stride + first),
                columns,
            )
        } else {
            _mm512_setzero_ps()
        };
        _mm512_storeu_si512(
            panel.as_mut_ptr().add(q * PANEL).cast(),
            interleave(even, odd),
        );
    }
}

/// A panel from column-major `b` (`row_stride` 1): per column, 32 consecutive depths are 16
/// words already in order; they are scattered down the panel, one word per pair of depths.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn panel_from_columns(
    b: Strided,
    k: usize,
    first: usize,
    columns: usize,
    panel: &mut [u32],
) {
    let pair_words = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(PANEL as i32),
    );
    for p0 in (0..k).step_by(32) {
        let lo_len = (k - p0).min(16);
        let hi_len = (k - p0).saturating_sub(16).min(16);
        for j in 0..columns {
            let column = b.data.as_ptr().add((first + j) * b.col_stride + p0);
            let lo = load(column, lo_len);
            let hi = if hi_len > 0 {
                load(column.add(16), hi_len)
            } else {
                _mm512_setzero_ps()
            };
            let words: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            let pairs = (k - p0).div_ceil(2).min(16);
            let base = panel.as_mut_ptr().add(p0 / 2 * PANEL + j);
            _mm512_mask_i32scatter_epi32(base.cast(), lanes(pairs), pair_words, words, 4);
        }
    }
}
