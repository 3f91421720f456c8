//! A training session: the preference steps taken in it by every run of the process, and when
//! it stops (`--stop-after-steps`, Ctrl-C) so that the run can be resumed.

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};

/// Preference steps taken in this session, by every run training in it (runs of a grid train
/// on several threads), and when to stop it.
#[derive(Debug, Default)]
pub struct Session {
    steps: AtomicUsize,
    stop_after: Option<usize>,
    interrupt: Option<Arc<AtomicBool>>,
}

impl Session {
    /// A session that ends (with [`TrainError::Stopped`]) after `stop_after` preference steps
    /// in all (`None`: runs to the end).
    pub fn new(stop_after: Option<usize>) -> Self {
        Self {
            steps: AtomicUsize::new(0),
            stop_after,
            interrupt: None,
        }
    }

    /// This session, also ended after the step during which `interrupt` becomes true (set by a
    /// signal handler: Ctrl-C checkpoints the run instead of losing it).
    pub fn with_interrupt(self, interrupt: Arc<AtomicBool>) -> Self {
        Self {
            interrupt: Some(interrupt),
            ..self
        }
    }

    /// Counts one finished step; returns the steps so far, and whether the session ends now.
    pub(crate) fn count_step(&self) -> (usize, bool) {
        let steps = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        let interrupted = self
            .interrupt
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst));
        let limit = self.stop_after.is_some_and(|limit| steps >= limit);
        (steps, limit || interrupted)
    }
}
