//! Normalisation layers with Hugging Face parameter names (`weight`, `bias`), so checkpoints
//! map onto them without renaming.

use burn::{
    module::{Module, Param},
    tensor::{backend::Backend, Tensor},
};

/// RMSNorm (Llama family): `x / sqrt(mean(x²) + eps) · weight` over the last dimension.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Scale, `[d_model]`.
    pub weight: Param<Tensor<B, 1>>,
    eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// A norm of width `d_model` with unit scale.
    pub fn new(d_model: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([d_model], device)),
            eps,
        }
    }

    /// `x`: `[batch, seq, d_model]` -> same shape.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let rms = x
            .clone()
            .powf_scalar(2.0)
            .mean_dim(2)
            .add_scalar(self.eps)
            .sqrt();
        x / rms * self.weight.val().unsqueeze::<3>()
    }
}

/// LayerNorm (GPT-2, GPT-NeoX): `(x − mean) / sqrt(var + eps) · weight + bias`, biased variance.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Scale, `[d_model]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift, `[d_model]`.
    pub bias: Param<Tensor<B, 1>>,
    eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// A norm of width `d_model`: unit scale, zero shift.
    pub fn new(d_model: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([d_model], device)),
            bias: Param::from_tensor(Tensor::zeros([d_model], device)),
            eps,
        }
    }

    /// `x`: `[batch, seq, d_model]` -> same shape.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let (var, mean) = x.clone().var_mean_bias(2);
        (x - mean) / var.add_scalar(self.eps).sqrt() * self.weight.val().unsqueeze::<3>()
            + self.bias.val().unsqueeze::<3>()
    }
}
