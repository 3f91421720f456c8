//! The command line of `cargo xtask train`: the experiment's flags ([`TrainArgs`]) with the
//! trainer's among them ([`AlignFlags`]), the choices they take, and the rules both commands
//! share for how a run folder is entered, how a config's paths are anchored and how an error
//! is put on one line.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ropo::core::LossSpec;
use ropo::train::{
    framework::{RoundSchedule, Scorer},
    label_noise::NoiseModel,
};

use crate::{distributed_flags::DistributedFlags, run_folder::Entry};

/// Run the noisy-preference experiment (with no arguments: the embedded default).
#[derive(Args)]
pub struct TrainArgs {
    /// A TOML experiment config; fields left out keep their defaults (see docs/training.md).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Losses to compare, comma-separated (overrides the config).
    #[arg(long, value_delimiter = ',')]
    pub(crate) losses: Option<Vec<String>>,
    /// Label-noise rates, comma-separated (overrides the config); the trainer takes one rate,
    /// injected into your pairs (default 0: labels as read).
    #[arg(long, value_delimiter = ',')]
    pub(crate) noise: Option<Vec<f64>>,
    /// Seeds per (loss, noise) (overrides the config).
    #[arg(long)]
    pub(crate) seeds: Option<u64>,
    /// Preference steps per run (overrides the config; for the trainer, instead of --epochs).
    #[arg(long, aliases = ["max_steps", "max-steps"])]
    pub(crate) steps: Option<usize>,
    /// The run folder.
    #[arg(long, default_value = "runs/gold", aliases = ["output_dir", "output-dir"])]
    pub(crate) out: PathBuf,
    /// Continue the run in this folder where it stopped (its config.toml is used as is).
    #[arg(long, conflicts_with_all = ["config", "losses", "noise", "seeds", "steps", "out", "experiment", "noise_model", "scorer", "round_schedule"])]
    pub(crate) resume: Option<PathBuf>,
    /// Start afresh in a run folder that holds an earlier run, removing what it holds.
    #[arg(long, conflicts_with = "resume")]
    pub(crate) overwrite: bool,
    /// End this session after this many preference steps (a checkpoint is written; continue
    /// with --resume).
    #[arg(long)]
    pub(crate) stop_after_steps: Option<usize>,
    /// Log one line per finished run instead of a progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// A preset config from configs/ (instead of --config): `practical`, the default run
    /// under a Bradley–Terry judge of the gold reward instead of symmetric flips (in
    /// runs/practical unless --out says otherwise); `length`, DPO, ROPO, Dr. DPO, Hölder-DPO,
    /// RE-PO and ropo+filter at η = 0.4 for 10 epochs, validated every epoch with the
    /// flip-detection AUC of the loss (in runs/length).
    #[arg(long, value_enum, conflicts_with = "config")]
    pub(crate) experiment: Option<ExperimentKind>,
    /// How labels are flipped at each noise rate: `symmetric` or `bradley_terry` (overrides
    /// the config).
    #[arg(long, value_enum)]
    pub(crate) noise_model: Option<NoiseModelChoice>,
    /// How rejection sampling (`+filter+rs` methods) ranks candidates (overrides the config;
    /// default `policy_log_prob_per_token`; `implicit_reward` is the paper's form).
    #[arg(long, value_enum)]
    pub(crate) scorer: Option<ScorerChoice>,
    /// How the learning rate runs over the ROPO framework's rounds: `restart` (each round its
    /// own warmup and cosine decay; the default) or `continuous` (one schedule over all rounds).
    #[arg(long, value_enum)]
    pub(crate) round_schedule: Option<RoundScheduleChoice>,
    /// Worker threads, each training one seed's runs at a time (default: the machine's
    /// cores); the results do not depend on it.
    #[arg(long)]
    pub(crate) jobs: Option<usize>,
    /// For the reliability tests: a fault inside one snapshot write (`pause:NAME`,
    /// `disk-full:NAME`); needs a build with ropo-train's `fault-injection` feature.
    #[arg(long, hide = true)]
    pub(crate) fault: Option<String>,
    /// The trainer's options (with --model and --data).
    #[command(flatten)]
    pub(crate) align: AlignFlags,
}

