//! Data-parallel preference steps on one machine: `peers` ranks, each a thread with its own
//! copy of the policy (on its own device where the backend has several) and of AdamW, each
//! taking a contiguous share of every batch. Their gradients are summed by burn-collective's
//! all-reduce (every loss is already divided by the whole batch's size), so each rank clips and
//! applies the same update and the copies stay equal. Rank 0 is the calling thread: it alone
//! validates, checkpoints and writes, and a resumed run starts every rank from rank 0's
//! checkpoint, whatever the number of ranks.
//!
//! A step runs in two phases so that no rank waits inside the all-reduce for one that has
//! failed: each peer computes its share and reports its metrics, and only when rank 0 has every
//! report (and found the loss finite) does it tell the peers to reduce. A peer that dies, sends
//! nothing within the timeout, or leaves the all-reduce unfinished ends the run with an error
//! naming it.

mod group;
mod peer;

use std::time::Duration;

pub(crate) use group::PeerGroup;

/// How many ranks share each preference step, and how long rank 0 waits for any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataParallel {
    /// Ranks, rank 0 included (1: no data parallelism).
    pub peers: usize,
    /// The longest rank 0 waits for a peer's report or for the all-reduce to finish.
    pub timeout: Duration,
}

impl Default for DataParallel {
    fn default() -> Self {
        Self {
            peers: 1,
            timeout: Duration::from_secs(600),
        }
    }
}

impl DataParallel {
    /// Refuses a number of ranks no run can start with; `batch` is the global batch size.
    pub fn check(&self, batch: usize) -> Result<(), String> {
        // A batch of 0 is the trainer's own error (`batch: must be at least 1`), not this one.
        if self.peers == 0 || (batch > 0 && self.peers > batch) {
            return Err(format!(
                "data_parallel: {} ranks for batches of {batch} pairs; give 1 to {batch}",
                self.peers
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_ranks_than_pairs_or_none_are_refused() {
        let ranks = |peers| DataParallel {
            peers,
            ..DataParallel::default()
        };
        assert!(ranks(4).check(4).is_ok());
        assert!(ranks(5)
            .check(4)
            .unwrap_err()
            .contains("5 ranks for batches of 4 pairs"));
        assert!(ranks(0).check(4).is_err());
    }
}
