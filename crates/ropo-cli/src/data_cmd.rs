//! `ropo data`: look inside a preference dataset (`inspect`), or write a copy of it
//! with seeded label noise and its flip mask (`noise`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ropo::data::formats::{
    self, Degenerate, FileKind, Format, OnInvalid, PairReader, ReadOptions, ReadReport,
};
use ropo::data::template::{ChatFormat, Template};
use ropo::data::tokenize::{tokenize, DropReason, TokenizeOptions};
use ropo::data::{load_tokenizer, noise, ChatPair, DataError, Preference, Prompt};
use serde::Serialize;

use crate::CmdResult;

/// Inspect a preference dataset, or write a noisy copy of it.
#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Read a dataset and print its format, pair count, length percentiles (characters, and
    /// tokens with --tokenizer), dropped and truncated pairs with reasons, skipped records,
    /// and doubtful rows (identical responses, blank responses, HH rows without a shared prompt) by
    /// line.
    Inspect(InspectArgs),
    /// Write a copy of a dataset, in its own format, with each label flipped with probability
    /// --rate (or relabelled by a judge who prefers longer responses: --length-bias), and the
    /// flip mask beside it (OUT.flips.json).
    Noise(NoiseArgs),
}

/// Which dataset, and how to read it.
#[derive(Args)]
struct ReadArgs {
    /// The dataset: a JSONL file (gzipped or not), a parquet file, or a folder of them (read in
    /// path order).
    file: PathBuf,
    /// Only the folder's files of this split (`train-00000-of-00001.parquet`, `test.jsonl`,
    /// `train_prefs/0000.parquet`, as on the Hugging Face Hub).
    #[arg(long)]
    split: Option<String>,
    /// Its format (generic, trl, hh, summarize, ultrafeedback, orca); detected from the first
    /// record if not given.
    #[arg(long)]
    format: Option<Format>,
    /// Skip invalid records (counting them, with reasons) instead of stopping at the first.
    #[arg(long)]
    skip_invalid: bool,
    /// Treat doubtful pairs (identical or blank responses, HH rows without a shared prompt) as
    /// invalid.
    #[arg(long)]
    reject_degenerate: bool,
    /// The longest line of a JSONL file, in bytes (after decompression).
    #[arg(long, default_value_t = formats::DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// The most bytes read in all (after decompression).
    #[arg(long, default_value_t = formats::DEFAULT_MAX_TOTAL_BYTES)]
    max_total_bytes: u64,
    /// The most records read.
    #[arg(long, default_value_t = formats::DEFAULT_MAX_RECORDS)]
    max_records: u64,
}

impl ReadArgs {
    /// Opens the dataset (its split, if one is given) for streaming.
    fn open(&self) -> Result<PairReader, DataError> {
        formats::open_split(&self.file, self.split.as_deref(), &self.options())
    }

    fn options(&self) -> ReadOptions {
        ReadOptions {
            format: self.format,
            on_invalid: if self.skip_invalid {
                OnInvalid::Skip
            } else {
                OnInvalid::Error
            },
            degenerate: if self.reject_degenerate {
                Degenerate::Reject
            } else {
                Degenerate::Keep
            },
            max_line_bytes: self.max_line_bytes,
            max_total_bytes: self.max_total_bytes,
            max_records: self.max_records,
        }
    }
}

#[derive(Args)]
struct InspectArgs {
    #[command(flatten)]
    read: ReadArgs,
    /// A tokenizer (tokenizer.json, encoder.json, tok*.bin or a folder) for token lengths,
    /// truncation and dropped counts.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Chat template for conversation prompts: auto (the tokenizer's own chat template, else
    /// chatml), plain, hh, chatml, llama2.
    #[arg(long, default_value = "auto")]
    template: Template,
    /// Most tokens in prompt plus response.
    #[arg(long, default_value_t = 1024)]
    max_length: usize,
    /// Most tokens in a prompt (keeps the end); no limit but --max-length if not given.
    #[arg(long)]
    max_prompt_length: Option<usize>,
}

#[derive(Args)]
struct NoiseArgs {
    #[command(flatten)]
    read: ReadArgs,
    /// Probability of flipping each label (0 <= rate < 0.5): symmetric noise.
    #[arg(
        long,
        required_unless_present = "length_bias",
        conflicts_with = "length_bias"
    )]
    rate: Option<f64>,
    /// A length-biased judge instead: each pair's longer response is labelled chosen with this
    /// probability (0 <= p <= 1), the shorter one otherwise; equal lengths keep their label.
    #[arg(long)]
    length_bias: Option<f64>,
    /// Random seed: the same seed gives the same flips.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The noisy copy (plain JSONL); its flip mask goes to OUT.flips.json.
    #[arg(short, long)]
    output: PathBuf,
}

