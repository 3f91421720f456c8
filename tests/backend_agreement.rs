//! The backend this build selects (a GPU build's cuda or wgpu, or ndarray) against the CPU's
//! flex on the same inputs: scoring, the shared-prompt path, greedy generation, SFT steps and
//! preference steps of every loss, a checkpointed and resumed run, all from the real
//! stories260K checkpoint.
//!
//! Run it with the backend's feature, e.g. `cargo test --release --features wgpu --test
//! backend_agreement` (`.ci/run` does, on Mesa's lavapipe); a default build compiles it out,
//! since it would compare flex with itself. Its paths are relative to the repository root,
//! where cargo runs it, so that `bench/gpu.sh` can run a prebuilt copy there too.
#![cfg(any(feature = "cuda", feature = "wgpu", feature = "ndarray"))]

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use ropo::backend::{Selected, Training};
use ropo::core::{Loss, LossConfig, LossParams};
use ropo::data::{batches::BatchCursor, TokenizedPair};
use ropo::models::{
    attention::{AttentionBackend, TrainingBackend},
    checkpoint, generate, CausalLm, SamplingConfig,
};
use ropo::train::{
    optim::Trainer,
    reference::ReferenceLogps,
    schedule::LrSchedule,
    scoring::pair_logp_sums,
    step::{preference_step, sft_step},
    store::checkpoint::{self as run_checkpoint, Manifest, Restored},
};

/// Inference: log-probs of the two builds agree to this relative error.
const SCORE_TOLERANCE: f64 = 1e-4;
/// Training: losses, gradient norms and the log-probs of the updated weights after two AdamW
/// steps agree to this relative error (float sums run in another order on each backend).
const STEP_TOLERANCE: f64 = 1e-3;

fn model<B: AttentionBackend>() -> CausalLm<B> {
    ropo::backend::probe().unwrap();
    let path = Path::new("../shared/assets/models/stories260K.bin");
    checkpoint::load(path, &Default::default()).unwrap()
}

/// The 2-layer Llama fixture (4 heads, untied head, vocabulary 96).
fn tiny_llama<B: AttentionBackend>() -> CausalLm<B> {
    ropo::backend::probe().unwrap();
    let path = Path::new("tests/fixtures/tiny_llama");
    checkpoint::load(path, &Default::default()).unwrap()
}

/// Six pairs with prompts and responses of different lengths, so both the left-padded prompts
/// and the right-padded responses of the shared-prompt path are exercised.
fn pairs() -> Vec<TokenizedPair> {
    (0..6u32)
        .map(|row| {
            let token = |i: u32| (i * 37 + row * 101) % 500 + 3;
            let prompt_len = 3 + row * 2;
            TokenizedPair {
                prompt: std::iter::once(1)
                    .chain((0..prompt_len).map(token))
                    .collect(),
                chosen: (100..110 + row * 3).map(token).collect(),
                rejected: (200..205 + row * 5).map(token).collect(),
            }
        })
        .collect()
}

/// Summed log-probs `[chosen, rejected]` of every pair in turn, through the shared-prompt path.
fn pair_logps<B: AttentionBackend>(model: &CausalLm<B>, pairs: &[TokenizedPair]) -> Vec<f64> {
    pair_logp_sums(model, pairs, &Default::default())
        .unwrap()
        .into_iter()
        .flat_map(|(chosen, rejected)| [chosen, rejected])
        .collect()
}

/// Asserts every value within `tolerance` relative of flex's and prints the worst relative
/// difference (shown with `--nocapture`; docs/building.md states the measured ones).
fn assert_relative(what: &str, selected: &[f64], flex: &[f64], tolerance: f64) {
    assert_eq!(selected.len(), flex.len(), "{what}");
    let mut worst = 0.0f64;
    for (i, (s, f)) in selected.iter().zip(flex).enumerate() {
        let relative = (s - f).abs() / f.abs().max(1e-6);
        assert!(
            relative <= tolerance,
            "{what}[{i}]: {} {s} against flex {f} (tolerance {tolerance} relative)",
            ropo::backend::NAME
        );
        worst = worst.max(relative);
    }
    println!("{what}: worst relative difference {worst:.1e}");
}

fn trainer<B: TrainingBackend>() -> Trainer<CausalLm<B>, B> {
    Trainer::new(LrSchedule::constant(1e-3, 2), 0.0, Some(1.0))
}

/// Names the device the selected backend computes on, so that a log run with `--nocapture`
/// shows whether a GPU or Mesa's lavapipe computed the comparisons. Every test starts the
/// backend through `probe` (in `model` and `tiny_llama`) before any work, which on wgpu is
/// where the adapter is chosen and described.
#[test]
fn the_selected_backend_starts_and_names_its_device() {
    ropo::backend::probe().unwrap();
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    println!("wgpu adapter: {}", ropo::backend::wgpu_adapter().unwrap());
    println!("backend: {}", ropo::backend::NAME);
}

