//! `cargo xtask train --config` with a `[dataset]` config, end to end on the real stories260K
//! model and HH pairs (`../shared/assets`): LoRA, the framework's filter between rounds, flip
//! detection, the suspect-label list, the length judge, and continuing with `--resume`.

use std::path::{Path, PathBuf};

mod common;

use common::{scratch, train, xtask_ok};

/// A comparison small enough to train in seconds: DPO and ROPO with the filter at η = 0 and
/// 0.4, LoRA r2, 48 pairs read.
fn config(assets: &Path, noise_model: &str) -> String {
    format!(
        r#"
losses = ["dpo", "ropo+filter"]
noise = [0.0, 0.4]
noise_model = "{noise_model}"
seeds = 1
noise_detection = true

[dataset]
model = "{assets}/models/stories260K.bin"
tokenizer = "{assets}/models/tok512.bin"
pairs = "{assets}/preferences/helpful-base-test.jsonl.gz"
template = "hh"
max_length = 96
max_prompt_length = 64
heldout = 0.25
split_seed = 0
max_samples = 48

[lora]
rank = 2

[sft]
steps = 0
batch = 4
lr = 1e-3

[preference]
pairs = 0
steps = 4
batch = 4
lr = 1e-3
warmup = 0
beta = 0.1

[framework]
rounds = 2
rho = 0.25
samples = 2
temperature = 1.0
scorer = "policy_log_prob_per_token"
"#,
        assets = assets.display()
    )
}

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/assets")
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn a_lora_comparison_with_the_filter_lists_its_suspects_and_resumes_to_the_same_summary() {
    let dir = scratch("dataset");
    let file = dir.join("comparison.toml");
    std::fs::write(&file, config(&assets(), "symmetric")).unwrap();
    let out = dir.join("run");
    let first = train(&file, &out);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let summary_text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary_text).unwrap();
    let data = &summary["data"];
    assert_eq!(data["read"], 48);
    let train_pairs = data["train"].as_u64().unwrap() as usize;
    let entry = |method: &str, noise: f64, metric: &str| {
        summary["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["method"] == method && e["noise"] == noise && e["metric"] == metric)
            .cloned()
    };
    for method in ["dpo", "ropo+filter"] {
        for noise in [0.0, 0.4] {
            let accuracy = entry(method, noise, "clean_accuracy").unwrap()["mean"]
                .as_f64()
                .unwrap();
            assert!((0.0..=1.0).contains(&accuracy), "{method} {noise}");
        }
        // Flip detection needs flipped and clean pairs: only the noisy runs measure it.
        assert!(entry(method, 0.0, "noise_auc").is_none());
        let auc = entry(method, 0.4, "noise_auc").unwrap()["mean"]
            .as_f64()
            .unwrap();
        assert!((0.0..=1.0).contains(&auc), "{method}: {auc}");
    }
    assert!(entry("dpo", 0.4, "filter_precision").is_none());
    let precision = entry("ropo+filter", 0.4, "filter_precision").unwrap()["mean"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&precision));

    // One line per dropped pair: ⌊ρN⌋ per filtered run, clean ones at η = 0.
    let suspects = json_lines(&out.join("suspect_labels.jsonl"));
    assert_eq!(suspects.len(), 2 * (train_pairs / 4));
    for line in &suspects {
        assert_eq!(line["method"], "ropo+filter");
        assert!(line["index"].as_u64().unwrap() < 48);
        assert_eq!(line["round"], 1);
        if line["noise"] == 0.0 {
            assert_eq!(line["injected_flip"], false);
        }
    }
    let flagged = suspects
        .iter()
        .filter(|l| l["noise"] == 0.4 && l["injected_flip"] == true)
        .count() as f64;
    let dropped = (train_pairs / 4) as f64;
    assert!((flagged / dropped - precision).abs() < 1e-9);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for table in [
        "| clean_accuracy |",
        "| noise_auc |",
        "| filter_precision |",
    ] {
        assert!(report.contains(table), "{table} missing:\n{report}");
    }

    // Continuing a finished comparison trains nothing again and writes the same summary.
    let resumed = xtask_ok(["train", "--quiet", "--resume", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("4 runs"));
    let again = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert_eq!(again, summary_text);
    // A fresh start in the same folder is refused: it holds a run.
    assert!(!train(&file, &out).status.success());
}

#[test]
fn a_comparison_under_the_length_judge_flips_labels() {
    let dir = scratch("length-judge");
    let file = dir.join("judge.toml");
    let text = config(&assets(), "length_judge").replace("noise = [0.0, 0.4]", "noise = [0.2]");
    std::fs::write(&file, &text).unwrap();
    let output = train(&file, &dir.join("run"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The flip-detection AUC exists only where some labels were flipped and some not.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap())
            .unwrap();
    let measured = |metric: &str| {
        summary["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["metric"] == metric)
            .count()
    };
    assert_eq!(measured("noise_auc"), 2);
    assert_eq!(measured("filter_recall"), 1);
}
