//! The command line of `ropo train`: the trainer's flags ([`TrainerArgs`], with
//! [`TrainerFlags`] the options a trainer config also holds).

use std::path::PathBuf;

use clap::Args;
use ropo::core::LossSpec;

use crate::{
    choices::FrameworkFlags,
    distributed_flags::DistributedFlags,
    run_flags::{OutputFlags, SessionFlags},
};

/// Train one method on your model and pairs (`--model M --data D`) and export the model.
#[derive(Args)]
pub struct TrainerArgs {
    /// A trainer config (TOML; the fields of docs/align.md); its relative paths are read
    /// against its folder, and every flag overrides its field.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in this folder where it stopped (with its config.toml; a flag that
    /// changes it is refused).
    #[arg(long, conflicts_with_all = ["config", "noise", "steps", "out", "overwrite", "scorer", "round_schedule"])]
    pub resume: Option<PathBuf>,
    /// A label-noise rate injected into your pairs: each label flipped with this probability
    /// (default 0: labels as read).
    #[arg(long)]
    pub noise: Option<f64>,
    /// Optimiser steps (instead of --epochs).
    #[arg(long, aliases = ["max_steps", "max-steps"])]
    pub steps: Option<usize>,
    /// The ROPO framework's choices.
    #[command(flatten)]
    pub framework: FrameworkFlags,
    /// The run folder.
    #[command(flatten)]
    pub output: OutputFlags,
    /// Where this session stops.
    #[command(flatten)]
    pub session: SessionFlags,
    /// The trainer's options.
    #[command(flatten)]
    pub flags: TrainerFlags,
}