#[test]
fn shared_prompt_log_probs_agree_with_flex() {
    let pairs = pairs();
    let selected = pair_logps(&model::<Selected>(), &pairs);
    let flex = pair_logps(&model::<Flex>(), &pairs);
    assert_relative("log-probs", &selected, &flex, SCORE_TOLERANCE);
}

#[test]
fn greedy_generation_of_a_padded_batch_agrees_with_flex() {
    let prompts: Vec<Vec<u32>> = pairs().into_iter().take(3).map(|p| p.prompt).collect();
    let greedy = SamplingConfig {
        max_new_tokens: 48,
        temperature: 0.0,
        ..SamplingConfig::default()
    };
    let selected = generate(&model::<Selected>(), &prompts, &greedy, &Default::default()).unwrap();
    let flex = generate(&model::<Flex>(), &prompts, &greedy, &Default::default()).unwrap();
    assert_eq!(selected, flex);
}

/// Two SFT steps on each backend; their losses, gradient norms and the updated weights'
/// log-probs.
fn sft_run<B: TrainingBackend>() -> (Vec<f64>, Vec<f64>) {
    let pairs = pairs();
    let examples: Vec<(&[u32], &[u32])> = pairs
        .iter()
        .map(|p| (p.prompt.as_slice(), p.chosen.as_slice()))
        .collect();
    let mut model = model::<B>();
    let mut trainer = trainer::<B>();
    let mut numbers = Vec::new();
    for _ in 0..2 {
        let (next, loss, report) =
            sft_step(model, &mut trainer, &examples, &Default::default()).unwrap();
        model = next;
        numbers.extend([loss, report.grad_norm]);
    }
    (numbers, pair_logps(&model, &pairs))
}

#[test]
fn sft_steps_agree_with_flex() {
    let (selected, selected_logps) = sft_run::<Training>();
    let (flex, flex_logps) = sft_run::<Autodiff<Flex>>();
    assert_relative(
        "SFT loss and gradient norm",
        &selected,
        &flex,
        STEP_TOLERANCE,
    );
    assert_relative(
        "log-probs after SFT",
        &selected_logps,
        &flex_logps,
        STEP_TOLERANCE,
    );
}

/// Two preference steps of `loss` on each backend, the reference being the initial model;
/// the losses, gradient norms and the updated weights' log-probs. With `resume`, the run is
/// checkpointed after the first step (weights and AdamW moments, as `train` saves them) and
/// the second step runs on a fresh model and optimiser restored from that checkpoint.
fn preference_run<B: TrainingBackend>(loss: &LossConfig, resume: bool) -> (Vec<f64>, Vec<f64>) {
    let pairs = pairs();
    let batch: Vec<&TokenizedPair> = pairs.iter().collect();
    let mut model = model::<B>();
    let reference: Vec<ReferenceLogps> = pair_logp_sums(&model, &pairs, &Default::default())
        .unwrap()
        .into_iter()
        .map(|(chosen, rejected)| ReferenceLogps { chosen, rejected })
        .collect();
    let mut trainer = trainer::<B>();
    let mut numbers = Vec::new();
    for step in 1..=2 {
        let (next, report) = preference_step(
            model,
            &mut trainer,
            loss,
            &batch,
            &reference,
            2,
            &Default::default(),
        )
        .unwrap();
        model = next;
        numbers.extend([report.metrics.loss, report.optim.grad_norm]);
        if resume && step == 1 {
            (model, trainer) = checkpoint_and_restore(model, trainer);
        }
    }
    (numbers, pair_logps(&model, &pairs))
}

/// Saves `model` and `trainer` as a checkpoint, then restores them onto a freshly loaded model
/// and a new optimiser.
fn checkpoint_and_restore<B: TrainingBackend>(
    model: CausalLm<B>,
    trainer: Trainer<CausalLm<B>, B>,
) -> (CausalLm<B>, Trainer<CausalLm<B>, B>) {
    let folder = std::env::temp_dir().join(format!(
        "ropo-backend-agreement-{}-{}",
        ropo::backend::NAME.replace(' ', "-"),
        std::process::id()
    ));
    let manifest = Manifest::<()> {
        step: trainer.steps_done(),
        cursor: BatchCursor { epoch: 0, batch: 1 },
        history: Vec::new(),
        curve: Vec::new(),
    };
    run_checkpoint::save(&folder, &model, &trainer, &manifest, 1).unwrap();
    let saved = run_checkpoint::newest(&folder, &mut |warning| panic!("{warning}"))
        .unwrap()
        .expect("the checkpoint just saved");
    let restored: Restored<B, ()> = run_checkpoint::load(
        &saved,
        self::model::<B>(),
        self::trainer::<B>(),
        &Default::default(),
    )
    .unwrap();
    std::fs::remove_dir_all(&folder).unwrap();
    assert_eq!(restored.manifest, manifest);
    (restored.model, restored.trainer)
}

