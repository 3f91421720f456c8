//! The rotary embedding under automatic differentiation as one graph node: the forward is the
//! inner backend's [`AttentionBackend::rotary`], the backward its
//! [`AttentionBackend::rotary_backward`] (the inverse rotation), with `cos`, `sin` and `R` kept
//! as constants.

use burn::{
    backend::{
        autodiff::{
            checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
            grads::Gradients,
            ops::{Backward, Ops, OpsKind},
        },
        Autodiff,
    },
    tensor::{ops::FloatTensor, Tensor},
};

use super::{rotation::RotateHalf, AttentionBackend};
use crate::float_primitive::{unwrap, wrap};

/// The rotation node's backward step.
#[derive(Debug)]
struct Rotation;

/// What the backward needs: `cos`, `sin`, `R` and the rotated width.
type Saved<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, usize);

impl<B: AttentionBackend> Backward<B, 1> for Rotation {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad: Tensor<B, 4> = wrap(grads.consume::<B>(&ops.node));
        let (cos, sin, matrix, rotated) = ops.state;
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let rotate_half = RotateHalf {
                matrix: wrap(matrix),
                rotated,
            };
            let grad_x = B::rotary_backward(grad, wrap(cos), wrap(sin), &rotate_half);
            grads.register::<B>(node.id, unwrap(grad_x));
        }
    }
}

/// [`AttentionBackend::rotary`] on an autodiff backend: the inner backend's rotation, recorded
/// as one node whose parent is `x` (`cos`, `sin` and `R` are constants) and whose backward is
/// the inner backend's [`AttentionBackend::rotary_backward`].
pub(super) fn rotate_tracked<B: AttentionBackend, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 4>,
    cos: Tensor<Autodiff<B, C>, 4>,
    sin: Tensor<Autodiff<B, C>, 4>,
    rotate_half: &RotateHalf<Autodiff<B, C>>,
) -> Tensor<Autodiff<B, C>, 4> {
    let x = unwrap(x);
    let [cos, sin] = [cos, sin].map(|t| t.inner());
    let inner_half = RotateHalf {
        matrix: rotate_half.matrix.clone().inner(),
        rotated: rotate_half.rotated,
    };
    let inner = wrap::<B, 4>(x.primitive.clone());
    let output = match Rotation
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let output = B::rotary(inner, cos.clone(), sin.clone(), &inner_half);
            let saved = (
                unwrap(cos),
                unwrap(sin),
                unwrap(inner_half.matrix),
                inner_half.rotated,
            );
            prep.finish(saved, unwrap(output))
        }
        OpsKind::UnTracked(prep) => prep.finish(unwrap(B::rotary(inner, cos, sin, &inner_half))),
    };
    wrap(output)
}
