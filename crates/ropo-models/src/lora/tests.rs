use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{backend::Backend, Distribution, Tensor};

use super::{LoraConfig, LoraTarget};
use crate::{checkpoint, score, token_logps, CausalLm, ScoreRow};

type B = Autodiff<Flex>;

const PROBE: [u32; 8] = [1, 5, 9, 2, 7, 3, 8, 4];

fn fixture(name: &str) -> CausalLm<B> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    checkpoint::load::<B>(&path, &Default::default()).unwrap()
}

fn config(targets: &[LoraTarget]) -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: targets.to_vec(),
        seed: 11,
    }
}

/// `model` with every adapter's `B` replaced by random values, so the adapters change the
/// output (a fresh adapter's `B` is zero).
fn with_random_b(mut model: CausalLm<B>) -> CausalLm<B> {
    let device = Default::default();
    B::seed(&device, 5);
    model.visit_sites(&mut |site| {
        if let Some(adapter) = site.layer.parts().1 {
            let shape = adapter.b.val().dims();
            adapter.b = Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, 0.5),
                &device,
            ));
        }
    });
    model
}

fn logps(model: &CausalLm<B>) -> Vec<f64> {
    token_logps(model, &PROBE, &Default::default()).unwrap()
}

fn assert_close(a: &[f64], b: &[f64], tolerance: f64) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tolerance, "{x} vs {y}");
    }
}

#[test]
fn a_fresh_adapter_leaves_the_model_unchanged_and_a_trained_one_merges_exactly() {
    for name in ["llama", "gpt_neox", "gpt2"] {
        let base = fixture(name);
        let adapted = base.clone().with_lora(&config(&LoraTarget::ALL)).unwrap();
        assert_eq!(
            logps(&adapted),
            logps(&base),
            "{name}: B = 0 must change nothing"
        );
        let trained = with_random_b(adapted);
        let through_adapters = logps(&trained);
        assert!(
            through_adapters
                .iter()
                .zip(logps(&base))
                .any(|(a, b)| (a - b).abs() > 1e-3),
            "{name}: the random adapters must change the output"
        );
        assert_eq!(logps(&trained.without_adapters()), logps(&base), "{name}");
        let merged = trained.merged();
        assert!(!merged.has_adapters());
        assert_close(&logps(&merged), &through_adapters, 1e-5);
    }
}

#[test]
fn only_the_adapters_get_gradients() {
    let model = fixture("llama")
        .with_lora(&config(&[LoraTarget::Q, LoraTarget::V]))
        .unwrap();
    let sites = model.adapters().len();
    // The fixture has two layers: q and v in each.
    assert_eq!(sites, 4);
    let trained = with_random_b(model);
    let row = ScoreRow {
        prompt: &PROBE[..2],
        response: &PROBE[2..],
    };
    let scores = score(&trained, &[row], &Default::default()).unwrap();
    let grads = GradientsParams::from_grads(scores.sum.sum().backward(), &trained);
    assert_eq!(
        grads.len(),
        2 * sites,
        "A and B of each adapter, nothing else"
    );
    let (a, b) = {
        let (_, adapter) = &trained.adapters()[0];
        (adapter.a.id, adapter.b.id)
    };
    assert!(grads.get::<Flex, 2>(a).is_some() && grads.get::<Flex, 2>(b).is_some());
    assert_eq!(
        trained.num_params(),
        fixture("llama").num_params() + 4 * 4 * (32 + 32)
    );
}

#[test]
fn targets_the_model_does_not_have_are_refused() {
    let error = fixture("gpt2")
        .with_lora(&config(&[LoraTarget::Gate]))
        .expect_err("GPT-2 has no gate projection");
    assert!(error.to_string().contains("no projection"), "{error}");
    let error = fixture("gpt2")
        .with_lora(&LoraConfig {
            rank: 0,
            ..config(&LoraTarget::ALL)
        })
        .expect_err("rank 0");
    assert!(error.to_string().contains("lora_rank"), "{error}");
    assert_eq!(LoraTarget::parse("gate_proj"), Ok(LoraTarget::Gate));
    assert!(LoraTarget::parse("qkv").unwrap_err().contains("q, k, v"));
}
