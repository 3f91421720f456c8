use burn::backend::Flex;
use ropo_models::{checkpoint, generate, token_logps, SamplingConfig};
use std::path::Path;

#[derive(serde::Deserialize)]
struct R {
    input_ids: Vec<Vec<u32>>,
    logprobs: Vec<Vec<f64>>,
    greedy: Vec<u32>,
}

#[test]
fn scratch_max_diff() {
    for name in ["gpt2", "gpt_neox", "gpt_neox_sequential", "llama"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let r: R =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        let m = checkpoint::load::<Flex>(&dir, &Default::default()).unwrap();
        let mut max = 0f64;
        for (ids, e) in r.input_ids.iter().zip(&r.logprobs) {
            let g = token_logps(&m, ids, &Default::default()).unwrap();
            for (a, b) in g.iter().zip(e) {
                max = max.max((a - b).abs());
            }
        }
        let cfg = SamplingConfig {
            max_new_tokens: r.greedy.len(),
            temperature: 0.0,
            ..SamplingConfig::default()
        };
        let out = generate(
            &m,
            &[r.input_ids[0][..3].to_vec()],
            &cfg,
            &Default::default(),
        )
        .unwrap();
        eprintln!(
            "DIFF {name}: max abs {max:.3e}; greedy match {}",
            out[0] == r.greedy
        );
    }
}