/// The trainer's options; each overrides the same field of `--config`. Defaults:
/// docs/align.md.
#[derive(Args, Default)]
pub struct TrainerFlags {
    /// The model to align: a Hugging Face folder or Hub id (`org/name[@revision]`), a
    /// `.safetensors` file, or a llama2.c `.bin`.
    #[arg(long, help_heading = "Trainer", aliases = ["model_name_or_path", "model-name-or-path"])]
    pub model: Option<PathBuf>,
    /// The preference data in any format ropo reads: a JSONL (`.gz` allowed) or parquet file,
    /// a folder of them, or a Hub dataset id.
    #[arg(long, help_heading = "Trainer", aliases = ["dataset_name", "dataset-name"])]
    pub data: Option<PathBuf>,
    /// Tokenizer file, folder or Hub id (default: the model's folder).
    #[arg(long, help_heading = "Trainer")]
    pub tokenizer: Option<PathBuf>,
    /// Chat template for conversation prompts: auto (the model's own chat template from its
    /// tokenizer folder, else chatml; the default), plain, hh, chatml, llama2.
    #[arg(long, help_heading = "Trainer")]
    pub template: Option<String>,
    /// The loss (default ropo): sigmoid (DPO), ropo, ipo, cdpo, rdpo, hinge, simpo, drdpo
    /// (Dr. DPO), holder (Hölder-DPO), repo (RE-PO), …
    #[arg(long, help_heading = "Trainer", aliases = ["loss_type", "loss-type"])]
    pub loss: Option<String>,
    /// β and the loss's own parameters (ropo-core's `LossSpec`).
    #[command(flatten, next_help_heading = "Loss")]
    pub loss_spec: LossSpec,
    /// Peak learning rate (default 1e-6, as TRL).
    #[arg(long, help_heading = "Trainer", aliases = ["learning_rate", "learning-rate"])]
    pub lr: Option<f64>,
    /// AdamW weight decay (default 0).
    #[arg(long, help_heading = "Trainer", alias = "weight_decay")]
    pub weight_decay: Option<f64>,
    /// Warmup steps (default 0).
    #[arg(long, help_heading = "Trainer", aliases = ["warmup_steps", "warmup-steps"])]
    pub warmup: Option<usize>,
    /// Passes over the pairs (default 1; --steps overrides).
    #[arg(long, help_heading = "Trainer", aliases = ["num_train_epochs", "num-train-epochs"])]
    pub epochs: Option<usize>,
    /// Pairs per optimiser step (default 8).
    #[arg(long, help_heading = "Trainer")]
    pub batch: Option<usize>,
    /// TRL's per_device_train_batch_size: pairs per forward on each rank. ropo's --batch is
    /// the pairs per optimiser step, this × --grad-accum × --data-parallel, and is set so.
    #[arg(
        long,
        hide = true,
        conflicts_with = "batch",
        alias = "per_device_train_batch_size"
    )]
    pub per_device_train_batch_size: Option<usize>,
    /// Forwards per step, gradients accumulated (default 1).
    #[arg(long, help_heading = "Trainer", aliases = ["gradient_accumulation_steps", "gradient-accumulation-steps"])]
    pub grad_accum: Option<usize>,
    /// Most tokens in prompt plus response (default 1024).
    #[arg(long, help_heading = "Trainer", alias = "max_length")]
    pub max_length: Option<usize>,
    /// Most prompt tokens; longer prompts keep their end (default 512).
    #[arg(long, help_heading = "Trainer", alias = "max_prompt_length")]
    pub max_prompt_length: Option<usize>,
    /// Fraction of pairs held out for evaluation (default 0: train on everything).
    #[arg(long, help_heading = "Trainer")]
    pub eval_split: Option<f64>,
    /// Separate evaluation data: a file, a folder or a Hub dataset id.
    #[arg(long, help_heading = "Trainer")]
    pub eval_data: Option<PathBuf>,
    /// The split of --data to train on, where it is a folder or Hub dataset holding several
    /// (e.g. train_prefs; TRL: dataset_train_split). Default: every data file.
    #[arg(long, help_heading = "Trainer", aliases = ["dataset_train_split", "dataset-train-split"])]
    pub split: Option<String>,
    /// The split of --eval-data, or of --data without --eval-data, to evaluate on (e.g.
    /// test_prefs; TRL: dataset_test_split).
    #[arg(long, help_heading = "Trainer", aliases = ["dataset_test_split", "dataset-test-split"])]
    pub eval_data_split: Option<String>,
    /// Evaluate every this many steps (default 0: at the end only).
    #[arg(long, help_heading = "Trainer", aliases = ["eval_steps", "eval-steps"])]
    pub eval_every: Option<usize>,
    /// SFT steps on the chosen responses first (default 0: the model is the reference).
    #[arg(long, help_heading = "Trainer")]
    pub sft_steps: Option<usize>,
    /// Seed of every random stream (default 0).
    #[arg(long, help_heading = "Trainer")]
    pub seed: Option<u64>,
    /// Checkpoint every this many steps (default 0: only when stopping early).
    #[arg(long, help_heading = "Trainer", aliases = ["save_steps", "save-steps"])]
    pub save_every: Option<usize>,
    /// ROPO framework: filter rounds (default 0: none).
    #[arg(long, help_heading = "Trainer")]
    pub filter_rounds: Option<usize>,
    /// Fraction of pairs dropped per filter round (default 0.2).
    #[arg(long, help_heading = "Trainer")]
    pub filter_rho: Option<f64>,
    /// Responses sampled per dropped prompt for rejection sampling (default 0: none).
    #[arg(long, help_heading = "Trainer")]
    pub resample: Option<usize>,
    /// The saved weights' type: f32, f16 or bf16 (default: the input's).
    #[arg(long, help_heading = "Trainer")]
    pub save_dtype: Option<String>,
    /// LoRA rank (default 0: full fine-tuning); the base is frozen and is the reference.
    #[arg(long, help_heading = "LoRA", aliases = ["lora_r", "lora-r"])]
    pub lora_rank: Option<usize>,
    /// LoRA α (default: twice the rank).
    #[arg(long, help_heading = "LoRA", alias = "lora_alpha")]
    pub lora_alpha: Option<f64>,
    /// Dropout on the adapters' input (default 0.05).
    #[arg(long, help_heading = "LoRA", alias = "lora_dropout")]
    pub lora_dropout: Option<f64>,
    /// Projections to adapt, comma- or space-separated: q,k,v,o,gate,up,down, or their
    /// `_proj` names, or all-linear (default: all).
    #[arg(
        long,
        help_heading = "LoRA",
        value_delimiter = ',',
        num_args = 1..,
        aliases = ["lora_target_modules", "lora-target-modules"]
    )]
    pub lora_targets: Option<Vec<String>>,
    /// Write the adapter alone as a PEFT folder (OUT/model/) instead of the merged model.
    #[arg(long, help_heading = "LoRA")]
    pub save_adapter: bool,
    /// Recompute each decoder layer's activations in the backward instead of keeping them: less
    /// memory, about one more forward pass of time (`--gradient-checkpointing`, or TRL's
    /// `--gradient_checkpointing true|false`).
    #[arg(
        long,
        help_heading = "Trainer",
        alias = "gradient_checkpointing",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub gradient_checkpointing: Option<bool>,
    /// The longest line of the data files read, in bytes (default 1 MiB).
    #[arg(long, help_heading = "Trainer")]
    pub max_line_bytes: Option<usize>,
    /// The most bytes read from a data file in all (default 2 GiB).
    #[arg(long, help_heading = "Trainer")]
    pub max_total_bytes: Option<u64>,
    /// The most records read from a data file (default a million).
    #[arg(long, help_heading = "Trainer")]
    pub max_records: Option<u64>,
    /// Split exported weights larger than this into shards with an index: bytes, or with a
    /// unit (`5GB`, `500MB`, `2GiB`; default 5GB, as transformers).
    #[arg(long, help_heading = "Trainer", value_parser = parse_size)]
    pub max_shard_size: Option<u64>,
    #[command(flatten)]
    pub distributed: DistributedFlags,
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
    use clap::Parser;

    use super::TrainerFlags;

    #[derive(Parser)]
    struct Train {
        #[command(flatten)]
        flags: TrainerFlags,
    }

    fn gradient_checkpointing(args: &[&str]) -> Result<Option<bool>, String> {
        Train::try_parse_from(std::iter::once("train").chain(args.iter().copied()))
            .map(|train| train.flags.gradient_checkpointing)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn gradient_checkpointing_takes_ropos_and_trls_spellings() {
        assert_eq!(gradient_checkpointing(&[]), Ok(None));
        assert_eq!(
            gradient_checkpointing(&["--gradient-checkpointing"]),
            Ok(Some(true))
        );
        assert_eq!(
            gradient_checkpointing(&["--gradient_checkpointing", "True"]),
            Ok(Some(true))
        );
        assert_eq!(
            gradient_checkpointing(&["--gradient_checkpointing", "false"]),
            Ok(Some(false))
        );
        assert!(gradient_checkpointing(&["--gradient_checkpointing", "maybe"]).is_err());
    }
}
