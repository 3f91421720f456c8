//! Log-probabilities of target tokens over a large vocabulary without the whole
//! `[rows, vocab]` logits tensor: the output head, the log-sum-exp and the pick of each target
//! run over blocks of rows, and under automatic differentiation the backward recomputes each
//! block's logits (see `vocab_logps/autodiff.rs`) instead of keeping logits, log-softmax and
//! their gradients for every position at once.
//!
//! At 50k–150k vocabularies those tensors are the largest of a training step (`[8, 256,
//! 50304]` floats is 412 MB per copy); here at most one block of `[rows, vocab]` exists at a
//! time.

mod autodiff;

use burn::tensor::{backend::Backend, IndexingUpdateOp, Int, Tensor};

/// Elements of one block's `[rows, vocab]` logits (64 MiB of f32): enough rows for the matrix
/// products to run at full speed, few enough that the block is small beside the model.
const BLOCK_ELEMENTS: usize = 1 << 24;

/// Rows per block for a vocabulary of `vocab` tokens (at least one).
pub fn block_rows(vocab: usize) -> usize {
    (BLOCK_ELEMENTS / vocab.max(1)).max(1)
}

/// A burn backend that scores target tokens block by block. The provided methods are built
/// from burn tensor operations; `Autodiff` overrides the forward to record one graph node whose
/// backward is [`VocabBackend::target_logps_backward`].
pub trait VocabBackend: Backend {
    /// `log softmax(hidden · weight)[row, targets[row]]` for every row, `[rows]`, computed
    /// `block` rows at a time. `hidden`: `[rows, d_model]`; `weight`: the output head
    /// `[d_model, vocab]`; `targets`: `[rows]`.
    fn target_logps(
        hidden: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        block: usize,
    ) -> Tensor<Self, 1> {
        target_logps_with_lse(hidden, weight, targets, block).0
    }

    /// The gradients of `hidden` (`[rows, d_model]`) and `weight` (`[d_model, vocab]`) from
    /// the gradient of the log-probs, `grad` (`[rows]`), and the forward's log-sum-exp `lse`
    /// (`[rows]`): per block, `d logits = grad · (one_hot(target) − softmax)`.
    fn target_logps_backward(
        hidden: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        lse: Tensor<Self, 1>,
        grad: Tensor<Self, 1>,
        block: usize,
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>) {
        let rows = hidden.dims()[0];
        let mut grad_hidden = Vec::new();
        let mut grad_weight = weight.zeros_like();
        for start in (0..rows).step_by(block.max(1)) {
            let len = block.min(rows - start);
            let h = hidden.clone().narrow(0, start, len);
            let g = grad.clone().narrow(0, start, len).unsqueeze_dim::<2>(1);
            let target = targets.clone().narrow(0, start, len).unsqueeze_dim::<2>(1);
            let lse = lse.clone().narrow(0, start, len).unsqueeze_dim::<2>(1);
            let probs = (h.clone().matmul(weight.clone()) - lse).exp();
            let grad_logits =
                (probs * g.clone().neg()).scatter(1, target, g, IndexingUpdateOp::Add);
            grad_hidden.push(grad_logits.clone().matmul(weight.clone().transpose()));
            grad_weight = grad_weight + h.transpose().matmul(grad_logits);
        }
        (Tensor::cat(grad_hidden, 0), grad_weight)
    }
}

/// The log-probs `[rows]` and the log-sum-exp of each row's logits `[rows]`, block by block.
pub(crate) fn target_logps_with_lse<B: Backend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    block: usize,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let rows = hidden.dims()[0];
    let mut logps = Vec::new();
    let mut lses = Vec::new();
    for start in (0..rows).step_by(block.max(1)) {
        let len = block.min(rows - start);
        let logits = hidden.clone().narrow(0, start, len).matmul(weight.clone());
        let target = targets.clone().narrow(0, start, len).unsqueeze_dim::<2>(1);
        let top = logits.clone().max_dim(1);
        let lse = top.clone() + (logits.clone() - top).exp().sum_dim(1).log();
        logps.push((logits.gather(1, target) - lse.clone()).squeeze_dim::<1>(1));
        lses.push(lse.squeeze_dim::<1>(1));
    }
    (Tensor::cat(logps, 0), Tensor::cat(lses, 0))
}

#[cfg(feature = "flex")]
impl VocabBackend for burn::backend::Flex {}

#[cfg(feature = "ndarray")]
impl VocabBackend for burn::backend::NdArray {}

#[cfg(feature = "cuda")]
impl VocabBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl VocabBackend for burn::backend::Wgpu {}

#[cfg(test)]
mod tests;
