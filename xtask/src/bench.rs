//! `cargo xtask bench`: throughput measurements (never in tests).

use std::{path::PathBuf, time::Instant};

use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::{Args, Subcommand};
use ropo::backend::{Selected, Training, NAME};
use ropo::core::{Loss, LossConfig};
use ropo::data::TokenizedPair;
use ropo::models::{
    attention::{AttentionMask, TrainingBackend},
    checkpoint,
    config::ModelConfig,
    llama::LlamaConfig,
    lora::{LoraConfig, LoraTarget},
    CausalLm,
};
use ropo::train::{
    optim::Trainer,
    reference::{reference_logps, ReferenceLogps},
    schedule::LrSchedule,
    step::preference_step,
};
use serde::Serialize;

use crate::{bench_support, CmdResult};

/// Which benchmark.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchKind,
}

#[derive(Subcommand)]
enum BenchKind {
    /// Forward (scoring) throughput of stories260K and a 4-layer d=256 Llama, or with
    /// `--model` the reference pass's scoring of `--batch` pairs (chosen and rejected log-prob
    /// sums, no autodiff) beside PyTorch's `torch.no_grad()` forward.
    Score(ScoreBench),
    /// Preference training steps (DPO: forward + backward on chosen and rejected, cached
    /// reference, AdamW update) on the same two models.
    Step(ScoreBench),
    /// Tokenized pairs/s on HH helpful-base, beside Python `tokenizers` on the same texts.
    Tokenize(crate::tokenize_bench::TokenizeBench),
    /// Peak memory of the vocabulary part of a step (head, log-softmax, targets, backward),
    /// blocked against the whole log-softmax.
    Vocab(crate::bench_vocab::VocabBench),
    /// Sampling throughput with the KV cache on `--model`, beside transformers' `generate`.
    Generate(crate::bench_generate::GenerateBench),
    /// Peak memory and speed of a step on `--model`: full fine-tuning, LoRA, and each with
    /// activation checkpointing, each in a process of its own.
    Memory(crate::bench_memory::MemoryBench),
    /// One epoch of DPO on HH helpful-base with stories260K, end to end (reference pass
    /// included), beside a TRL-style PyTorch loop.
    Epoch(crate::bench_epoch::EpochBench),
}

#[derive(Args)]
struct ScoreBench {
    /// Pairs per step (`step`) or per scoring batch (`score --model`), each pair two sequences;
    /// sequences per forward (`score` on the built-in models).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Timed steps or forwards per model (after two warm-up ones).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// The stories260K checkpoint.
    #[arg(long, default_value = "../shared/assets/models/stories260K.bin")]
    stories: PathBuf,
    /// (`step`, and `score` with `--model`) After each model, run the PyTorch reference with
    /// the same shapes (`bench/torch_pref_step.py`, or `bench/torch_hf_step.py` on `--model`),
    /// in f32 and under bf16 autocast, and print the ratio to the faster; the interpreter is
    /// `$ROPO_PYTHON`, else `python3`.
    #[arg(long)]
    vs_torch: bool,
    /// (`step` and `score`) A model to time instead of the two built-in ones: a Hugging Face
    /// folder (one with `config.json` alone gets random weights, `bench/make_random_model.py`),
    /// a llama.cpp `.gguf` or a llama2.c `.bin` file.
    #[arg(long)]
    model: Option<PathBuf>,
    /// (`step` only) LoRA rank on every projection (0: full fine-tuning), α twice the rank.
    #[arg(long, default_value_t = 0)]
    lora_rank: usize,
    /// (`step` only) Activation checkpointing, as the trainer's `--gradient-checkpointing`.
    #[arg(long)]
    gradient_checkpointing: bool,
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
    /// Peak resident memory while the model ran (weights included), MiB.
    peak_rss_mib: Option<f64>,
}

