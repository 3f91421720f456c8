//! The short loops the CPU attention kernel is made of, written over 16 independent lanes so
//! that the compiler turns them into SIMD code (a plain `sum()` of floats cannot be reordered,
//! so it would stay scalar). Each is `#[inline(always)]`, so it takes the instruction set of the
//! kernel it is inlined into (AVX-512, or AVX2 + FMA, where the CPU has them).

use crate::vector_exp::exp;

/// Lanes per accumulator: one AVX-512 register of `f32` (two AVX2 ones).
pub const LANES: usize = 16;

/// Rows processed together by the block loops, so each value loaded serves four rows.
pub const ROWS: usize = 4;

/// `Σ a[j]·b[j]` over the shorter of the two slices.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut acc = [0.0f32; LANES];
    let mut a_chunks = a.chunks_exact(LANES);
    let mut b_chunks = b.chunks_exact(LANES);
    for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
        for lane in 0..LANES {
            acc[lane] += x[lane] * y[lane];
        }
    }
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// `out[r][j] = Σ_c x[r][c]·m[c][j]` for the `ROWS` rows of `x` (each `cols` wide) and
/// `j < width` (a multiple of `LANES`); `m` and `out` have rows `stride` apart. Each tile of
/// `ROWS × LANES` results stays in registers while the `cols` products add up.
#[inline(always)]
pub fn rows_times(x: &[f32], cols: usize, m: &[f32], stride: usize, width: usize, out: &mut [f32]) {
    for tile in (0..width).step_by(LANES) {
        let mut acc = [[0.0f32; LANES]; ROWS];
        for c in 0..cols {
            let m_tile: &[f32; LANES] = m[c * stride + tile..][..LANES]
                .try_into()
                .expect("a whole tile");
            for (r, acc) in acc.iter_mut().enumerate() {
                let factor = x[r * cols + c];
                for lane in 0..LANES {
                    acc[lane] += factor * m_tile[lane];
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            out[r * stride + tile..][..LANES].copy_from_slice(acc);
        }
    }
}

/// `Σ_j a[r][j]·b[j]` for the `ROWS` rows of `a` (rows `stride` apart) over `b`'s length (a
/// multiple of `LANES`). One accumulator per row, each updated in the same lane loop, so the
/// loop vectorizes on its own rather than through the compiler's straight-line (SLP) pass,
/// which stopped doing so when unrelated code changed its inlining.
#[inline(always)]
pub fn dots(a: &[f32], stride: usize, b: &[f32]) -> [f32; ROWS] {
    let [a0, a1, a2, a3]: [&[f32]; ROWS] = std::array::from_fn(|r| &a[r * stride..][..b.len()]);
    let (mut s0, mut s1, mut s2, mut s3) =
        ([0.0f32; LANES], [0.0; LANES], [0.0; LANES], [0.0; LANES]);
    let tiles = a0
        .chunks_exact(LANES)
        .zip(a1.chunks_exact(LANES))
        .zip(a2.chunks_exact(LANES).zip(a3.chunks_exact(LANES)))
        .zip(b.chunks_exact(LANES));
    for (((t0, t1), (t2, t3)), tb) in tiles {
        for lane in 0..LANES {
            s0[lane] += t0[lane] * tb[lane];
            s1[lane] += t1[lane] * tb[lane];
            s2[lane] += t2[lane] * tb[lane];
            s3[lane] += t3[lane] * tb[lane];
        }
    }
    [lane_sum(&s0), lane_sum(&s1), lane_sum(&s2), lane_sum(&s3)]
}

/// The sum of one accumulator's lanes, pairwise.
#[inline(always)]
fn lane_sum(acc: &[f32; LANES]) -> f32 {
    let mut half = *acc;
    let mut width = LANES / 2;
    while width > 0 {
        for lane in 0..width {
            half[lane] += half[lane + width];
        }
        width /= 2;
    }
    half[0]
}

/// `m[c][j] += Σ_r x[r][c]·y[r][j]` for `c < cols` and `j < width`: `x` is `ROWS` rows of
/// `cols`, `y` `ROWS` rows and `m` `cols` rows, both `stride` apart.
#[inline(always)]
pub fn add_outer(x: &[f32], cols: usize, y: &[f32], stride: usize, width: usize, m: &mut [f32]) {
    let [y0, y1, y2, y3]: [&[f32]; ROWS] =
        std::array::from_fn(|r| &y[r * stride..r * stride + width]);
    for c in 0..cols {
        let [x0, x1, x2, x3]: [f32; ROWS] = std::array::from_fn(|r| x[r * cols + c]);
        let row = &mut m[c * stride..c * stride + width];
        for ((((m, a), b), d), e) in row.iter_mut().zip(y0).zip(y1).zip(y2).zip(y3) {
            *m += x0 * a + x1 * b + x2 * d + x3 * e;
        }
    }
}

/// The largest element (`-∞` for an empty slice).
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for x in &mut chunks {
        for lane in 0..LANES {
            acc[lane] = if x[lane] > acc[lane] {
                x[lane]
            } else {
                acc[lane]
            };
        }
    }
    let lanes = acc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    chunks.remainder().iter().fold(lanes, |m, &x| m.max(x))
}

/// Replaces every `x` by `e^(x − shift)`. Inputs at or below `shift − 87` (masked scores are
/// `−∞`) become exactly 0.
#[inline(always)]
pub fn exp_shifted(xs: &mut [f32], shift: f32) {
    for x in xs.iter_mut() {
        *x = exp(*x - shift);
    }
}

/// `Σ x`.
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for x in &mut chunks {
        for lane in 0..LANES {
            acc[lane] += x[lane];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_loops_equal_their_plain_definitions() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-5);
        assert_eq!(max(&a), a.iter().cloned().fold(f32::NEG_INFINITY, f32::max));
        let (stride, width) = (40, 32);
        let x: Vec<f32> = (0..ROWS * 3).map(|i| i as f32 * 0.5 - 2.0).collect();
        let m: Vec<f32> = (0..3 * stride).map(|i| (i as f32 * 0.3).cos()).collect();
        let mut out = vec![0.0; ROWS * stride];
        rows_times(&x, 3, &m, stride, width, &mut out);
        let mut acc = vec![0.0; 3 * stride];
        add_outer(&x, 3, &out, stride, width, &mut acc);
        let row_dots = dots(&out, stride, &m[..width]);
        for r in 0..ROWS {
            for j in 0..width {
                let want: f32 = (0..3).map(|c| x[r * 3 + c] * m[c * stride + j]).sum();
                assert!((out[r * stride + j] - want).abs() < 1e-5);
            }
            let want: f32 = (0..width).map(|j| out[r * stride + j] * m[j]).sum();
            assert!((row_dots[r] - want).abs() < 1e-4 * want.abs().max(1.0));
        }
        for c in 0..3 {
            for j in 0..width {
                let want: f32 = (0..ROWS).map(|r| x[r * 3 + c] * out[r * stride + j]).sum();
                assert!((acc[c * stride + j] - want).abs() < 1e-4 * want.abs().max(1.0));
            }
        }
        let mut e = a.clone();
        exp_shifted(&mut e, 0.5);
        let expected: f32 = a.iter().map(|x| (x - 0.5).exp()).sum();
        assert!((sum(&e) - expected).abs() < 1e-5 * expected);
    }
}