/// Two preference steps of every loss against flex's. ROPO's run on the selected backend is
/// checkpointed after its first step and resumed from the checkpoint, so it also shows that a
/// resumed run ends where flex's uninterrupted one does.
#[test]
fn preference_steps_of_every_loss_agree_with_flex() {
    for name in Loss::NAMES {
        let loss = Loss::from_name(name, &LossParams::default()).unwrap();
        let config = LossConfig::new(loss, 0.1).unwrap();
        let resume = name == "ropo";
        let (selected, selected_logps) = preference_run::<Training>(&config, resume);
        let (flex, flex_logps) = preference_run::<Autodiff<Flex>>(&config, false);
        let what = match resume {
            true => format!("{name} (resumed after step 1)"),
            false => name.to_string(),
        };
        assert_relative(
            &format!("{what}: loss and gradient norm"),
            &selected,
            &flex,
            STEP_TOLERANCE,
        );
        assert_relative(
            &format!("{what}: log-probs after two steps"),
            &selected_logps,
            &flex_logps,
            STEP_TOLERANCE,
        );
    }
}

/// The norm of each parameter's gradient (in the model's visiting order, with its shape) after
/// the SFT loss of the pairs' chosen responses (token ids taken modulo `vocab`), from the first
/// step's weights.
fn parameter_gradient_norms<B: TrainingBackend>(
    model: CausalLm<B>,
    vocab: u32,
) -> Vec<(Vec<usize>, f64)> {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::{backend::AutodiffBackend, ElementConversion, Tensor};
    use ropo::models::ScoreRow;

    struct Norms<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        norms: Vec<(Vec<usize>, f64)>,
        backend: std::marker::PhantomData<B>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Norms<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let dims = grad.dims().to_vec();
                let squares = grad.powf_scalar(2.0).sum().into_scalar().elem::<f64>();
                self.norms.push((dims, squares.sqrt()));
            }
        }
    }
    let within = |ids: &Vec<u32>| ids.iter().map(|t| t % vocab).collect::<Vec<u32>>();
    let pairs: Vec<TokenizedPair> = pairs()
        .iter()
        .map(|p| TokenizedPair {
            prompt: within(&p.prompt),
            chosen: within(&p.chosen),
            rejected: within(&p.rejected),
        })
        .collect();
    let rows: Vec<ScoreRow<'_>> = pairs
        .iter()
        .map(|p| ScoreRow {
            prompt: &p.prompt,
            response: &p.chosen,
        })
        .collect();
    let scores = ropo::models::score(&model, &rows, &Default::default()).unwrap();
    let loss = scores.sum.sum().neg() / scores.count.sum().clamp_min(1.0);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut visitor = Norms::<B> {
        grads: &grads,
        norms: Vec::new(),
        backend: std::marker::PhantomData,
    };
    model.visit(&mut visitor);
    visitor.norms
}

/// Each parameter's SFT gradient norm, for stories260K (5 layers, 8 query heads over 4 kv
/// heads, tied head) and the 2-layer Llama fixture (4 heads, untied), against flex's.
#[test]
fn each_parameters_sft_gradient_agrees_with_flex() {
    let models = [
        (
            "stories260K",
            parameter_gradient_norms::<Training>(model(), 512),
            parameter_gradient_norms::<Autodiff<Flex>>(model(), 512),
        ),
        (
            "tiny_llama",
            parameter_gradient_norms::<Training>(tiny_llama(), 96),
            parameter_gradient_norms::<Autodiff<Flex>>(tiny_llama(), 96),
        ),
    ];
    let mut failed = Vec::new();
    for (name, selected, flex) in models {
        assert_eq!(selected.len(), flex.len());
        for (i, ((dims, s), (_, f))) in selected.iter().zip(&flex).enumerate() {
            let relative = (s - f).abs() / f.abs().max(1e-12);
            println!("{name} parameter {i} {dims:?}: {s:.6} against flex {f:.6} ({relative:.1e})");
            if relative > STEP_TOLERANCE {
                failed.push(format!("{name} {i} {dims:?} ({relative:.1e})"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "gradients disagree: {}",
        failed.join(", ")
    );
}
