use burn::{
    backend::{Autodiff, Flex},
    tensor::{activation, Distribution, Tensor, Tolerance},
};

use super::{gelu, silu_gated};

type Ad = Autodiff<Flex>;

/// The fused SiLU gate under autodiff gives burn's own `silu(gate) * up` and its gradients,
/// from a `[2, 3, 5]` pair whose gates span both signs and saturate.
#[test]
fn fused_silu_gate_and_gradients_match_burns_ops() {
    let device = Default::default();
    let gate = Tensor::<Flex, 3>::random([2, 3, 5], Distribution::Uniform(-40.0, 40.0), &device);
    let up = Tensor::<Flex, 3>::random([2, 3, 5], Distribution::Normal(0.0, 1.0), &device);
    let weights = Tensor::<Flex, 3>::random([2, 3, 5], Distribution::Normal(0.0, 1.0), &device);
    let run = |fused: bool| {
        let g = Tensor::<Ad, 3>::from_inner(gate.clone()).require_grad();
        let u = Tensor::<Ad, 3>::from_inner(up.clone()).require_grad();
        let out = match fused {
            true => silu_gated(g.clone(), u.clone()),
            false => activation::silu(g.clone()) * u.clone(),
        };
        let grads = (out.clone() * Tensor::from_inner(weights.clone()))
            .sum()
            .backward();
        let grad = |t: &Tensor<Ad, 3>| t.grad(&grads).expect("tracked").into_data();
        (out.inner().into_data(), grad(&g), grad(&u))
    };
    let (fused, by_ops) = (run(true), run(false));
    let tolerance = Tolerance::<f32>::relative(1e-5).set_half_precision_absolute(1e-5);
    fused.0.assert_approx_eq::<f32>(&by_ops.0, tolerance);
    fused.1.assert_approx_eq::<f32>(&by_ops.1, tolerance);
    fused.2.assert_approx_eq::<f32>(&by_ops.2, tolerance);
}

/// Exact GELU through the fused operation under autodiff gives burn's own `gelu` and its
/// gradient on `[4, 3, 50]` values spanning −8..8.
#[test]
fn fused_erf_gelu_and_gradient_match_burns_gelu() {
    let device = Default::default();
    let x = Tensor::<Flex, 3>::random([4, 3, 50], Distribution::Uniform(-8.0, 8.0), &device);
    let weights = Tensor::<Flex, 3>::random([4, 3, 50], Distribution::Normal(0.0, 1.0), &device);
    let run = |fused: bool| {
        let x = Tensor::<Ad, 3>::from_inner(x.clone()).require_grad();
        let out = match fused {
            true => gelu(x.clone()),
            false => activation::gelu(x.clone()),
        };
        let grads = (out.clone() * Tensor::from_inner(weights.clone()))
            .sum()
            .backward();
        (
            out.inner().into_data(),
            x.grad(&grads).expect("tracked").into_data(),
        )
    };
    let (fused, by_ops) = (run(true), run(false));
    // Absolute 1e-6 for the far negative tail, where burn's `1 + erf` is 0 and the fused form
    // keeps GELU's true value (about −2.5e-8 at −6).
    let tolerance = Tolerance::<f32>::rel_abs(1e-5, 1e-6);
    fused.0.assert_approx_eq::<f32>(&by_ops.0, tolerance);
    fused.1.assert_approx_eq::<f32>(&by_ops.1, tolerance);
}
