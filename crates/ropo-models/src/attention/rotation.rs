//! The rotary embedding under automatic differentiation as one graph node, so that its
//! backward multiplies by the rotation matrix itself rather than by a transposed view of it.
//!
//! burn's own backward of `x · R` computes `grad · Rᵀ` through a transposed view of `R`. On
//! wgpu (Mesa's lavapipe, burn 0.21) the matrix-product kernel that burn's autotune picks for a
//! `[m, 8] · [8, 8]ᵀ` product with m around 2,048 returns wrong values in all but one row,
//! which made stories260K's query gradients (head width 8) up to 13% wrong. `R` here is
//! antisymmetric (`Rᵀ = −R`, see `Rotary::angles`), so the backward is `grad·cos − (grad·sin)·R`
//! with `R` as stored: no transposed operand.

use burn::{
    backend::{
        autodiff::{
            checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
            grads::Gradients,
            ops::{Backward, Ops, OpsKind},
        },
        Autodiff,
    },
    tensor::{backend::Backend, ops::FloatTensor, Tensor},
};

use crate::float_primitive::{unwrap, wrap};

/// `x·cos + (x·R)·sin` over the last dimension of `x` (`[batch, seq, heads, head_dim]`), with
/// `cos` and `sin` shaped like `x` and `R` `[head_dim, head_dim]`.
pub(super) fn rotate<B: Backend>(
    x: Tensor<B, 4>,
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    rotate_half: Tensor<B, 2>,
) -> Tensor<B, 4> {
    x.clone() * cos + turn(x, rotate_half) * sin
}

/// `x·R` over the last dimension of `x`.
fn turn<B: Backend>(x: Tensor<B, 4>, rotate_half: Tensor<B, 2>) -> Tensor<B, 4> {
    let [batch, seq, heads, head_dim] = x.dims();
    x.reshape([batch * seq * heads, head_dim])
        .matmul(rotate_half)
        .reshape([batch, seq, heads, head_dim])
}

/// The rotation node's backward step.
#[derive(Debug)]
struct Rotation;

/// What the backward needs: `cos`, `sin` and `R`.
type Saved<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

impl<B: Backend> Backward<B, 1> for Rotation {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad: Tensor<B, 4> = wrap(grads.consume::<B>(&ops.node));
        let (cos, sin, rotate_half) = ops.state;
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let turned = turn(grad.clone() * wrap::<B, 4>(sin), wrap(rotate_half));
            let grad_x = grad * wrap::<B, 4>(cos) - turned;
            grads.register::<B>(node.id, unwrap(grad_x));
        }
    }
}

/// [`rotate`] on an autodiff backend, recorded as one node whose parent is `x` (`cos`, `sin`
/// and `R` are constants).
pub(super) fn rotate_tracked<B: Backend, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 4>,
    cos: Tensor<Autodiff<B, C>, 4>,
    sin: Tensor<Autodiff<B, C>, 4>,
    rotate_half: Tensor<Autodiff<B, C>, 2>,
) -> Tensor<Autodiff<B, C>, 4> {
    let x = unwrap(x);
    let [cos, sin] = [cos, sin].map(|t| t.inner());
    let rotate_half = rotate_half.inner();
    let inner = wrap::<B, 4>(x.primitive.clone());
    let output = match Rotation
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let output = rotate(inner, cos.clone(), sin.clone(), rotate_half.clone());
            let saved = (unwrap(cos), unwrap(sin), unwrap(rotate_half));
            prep.finish(saved, unwrap(output))
        }
        OpsKind::UnTracked(prep) => prep.finish(unwrap(rotate(inner, cos, sin, rotate_half))),
    };
    wrap(output)
}
