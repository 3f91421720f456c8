//! `cargo xtask bench vocab`: peak memory and time of the vocabulary part of a training step
//! (output head, log-softmax, pick of the targets, and their backward) on hidden states
//! `[rows, hidden]` and a head `[hidden, vocab]`, blocked (what ropo runs) against the whole
//! `[rows, vocab]` log-softmax (what a plain autodiff graph keeps).

use std::time::Instant;

use burn::tensor::{activation::log_softmax, Distribution, Int, Tensor};
use clap::Args;
use ropo::backend::{Training, NAME};
use ropo::models::vocab_logps::{block_columns, VocabBackend};
use serde::{Deserialize, Serialize};

use crate::CmdResult;

/// The shape of the vocabulary part.
#[derive(Args)]
pub struct VocabBench {
    /// Vocabulary size (Pythia's 50,304 by default).
    #[arg(long, default_value_t = 50_304)]
    vocab: usize,
    /// Hidden width.
    #[arg(long, default_value_t = 768)]
    hidden: usize,
    /// Scored positions (4 pairs × 2 sequences × 256 tokens by default).
    #[arg(long, default_value_t = 2048)]
    rows: usize,
    /// Measure one path (`blocked` or `whole`) in this process; without it each path runs in
    /// a process of its own, so neither inherits the other's freed memory.
    #[arg(long, hide = true)]
    only: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct VocabResult {
    path: String,
    backend: String,
    rows: usize,
    vocab: usize,
    hidden: usize,
    /// Forward plus backward, ms.
    ms: f64,
    /// Peak resident memory above what was resident before, MiB.
    peak_extra_mib: Option<f64>,
}

impl VocabBench {
    /// Whether this process measures one path for a parent `bench vocab` (which reads its
    /// stdout as one JSON value).
    pub fn is_child(&self) -> bool {
        self.only.is_some()
    }
}

/// Runs each path in a child process (or, with `--only`, one path here) and prints both.
pub fn run(bench: &VocabBench) -> CmdResult {
    if let Some(path) = &bench.only {
        println!("{}", serde_json::to_string(&measure_here(bench, path)?)?);
        return Ok(());
    }
    let mut results = Vec::new();
    for path in ["blocked", "whole"] {
        let output = std::process::Command::new(std::env::current_exe()?)
            .args(["bench", "vocab", "--only", path])
            .args(["--vocab", &bench.vocab.to_string()])
            .args(["--hidden", &bench.hidden.to_string()])
            .args(["--rows", &bench.rows.to_string()])
            .output()?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned().into());
        }
        let result: VocabResult = serde_json::from_slice(&output.stdout)?;
        println!("{}", serde_json::to_string(&result)?);
        results.push(result);
    }
    println!("\n| vocabulary part | rows×vocab | ms | peak extra MiB |");
    println!("|---|---|---|---|");
    for r in results {
        let peak = r.peak_extra_mib.map_or("?".into(), |m| format!("{m:.0}"));
        println!(
            "| {} | {}×{} | {:.0} | {peak} |",
            r.path, r.rows, r.vocab, r.ms
        );
    }
    Ok(())
}

/// Measures `path` (`blocked` or `whole`) in this process.
fn measure_here(bench: &VocabBench, path: &str) -> Result<VocabResult, String> {
    let device = Default::default();
    let hidden = Tensor::<Training, 2>::random(
        [bench.rows, bench.hidden],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let head = Tensor::<Training, 2>::random(
        [bench.hidden, bench.vocab],
        Distribution::Normal(0.0, 0.02),
        &device,
    );
    let targets = Tensor::<Training, 1, Int>::from_data(
        burn::tensor::TensorData::new(
            (0..bench.rows)
                .map(|i| ((i * 7919) % bench.vocab) as i64)
                .collect::<Vec<i64>>(),
            [bench.rows],
        ),
        &device,
    );
    let (hidden, head) = (hidden.require_grad(), head.require_grad());
    match path {
        "blocked" => Ok(measure(path, bench, || {
            Training::target_logps(
                hidden.clone(),
                head.clone(),
                targets.clone(),
                block_columns(bench.rows),
            )
        })),
        "whole" => Ok(measure(path, bench, || {
            log_softmax(hidden.clone().matmul(head.clone()), 1)
                .gather(1, targets.clone().unsqueeze_dim(1))
                .squeeze_dim(1)
        })),
        other => Err(format!("--only: {other:?} is not blocked or whole")),
    }
}

/// Times one forward and backward of `logps` and the peak memory it added.
fn measure(path: &str, bench: &VocabBench, logps: impl Fn() -> Tensor<Training, 1>) -> VocabResult {
    crate::memory::reset_peak();
    let before = crate::memory::current_mib();
    let start = Instant::now();
    let grads = logps().sum().backward();
    drop(grads);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let peak_extra_mib = crate::memory::peak_mib()
        .zip(before)
        .map(|(peak, now)| peak - now);
    VocabResult {
        path: path.to_string(),
        backend: NAME.to_string(),
        rows: bench.rows,
        vocab: bench.vocab,
        hidden: bench.hidden,
        ms,
        peak_extra_mib,
    }
}
