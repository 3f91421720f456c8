//! The `Distributed` options of `train`: how many ranks share each step on this machine, and
//! how long rank 0 waits for them.

use std::time::Duration;

use clap::Args;
use ropo::train::data_parallel::DataParallel;

/// The options that spread training over ranks.
#[derive(Args, Default)]
pub struct DistributedFlags {
    /// Ranks sharing each preference step, threads on this machine with a device each (default
    /// 1); each takes a share of every batch, and their gradients are summed before clipping and
    /// AdamW. The reference pass, evaluation and the filter's scoring are shared out too. Not
    /// kept in the run: a run resumes with any number.
    #[arg(long, help_heading = "Distributed")]
    data_parallel: Option<usize>,
    /// Seconds rank 0 waits for a data-parallel peer, or for the all-reduce, before ending the
    /// run (default 600).
    #[arg(long, help_heading = "Distributed", aliases = ["ddp_timeout", "ddp-timeout"])]
    peer_timeout: Option<u64>,
}

impl DistributedFlags {
    /// The ranks the flags ask for (1 without `--data-parallel`).
    pub fn ranks(&self) -> usize {
        self.data_parallel
            .unwrap_or(ropo::train::data_parallel::DataParallel::default().peers)
    }

    /// Applies the flags given to `settings` (the rest keep their defaults) and checks the
    /// ranks against the run's `batch`. These settings come only from the command line (a run
    /// folder does not keep them), so their errors name no config file.
    pub fn apply(&self, settings: &mut DataParallel, batch: usize) -> Result<(), String> {
        if let Some(peers) = self.data_parallel {
            settings.peers = peers;
        }
        if let Some(seconds) = self.peer_timeout {
            settings.timeout = Duration::from_secs(seconds);
        }
        settings.check(batch)
    }
}
