//! The gradient of each operation ropo's models train through, on the backend this build
//! selects against the CPU's flex: so that when a whole training step disagrees
//! (`tests/backend_agreement.rs`), the operation at fault is named.
//!
//! Each case differentiates `Σ w ⊙ op(x)` for a fixed input `x` and fixed weights `w` and
//! compares `∂/∂x` elementwise, relative to the largest gradient. Run it with the backend's
//! feature (`cargo test --release --features wgpu --test backend_gradients`); a default build
//! compiles it out.
#![cfg(any(feature = "cuda", feature = "wgpu", feature = "ndarray"))]

use burn::backend::{Autodiff, Flex};
use burn::tensor::{
    activation, backend::AutodiffBackend, module, ElementConversion, Int, Tensor, TensorData,
};
use ropo::backend::Training;
use ropo::models::attention::{attend, split_heads, AttentionMask, KeyMask, TrainingBackend};
use ropo::models::rotary::Rotary;

/// Largest elementwise difference, relative to the largest flex gradient.
const TOLERANCE: f64 = 1e-4;

const ROWS: usize = 24;
const COLS: usize = 32;

/// A fixed `[rows, cols]` tensor whose values vary smoothly in `[-1, 1]`.
fn fixed<B: burn::tensor::backend::Backend>(rows: usize, cols: usize, phase: f32) -> Tensor<B, 2> {
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as f32) * 0.37 + phase).sin())
        .collect();
    Tensor::from_data(TensorData::new(values, [rows, cols]), &Default::default())
}

/// `∂/∂x Σ w ⊙ op(x)` for the fixed input, flattened.
fn gradient<B: AutodiffBackend>(op: fn(Tensor<B, 2>) -> Tensor<B, 2>) -> Vec<f64> {
    let x = fixed::<B>(ROWS, COLS, 0.0).require_grad();
    let y = op(x.clone());
    let [rows, cols] = y.dims();
    let loss = (y * fixed::<B>(rows, cols, 1.3)).sum();
    let grads = loss.backward();
    let grad = x.grad(&grads).expect("x is differentiated");
    grad.into_data()
        .to_vec::<f32>()
        .expect("f32 gradients")
        .into_iter()
        .map(f64::from)
        .collect()
}

/// The worst elementwise difference between the two gradients, relative to flex's largest.
fn difference(selected: &[f64], flex: &[f64]) -> f64 {
    let scale = flex.iter().fold(0.0f64, |m, g| m.max(g.abs())).max(1e-12);
    selected
        .iter()
        .zip(flex)
        .map(|(s, f)| (s - f).abs() / scale)
        .fold(0.0, f64::max)
}

fn matmul<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    x.matmul(fixed::<B>(COLS, 16, 0.7))
}

fn matmul_with_own_transpose<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    x.clone().matmul(x.transpose())
}

fn log_softmax<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    activation::log_softmax(x.mul_scalar(3.0), 1)
}

fn log_sum_exp<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let top = x.clone().max_dim(1);
    top.clone() + (x - top).exp().sum_dim(1).log()
}

fn gather_targets<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let targets: Vec<i64> = (0..ROWS as i64).map(|r| (r * 7) % COLS as i64).collect();
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [ROWS]), &x.device());
    activation::log_softmax(x, 1).gather(1, targets.unsqueeze_dim(1))
}

fn embedding_with_repeated_ids<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let ids: Vec<i64> = (0..40i64).map(|i| (i * 5) % 7).collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [2, 20]), &x.device());
    module::embedding(x, ids).reshape([40, COLS])
}

fn rms_norm<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let scale = (x.clone().powi_scalar(2).mean_dim(1) + 1e-5).sqrt().recip();
    x * scale
}

fn silu<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    activation::silu(x)
}

fn causal_softmax<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let scores = x.clone().matmul(x.transpose()).reshape([1, 1, ROWS, ROWS]);
    let blocked = KeyMask::causal(1, ROWS, ROWS).tensor::<B>(1, &scores.device());
    activation::softmax(scores.mask_fill(blocked, f32::NEG_INFINITY), 3).reshape([ROWS, ROWS])
}

