//! The `ropo` binary: each command runs with its own flags, and clap refuses another
//! command's by name before anything is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A fresh, empty scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ropo-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ropo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ropo"))
        .args(args)
        .output()
        .expect("ropo runs")
}

/// `ropo train` on the tiny Llama fixture and its pairs: 2 steps of 4 pairs, writing `out`.
fn trainer_args(out: &Path) -> Vec<String> {
    let tiny = fixtures().join("tiny_llama");
    let pairs = fixtures().join("tiny_pairs.jsonl");
    [
        "train",
        "--quiet",
        "--model",
        path(&tiny),
        "--data",
        path(&pairs),
        "--template",
        "plain",
        "--max-length",
        "32",
        "--batch",
        "4",
        "--steps",
        "2",
        "--out",
        path(out),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn each_command_refuses_the_flags_of_another_by_name_and_writes_nothing() {
    let dir = scratch("refused");
    let out = dir.join("run");
    let trainer: Vec<String> = trainer_args(&out);
    let trainer: Vec<&str> = trainer.iter().map(String::as_str).collect();
    let dataset = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/hh-stories260k.toml");
    let gold = ["experiment", "gold", "--quiet", "--out", path(&out)];
    let real = [
        "experiment",
        "dataset",
        "--config",
        path(&dataset),
        "--out",
        path(&out),
    ];
    for (args, flag) in [
        (
            [&trainer[..], &["--losses", "dpo,ropo"]].concat(),
            "--losses",
        ),
        ([&trainer[..], &["--seeds", "2"]].concat(), "--seeds"),
        ([&trainer[..], &["--jobs", "2"]].concat(), "--jobs"),
        ([&gold[..], &["--warmup", "0"]].concat(), "--warmup"),
        ([&gold[..], &["--lr", "1e-4"]].concat(), "--lr"),
        ([&gold[..], &["--model", "m"]].concat(), "--model"),
        (
            vec!["experiment", "practical", "--config", path(&dataset)],
            "--config",
        ),
        ([&real[..], &["--jobs", "2"]].concat(), "--jobs"),
        (
            [&real[..], &["--stop-after-steps", "3"]].concat(),
            "--stop-after-steps",
        ),
        ([&real[..], &["--seed", "1"]].concat(), "--seed"),
    ] {
        let output = ropo(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(&format!("unexpected argument '{flag}")),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ropo_train_exports_the_model_and_resumes_only_with_its_own_settings() {
    let dir = scratch("train");
    let out = dir.join("run");
    let args = trainer_args(&out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = ropo(&[&args[..], &["--stop-after-steps", "1"]].concat());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("continue with --resume"), "{stdout}");
    let changed = ropo(&["train", "--resume", path(&out), "--lr", "0.5"]);
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert!(!changed.status.success());
    assert!(stderr.contains("lr = 0.5"), "{stderr}");
    let resumed = ropo(&["train", "--quiet", "--resume", path(&out)]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(out.join("model/model.safetensors").is_file());
    assert!(out.join("model/config.json").is_file());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    assert!(metrics.contains("\"rewards/accuracies\""), "{metrics}");
    std::fs::remove_dir_all(&dir).unwrap();
}
