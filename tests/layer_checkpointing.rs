//! Activation checkpointing per decoder layer (`--gradient-checkpointing`) against one
//! backward over the whole forward: the same gradients of every parameter, for pairs (the
//! prompt's keys and values shared by both responses) and for plain sequences (SFT), on a
//! rotary family (Llama) and a learned-position one (GPT-2); and with LoRA dropout, a
//! recomputed layer draws the masks its forward drew. Its own test binary, as the backend's
//! random generator is one per process; its tests take turns with it.

use std::sync::{Mutex, PoisonError};

use burn::{
    module::{Module, ModuleVisitor, Param},
    optim::GradientsParams,
    tensor::{
        backend::{AutodiffBackend, Backend},
        ElementConversion, Tensor,
    },
};
use ropo::backend::Training;
use ropo::data::{gold::GoldTask, TokenizedPair};
use ropo::models::{
    config::ModelConfig,
    gpt2::Gpt2Config,
    layer_stages::{run_stages, LayerStages},
    llama::LlamaConfig,
    lora::{LoraConfig, LoraTarget},
    CausalLm, PairRow, PairStages, ResponseLogps, ScoreRow, ScoreStages,
};
use ropo::train::layer_checkpointing::{checkpointed_gradients, DropoutSeeds};

type B = Training;

/// The backend's generator: held by each test for its whole run.
static GENERATOR: Mutex<()> = Mutex::new(());

/// The largest difference between two gradients of `model`'s parameters, relative to the
/// largest gradient entry; a parameter with a gradient in one and not the other counts as 1.
fn relative_difference(model: &CausalLm<B>, a: &GradientsParams, b: &GradientsParams) -> f64 {
    struct Compare<'a> {
        grads: [&'a GradientsParams; 2],
        largest: f64,
        difference: f64,
        unmatched: usize,
    }
    impl<Ad: AutodiffBackend> ModuleVisitor<Ad> for Compare<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Ad, D>>) {
            let [a, b] = self
                .grads
                .map(|grads| grads.get::<Ad::InnerBackend, D>(param.id));
            match (a, b) {
                (Some(a), Some(b)) => {
                    let largest = a.clone().abs().max().into_scalar().elem::<f64>();
                    let difference = (a - b).abs().max().into_scalar().elem::<f64>();
                    self.largest = self.largest.max(largest);
                    self.difference = self.difference.max(difference);
                }
                (None, None) => {}
                _ => self.unmatched += 1,
            }
        }
    }
    let mut compare = Compare {
        grads: [a, b],
        largest: 0.0,
        difference: 0.0,
        unmatched: 0,
    };
    model.visit(&mut compare);
    assert!(compare.largest > 0.0, "no gradient at all");
    if compare.unmatched > 0 {
        return 1.0;
    }
    compare.difference / compare.largest
}

/// The chosen minus half the rejected responses' summed log-probs: a loss reading both.
fn margin_sum((chosen, rejected): (ResponseLogps<B>, ResponseLogps<B>)) -> (Tensor<B, 1>, ()) {
    ((chosen.sum - rejected.sum.mul_scalar(0.5)).sum(), ())
}

/// The gradients of one backward over the whole forward.
fn one_backward<S: LayerStages<B>>(
    model: &CausalLm<B>,
    stages: &S,
    loss: impl FnOnce(S::Output) -> (Tensor<B, 1>, ()),
) -> GradientsParams {
    let (value, ()) = loss(run_stages(model, stages));
    GradientsParams::from_grads(value.backward(), model)
}

fn rows(pairs: &[TokenizedPair]) -> Vec<PairRow<'_>> {
    pairs
        .iter()
        .map(|p| PairRow {
            prompt: &p.prompt,
            chosen: &p.chosen,
            rejected: &p.rejected,
        })
        .collect()
}

fn llama() -> ModelConfig {
    let vocab = GoldTask::default().vocab_size();
    ModelConfig::Llama(LlamaConfig::new(vocab, 32, 48, 3, 4, 64))
}

fn gpt2() -> ModelConfig {
    let config: Gpt2Config = serde_json::from_value(serde_json::json!({
        "vocab_size": GoldTask::default().vocab_size(),
        "n_positions": 64,
        "n_embd": 32,
        "n_layer": 3,
        "n_head": 4,
    }))
    .unwrap();
    ModelConfig::Gpt2(config)
}

#[test]
fn a_layer_at_a_time_gives_the_gradients_of_one_backward() {
    let _turn = GENERATOR.lock().unwrap_or_else(PoisonError::into_inner);
    let device = Default::default();
    let pairs = GoldTask::default().pairs(6, 2);
    let rows = rows(&pairs);
    let sequences: Vec<ScoreRow<'_>> = pairs
        .iter()
        .map(|p| ScoreRow {
            prompt: &p.prompt,
            response: &p.chosen,
        })
        .collect();
    for config in [llama(), gpt2()] {
        B::seed(&device, 5);
        let model = config.init::<B>(&device);
        let stages = PairStages::new(&model, &rows, &device).unwrap();
        let kept = one_backward(&model, &stages, margin_sum);
        let (recomputed, ()) = checkpointed_gradients(&model, &stages, margin_sum);
        let difference = relative_difference(&model, &kept, &recomputed);
        assert!(difference < 1e-5, "pairs: {difference}");

        let stages = ScoreStages::new(&model, &sequences, &device).unwrap();
        let nll = |scores: ResponseLogps<B>| (scores.sum.sum().neg(), ());
        let kept = one_backward(&model, &stages, nll);
        let (recomputed, ()) = checkpointed_gradients(&model, &stages, nll);
        let difference = relative_difference(&model, &kept, &recomputed);
        assert!(difference < 1e-5, "sequences: {difference}");
    }
}

#[test]
fn a_recomputed_layer_draws_the_dropout_masks_of_its_forward() {
    let _turn = GENERATOR.lock().unwrap_or_else(PoisonError::into_inner);
    let device = Default::default();
    let pairs = GoldTask::default().pairs(4, 3);
    let rows = rows(&pairs);
    B::seed(&device, 7);
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.5,
        targets: LoraTarget::ALL.to_vec(),
        seed: 1,
    };
    let model = llama().init::<B>(&device).with_lora(&lora).unwrap();
    // `B` starts at zero, so the gradient is `B`'s alone, `(dropout(x)·A)ᵀ · ∂y`, which the
    // masks change.
    let stages = PairStages::new(&model, &rows, &device).unwrap();
    B::seed(&device, 11);
    let (recomputed, ()) = checkpointed_gradients(&model, &stages, margin_sum);

    // The same forward kept whole, each layer's generator set as the checkpointed step sets it.
    B::seed(&device, 11);
    let seeds = DropoutSeeds::draw::<B>(&device);
    let mut hidden = stages.embed(&model);
    for index in 0..model.num_layers() {
        seeds.set_for_layer::<B>(&device, index);
        hidden = stages.layer(&model, index, hidden);
    }
    let (value, ()) = margin_sum(stages.head(&model, hidden));
    let kept = GradientsParams::from_grads(value.backward(), &model);
    let difference = relative_difference(&model, &kept, &recomputed);
    assert!(difference < 1e-5, "{difference}");

    // Other masks give other gradients: the check above can fail.
    let other = one_backward(&model, &stages, margin_sum);
    assert!(relative_difference(&model, &other, &recomputed) > 1e-3);
}
