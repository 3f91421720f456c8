//! The command line of `ropo experiment`: which experiment ([`ExperimentCommand`]) and the
//! flags that override its config.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ropo::train::loss_entry::LossEntry;

use crate::{
    choices::{FrameworkFlags, NoiseModelChoice},
    run_flags::{OutputFlags, SessionFlags},
};

/// The built-in experiments: the gold-reward grid and its presets, and a comparison on real
/// pairs.
#[derive(Subcommand)]
pub enum ExperimentCommand {
    /// SFT, then every loss under label noise on the gold-reward task, side by side (with no
    /// flags: the default grid, in runs/gold).
    Gold(GoldArgs),
    /// The default grid under a Bradley–Terry judge of the gold reward instead of symmetric
    /// flips (configs/practical.toml, in runs/practical).
    Practical(GridFlags),
    /// Where DPO memorises: DPO, ROPO, Dr. DPO, Hölder-DPO, RE-PO and ropo+filter at η = 0.4
    /// for 10 epochs, validated every epoch with the flip-detection AUC of the loss
    /// (configs/length.toml, in runs/length).
    Length(GridFlags),
    /// A comparison on real pairs from a config with a `[dataset]` table (a model, its
    /// tokenizer and a pairs file; e.g. configs/smollm2-hh.toml), judged by clean held-out
    /// accuracy and by how well each method finds the flipped labels.
    Dataset(DatasetArgs),
}

/// `experiment gold`: the grid of a config file, or the default one.
#[derive(Args)]
pub struct GoldArgs {
    /// A TOML experiment config; fields left out keep their defaults (docs/training.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The grid's flags.
    #[command(flatten)]
    pub grid: GridFlags,
}

/// The flags of a gold-reward grid, each over its config's field.
#[derive(Args)]
pub struct GridFlags {
    /// Continue the run in this folder where it stopped (its config.toml is used as is).
    #[arg(long, conflicts_with_all = ["losses", "noise", "seeds", "steps", "out", "overwrite", "noise_model", "scorer", "round_schedule"])]
    pub resume: Option<PathBuf>,
    /// Losses, noise rates, seeds and steps.
    #[command(flatten)]
    pub grid: GridOverrides,
    /// How labels are flipped at each noise rate: `symmetric`, `bradley_terry` or
    /// `length_judge`.
    #[arg(long, value_enum)]
    pub noise_model: Option<NoiseModelChoice>,
    /// The ROPO framework's choices.
    #[command(flatten)]
    pub framework: FrameworkFlags,
    /// Worker threads, each training one seed's runs at a time (default: the machine's
    /// cores); the results do not depend on it.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// The run folder.
    #[command(flatten)]
    pub output: OutputFlags,
    /// Where this session stops.
    #[command(flatten)]
    pub session: SessionFlags,
}

/// The fields every experiment's grid has, each over its config's.
#[derive(Args)]
pub struct GridOverrides {
    /// Losses to compare, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub losses: Option<Vec<String>>,
    /// Label-noise rates, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub noise: Option<Vec<f64>>,
    /// Seeds per (loss, noise).
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Preference steps per run.
    #[arg(long, aliases = ["max_steps", "max-steps"])]
    pub steps: Option<usize>,
}

impl GridOverrides {
    /// Applies the command-line overrides to the fields every experiment has.
    pub fn override_into(
        &self,
        losses: &mut Vec<LossEntry>,
        noise: &mut Vec<f64>,
        seeds: &mut u64,
        steps: &mut usize,
    ) {
        if let Some(value) = &self.losses {
            *losses = value
                .iter()
                .map(|name| LossEntry::from(name.as_str()))
                .collect();
        }
        if let Some(value) = &self.noise {
            noise.clone_from(value);
        }
        if let Some(value) = self.seeds {
            *seeds = value;
        }
        if let Some(value) = self.steps {
            *steps = value;
        }
    }
}

/// `experiment dataset`: a real-data comparison, its runs trained one after another, each
/// kept in the run folder when it finishes.
#[derive(Args)]
pub struct DatasetArgs {
    /// The TOML config with the `[dataset]` table; its relative paths are read against its
    /// folder.
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Continue the comparison in this folder: the runs it finished are kept, the others
    /// trained (its config.toml is used as is).
    #[arg(long, conflicts_with_all = ["config", "losses", "noise", "seeds", "steps", "out", "overwrite", "noise_model"])]
    pub resume: Option<PathBuf>,
    /// Losses, noise rates, seeds and steps.
    #[command(flatten)]
    pub grid: GridOverrides,
    /// How labels are flipped at each noise rate: `symmetric` or `length_judge`.
    #[arg(long, value_enum)]
    pub noise_model: Option<NoiseModelChoice>,
    /// The run folder (default: runs/ and the config's name).
    #[command(flatten)]
    pub output: OutputFlags,
}

/// A preset grid: a config file in `configs/`, built into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The default grid under practical (Bradley–Terry) noise.
    Practical,
    /// Where DPO memorises: win rate and flip detection against training length.
    Length,
}

impl Preset {
    /// The preset's config file, by its path in the repository, and its text.
    pub fn config(self) -> (&'static str, &'static str) {
        match self {
            Self::Practical => (
                "configs/practical.toml",
                include_str!("../../../configs/practical.toml"),
            ),
            Self::Length => (
                "configs/length.toml",
                include_str!("../../../configs/length.toml"),
            ),
        }
    }

    /// The run folder the experiment writes when `--out` is not given.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Practical => "runs/practical",
            Self::Length => "runs/length",
        }
    }
}

#[cfg(test)]
mod tests {
    use ropo::train::{config::GoldExperiment, label_noise::NoiseModel, loss_entry::LossEntry};

    use super::Preset;

    fn preset(preset: Preset) -> GoldExperiment {
        toml::from_str(preset.config().1).unwrap()
    }

    #[test]
    fn each_preset_is_the_default_run_with_its_own_fields() {
        let default = GoldExperiment::default();
        assert_eq!(
            preset(Preset::Practical),
            GoldExperiment {
                noise_model: NoiseModel::BradleyTerry,
                ..default.clone()
            }
        );
        let mut length = default.clone();
        length.losses = ["dpo", "ropo", "drdpo", "holder", "repo", "ropo+filter"]
            .map(LossEntry::from)
            .to_vec();
        length.noise = vec![0.4];
        length.preference.steps = 470;
        length.eval_every = 47;
        length.noise_detection = true;
        assert_eq!(preset(Preset::Length), length);
    }
}