/// Runs `ropo data …`.
pub fn run(args: &DataArgs) -> CmdResult {
    match &args.command {
        DataCommand::Inspect(inspect_args) => inspect(inspect_args),
        DataCommand::Noise(noise_args) => write_noisy(noise_args),
    }
}

/// How many doubtful lines or skipped reasons to list before "… and N more".
const LISTED: usize = 20;

fn inspect(args: &InspectArgs) -> CmdResult {
    let mut reader = args.read.open()?;
    // Only the tokenizer needs the pairs; without one, memory holds their lengths alone.
    let mut pairs = Vec::new();
    let mut chars = Vec::new();
    let mut places = Vec::new();
    for record in reader.by_ref() {
        let record = record?;
        places.push((record.file, record.line));
        chars.push(CharLengths::of(&record.pair));
        if args.tokenizer.is_some() {
            pairs.push(record.pair);
        }
    }
    let reports = reader.into_reports();
    print_read_reports(&reports);

    println!("\nlength in characters (prompt: its text, or its messages' contents)");
    print_header();
    print_row("prompt", chars.iter().map(|c| c.prompt).collect());
    print_row("chosen", chars.iter().map(|c| c.chosen).collect());
    print_row("rejected", chars.iter().map(|c| c.rejected).collect());

    let Some(path) = &args.tokenizer else {
        return Ok(());
    };
    let tokenizer = load_tokenizer(path)?;
    let options = TokenizeOptions {
        max_prompt_length: args.max_prompt_length,
        ..TokenizeOptions::new(ChatFormat::resolve(args.template, path)?, args.max_length)
    };
    let tokenized = tokenize(&pairs, tokenizer.as_ref(), &options)?;
    let out = &tokenized.report;
    println!(
        "\nlength in tokens ({}, template {}, max_length {}, max_prompt_length {}; BOS and EOS included, after truncation)",
        path.display(),
        options.template,
        args.max_length,
        args.max_prompt_length
            .map_or("none".into(), |n| n.to_string())
    );
    print_header();
    let kept = &tokenized.pairs;
    print_row("prompt", kept.iter().map(|p| p.prompt.len()).collect());
    print_row("chosen", kept.iter().map(|p| p.chosen.len()).collect());
    print_row("rejected", kept.iter().map(|p| p.rejected.len()).collect());
    print_row("longest", kept.iter().map(|p| p.max_len()).collect());

    // Where each pair comes from: its line, or its file and line where there are several files.
    let place_of = |index: usize| {
        let (file, line) = places.get(index).copied().unwrap_or_default();
        match reports.get(file) {
            Some(report) if reports.len() > 1 => format!("{}:{line}", report.path.display()),
            _ => line.to_string(),
        }
    };
    let unit = record_name(&reports);
    println!("\nkept {} of {} pairs", kept.len(), out.pairs);
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for dropped in &out.dropped {
        let reason = match &dropped.reason {
            DropReason::PromptTooLong { max_length, .. } => {
                format!("prompt leaves no room for a response within max_length {max_length}")
            }
            DropReason::Template(problem) => problem.clone(),
        };
        reasons
            .entry(reason)
            .or_default()
            .push(place_of(dropped.index));
    }
    for (reason, dropped_lines) in &reasons {
        println!(
            "dropped {}: {reason} ({})",
            dropped_lines.len(),
            listed(unit, dropped_lines)
        );
    }
    println!(
        "truncated: {} prompts (kept their end), {} chosen and {} rejected responses (kept their start, lost EOS)",
        out.prompts_truncated, out.chosen_truncated, out.rejected_truncated
    );
    println!(
        "responses whose text already ended with EOS (not appended again): {}",
        out.eos_in_text
    );
    let merged: Vec<String> = out
        .boundary_mismatches
        .iter()
        .map(|&i| place_of(i))
        .collect();
    println!(
        "pairs whose prompt/response boundary moves when tokenized together (response tokenized alone): {}{}",
        merged.len(),
        if merged.is_empty() {
            String::new()
        } else {
            format!(" ({})", listed(unit, &merged))
        }
    );
    Ok(())
}

/// Prints what was read from each file, and the totals where there are several.
fn print_read_reports(reports: &[ReadReport]) {
    for report in reports {
        print_read_report(report);
    }
    if let [_, _, ..] = reports {
        let pairs: usize = reports.iter().map(|r| r.pairs).sum();
        let skipped: usize = reports.iter().map(|r| r.skipped.len()).sum();
        println!(
            "all {} files: {pairs} pairs, {skipped} skipped",
            reports.len()
        );
    }
}

