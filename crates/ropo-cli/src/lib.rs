//! The `ropo` command line as a library: the binary `ropo` (`cargo install --path
//! crates/ropo-cli`) is [`cli::Cli`], and `cargo xtask` runs the same commands.
//!
//! One module per command (`trainer_cmd` for `ropo train`, `experiment_cmd` and `dataset_cmd`
//! for `ropo experiment`, `model_cmds`, `data_cmd`, `loss_cmd`, `doctor`), one per group of
//! flags (`trainer_args`, `experiment_args`, `run_flags`, `choices`, `distributed_flags`,
//! `precision`), and what they share (`settings`, `progress_bar`, `trainer_progress`,
//! `interrupt`, `trl_names`, `process`). The rules for the files a run names and writes live
//! in the `ropo` library (`ropo::paths`, `ropo::run_folder`).

pub mod choices;
pub mod cli;
pub mod data_cmd;
pub mod dataset_cmd;
pub mod distributed_flags;
pub mod doctor;
pub mod experiment_args;
pub mod experiment_cmd;
pub mod interrupt;
pub mod loss_cmd;
pub mod model_cmds;
pub mod precision;
pub mod process;
pub mod progress_bar;
pub mod run_flags;
pub mod settings;
pub mod trainer_args;
pub mod trainer_cmd;
pub mod trainer_progress;
pub mod trl_names;

/// What every command returns: its error becomes the one line the process prints.
pub type CmdResult = Result<(), Box<dyn std::error::Error>>;