/// The preset experiments `--experiment` names, each a config file in `configs/` built into
/// xtask (without it: the default grid, or `--config`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExperimentKind {
    /// The default grid under practical (Bradley–Terry) noise.
    Practical,
    /// Where DPO memorises: win rate and flip detection against training length.
    Length,
}

impl ExperimentKind {
    /// The preset's config file, by its path in the repository, and its text.
    pub(crate) fn preset(self) -> (&'static str, &'static str) {
        match self {
            Self::Practical => (
                "configs/practical.toml",
                include_str!("../../configs/practical.toml"),
            ),
            Self::Length => (
                "configs/length.toml",
                include_str!("../../configs/length.toml"),
            ),
        }
    }

    /// The run folder the experiment writes when `--out` is not given.
    pub(crate) fn folder(self) -> &'static str {
        match self {
            Self::Practical => "runs/practical",
            Self::Length => "runs/length",
        }
    }
}

/// How labels are flipped (`--noise-model`), as ropo-train's [`NoiseModel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum NoiseModelChoice {
    /// Each label flipped with probability η.
    #[value(name = "symmetric")]
    Symmetric,
    /// A Bradley–Terry judge of the gold reward, wrong on a share η of the labels.
    #[value(name = "bradley_terry")]
    BradleyTerry,
}

impl From<NoiseModelChoice> for NoiseModel {
    fn from(choice: NoiseModelChoice) -> Self {
        match choice {
            NoiseModelChoice::Symmetric => Self::Symmetric,
            NoiseModelChoice::BradleyTerry => Self::BradleyTerry,
        }
    }
}

/// How rejection sampling ranks candidates (`--scorer`), as ropo-train's [`Scorer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ScorerChoice {
    /// The implicit reward.
    #[value(name = "implicit_reward")]
    ImplicitReward,
    /// The implicit reward per response token.
    #[value(name = "implicit_reward_per_token")]
    ImplicitRewardPerToken,
    /// The policy's own log-probability.
    #[value(name = "policy_log_prob")]
    PolicyLogProb,
    /// The policy's log-probability per response token.
    #[value(name = "policy_log_prob_per_token")]
    PolicyLogProbPerToken,
}

impl From<ScorerChoice> for Scorer {
    fn from(choice: ScorerChoice) -> Self {
        match choice {
            ScorerChoice::ImplicitReward => Self::ImplicitReward,
            ScorerChoice::ImplicitRewardPerToken => Self::ImplicitRewardPerToken,
            ScorerChoice::PolicyLogProb => Self::PolicyLogProb,
            ScorerChoice::PolicyLogProbPerToken => Self::PolicyLogProbPerToken,
        }
    }
}

/// How the learning rate runs over rounds (`--round-schedule`), as ropo-train's
/// [`RoundSchedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RoundScheduleChoice {
    /// Each round its own warmup and decay.
    Restart,
    /// One warmup and decay over all rounds.
    Continuous,
}

impl From<RoundScheduleChoice> for RoundSchedule {
    fn from(choice: RoundScheduleChoice) -> Self {
        match choice {
            RoundScheduleChoice::Restart => Self::Restart,
            RoundScheduleChoice::Continuous => Self::Continuous,
        }
    }
}

