//! The progress bar of a training command.

use indicatif::{ProgressBar, ProgressStyle};

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
