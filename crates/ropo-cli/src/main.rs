//! `ropo`: the trainer, the experiments and the tools around them (`ropo --help`).

use std::{ffi::OsString, process::ExitCode};

use clap::Parser;
use ropo_cli::{cli::Cli, process, trl_names};

fn main() -> ExitCode {
    process::set_up();
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Err(error) = trl_names::refuse_unoffered(&args) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse_from(&args);
    process::run_reporting_errors(|| cli.run())
}
