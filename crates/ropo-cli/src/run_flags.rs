//! The flags every training command shares: where the run is written ([`OutputFlags`]) and how
//! a session of it runs ([`SessionFlags`]).

use std::path::{Path, PathBuf};

use clap::Args;
use ropo::run_folder::Entry;

/// Where a run writes and how it enters its folder.
#[derive(Args, Default)]
pub struct OutputFlags {
    /// The run folder (default: runs/NAME, NAME the experiment's, or for the trainer the data
    /// file's name).
    #[arg(long, aliases = ["output_dir", "output-dir"])]
    pub out: Option<PathBuf>,
    /// Start afresh in a run folder that holds an earlier run, removing what it holds.
    #[arg(long)]
    pub overwrite: bool,
    /// Log one line per finished run instead of a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl OutputFlags {
    /// The run folder: `--out`, else `default`.
    pub fn folder(&self, default: impl Into<PathBuf>) -> PathBuf {
        self.out.clone().unwrap_or_else(|| default.into())
    }
}

/// How one session of a checkpointed run runs: where it stops, and the faults the reliability
/// tests plan.
#[derive(Args, Default)]
pub struct SessionFlags {
    /// End this session after this many steps (a checkpoint is written; continue with
    /// --resume).
    #[arg(long)]
    pub stop_after_steps: Option<usize>,
    /// For the reliability tests: a fault inside one snapshot write (`pause:NAME`,
    /// `disk-full:NAME`); needs a build with ropo-train's `fault-injection` feature.
    #[arg(long, hide = true)]
    pub fault: Option<String>,
}

impl SessionFlags {
    /// Checks `--stop-after-steps` and plans `--fault`, where given, before the run starts.
    pub fn prepare(&self) -> Result<(), Box<dyn std::error::Error>> {
        if self.stop_after_steps == Some(0) {
            return Err(
                "--stop-after-steps: must be at least 1 (leave it out to run to the end)".into(),
            );
        }
        if let Some(fault) = &self.fault {
            ropo::train::store::fault::plan(fault.parse()?)?;
        }
        Ok(())
    }
}

/// How a command enters its run folder: `--resume FOLDER`, or fresh (`--overwrite` clearing it).
pub fn entry(resume: Option<&Path>, output: &OutputFlags) -> Entry {
    match resume {
        Some(_) => Entry::Resume,
        None => Entry::Fresh {
            overwrite: output.overwrite,
        },
    }
}
