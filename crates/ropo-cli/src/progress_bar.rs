//! The progress bar of a training command, and how a grid of runs shows its progress on it.

use indicatif::{ProgressBar, ProgressStyle};
use ropo::train::records::Progress;

/// A bar of `total` steps (hidden when `quiet`): elapsed time, the bar, the position,
/// `extra` (e.g. `eta {eta}`) and the message.
pub fn progress_bar(total: u64, quiet: bool, extra: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let template = format!("{{elapsed:>4}} [{{bar:30}}] {{pos}}/{{len}} {extra}{{msg}}");
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(total).with_style(style)
}

/// A grid's progress on its bar: one tick per SFT or preference step, the current run and its
/// last step's metrics as the message, warnings and stages printed above the bar.
pub struct GridProgress {
    /// The bar (hidden when quiet).
    pub bar: ProgressBar,
    current: String,
}

impl GridProgress {
    /// Progress over `total` steps (hidden when `quiet`).
    pub fn new(total: u64, quiet: bool) -> Self {
        Self {
            bar: progress_bar(total, quiet, "eta {eta} "),
            current: String::new(),
        }
    }

    /// Shows `progress`; a finished run or an evaluation is left to the caller.
    pub fn show(&mut self, progress: &Progress) {
        let bar = &self.bar;
        match progress {
            Progress::Sft { step, total, loss } => {
                bar.inc(1);
                bar.set_message(format!("sft {step}/{total} loss {loss:.3}"));
            }
            Progress::RunStarted {
                index,
                total,
                method,
                noise,
                seed,
            } => {
                self.current = format!("run {}/{total} {method} η={noise} seed={seed}", index + 1);
            }
            Progress::Step(s) => {
                bar.inc(1);
                bar.set_message(format!(
                    "{} | loss {:.3} acc {:.2} lr {:.1e} {:.0} tok/s",
                    self.current, s.loss, s.accuracy, s.lr, s.tokens_per_s
                ));
            }
            Progress::Warning(warning) => bar.suspend(|| eprintln!("warning: {warning}")),
            Progress::Stage(stage) => bar.suspend(|| eprintln!("{stage}")),
            Progress::Scoring { pass, done, total } => {
                bar.set_message(format!("{} {pass} {done}/{total} pairs", self.current))
            }
            Progress::Evaluated(_) | Progress::RunFinished(_) => {}
        }
    }
}
