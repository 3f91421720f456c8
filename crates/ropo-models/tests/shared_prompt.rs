//! Scoring pairs with the prompt computed once gives the log-probs of scoring each
//! prompt + response separately, for every family, with prompts and responses of different
//! lengths (left- and right-padding both exercised), an empty response, and gradients.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use ropo_models::{checkpoint, score, score_pairs, CausalLm, PairRow, ScoreRow};

type B = Flex;

fn load(name: &str) -> CausalLm<B> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    checkpoint::load(&path, &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn values(t: Tensor<impl burn::tensor::backend::Backend, 1>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

const PROMPTS: [&[u32]; 4] = [
    &[1, 5, 9, 33, 2],
    &[1, 70],
    &[1, 11, 12, 13, 14, 15, 16],
    &[1, 4, 4],
];
const CHOSEN: [&[u32]; 4] = [&[7, 8, 9], &[3], &[21, 22, 23, 24, 25, 26], &[]];
const REJECTED: [&[u32]; 4] = [&[30, 31], &[40, 41, 42, 43], &[50], &[6, 6]];

fn pairs() -> Vec<PairRow<'static>> {
    (0..4)
        .map(|i| PairRow {
            prompt: PROMPTS[i],
            chosen: CHOSEN[i],
            rejected: REJECTED[i],
        })
        .collect()
}

#[test]
fn shared_prompt_scores_equal_separate_scores_for_every_family() {
    let device = Default::default();
    for name in [
        "llama",
        "llama_gqa_bias",
        "gpt2",
        "gpt_neox",
        "gpt_neox_sequential",
    ] {
        let model = load(name);
        let (chosen, rejected) = score_pairs(&model, &pairs(), &device).unwrap();
        for (side, shared, responses) in
            [("chosen", chosen, CHOSEN), ("rejected", rejected, REJECTED)]
        {
            let rows: Vec<ScoreRow<'_>> = (0..4)
                .map(|i| ScoreRow {
                    prompt: PROMPTS[i],
                    response: responses[i],
                })
                .collect();
            let plain = score(&model, &rows, &device).unwrap();
            let (a, b) = (values(shared.sum), values(plain.sum));
            for (row, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!((x - y).abs() < 1e-5, "{name} {side} row {row}: {x} vs {y}");
            }
            assert_eq!(values(shared.count), values(plain.count), "{name} {side}");
        }
    }
}

#[test]
fn shared_prompt_gradients_equal_separate_gradients() {
    type A = Autodiff<Flex>;
    let device = Default::default();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_gqa_bias");
    let model: CausalLm<A> = checkpoint::load(&path, &device).unwrap();
    let (chosen, rejected) = score_pairs(&model, &pairs(), &device).unwrap();
    let shared = (chosen.sum - rejected.sum).sum();
    let separate = |responses: [&'static [u32]; 4]| {
        let rows: Vec<ScoreRow<'_>> = (0..4)
            .map(|i| ScoreRow {
                prompt: PROMPTS[i],
                response: responses[i],
            })
            .collect();
        score(&model, &rows, &device).unwrap().sum
    };
    let plain = (separate(CHOSEN) - separate(REJECTED)).sum();
    let grads_shared = shared.backward();
    let grads_plain = plain.backward();
    let CausalLm::Llama(llama) = &model else {
        panic!("a Llama fixture");
    };
    let weight = llama.model.embed_tokens.weight.val();
    let g_shared: Vec<f64> = weight
        .grad(&grads_shared)
        .unwrap()
        .into_data()
        .iter::<f64>()
        .collect();
    let g_plain: Vec<f64> = weight
        .grad(&grads_plain)
        .unwrap()
        .into_data()
        .iter::<f64>()
        .collect();
    let largest = g_plain.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(largest > 0.0);
    for (x, y) in g_shared.iter().zip(&g_plain) {
        assert!((x - y).abs() < 1e-5 * largest.max(1.0), "{x} vs {y}");
    }
}