/// ropo's attention node (its own backward), 2 query heads over 1 kv head, causal.
fn attention<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let qkv = x.reshape([1, ROWS, 2, COLS / 2]);
    let key = qkv.clone().narrow(2, 0, 1);
    let value = key.clone().mul_scalar(0.5);
    let out = B::masked_attention(qkv, key, value, &KeyMask::causal(1, ROWS, ROWS));
    out.reshape([ROWS, COLS])
}

/// ropo's attention node with stories260K's layout: 8 query heads over 4 kv heads of 8
/// dimensions (grouped-query attention), causal.
fn attention_grouped<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let query = x
        .clone()
        .matmul(fixed::<B>(COLS, 64, 0.9))
        .reshape([1, ROWS, 8, 8]);
    let key = x.clone().reshape([1, ROWS, 4, 8]);
    let value = (x.mul_scalar(0.5) + fixed::<B>(ROWS, COLS, 2.1)).reshape([1, ROWS, 4, 8]);
    let out = B::masked_attention(query, key, value, &KeyMask::causal(1, ROWS, ROWS));
    out.reshape([ROWS, 64])
}

/// [`attention_grouped`] over two right-padded rows of 12 positions (9 and 12 real).
fn attention_grouped_padded<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let query = x
        .clone()
        .matmul(fixed::<B>(COLS, 64, 0.9))
        .reshape([2, 12, 8, 8]);
    let key = x.clone().reshape([2, 12, 4, 8]);
    let value = (x.mul_scalar(0.5) + fixed::<B>(ROWS, COLS, 2.1)).reshape([2, 12, 4, 8]);
    let blocked: Vec<bool> = (0..2 * 12 * 12)
        .map(|i| {
            let (row, query, key) = (i / 144, i / 12 % 12, i % 12);
            key > query || (row == 0 && key >= 9 && key != query)
        })
        .collect();
    let mask = KeyMask::blocked(blocked, 2, 12, 12);
    B::masked_attention(query, key, value, &mask).reshape([ROWS, 64])
}

/// Llama's rotary embedding over 4 heads of 8 dimensions at positions 0 to 23.
fn rotary<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let positions: Vec<i64> = (0..ROWS as i64).collect();
    let angles = Rotary::new(8, 8, 10_000.0, None).angles::<B>(&positions, 1, &[4], &x.device());
    angles
        .apply(x.reshape([1, ROWS, 4, 8]))
        .reshape([ROWS, COLS])
}

/// Llama's rotary embedding over 8 heads of 8 dimensions (stories260K's query layout), fed by
/// a projection.
fn rotary_query_heads<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let positions: Vec<i64> = (0..ROWS as i64).collect();
    let angles = Rotary::new(8, 8, 10_000.0, None).angles::<B>(&positions, 1, &[8], &x.device());
    let query = x.matmul(fixed::<B>(COLS, 64, 0.9)).reshape([1, ROWS, 8, 8]);
    angles.apply(query).reshape([ROWS, 64])
}

/// How [`attention_layers`] varies from the model, to find which part a disagreement needs.
#[derive(Clone, Copy)]
struct Variant {
    kv_heads: usize,
    rotary: bool,
    shared_angles: bool,
    shared_mask: bool,
}

const MODEL: Variant = Variant {
    kv_heads: 4,
    rotary: true,
    shared_angles: true,
    shared_mask: true,
};

/// A fixed `[rows, cols]` weight divided by `√rows`, so that multiplying by it keeps values of
/// order one (as a trained model's do): larger activations saturate the softmax, where float
/// noise moves gradients by far more than any tolerance, on every backend alike.
fn scaled<B: burn::tensor::backend::Backend>(weight: Tensor<B, 2>) -> Tensor<B, 2> {
    let rows = weight.dims()[0] as f64;
    weight.mul_scalar(rows.sqrt().recip())
}