/// Runs the chosen benchmark and prints the CPU, JSON lines, then a table.
pub fn run(args: &BenchArgs) -> CmdResult {
    if !matches!(&args.what, BenchKind::Vocab(bench) if bench.is_child()) {
        println!("{}", cpu_line());
    }
    match &args.what {
        BenchKind::Score(bench) => score(bench),
        BenchKind::Step(bench) => step::<Training>(bench),
        BenchKind::Tokenize(bench) => crate::tokenize_bench::bench_tokenize(bench),
        BenchKind::Epoch(bench) => crate::bench_epoch::run(bench),
        BenchKind::Vocab(bench) => crate::bench_vocab::run(bench),
        BenchKind::Memory(bench) => crate::bench_memory::run(bench),
        BenchKind::Generate(bench) => crate::bench_generate::run(bench),
    }
}

/// The step benchmark on training backend `B`.
fn step<B: TrainingBackend<Device = Device<Selected>>>(bench: &ScoreBench) -> CmdResult {
    let device = Default::default();
    let models = match &bench.model {
        Some(dir) => vec![(
            bench_support::folder_name(dir),
            bench_support::model_or_config::<B>(dir, &device)?,
        )],
        None => vec![
            (
                "stories260K".to_string(),
                checkpoint::load::<B>(&bench.stories, &device)?,
            ),
            (
                "llama-4x256".to_string(),
                ModelConfig::Llama(llama_4x256()).init::<B>(&device),
            ),
        ],
    };
    let mut results = Vec::new();
    for (name, model) in models {
        let model = match bench.lora_rank {
            0 => model,
            rank => model.with_lora(&LoraConfig {
                rank,
                alpha: 2.0 * rank as f64,
                dropout: 0.0,
                targets: LoraTarget::ALL.to_vec(),
                seed: 0,
            })?,
        };
        let mut label = match bench.lora_rank {
            0 => name.clone(),
            rank => format!("{name} LoRA r{rank}"),
        };
        if bench.gradient_checkpointing {
            label.push_str(" checkpointed");
        }
        let ours = time_steps(&format!("{label}{}", precision_label()), model, bench)?;
        results.push(ours);
        if bench.vs_torch {
            beside_torch(&name, &label, bench, &[], &mut results)?;
        }
    }
    print_results("DPO step", &results)
}

/// Runs PyTorch's reference (`extra`: its mode's arguments) in f32 and under bf16 autocast,
/// prints ropo's tokens/s (the last of `results`) against both and the ratio to the faster,
/// and adds PyTorch's rows to `results`.
fn beside_torch(
    name: &str,
    label: &str,
    bench: &ScoreBench,
    extra: &[&str],
    results: &mut Vec<ScoreResult>,
) -> CmdResult {
    let ours = results.last().expect("ropo ran first").tokens_per_s;
    let torch: Vec<ScoreResult> = TORCH_AUTOCASTS
        .iter()
        .map(|autocast| torch_step(name, label, bench, autocast, extra))
        .collect::<Result<_, _>>()?;
    let best = torch
        .iter()
        .map(|result| result.tokens_per_s)
        .fold(f64::NAN, f64::max);
    println!(
        "{label}: ropo{} {ours:.0} tokens/s; PyTorch f32 {:.0}, bf16 autocast {:.0} tokens/s; \
         ratio to PyTorch's faster {:.2}",
        precision_label(),
        torch[0].tokens_per_s,
        torch[1].tokens_per_s,
        ours / best
    );
    results.extend(torch);
    Ok(())
}

/// Runs the PyTorch reference step of model `name` on the same shapes, on the GPU when this
/// build computes on CUDA (else the CPU), and reads its JSON line (row `label`).
fn torch_step(
    name: &str,
    label: &str,
    bench: &ScoreBench,
    autocast: &str,
    extra: &[&str],
) -> Result<ScoreResult, Box<dyn std::error::Error>> {
    let (device, backend) = if cfg!(feature = "cuda") {
        ("cuda", "torch cuda")
    } else {
        ("cpu", "torch cpu")
    };
    let (script, mut args) = torch_step_command(name, device, bench)?;
    args.extend(["--autocast".to_string(), autocast.to_string()]);
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let line = bench_support::run_python_bench(script, &args)?;
    let number = |key: &str| line[key].as_f64().unwrap_or(f64::NAN);
    let under = match autocast {
        "none" => "",
        _ => " bf16 autocast",
    };
    Ok(ScoreResult {
        model: format!("{label} (PyTorch{under})"),
        backend,
        batch: bench.batch,
        seq: bench.seq,
        tokens_per_s: number("tokens_per_s"),
        step_ms_p50: number("step_ms_p50"),
        step_ms_p90: number("step_ms_p90"),
        peak_rss_mib: line["peak_rss_mib"].as_f64(),
    })
}

