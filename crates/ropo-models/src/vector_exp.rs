//! `e^x` for `x ≤ 0` in a form loops vectorize, and the elementwise maps built on it (the CPU
//! attention kernel's softmax, the vocabulary's log-sum-exp, SiLU, exact GELU): the library's
//! `expf` and `erff` are a call per element, which keeps a loop scalar.

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
            .for_each(|((out, row), &shift)| {
                widest(
                    #[inline(always)]
                    || {
                        for (out, &x) in out.iter_mut().zip(row) {
                            out.write(exp(x - shift));
                        }
                    },
                )
            });
        // SAFETY: each of the rows wrote every one of its `columns` elements.
        unsafe { out.set_len(x.len()) };
    }
    out
}

/// Elements per parallel task of the elementwise maps below.
const TASK: usize = 1 << 14;

/// `σ(x)` from `e^{−|x|}`, which never overflows.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let denominator = 1.0 / (1.0 + e);
    if x >= 0.0 {
        denominator
    } else {
        e * denominator
    }
}

/// `silu(gate) ∘ up` (`gate · σ(gate) · up`) elementwise, in parallel and in the widest vectors
/// the CPU has.
pub(crate) fn silu_gated(gate: &[f32], up: &[f32]) -> Vec<f32> {
    map_pairs(
        gate,
        up,
        #[inline(always)]
        |g, u| g * sigmoid(g) * u,
    )
}

/// `f(a[i], b[i])` for every `i` of two slices of one length, in parallel chunks of `TASK`,
/// each compiled for the widest vectors the CPU has (`f` must be `#[inline(always)]` for that,
/// as [`widest`] says).
#[inline(always)]
fn map_pairs(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "both inputs are the same shape");
    let mut out = Vec::with_capacity(a.len());
    out.spare_capacity_mut()[..a.len()]
        .par_chunks_mut(TASK)
        .zip(a.par_chunks(TASK).zip(b.par_chunks(TASK)))
        .for_each(|(out, (a, b))| {
            widest(
                #[inline(always)]
                || {
                    for ((out, &a), &b) in out.iter_mut().zip(a).zip(b) {
                        out.write(f(a, b));
                    }
                },
            )
        });
    // SAFETY: every task wrote each element of its chunk.
    unsafe { out.set_len(a.len()) };
    out
}

/// The gradients of `gate` and `up` from `grad`, the gradient of `silu(gate) ∘ up`:
/// `grad · up · σ · (1 + gate · (1 − σ))` and `grad · gate · σ`, `σ = σ(gate)`.
pub(crate) fn silu_gated_backward(gate: &[f32], up: &[f32], grad: &[f32]) -> [Vec<f32>; 2] {
    assert!(
        gate.len() == up.len() && up.len() == grad.len(),
        "one shape for all three"
    );
    let (mut grad_gate, mut grad_up) = (
        Vec::with_capacity(gate.len()),
        Vec::with_capacity(gate.len()),
    );
    grad_gate.spare_capacity_mut()[..gate.len()]
        .par_chunks_mut(TASK)
        .zip(grad_up.spare_capacity_mut()[..gate.len()].par_chunks_mut(TASK))
        .zip(
            gate.par_chunks(TASK)
                .zip(up.par_chunks(TASK))
                .zip(grad.par_chunks(TASK)),
        )
        .for_each(|((grad_gate, grad_up), ((gate, up), grad))| {
            widest(
                #[inline(always)]
                || {
                    let outputs = grad_gate.iter_mut().zip(grad_up.iter_mut());
                    for ((dg, du), ((&g, &u), &d)) in outputs.zip(gate.iter().zip(up).zip(grad)) {
                        let s = sigmoid(g);
                        dg.write(d * u * s * (1.0 + g * (1.0 - s)));
                        du.write(d * g * s);
                    }
                },
            )
        });
    // SAFETY: every task wrote each element of its chunks.
    unsafe {
        grad_gate.set_len(gate.len());
        grad_up.set_len(gate.len());
    }
    [grad_gate, grad_up]
}

/// `1 + erf(x/√2)` (twice the standard normal CDF), from `erfc(|x|/√2)` so that it keeps its
/// relative precision in the far negative tail. `erfc(z)` is Numerical Recipes' Chebyshev fit
/// `t · e^{−z² + P(t)}`, `t = 1 / (1 + z/2)`, relative error below 1.2e-7 for every `z ≥ 0`;
/// `e^{−z²}` comes from [`gaussian_times_exp`].
#[inline(always)]
fn twice_normal_cdf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.5 * std::f32::consts::FRAC_1_SQRT_2 * a);
    let p = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204
                                + t * (1.488_515_9 + t * (-0.822_152_2 + t * 0.170_872_77))))))));
    let erfc = t * gaussian_times_exp(a, p);
    if x >= 0.0 {
        2.0 - erfc
    } else {
        erfc
    }
}

/// `e^{−a²/2 + p}` for `a ≥ 0` without rounding `a²`: `e^{−s²/2} · e^{p − (a−s)(a+s)/2}`, `s` the
/// leading 12 bits of `a`, so that `s²` is exact. (Rounding `a²` near 170 would cost up to 1e-5
/// of relative precision.)
#[inline(always)]
fn gaussian_times_exp(a: f32, p: f32) -> f32 {
    let s = f32::from_bits(a.to_bits() & 0xffff_f000);
    exp(-0.5 * s * s) * exp(p - 0.5 * (a - s) * (a + s))
}

