//! Moving float tensors between burn's `Tensor` and the primitive a backend's operations and
//! autodiff nodes work on (`attention/autodiff.rs`, `vocab_logps/autodiff.rs`).

use burn::tensor::{backend::Backend, ops::FloatTensor, Tensor, TensorPrimitive};

/// A float primitive as a tensor of rank `D`.
pub(crate) fn wrap<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// A float tensor's primitive.
pub(crate) fn unwrap<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}