fn print_read_report(report: &ReadReport) {
    let kind = match report.kind {
        FileKind::Jsonl => "JSONL",
        FileKind::Parquet => "parquet",
    };
    println!("file: {} ({kind})", report.path.display());
    let format = report.format.map_or("unknown", Format::name);
    println!("format: {format}");
    let unit = report.kind.record_name();
    println!(
        "records: {} pairs in {} {unit}s, {} skipped",
        report.pairs,
        report.lines,
        report.skipped.len()
    );
    let mut reasons: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for invalid in &report.skipped {
        let reason = match &invalid.field {
            Some(field) => format!("field {field:?}: {}", invalid.problem),
            None => invalid.problem.clone(),
        };
        reasons.entry(reason).or_default().push(invalid.line);
    }
    for (reason, lines) in &reasons {
        println!(
            "  skipped {}: {reason} ({})",
            lines.len(),
            listed(unit, lines)
        );
    }
    if !report.identical.is_empty() {
        println!(
            "identical chosen and rejected (kept): {} ({})",
            report.identical.len(),
            listed(unit, &report.identical)
        );
    }
    if !report.blank_response.is_empty() {
        println!(
            "a response of whitespace only (kept): {} ({})",
            report.blank_response.len(),
            listed(unit, &report.blank_response)
        );
    }
    if !report.no_shared_prompt.is_empty() {
        println!(
            "HH rows whose rejected does not start with chosen's prompt (kept, split where both agree): {} ({})",
            report.no_shared_prompt.len(),
            listed(unit, &report.no_shared_prompt)
        );
    }
}

/// `lines 3, 17, 42` (the first [`LISTED`], then how many more); `unit` is `line` or `row`.
fn listed(unit: &str, lines: &[impl ToString]) -> String {
    let shown: Vec<String> = lines.iter().take(LISTED).map(|l| l.to_string()).collect();
    let more = lines.len().saturating_sub(LISTED);
    let word = if lines.len() == 1 {
        unit.to_owned()
    } else {
        format!("{unit}s")
    };
    if more == 0 {
        format!("{word} {}", shown.join(", "))
    } else {
        format!("{word} {}, and {more} more", shown.join(", "))
    }
}

/// What a pair's place is called: `line`, or `row` where every file is parquet.
fn record_name(reports: &[ReadReport]) -> &'static str {
    if reports.iter().all(|r| r.kind == FileKind::Parquet) {
        "row"
    } else {
        "line"
    }
}

/// A pair's lengths in characters (a prompt's: its text, or its messages' contents).
struct CharLengths {
    prompt: usize,
    chosen: usize,
    rejected: usize,
}

impl CharLengths {
    fn of(pair: &ChatPair) -> Self {
        let prompt = match &pair.prompt {
            Prompt::Text(text) => text.chars().count(),
            Prompt::Messages(messages) => messages.iter().map(|m| m.content.chars().count()).sum(),
        };
        Self {
            prompt,
            chosen: pair.chosen.chars().count(),
            rejected: pair.rejected.chars().count(),
        }
    }
}

fn print_header() {
    println!(
        "  {:<10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "p50", "p90", "p99", "max", "mean"
    );
}

fn print_row(name: &str, mut values: Vec<usize>) {
    values.sort_unstable();
    let at = |q: f64| {
        let rank = ((values.len() as f64 * q).ceil() as usize).max(1);
        values.get(rank - 1).copied().unwrap_or_default()
    };
    let mean = values.iter().sum::<usize>() as f64 / values.len().max(1) as f64;
    println!(
        "  {name:<10} {:>8} {:>8} {:>8} {:>8} {mean:>8.1}",
        at(0.5),
        at(0.9),
        at(0.99),
        values.last().copied().unwrap_or_default()
    );
}

/// The flip mask file written beside a noisy copy.
#[derive(Serialize)]
struct FlipFile<'a> {
    source: &'a Path,
    format: &'static str,
    noise: &'static str,
    rate: f64,
    seed: u64,
    pairs: usize,
    flipped_count: usize,
    /// The data files read, in order, and how many lines of the copy each gave: the first
    /// `source_files[0].pairs` lines come from the first file, and so on.
    source_files: Vec<SourceFile<'a>>,
    /// `source_lines[i]`: the line (row, in a parquet file) of its source file that line
    /// `i + 1` of the copy comes from.
    source_lines: Vec<u64>,
    /// `flipped[i]`: line `i + 1` of the copy has its label flipped.
    flipped: Vec<bool>,
}

/// A data file of the source, in a flip mask.
#[derive(Serialize)]
struct SourceFile<'a> {
    path: &'a Path,
    pairs: usize,
}

