//! The feed-forward activations named by Hugging Face's `hidden_act` / `activation_function`.

use burn::tensor::{activation, backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

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
    /// Applies the activation element-wise.
    pub fn forward<const D: usize, B: Backend>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Gelu => activation::gelu(x),
            Self::GeluTanh => activation::gelu_approximate(x),
            Self::Silu => activation::silu(x),
            Self::Relu => activation::relu(x),
        }
    }
}
