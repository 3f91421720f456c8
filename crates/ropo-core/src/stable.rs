//! Numerically stable element-wise forms of softplus and the sigmoid family.
//!
//! burn's own `softplus` computes `log(1 + exp(x))` directly, which overflows to `inf` for
//! `x` above ~88 in f32; preference margins scaled by β routinely reach that range. These
//! forms stay finite (and keep finite gradients) for |x| up to at least 1e4.
//!
//! They are also built so that autodiff's gradient is the true derivative everywhere, ties
//! included. The textbook form `max(x, 0) + log1p(exp(−|x|))` is not: at `x = 0` burn
//! differentiates `max` as 1 and `abs` as `sign(0) = 0`, giving 1 instead of σ(0) = ½. A
//! preference run meets exactly that tie at its first step, where the policy equals the
//! reference and every margin is 0.

use burn::tensor::{backend::Backend, Tensor};

/// `softplus(x) = log(1 + exp(x))`, as `log1p(exp(x))` where `x < 0` and
/// `x + log1p(exp(−x))` where `x ≥ 0`.
///
/// Each branch reads its input with the other half masked to 0, so the branch not taken stays
/// finite and passes a gradient of exactly 0 (no `0 · inf`); the branch taken is a smooth
/// function of `x` whose derivative is σ(x), 0 included.
pub fn softplus<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let non_negative = x.clone().greater_equal_elem(0.0);
    let negative_part = x.clone().mask_fill(non_negative.clone(), 0.0);
    let non_negative_part = x.mask_fill(non_negative.clone().bool_not(), 0.0);
    let below_zero = negative_part.exp().log1p();
    let at_or_above_zero = non_negative_part.clone() + non_negative_part.neg().exp().log1p();
    below_zero.mask_where(non_negative, at_or_above_zero)
}

/// `log σ(x) = −softplus(−x)`.
pub fn log_sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    softplus(x.neg()).neg()
}

/// `σ(x) = exp(log σ(x))`: never forms `exp(x)` for large `x`.
pub fn sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    log_sigmoid(x).exp()
}
