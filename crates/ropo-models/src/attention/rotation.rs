//! The rotary embedding's rotate-half map and its burn tensor form, forward and backward.
//!
//! burn's own backward of `x · R` computes `grad · Rᵀ` through a transposed view of `R`. On
//! wgpu (Mesa's lavapipe, burn 0.21) the matrix-product kernel that burn's autotune picks for a
//! `[m, 8] · [8, 8]ᵀ` product with m around 2,048 returns wrong values in all but one row,
//! which made stories260K's query gradients (head width 8) up to 13% wrong. `R` here is
//! antisymmetric (`Rᵀ = −R`), so the backward is `grad·cos − (grad·sin)·R` with `R` as stored:
//! no transposed operand.

use burn::tensor::{backend::Backend, Tensor, TensorData};

/// The "rotate half" map of heads `head_dim` wide whose first `rotated` dimensions turn:
/// `(x·R)[i] = −x[i + rotated/2]` for `i < rotated/2`, `x[i − rotated/2]` for `i < rotated`, 0
/// beyond. Kept both as the `[head_dim, head_dim]` matrix `R` of 0 and ±1, for backends that
/// apply it as a matrix product, and as `rotated`, for kernels that apply it by index.
#[derive(Debug, Clone)]
pub struct RotateHalf<B: Backend> {
    /// `R`, `[head_dim, head_dim]`.
    pub matrix: Tensor<B, 2>,
    /// How many leading dimensions of each head turn (even).
    pub rotated: usize,
}

impl<B: Backend> RotateHalf<B> {
    /// The map for heads `head_dim` wide whose first `rotated` (even) dimensions turn.
    pub fn new(head_dim: usize, rotated: usize, device: &B::Device) -> Self {
        let half = rotated / 2;
        let mut matrix = vec![0.0f32; head_dim * head_dim];
        for i in 0..half {
            matrix[(i + half) * head_dim + i] = -1.0;
            matrix[i * head_dim + i + half] = 1.0;
        }
        Self {
            matrix: Tensor::from_data(TensorData::new(matrix, [head_dim, head_dim]), device),
            rotated,
        }
    }
}

/// `x·cos + (x·R)·sin` over the last dimension of `x` (`[batch, seq, heads, head_dim]`), with
/// `cos` and `sin` shaped like `x`, in burn tensor operations.
pub(super) fn rotate<B: Backend>(
    x: Tensor<B, 4>,
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    rotate_half: &RotateHalf<B>,
) -> Tensor<B, 4> {
    x.clone() * cos + turn(x, rotate_half.matrix.clone()) * sin
}

/// The gradient of [`rotate`]'s `x` from that of its output, `grad`: `grad·cos − (grad·sin)·R`
/// (the inverse rotation, as `Rᵀ = −R`), in burn tensor operations.
pub(super) fn rotate_back<B: Backend>(
    grad: Tensor<B, 4>,
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    rotate_half: &RotateHalf<B>,
) -> Tensor<B, 4> {
    grad.clone() * cos - turn(grad * sin, rotate_half.matrix.clone())
}

/// `x·R` over the last dimension of `x`.
fn turn<B: Backend>(x: Tensor<B, 4>, matrix: Tensor<B, 2>) -> Tensor<B, 4> {
    let [batch, seq, heads, head_dim] = x.dims();
    x.reshape([batch * seq * heads, head_dim])
        .matmul(matrix)
        .reshape([batch, seq, heads, head_dim])
}
