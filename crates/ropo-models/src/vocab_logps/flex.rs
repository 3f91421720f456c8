//! burn-flex computes a block's softmax numerators `exp(logits − shift)` in one vectorised pass
//! (`vector_exp`), where burn's tensor operations make a pass for the subtraction and another
//! that calls the library's `expf` once per element.

use burn::{
    backend::Flex,
    tensor::{DType, Tensor, TensorData},
};

use super::VocabBackend;
use crate::{
    flex_storage::{contiguous, f32s},
    vector_exp::exp_shifted_rows,
};

impl VocabBackend for Flex {
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
