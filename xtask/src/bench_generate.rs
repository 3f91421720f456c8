//! `cargo xtask bench generate --model DIR`: sampling throughput with the KV cache (what
//! evaluation and rejection sampling run), beside transformers' `generate` on the same model
//! and shapes (`bench/torch_hf_generate.py`) with `--vs-torch`.

use std::{path::PathBuf, time::Instant};

use clap::Args;
use ropo::backend::{Selected, NAME};
use ropo::models::{generate, SamplingConfig};
use serde::Serialize;

use crate::CmdResult;

/// The model and the shapes sampled.
#[derive(Args)]
pub struct GenerateBench {
    /// A Hugging Face model folder (`config.json` alone: random weights).
    #[arg(long)]
    model: PathBuf,
    /// Prompts sampled together.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Tokens per prompt.
    #[arg(long, default_value_t = 32)]
    prompt_len: usize,
    /// Tokens sampled per prompt (no end-of-sequence stop).
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Timed calls after one warm-up call.
    #[arg(long, default_value_t = 1)]
    iters: usize,
    /// Also run transformers' `generate` on the same model and shapes.
    #[arg(long)]
    vs_torch: bool,
}

#[derive(Serialize)]
struct GenerateResult {
    model: String,
    backend: &'static str,
    batch: usize,
    prompt_len: usize,
    new_tokens: usize,
    tokens_per_s: f64,
    seconds: f64,
    peak_rss_mib: Option<f64>,
}

/// Times sampling (temperature 1 from the whole distribution, as the PyTorch script) and
/// prints JSON lines, then the ratio.
pub fn run(bench: &GenerateBench) -> CmdResult {
    let device = Default::default();
    crate::memory::reset_peak();
    let model = crate::bench_support::model_or_config::<Selected>(&bench.model, &device)?;
    let modulus = 500.min(model.vocab_size().saturating_sub(3)).max(1);
    let prompts: Vec<Vec<u32>> = (0..bench.batch)
        .map(|row| {
            (0..bench.prompt_len)
                .map(|i| ((i * 7 + row * 13) % modulus) as u32 + 3)
                .collect()
        })
        .collect();
    let sampling = SamplingConfig {
        max_new_tokens: bench.new_tokens,
        temperature: 1.0,
        top_k: None,
        top_p: None,
        seed: 0,
        stop_tokens: Vec::new(),
    };
    generate(&model, &prompts, &sampling, &device)?;
    let mut seconds = 0.0;
    let mut sampled = 0;
    for _ in 0..bench.iters.max(1) {
        let start = Instant::now();
        let out = generate(&model, &prompts, &sampling, &device)?;
        seconds += start.elapsed().as_secs_f64();
        sampled = out.iter().map(Vec::len).sum::<usize>() / out.len().max(1);
    }
    seconds /= bench.iters.max(1) as f64;
    let ours = GenerateResult {
        model: crate::bench_support::folder_name(&bench.model),
        backend: NAME,
        batch: bench.batch,
        prompt_len: bench.prompt_len,
        new_tokens: sampled,
        tokens_per_s: (bench.batch * sampled) as f64 / seconds,
        seconds,
        peak_rss_mib: crate::memory::peak_mib(),
    };
    println!("{}", serde_json::to_string(&ours)?);
    if bench.vs_torch {
        let device = if cfg!(feature = "cuda") {
            "cuda"
        } else {
            "cpu"
        };
        let args = [
            "--model".to_string(),
            bench.model.display().to_string(),
            "--batch".into(),
            bench.batch.to_string(),
            "--prompt-len".into(),
            bench.prompt_len.to_string(),
            "--new-tokens".into(),
            bench.new_tokens.to_string(),
            "--iters".into(),
            bench.iters.to_string(),
            "--device".into(),
            device.into(),
        ];
        let torch = crate::bench_support::run_python_bench("bench/torch_hf_generate.py", &args)?;
        println!("{torch}");
        let theirs = torch["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "sampling {}×{} new tokens: ropo {:.0} tokens/s, transformers generate {theirs:.0} tokens/s, ratio {:.2}",
            bench.batch,
            bench.new_tokens,
            ours.tokens_per_s,
            ours.tokens_per_s / theirs
        );
    }
    Ok(())
}
