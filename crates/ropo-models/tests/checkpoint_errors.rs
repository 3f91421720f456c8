//! Bad checkpoints and bad requests: each is an error that names the file or what is wrong,
//! never a panic. Also the save → load round trip.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::Flex;
use ropo_models::{
    checkpoint, score, token_logps, weights_file::SaveDtype, CausalLm, ModelError, ScoreRow,
};

type B = Flex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fresh copy of a fixture folder in the temp dir, to break in one way.
fn scratch_copy(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ropo-models-{}-{}-{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn load(path: &Path) -> Result<CausalLm<B>, ModelError> {
    checkpoint::load(path, &Default::default())
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(value.as_object_mut().unwrap());
    std::fs::write(path, value.to_string()).unwrap();
}

fn error_of(path: &Path) -> String {
    match load(path) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(error) => error.to_string(),
    }
}

#[test]
fn truncated_safetensors_is_named() {
    let dir = scratch_copy("llama");
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let message = error_of(&dir);
    assert!(message.contains("model.safetensors"), "{message}");
}

#[test]
fn corrupt_safetensors_header_is_named() {
    let dir = scratch_copy("llama");
    let file = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8..24].copy_from_slice(b"#not a json hdr#");
    std::fs::write(&file, &bytes).unwrap();
    let message = error_of(&dir);
    assert!(
        message.contains("model.safetensors") && message.contains("safetensors"),
        "{message}"
    );
}

#[test]
fn wrongly_shaped_tensor_is_named() {
    let dir = scratch_copy("llama");
    edit_config(&dir, |config| {
        config.insert("intermediate_size".into(), 48.into());
    });
    let message = error_of(&dir);
    assert!(
        message.contains("wrong tensors") && message.contains("gate_proj"),
        "{message}"
    );
}

#[test]
fn missing_tensors_are_listed_by_name() {
    let dir = scratch_copy("llama");
    edit_config(&dir, |config| {
        config.insert("num_hidden_layers".into(), 3.into());
    });
    let message = error_of(&dir);
    assert!(
        message.contains("missing tensors") && message.contains("model.layers.2.self_attn.q_proj"),
        "{message}"
    );
}

#[test]
fn unexpected_tensors_are_listed_by_name() {
    let dir = scratch_copy("llama");
    edit_config(&dir, |config| {
        config.insert("num_hidden_layers".into(), 1.into());
    });
    let message = error_of(&dir);
    assert!(
        message.contains("unexpected tensors") && message.contains("model.layers.1."),
        "{message}"
    );
}

#[test]
fn unknown_model_type_is_named() {
    let dir = scratch_copy("llama");
    edit_config(&dir, |config| {
        config.insert("model_type".into(), "bert".into());
    });
    let message = error_of(&dir);
    assert!(
        message.contains("config.json") && message.contains("unknown model_type 'bert'"),
        "{message}"
    );
}

#[test]
fn config_missing_a_field_names_it() {
    let dir = scratch_copy("llama");
    edit_config(&dir, |config| {
        config.remove("hidden_size");
    });
    let message = error_of(&dir);
    assert!(
        message.contains("config.json") && message.contains("hidden_size"),
        "{message}"
    );
}

#[test]
fn absent_checkpoint_names_the_path() {
    let message = error_of(&fixture("no-such-model"));
    assert!(message.contains("no-such-model"), "{message}");
}

#[test]
fn sequence_longer_than_the_context_is_refused() {
    let model = load(&fixture("llama")).unwrap();
    let long: Vec<u32> = (0..65).map(|i| i % 90).collect();
    let row = ScoreRow {
        prompt: &long[..1],
        response: &long[1..],
    };
    let error = score(&model, &[row], &Default::default()).unwrap_err();
    assert!(matches!(
        error,
        ModelError::ContextExceeded {
            tokens: 65,
            context: 64
        }
    ));
    let error = token_logps(&model, &[1, 96], &Default::default()).unwrap_err();
    assert!(
        error.to_string().contains("outside the vocabulary"),
        "{error}"
    );
}

#[test]
fn saved_checkpoint_loads_back_with_identical_log_probs() {
    for name in ["llama_gqa_bias", "llama", "gpt2", "gpt_neox"] {
        let model = load(&fixture(name)).unwrap();
        let out = scratch_copy(name).join("saved");
        checkpoint::save(&model, &out, SaveDtype::F32, u64::MAX).unwrap();
        let reloaded = load(&out).unwrap();
        assert_eq!(reloaded.config(), model.config());
        let ids = [1, 5, 9, 33, 2, 70, 11];
        assert!(out.join("config.json").exists());
        let device = Default::default();
        assert_eq!(
            token_logps(&model, &ids, &device).unwrap(),
            token_logps(&reloaded, &ids, &device).unwrap()
        );
    }
}

#[test]
fn a_bit_flip_in_saved_weights_is_caught_by_checksum_and_named() {
    let model = load(&fixture("llama")).unwrap();
    let out = scratch_copy("llama").join("flipped");
    checkpoint::save(&model, &out, SaveDtype::F32, u64::MAX).unwrap();
    let weights = out.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    // A bit in the last tensor's data: the file still parses and every shape still fits.
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(&weights, bytes).unwrap();
    let message = load(&out)
        .expect_err("a flipped bit must be refused")
        .to_string();
    assert!(
        message.contains("model.safetensors") && message.contains("checksum mismatch"),
        "{message}"
    );
}
