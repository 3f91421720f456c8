//! `cargo xtask NAME`: ropo's commands (the same as the `ropo` binary's, `crates/ropo-cli`)
//! and the developers' tasks: benchmarks and the loss plot (see `cargo xtask --help`).
//!
//! `cargo xtask train` keeps the command line it had before `ropo train` and `ropo experiment`
//! split it: [`train_compat`] turns it into the one of those it stands for.

mod bench;
mod bench_epoch;
mod bench_generate;
mod bench_memory;
mod bench_support;
mod bench_vocab;
mod memory;
mod plot_losses;
mod tokenize_bench;
mod train_compat;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ropo_cli::{precision::PrecisionFlags, process, trl_names, CmdResult};

/// ropo's commands and the developers' tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The precision of matrix products.
    #[command(flatten)]
    precision: PrecisionFlags,
}

#[derive(Subcommand)]
enum Command {
    /// ropo's commands.
    #[command(flatten)]
    Ropo(ropo_cli::cli::Command),
    /// Draw the gradient weight −∂ℓ/∂h of DPO, cDPO, rDPO and ROPO (docs/losses-weight.svg).
    PlotLosses(plot_losses::PlotArgs),
    /// Throughput benchmarks.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    process::set_up();
    let given: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if train_compat::asks_grid_help(&given) {
        print!("{}", train_compat::GRID_HELP_PREFACE);
    }
    let args = train_compat::ropo_command_line(given);
    if let Err(error) = trl_names::refuse_unoffered(&args) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse_from(&args);
    process::run_reporting_errors(|| run(cli))
}

/// Sets the precision and runs the chosen subcommand.
fn run(cli: Cli) -> CmdResult {
    cli.precision.apply();
    match cli.command {
        Command::Ropo(command) => command.run(),
        Command::PlotLosses(args) => {
            ropo::backend::probe()?;
            plot_losses::run(&args)
        }
        Command::Bench(args) => {
            ropo::backend::probe()?;
            bench::run(&args)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
