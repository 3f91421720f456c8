//! `cargo xtask bench epoch`: one epoch of DPO on real pairs, end to end, the way ropo trains —
//! reference log-probs computed once before training, each prompt computed once for both
//! responses, batches grouped by length — beside `bench/torch_epoch.py`, a TRL-style PyTorch
//! loop on the same tokenized pairs and model config.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::AutodiffModule;
use clap::Args;
use ropo::backend::{Training, NAME};
use ropo::core::{Loss, LossConfig};
use ropo::data::{
    batches::BatchSampler,
    formats::{read_pairs, ReadOptions},
    load_tokenizer,
    template::Template,
    tokenize::{tokenize, TokenizeOptions},
    TokenizedPair,
};
use ropo::models::checkpoint;
use ropo::train::{
    optim::Trainer,
    reference::{reference_logps, ReferenceLogps},
    schedule::{Decay, LrSchedule},
    step::preference_step,
};
use serde::Serialize;

use crate::CmdResult;

/// What `bench epoch` trains on.
#[derive(Args)]
pub struct EpochBench {
    /// Preference pairs (any format ropo reads).
    #[arg(
        long,
        default_value = "../shared/assets/preferences/helpful-base-test.jsonl.gz"
    )]
    pairs: PathBuf,
    /// The policy (and reference) checkpoint.
    #[arg(long, default_value = "../shared/assets/models/stories260K.bin")]
    model: PathBuf,
    /// Its tokenizer.
    #[arg(long, default_value = "../shared/assets/models/tok512.bin")]
    tokenizer: PathBuf,
    /// Pairs per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Longest prompt + response, in tokens (longer pairs are truncated).
    #[arg(long, default_value_t = 256)]
    max_length: usize,
    /// Batches' worth of pairs sorted by length together (1: no length grouping).
    #[arg(long, default_value_t = 16)]
    bucket: usize,
    /// Use only the first N pairs of the file (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Also run `bench/torch_epoch.py` on the same tokenized pairs (`$ROPO_PYTHON`, else
    /// `python3`) and print the ratio.
    #[arg(long)]
    vs_torch: bool,
}

#[derive(Serialize)]
struct EpochResult {
    trainer: String,
    backend: String,
    pairs: usize,
    tokens: usize,
    seconds: f64,
    pairs_per_s: f64,
    tokens_per_s: f64,
    /// Peak resident memory during the epoch (weights included), MiB.
    peak_rss_mib: Option<f64>,
}

/// Tokenizes the pairs, times ropo's epoch (reference pass included), then PyTorch's.
pub fn run(bench: &EpochBench) -> CmdResult {
    let (mut chat, _) = read_pairs(&bench.pairs, &ReadOptions::default())?;
    if bench.limit > 0 {
        chat.truncate(bench.limit);
    }
    let tokenizer = load_tokenizer(&bench.tokenizer)?;
    let options = TokenizeOptions {
        max_prompt_length: Some(bench.max_length * 3 / 4),
        ..TokenizeOptions::new(Template::Hh, bench.max_length)
    };
    let pairs = tokenize(&chat, tokenizer.as_ref(), &options)?.pairs;
    // What a trainer that scores prompt + response twice processes, the count both sides report.
    let tokens: usize = pairs
        .iter()
        .map(|p| 2 * p.prompt.len() + p.chosen.len() + p.rejected.len())
        .sum();
    let ours = ropo_epoch(bench, &pairs, tokens)?;
    println!("{}", serde_json::to_string(&ours)?);
    if bench.vs_torch {
        let torch = torch_epoch(bench, &pairs)?;
        println!("{}", serde_json::to_string(&torch)?);
        println!(
            "one epoch, {} pairs: ropo {:.1} s, PyTorch (TRL-style) {:.1} s, ropo {:.2}× as fast",
            ours.pairs,
            ours.seconds,
            torch.seconds,
            torch.seconds / ours.seconds
        );
    }
    Ok(())
}

fn ropo_epoch(
    bench: &EpochBench,
    pairs: &[TokenizedPair],
    tokens: usize,
) -> Result<EpochResult, Box<dyn std::error::Error>> {
    let device = Default::default();
    let mut model = checkpoint::load::<Training>(&bench.model, &device)?;
    crate::memory::reset_peak();
    let start = Instant::now();
    let refs = reference_logps(
        &model.valid(),
        pairs,
        2 * bench.batch,
        1,
        &device,
        &mut |_| {},
    )?;
    let lengths = pairs.iter().map(TokenizedPair::max_len).collect();
    let mut sampler = BatchSampler::new(lengths, bench.batch, bench.bucket, 0);
    let steps = sampler.batches_per_epoch();
    let schedule = LrSchedule {
        peak: 5e-4,
        warmup: 0,
        total: steps,
        decay: Decay::Constant,
    };
    let mut trainer = Trainer::new(schedule, 0.0, Some(1.0));
    let loss = LossConfig::new(Loss::Sigmoid, 0.1)?;
    for _ in 0..steps {
        let indices = sampler.next_batch();
        let batch: Vec<&TokenizedPair> = indices.iter().map(|i| &pairs[*i]).collect();
        let batch_refs: Vec<ReferenceLogps> = indices.iter().map(|i| refs[*i]).collect();
        model = preference_step(model, &mut trainer, &loss, &batch, &batch_refs, 1, &device)?.0;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(EpochResult {
        trainer: "ropo".into(),
        backend: NAME.into(),
        pairs: pairs.len(),
        tokens,
        seconds,
        pairs_per_s: pairs.len() as f64 / seconds,
        tokens_per_s: tokens as f64 / seconds,
        peak_rss_mib: crate::memory::peak_mib(),
    })
}

fn torch_epoch(
    bench: &EpochBench,
    pairs: &[TokenizedPair],
) -> Result<EpochResult, Box<dyn std::error::Error>> {
    let file = std::env::temp_dir().join(format!("ropo-epoch-pairs-{}.json", std::process::id()));
    let rows: Vec<[&[u32]; 3]> = pairs
        .iter()
        .map(|p| [p.prompt.as_slice(), &p.chosen, &p.rejected])
        .collect();
    std::fs::write(&file, serde_json::to_string(&rows)?)?;
    let args = [
        "--pairs".to_string(),
        file.display().to_string(),
        "--batch".into(),
        bench.batch.to_string(),
    ];
    let line = crate::bench_support::run_python_bench("bench/torch_epoch.py", &args);
    let _ = std::fs::remove_file(&file);
    let line = line?;
    let number = |key: &str| line[key].as_f64().unwrap_or(f64::NAN);
    Ok(EpochResult {
        trainer: "PyTorch, TRL-style".into(),
        backend: line["backend"].as_str().unwrap_or("torch").into(),
        pairs: pairs.len(),
        tokens: number("tokens") as usize,
        seconds: number("seconds"),
        pairs_per_s: number("pairs_per_s"),
        tokens_per_s: number("tokens_per_s"),
        peak_rss_mib: line["peak_rss_mib"].as_f64(),
    })
}
