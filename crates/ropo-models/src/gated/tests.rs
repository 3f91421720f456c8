use burn::{
    backend::{Autodiff, Flex},
    tensor::{activation, Distribution, Tensor, Tolerance},
};

use super::gated;
use crate::activation::Activation;

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
            true => gated(Activation::Silu, g.clone(), u.clone()),
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
