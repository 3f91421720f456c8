//! Log-probabilities of target tokens over a large vocabulary without the whole
//! `[rows, vocab]` logits tensor: the output head, the log-sum-exp and the gradients run over
//! blocks of vocabulary columns, and under automatic differentiation the backward recomputes
//! each block's logits (see `vocab_logps/autodiff.rs`) instead of keeping logits,
//! log-softmax and their gradients for every position at once.
//!
//! At 50k–150k vocabularies those tensors are the largest of a training step (`[8, 256,
//! 50304]` floats is 412 MB per copy); here at most one `[rows, columns]` block exists at a
//! time. Blocks run over columns, not rows, so that each block's share of the head's gradient
//! is written once (`[d_model, columns]`) rather than a whole `[d_model, vocab]` product per
//! block being summed.

mod autodiff;
#[cfg(feature = "flex")]
mod flex;

use std::ops::Range;

use burn::tensor::{backend::Backend, Bool, IndexingUpdateOp, Int, Tensor};

use crate::product::ProductBackend;

/// Elements of one block's `[rows, columns]` logits (64 MiB of f32): enough columns for the
/// matrix products to run at full speed, few enough that the block is small beside the model.
const BLOCK_ELEMENTS: usize = 1 << 24;

/// Vocabulary columns per block when `rows` positions are scored: a multiple of 32, so that
/// every block starts at a pair of the bf16 kernels' panels (`product/bf16_head.rs`).
pub fn block_columns(rows: usize) -> usize {
    (BLOCK_ELEMENTS / rows.max(1)).next_multiple_of(32).max(32)
}

/// A burn backend that scores target tokens block by block. The provided methods are built
/// from burn tensor operations; `Autodiff` overrides the forward to record one graph node whose
/// backward is [`VocabBackend::target_logps_backward`].
pub trait VocabBackend: ProductBackend {
    /// `log softmax(hidden · weight)[row, targets[row]]` for every row, `[rows]`, computed
    /// `block` vocabulary columns at a time. `hidden`: `[rows, d_model]`; `weight`: the output
    /// head `[d_model, vocab]`; `targets`: `[rows]`.
    fn target_logps(
        hidden: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        block: usize,
    ) -> Tensor<Self, 1> {
        Self::target_logps_with_lse(hidden, weight, targets, block).0
    }

    /// The log-probs `[rows]` of [`VocabBackend::target_logps`] and each row's log-sum-exp
    /// `[rows]`, which the backward needs. The provided method runs burn operations block by
    /// block ([`blocked_target_logps_with_lse`]); burn-flex folds the blocks into the log-sum-exp
    /// as its bf16 unit computes them (`product/bf16_head.rs`).
    fn target_logps_with_lse(
        hidden: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        block: usize,
    ) -> (Tensor<Self, 1>, Tensor<Self, 1>) {
        blocked_target_logps_with_lse(hidden, weight, targets, block)
    }

    /// For a head that does not train (LoRA's): the log-probs `[rows]` of
    /// [`VocabBackend::target_logps`] and each log-prob's gradient with respect to its row of
    /// `hidden`, `weight[:, target] − Σ_j softmax(hidden · weight)_j · weight[:, j]` (`[rows,
    /// d_model]`), so that the backward is one product by the log-probs' gradient and makes no
    /// pass over the vocabulary. The provided method takes the log-sum-exp in one pass of burn
    /// operations and the softmax-weighted columns in a second
    /// ([`blocked_target_logps_with_hidden_gradient`]); burn-flex makes one pass on its bf16 unit
    /// (`product/bf16_head.rs`): two of the head's products where recomputing the logits in the
    /// backward makes three.
    fn target_logps_with_hidden_gradient(
        hidden: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        block: usize,
    ) -> (Tensor<Self, 1>, Tensor<Self, 2>) {
        blocked_target_logps_with_hidden_gradient(hidden, weight, targets, block)
    }

