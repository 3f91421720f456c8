//! `cargo xtask bench tokenize`: ropo's tokenization beside Python `tokenizers` on the same
//! texts.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use clap::Args;
use ropo::data::formats::{self, ReadOptions};
use ropo::data::template::{Piece, Template};
use ropo::data::tokenize::{tokenize, TokenizeOptions};
use ropo::data::{load_tokenizer, ChatPair};
use serde::Serialize;

use ropo_cli::data_cmd::io_error;

use crate::CmdResult;

/// Tokenization throughput: ropo's rayon-parallel `tokenize` beside Python `tokenizers`'
/// `encode_batch` on the same texts.
#[derive(Args)]
pub struct TokenizeBench {
    /// The dataset.
    #[arg(
        long,
        default_value = "../shared/assets/preferences/helpful-base-test.jsonl.gz"
    )]
    file: PathBuf,
    /// The tokenizer.json, for both sides.
    #[arg(long, default_value = "../shared/assets/tokenizers/20B_tokenizer.json")]
    tokenizer: PathBuf,
    /// Chat template (only conversation prompts use it).
    #[arg(long, default_value = "chatml")]
    template: Template,
    /// A Python with the `tokenizers` package.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// The Python side of the benchmark.
    #[arg(long, default_value = "bench/tokenize_hf.py")]
    script: PathBuf,
    /// Timed passes over the data, each side (after one warm-up pass).
    #[arg(long, default_value_t = 5)]
    iters: usize,
}

#[derive(Serialize)]
struct TokenizeResult {
    side: &'static str,
    pairs: usize,
    pairs_per_s: f64,
    pass_ms_best: f64,
    pass_ms_mean: f64,
}

/// Runs the tokenization benchmark and prints JSON lines, then a table with the ratio.
pub fn bench_tokenize(bench: &TokenizeBench) -> CmdResult {
    let (pairs, _) = formats::read_pairs(&bench.file, &ReadOptions::default())?;
    let tokenizer = load_tokenizer(&bench.tokenizer)?;
    let mut results = Vec::new();
    let options = TokenizeOptions::new(bench.template, usize::MAX);
    let times = time_passes(bench.iters, || {
        tokenize(&pairs, tokenizer.as_ref(), &options).map(|_| ())
    })?;
    results.push(result("ropo", pairs.len(), &times));

    // What TRL encodes for each pair (prompt, prompt + chosen, prompt + rejected), for the
    // Python side.
    let mut texts = Vec::with_capacity(3 * pairs.len());
    for pair in &pairs {
        texts.extend(pair_texts(pair, bench.template)?);
    }
    let texts_path =
        std::env::temp_dir().join(format!("ropo-bench-tokenize-{}.json", std::process::id()));
    std::fs::write(&texts_path, serde_json::to_vec(&texts)?).map_err(io_error(&texts_path))?;
    let output = Command::new(&bench.python)
        .arg(&bench.script)
        .arg(&bench.tokenizer)
        .arg(&texts_path)
        .arg(bench.iters.to_string())
        .output();
    let _ = std::fs::remove_file(&texts_path);
    let output = output.map_err(|e| format!("cannot run {}: {e}", bench.python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} {} failed: {}",
            bench.python.display(),
            bench.script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let python: PythonTimes = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{}: unexpected output: {e}", bench.script.display()))?;
    results.push(result(
        "python tokenizers encode_batch",
        pairs.len(),
        &python.pass_seconds,
    ));

    for result in &results {
        println!("{}", serde_json::to_string(result)?);
    }
    println!(
        "\n{} pairs from {}, tokenizer {}, {} threads (rayon); python tokenizers {}\n",
        pairs.len(),
        bench.file.display(),
        bench.tokenizer.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        python.version
    );
    println!("| side | pairs/s | best pass ms | mean pass ms |\n|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} |",
            r.side, r.pairs_per_s, r.pass_ms_best, r.pass_ms_mean
        );
    }
    if let (Some(ropo), Some(py)) = (results.first(), results.last()) {
        println!(
            "\nropo / python tokenizers = {:.2} (same texts, no boundary check)",
            ropo.pairs_per_s / py.pairs_per_s
        );
    }
    Ok(())
}

/// What `bench/tokenize_hf.py` prints.
#[derive(serde::Deserialize)]
struct PythonTimes {
    version: String,
    pass_seconds: Vec<f64>,
}

/// The prompt text and the two response texts that `tokenize` encodes for `pair`.
fn pair_texts(pair: &ChatPair, template: Template) -> Result<[String; 3], String> {
    let pieces = template.prompt(&pair.prompt)?;
    let prompt: String = pieces
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Text(text) => Some(text),
            Piece::Bos | Piece::Eos => None,
        })
        .collect();
    let chosen = format!("{prompt}{}", template.response(&pair.prompt, &pair.chosen));
    let rejected = format!(
        "{prompt}{}",
        template.response(&pair.prompt, &pair.rejected)
    );
    Ok([prompt, chosen, rejected])
}

fn time_passes(
    iters: usize,
    mut pass: impl FnMut() -> Result<(), ropo::data::DataError>,
) -> Result<Vec<f64>, ropo::data::DataError> {
    pass()?;
    (0..iters.max(1))
        .map(|_| {
            let start = Instant::now();
            pass()?;
            Ok(start.elapsed().as_secs_f64())
        })
        .collect()
}

fn result(side: &'static str, pairs: usize, seconds: &[f64]) -> TokenizeResult {
    let best = seconds.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = seconds.iter().sum::<f64>() / seconds.len().max(1) as f64;
    TokenizeResult {
        side,
        pairs,
        pairs_per_s: pairs as f64 / mean,
        pass_ms_best: best * 1e3,
        pass_ms_mean: mean * 1e3,
    }
}
