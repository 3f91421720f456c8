//! The feed-forward activations named by Hugging Face's `hidden_act` / `activation_function`.

use burn::tensor::{activation, Tensor};
use serde::{Deserialize, Serialize};

use crate::activation_backend::{self, ActivationBackend};

/// An MLP activation, by its Hugging Face name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// Exact GELU (erf); `gelu`.
    #[serde(rename = "gelu")]
    Gelu,
    /// Tanh-approximated GELU; `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    /// SiLU (swish); `silu`, `swish`.
    #[serde(rename = "silu", alias = "swish")]
    Silu,
    /// ReLU; `relu`.
    #[serde(rename = "relu")]
    Relu,
}

impl Activation {
    /// Applies the activation element-wise (exact GELU through the backend's fused
    /// operation, [`crate::activation_backend::gelu`]).
    pub fn forward<const D: usize, B: ActivationBackend>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Gelu => activation_backend::gelu(x),
            Self::GeluTanh => activation::gelu_approximate(x),
            Self::Silu => activation::silu(x),
            Self::Relu => activation::relu(x),
        }
    }

    /// `act(gate) ∘ up`, `gate` and `up` of one shape (`[batch, seq, d_ff]`), the gated
    /// feed-forward's elementwise part: SiLU through the backend's fused operation
    /// ([`activation_backend::silu_gated`]), other activations as [`Self::forward`] gives them.
    pub fn gated<const D: usize, B: ActivationBackend>(
        &self,
        gate: Tensor<B, D>,
        up: Tensor<B, D>,
    ) -> Tensor<B, D> {
        match self {
            Self::Silu => activation_backend::silu_gated(gate, up),
            other => other.forward(gate) * up,
        }
    }
}
