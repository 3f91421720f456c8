//! Ctrl-C and SIGTERM while the trainer runs: the first asks the run to stop after its current
//! step and checkpoint it (`--resume` continues it); a second ends the process at once.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

/// A flag that the first SIGINT or SIGTERM sets, for [`ropo::train::session::Session`] to stop
/// on; the second signal exits with status 130 without waiting for the step.
pub fn on_signal() -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    ctrlc::set_handler(move || {
        if set.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: quitting without waiting for the step");
            std::process::exit(130);
        }
        eprintln!(
            "interrupted: stopping after the current step with a checkpoint (interrupt again \
             to quit at once)"
        );
    })
    .map_err(|e| format!("cannot watch for Ctrl-C: {e}"))?;
    Ok(flag)
}
