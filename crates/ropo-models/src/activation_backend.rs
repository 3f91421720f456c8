//! The feed-forward activations a backend may fuse: the gated part `act(gate) ∘ up` (Llama's
//! SwiGLU) and exact GELU (GPT-NeoX), each forward and backward in one vectorised pass on
//! burn-flex (`activation_backend/flex.rs`), where burn's tensor operations make five passes
//! for the gate (sigmoid, two products, the library's `expf` per element) and burn-flex's GELU
//! calls the library's scalar `erff` per element.

mod autodiff;
#[cfg(feature = "flex")]
mod flex;
#[cfg(test)]
mod tests;

use burn::tensor::{activation, backend::Backend, Tensor, TensorPrimitive};

/// A burn backend that computes `silu(gate) ∘ up`, exact GELU and their gradients. The provided
/// methods are burn's operations; `Autodiff` records one graph node for each, whose backward is
/// [`ActivationBackend::silu_gated_backward`] or [`ActivationBackend::erf_gelu_backward`].
pub trait ActivationBackend: Backend {
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

    /// Exact GELU, `x · Φ(x) = x/2 · (1 + erf(x/√2))`, `x` `[n]`.
    fn erf_gelu(x: Tensor<Self, 1>) -> Tensor<Self, 1> {
        activation::gelu(x)
    }

    /// The gradient of `x` (`[n]`) from that of [`Self::erf_gelu`]'s output, `grad` (`[n]`):
    /// `grad · (Φ(x) + x · φ(x))`, `φ` the standard normal density.
    fn erf_gelu_backward(x: Tensor<Self, 1>, grad: Tensor<Self, 1>) -> Tensor<Self, 1> {
        erf_gelu_backward_by_ops(x, grad)
    }
}

/// [`ActivationBackend::erf_gelu_backward`] as burn's backend computes it.
fn erf_gelu_backward_by_ops<B: Backend>(x: Tensor<B, 1>, grad: Tensor<B, 1>) -> Tensor<B, 1> {
    let grad = B::gelu_backward(x.into_primitive().tensor(), grad.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(grad))
}

/// [`ActivationBackend::silu_gated`] in burn tensor operations.
fn silu_gated_by_ops<B: Backend>(gate: Tensor<B, 1>, up: Tensor<B, 1>) -> Tensor<B, 1> {
    activation::silu(gate) * up
}

/// [`ActivationBackend::silu_gated_backward`] in burn tensor operations.
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

/// `silu(gate) ∘ up` of `gate` and `up` of one shape (`[batch, seq, d_ff]`) through the
/// backend's [`ActivationBackend::silu_gated`].
pub fn silu_gated<B: ActivationBackend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Tensor<B, D> {
    let shape = gate.shape();
    let elements = shape.num_elements();
    B::silu_gated(gate.reshape([elements]), up.reshape([elements])).reshape(shape)
}

/// Exact GELU of `x` (any shape) through the backend's [`ActivationBackend::erf_gelu`].
pub fn gelu<B: ActivationBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let shape = x.shape();
    let elements = shape.num_elements();
    B::erf_gelu(x.reshape([elements])).reshape(shape)
}

#[cfg(feature = "ndarray")]
impl ActivationBackend for burn::backend::NdArray {}

#[cfg(feature = "cuda")]
impl ActivationBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl ActivationBackend for burn::backend::Wgpu {}
