//! The gated feed-forward's elementwise part, `act(gate) ∘ up` (Llama's SwiGLU), as one
//! operation: with SiLU, a backend may compute it, and its backward, in one pass each
//! (burn-flex does, `gated/flex.rs`), where burn's tensor operations make five passes forward
//! (sigmoid, two products, the library's `expf` per element) and more backward.

mod autodiff;
#[cfg(feature = "flex")]
mod flex;
#[cfg(test)]
mod tests;

use burn::tensor::{activation, backend::Backend, Tensor};

use crate::activation::Activation;

/// A burn backend that computes `silu(gate) ∘ up` and its gradients. The provided methods are
/// burn tensor operations; `Autodiff` records one graph node whose backward is
/// [`GatedBackend::silu_gated_backward`].
pub trait GatedBackend: Backend {
    /// `silu(gate) ∘ up`, `gate` and `up` `[n]`.
    fn silu_gated(gate: Tensor<Self, 1>, up: Tensor<Self, 1>) -> Tensor<Self, 1> {
        silu_gated_by_ops(gate, up)
    }

    /// The gradients of `gate` and `up` (`[n]` each) from that of the output, `grad` (`[n]`):
    /// `d gate = grad ∘ up ∘ σ(gate) ∘ (1 + gate ∘ (1 − σ(gate)))`, `d up = grad ∘ silu(gate)`.
    fn silu_gated_backward(
        gate: Tensor<Self, 1>,
        up: Tensor<Self, 1>,
        grad: Tensor<Self, 1>,
    ) -> (Tensor<Self, 1>, Tensor<Self, 1>) {
        silu_gated_backward_by_ops(gate, up, grad)
    }
}

/// [`GatedBackend::silu_gated`] in burn tensor operations.
fn silu_gated_by_ops<B: Backend>(gate: Tensor<B, 1>, up: Tensor<B, 1>) -> Tensor<B, 1> {
    activation::silu(gate) * up
}

/// [`GatedBackend::silu_gated_backward`] in burn tensor operations.
fn silu_gated_backward_by_ops<B: Backend>(
    gate: Tensor<B, 1>,
    up: Tensor<B, 1>,
    grad: Tensor<B, 1>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let sigmoid = activation::sigmoid(gate.clone());
    let silu = gate.clone() * sigmoid.clone();
    let slope = sigmoid.clone() * (gate * (sigmoid.neg() + 1.0) + 1.0);
    (grad.clone() * up * slope, grad * silu)
}

/// `act(gate) ∘ up`, `gate` and `up` the same shape (`[batch, seq, d_ff]`): SiLU through the
/// backend's fused operation, other activations as burn computes them.
pub fn gated<B: GatedBackend, const D: usize>(
    act: Activation,
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
    match act {
        Activation::Silu => {
            let shape = gate.shape();
            let elements = shape.num_elements();
            B::silu_gated(gate.reshape([elements]), up.reshape([elements])).reshape(shape)
        }
        other => other.forward(gate) * up,
    }
}

#[cfg(feature = "ndarray")]
impl GatedBackend for burn::backend::NdArray {}

#[cfg(feature = "cuda")]
impl GatedBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl GatedBackend for burn::backend::Wgpu {}
