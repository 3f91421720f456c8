//! The rotary embedding on the CPU by index, forward and backward, in one pass over the heads:
//! where burn's tensor form multiplies every head row by the `[head_dim, head_dim]` rotate-half
//! matrix (64 multiply-adds per element at head width 64) and makes three more elementwise
//! passes, each strided when `x` is a view into a fused projection. Same sums in the same
//! order as the tensor form, so the same values.

use rayon::prelude::*;

/// Head rows per parallel task.
const ROWS_PER_TASK: usize = 64;

/// A `[batch, seq, heads, head_dim]` tensor read in place: its storage, the first element's
/// index and the strides of its first three dimensions (the last is contiguous).
pub(super) struct HeadRows<'a> {
    /// The storage the tensor views.
    pub data: &'a [f32],
    /// Index of the tensor's first element in `data`.
    pub offset: usize,
    /// Strides of `batch`, `seq` and `heads`, in elements.
    pub strides: [usize; 3],
}

/// Which map to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// The rotation, `x·cos + (x·R)·sin`.
    Forward,
    /// Its transpose, applied to a gradient: `g·cos − (g·sin)·R`.
    Back,
}

/// `x` rotated (or rotated back) over its first `rotated` dimensions of each head, `dims =
/// [batch, seq, heads, head_dim]`; `cos` and `sin` row-major of that shape. Returns the result
/// row-major.
pub(super) fn rotate(
    x: HeadRows<'_>,
    cos: &[f32],
    sin: &[f32],
    dims: [usize; 4],
    rotated: usize,
    direction: Direction,
) -> Vec<f32> {
    let [batch, seq, heads, head_dim] = dims;
    let len = batch * seq * heads * head_dim;
    assert!(
        cos.len() == len && sin.len() == len,
        "cos and sin are [batch, seq, heads, head_dim]"
    );
    assert!(
        rotated.is_multiple_of(2) && rotated <= head_dim,
        "an even rotated width within the head"
    );
    let mut out = vec![0.0f32; len];
    if len == 0 {
        return out;
    }
    let row_start = |row: usize| {
        let (position, head) = (row / heads, row % heads);
        let (b, s) = (position / seq, position % seq);
        x.offset + b * x.strides[0] + s * x.strides[1] + head * x.strides[2]
    };
    out.par_chunks_mut(head_dim * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, out)| {
            for (i, out) in out.chunks_exact_mut(head_dim).enumerate() {
                let row = task * ROWS_PER_TASK + i;
                let start = row_start(row);
                let x = &x.data[start..start + head_dim];
                let span = row * head_dim..(row + 1) * head_dim;
                let (cos, sin) = (&cos[span.clone()], &sin[span]);
                rotate_row(x, cos, sin, rotated, direction, out);
            }
        });
    out
}

/// One head row: `out = x·cos + (x·R)·sin` forward, `x·cos − (x·sin)·R` back, where
/// `(v·R)[i] = −v[i + half]` below `half`, `v[i − half]` below `rotated`, 0 beyond.
fn rotate_row(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    rotated: usize,
    direction: Direction,
    out: &mut [f32],
) {
    let half = rotated / 2;
    for i in 0..half {
        let j = i + half;
        (out[i], out[j]) = match direction {
            Direction::Forward => (x[i] * cos[i] - x[j] * sin[i], x[j] * cos[j] + x[i] * sin[j]),
            Direction::Back => (x[i] * cos[i] + x[j] * sin[j], x[j] * cos[j] - x[i] * sin[i]),
        };
    }
    for i in rotated..x.len() {
        out[i] = x[i] * cos[i];
    }
}
