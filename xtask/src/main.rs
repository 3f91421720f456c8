//! `cargo xtask NAME`: ropo's entry points (see `cargo xtask --help`).
//!
//! Each subcommand lives in its own module; errors reach `main` as one line, printed to
//! stderr with a non-zero exit code.

/// mimalloc keeps freed memory for reuse. With the system allocator (glibc) every large
/// buffer of a training step (attention scores, logits) is a fresh `mmap` whose pages are
/// faulted in and zeroed on first touch; that cost a third to a half of a CPU step
/// (`docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of `mimalloc.h` (the option after `mi_option_eager_commit_delay`,
/// 14, in mimalloc 2 and 3; the Rust bindings leave it unnamed).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to hand freed pages back to the system: a training step frees and
/// re-allocates the same large buffers every step, and pages given back are faulted in and
/// zeroed again (14% of an epoch on HH pairs, `docs/performance.md`).
fn keep_freed_memory() {
    // SAFETY: sets a plain integer option; mimalloc reads options at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

mod align_cmd;
mod bench;
mod bench_epoch;
mod bench_generate;
mod bench_memory;
mod bench_support;
mod bench_vocab;
mod data_cmd;
mod distributed_flags;
mod doctor;
mod hub_paths;
mod interrupt;
mod loss_cmd;
mod memory;
mod model_cmds;
mod plot_losses;
mod run_folder;
mod tokenize_bench;
mod train_args;
mod train_cmd;
mod trainer_progress;
mod trl_names;

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

/// ropo's entry points.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Matrix products in f32, or in bf16 (inputs rounded to bf16 and multiplied on the CPU's
    /// AMX tiles, sums, weights, gradients and optimiser state in f32, as under PyTorch's CPU
    /// autocast; f32 where the machine has no AMX-BF16).
    #[arg(long, global = true, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// TRL's `--bf16` (`--bf16`, `--bf16 true|false`): `--dtype bf16`.
    #[arg(
        long,
        global = true,
        hide = true,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    bf16: Option<bool>,
}

/// `--dtype`: the precision of matrix products.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Dtype {
    F32,
    Bf16,
}

#[derive(Subcommand)]
enum Command {
    /// Print a preference loss and its derivative ∂ℓ/∂h as JSON.
    Loss(Box<loss_cmd::LossArgs>),
    /// Draw the gradient weight −∂ℓ/∂h of DPO, cDPO, rDPO and ROPO (docs/losses-weight.svg).
    PlotLosses(plot_losses::PlotArgs),
    /// Score a response under a model: `{"logp_sum", "logp_mean", "n_tokens"}` as JSON.
    Score(Box<model_cmds::ScoreArgs>),
    /// Continue a prompt with a model and print the text.
    Generate(Box<model_cmds::GenerateArgs>),
    /// Inspect a preference dataset, or write a copy with label noise.
    Data(data_cmd::DataArgs),
    /// Throughput benchmarks.
    Bench(bench::BenchArgs),
    /// What this build's backend finds on this machine (adapter, driver, libraries), and a
    /// small computation checked against the CPU.
    Doctor,
    /// The main job: SFT, then every loss under label noise, side by side; with --model and
    /// --data, the trainer: one method on your model and pairs (docs/align.md).
    Train(Box<train_args::TrainArgs>),
    /// Serve the nodes of one multi-node `train` run until stopped (docs/distributed.md).
    Coordinator(CoordinatorArgs),
}

/// `coordinator`'s arguments.
#[derive(clap::Args)]
struct CoordinatorArgs {
    /// The port every node's --coordinator HOST:PORT names (listens on every interface).
    #[arg(long)]
    port: u16,
}

fn main() -> ExitCode {
    keep_freed_memory();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .try_init();
    std::panic::set_hook(Box::new(keep_panic));
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Err(error) = trl_names::refuse_unoffered(&args) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let matches = Cli::command().get_matches_from(&args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if matches!(cli.dtype, Dtype::Bf16) || cli.bf16 == Some(true) {
        use ropo::models::product::{set_matmul_precision, MatmulPrecision};
        set_matmul_precision(MatmulPrecision::Bf16);
        if ropo::backend::products_precision() == MatmulPrecision::F32 {
            eprintln!(
                "note: --dtype bf16 computes in bf16 on the cpu backend of a CPU with AMX-BF16 \
                 tiles; on this one ({}) products stay f32",
                ropo::backend::NAME
            );
        }
    }
    let probed = match cli.command {
        Command::Doctor | Command::Coordinator(_) => Ok(()),
        _ => ropo::backend::probe(),
    };
    if let Err(error) = probed {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli, &matches)))
        .unwrap_or_else(|_| Err(last_panic().into()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that closed stdout early (`| head`) has what it wanted.
        Err(_) if stdout_closed() => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The message, place and (under `RUST_BACKTRACE`) backtrace of the last panic.
static LAST_PANIC: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// The panic hook: records the panic instead of printing it. A panic that reaches `main` is a
/// bug and is reported there as one `error: internal error …` line (with the backtrace under
/// `RUST_BACKTRACE`); one that a library raises on bad input and ropo catches where it calls
/// it (the tokenizers crate on some malformed `tokenizer.json`) becomes that call's error and
/// prints nothing of its own.
fn keep_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = info
        .payload()
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| info.payload().downcast_ref::<&str>().copied())
        .unwrap_or("no message");
    let place = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let backtrace = std::backtrace::Backtrace::capture();
    let trace = match backtrace.status() {
        std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
        _ => String::new(),
    };
    if let Ok(mut last) = LAST_PANIC.lock() {
        *last = format!("internal error{place}: {message} (a bug; please report it){trace}");
    }
}

/// Whether the last panic was `println!` failing on a closed stdout (a broken pipe).
fn stdout_closed() -> bool {
    let last = last_panic();
    last.contains("failed printing to stdout") && last.contains("Broken pipe")
}

/// The panic recorded by [`keep_panic`].
fn last_panic() -> String {
    LAST_PANIC
        .lock()
        .map(|last| last.clone())
        .unwrap_or_else(|_| "internal error".into())
}

/// Runs the chosen subcommand (`matches`: what clap read, for `train` to tell which flags were
/// given).
fn run(cli: Cli, matches: &ArgMatches) -> CmdResult {
    match cli.command {
        Command::Loss(args) => loss_cmd::run(&args),
        Command::PlotLosses(args) => plot_losses::run(&args),
        Command::Score(args) => model_cmds::run_score(&args),
        Command::Generate(args) => model_cmds::run_generate(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Doctor => doctor::run(),
        Command::Data(args) => data_cmd::run(&args),
        Command::Coordinator(args) => {
            eprintln!("coordinator: serving on port {} until stopped", args.port);
            Ok(ropo::train::data_parallel::serve_coordinator(args.port)?)
        }
        Command::Train(args) => {
            let given = matches
                .subcommand_matches("train")
                .map(align_cmd::trainer_flags_given)
                .unwrap_or_default();
            train_cmd::run(&args, &given)
        }
    }
}

/// What every subcommand returns: its error becomes the one line `main` prints.
type CmdResult = Result<(), Box<dyn std::error::Error>>;