/// Llama's attention sublayer as the model runs it, with stories260K's heads: projections,
/// rotary queries and keys, grouped-query attention, output projection and residual, `layers`
/// times; `[batch · seq, COLS]` of input rows mixed from `x`.
fn attention_layers<B: TrainingBackend>(
    x: Tensor<B, 2>,
    make_mask: &dyn Fn() -> AttentionMask<B>,
    seq: usize,
    layers: usize,
    variant: Variant,
) -> Tensor<B, 2> {
    let device = x.device();
    let mask = make_mask();
    let batch = mask.batch();
    let kv = variant.kv_heads;
    let make_angles = || {
        Rotary::new(8, 8, 10_000.0, None).angles::<B>(mask.positions(), batch, &[8, kv], &device)
    };
    let angles = make_angles();
    let mut x = scaled(fixed::<B>(batch * seq, ROWS, 0.3))
        .matmul(x)
        .reshape([batch, seq, COLS]);
    for layer in 0..layers {
        let phase = layer as f32;
        let project = |cols: usize, shift: f32| {
            x.clone()
                .matmul(scaled(fixed::<B>(COLS, cols, phase + shift)).unsqueeze::<3>())
        };
        let own_angles = (!variant.shared_angles).then(make_angles);
        let angles = own_angles.as_ref().unwrap_or(&angles);
        let rotate = |t: Tensor<B, 4>| if variant.rotary { angles.apply(t) } else { t };
        let query = rotate(split_heads(project(64, 0.9), 8));
        let key = rotate(split_heads(project(8 * kv, 1.7), kv));
        let value = split_heads(project(8 * kv, 2.1), kv);
        let own_mask = (!variant.shared_mask).then(make_mask);
        let out = attend(query, key, value, own_mask.as_ref().unwrap_or(&mask))
            .matmul(scaled(fixed::<B>(64, COLS, phase + 0.4)).unsqueeze::<3>());
        x = x + out;
    }
    x.reshape([batch * seq, COLS])
}

/// One of [`attention_layers`] under `mask`.
fn attention_layer<B: TrainingBackend>(
    x: Tensor<B, 2>,
    mask: &AttentionMask<B>,
    seq: usize,
) -> Tensor<B, 2> {
    attention_layers(x, &|| mask.clone(), seq, 1, MODEL)
}

/// Three of [`attention_layers`] in `variant` at the shape scoring gives
/// `backend_agreement`'s pairs: six right-padded rows of 39 positions.
fn stacked<B: TrainingBackend>(x: Tensor<B, 2>, variant: Variant) -> Tensor<B, 2> {
    let device = x.device();
    attention_layers(
        x,
        &|| AttentionMask::<B>::right_padded(6, 39, &device),
        39,
        3,
        variant,
    )
}
/// [`stacked`] as the model runs them.
fn stacked_model<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    stacked(x, MODEL)
}
/// [`stacked`] with 8 kv heads (no grouping).
fn stacked_mha<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    stacked(
        x,
        Variant {
            kv_heads: 8,
            ..MODEL
        },
    )
}
/// [`stacked`] without rotary embeddings.
fn stacked_no_rotary<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    stacked(
        x,
        Variant {
            rotary: false,
            ..MODEL
        },
    )
}
/// [`stacked`] with rotary angles built for each layer.
fn stacked_own_angles<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    stacked(
        x,
        Variant {
            shared_angles: false,
            ..MODEL
        },
    )
}
/// [`stacked`] with a mask built for each layer.
fn stacked_own_masks<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    stacked(
        x,
        Variant {
            shared_mask: false,
            ..MODEL
        },
    )
}
/// [`stacked`] with angles and a mask built for each layer.
fn stacked_own_both<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    stacked(
        x,
        Variant {
            shared_mask: false,
            shared_angles: false,
            ..MODEL
        },
    )
}

/// [`attention_layer`] over two rows of 12 positions (9 and 12 real) under the padded mask
/// generation builds.
fn attention_layer_padded<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let key_valid: Vec<Vec<bool>> = [9, 12]
        .map(|real| (0..12).map(|i| i < real).collect())
        .into();
    let mask = AttentionMask::<B>::causal(&key_valid, 0, 12, &x.device());
    attention_layer(x, &mask, 12)
}

