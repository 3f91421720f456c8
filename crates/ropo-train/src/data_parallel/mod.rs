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
//!
//! Across machines ([`Nodes`]), each node runs its own ranks and the nodes' all-reduce goes
//! through burn-collective's global level: node `n`'s rank `r` is global rank `n·peers + r`
//! and takes that share of the batch; each step's metrics are summed over the nodes before the
//! gradients, so every node checks the same loss and all stop together on a non-finite one.

mod coordinator;
mod group;
mod nodes;
mod peer;

use std::time::Duration;

pub use coordinator::serve_coordinator;
pub(crate) use group::PeerGroup;
pub use nodes::Nodes;
pub(crate) use nodes::{fingerprint, RollCall};

/// How many ranks share each preference step, and how long rank 0 waits for any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataParallel {
    /// Ranks on this machine, rank 0 included (1: no data parallelism).
    pub peers: usize,
    /// The longest rank 0 waits for a peer's report or for the all-reduce to finish.
    pub timeout: Duration,
    /// The machines of a multi-node run, each with `peers` ranks (`None`: this one alone).
    pub nodes: Option<Nodes>,
}

impl Default for DataParallel {
    fn default() -> Self {
        Self {
            peers: 1,
            timeout: Duration::from_secs(600),
            nodes: None,
        }
    }
}

impl DataParallel {
    /// Refuses a number of ranks no run can start with; `batch` is the global batch size.
    pub fn check(&self, batch: usize) -> Result<(), String> {
        let ranks = self.ranks();
        // A batch of 0 is the trainer's own error (`batch: must be at least 1`), not this one.
        if ranks == 0 || (batch > 0 && ranks > batch) {
            let nodes = match self.nodes {
                Some(nodes) => format!(" ({} nodes × {})", nodes.count, self.peers),
                None => String::new(),
            };
            return Err(format!(
                "data_parallel: {ranks} ranks{nodes} for batches of {batch} pairs; give 1 to \
                 {batch}"
            ));
        }
        Ok(())
    }

    /// Ranks over every node.
    pub fn ranks(&self) -> usize {
        self.peers * self.nodes.map_or(1, |nodes| nodes.count)
    }

    /// The global rank of this machine's rank 0.
    pub fn first_rank(&self) -> usize {
        self.peers * self.nodes.map_or(0, |nodes| nodes.rank)
    }

    /// Whether this process writes the run (checkpoints, metrics, the model): node 0 alone.
    pub fn writes(&self) -> bool {
        self.nodes.is_none_or(|nodes| nodes.rank == 0)
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
        let nodes = Nodes {
            count: 2,
            rank: 1,
            coordinator: "127.0.0.1:29500".parse().unwrap(),
            address: "127.0.0.1:29502".parse().unwrap(),
        };
        let spread = DataParallel {
            peers: 2,
            nodes: Some(nodes),
            ..DataParallel::default()
        };
        assert_eq!((spread.ranks(), spread.first_rank()), (4, 2));
        assert!(!spread.writes());
        assert!(spread
            .check(3)
            .unwrap_err()
            .contains("4 ranks (2 nodes × 2) for batches of 3"));
    }
}
