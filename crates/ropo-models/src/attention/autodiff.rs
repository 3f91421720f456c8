//! Attention under automatic differentiation as one graph node: the forward runs the inner
//! backend's [`AttentionBackend::masked_attention_with_lse`] and keeps its inputs, output and
//! log-sum-exp; the backward runs [`AttentionBackend::masked_attention_backward`]. burn's own
//! `Autodiff` attention would instead record scores, mask, softmax and weighted sum as separate
//! nodes, each keeping a `[batch, heads, queries, keys]` tensor.

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

use super::{rotation::RotateHalf, rotation_node, AttentionBackend, KeyMask};
use crate::float_primitive::{unwrap, wrap};

/// The attention node's backward step.
#[derive(Debug)]
struct FusedAttention;

/// What the backward needs: query, key, value, output, log-sum-exp and the mask.
type Saved<B> = (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    KeyMask,
);

impl<B: AttentionBackend> Backward<B, 3> for FusedAttention {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (query, key, value, output, lse, mask) = ops.state;
        let gradients = B::masked_attention_backward(
            wrap(query),
            wrap(key),
            wrap(value),
            wrap(output),
            wrap(lse),
            wrap(grad),
            &mask,
        );
        for (parent, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, unwrap(gradient));
            }
        }
    }
}

impl<B: AttentionBackend, C: CheckpointStrategy> AttentionBackend for Autodiff<B, C> {
    fn masked_attention(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        mask: &KeyMask,
    ) -> Tensor<Self, 4> {
        let [query, key, value] = [query, key, value].map(|t| t.into_primitive().tensor());
        let nodes = [query.node.clone(), key.node.clone(), value.node.clone()];
        let inner = |t: &FloatTensor<Self>| wrap(t.primitive.clone());
        let output = match FusedAttention
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (output, lse) =
                    B::masked_attention_with_lse(inner(&query), inner(&key), inner(&value), mask);
                let output = unwrap(output);
                let saved = (
                    query.primitive,
                    key.primitive,
                    value.primitive,
                    output.clone(),
                    unwrap(lse),
                    mask.clone(),
                );
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(unwrap(B::masked_attention(
                inner(&query),
                inner(&key),
                inner(&value),
                mask,
            ))),
        };
        wrap(output)
    }

    fn rotary(
        x: Tensor<Self, 4>,
        cos: Tensor<Self, 4>,
        sin: Tensor<Self, 4>,
        rotate_half: &RotateHalf<Self>,
    ) -> Tensor<Self, 4> {
        rotation_node::rotate_tracked(x, cos, sin, rotate_half)
    }
}
