//! Fault injection for the reliability tests (`xtask/tests/faults.rs`), compiled in only with
//! the `fault-injection` feature, which those tests turn on; in any other build [`plan`]
//! refuses and nothing is ever injected. A fault is planned once per process (`xtask train
//! --fault …`) and fires inside the write of one named snapshot:
//! - `pause:NAME` — with the snapshot's files written, not yet sealed or renamed, print
//!   `fault: paused inside the write of PATH` to stderr and wait, so a test can kill the
//!   process at exactly that moment (`pause:model`: inside the trainer's export of `model/`);
//! - `disk-full:NAME` — fail that write with the operating system's "No space left on device";
//!
//! or inside one data-parallel peer (`crate::data_parallel`) as it starts a step's share:
//! - `peer-dies:RANK@STEP` — the peer's thread panics;
//! - `peer-hangs:RANK@STEP` — the peer waits forever; `peer-hangs:0@STEP` stops this node's
//!   rank 0 (printing `fault: peer 0 hangs at step STEP`), so that a multi-node test can kill
//!   the whole node at that moment.

use std::{path::Path, str::FromStr};

use crate::TrainError;

/// A fault and the snapshot whose write it hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait forever inside the write of `snapshot`.
    Pause {
        /// The snapshot's name (`sft`, `step-000002`, …).
        snapshot: String,
    },
    /// Fail the write of `snapshot` as a full disk would.
    DiskFull {
        /// The snapshot's name.
        snapshot: String,
    },
    /// Data-parallel peer `rank` panics at preference step `step`.
    PeerDies {
        /// The peer's rank.
        rank: usize,
        /// The preference step (1-based).
        step: usize,
    },
    /// Data-parallel peer `rank` waits forever at preference step `step`.
    PeerHangs {
        /// The peer's rank.
        rank: usize,
        /// The preference step (1-based).
        step: usize,
    },
}

impl FromStr for Fault {
    type Err = TrainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unknown = || {
            TrainError::Config(format!(
                "fault: `{text}` is not `pause:NAME`, `disk-full:NAME`, `peer-dies:RANK@STEP` \
                 or `peer-hangs:RANK@STEP`"
            ))
        };
        let at = |place: &str| -> Option<(usize, usize)> {
            let (rank, step) = place.split_once('@')?;
            Some((rank.parse().ok()?, step.parse().ok()?))
        };
        match text.split_once(':') {
            Some(("pause", name)) => Ok(Self::Pause {
                snapshot: name.into(),
            }),
            Some(("disk-full", name)) => Ok(Self::DiskFull {
                snapshot: name.into(),
            }),
            Some(("peer-dies", place)) => at(place)
                .map(|(rank, step)| Self::PeerDies { rank, step })
                .ok_or_else(unknown),
            Some(("peer-hangs", place)) => at(place)
                .map(|(rank, step)| Self::PeerHangs { rank, step })
                .ok_or_else(unknown),
            _ => Err(unknown()),
        }
    }
}

#[cfg(feature = "fault-injection")]
static PLANNED: std::sync::OnceLock<Fault> = std::sync::OnceLock::new();

/// Plans `fault` for the rest of the process (once).
#[cfg(feature = "fault-injection")]
pub fn plan(fault: Fault) -> Result<(), TrainError> {
    PLANNED
        .set(fault)
        .map_err(|_| TrainError::Config("fault: a fault is already planned".into()))
}

/// Refuses: this build has no fault injection.
#[cfg(not(feature = "fault-injection"))]
pub fn plan(fault: Fault) -> Result<(), TrainError> {
    Err(TrainError::Config(format!(
        "fault: {fault:?} needs a build with the `fault-injection` feature"
    )))
}

/// Called by [`super::snapshot::save`] between writing snapshot `name`'s files into `tmp` and
/// sealing them, and by [`super::snapshot::place`] (the trainer's exported `model`) before
/// the rename: fires the planned fault if it is about `name`.
#[cfg(feature = "fault-injection")]
pub(super) fn inside_write(name: &str, tmp: &Path) -> Result<(), TrainError> {
    match PLANNED.get() {
        Some(Fault::Pause { snapshot }) if snapshot == name => {
            eprintln!("fault: paused inside the write of {}", tmp.display());
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        Some(Fault::DiskFull { snapshot }) if snapshot == name => Err(TrainError::Io {
            path: tmp.to_path_buf(),
            source: std::io::Error::from_raw_os_error(28),
        }),
        _ => Ok(()),
    }
}

/// Does nothing: this build has no fault injection.
#[cfg(not(feature = "fault-injection"))]
pub(super) fn inside_write(_name: &str, _tmp: &Path) -> Result<(), TrainError> {
    Ok(())
}

/// Called by each data-parallel peer, rank 0 included, as it starts its share of preference
/// step `step`: fires the planned fault if it is about this rank and step.
#[cfg(feature = "fault-injection")]
pub(crate) fn in_peer(rank: usize, step: usize) {
    match PLANNED.get() {
        Some(Fault::PeerDies { rank: r, step: s }) if (*r, *s) == (rank, step) => {
            panic!("fault: peer {rank} dies at step {step}")
        }
        Some(Fault::PeerHangs { rank: r, step: s }) if (*r, *s) == (rank, step) => {
            eprintln!("fault: peer {rank} hangs at step {step}");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        _ => {}
    }
}

/// Does nothing: this build has no fault injection.
#[cfg(not(feature = "fault-injection"))]
pub(crate) fn in_peer(_rank: usize, _step: usize) {}
