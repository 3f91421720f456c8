//! `silu(gate) ∘ up` and exact GELU under automatic differentiation, each as one graph node
//! that keeps its inputs and whose backward is the inner backend's
//! [`ActivationBackend::silu_gated_backward`] or [`ActivationBackend::erf_gelu_backward`].

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

use super::ActivationBackend;
use crate::float_primitive::{unwrap, wrap};

/// The node's backward step.
#[derive(Debug)]
struct SiluGated;

impl<B: ActivationBackend> Backward<B, 2> for SiluGated {
    /// `gate` and `up`.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = wrap::<B, 1>(grads.consume::<B>(&ops.node));
        let (gate, up) = ops.state;
        let (grad_gate, grad_up) = B::silu_gated_backward(wrap(gate), wrap(up), grad);
        let [gate_node, up_node] = ops.parents;
        if let Some(node) = gate_node {
            grads.register::<B>(node.id, unwrap(grad_gate));
        }
        if let Some(node) = up_node {
            grads.register::<B>(node.id, unwrap(grad_up));
        }
    }
}

/// The exact GELU node's backward step.
#[derive(Debug)]
struct ErfGelu;

impl<B: ActivationBackend> Backward<B, 1> for ErfGelu {
    /// `x`.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = wrap::<B, 1>(grads.consume::<B>(&ops.node));
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let grad_x = B::erf_gelu_backward(wrap(ops.state), grad);
            grads.register::<B>(node.id, unwrap(grad_x));
        }
    }
}

impl<B: ActivationBackend, C: CheckpointStrategy> ActivationBackend for Autodiff<B, C> {
    fn silu_gated(gate: Tensor<Self, 1>, up: Tensor<Self, 1>) -> Tensor<Self, 1> {
        let [gate, up] = [gate, up].map(|t| t.into_primitive().tensor());
        let nodes = [gate.node.clone(), up.node.clone()];
        let output = match SiluGated.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let output =
                    B::silu_gated(wrap(gate.primitive.clone()), wrap(up.primitive.clone()));
                prep.finish((gate.primitive, up.primitive), unwrap(output))
            }
            OpsKind::UnTracked(prep) => prep.finish(unwrap(B::silu_gated(
                wrap(gate.primitive),
                wrap(up.primitive),
            ))),
        };
        wrap(output)
    }

    fn erf_gelu(x: Tensor<Self, 1>) -> Tensor<Self, 1> {
        let x = x.into_primitive().tensor();
        let output = match ErfGelu
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = B::erf_gelu(wrap(x.primitive.clone()));
                prep.finish(x.primitive, unwrap(output))
            }
            OpsKind::UnTracked(prep) => prep.finish(unwrap(B::erf_gelu(wrap(x.primitive)))),
        };
        wrap(output)
    }
}