fn write_noisy(args: &NoiseArgs) -> CmdResult {
    if args.output.extension().is_some_and(|ext| ext == "gz") {
        return Err(format!(
            "{}: the noisy copy is written as plain JSONL; name it without .gz",
            args.output.display()
        )
        .into());
    }
    let flips_path = with_suffix(&args.output, ".flips.json");
    for target in [&args.output, &flips_path] {
        ropo::models::integrity::replaceable(target)?;
        if is_in_input(target, &args.read.file) {
            return Err(format!(
                "{}: is the input, or lies in its folder; the noisy copy needs a path of its own",
                target.display()
            )
            .into());
        }
    }
    // Two passes keep memory bounded: count (and measure), draw the mask, then copy.
    let mut counted = args.read.open()?;
    let mut lengths = Vec::new();
    for record in counted.by_ref() {
        lengths.push(record?.pair.response_lengths());
    }
    let n = lengths.len();
    let format = counted
        .format()
        .ok_or_else(|| format!("{}: no records", args.read.file.display()))?;
    let reports = counted.into_reports();
    let (model, rate, flipped) = match (args.rate, args.length_bias) {
        (_, Some(p)) => (
            "length_biased",
            p,
            noise::length_biased_flips(lengths, p, args.seed)
                .map_err(|e| format!("--length-bias: {e}"))?,
        ),
        (Some(rate), None) => (
            "symmetric",
            rate,
            noise::symmetric_flips(n, rate, args.seed).map_err(|e| format!("--rate: {e}"))?,
        ),
        (None, None) => return Err("data noise: give --rate or --length-bias".into()),
    };

    let copy_tmp = with_suffix(&args.output, ".tmp");
    let flips_tmp = with_suffix(&flips_path, ".tmp");
    let written = (|| -> CmdResult {
        let mut out = BufWriter::new(File::create(&copy_tmp).map_err(io_error(&copy_tmp))?);
        let mut source_lines = Vec::with_capacity(n);
        let mut flips = flipped.iter();
        for record in args.read.open()? {
            let mut record = record?;
            let Some(&flip) = flips.next() else {
                return Err(
                    format!("{}: changed while being read", args.read.file.display()).into(),
                );
            };
            if flip {
                format.swap_labels(&mut record.raw);
            }
            serde_json::to_writer(&mut out, &record.raw)
                .map_err(|e| format!("{}: {e}", copy_tmp.display()))?;
            out.write_all(b"\n").map_err(io_error(&copy_tmp))?;
            source_lines.push(record.line);
        }
        out.flush().map_err(io_error(&copy_tmp))?;
        if source_lines.len() != n {
            return Err(format!("{}: changed while being read", args.read.file.display()).into());
        }
        let mask = FlipFile {
            source: &args.read.file,
            format: format.name(),
            noise: model,
            rate,
            seed: args.seed,
            pairs: n,
            flipped_count: flipped.iter().filter(|f| **f).count(),
            source_files: reports
                .iter()
                .map(|r| SourceFile {
                    path: &r.path,
                    pairs: r.pairs,
                })
                .collect(),
            source_lines,
            flipped: flipped.clone(),
        };
        let file = File::create(&flips_tmp).map_err(io_error(&flips_tmp))?;
        let mut writer = BufWriter::new(file);
        serde_json::to_writer(&mut writer, &mask)
            .map_err(|e| format!("{}: {e}", flips_tmp.display()))?;
        writer.flush().map_err(io_error(&flips_tmp))?;
        std::fs::rename(&copy_tmp, &args.output).map_err(io_error(&args.output))?;
        std::fs::rename(&flips_tmp, &flips_path).map_err(io_error(&flips_path))?;
        println!(
            "{}: {n} pairs ({format}), {} flipped ({model} {}, seed {}); mask in {}",
            args.output.display(),
            mask.flipped_count,
            rate,
            args.seed,
            flips_path.display()
        );
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&copy_tmp);
        let _ = std::fs::remove_file(&flips_tmp);
    }
    written
}

/// `path` with `suffix` added to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The error of a failed write to `path`, naming it.
pub fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Box<dyn std::error::Error> {
    let path = path.to_owned();
    move |e| format!("{}: cannot write: {e}", path.display()).into()
}

/// Whether `target` is the input file (through links or `..` included), or lies in the input
/// folder, where reading the folder again would take it for data.
fn is_in_input(target: &Path, input: &Path) -> bool {
    let Ok(input) = input.canonicalize() else {
        return false;
    };
    if target.canonicalize().is_ok_and(|target| target == input) {
        return true;
    }
    let folder = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    input.is_dir()
        && folder
            .canonicalize()
            .is_ok_and(|folder| folder.starts_with(&input))
}
