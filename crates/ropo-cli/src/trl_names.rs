//! TRL's option names on `ropo train` (and `cargo xtask train`). Where an option of TRL's
//! `DPOConfig`, `TrainingArguments`, `ModelConfig` or `ScriptArguments` means what a ropo flag
//! means, that flag takes TRL's name as a clap alias, spelt both ways HfArgumentParser accepts
//! (`--learning_rate`, `--learning-rate`; see the flags in `trainer_args.rs` and
//! `run_flags.rs`, and the table in docs/align.md). The options ropo has no equivalent for are
//! listed here, with what ropo offers instead, so that a TRL command line gets one line saying
//! so and not clap's bare "unexpected argument".

use std::ffi::OsString;

/// TRL options ropo does not take (by their underscore names) and what ropo offers instead.
const NOT_OFFERED: &[(&[&str], &str)] = &[
    (
        &["fp16", "tf32", "bf16_full_eval", "fp16_full_eval"],
        "--dtype bf16 (or TRL's --bf16) computes the matrix products in bf16 (f32 weights, \
         gradients and optimiser state, as under torch.autocast); --save-dtype bf16 writes \
         the trained weights in bf16",
    ),
    (
        &["torch_dtype"],
        "ropo loads the weights in f32 whatever their type on disk; --save-dtype f32|f16|bf16 \
         picks the saved weights' type (default: the input's)",
    ),
    (
        &[
            "logging_steps",
            "logging_strategy",
            "logging_first_step",
            "logging_dir",
        ],
        "ropo logs every step to metrics.jsonl (TRL's names) in --out",
    ),
    (
        &["report_to", "run_name"],
        "ropo writes metrics.jsonl, report.md and the curves (.svg) in --out and reports to \
         nothing else (no wandb, no tensorboard)",
    ),
    (
        &[
            "push_to_hub",
            "hub_model_id",
            "hub_strategy",
            "hub_private_repo",
        ],
        "ropo does not upload; the trained model is a Hugging Face folder, OUT/model/, to \
         upload with `huggingface-cli upload`",
    ),
    (
        &["warmup_ratio"],
        "ropo's warmup is in steps: --warmup N (TRL's warmup_steps)",
    ),
    (
        &["lr_scheduler_type", "lr_scheduler_kwargs"],
        "ropo's schedule is linear warmup (--warmup) then cosine decay to 0",
    ),
    (
        &["optim", "adam_beta1", "adam_beta2", "adam_epsilon"],
        "ropo's optimiser is AdamW with β = 0.9, 0.999 and ε = 1e-8, and --weight-decay",
    ),
    (
        &["max_grad_norm"],
        "ropo clips the gradient norm at 1 (TRL's default)",
    ),
    (
        &["per_device_eval_batch_size", "eval_accumulation_steps"],
        "ropo picks the evaluation batch itself (the metrics do not depend on it)",
    ),
    (
        &[
            "eval_strategy",
            "evaluation_strategy",
            "do_eval",
            "eval_on_start",
        ],
        "ropo evaluates at the end, and every --eval-every N steps (TRL's eval_steps), when it \
         has evaluation pairs (--eval-split or --eval-data)",
    ),
    (
        &["save_strategy", "save_total_limit", "save_only_model"],
        "ropo checkpoints every --save-every N steps (TRL's save_steps) and when stopped, keeps \
         the newest `keep_checkpoints` (2; a --config field) and removes them when the run ends",
    ),
    (
        &["resume_from_checkpoint"],
        "ropo continues a stopped run with --resume OUT (its run folder)",
    ),
    (
        &["use_peft"],
        "ropo trains LoRA adapters when --lora-rank (TRL's lora_r) is above 0",
    ),
    (
        &["load_in_4bit", "load_in_8bit", "use_bnb_nested_quant"],
        "ropo does not quantise; --lora-rank trains adapters on the f32 model",
    ),
    (
        &[
            "attn_implementation",
            "use_liger_kernel",
            "torch_compile",
            "padding_free",
        ],
        "ropo has its own kernels, one attention implementation per backend",
    ),
    (
        &["max_completion_length"],
        "ropo bounds prompt plus response with --max-length and the prompt with \
         --max-prompt-length",
    ),
    (
        &["truncation_mode"],
        "ropo keeps the end of a prompt longer than --max-prompt-length (TRL's keep_end)",
    ),
    (
        &["remove_unused_columns", "no_remove_unused_columns"],
        "ropo reads the columns it knows (docs/data.md) and ignores the rest",
    ),
    (
        &["precompute_ref_log_probs"],
        "ropo always caches the reference log-probs: before the first step, or batch by batch \
         on a run shorter than an epoch",
    ),
    (
        &["deepspeed", "fsdp", "fsdp_config"],
        "ropo shares each step among ranks on one machine with --data-parallel N",
    ),
];

/// Refuses the first TRL option in a `train` command line (`args` as the process
/// got them) that ropo does not offer, with one line saying what ropo offers instead. Both
/// spellings are caught, with or without a value: `--bf16`, `--report_to=wandb`,
/// `--push-to-hub`.
pub fn refuse_unoffered(args: &[OsString]) -> Result<(), String> {
    if args.get(1).and_then(|a| a.to_str()) != Some("train") {
        return Ok(());
    }
    for arg in args.iter().skip(2).filter_map(|a| a.to_str()) {
        let Some(name) = arg.strip_prefix("--") else {
            continue;
        };
        let name = name.split('=').next().unwrap_or(name);
        let key = name.replace('-', "_");
        if let Some((_, instead)) = NOT_OFFERED
            .iter()
            .find(|(names, _)| names.contains(&key.as_str()))
        {
            return Err(format!(
                "--{name} is TRL's and ropo has no such option: {instead}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &[&str]) -> Result<(), String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        refuse_unoffered(&args)
    }

    #[test]
    fn a_trl_option_ropo_lacks_is_caught_in_either_spelling_and_with_a_value() {
        for flag in ["--report_to", "--report-to", "--report_to=wandb"] {
            let error = check(&["xtask", "train", "--lr", "1e-5", flag, "wandb"]).unwrap_err();
            assert!(error.contains("metrics.jsonl"), "{flag}: {error}");
            assert!(error.starts_with("--report"), "{error}");
        }
    }

    #[test]
    fn other_subcommands_and_ropos_own_flags_pass() {
        assert!(check(&["xtask", "loss", "--bf16"]).is_ok());
        assert!(check(&["xtask", "train", "--save-dtype", "bf16", "--warmup", "3"]).is_ok());
        assert!(check(&["xtask", "train", "--dtype", "bf16"]).is_ok());
        assert!(check(&["xtask", "train", "--bf16"]).is_ok());
        assert!(check(&["xtask", "train", "--fp16"])
            .unwrap_err()
            .contains("--dtype bf16"));
    }
}
