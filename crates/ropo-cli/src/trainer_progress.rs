//! What the trainer shows while it runs: a labelled bar with its ETA for every phase — SFT,
//! each pass that scores pairs without training (reference log-probs, evaluation, filter
//! scoring) and the preference steps — one at a time. Without a terminal (a log file, CI, `nohup`)
//! the same shows as a line every 30 seconds and at the end of each phase.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};
use ropo::train::records::{Progress, ScoringPass};

/// How often a phase prints its line when there is no terminal.
const LINE_EVERY: Duration = Duration::from_secs(30);

/// The phase a run is in, as its bar names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Sft,
    Scoring(ScoringPass),
    Steps,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sft => f.write_str("sft steps"),
            Self::Scoring(pass) => write!(f, "{pass}"),
            Self::Steps => f.write_str("preference steps"),
        }
    }
}

/// The current phase's bar (a terminal) or its periodic lines (no terminal).
struct Current {
    phase: Phase,
    bar: ProgressBar,
    started: Instant,
    /// Position at the phase's first event, which the rate counts from (a resumed run
    /// starts past 0; a scoring pass reports after its first batch).
    first: u64,
    position: u64,
    total: u64,
    message: String,
    last_line: Instant,
    /// The position of the last line printed, if any.
    printed: Option<u64>,
}

/// The trainer's progress display (see the module doc).
pub struct TrainerProgress {
    steps: u64,
    quiet: bool,
    terminal: bool,
    current: Option<Current>,
}

impl TrainerProgress {
    /// A display for a run of `steps` preference steps; `quiet` shows only stage lines and
    /// warnings.
    pub fn new(steps: u64, quiet: bool) -> Self {
        Self {
            steps,
            quiet,
            terminal: std::io::stderr().is_terminal(),
            current: None,
        }
    }

    /// Shows one progress event.
    pub fn show(&mut self, progress: &Progress) {
        match progress {
            Progress::Sft { step, total, loss } => self.advance(
                Phase::Sft,
                (*step as u64, *total as u64),
                format!("loss {loss:.3}"),
            ),
            Progress::Scoring { pass, done, total } => self.advance(
                Phase::Scoring(*pass),
                (*done as u64, *total as u64),
                String::new(),
            ),
            Progress::Step(s) => self.advance(
                Phase::Steps,
                (s.step as u64, self.steps),
                format!(
                    "loss {:.4} acc {:.2} lr {:.1e} {:.0} tok/s",
                    s.loss, s.accuracy, s.lr, s.tokens_per_s
                ),
            ),
            Progress::Evaluated(e) => self.line(&format!(
                "eval at step {}: loss {:.4}, rewards/accuracies {:.3}, rewards/margins {:.4}",
                e.step, e.loss, e.accuracy, e.margin
            )),
            Progress::Stage(stage) => self.line(stage),
            Progress::Warning(warning) => self.line(&format!("warning: {warning}")),
            Progress::RunStarted { .. } | Progress::RunFinished(_) => {}
        }
    }

    /// Ends the phase in progress: clears its bar, or without a terminal prints its line
    /// where it stands unless that was the last line printed.
    pub fn finish(&mut self) {
        if let Some(current) = self.current.take() {
            if !self.terminal && current.printed != Some(current.position) {
                eprintln!("{}", status_line(&current));
            }
            current.bar.finish_and_clear();
        }
    }

    /// Prints a line above the bar.
    /// Without a terminal the phase in progress prints where it stands first, so the lines
    /// read in the order things happened.
    fn line(&mut self, text: &str) {
        if !self.terminal {
            self.finish();
        }
        match &self.current {
            Some(current) => current.bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    /// Moves `phase` to `position` of `total` with `message`, starting its bar when the phase
    /// changes and finishing it at its end.
    fn advance(&mut self, phase: Phase, (position, total): (u64, u64), message: String) {
        if self.quiet {
            return;
        }
        if self.current.as_ref().is_none_or(|c| c.phase != phase) {
            self.finish();
            self.current = Some(self.start(phase, total, position));
        }
        let terminal = self.terminal;
        let Some(current) = self.current.as_mut() else {
            return;
        };
        current.bar.set_position(position);
        current.bar.set_message(message.clone());
        (current.position, current.total, current.message) = (position, total, message);
        if !terminal && current.last_line.elapsed() >= LINE_EVERY {
            current.last_line = Instant::now();
            current.printed = Some(position);
            eprintln!("{}", status_line(current));
        }
        if position >= total {
            self.finish();
        }
    }

    fn start(&self, phase: Phase, total: u64, first: u64) -> Current {
        let bar = if self.terminal {
            let template = "{prefix} {elapsed:>4} [{bar:30}] {pos}/{len} eta {eta} {msg}";
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            ProgressBar::new(total)
                .with_style(style)
                .with_prefix(phase.to_string())
                .with_position(first)
        } else {
            ProgressBar::hidden()
        };
        Current {
            phase,
            bar,
            started: Instant::now(),
            first,
            position: first,
            total,
            message: String::new(),
            last_line: Instant::now(),
            printed: None,
        }
    }
}

/// `[   42 s] preference steps 12/80 (15%) 0.21/s, eta 5m 24s: loss …` (the speed and
/// ETA once the phase has moved since its first event, until its end).
fn status_line(current: &Current) -> String {
    let (position, total, message) = (current.position, current.total, &current.message);
    let elapsed = current.started.elapsed().as_secs_f64();
    let rate = position.saturating_sub(current.first) as f64 / elapsed.max(1e-9);
    let speed = if rate > 0.0 && position < total {
        let eta = format_duration(total.saturating_sub(position) as f64 / rate);
        format!(" {rate:.2}/s, eta {eta}")
    } else {
        String::new()
    };
    let percent = 100 * position / total.max(1);
    let message = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    format!(
        "[{elapsed:>5.0} s] {} {position}/{total} ({percent}%){speed}{message}",
        current.phase
    )
}

/// Seconds as `1h 02m`, `4m 27s` or `12s`.
fn format_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_hours_minutes_or_seconds() {
        assert_eq!(format_duration(12.4), "12s");
        assert_eq!(format_duration(267.0), "4m 27s");
        assert_eq!(format_duration(3720.0), "1h 02m");
    }
}
