//! burn-flex computes `silu(gate) ∘ up`, exact GELU and their gradients in one vectorised pass
//! each (`vector_exp`).

use burn::{
    backend::Flex,
    tensor::{DType, Device, Tensor, TensorData},
};

use super::{
    erf_gelu_backward_by_ops, silu_gated_backward_by_ops, silu_gated_by_ops, ActivationBackend,
};
use crate::{
    flex_storage::{contiguous, f32s},
    vector_exp,
};

impl ActivationBackend for Flex {
    fn silu_gated(gate: Tensor<Self, 1>, up: Tensor<Self, 1>) -> Tensor<Self, 1> {
        if !all_f32(&[&gate, &up]) {
            return silu_gated_by_ops(gate, up);
        }
        let device = gate.device();
        let [gate, up] = [gate, up].map(|t| contiguous(t.into_primitive().tensor()));
        let out = vector_exp::silu_gated(f32s(&gate), f32s(&up));
        from_vec(out, &device)
    }

    fn silu_gated_backward(
        gate: Tensor<Self, 1>,
        up: Tensor<Self, 1>,
        grad: Tensor<Self, 1>,
    ) -> (Tensor<Self, 1>, Tensor<Self, 1>) {
        if !all_f32(&[&gate, &up, &grad]) {
            return silu_gated_backward_by_ops(gate, up, grad);
        }
        let device = gate.device();
        let [gate, up, grad] = [gate, up, grad].map(|t| contiguous(t.into_primitive().tensor()));
        let [grad_gate, grad_up] =
            vector_exp::silu_gated_backward(f32s(&gate), f32s(&up), f32s(&grad));
        (from_vec(grad_gate, &device), from_vec(grad_up, &device))
    }

    fn erf_gelu(x: Tensor<Self, 1>) -> Tensor<Self, 1> {
        if !all_f32(&[&x]) {
            return burn::tensor::activation::gelu(x);
        }
        let device = x.device();
        let x = contiguous(x.into_primitive().tensor());
        from_vec(vector_exp::erf_gelu(f32s(&x)), &device)
    }

    fn erf_gelu_backward(x: Tensor<Self, 1>, grad: Tensor<Self, 1>) -> Tensor<Self, 1> {
        if !all_f32(&[&x, &grad]) {
            return erf_gelu_backward_by_ops(x, grad);
        }
        let device = x.device();
        let [x, grad] = [x, grad].map(|t| contiguous(t.into_primitive().tensor()));
        from_vec(
            vector_exp::erf_gelu_backward(f32s(&x), f32s(&grad)),
            &device,
        )
    }
}

/// Whether every tensor holds f32 (the fused loops' type).
fn all_f32(tensors: &[&Tensor<Flex, 1>]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

/// A `[n]` tensor of `values`.
fn from_vec(values: Vec<f32>, device: &Device<Flex>) -> Tensor<Flex, 1> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), device)
}