/// The forward precisions PyTorch's step runs at beside ropo's (`--autocast` of its scripts):
/// f32, then under `torch.autocast(dtype=torch.bfloat16)`, so that a ratio is against
/// PyTorch's faster configuration on the machine.
const TORCH_AUTOCASTS: [&str; 2] = ["none", "bf16"];

/// ` bf16` when products run in bf16 (`--dtype bf16` on a CPU with AMX-BF16 or AVX-512 BF16), for result labels.
fn precision_label() -> &'static str {
    match ropo::backend::products_precision() {
        ropo::models::product::MatmulPrecision::F32 => "",
        ropo::models::product::MatmulPrecision::Bf16 => " bf16",
    }
}

/// The PyTorch reference script of `bench step --vs-torch` on model `name` and its arguments:
/// `bench/torch_hf_step.py` on `--model`, else `bench/torch_pref_step.py` on a built-in model
/// (whose options the test below checks against the script's own parser).
fn torch_step_command(
    name: &str,
    device: &str,
    bench: &ScoreBench,
) -> Result<(&'static str, Vec<String>), String> {
    if bench.gradient_checkpointing && bench.model.is_none() {
        return Err("--gradient-checkpointing with --vs-torch needs --model (the built-in models' PyTorch script has no checkpointing)".into());
    }
    let (script, model) = match &bench.model {
        Some(dir) => ("bench/torch_hf_step.py", dir.display().to_string()),
        None => ("bench/torch_pref_step.py", name.to_string()),
    };
    let mut args = vec![
        "--model".to_string(),
        model,
        "--batch".into(),
        bench.batch.to_string(),
        "--seq".into(),
        bench.seq.to_string(),
        "--iters".into(),
        bench.iters.to_string(),
        "--device".into(),
        device.into(),
        "--lora-rank".into(),
        bench.lora_rank.to_string(),
    ];
    if bench.gradient_checkpointing {
        args.push("--gradient-checkpointing".into());
    }
    Ok((script, args))
}

/// The first line of every `bench` output: the CPU it ran on, as results differ between
/// machines, most with the bf16 instructions (`avx512_bf16`, `amx_bf16`).
fn cpu_line() -> String {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    match std::fs::read_to_string("/proc/cpuinfo") {
        Ok(cpuinfo) => describe_cpu(&cpuinfo, threads),
        Err(_) => format!("cpu: unknown (no /proc/cpuinfo), {threads} threads"),
    }
}

/// [`cpu_line`] of the text of `/proc/cpuinfo`: the first processor's model name and flags.
fn describe_cpu(cpuinfo: &str, threads: usize) -> String {
    let field = |key: &str| {
        cpuinfo.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == key).then(|| value.trim())
        })
    };
    let model = field("model name").unwrap_or("unknown");
    let flags: Vec<&str> = field("flags").map_or(Vec::new(), |f| f.split_whitespace().collect());
    let has = |flag: &str| if flags.contains(&flag) { "yes" } else { "no" };
    format!(
        "cpu: {model}, {threads} threads; avx512_bf16 {}, amx_bf16 {}",
        has("avx512_bf16"),
        has("amx_bf16")
    )
}