/// The trainer's options (`cargo xtask train --model M --data D …`); each overrides the same
/// field of `--config`. Defaults: docs/align.md.
#[derive(Args, Default)]
pub struct AlignFlags {
    /// The model to align: a Hugging Face folder or Hub id (`org/name[@revision]`), a
    /// `.safetensors` file, or a llama2.c `.bin`.
    #[arg(long, help_heading = "Trainer", aliases = ["model_name_or_path", "model-name-or-path"])]
    pub(crate) model: Option<PathBuf>,
    /// The preference data in any format ropo reads: a JSONL (`.gz` allowed) or parquet file,
    /// a folder of them, or a Hub dataset id.
    #[arg(long, help_heading = "Trainer", aliases = ["dataset_name", "dataset-name"])]
    pub(crate) data: Option<PathBuf>,
    /// Tokenizer file, folder or Hub id (default: the model's folder).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) tokenizer: Option<PathBuf>,
    /// Chat template for conversation prompts: auto (the model's own chat template from its
    /// tokenizer folder, else chatml; the default), plain, hh, chatml, llama2.
    #[arg(long, help_heading = "Trainer")]
    pub(crate) template: Option<String>,
    /// The loss (default ropo): sigmoid (DPO), ropo, ipo, cdpo, rdpo, hinge, simpo, drdpo
    /// (Dr. DPO), holder (Hölder-DPO), repo (RE-PO), …
    #[arg(long, help_heading = "Trainer", aliases = ["loss_type", "loss-type"])]
    pub(crate) loss: Option<String>,
    /// β and the loss's own parameters (ropo-core's `LossSpec`).
    #[command(flatten, next_help_heading = "Loss")]
    pub(crate) loss_spec: LossSpec,
    /// Peak learning rate (default 1e-6, as TRL).
    #[arg(long, help_heading = "Trainer", aliases = ["learning_rate", "learning-rate"])]
    pub(crate) lr: Option<f64>,
    /// AdamW weight decay (default 0).
    #[arg(long, help_heading = "Trainer", alias = "weight_decay")]
    pub(crate) weight_decay: Option<f64>,
    /// Warmup steps (default 0).
    #[arg(long, help_heading = "Trainer", aliases = ["warmup_steps", "warmup-steps"])]
    pub(crate) warmup: Option<usize>,
    /// Passes over the pairs (default 1; --steps overrides).
    #[arg(long, help_heading = "Trainer", aliases = ["num_train_epochs", "num-train-epochs"])]
    pub(crate) epochs: Option<usize>,
    /// Pairs per optimiser step (default 8).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) batch: Option<usize>,
    /// TRL's per_device_train_batch_size: pairs per forward on each rank. ropo's --batch is
    /// the pairs per optimiser step, this × --grad-accum × --data-parallel, and is set so.
    #[arg(
        long,
        hide = true,
        conflicts_with = "batch",
        alias = "per_device_train_batch_size"
    )]
    pub(crate) per_device_train_batch_size: Option<usize>,
    /// Forwards per step, gradients accumulated (default 1).
    #[arg(long, help_heading = "Trainer", aliases = ["gradient_accumulation_steps", "gradient-accumulation-steps"])]
    pub(crate) grad_accum: Option<usize>,
    /// Most tokens in prompt plus response (default 1024).
    #[arg(long, help_heading = "Trainer", alias = "max_length")]
    pub(crate) max_length: Option<usize>,
    /// Most prompt tokens; longer prompts keep their end (default 512).
    #[arg(long, help_heading = "Trainer", alias = "max_prompt_length")]
    pub(crate) max_prompt_length: Option<usize>,
    /// Fraction of pairs held out for evaluation (default 0: train on everything).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) eval_split: Option<f64>,
    /// Separate evaluation data: a file, a folder or a Hub dataset id.
    #[arg(long, help_heading = "Trainer")]
    pub(crate) eval_data: Option<PathBuf>,
    /// The split of --data to train on, where it is a folder or Hub dataset holding several
    /// (e.g. train_prefs; TRL: dataset_train_split). Default: every data file.
    #[arg(long, help_heading = "Trainer", aliases = ["dataset_train_split", "dataset-train-split"])]
    pub(crate) split: Option<String>,
    /// The split of --eval-data, or of --data without --eval-data, to evaluate on (e.g.
    /// test_prefs; TRL: dataset_test_split).
    #[arg(long, help_heading = "Trainer", aliases = ["dataset_test_split", "dataset-test-split"])]
    pub(crate) eval_data_split: Option<String>,
    /// Evaluate every this many steps (default 0: at the end only).
    #[arg(long, help_heading = "Trainer", aliases = ["eval_steps", "eval-steps"])]
    pub(crate) eval_every: Option<usize>,
    /// SFT steps on the chosen responses first (default 0: the model is the reference).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) sft_steps: Option<usize>,
    /// Seed of every random stream (default 0).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) seed: Option<u64>,
    /// Checkpoint every this many steps (default 0: only when stopping early).
    #[arg(long, help_heading = "Trainer", aliases = ["save_steps", "save-steps"])]
    pub(crate) save_every: Option<usize>,
    /// ROPO framework: filter rounds (default 0: none).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) filter_rounds: Option<usize>,
    /// Fraction of pairs dropped per filter round (default 0.2).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) filter_rho: Option<f64>,
    /// Responses sampled per dropped prompt for rejection sampling (default 0: none).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) resample: Option<usize>,
    /// The saved weights' type: f32, f16 or bf16 (default: the input's).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) save_dtype: Option<String>,
    /// LoRA rank (default 0: full fine-tuning); the base is frozen and is the reference.
    #[arg(long, help_heading = "LoRA", aliases = ["lora_r", "lora-r"])]
    pub(crate) lora_rank: Option<usize>,
    /// LoRA α (default: twice the rank).
    #[arg(long, help_heading = "LoRA", alias = "lora_alpha")]
    pub(crate) lora_alpha: Option<f64>,
    /// Dropout on the adapters' input (default 0.05).
    #[arg(long, help_heading = "LoRA", alias = "lora_dropout")]
    pub(crate) lora_dropout: Option<f64>,
    /// Projections to adapt, comma- or space-separated: q,k,v,o,gate,up,down, or their
    /// `_proj` names, or all-linear (default: all).
    #[arg(
        long,
        help_heading = "LoRA",
        value_delimiter = ',',
        num_args = 1..,
        aliases = ["lora_target_modules", "lora-target-modules"]
    )]
    pub(crate) lora_targets: Option<Vec<String>>,
    /// Write the adapter alone as a PEFT folder (OUT/model/) instead of the merged model.
    #[arg(long, help_heading = "LoRA")]
    pub(crate) save_adapter: bool,
    /// Recompute activations in the backward instead of keeping them: less memory, more time.
    #[arg(long, help_heading = "Trainer", alias = "gradient_checkpointing")]
    pub(crate) gradient_checkpointing: bool,
    /// The longest line of the data files read, in bytes (default 1 MiB).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) max_line_bytes: Option<usize>,
    /// The most bytes read from a data file in all (default 2 GiB).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) max_total_bytes: Option<u64>,
    /// The most records read from a data file (default a million).
    #[arg(long, help_heading = "Trainer")]
    pub(crate) max_records: Option<u64>,
    /// Split exported weights larger than this into shards with an index: bytes, or with a
    /// unit (`5GB`, `500MB`, `2GiB`; default 5GB, as transformers).
    #[arg(long, help_heading = "Trainer", value_parser = parse_size)]
    pub(crate) max_shard_size: Option<u64>,
    #[command(flatten)]
    pub(crate) distributed: DistributedFlags,
}