    /// `exp(x − shift)`, `x` `[rows, columns]`, `shift` `[rows, 1]`: a block's softmax
    /// numerators. burn-flex overrides it with one vectorised pass (`vocab_logps/flex.rs`).
    fn exp_shifted(x: Tensor<Self, 2>, shift: Tensor<Self, 2>) -> Tensor<Self, 2> {
        (x - shift).exp()
    }

    /// The gradient of the logits `hidden · weight` in `columns` (`[rows, columns.len()]`),
    /// `grad · (one_hot(target) − softmax)`, from each row's target, log-sum-exp and log-prob
    /// gradient (`targets`, `lse`, `grad`: `[rows, 1]`). The provided method recomputes the
    /// block's logits and runs burn operations ([`blocked_logit_gradients`]); burn-flex computes
    /// it as its bf16 unit recomputes the logits (`product/bf16_head.rs`).
    fn logit_gradients(
        hidden: &Tensor<Self, 2>,
        weight: &Tensor<Self, 2>,
        columns: Range<usize>,
        targets: &Tensor<Self, 2, Int>,
        lse: &Tensor<Self, 2>,
        grad: &Tensor<Self, 2>,
    ) -> Tensor<Self, 2> {
        blocked_logit_gradients(hidden, weight, columns, targets, lse, grad)
    }

    /// The gradients of `hidden` (`[rows, d_model]`) and, when `weight_grad` asks (a head
    /// that trains), of `weight` (`[d_model, vocab]`), from the gradient of the log-probs,
    /// `grad` (`[rows]`), and the forward's log-sum-exp `lse` (`[rows]`): per block of columns,
    /// the logits' gradient ([`VocabBackend::logit_gradients`]) times `hiddenᵀ` and the
    /// block's `weightᵀ`.
    #[allow(clippy::too_many_arguments)]
    fn target_logps_backward(
        hidden: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        lse: Tensor<Self, 1>,
        grad: Tensor<Self, 1>,
        block: usize,
        weight_grad: bool,
    ) -> (Tensor<Self, 2>, Option<Tensor<Self, 2>>) {
        let vocab = weight.dims()[1];
        let grad = grad.unsqueeze_dim::<2>(1);
        let lse = lse.unsqueeze_dim::<2>(1);
        let targets = targets.unsqueeze_dim::<2>(1);
        let hidden_t = hidden.clone().transpose();
        let mut grad_hidden = hidden.zeros_like();
        let mut grad_weight = Vec::new();
        for start in (0..vocab).step_by(block.max(1)) {
            let len = block.min(vocab - start);
            let columns = weight.clone().narrow(1, start, len);
            let grad_logits =
                Self::logit_gradients(&hidden, &weight, start..start + len, &targets, &lse, &grad);
            if weight_grad {
                grad_weight.push(Self::product(hidden_t.clone(), grad_logits.clone()));
            }
            grad_hidden = grad_hidden + Self::product(grad_logits, columns.transpose());
        }
        (
            grad_hidden,
            weight_grad.then(|| Tensor::cat(grad_weight, 1)),
        )
    }
}

/// [`VocabBackend::target_logps_with_hidden_gradient`] from burn operations: the targets'
/// columns (`select`) less [`blocked_target_logps_with_column_mean`]'s means.
pub(crate) fn blocked_target_logps_with_hidden_gradient<B: VocabBackend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    block: usize,
) -> (Tensor<B, 1>, Tensor<B, 2>) {
    let (logps, mean) =
        blocked_target_logps_with_column_mean(hidden, weight.clone(), targets.clone(), block);
    (logps, weight.select(1, targets).transpose() - mean)
}

/// The log-probs `[rows]` and each row's softmax-weighted mean of the head's columns,
/// `Σ_j softmax(hidden · weight)_j · weight[:, j]` (`[rows, d_model]`), from burn operations:
/// the log-probs and log-sum-exp ([`VocabBackend::target_logps_with_lse`]), then per block of
/// columns the softmax (`exp(logits − lse)`) times the block's columns, summed.
pub(crate) fn blocked_target_logps_with_column_mean<B: VocabBackend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    block: usize,
) -> (Tensor<B, 1>, Tensor<B, 2>) {
    let vocab = weight.dims()[1];
    let (logps, lse) = B::target_logps_with_lse(hidden.clone(), weight.clone(), targets, block);
    let lse = lse.unsqueeze_dim::<2>(1);
    let mut mean = hidden.zeros_like();
    for start in (0..vocab).step_by(block.max(1)) {
        let columns = weight.clone().narrow(1, start, block.min(vocab - start));
        let probs = B::exp_shifted(B::product(hidden.clone(), columns.clone()), lse.clone());
        mean = mean + B::product(probs, columns.transpose());
    }
    (logps, mean)
}

