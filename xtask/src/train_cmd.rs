//! `cargo xtask train`: the main job.

use std::time::Instant;

use clap::Args;
use ropo::backend::Training;
use ropo::train::experiment::{GoldExperiment, Progress};

use crate::CmdResult;

/// Run the built-in noisy-preference experiment (defaults: the embedded run).
#[derive(Args)]
pub struct TrainArgs {
    /// A TOML experiment config (every field optional; defaults are the embedded run).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Losses to compare, comma-separated.
    #[arg(long, value_delimiter = ',')]
    losses: Option<Vec<String>>,
    /// Label-noise rates, comma-separated.
    #[arg(long, value_delimiter = ',')]
    noise: Option<Vec<f64>>,
    /// Seeds per (loss, noise).
    #[arg(long)]
    seeds: Option<u64>,
    /// Preference steps per run.
    #[arg(long)]
    steps: Option<usize>,
    /// Print one line per run instead of progress.
    #[arg(long)]
    quiet: bool,
}

/// Runs the experiment and prints its table.
pub fn run(args: &TrainArgs) -> CmdResult {
    let mut experiment = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str::<GoldExperiment>(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => GoldExperiment::default(),
    };
    if let Some(losses) = &args.losses {
        experiment.losses.clone_from(losses);
    }
    if let Some(noise) = &args.noise {
        experiment.noise.clone_from(noise);
    }
    if let Some(seeds) = args.seeds {
        experiment.seeds = seeds;
    }
    if let Some(steps) = args.steps {
        experiment.preference.steps = steps;
    }
    let start = Instant::now();
    let outcome = experiment.run::<Training>(&Default::default(), &mut |progress| {
        if let Progress::Sft(step, total, loss) = progress {
            if step % 50 == 0 || step == total {
                eprintln!("sft {step}/{total} loss {loss:.4}");
            }
        }
        if let Progress::RunFinished(r) = progress {
            eprintln!(
                "{:>8} η={:.1} seed={} acc={:.3} gold={:.3} win={:.3} ({:.0}s)",
                r.loss,
                r.noise,
                r.seed,
                r.clean_accuracy,
                r.gold_reward,
                r.gold_win_rate,
                start.elapsed().as_secs_f64()
            );
        }
    })?;
    for sft in &outcome.sft {
        eprintln!("sft seed {}: gold {:.3}", sft.seed, sft.gold_reward);
    }
    Ok(())
}
