//! burn-flex folds the head's logits into the log-sum-exp as its bf16 unit computes them, where
//! the products run in bf16 (`product/bf16_head.rs`), and computes a block's softmax numerators `exp(logits − shift)` in one vectorised pass
//! (`vector_exp`), where burn's tensor operations make a pass for the subtraction and another
//! that calls the library's `expf` once per element.

use std::ops::Range;

use burn::{
    backend::Flex,
    tensor::{DType, Int, Tensor, TensorData},
};

use super::{
    blocked_logit_gradients, blocked_target_logps_with_column_mean, blocked_target_logps_with_lse,
    VocabBackend,
};
use crate::{
    flex_storage::{contiguous, f32s},
    product::{
        bf16_logit_gradients, bf16_target_logits_and_lse, bf16_target_logps_and_column_mean,
    },
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

    fn target_logps_with_hidden_gradient(
        hidden: Tensor<Self, 2>,
        weight: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        block: usize,
    ) -> (Tensor<Self, 1>, Tensor<Self, 2>) {
        let columns = target_columns(&weight, &targets);
        let (logps, mean) = match bf16_target_logps_and_column_mean(&hidden, &weight, &targets) {
            Some(found) => found,
            None => blocked_target_logps_with_column_mean(hidden, weight, targets, block),
        };
        (logps, columns - mean)
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

/// `weight[:, targets[i]]` for every row `i` (`[rows, d_model]`), read in place whatever the
/// weight's strides: burn-flex's `select` first copies a non-contiguous weight whole (a tied
/// head is the embedding's transposed view, 113 MB for SmolLM2).
fn target_columns(weight: &Tensor<Flex, 2>, targets: &Tensor<Flex, 1, Int>) -> Tensor<Flex, 2> {
    let [d, _] = weight.dims();
    let rows = targets.dims()[0];
    let tensor = weight.clone().into_primitive().tensor();
    let layout = tensor.layout();
    let strides = layout.strides();
    if weight.dtype() != DType::F32 || strides.iter().any(|&s| s < 0) {
        return weight.clone().select(1, targets.clone()).transpose();
    }
    let data = &tensor.storage::<f32>()[layout.start_offset()..];
    let (row_stride, col_stride) = (strides[0] as usize, strides[1] as usize);
    let values: Vec<f32> = targets
        .to_data()
        .iter::<i64>()
        .flat_map(|t| {
            let column = usize::try_from(t).expect("targets are token ids") * col_stride;
            (0..d).map(move |p| data[p * row_stride + column])
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [rows, d]), &weight.device())
}
