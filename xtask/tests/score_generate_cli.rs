//! `cargo xtask score` and `cargo xtask generate` as a user of a chat model meets them: BOS put
//! once before a prompt that already starts with it (SmolLM2-Instruct's BOS is `<|im_start|>`,
//! which its chat template writes), `--chat` rendering through the model's own template, and a
//! PEFT adapter folder given as `--model`.

mod common;

use common::{ok, scratch, xtask_ok};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// `tiny_llama` with `tiny_chat`'s tokenizer: BOS `<|im_start|>` and SmolLM2's template.
fn chat_model() -> Vec<String> {
    let path = |name: &str| fixtures().join(name).display().to_string();
    vec![
        "--model".into(),
        path("tiny_llama"),
        "--tokenizer".into(),
        path("tiny_chat"),
    ]
}

/// What `tiny_chat`'s template renders for one user message, with the generation prompt.
fn rendered(user: &str) -> String {
    format!(
        "<|im_start|>system\nyou help and you are kind<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
}

/// `xtask score MODEL… --prompt PROMPT --response RESPONSE EXTRA…`: the summed log-prob.
fn logp(model: &[String], prompt: &str, response: &str, extra: &[&str]) -> f64 {
    let output = xtask_ok(
        ["score"]
            .iter()
            .map(|s| s.to_string())
            .chain(model.iter().cloned())
            .chain(["--prompt".into(), prompt.into()])
            .chain(["--response".into(), response.into()])
            .chain(extra.iter().map(|s| s.to_string())),
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    report["logp_sum"].as_f64().unwrap()
}

/// `xtask generate MODEL… --prompt PROMPT` greedy for 40 tokens: the text.
fn greedy(model: &[String], prompt: &str, extra: &[&str]) -> String {
    let output = xtask_ok(
        ["generate", "--temperature", "0", "--max-tokens", "40"]
            .iter()
            .map(|s| s.to_string())
            .chain(model.iter().cloned())
            .chain(["--prompt".into(), prompt.into()])
            .chain(extra.iter().map(|s| s.to_string())),
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_prompt_that_starts_with_bos_gets_no_second_one() {
    let model = chat_model();
    let with_bos = rendered("the cat");
    let without = with_bos.strip_prefix("<|im_start|>").unwrap();
    let once = logp(&model, &with_bos, "yes", &[]);
    assert_eq!(once, logp(&model, without, "yes", &[]));
    let twice = logp(&model, &format!("<|im_start|>{with_bos}"), "yes", &[]);
    assert_ne!(once, twice, "the fixture tells one BOS from two");
}

#[test]
fn chat_renders_the_prompt_through_the_models_template_with_bos_once() {
    let model = chat_model();
    let chat = logp(&model, "the cat", "yes", &["--chat"]);
    assert_eq!(chat, logp(&model, &rendered("the cat"), "yes", &[]));
    assert_ne!(
        chat,
        logp(&model, "the cat", "yes", &[]),
        "raw without --chat"
    );

    let text = greedy(&model, "the dog", &["--chat"]);
    assert!(
        text.starts_with("system you help and you are kind user the dog assistant "),
        "{text}"
    );
    let with_bos = rendered("the dog");
    assert_eq!(text, greedy(&model, &with_bos, &[]));
    let doubled = greedy(&model, &format!("<|im_start|>{with_bos}"), &[]);
    assert_ne!(text, doubled, "greedy text with BOS twice");
}

/// `xtask train` on `tiny_llama` and `tiny_pairs.jsonl` with LoRA rank 4 for `steps` steps,
/// into `out`, plus `extra`.
fn train_lora(out: &Path, steps: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--quiet", "--model"])
        .arg(fixtures().join("tiny_llama"))
        .arg("--data")
        .arg(fixtures().join("tiny_pairs.jsonl"))
        .args(["--template", "plain", "--max-length", "32", "--batch", "4"])
        .args([
            "--lr",
            "1e-2",
            "--lora-rank",
            "4",
            "--steps",
            steps,
            "--out",
        ])
        .arg(out)
        .args(extra)
        .output()
        .expect("xtask runs")
}

fn model_arg(folder: &Path) -> Vec<String> {
    vec!["--model".into(), folder.display().to_string()]
}

#[test]
fn an_adapter_folder_scores_and_generates_as_the_merged_export_of_the_same_run() {
    let dir = scratch("score-adapter");
    let (adapter, merged) = (dir.join("adapter"), dir.join("merged"));
    ok(&train_lora(&adapter, "6", &["--save-adapter"]));
    ok(&train_lora(&merged, "6", &[]));
    let (adapter, merged) = (
        model_arg(&adapter.join("model")),
        model_arg(&merged.join("model")),
    );
    let base = model_arg(&fixtures().join("tiny_llama"));
    for (prompt, response) in [("the cat sat on", "the mat"), ("who is it", "it is a dog")] {
        let (a, m) = (
            logp(&adapter, prompt, response, &[]),
            logp(&merged, prompt, response, &[]),
        );
        assert!(
            (a - m).abs() <= 1e-5 * m.abs().max(1.0),
            "adapter {a}, merged {m}"
        );
        let b = logp(&base, prompt, response, &[]);
        assert!(
            (a - b).abs() > 1e-3,
            "the adapter changed nothing: {a} vs base {b}"
        );
    }
    // tiny_llama's own 46 words do not cover the 96 ids it may generate; tiny_chat's do.
    let tokenizer = fixtures().join("tiny_chat").display().to_string();
    let with = ["--tokenizer", tokenizer.as_str()];
    assert_eq!(
        greedy(&adapter, "the cat", &with),
        greedy(&merged, "the cat", &with)
    );
}

/// `xtask ARGS…`, which must fail with one line naming `wanted` (each of them).
fn fails_with(args: &[String], wanted: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.trim_end();
    assert!(
        !line.contains('\n') && line.starts_with("error: "),
        "{stderr}"
    );
    for w in wanted {
        assert!(line.contains(w), "{w:?} not in {line}");
    }
}

#[test]
fn an_adapter_folder_is_refused_as_a_training_model_and_a_missing_base_names_the_field() {
    let dir = scratch("adapter-base");
    ok(&train_lora(&dir.join("run"), "1", &["--save-adapter"]));
    let folder = dir.join("run/model");
    let as_arg = |path: &Path| path.display().to_string();
    let data = fixtures().join("tiny_pairs.jsonl");
    let train = ["train", "--quiet", "--model", &as_arg(&folder), "--data"];
    let mut args: Vec<String> = train.iter().map(|s| s.to_string()).collect();
    args.extend([as_arg(&data), "--out".into(), as_arg(&dir.join("again"))]);
    fails_with(
        &args,
        &["PEFT adapter", "base_model_name_or_path", "tiny_llama"],
    );

    // The adapter alone, without the tokenizer files: the base's tokenizer is used.
    let alone = dir.join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    for name in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(folder.join(name), alone.join(name)).unwrap();
    }
    let score = |model: &Path| logp(&model_arg(model), "the cat", "sat", &[]);
    assert_eq!(score(&alone), score(&folder));

    let config = alone.join("adapter_config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["base_model_name_or_path"] = as_arg(&dir.join("no-such-base")).into();
    std::fs::write(&config, json.to_string()).unwrap();
    let score_args = |model: &Path| -> Vec<String> {
        [
            "score",
            "--model",
            &as_arg(model),
            "--prompt",
            "a",
            "--response",
            "b",
        ]
        .map(String::from)
        .to_vec()
    };
    fails_with(
        &score_args(&alone),
        &[
            "adapter_config.json",
            "base_model_name_or_path",
            "no-such-base",
        ],
    );
    json["base_model_name_or_path"] = serde_json::Value::Null;
    std::fs::write(&config, json.to_string()).unwrap();
    fails_with(
        &score_args(&alone),
        &["adapter_config.json", "base_model_name_or_path"],
    );
}