/// [`VocabBackend::logit_gradients`] from burn operations: the block's logits recomputed, their
/// softmax scaled by `−grad`, and `grad` added at each row's target where it lies in the block
/// (rather than a `[rows, columns]` one-hot mask).
pub(crate) fn blocked_logit_gradients<B: VocabBackend>(
    hidden: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    columns: Range<usize>,
    targets: &Tensor<B, 2, Int>,
    lse: &Tensor<B, 2>,
    grad: &Tensor<B, 2>,
) -> Tensor<B, 2> {
    let (start, len) = (columns.start, columns.len());
    let logits = B::product(hidden.clone(), weight.clone().narrow(1, start, len));
    let probs = B::exp_shifted(logits, lse.clone());
    let (local, inside) = block_targets(targets, start, len);
    let at_target = grad.clone().mask_fill(inside.bool_not(), 0.0);
    (probs * grad.clone().neg()).scatter(1, local, at_target, IndexingUpdateOp::Add)
}

/// Each row's target as a column of the block `start .. start + len`, `[rows, 1]` (clamped into
/// the block), and whether it lies in the block, `[rows, 1]`. `targets`: `[rows, 1]`.
fn block_targets<B: Backend>(
    targets: &Tensor<B, 2, Int>,
    start: usize,
    len: usize,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Bool>) {
    let local = targets.clone().sub_scalar(start as i64);
    let inside = local
        .clone()
        .greater_equal_elem(0)
        .bool_and(local.clone().lower_elem(len as i64));
    (local.clamp(0, len as i64 - 1), inside)
}

/// The log-probs `[rows]` and the log-sum-exp of each row's logits `[rows]`, the log-sum-exp
/// accumulated over blocks of columns with a running maximum and each target's logit taken
/// from the block that holds it (the same product the log-sum-exp sums, so a log-prob is never
/// above 0).
pub(crate) fn blocked_target_logps_with_lse<B: VocabBackend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    block: usize,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let vocab = weight.dims()[1];
    let rows = hidden.dims()[0];
    let targets = targets.unsqueeze_dim::<2>(1);
    let mut picked = Tensor::<B, 2>::zeros([rows, 1], &hidden.device());
    let mut running: Option<(Tensor<B, 2>, Tensor<B, 2>)> = None;
    for start in (0..vocab).step_by(block.max(1)) {
        let len = block.min(vocab - start);
        let logits = B::product(hidden.clone(), weight.clone().narrow(1, start, len));
        let (local, inside) = block_targets(&targets, start, len);
        picked = picked
            + logits
                .clone()
                .gather(1, local)
                .mask_fill(inside.bool_not(), 0.0);
        let block_max = logits.clone().max_dim(1);
        running = Some(match running {
            None => {
                let sum = B::exp_shifted(logits, block_max.clone()).sum_dim(1);
                (block_max, sum)
            }
            Some((max, sum)) => {
                let top = max.clone().max_pair(block_max);
                let sum = sum * (max - top.clone()).exp()
                    + B::exp_shifted(logits, top.clone()).sum_dim(1);
                (top, sum)
            }
        });
    }
    let (max, sum) = running.expect("the vocabulary has at least one token");
    let lse = (max + sum.log()).squeeze_dim::<1>(1);
    (picked.squeeze_dim::<1>(1) - lse.clone(), lse)
}

#[cfg(feature = "ndarray")]
impl VocabBackend for burn::backend::NdArray {}

#[cfg(feature = "cuda")]
impl VocabBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl VocabBackend for burn::backend::Wgpu {}

#[cfg(test)]
mod tests;
