//! The trainer's model folder: a tiny Llama made by transformers (`tests/fixtures/tiny_llama`)
//! trained for 5 ROPO steps on `tests/fixtures/tiny_pairs.jsonl`, exported, and reloaded. The
//! reloaded model must score like the trained policy in memory and unlike the input, and the
//! folder must keep the input's `config.json` and tokenizer files. Where `ROPO_PYTHON` names a
//! Python with transformers, the folder must also load there with the same log-probs.

use std::path::{Path, PathBuf};

use ropo::backend::{Selected, Training};
use ropo::data::template::Template;
use ropo::models::{checkpoint, peft, weights_file::SaveDtype};
use ropo::train::{
    scoring::pair_logp_sums,
    session::Session,
    trainer::TrainerConfig,
    trainer_output::{export_model, Export},
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ropo-trainer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config() -> TrainerConfig {
    TrainerConfig {
        model: fixtures().join("tiny_llama"),
        data: fixtures().join("tiny_pairs.jsonl"),
        template: Template::Plain,
        max_length: 32,
        max_prompt_length: 16,
        loss: "ropo".into(),
        steps: Some(5),
        batch: 4,
        lr: 1e-3,
        ..TrainerConfig::default()
    }
}

fn relative_gap(a: &[(f64, f64)], b: &[(f64, f64)]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| [(x.0, y.0), (x.1, y.1)])
        .map(|(x, y)| (x - y).abs() / x.abs().max(1e-12))
        .fold(0.0, f64::max)
}

#[test]
fn exported_model_reloads_with_the_trained_policys_log_probs_and_the_inputs_config() {
    let config = config();
    let data = config.prepare().unwrap();
    let dir = scratch("export");
    let device = Default::default();
    let outcome = config
        .train::<Training>(
            &data,
            Some(&dir.join("checkpoints")),
            &Session::default(),
            &device,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(outcome.history.len(), 5);
    let folder = dir.join("model");
    let dtype = config.output_dtype().unwrap();
    assert_eq!(dtype, SaveDtype::F32, "the fixture is f32");
    export_model(
        &outcome.model,
        &config.model,
        &config.model,
        &folder,
        Export::Merged(dtype, u64::MAX),
    )
    .unwrap();

    let trained = outcome.model;
    let reloaded = checkpoint::load::<Selected>(&folder, &device).unwrap();
    let input = checkpoint::load::<Selected>(&config.model, &device).unwrap();
    let pairs = &data.train[..8];
    let in_memory = pair_logp_sums(&trained, pairs, &device).unwrap();
    let from_disk = pair_logp_sums(&reloaded, pairs, &device).unwrap();
    let before = pair_logp_sums(&input, pairs, &device).unwrap();
    let gap = relative_gap(&in_memory, &from_disk);
    assert!(gap <= 1e-6, "reloaded log-probs differ by {gap:e} relative");
    let moved = relative_gap(&before, &in_memory);
    assert!(moved > 1e-4, "training changed log-probs by only {moved:e}");

    let read = |p: &Path| std::fs::read(p).unwrap();
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        assert_eq!(
            read(&folder.join(name)),
            read(&config.model.join(name)),
            "{name}"
        );
    }
    if let Ok(python) = std::env::var("ROPO_PYTHON") {
        transformers_agrees(&python, &folder, &data.train[0], in_memory[0]);
    }
}

