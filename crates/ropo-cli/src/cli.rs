//! The `ropo` command line: one subcommand per job, each with its own arguments.

use clap::{Parser, Subcommand};

use crate::{
    data_cmd, doctor, experiment_args::ExperimentCommand, experiment_cmd, loss_cmd, model_cmds,
    precision::PrecisionFlags, trainer_args::TrainerArgs, trainer_cmd, CmdResult,
};

/// ropo: align a language model on preference pairs whose labels you do not fully trust.
#[derive(Parser)]
#[command(name = "ropo", version, about)]
pub struct Cli {
    /// The job.
    #[command(subcommand)]
    pub command: Command,
    /// The precision of matrix products.
    #[command(flatten)]
    pub precision: PrecisionFlags,
}

/// ropo's jobs.
#[derive(Subcommand)]
pub enum Command {
    /// The trainer: one method on your model and pairs (`--model M --data D`) → OUT/model/,
    /// metrics.jsonl with TRL's names, report.md and the suspect labels (docs/align.md).
    Train(Box<TrainerArgs>),
    /// The built-in noisy-preference experiments: every loss under label noise, side by side
    /// (docs/training.md).
    #[command(subcommand)]
    Experiment(ExperimentCommand),
    /// Score a response under a model: `{"logp_sum", "logp_mean", "n_tokens"}` as JSON.
    Score(Box<model_cmds::ScoreArgs>),
    /// Continue a prompt with a model and print the text.
    Generate(Box<model_cmds::GenerateArgs>),
    /// Inspect a preference dataset, or write a copy with label noise.
    Data(data_cmd::DataArgs),
    /// Print a preference loss and its derivative ∂ℓ/∂h as JSON.
    Loss(Box<loss_cmd::LossArgs>),
    /// What this build's backend finds on this machine (adapter, driver, libraries), and a
    /// small computation checked against the CPU.
    Doctor,
    /// Serve the nodes of one multi-node `train` run until stopped (docs/distributed.md).
    Coordinator(CoordinatorArgs),
}

/// `coordinator`'s arguments.
#[derive(clap::Args)]
pub struct CoordinatorArgs {
    /// The port every node's --coordinator HOST:PORT names (listens on every interface).
    #[arg(long)]
    pub port: u16,
}

impl Command {
    /// Runs the job, after checking that this build's backend works here (but for the jobs
    /// that need none: `doctor` reports what is missing, `coordinator` only relays).
    pub fn run(self) -> CmdResult {
        if !matches!(self, Self::Doctor | Self::Coordinator(_)) {
            ropo::backend::probe()?;
        }
        match self {
            Self::Train(args) => trainer_cmd::run(&args),
            Self::Experiment(command) => experiment_cmd::run(&command),
            Self::Score(args) => model_cmds::run_score(&args),
            Self::Generate(args) => model_cmds::run_generate(&args),
            Self::Data(args) => data_cmd::run(&args),
            Self::Loss(args) => loss_cmd::run(&args),
            Self::Doctor => doctor::run(),
            Self::Coordinator(args) => {
                eprintln!("coordinator: serving on port {} until stopped", args.port);
                Ok(ropo::train::data_parallel::serve_coordinator(args.port)?)
            }
        }
    }
}

impl Cli {
    /// Sets the precision and runs the job.
    pub fn run(self) -> CmdResult {
        self.precision.apply();
        self.command.run()
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
