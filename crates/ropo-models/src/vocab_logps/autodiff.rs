//! Target log-probs under automatic differentiation as one graph node: the forward keeps the
//! hidden states, the head weight, the targets and each row's log-sum-exp (`[rows]`), not the
//! `[rows, vocab]` logits; the backward recomputes the logits block by block
//! ([`VocabBackend::target_logps_backward`]). For a head that does not train (LoRA's) the
//! forward keeps each log-prob's gradient with respect to its hidden row instead
//! ([`VocabBackend::target_logps_with_hidden_gradient`]), and the backward makes no pass over
//! the vocabulary.

use burn::{
    backend::{
        autodiff::{
            checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
            grads::Gradients,
            ops::{Backward, Ops, OpsKind},
        },
        Autodiff,
    },
    tensor::{
        ops::{FloatTensor, IntTensor},
        Int, Tensor,
    },
};

use super::VocabBackend;
use crate::float_primitive::{unwrap, wrap};

/// The node's backward step.
#[derive(Debug)]
struct TargetLogps;

/// What the backward needs: hidden states, head weight, targets, log-sum-exp, block rows.
type Saved<B> = (
    FloatTensor<B>,
    FloatTensor<B>,
    IntTensor<B>,
    FloatTensor<B>,
    usize,
);

impl<B: VocabBackend> Backward<B, 2> for TargetLogps {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (hidden, weight, targets, lse, block) = ops.state;
        let [hidden_node, weight_node] = ops.parents;
        let (grad_hidden, grad_weight) = B::target_logps_backward(
            wrap(hidden),
            wrap(weight),
            Tensor::<B, 1, Int>::from_primitive(targets),
            wrap(lse),
            wrap(grad),
            block,
            weight_node.is_some(),
        );
        if let Some(node) = hidden_node {
            grads.register::<B>(node.id, unwrap(grad_hidden));
        }
        if let (Some(node), Some(grad)) = (weight_node, grad_weight) {
            grads.register::<B>(node.id, unwrap(grad));
        }
    }
}

/// The backward step of a head that does not train, whose forward kept each log-prob's
/// gradient with respect to its hidden row
/// ([`VocabBackend::target_logps_with_hidden_gradient`]).
#[derive(Debug)]
struct FrozenHeadLogps;

impl<B: VocabBackend> Backward<B, 1> for FrozenHeadLogps {
    /// The log-probs' gradients with respect to the hidden rows, `[rows, d_model]`.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = wrap::<B, 1>(grads.consume::<B>(&ops.node));
        let [hidden_node] = ops.parents;
        if let Some(node) = hidden_node {
            let grad_hidden = wrap::<B, 2>(ops.state) * grad.unsqueeze_dim(1);
            grads.register::<B>(node.id, unwrap(grad_hidden));
        }
    }
}

impl<B: VocabBackend, C: CheckpointStrategy> VocabBackend for Autodiff<B, C> {
    fn target_logps(
        hidden: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        block: usize,
    ) -> Tensor<Self, 1> {
        let [hidden, weight] = [hidden, weight].map(|t| t.into_primitive().tensor());
        let targets = targets.inner().into_primitive();
        let inner_targets = || Tensor::<B, 1, Int>::from_primitive(targets.clone());
        if weight.node.requirement.is_none() {
            let node = [hidden.node.clone()];
            let output = match FrozenHeadLogps
                .prepare::<C>(node)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (logps, gradient) = B::target_logps_with_hidden_gradient(
                        wrap(hidden.primitive),
                        wrap(weight.primitive),
                        inner_targets(),
                        block,
                    );
                    prep.finish(unwrap(gradient), unwrap(logps))
                }
                OpsKind::UnTracked(prep) => prep.finish(unwrap(B::target_logps(
                    wrap(hidden.primitive),
                    wrap(weight.primitive),
                    inner_targets(),
                    block,
                ))),
            };
            return wrap(output);
        }
        let nodes = [hidden.node.clone(), weight.node.clone()];
        let output = match TargetLogps.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (logps, lse) = B::target_logps_with_lse(
                    wrap(hidden.primitive.clone()),
                    wrap(weight.primitive.clone()),
                    inner_targets(),
                    block,
                );
                let saved = (
                    hidden.primitive,
                    weight.primitive,
                    targets,
                    unwrap(lse),
                    block,
                );
                prep.finish(saved, unwrap(logps))
            }
            OpsKind::UnTracked(prep) => prep.finish(unwrap(B::target_logps(
                wrap(hidden.primitive),
                wrap(weight.primitive),
                inner_targets(),
                block,
            ))),
        };
        wrap(output)
    }
}
