//! A matrix product under automatic differentiation as one graph node whose backward is two
//! products of the inner backend (`dA = dC·Bᵀ`, `dB = Aᵀ·dC`, each only when its operand is
//! tracked), so that a backend's own product, bf16 tiles included, serves both passes.

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

use super::ProductBackend;
use crate::float_primitive::{unwrap, wrap};

/// The node's backward step.
#[derive(Debug)]
struct Product;

impl<B: ProductBackend> Backward<B, 2> for Product {
    /// `a` when `b` is tracked, `b` when `a` is.
    type State = (Option<FloatTensor<B>>, Option<FloatTensor<B>>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = wrap::<B, 2>(grads.consume::<B>(&ops.node));
        let (a, b) = ops.state;
        let [a_node, b_node] = ops.parents;
        if let (Some(node), Some(b)) = (a_node, b) {
            let grad_a = B::product(grad.clone(), wrap::<B, 2>(b).transpose());
            grads.register::<B>(node.id, unwrap(grad_a));
        }
        if let (Some(node), Some(a)) = (b_node, a) {
            let grad_b = B::product(wrap::<B, 2>(a).transpose(), grad);
            grads.register::<B>(node.id, unwrap(grad_b));
        }
    }
}

impl<B: ProductBackend, C: CheckpointStrategy> ProductBackend for Autodiff<B, C> {
    fn product(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let [a, b] = [a, b].map(|t| t.into_primitive().tensor());
        let nodes = [a.node.clone(), b.node.clone()];
        let tracked = [&a, &b].map(|t| !t.node.requirement.is_none());
        let output = match Product.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let output = B::product(wrap(a.primitive.clone()), wrap(b.primitive.clone()));
                let saved = (
                    tracked[1].then_some(a.primitive),
                    tracked[0].then_some(b.primitive),
                );
                prep.finish(saved, unwrap(output))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(unwrap(B::product(wrap(a.primitive), wrap(b.primitive))))
            }
        };
        wrap(output)
    }
}