/// Exact GELU, `x/2 · (1 + erf(x/√2))`, elementwise, in parallel and in the widest vectors the
/// CPU has.
pub(crate) fn erf_gelu(x: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    out.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(TASK)
        .zip(x.par_chunks(TASK))
        .for_each(|(out, x)| {
            widest(
                #[inline(always)]
                || {
                    for (out, &x) in out.iter_mut().zip(x) {
                        out.write(0.5 * x * twice_normal_cdf(x));
                    }
                },
            )
        });
    // SAFETY: every task wrote each element of its chunk.
    unsafe { out.set_len(x.len()) };
    out
}

/// The gradient of `x` from `grad`, the gradient of [`erf_gelu`]'s output: `grad · (Φ(x) + x ·
/// φ(x))`, `Φ` and `φ` the standard normal CDF and density.
pub(crate) fn erf_gelu_backward(x: &[f32], grad: &[f32]) -> Vec<f32> {
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    map_pairs(
        x,
        grad,
        #[inline(always)]
        |x, d| {
            let density = FRAC_1_SQRT_2PI * gaussian_times_exp(x.abs(), 0.0);
            d * (0.5 * twice_normal_cdf(x) + x * density)
        },
    )
}

/// Runs `body` compiled for the widest instruction set present: AVX-512, else AVX2 + FMA, else
/// the build's baseline. `body` must be an `#[inline(always)]` closure: one the compiler does
/// not inline into the wider function stays compiled for the baseline (SSE2).
#[inline(always)]
pub(crate) fn widest(body: impl FnOnce()) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { on_avx512(body) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { on_avx2(body) };
        }
    }
    body()
}

/// `body` compiled for AVX-512 (it is inlined here).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn on_avx512(body: impl FnOnce()) {
    body()
}

/// `body` compiled for AVX2 + FMA (it is inlined here).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn on_avx2(body: impl FnOnce()) {
    body()
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
    fn silu_gated_and_its_gradients_match_the_library_and_finite_differences() {
        let n = 40_000;
        let gate: Vec<f32> = (0..n).map(|i| (i as f32 * 0.013).sin() * 30.0).collect();
        let up: Vec<f32> = (0..n).map(|i| (i as f32 * 0.007).cos() * 2.0).collect();
        let grad: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32 * 0.1).collect();
        let out = silu_gated(&gate, &up);
        let [grad_gate, grad_up] = silu_gated_backward(&gate, &up, &grad);
        let silu = |g: f64| g / (1.0 + (-g).exp());
        for i in 0..n {
            let (g, u, d) = (gate[i] as f64, up[i] as f64, grad[i] as f64);
            let expected = silu(g) * u;
            assert!(
                (out[i] as f64 - expected).abs() <= 1e-6 * (1.0 + expected.abs()),
                "{i}"
            );
            assert!((grad_up[i] as f64 - d * silu(g)).abs() <= 1e-6 * (1.0 + silu(g).abs() * d));
            let h = 1e-4;
            let slope = (silu(g + h) - silu(g - h)) / (2.0 * h);
            let expected = d * u * slope;
            assert!(
                (grad_gate[i] as f64 - expected).abs() <= 1e-5 * (1.0 + expected.abs()),
                "{i}: {} vs {expected}",
                grad_gate[i]
            );
        }
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

    #[test]
    fn erf_gelu_and_its_gradient_match_f64_within_a_few_ulps() {
        let x: Vec<f32> = (-240_000..=240_000).map(|i| i as f32 * 5e-5).collect();
        let grad: Vec<f32> = (0..x.len()).map(|i| 1.0 + (i % 5) as f32 * 0.25).collect();
        let out = erf_gelu(&x);
        let grad_x = erf_gelu_backward(&x, &grad);
        let (mut worst_out, mut worst_grad) = (0.0f64, 0.0f64);
        for i in 0..x.len() {
            let (v, d) = (x[i] as f64, grad[i] as f64);
            let cdf = 0.5 * libm::erfc(-v / std::f64::consts::SQRT_2);
            let density = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let (want_out, want_grad) = (v * cdf, d * (cdf + v * density));
            let relative = |got: f32, want: f64| {
                (got as f64 - want).abs() / want.abs().max(f32::MIN_POSITIVE as f64)
            };
            worst_out = worst_out.max(relative(out[i], want_out));
            // The gradient crosses zero near x = −0.75: its error is measured against the size
            // of its two terms.
            let scale = d * (cdf + v.abs() * density);
            worst_grad = worst_grad.max((grad_x[i] as f64 - want_grad).abs() / scale);
        }
        assert!(worst_out < 2e-6, "GELU: largest relative error {worst_out}");
        assert!(worst_grad < 2e-6, "gradient: largest error {worst_grad}");
        assert_eq!(erf_gelu(&[0.0])[0], 0.0);
        assert!(erf_gelu(&[f32::NAN])[0].is_nan());
    }
}
