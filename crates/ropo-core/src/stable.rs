//! Numerically stable element-wise forms of softplus and the sigmoid family.
//!
//! burn's own `softplus` computes `log(1 + exp(x))` directly, which overflows to `inf` for
//! `x` above ~88 in f32; preference margins scaled by β routinely reach that range. These
//! forms stay finite (and keep finite gradients) for |x| up to at least 1e4.

use burn::tensor::{backend::Backend, Tensor};

/// `softplus(x) = log(1 + exp(x))`, computed as `max(x, 0) + log1p(exp(−|x|))`.
pub fn softplus<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone().clamp_min(0.0) + x.abs().neg().exp().log1p()
}

/// `log σ(x) = −softplus(−x)`.
pub fn log_sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    softplus(x.neg()).neg()
}

/// `σ(x) = exp(log σ(x))`: never forms `exp(x)` for large `x`.
pub fn sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    log_sigmoid(x).exp()
}