#[test]
fn a_sharded_export_reloads_in_ropo_and_in_transformers() {
    let config = config();
    let data = config.prepare().unwrap();
    let device = Default::default();
    let model = checkpoint::load::<Selected>(&config.model, &device).unwrap();
    let dir = scratch("sharded");
    let folder = dir.join("model");
    let export = Export::Merged(SaveDtype::F32, 40_000);
    export_model(&model, &config.model, &config.model, &folder, export).unwrap();
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(folder.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let shards: std::collections::BTreeSet<&str> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(shards.len() > 1, "{shards:?}");
    let sums = std::fs::read_to_string(folder.join("SHA256SUMS")).unwrap();
    for shard in &shards {
        let size = std::fs::metadata(folder.join(shard)).unwrap().len();
        assert!(sums.contains(shard), "{shard} is not sealed");
        assert!(size <= 40_000 + 1024, "{shard}: {size} bytes");
    }
    assert!(!folder.join("model.safetensors").exists());
    let reloaded = checkpoint::load::<Selected>(&folder, &device).unwrap();
    let pairs = &data.train[..8];
    let original = pair_logp_sums(&model, pairs, &device).unwrap();
    assert_eq!(original, pair_logp_sums(&reloaded, pairs, &device).unwrap());
    if let Ok(python) = std::env::var("ROPO_PYTHON") {
        transformers_agrees(&python, &folder, &data.train[0], original[0]);
    }
}

/// Loads `folder` with transformers and compares the summed log-prob of `pair`'s chosen
/// response with ropo's (1e-4 relative).
fn transformers_agrees(
    python: &str,
    folder: &Path,
    pair: &ropo::data::TokenizedPair,
    (chosen, _): (f64, f64),
) {
    let script = r#"
import json, sys, torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float32)
prompt, response = json.loads(sys.argv[2]), json.loads(sys.argv[3])
ids = torch.tensor([prompt + response])
with torch.no_grad():
    logits = model(ids).logits[0].double().log_softmax(-1)
total = sum(logits[len(prompt) + i - 1, t].item() for i, t in enumerate(response))
print(total)
"#;
    let output = std::process::Command::new(python)
        .args(["-c", script])
        .arg(folder)
        .arg(serde_json::to_string(&pair.prompt).unwrap())
        .arg(serde_json::to_string(&pair.chosen).unwrap())
        .output()
        .expect("ROPO_PYTHON runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    let gap = (theirs - chosen).abs() / chosen.abs();
    eprintln!("summed log-prob: transformers {theirs}, ropo {chosen} ({gap:.1e} relative)");
    assert!(
        gap <= 1e-4,
        "transformers {theirs} vs ropo {chosen}: {gap:e} relative"
    );
}

#[test]
fn weights_are_saved_in_the_inputs_dtype_or_the_one_asked_for() {
    let bf16_input = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/ropo-models/tests/fixtures/llama_bf16_sharded");
    assert_eq!(
        checkpoint::stored_dtype(&bf16_input).unwrap(),
        SaveDtype::Bf16
    );
    let config = TrainerConfig {
        save_dtype: Some(SaveDtype::Bf16),
        ..config()
    };
    assert_eq!(config.output_dtype().unwrap(), SaveDtype::Bf16);
    let device = Default::default();
    let model = checkpoint::load::<Selected>(&config.model, &device).unwrap();
    let dir = scratch("bf16");
    let folder = dir.join("model");
    export_model(
        &model,
        &config.model,
        &config.model,
        &folder,
        Export::Merged(SaveDtype::Bf16, u64::MAX),
    )
    .unwrap();
    assert_eq!(checkpoint::stored_dtype(&folder).unwrap(), SaveDtype::Bf16);
    let full = std::fs::metadata(config.model.join("model.safetensors"))
        .unwrap()
        .len();
    let half = std::fs::metadata(folder.join("model.safetensors"))
        .unwrap()
        .len();
    assert!(half < full * 6 / 10, "{half} bytes against {full}");
    let data = config.prepare().unwrap();
    let reloaded = checkpoint::load::<Selected>(&folder, &device).unwrap();
    let before = pair_logp_sums(&model, &data.train[..8], &device).unwrap();
    let after = pair_logp_sums(&reloaded, &data.train[..8], &device).unwrap();
    let gap = relative_gap(&before, &after);
    assert!(
        gap > 0.0 && gap < 2e-2,
        "bf16 round trip moved log-probs by {gap:e}"
    );
}

#[test]
fn a_lora_run_trains_only_its_adapters_and_exports_them_merged_or_as_peft() {
    let config = TrainerConfig {
        lora_rank: 4,
        lora_dropout: 0.0,
        lr: 1e-2,
        ..config()
    };
    let data = config.prepare().unwrap();
    let dir = scratch("lora");
    let device = Default::default();
    let outcome = config
        .train::<Training>(
            &data,
            Some(&dir.join("checkpoints")),
            &Session::default(),
            &device,
            &mut |_| {},
        )
        .unwrap();
    let trained = outcome.model.clone();
    assert!(trained.has_adapters());
    let input = checkpoint::load::<Selected>(&config.model, &device).unwrap();
    let pairs = &data.train[..8];
    let in_memory = pair_logp_sums(&trained, pairs, &device).unwrap();
    let base = pair_logp_sums(&trained.without_adapters(), pairs, &device).unwrap();
    let before = pair_logp_sums(&input, pairs, &device).unwrap();
    assert_eq!(base, before, "the base weights must stay frozen");
    let moved = relative_gap(&before, &in_memory);
    assert!(moved > 1e-4, "training changed log-probs by only {moved:e}");

    let merged = dir.join("merged");
    let dtype = Export::Merged(config.output_dtype().unwrap(), u64::MAX);
    export_model(&outcome.model, &config.model, &config.model, &merged, dtype).unwrap();
    let reloaded = checkpoint::load::<Selected>(&merged, &device).unwrap();
    assert!(!reloaded.has_adapters());
    let gap = relative_gap(
        &in_memory,
        &pair_logp_sums(&reloaded, pairs, &device).unwrap(),
    );
    assert!(gap <= 1e-5, "the merged export differs by {gap:e} relative");

    let lora = config.lora().unwrap();
    let adapter = dir.join("adapter");
    let export = Export::Adapter(&lora);
    export_model(
        &outcome.model,
        &config.model,
        &config.model,
        &adapter,
        export,
    )
    .unwrap();
    assert!(adapter.join("tokenizer.json").is_file());
    assert!(!adapter.join("model.safetensors").exists());
    let loaded = peft::load_adapter(input, &adapter).unwrap();
    let gap = relative_gap(
        &in_memory,
        &pair_logp_sums(&loaded, pairs, &device).unwrap(),
    );
    assert!(gap <= 1e-6, "the PEFT adapter differs by {gap:e} relative");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_gguf_input_exports_a_hugging_face_folder_with_the_gguf_tokenizer() {
    let gguf_fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/ropo-gguf/fixtures");
    // The GGUF file sits beside another model's files, which must not be taken for its own.
    let dir = scratch("gguf");
    let gguf = dir.join("tiny-llama.gguf");
    std::fs::copy(gguf_fixtures.join("tiny-llama.gguf"), &gguf).unwrap();
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures().join("tiny_llama").join(name), dir.join(name)).unwrap();
    }
    let config = TrainerConfig {
        model: gguf.clone(),
        ..config()
    };
    assert_eq!(config.tokenizer_path(), gguf);
    assert_eq!(config.output_dtype().unwrap(), SaveDtype::F32, "quantised");
    let data = config.prepare().unwrap();
    let device = Default::default();
    let model = checkpoint::load::<Selected>(&gguf, &device).unwrap();
    let folder = dir.join("model");
    let export = Export::Merged(SaveDtype::F32, u64::MAX);
    export_model(&model, &gguf, &config.tokenizer_path(), &folder, export).unwrap();

    let reloaded = checkpoint::load::<Selected>(&folder, &device).unwrap();
    let pairs = &data.train[..4];
    let gap = relative_gap(
        &pair_logp_sums(&model, pairs, &device).unwrap(),
        &pair_logp_sums(&reloaded, pairs, &device).unwrap(),
    );
    assert!(gap <= 1e-6, "reloaded log-probs differ by {gap:e} relative");
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        exported["vocab_size"], 513,
        "the GGUF's config, not the folder's"
    );
    let (from_gguf, from_folder) = (
        ropo::data::load_tokenizer(&gguf).unwrap(),
        ropo::data::load_tokenizer(&folder).unwrap(),
    );
    let text = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n";
    assert_eq!(
        from_gguf.encode(text).unwrap(),
        from_folder.encode(text).unwrap()
    );
    assert_eq!(from_folder.eos_id(), Some(511));
    assert!(folder.join("chat_template.jinja").is_file());
    assert!(folder.join("generation_config.json").is_file());
}
