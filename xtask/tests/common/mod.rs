//! What the `xtask` CLI tests share: a tiny experiment config and helpers to run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[allow(dead_code)] // only the data-parallel and multi-node tests use it
pub mod trainer_runs;

/// A gold-task experiment small enough to train in seconds: 2 losses × 2 noise rates × 2
/// seeds, 20 SFT steps and 10 preference steps per run.
#[allow(dead_code)] // not every test binary that includes this module runs it
pub const TINY: &str = r#"
losses = ["sigmoid", "ropo"]
noise = [0.0, 0.2]
seeds = 2
eval_pairs = 32
eval_prompts = 32
validation = 16
eval_every = 5

[sft]
examples = 256
steps = 20
batch = 32
lr = 1e-2

[preference]
pairs = 64
steps = 10
batch = 16
lr = 1e-3
warmup = 2
beta = 0.1
alpha = 14.0
epsilon = 0.2
"#;

/// A fresh, empty scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ropo-train-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `xtask train --quiet --config CONFIG --out OUT`.
#[allow(dead_code)] // not every test binary that includes this module runs it
pub fn train(config: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--quiet", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .output()
        .expect("xtask runs")
}

/// `xtask ARGS…`, which must succeed (the message is its stderr).
#[allow(dead_code)] // not every test binary that includes this module runs it
pub fn xtask_ok<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Asserts that a finished command succeeded, showing its stdout and stderr if not.
#[allow(dead_code)] // not every test binary that includes this module runs it
pub fn ok(output: &Output) {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
