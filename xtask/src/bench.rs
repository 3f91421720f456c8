//! `cargo xtask bench`: throughput measurements (never in tests).

use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use clap::{Args, Subcommand};
use ropo::backend::{Selected, NAME};
use ropo::models::{
    attention::AttentionMask, checkpoint, config::ModelConfig, llama::LlamaConfig, CausalLm,
};
use serde::Serialize;

use crate::CmdResult;

/// Which benchmark.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchKind,
}

#[derive(Subcommand)]
enum BenchKind {
    /// Forward (scoring) throughput of stories260K and a 4-layer d=256 Llama.
    Score(ScoreBench),
}

#[derive(Args)]
struct ScoreBench {
    /// Sequences per forward.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Timed forwards per model (after two warm-up forwards).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// The stories260K checkpoint.
    #[arg(long, default_value = "../shared/assets/models/stories260K.bin")]
    stories: std::path::PathBuf,
}

#[derive(Serialize)]
struct ScoreResult {
    model: String,
    backend: &'static str,
    batch: usize,
    seq: usize,
    tokens_per_s: f64,
    step_ms_p50: f64,
    step_ms_p90: f64,
}

/// Runs the chosen benchmark and prints JSON lines, then a table.
pub fn run(args: &BenchArgs) -> CmdResult {
    match &args.what {
        BenchKind::Score(bench) => score(bench),
    }
}

fn score(bench: &ScoreBench) -> CmdResult {
    let device = Default::default();
    let stories = checkpoint::load::<Selected>(&bench.stories, &device)?;
    let llama = ModelConfig::Llama(llama_4x256()).init::<Selected>(&device);
    let mut results = Vec::new();
    for (name, model) in [("stories260K", &stories), ("llama-4x256", &llama)] {
        results.push(time_forward(name, model, bench));
    }
    for result in &results {
        println!("{}", serde_json::to_string(result)?);
    }
    println!(
        "\n| model | backend | batch×seq | tokens/s | p50 ms | p90 ms |\n|---|---|---|---|---|---|"
    );
    for r in &results {
        println!(
            "| {} | {} | {}×{} | {:.0} | {:.1} | {:.1} |",
            r.model, r.backend, r.batch, r.seq, r.tokens_per_s, r.step_ms_p50, r.step_ms_p90
        );
    }
    Ok(())
}

/// The reference shape: 4 layers, d_model 256, 8 heads, SwiGLU 4×, vocab 512.
pub fn llama_4x256() -> LlamaConfig {
    LlamaConfig {
        model_type: "llama".into(),
        vocab_size: 512,
        hidden_size: 256,
        intermediate_size: 1024,
        num_hidden_layers: 4,
        num_attention_heads: 8,
        num_key_value_heads: None,
        head_dim: None,
        rms_norm_eps: 1e-5,
        rope_theta: None,
        rope_scaling: None,
        rope_parameters: None,
        max_position_embeddings: 1024,
        tie_word_embeddings: false,
        attention_bias: false,
        mlp_bias: false,
        hidden_act: ropo::models::activation::Activation::Silu,
    }
}

fn time_forward(name: &str, model: &CausalLm<Selected>, bench: &ScoreBench) -> ScoreResult {
    let device = Default::default();
    let ids: Vec<i64> = (0..bench.batch * bench.seq)
        .map(|i| (i * 7 % 500) as i64)
        .collect();
    let mask = AttentionMask::right_padded(bench.batch, bench.seq, &device);
    let forward = || {
        let tokens = Tensor::<Selected, 2, Int>::from_data(
            TensorData::new(ids.clone(), [bench.batch, bench.seq]),
            &device,
        );
        let logits = model.forward(tokens, &mask, None);
        // Reading one value waits for the backend to finish the whole forward.
        logits.sum().into_data();
    };
    forward();
    forward();
    let mut times: Vec<f64> = (0..bench.iters)
        .map(|_| {
            let start = Instant::now();
            forward();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let percentile = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize] * 1e3;
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    ScoreResult {
        model: name.into(),
        backend: NAME,
        batch: bench.batch,
        seq: bench.seq,
        tokens_per_s: (bench.batch * bench.seq) as f64 / mean,
        step_ms_p50: percentile(0.5),
        step_ms_p90: percentile(0.9),
    }
}