/// [`attention_layer`] at the shape scoring gives `backend_agreement`'s pairs: six
/// right-padded rows of 39 positions under the causal mask alone.
fn attention_layer_scoring<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let mask = AttentionMask::<B>::right_padded(6, 39, &x.device());
    attention_layer(x, &mask, 39)
}

/// ropo's vocabulary log-prob node (its own backward), in blocks of 5 of 16 columns.
fn target_logps<B: TrainingBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let targets: Vec<i64> = (0..ROWS as i64).map(|r| (r * 3) % 16).collect();
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [ROWS]), &x.device());
    let weight = fixed::<B>(COLS, 16, 0.2);
    B::target_logps(x, weight, targets, 5).unsqueeze_dim(1)
}

macro_rules! cases {
    ($($op:ident),* $(,)?) => {
        [$((
            stringify!($op),
            gradient::<Training>($op::<Training>),
            gradient::<Autodiff<Flex>>($op::<Autodiff<Flex>>),
        )),*]
    };
}

#[test]
fn each_operations_gradient_agrees_with_flex() {
    assert_agree(
        "gradients",
        cases![
            matmul,
            matmul_with_own_transpose,
            log_softmax,
            log_sum_exp,
            gather_targets,
            embedding_with_repeated_ids,
            rms_norm,
            silu,
            causal_softmax,
            attention,
            attention_grouped,
            attention_grouped_padded,
            rotary,
            rotary_query_heads,
            attention_layer_padded,
            attention_layer_scoring,
            target_logps,
        ],
    );
}

/// Asserts each case's gradient within [`TOLERANCE`] of flex's, printing every difference and
/// naming every case that disagrees (`what` says which set failed).
fn assert_agree<const N: usize>(what: &str, cases: [(&str, Vec<f64>, Vec<f64>); N]) {
    let mut failed = Vec::new();
    for (name, selected, flex) in cases {
        let worst = difference(&selected, &flex);
        println!("{name}: worst difference {worst:.1e} of the largest gradient");
        if worst > TOLERANCE {
            failed.push(format!("{name} ({worst:.1e})"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} {what} disagree with flex: {}",
        ropo::backend::NAME,
        failed.join(", ")
    );
}

/// `Σ x²` of a `[rows, cols]` tensor three ways (as the global gradient norm sums each
/// parameter's gradient), relative to flex's.
fn sums_of_squares<B: burn::tensor::backend::Backend>(rows: usize, cols: usize) -> [f64; 3] {
    let x = fixed::<B>(rows, cols, 0.4);
    let scalar = |t: Tensor<B, 1>| t.into_scalar().elem::<f64>();
    [
        scalar(x.clone().powf_scalar(2.0).sum()),
        scalar(x.clone().powi_scalar(2).sum()),
        scalar((x.clone() * x).sum()),
    ]
}

#[test]
fn large_sums_of_squares_agree_with_flex() {
    let mut failed = Vec::new();
    for [rows, cols] in [[24, 32], [512, 64], [64, 1376], [512, 512]] {
        let selected = sums_of_squares::<ropo::backend::Selected>(rows, cols);
        let flex = sums_of_squares::<Flex>(rows, cols);
        for (how, (s, f)) in ["powf_scalar(2)", "powi_scalar(2)", "x * x"]
            .iter()
            .zip(selected.iter().zip(flex))
        {
            let relative = (s - f).abs() / f.abs();
            println!("[{rows}, {cols}] {how}: {s} against flex {f} ({relative:.1e})");
            if relative > TOLERANCE {
                failed.push(format!("[{rows}, {cols}] {how} ({relative:.1e})"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "sums of squares disagree: {}",
        failed.join(", ")
    );
}

/// Three attention layers stacked with residuals, the model's way and with one part changed
/// at a time, so a disagreement that needs a stack (one layer agrees) is narrowed down.
#[test]
fn stacked_attention_layers_agree_with_flex() {
    assert_agree(
        "gradients of stacked attention layers",
        cases![
            stacked_model,
            stacked_mha,
            stacked_no_rotary,
            stacked_own_angles,
            stacked_own_masks,
            stacked_own_both,
        ],
    );
}
