//! The real tinyllamas stories260K model (llama2.c format) and its tokenizer, from
//! `../shared/assets/models`, against the reference values in that folder's README and the
//! expected greedy output of llama2.c's own test suite (`test_all.py`).

use std::path::PathBuf;

use burn::tensor::{Int, Tensor, TensorData};
use ropo::backend::Selected;
use ropo::data::{load_tokenizer, Tokenizer};
use ropo::models::{attention::AttentionMask, checkpoint, generate, CausalLm, SamplingConfig};

fn assets() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/assets");
    assert!(
        path.is_dir(),
        "shared assets not found at {}",
        path.display()
    );
    path
}

fn model() -> CausalLm<Selected> {
    checkpoint::load(
        &assets().join("models/stories260K.bin"),
        &Default::default(),
    )
    .unwrap()
}

fn tokenizer() -> Box<dyn Tokenizer> {
    load_tokenizer(&assets().join("models/tok512.bin")).unwrap()
}

/// Logits at every position of `tokens`, `[seq][vocab]`.
fn logits(model: &CausalLm<Selected>, tokens: &[u32]) -> Vec<Vec<f32>> {
    let device = Default::default();
    let ids = tokens.iter().map(|t| i64::from(*t)).collect();
    let input =
        Tensor::<Selected, 2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &device);
    let mask = AttentionMask::right_padded(1, tokens.len(), &device);
    let flat: Vec<f32> = model
        .forward(input, &mask, None)
        .into_data()
        .iter::<f32>()
        .collect();
    flat.chunks(model.vocab_size())
        .map(<[f32]>::to_vec)
        .collect()
}

fn top_two(row: &[f32]) -> [(usize, f32); 2] {
    let mut ranked: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    [ranked[0], ranked[1]]
}

#[test]
fn tokenizer_encodes_the_reference_prompt() {
    let tokenizer = tokenizer();
    let mut ids = vec![tokenizer.bos_id().unwrap()];
    ids.extend(tokenizer.encode("Once upon a time").unwrap());
    assert_eq!(ids, [1, 403, 407, 261, 378]);
}

#[test]
fn logits_match_the_float64_reference() {
    let model = model();
    let rows = logits(&model, &[1, 403, 407, 261, 378]);
    let first = &rows[0];
    for (id, expected) in [-6.22291, 8.40434, -6.22374, -6.22254].iter().enumerate() {
        assert!(
            (first[id] - expected).abs() < 1e-3,
            "id {id}: {}",
            first[id]
        );
    }
    let [(best, best_logit), (second, second_logit)] = top_two(first);
    assert_eq!((best, second), (403, 385));
    assert!((best_logit - 17.0235).abs() < 1e-3 && (second_logit - 15.4062).abs() < 1e-3);
    let [(best, best_logit), (second, second_logit)] = top_two(&rows[4]);
    assert_eq!((best, second), (432, 383));
    assert!((best_logit - 17.7994).abs() < 1e-3 && (second_logit - 14.2813).abs() < 1e-3);
}

#[test]
fn greedy_generation_from_bos_reproduces_llama2c_test_output() {
    let model = model();
    let tokenizer = tokenizer();
    let greedy = SamplingConfig {
        max_new_tokens: 200,
        temperature: 0.0,
        ..SamplingConfig::default()
    };
    let new = generate(&model, &[vec![1]], &greedy, &Default::default()).unwrap();
    let mut ids = vec![1];
    ids.extend(&new[0]);
    let text = tokenizer.decode(&ids).unwrap();
    let expected = include_str!("fixtures/stories260K_greedy.txt");
    assert_eq!(text, expected);
}
