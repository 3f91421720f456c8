//! Fault injection for the reliability tests, driven by the `ROPO_FAULT` environment variable
//! (unset in normal use, and then this does nothing):
//! - `pause:NAME` — inside the write of snapshot `NAME` (its files written, not yet sealed or
//!   renamed), print `fault: paused inside the write of PATH` to stderr and wait, so a test can
//!   kill the process at exactly that moment;
//! - `disk-full:NAME` — fail that write with the operating system's "No space left on device".

use std::path::Path;

use crate::TrainError;

/// The environment variable read here.
pub const VARIABLE: &str = "ROPO_FAULT";

/// Called by [`crate::snapshot::save`] between writing snapshot `name`'s files into `tmp` and
/// sealing them.
pub fn inside_write(name: &str, tmp: &Path) -> Result<(), TrainError> {
    let Ok(fault) = std::env::var(VARIABLE) else {
        return Ok(());
    };
    match fault.split_once(':') {
        Some(("pause", target)) if target == name => {
            eprintln!("fault: paused inside the write of {}", tmp.display());
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        Some(("disk-full", target)) if target == name => Err(TrainError::Io {
            path: tmp.to_path_buf(),
            source: std::io::Error::from_raw_os_error(28),
        }),
        _ => Ok(()),
    }
}
