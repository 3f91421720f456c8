//! burn-flex folds the head's logits into the log-sum-exp as its bf16 unit computes them, where
//! the products run in bf16 (`product/bf16_head.rs`), and computes a block's softmax numerators `exp(logits − shift)` in one vectorised pass
//! (`vector_exp`), where burn's tensor operations make a pass for the subtraction and another
//! that calls the library's `expf` once per element.

use std::ops::Range;

use burn::{
    backend::Flex,
    tensor::{DType, Int, Tensor, TensorData},
};

use super::{blocked_logit_gradients, blocked_target_logps_with_lse, VocabBackend};
use crate::{
    flex_storage::{contiguous, f32s},
    product::{bf16_logit_gradients, bf16_target_logits_and_lse},
    vector_exp::exp_shifted_rows,
};

impl VocabBackend for Flex {
    fn target_logps_with_lse(
        hidden: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        block: usize,
    ) -> (Tensor<Self, 1>, Tensor<Self, 1>) {
        match bf16_target_logits_and_lse(&hidden, &weight, &targets) {
            Some((picked, lse)) => (picked - lse.clone(), lse),
            None => blocked_target_logps_with_lse(hidden, weight, targets, block),
        }
    }

    fn logit_gradients(
        hidden: &Tensor<Self, 2>,
        weight: &Tensor<Self, 2>,
        columns: Range<usize>,
        targets: &Tensor<Self, 2, Int>,
        lse: &Tensor<Self, 2>,
        grad: &Tensor<Self, 2>,
    ) -> Tensor<Self, 2> {
        bf16_logit_gradients(hidden, weight, columns.clone(), targets, lse, grad)
            .unwrap_or_else(|| blocked_logit_gradients(hidden, weight, columns, targets, lse, grad))
    }

    fn exp_shifted(x: Tensor<Self, 2>, shift: Tensor<Self, 2>) -> Tensor<Self, 2> {
        let [rows, columns] = x.dims();
        if x.dtype() != DType::F32 || shift.dtype() != DType::F32 || shift.dims() != [rows, 1] {
            return (x - shift).exp();
        }
        let device = x.device();
        let [x, shift] = [x, shift].map(|t| contiguous(t.into_primitive().tensor()));
        let out = exp_shifted_rows(f32s(&x), columns, f32s(&shift));
        Tensor::from_data(TensorData::new(out, [rows, columns]), &device)
    }
}
