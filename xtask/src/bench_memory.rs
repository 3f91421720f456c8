//! `cargo xtask bench memory --model DIR`: peak resident memory (and speed) of a preference
//! step on one model four ways — full fine-tuning, LoRA, and each with activation
//! checkpointing — each in a `bench step` child process of its own (at this run's `--dtype`),
//! so that no row inherits another's freed memory.

use std::path::PathBuf;

use clap::Args;
use ropo::models::product::{matmul_precision, MatmulPrecision};

use crate::CmdResult;

/// The model and the step's shape.
#[derive(Args)]
pub struct MemoryBench {
    /// A Hugging Face model folder (`config.json` alone: random weights).
    #[arg(long)]
    model: PathBuf,
    /// Pairs per step.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Timed steps per row (after two warm-up steps).
    #[arg(long, default_value_t = 2)]
    iters: usize,
    /// LoRA rank of the LoRA rows.
    #[arg(long, default_value_t = 16)]
    lora_rank: usize,
    /// Also run PyTorch (transformers + peft) on each row's settings.
    #[arg(long)]
    vs_torch: bool,
}

/// One row per setting and trainer, as JSON lines, then a table.
pub fn run(bench: &MemoryBench) -> CmdResult {
    let mut rows = Vec::new();
    for (lora, checkpointing) in [(false, false), (false, true), (true, false), (true, true)] {
        let mut command = std::process::Command::new(std::env::current_exe()?);
        if matmul_precision() == MatmulPrecision::Bf16 {
            command.args(["--dtype", "bf16"]);
        }
        command
            .args(["bench", "step", "--model"])
            .arg(&bench.model)
            .args(["--batch", &bench.batch.to_string()])
            .args(["--seq", &bench.seq.to_string()])
            .args(["--iters", &bench.iters.to_string()]);
        if lora {
            command.args(["--lora-rank", &bench.lora_rank.to_string()]);
        }
        if checkpointing {
            command.arg("--gradient-checkpointing");
        }
        if bench.vs_torch {
            command.arg("--vs-torch");
        }
        let output = command.output()?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let reason = stderr.trim().trim_start_matches("error: ");
            return Err(format!("bench step failed: {reason}").into());
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if line.starts_with('{') {
                let row: serde_json::Value = serde_json::from_str(line)?;
                println!("{line}");
                rows.push(row);
            }
        }
    }
    println!(
        "\n| step of {}×{} | tokens/s | peak MiB |",
        bench.batch, bench.seq
    );
    println!("|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.0} | {:.0} |",
            row["model"].as_str().unwrap_or("?"),
            row["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            row["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