/// Times `bench.iters` DPO steps on pairs with a 32-token prompt and responses filling `seq`.
fn time_steps<B: TrainingBackend<Device = Device<Selected>>>(
    name: &str,
    mut model: CausalLm<B>,
    bench: &ScoreBench,
) -> Result<ScoreResult, Box<dyn std::error::Error>> {
    crate::memory::reset_peak();
    let device = Default::default();
    let pairs = synthetic_pairs(bench, model.vocab_size());
    let refs = vec![
        ReferenceLogps {
            chosen: -500.0,
            rejected: -500.0
        };
        bench.batch
    ];
    let batch: Vec<&TokenizedPair> = pairs.iter().collect();
    let loss = LossConfig::new(Loss::Sigmoid, 0.1)?;
    let mut trainer = Trainer::new(LrSchedule::constant(1e-4, bench.iters + 2), 0.0, Some(1.0))
        .with_layer_checkpointing(bench.gradient_checkpointing);
    let mut times = Vec::with_capacity(bench.iters);
    for iter in 0..bench.iters + 2 {
        let start = Instant::now();
        let (next, _) = preference_step(model, &mut trainer, &loss, &batch, &refs, 1, &device)?;
        model = next;
        if iter >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    // Each pair is two sequences of `seq` tokens.
    Ok(summarise(name, bench, 2 * bench.batch * bench.seq, times))
}

/// `bench.batch` pairs of `bench.seq` tokens, as PyTorch's scripts build them
/// (`synthetic_pairs` of `bench/torch_hf_step.py`): a prompt of min(32, seq / 2) tokens, token
/// (pos·7 + row·13) mod 500 + 3 at position pos of the chosen sequence, the rejected one the
/// next position's token.
fn synthetic_pairs(bench: &ScoreBench, vocab: usize) -> Vec<TokenizedPair> {
    let prompt_len = 32.min(bench.seq / 2);
    let ids = 500.min(vocab.saturating_sub(3)).max(1);
    (0..bench.batch)
        .map(|row| {
            let token = |i: usize| ((i * 7 + row * 13) % ids) as u32 + 3;
            TokenizedPair {
                prompt: (0..prompt_len).map(token).collect(),
                chosen: (prompt_len..bench.seq).map(token).collect(),
                rejected: (prompt_len..bench.seq).map(|i| token(i + 1)).collect(),
            }
        })
        .collect()
}

fn score(bench: &ScoreBench) -> CmdResult {
    if bench.lora_rank > 0 || bench.gradient_checkpointing {
        return Err(
            "--lora-rank and --gradient-checkpointing are `bench step`'s: `score` times \
                    the reference pass, which runs the base model without autodiff"
                .into(),
        );
    }
    if let Some(dir) = &bench.model {
        return score_model(dir, bench);
    }
    if bench.vs_torch {
        return Err(
            "`bench score --vs-torch` needs --model DIR (PyTorch's scoring reference \
                    runs a Hugging Face folder)"
                .into(),
        );
    }
    let device = Default::default();
    let stories = checkpoint::load::<Selected>(&bench.stories, &device)?;
    let llama = ModelConfig::Llama(llama_4x256()).init::<Selected>(&device);
    let mut results = Vec::new();
    for (name, model) in [("stories260K", &stories), ("llama-4x256", &llama)] {
        results.push(time_forward(name, model, bench));
    }
    print_results("forward", &results)
}

/// The reference pass's scoring on `--model`: `bench.batch` pairs (chosen and rejected in one
/// forward on the inner backend, log-prob sums of the responses), beside PyTorch's
/// `torch.no_grad()` forward of the same sequences.
fn score_model(dir: &std::path::Path, bench: &ScoreBench) -> CmdResult {
    let device = Default::default();
    crate::memory::reset_peak();
    let model = bench_support::model_or_config::<Selected>(dir, &device)?;
    let pairs = synthetic_pairs(bench, model.vocab_size());
    let score = || reference_logps(&model, &pairs, bench.batch, 1, &device, &mut |_| {});
    for _ in 0..2 {
        score()?;
    }
    let mut times = Vec::with_capacity(bench.iters);
    for _ in 0..bench.iters {
        let start = Instant::now();
        score()?;
        times.push(start.elapsed().as_secs_f64());
    }
    let name = bench_support::folder_name(dir);
    let label = format!("{name}{}", precision_label());
    // Each pair is two sequences of `seq` tokens.
    let mut results = vec![summarise(&label, bench, 2 * bench.batch * bench.seq, times)];
    if bench.vs_torch {
        beside_torch(&name, &name, bench, &["--score"], &mut results)?;
    }
    print_results("scoring (no grad)", &results)
}

fn print_results(what: &str, results: &[ScoreResult]) -> CmdResult {
    for result in results {
        println!("{}", serde_json::to_string(result)?);
    }
    println!("\n| {what} | backend | batch×seq | tokens/s | p50 ms | p90 ms | peak MiB |");
    println!("|---|---|---|---|---|---|---|");
    for r in results {
        let peak = r.peak_rss_mib.map_or("?".into(), |m| format!("{m:.0}"));
        println!(
            "| {} | {} | {}×{} | {:.0} | {:.1} | {:.1} | {peak} |",
            r.model, r.backend, r.batch, r.seq, r.tokens_per_s, r.step_ms_p50, r.step_ms_p90
        );
    }
    Ok(())
}

/// The reference shape: 4 layers, d_model 256, 8 heads, SwiGLU 4×, vocab 512.
pub fn llama_4x256() -> LlamaConfig {
    LlamaConfig::new(512, 256, 1024, 4, 8, 1024)
}

fn time_forward(name: &str, model: &CausalLm<Selected>, bench: &ScoreBench) -> ScoreResult {
    crate::memory::reset_peak();
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
    let times: Vec<f64> = (0..bench.iters)
        .map(|_| {
            let start = Instant::now();
            forward();
            start.elapsed().as_secs_f64()
        })
        .collect();
    summarise(name, bench, bench.batch * bench.seq, times)
}

fn summarise(name: &str, bench: &ScoreBench, tokens: usize, mut times: Vec<f64>) -> ScoreResult {
    times.sort_by(f64::total_cmp);
    let percentile = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize] * 1e3;
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    ScoreResult {
        model: name.into(),
        backend: NAME,
        batch: bench.batch,
        seq: bench.seq,
        tokens_per_s: tokens as f64 / mean,
        step_ms_p50: percentile(0.5),
        step_ms_p90: percentile(0.9),
        peak_rss_mib: crate::memory::peak_mib(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bench step`'s options with `lora_rank`, on `model` (`None`: the built-in models).
    fn step_bench(
        lora_rank: usize,
        model: Option<&str>,
        gradient_checkpointing: bool,
    ) -> ScoreBench {
        ScoreBench {
            batch: 2,
            seq: 64,
            iters: 3,
            stories: PathBuf::from("stories260K.bin"),
            vs_torch: true,
            model: model.map(PathBuf::from),
            lora_rank,
            gradient_checkpointing,
        }
    }

    #[test]
    fn the_pytorch_scripts_accept_the_arguments_bench_step_passes() {
        let python = std::env::var("ROPO_PYTHON").unwrap_or_else(|_| "python3".into());
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cases = [
            ("stories260K", step_bench(0, None, false)),
            ("llama-4x256", step_bench(4, None, false)),
            ("m", step_bench(0, Some("some/hf-folder"), false)),
            ("m", step_bench(8, Some("some/hf-folder"), true)),
        ];
        for (name, bench) in cases {
            let (script, args) = torch_step_command(name, "cpu", &bench).unwrap();
            // `--check-args` parses as the script would and exits before importing torch.
            let output = std::process::Command::new(&python)
                .arg(script)
                .arg("--check-args")
                .args(&args)
                .current_dir(&root)
                .output()
                .unwrap_or_else(|e| panic!("{python} (stdlib only is needed): {e}"));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{script} {args:?}: {stderr}");
            let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            assert_eq!(parsed["lora_rank"], bench.lora_rank, "{script}");
            assert_eq!(parsed["batch"], bench.batch, "{script}");
            assert_eq!(parsed["device"], "cpu", "{script}");
            if bench.model.is_some() {
                assert_eq!(
                    parsed["gradient_checkpointing"], bench.gradient_checkpointing,
                    "{script}"
                );
            }
        }
    }

    #[test]
    fn the_cpu_line_names_the_model_and_the_bf16_instructions() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n\
                       flags\t\t: fpu avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n";
        assert_eq!(
            describe_cpu(cpuinfo, 2),
            "cpu: Intel(R) Xeon(R) Platinum 8480+, 2 threads; avx512_bf16 yes, amx_bf16 no"
        );
    }
}
