//! The fused attention (one autodiff node; the flex CPU kernels) against attention written out
//! in plain burn operations and differentiated by burn: outputs and the gradients of query,
//! key and value, for grouped-query heads, padding masks, a KV-cache offset and head widths
//! that are not a multiple of the kernel's 8 lanes.

use burn::{
    backend::{Autodiff, Flex},
    tensor::{activation::softmax, Tensor, TensorData},
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use ropo_models::attention::{blocked, AttentionBackend, AttentionMask, KeyMask};

type A = Autodiff<Flex>;

/// One attention call's sizes and mask.
struct Case {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Per row, which of the `keys` positions are real tokens (`false` = padding); `None`:
    /// the causal rule alone over `queries == keys`.
    key_valid: Option<Vec<Vec<bool>>>,
    batch: usize,
    queries: usize,
}

impl Case {
    fn keys(&self) -> usize {
        self.key_valid.as_ref().map_or(self.queries, |v| v[0].len())
    }

    /// Random query, key and value, and a fourth tensor shaped like the output (the weights of
    /// a loss, or an upstream gradient).
    fn inputs(&self, rng: &mut StdRng) -> [Tensor<A, 4>; 4] {
        let queries = [self.batch, self.queries, self.heads, self.head_dim];
        let keys = [self.batch, self.keys(), self.kv_heads, self.head_dim];
        [queries, keys, keys, queries].map(|shape| random(rng, shape))
    }

    fn mask(&self) -> KeyMask {
        let device = Default::default();
        let mask = match &self.key_valid {
            Some(valid) => {
                AttentionMask::<A>::causal(valid, self.keys() - self.queries, self.queries, &device)
            }
            None => AttentionMask::<A>::right_padded(self.batch, self.queries, &device),
        };
        mask.keys().clone()
    }
}

fn cases() -> Vec<Case> {
    let padded = |lengths: &[(usize, usize)], width: usize| {
        lengths
            .iter()
            .map(|&(left, real)| (0..width).map(|i| i >= left && i < left + real).collect())
            .collect()
    };
    vec![
        Case {
            heads: 4,
            kv_heads: 4,
            head_dim: 8,
            key_valid: None,
            batch: 2,
            queries: 19,
        },
        Case {
            heads: 6,
            kv_heads: 2,
            head_dim: 20,
            key_valid: Some(padded(&[(3, 14), (0, 17), (0, 9)], 17)),
            batch: 3,
            queries: 17,
        },
        // Queries after 11 cached keys (a shared prompt), with padding on both sides.
        Case {
            heads: 4,
            kv_heads: 1,
            head_dim: 5,
            key_valid: Some(padded(&[(2, 20), (0, 30), (5, 13)], 30)),
            batch: 3,
            queries: 19,
        },
    ]
}

fn random<const D: usize>(rng: &mut StdRng, shape: [usize; D]) -> Tensor<A, D> {
    let values: Vec<f32> = (0..shape.iter().product())
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// Attention in plain operations on `[batch, seq, heads, head_dim]` inputs: heads first,
/// repeated kv heads, scores, `−∞` at blocked keys, softmax, weighted sum, back to the input
/// layout.
fn plain_attention(
    q: Tensor<A, 4>,
    k: Tensor<A, 4>,
    v: Tensor<A, 4>,
    mask: &KeyMask,
) -> Tensor<A, 4> {
    let [q, k, v] = [q, k, v].map(|t| t.swap_dims(1, 2));
    let [batch, heads, _, head_dim] = q.dims();
    let [_, kv_heads, keys, _] = k.dims();
    let repeat = |x: Tensor<A, 4>| {
        x.unsqueeze_dim::<5>(2)
            .expand([batch, kv_heads, heads / kv_heads, keys, head_dim])
            .reshape([batch, heads, keys, head_dim])
    };
    let scores = q.matmul(repeat(k).swap_dims(2, 3)) / (head_dim as f64).sqrt();
    let blocked = mask.tensor::<A>(heads, &Default::default());
    softmax(scores.mask_fill(blocked, f32::NEG_INFINITY), 3)
        .matmul(repeat(v))
        .swap_dims(1, 2)
}

fn assert_close<const D: usize>(what: &str, got: Tensor<Flex, D>, want: Tensor<Flex, D>, tol: f32) {
    let (got, want) = (
        got.into_data().to_vec::<f32>().unwrap(),
        want.into_data().to_vec::<f32>().unwrap(),
    );
    assert_eq!(got.len(), want.len(), "{what}: sizes");
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: largest difference {worst} > {tol}");
}

/// Output and the gradients of `Σ output·weights` for query, key and value.
fn run(
    attention: impl Fn(Tensor<A, 4>, Tensor<A, 4>, Tensor<A, 4>) -> Tensor<A, 4>,
    inputs: [&Tensor<A, 4>; 4],
) -> [Tensor<Flex, 4>; 4] {
    let [q, k, v, weights] = inputs;
    let [q, k, v] = [q, k, v].map(|t| t.clone().require_grad());
    let output = attention(q.clone(), k.clone(), v.clone());
    let grads = (output.clone() * weights.clone()).sum().backward();
    [
        output.inner(),
        q.grad(&grads).unwrap(),
        k.grad(&grads).unwrap(),
        v.grad(&grads).unwrap(),
    ]
}

#[test]
fn fused_attention_and_its_gradients_equal_plain_attention() {
    let mut rng = StdRng::seed_from_u64(7);
    for (index, case) in cases().into_iter().enumerate() {
        let mask = case.mask();
        let [q, k, v, weights] = case.inputs(&mut rng);
        let inputs = [&q, &k, &v, &weights];
        let fused = run(|q, k, v| A::masked_attention(q, k, v, &mask), inputs);
        let plain = run(|q, k, v| plain_attention(q, k, v, &mask), inputs);
        for (name, (got, want)) in ["output", "query grad", "key grad", "value grad"]
            .iter()
            .zip(fused.into_iter().zip(plain))
        {
            assert_close(&format!("case {index}, {name}"), got, want, 1e-5);
        }
    }
}

/// One attention call's output, log-sum-exp, and query, key and value gradients.
type Results = (Tensor<Flex, 4>, Tensor<Flex, 3>, [Tensor<Flex, 4>; 3]);

/// What flex's kernels give for `q`, `k`, `v` and the output gradient `grad`.
fn kernel_results([q, k, v, grad]: [Tensor<Flex, 4>; 4], mask: &KeyMask) -> Results {
    let (out, lse) = Flex::masked_attention_with_lse(q.clone(), k.clone(), v.clone(), mask);
    let grads = Flex::masked_attention_backward(q, k, v, out.clone(), lse.clone(), grad, mask);
    (out, lse, grads)
}

/// Asserts every tensor of `got` within 1e-5 of `want`'s, naming `what`.
fn assert_results_close(what: &str, got: Results, want: Results) {
    let ((out, lse, grads), (want_out, want_lse, want_grads)) = (got, want);
    assert_close(&format!("{what}, output"), out, want_out, 1e-5);
    assert_close(&format!("{what}, lse"), lse, want_lse, 1e-5);
    for (name, (got, want)) in ["query", "key", "value"]
        .iter()
        .zip(grads.into_iter().zip(want_grads))
    {
        assert_close(&format!("{what}, {name} grad"), got, want, 1e-5);
    }
}

/// The provided (backend-independent) forward and backward, which the GPU backends use, give
/// what the CPU kernels give.
#[test]
fn provided_attention_methods_equal_the_cpu_kernels() {
    let mut rng = StdRng::seed_from_u64(11);
    for (index, case) in cases().into_iter().enumerate() {
        let mask = case.mask();
        let [q, k, v, grad] = case.inputs(&mut rng);
        let (out, lse) = A::masked_attention_with_lse(q.clone(), k.clone(), v.clone(), &mask);
        let grads = A::masked_attention_backward(
            q.clone(),
            k.clone(),
            v.clone(),
            out.clone(),
            lse.clone(),
            grad.clone(),
            &mask,
        )
        .map(|t| t.inner());
        let want = kernel_results([q, k, v, grad].map(|t| t.inner()), &mask);
        assert_results_close(
            &format!("case {index}"),
            (out.inner(), lse.inner(), grads),
            want,
        );
    }
}

/// The provided methods' blocks of queries: cut into one query per block and into blocks of
/// three (the last one shorter), forward and backward give what the CPU kernels give.
#[test]
fn attention_over_blocks_of_queries_equals_the_cpu_kernels() {
    let mut rng = StdRng::seed_from_u64(13);
    for (index, case) in cases().into_iter().enumerate() {
        let mask = case.mask();
        let [q, k, v, grad] = case.inputs(&mut rng).map(|t| t.inner());
        let want = kernel_results([q.clone(), k.clone(), v.clone(), grad.clone()], &mask);
        for rows in [1, 3] {
            let block_elements = rows * case.batch * case.heads * case.keys();
            let (out, lse) =
                blocked::attention_with_lse(q.clone(), k.clone(), v.clone(), &mask, block_elements);
            let grads = blocked::attention_backward(
                q.clone(),
                k.clone(),
                v.clone(),
                out.clone(),
                lse.clone(),
                grad.clone(),
                &mask,
                block_elements,
            );
            assert_results_close(
                &format!("case {index}, blocks of {rows} queries"),
                (out, lse, grads),
                want.clone(),
            );
        }
    }
}