/// How `args` enter their run folder: `--resume`, or fresh (`--overwrite` clearing it).
pub(crate) fn entry(args: &TrainArgs) -> Entry {
    match args.resume {
        Some(_) => Entry::Resume,
        None => Entry::Fresh {
            overwrite: args.overwrite,
        },
    }
}

/// A bar of `total` steps (hidden when `quiet`): elapsed time, the bar, the position,
/// `extra` (e.g. `eta {eta}`) and the message.
pub(crate) fn progress_bar(total: u64, quiet: bool, extra: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let template = format!("{{elapsed:>4}} [{{bar:30}}] {{pos}}/{{len}} {extra}{{msg}}");
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(total).with_style(style)
}

/// Makes a path a config names absolute, resolving a relative one against `base` (the config
/// file's folder; empty for the current folder). An empty path stays empty, for validation to
/// name, and a Hub id (`org/name[@rev]` where no such path exists) stays as it is, for
/// [`crate::hub_paths`] to fetch.
pub(crate) fn anchor(path: &mut PathBuf, base: &std::path::Path) {
    if path.as_os_str().is_empty() || crate::hub_paths::is_hub_id(path, base) {
        return;
    }
    let joined = base.join(&*path);
    *path = std::path::absolute(&joined).unwrap_or(joined);
}

/// toml's errors span several lines (a snippet of the file); keep them to one.
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^' || c == ' ')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A size as transformers writes `max_shard_size`: bytes, or a number with a unit (`KB`, `MB`,
/// `GB` in powers of 1000; `KiB`, `MiB`, `GiB` in powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit {other:?}: use B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 5GB"))?;
    let bytes = value * scale;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{text:?}: must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use ropo::train::{config::GoldExperiment, label_noise::NoiseModel, loss_entry::LossEntry};

    use super::ExperimentKind;

    fn preset(kind: ExperimentKind) -> GoldExperiment {
        toml::from_str(kind.preset().1).unwrap()
    }

    #[test]
    fn each_preset_is_the_default_run_with_its_own_fields() {
        let default = GoldExperiment::default();
        assert_eq!(
            preset(ExperimentKind::Practical),
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
        assert_eq!(preset(ExperimentKind::Length), length);
    }
}
