//! The rotary embedding's autodiff node against the same formula differentiated by burn:
//! outputs and input gradients, for a full rotation (Llama) and a partial one (GPT-NeoX's
//! quarter), with query and kv head counts side by side, as the models build them, on
//! contiguous heads and on a view into a fused projection.

use burn::{
    backend::{Autodiff, Flex},
    tensor::{Tensor, TensorData},
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use ropo_models::rotary::Rotary;

type A = Autodiff<Flex>;

fn random(rng: &mut StdRng, shape: [usize; 4]) -> Tensor<A, 4> {
    let values: Vec<f32> = (0..shape.iter().product())
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// `x·cos + rotate_half(x)·sin` written out with slices, on `[batch, seq, heads, head_dim]`.
fn plain(x: Tensor<A, 4>, positions: &[i64], rot: usize, theta: f64) -> Tensor<A, 4> {
    let [batch, seq, heads, head_dim] = x.dims();
    let half = rot / 2;
    let angle = |position: i64, i: usize| {
        position as f32 * (1.0 / theta.powf((2 * i) as f64 / rot as f64)) as f32
    };
    let table = |f: fn(f32) -> f32| {
        let mut values = Vec::new();
        for &position in positions {
            for _ in 0..heads {
                for d in 0..head_dim {
                    values.push(match d < rot {
                        true => f(angle(position, d % half)),
                        false => f(0.0),
                    });
                }
            }
        }
        Tensor::<A, 4>::from_data(
            TensorData::new(values, [batch, seq, heads, head_dim]),
            &Default::default(),
        )
    };
    let first = x.clone().narrow(3, 0, half);
    let second = x.clone().narrow(3, half, half);
    let mut parts = vec![second.neg(), first];
    if rot < head_dim {
        parts.push(x.clone().narrow(3, rot, head_dim - rot).zeros_like());
    }
    let turned = Tensor::cat(parts, 3);
    x * table(f32::cos) + turned * table(f32::sin)
}

#[test]
fn the_rotary_node_equals_the_formula_differentiated_by_burn() {
    let mut rng = StdRng::seed_from_u64(5);
    let (batch, seq) = (2, 7);
    let positions: Vec<i64> = (0..batch as i64 * seq as i64)
        .map(|i| i % seq as i64 + 3)
        .collect();
    for (rot, head_dim) in [(8, 8), (4, 16)] {
        let rotary = Rotary::new(rot, head_dim, 10_000.0, None);
        let angles = rotary.angles::<A>(&positions, batch, &[6, 2], &Default::default());
        // `parts` 3: each head's q, k, v side by side, the middle one rotated (a strided view,
        // as GPT-NeoX's fused projection gives).
        for (heads, parts) in [(6, 1), (2, 1), (6, 3)] {
            let x = random(&mut rng, [batch, seq, heads, parts * head_dim]);
            let weights = random(&mut rng, [batch, seq, heads, head_dim]);
            let run = |f: &dyn Fn(Tensor<A, 4>) -> Tensor<A, 4>| {
                let x = x.clone().require_grad();
                let out = f(x.clone().narrow(3, (parts / 2) * head_dim, head_dim));
                let grads = (out.clone() * weights.clone()).sum().backward();
                let data = |t: Tensor<Flex, 4>| t.into_data().to_vec::<f32>().unwrap();
                (data(out.inner()), data(x.grad(&grads).unwrap()))
            };
            let (node_out, node_grad) = run(&|x| angles.apply(x));
            let (plain_out, plain_grad) = run(&|x| plain(x, &positions, rot, 10_000.0));
            for (what, got, want) in [
                ("output", node_out, plain_out),
                ("gradient", node_grad, plain_grad),
            ] {
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (g - w).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "rot {rot} of {head_dim}, {heads} heads, {what}: {worst}"
                );
            }
        }
    }
}
