use burn::backend::{Autodiff, Flex};
use burn::tensor::{activation::log_softmax, backend::Backend, Distribution, Int, Tensor};

use super::VocabBackend;

type B = Autodiff<Flex>;

/// Random hidden states `[rows, d]`, head `[d, vocab]` and targets `[rows]`, both float
/// tensors tracked.
fn inputs(rows: usize, d: usize, vocab: usize) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 1, Int>) {
    let device = Default::default();
    B::seed(&device, 7);
    let hidden = Tensor::random([rows, d], Distribution::Normal(0.0, 1.0), &device);
    let weight = Tensor::random([d, vocab], Distribution::Normal(0.0, 1.0), &device);
    let targets = Tensor::random([rows], Distribution::Uniform(0.0, vocab as f64), &device);
    (hidden, weight, targets)
}

/// The plain path: the whole `[rows, vocab]` log-softmax, then the targets' entries.
fn plain(hidden: Tensor<B, 2>, weight: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    log_softmax(hidden.matmul(weight), 1)
        .gather(1, targets.unsqueeze_dim(1))
        .squeeze_dim(1)
}

fn values<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn assert_close(a: &[f32], b: &[f32], tolerance: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tolerance * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// Weights of the 11 rows' log-probs in a loss that weights rows differently, so that every
/// row's gradient matters.
fn row_weights() -> Tensor<B, 1> {
    Tensor::from_floats(
        [1.0, -2.0, 0.5, 3.0, 0.0, 1.5, -1.0, 2.0, 0.25, -0.5, 1.0],
        &Default::default(),
    )
}

/// The blocked log-probs under autodiff against the whole log-softmax, at several block
/// sizes: the log-probs, the hidden states' gradient and, when `train_head`, the head's;
/// a head that does not train (LoRA's, the column-mean path) gets no gradient.
fn check_against_whole_log_softmax(train_head: bool) {
    let (hidden, weight, targets) = inputs(11, 8, 37);
    let row_weights = row_weights();
    let run = |logps: &dyn Fn(Tensor<B, 2>, Tensor<B, 2>) -> Tensor<B, 1>| {
        let h = hidden.clone().require_grad();
        let w = match train_head {
            true => weight.clone().require_grad(),
            false => weight.clone(),
        };
        let logps = logps(h.clone(), w.clone());
        let grads = (logps.clone() * row_weights.clone()).sum().backward();
        let grad_weight = w.grad(&grads).map(values);
        (values(logps), values(h.grad(&grads).unwrap()), grad_weight)
    };
    let reference = run(&|h, w| plain(h, w, targets.clone()));
    for block in [1, 4, 16, 37, 64] {
        let blocked = run(&|h, w| B::target_logps(h, w, targets.clone(), block));
        assert_close(&blocked.0, &reference.0, 1e-5, "log-probs");
        assert_close(&blocked.1, &reference.1, 1e-5, "d hidden");
        match (&blocked.2, &reference.2) {
            (Some(blocked), Some(reference)) => assert_close(blocked, reference, 1e-5, "d weight"),
            (blocked, _) => assert!(
                blocked.is_none() && !train_head,
                "a frozen head has no gradient"
            ),
        }
    }
}

#[test]
fn blocked_log_probs_and_their_gradients_equal_the_whole_log_softmax() {
    check_against_whole_log_softmax(true);
}

/// A head that does not train (LoRA's) takes the column-mean path: its log-probs and the
/// hidden states' gradient equal the whole log-softmax's, and the head gets no gradient.
#[test]
fn a_frozen_head_gives_the_whole_log_softmax_and_its_hidden_gradient() {
    check_against_whole_log_softmax(false);
}

/// The provided form (burn operations, what CUDA and wgpu run) of a frozen head's log-probs
/// and their gradients with respect to the hidden rows: the whole log-softmax's.
#[test]
fn the_provided_hidden_gradient_equals_the_whole_log_softmaxs() {
    let (hidden, weight, targets) = inputs(11, 8, 37);
    let h = hidden.clone().require_grad();
    let logps = plain(h.clone(), weight.clone(), targets.clone());
    // Row i's log-prob depends on hidden row i alone, so the gradient of their sum holds each
    // log-prob's gradient with respect to its row.
    let rows = values(h.grad(&logps.clone().sum().backward()).unwrap());
    for block in [1, 16, 37] {
        let (logps_blocked, gradient) = super::blocked_target_logps_with_hidden_gradient(
            hidden.clone().inner(),
            weight.clone().inner(),
            targets.clone().inner(),
            block,
        );
        assert_close(
            &values(logps_blocked),
            &values(logps.clone()),
            1e-5,
            "log-probs",
        );
        assert_close(&values(gradient), &rows, 1e-5, "d log-prob / d hidden");
    }
}

#[test]
fn without_autodiff_the_blocked_log_probs_equal_the_whole_log_softmax() {
    let (hidden, weight, targets) = inputs(9, 6, 50);
    let whole = values(plain(hidden.clone(), weight.clone(), targets.clone()));
    let blocked = Flex::target_logps(hidden.inner(), weight.inner(), targets.inner(), 7);
    assert_close(&values(blocked), &whole, 1e-5, "log-probs");
}

#[test]
fn a_block_holds_about_sixteen_mebi_elements_in_multiples_of_32_columns() {
    assert_eq!(super::block_columns(2048), 8192);
    assert_eq!(super::block_columns(3000), 5600);
    assert_eq!(super::block_columns(0), 1 << 24);
    assert_eq!(super::block_columns(usize::MAX), 32);
}
