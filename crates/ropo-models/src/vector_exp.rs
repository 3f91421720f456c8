//! `e^x` for `x ≤ 0` in a form loops vectorize (the CPU attention kernel's softmax, the
//! vocabulary's log-sum-exp, SiLU): the library's `expf` is a call per element, which keeps a
//! loop scalar.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// `e^x` for `x ≤ 0` without branches, library calls or float-to-integer conversions, so
/// that loops over it vectorize: Cody–Waite reduction `x = n·ln2 + r` with `|r| ≤ ln2/2`,
/// Cephes' degree-6 polynomial for `e^r` (relative error about 2e-7), and `2^n` built in the
/// exponent bits. `x < −87` gives 0; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let clamped = if x < -87.0 { -87.0 } else { x };
    let shifted = clamped * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let poly = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e_r = poly * r * r + r + 1.0;
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if x < -87.0 {
        0.0
    } else {
        e_r * two_n
    }
}

/// `exp(x[r, c] − shift[r])` for a row-major `[rows, columns]` `x` and one `shift` per row, rows
/// in parallel, in the widest vectors the CPU has (AVX-512, else AVX2, else SSE2).
pub(crate) fn exp_shifted_rows(x: &[f32], columns: usize, shift: &[f32]) -> Vec<f32> {
    assert_eq!(
        x.len(),
        shift.len() * columns,
        "x is [rows, columns], shift [rows]"
    );
    let mut out = Vec::with_capacity(x.len());
    if columns > 0 {
        out.spare_capacity_mut()[..x.len()]
            .par_chunks_mut(columns)
            .zip(x.par_chunks(columns))
            .zip(shift.par_iter())
            .for_each(|((out, row), &shift)| widest(out, row, shift));
        // SAFETY: each of the rows wrote every one of its `columns` elements.
        unsafe { out.set_len(x.len()) };
    }
    out
}

/// One row of [`exp_shifted_rows`], compiled for the widest instruction set present.
fn widest(out: &mut [MaybeUninit<f32>], row: &[f32], shift: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { row_avx512(out, row, shift) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { row_avx2(out, row, shift) };
        }
    }
    row_portable(out, row, shift)
}

/// [`row_portable`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn row_avx512(out: &mut [MaybeUninit<f32>], row: &[f32], shift: f32) {
    row_portable(out, row, shift)
}

/// [`row_portable`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_avx2(out: &mut [MaybeUninit<f32>], row: &[f32], shift: f32) {
    row_portable(out, row, shift)
}

#[inline(always)]
fn row_portable(out: &mut [MaybeUninit<f32>], row: &[f32], shift: f32) {
    for (out, &x) in out.iter_mut().zip(row) {
        out.write(exp(x - shift));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_library_within_two_ulps_relative() {
        let mut worst = 0.0f32;
        for step in 0..=870_000 {
            let x = -(step as f32) * 1e-4;
            let expected = x.exp();
            worst = worst.max((exp(x) - expected).abs() / expected);
        }
        assert!(worst < 3e-7, "largest relative error {worst}");
        assert_eq!(exp(-87.5), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn shifted_rows_match_the_library() {
        let (rows, columns) = (5, 37);
        let x: Vec<f32> = (0..rows * columns)
            .map(|i| (i as f32 * 0.37).sin() * 9.0)
            .collect();
        let shift: Vec<f32> = (0..rows).map(|r| r as f32 - 2.0 + 9.0).collect();
        let out = exp_shifted_rows(&x, columns, &shift);
        for (i, (&got, &x)) in out.iter().zip(&x).enumerate() {
            let expected = (x - shift[i / columns]).exp();
            assert!(
                (got - expected).abs() <= 3e-7 * expected,
                "{i}: {got} vs {expected}"
            );
        }
    }
}
