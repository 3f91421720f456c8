//! `cargo xtask train --model M --data D`: the trainer. One method on the user's pairs →
//! `OUT/model/` (a Hugging Face folder), `metrics.jsonl` with TRL's names, `report.md` and,
//! with filter rounds, `suspect_labels.jsonl`.

use std::{
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use clap::{parser::ValueSource, ArgMatches, Args};
use ropo::backend::{CheckpointedTraining, Training};
use ropo::data::template::Template;
use ropo::models::lora::LoraTarget;
use ropo::train::{
    loss_entry::IpoForm,
    records::Progress,
    stages::Session,
    trainer::TrainerConfig,
    trainer_output::{export_model, steps_per_epoch, write_records, Export, LiveMetrics},
    TrainError,
};

use crate::{
    distributed_flags::DistributedFlags,
    hub_paths, interrupt,
    run_folder::open_run_folder,
    train_cmd::{anchor, entry, one_line, TrainArgs},
    trainer_progress::TrainerProgress,
    CmdResult,
};

/// The trainer's options (`cargo xtask train --model M --data D …`); each overrides the same
/// field of `--config`. Defaults: docs/align.md.
#[derive(Args, Default)]
pub struct AlignFlags {
    /// The model to align: a Hugging Face folder or Hub id (`org/name[@revision]`), a
    /// `.safetensors` file, or a llama2.c `.bin`.
    #[arg(long, help_heading = "Trainer", aliases = ["model_name_or_path", "model-name-or-path"])]
    model: Option<PathBuf>,
    /// The preference data in any format ropo reads: a JSONL (`.gz` allowed) or parquet file,
    /// a folder of them, or a Hub dataset id.
    #[arg(long, help_heading = "Trainer", aliases = ["dataset_name", "dataset-name"])]
    data: Option<PathBuf>,
    /// Tokenizer file, folder or Hub id (default: the model's folder).
    #[arg(long, help_heading = "Trainer")]
    tokenizer: Option<PathBuf>,
    /// Chat template for conversation prompts: auto (the model's own chat template from its
    /// tokenizer folder, else chatml; the default), plain, hh, chatml, llama2.
    #[arg(long, help_heading = "Trainer")]
    template: Option<String>,
    /// The loss (default ropo): sigmoid (DPO), ropo, ipo, cdpo, rdpo, hinge, simpo, …
    #[arg(long, help_heading = "Trainer", aliases = ["loss_type", "loss-type"])]
    loss: Option<String>,
    /// β (default 0.1).
    #[arg(long, help_heading = "Trainer")]
    beta: Option<f64>,
    /// ROPO's α (default 14).
    #[arg(long, help_heading = "Trainer")]
    alpha: Option<f64>,
    /// cDPO's/rDPO's ε, TRL's label_smoothing (default 0.1).
    #[arg(long, help_heading = "Trainer", aliases = ["label_smoothing", "label-smoothing"])]
    epsilon: Option<f64>,
    /// SimPO's γ.
    #[arg(long, help_heading = "Trainer", aliases = ["simpo_gamma", "simpo-gamma"])]
    gamma: Option<f64>,
    /// IPO's margin: averaged (default, as TRL) or summed.
    #[arg(long, help_heading = "Trainer")]
    ipo_margin: Option<String>,
    /// Weight of an NLL term on the chosen responses (TRL's rpo_alpha).
    #[arg(long, help_heading = "Trainer", aliases = ["rpo_alpha", "rpo-alpha"])]
    nll_weight: Option<f64>,
    /// Peak learning rate (default 1e-6, as TRL).
    #[arg(long, help_heading = "Trainer", aliases = ["learning_rate", "learning-rate"])]
    lr: Option<f64>,
    /// AdamW weight decay (default 0).
    #[arg(long, help_heading = "Trainer", alias = "weight_decay")]
    weight_decay: Option<f64>,
    /// Warmup steps (default 0).
    #[arg(long, help_heading = "Trainer", aliases = ["warmup_steps", "warmup-steps"])]
    warmup: Option<usize>,
    /// Passes over the pairs (default 1; --steps overrides).
    #[arg(long, help_heading = "Trainer", aliases = ["num_train_epochs", "num-train-epochs"])]
    epochs: Option<usize>,
    /// Pairs per optimiser step (default 8).
    #[arg(long, help_heading = "Trainer")]
    batch: Option<usize>,
    /// TRL's per_device_train_batch_size: pairs per forward on each rank. ropo's --batch is
    /// the pairs per optimiser step, this × --grad-accum × --data-parallel, and is set so.
    #[arg(
        long,
        hide = true,
        conflicts_with = "batch",
        alias = "per_device_train_batch_size"
    )]
    per_device_train_batch_size: Option<usize>,
    /// Forwards per step, gradients accumulated (default 1).
    #[arg(long, help_heading = "Trainer", aliases = ["gradient_accumulation_steps", "gradient-accumulation-steps"])]
    grad_accum: Option<usize>,
    /// Most tokens in prompt plus response (default 1024).
    #[arg(long, help_heading = "Trainer", alias = "max_length")]
    max_length: Option<usize>,
    /// Most prompt tokens; longer prompts keep their end (default 512).
    #[arg(long, help_heading = "Trainer", alias = "max_prompt_length")]
    max_prompt_length: Option<usize>,
    /// Fraction of pairs held out for evaluation (default 0: train on everything).
    #[arg(long, help_heading = "Trainer")]
    eval_split: Option<f64>,
    /// Separate evaluation data: a file, a folder or a Hub dataset id.
    #[arg(long, help_heading = "Trainer")]
    eval_data: Option<PathBuf>,
    /// The split of --data to train on, where it is a folder or Hub dataset holding several
    /// (e.g. train_prefs; TRL: dataset_train_split). Default: every data file.
    #[arg(long, help_heading = "Trainer", aliases = ["dataset_train_split", "dataset-train-split"])]
    split: Option<String>,
    /// The split of --eval-data, or of --data without --eval-data, to evaluate on (e.g.
    /// test_prefs; TRL: dataset_test_split).
    #[arg(long, help_heading = "Trainer", aliases = ["dataset_test_split", "dataset-test-split"])]
    eval_data_split: Option<String>,
    /// Evaluate every this many steps (default 0: at the end only).
    #[arg(long, help_heading = "Trainer", aliases = ["eval_steps", "eval-steps"])]
    eval_every: Option<usize>,
    /// SFT steps on the chosen responses first (default 0: the model is the reference).
    #[arg(long, help_heading = "Trainer")]
    sft_steps: Option<usize>,
    /// Seed of every random stream (default 0).
    #[arg(long, help_heading = "Trainer")]
    seed: Option<u64>,
    /// Checkpoint every this many steps (default 0: only when stopping early).
    #[arg(long, help_heading = "Trainer", aliases = ["save_steps", "save-steps"])]
    save_every: Option<usize>,
    /// ROPO framework: filter rounds (default 0: none).
    #[arg(long, help_heading = "Trainer")]
    filter_rounds: Option<usize>,
    /// Fraction of pairs dropped per filter round (default 0.2).
    #[arg(long, help_heading = "Trainer")]
    filter_rho: Option<f64>,
    /// Responses sampled per dropped prompt for rejection sampling (default 0: none).
    #[arg(long, help_heading = "Trainer")]
    resample: Option<usize>,
    /// The saved weights' type: f32, f16 or bf16 (default: the input's).
    #[arg(long, help_heading = "Trainer")]
    save_dtype: Option<String>,
    /// LoRA rank (default 0: full fine-tuning); the base is frozen and is the reference.
    #[arg(long, help_heading = "LoRA", aliases = ["lora_r", "lora-r"])]
    lora_rank: Option<usize>,
    /// LoRA α (default: twice the rank).
    #[arg(long, help_heading = "LoRA", alias = "lora_alpha")]
    lora_alpha: Option<f64>,
    /// Dropout on the adapters' input (default 0.05).
    #[arg(long, help_heading = "LoRA", alias = "lora_dropout")]
    lora_dropout: Option<f64>,
    /// Projections to adapt, comma- or space-separated: q,k,v,o,gate,up,down, or their
    /// `_proj` names, or all-linear (default: all).
    #[arg(
        long,
        help_heading = "LoRA",
        value_delimiter = ',',
        num_args = 1..,
        aliases = ["lora_target_modules", "lora-target-modules"]
    )]
    lora_targets: Option<Vec<String>>,
    /// Write the adapter alone as a PEFT folder (OUT/model/) instead of the merged model.
    #[arg(long, help_heading = "LoRA")]
    save_adapter: bool,
    /// Recompute activations in the backward instead of keeping them: less memory, more time.
    #[arg(long, help_heading = "Trainer", alias = "gradient_checkpointing")]
    gradient_checkpointing: bool,
    /// The longest line of the data files read, in bytes (default 1 MiB).
    #[arg(long, help_heading = "Trainer")]
    max_line_bytes: Option<usize>,
    /// The most bytes read from a data file in all (default 2 GiB).
    #[arg(long, help_heading = "Trainer")]
    max_total_bytes: Option<u64>,
    /// The most records read from a data file (default a million).
    #[arg(long, help_heading = "Trainer")]
    max_records: Option<u64>,
    /// Split exported weights larger than this into shards with an index: bytes, or with a
    /// unit (`5GB`, `500MB`, `2GiB`; default 5GB, as transformers).
    #[arg(long, help_heading = "Trainer", value_parser = parse_size)]
    max_shard_size: Option<u64>,
    #[command(flatten)]
    distributed: DistributedFlags,
}

/// The trainer's flags given on the command line (`matches`: clap's for `train`), by their
/// names (`--warmup`), for the modes they do not apply to to refuse.
pub fn trainer_flags_given(matches: &ArgMatches) -> Vec<String> {
    AlignFlags::augment_args(clap::Command::new("train"))
        .get_arguments()
        .filter(|arg| matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine))
        .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
        .collect()
}

/// Whether the command line or config asks for the trainer: `--model`/`--data`, or a config
/// whose `model` or `data` is a path (a gold config's `[model]` is a table).
pub fn wanted(args: &TrainArgs, config: Option<&toml::Table>) -> bool {
    let path = |t: &toml::Table, key: &str| t.get(key).is_some_and(toml::Value::is_str);
    args.align.model.is_some()
        || args.align.data.is_some()
        || config.is_some_and(|t| path(t, "model") || path(t, "data"))
}

/// Runs the trainer and writes its folder.
pub fn run(args: &TrainArgs) -> CmdResult {
    let (mut config, out) = match &args.resume {
        Some(folder) => {
            let stored = read(&folder.join("config.toml"))?;
            let mut given = with_flags(stored.clone(), args)?;
            for file in given.paths_mut() {
                anchor(file, Path::new(""));
            }
            fetch_hub_ids(&mut given, args.quiet)?;
            refuse_changes(folder, &stored, &given)?;
            (stored, folder.clone())
        }
        None => {
            let mut config = resolve(args)?;
            // Absolute, so the written config.toml resumes from any folder.
            for file in config.paths_mut() {
                anchor(file, Path::new(""));
            }
            fetch_hub_ids(&mut config, args.quiet)?;
            let out = if args.out == Path::new("runs/gold") {
                Path::new("runs").join(run_name(&config.data))
            } else {
                args.out.clone()
            };
            (config, out)
        }
    };
    let batch = config.batch;
    args.align
        .distributed
        .apply(&mut config.data_parallel, batch)?;
    config.validate().map_err(|e| with_source(args, e))?;
    config.check_fits_in_memory()?;
    if config.gradient_checkpointing && config.lora_rank > 0 {
        eprintln!(
            "warning: --gradient-checkpointing with LoRA keeps more memory, not less, on burn's \
             balanced strategy (Pythia-160M, 4 pairs × 256: 3,385 MiB with it, 2,579 without; \
             docs/performance.md)"
        );
    }
    let store = out.join("checkpoints");
    let tokenizer = config.tokenizer_path();
    let mut inputs = vec![
        config.model.as_path(),
        config.data.as_path(),
        tokenizer.as_path(),
    ];
    inputs.extend(config.eval_data.as_deref());
    let _folder = open_run_folder(&out, &config, config.seed, entry(args), &inputs)?;
    let start = Instant::now();
    let data = config.prepare()?;
    let steps = config.total_steps(data.train.len());
    eprintln!(
        "{} training pairs, {} evaluation pairs ({} dropped: refused by the template or prompt \
         over budget; template: {}); {} steps of {}",
        data.train.len(),
        data.eval.len(),
        data.dropped,
        data.chat_format,
        steps,
        config.method()?.name
    );
    let mut view = TrainerProgress::new(steps as u64, args.quiet);
    let mut metrics = LiveMetrics::open(&out, steps_per_epoch(&config, &data))?;
    let mut done = 0u64;
    let mut failed = None;
    let mut on_progress = |progress: Progress| {
        done += u64::from(matches!(progress, Progress::Step(_)));
        if let Err(e) = metrics.record(&progress) {
            failed.get_or_insert(e);
        }
        view.show(&progress);
    };
    let interrupted = interrupt::on_signal()?;
    let session = Session::new(args.stop_after_steps).with_interrupt(Arc::clone(&interrupted));
    let device = Default::default();
    let outcome = if config.gradient_checkpointing {
        config.train::<CheckpointedTraining>(&data, &store, &session, &device, &mut on_progress)
    } else {
        config.train::<Training>(&data, &store, &session, &device, &mut on_progress)
    };
    view.finish();
    if let Some(e) = failed {
        return Err(e.into());
    }
    let outcome = match outcome {
        Err(TrainError::Stopped(steps)) if interrupted.load(Ordering::SeqCst) => {
            return Err(format!(
                "interrupted after {steps} steps, checkpointed; continue with: cargo xtask \
                 train --resume {}",
                out.display()
            )
            .into());
        }
        Err(TrainError::Stopped(steps)) => {
            println!(
                "stopped after {steps} steps; continue with: cargo xtask train --resume {}",
                out.display()
            );
            return Ok(());
        }
        other => other?,
    };
    let model_dir = out.join("model");
    let lora = config.lora();
    let export = match (&lora, config.save_adapter) {
        (Some(lora), true) => Export::Adapter(lora),
        _ => Export::Merged(config.output_dtype()?, config.max_shard_size),
    };
    export_model(
        &outcome.model,
        &config.model,
        &config.tokenizer_path(),
        &model_dir,
        export,
    )?;
    write_records(
        &out,
        &config,
        &data,
        &outcome.history,
        &outcome.evals,
        (&outcome.rounds, &outcome.dropped),
    )?;
    if store.exists() {
        std::fs::remove_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
    }
    if let Some(last) = outcome.history.last() {
        println!(
            "{} steps in {:.0} s ({done} this session); last step: loss {:.4}, rewards/accuracies {:.3}",
            outcome.steps,
            start.elapsed().as_secs_f64(),
            last.loss,
            last.accuracy
        );
    }
    if let Some(eval) = outcome.evals.last() {
        println!(
            "eval: loss {:.4}, rewards/accuracies {:.3}, rewards/margins {:.4}",
            eval.loss, eval.accuracy, eval.margin
        );
    }
    if config.filter_rounds > 0 {
        println!(
            "{} pairs dropped as suspect labels: {}",
            outcome.dropped.len(),
            out.join("suspect_labels.jsonl").display()
        );
        if config.noise > 0.0 {
            for round in &outcome.rounds {
                println!(
                    "round {}: {} dropped, precision {:.3}, recall {:.3} of the injected flips",
                    round.round, round.filter.dropped, round.filter.precision, round.filter.recall
                );
            }
        }
    }
    println!("model: {}", model_dir.display());
    println!("report: {}", out.join("report.md").display());
    Ok(())
}

/// Fetches the Hub ids among the config's paths (model and tokenizer as model repositories,
/// data and evaluation data as dataset repositories) and puts their snapshot folders there.
fn fetch_hub_ids(config: &mut TrainerConfig, quiet: bool) -> Result<(), String> {
    hub_paths::fetch_model(&mut config.model, quiet)?;
    if let Some(tokenizer) = &mut config.tokenizer {
        hub_paths::fetch_model(tokenizer, quiet)?;
    }
    hub_paths::fetch_dataset(&mut config.data, &mut config.split, quiet)?;
    if let Some(eval_data) = &mut config.eval_data {
        hub_paths::fetch_dataset(eval_data, &mut config.eval_data_split, quiet)?;
    }
    Ok(())
}

/// The trainer's config: `--config` (paths against its folder) or the defaults, then the flags.
fn resolve(args: &TrainArgs) -> Result<TrainerConfig, Box<dyn std::error::Error>> {
    let config = match &args.config {
        Some(path) => read(path)?,
        None => TrainerConfig::default(),
    };
    with_flags(config, args)
}

/// `config` with the trainer flags of `args` applied over it.
fn with_flags(
    mut config: TrainerConfig,
    args: &TrainArgs,
) -> Result<TrainerConfig, Box<dyn std::error::Error>> {
    if args.losses.is_some()
        || args.seeds.is_some()
        || args.experiment.is_some()
        || args.noise_model.is_some()
        || args.jobs.is_some()
    {
        return Err(
            "--losses, --seeds, --experiment, --noise-model and --jobs belong to the gold \
             experiment; the trainer trains one method (--loss) with symmetric --noise, drop \
             them or drop --model/--data"
                .into(),
        );
    }
    if let Some(scorer) = args.scorer {
        config.scorer = scorer.into();
    }
    if let Some(schedule) = args.round_schedule {
        config.round_schedule = schedule.into();
    }
    let flags = &args.align;
    for (flag, value) in [
        ("--batch", flags.batch),
        (
            "--per-device-train-batch-size",
            flags.per_device_train_batch_size,
        ),
        ("--grad-accum", flags.grad_accum),
        ("--max-length", flags.max_length),
        ("--max-prompt-length", flags.max_prompt_length),
        ("--epochs", flags.epochs),
        ("--steps", args.steps),
    ] {
        if value == Some(0) {
            return Err(format!("{flag}: must be at least 1").into());
        }
    }
    macro_rules! set {
        ($($field:ident),*) => {$(
            if let Some(value) = &flags.$field {
                config.$field = value.clone();
            }
        )*};
    }
    set!(
        model,
        data,
        beta,
        alpha,
        epsilon,
        lr,
        weight_decay,
        warmup,
        epochs,
        batch,
        grad_accum,
        max_length,
        max_prompt_length,
        eval_split,
        eval_every,
        sft_steps,
        seed,
        save_every,
        filter_rounds,
        filter_rho,
        resample,
        loss,
        lora_rank,
        lora_dropout,
        max_line_bytes,
        max_total_bytes,
        max_records,
        max_shard_size
    );
    if flags.lora_alpha.is_some() {
        config.lora_alpha = flags.lora_alpha;
    }
    if let Some(names) = &flags.lora_targets {
        config.lora_targets = match names.as_slice() {
            // PEFT's name for every linear layer but the head, as ropo's default.
            [all] if all == "all-linear" => LoraTarget::ALL.to_vec(),
            names => names
                .iter()
                .map(|name| LoraTarget::parse(name))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("--lora-targets: {e}"))?,
        };
    }
    if flags.save_adapter {
        config.save_adapter = true;
    }
    if flags.gradient_checkpointing {
        config.gradient_checkpointing = true;
    }
    for (field, value) in [
        (&mut config.tokenizer, &flags.tokenizer),
        (&mut config.eval_data, &flags.eval_data),
    ] {
        if value.is_some() {
            field.clone_from(value);
        }
    }
    for (field, value) in [
        (&mut config.split, &flags.split),
        (&mut config.eval_data_split, &flags.eval_data_split),
    ] {
        if value.is_some() {
            field.clone_from(value);
        }
    }
    if flags.gamma.is_some() {
        config.gamma = flags.gamma;
    }
    if flags.nll_weight.is_some() {
        config.nll_weight = flags.nll_weight;
    }
    if let Some(name) = &flags.template {
        config.template = name
            .parse::<Template>()
            .map_err(|e| format!("--template: {e}"))?;
    }
    if let Some(form) = &flags.ipo_margin {
        config.ipo_margin = Some(match form.as_str() {
            "averaged" => IpoForm::Averaged,
            "summed" => IpoForm::Summed,
            other => {
                return Err(format!("--ipo-margin: {other:?} is not averaged or summed").into())
            }
        });
    }
    if let Some(name) = &flags.save_dtype {
        config.save_dtype = Some(name.parse().map_err(|e| format!("--save-dtype: {e}"))?);
    }
    if let Some(steps) = args.steps {
        config.steps = Some(steps);
    }
    if let Some(per_device) = flags.per_device_train_batch_size {
        config.batch = per_device
            .checked_mul(config.grad_accum)
            .and_then(|b| b.checked_mul(flags.distributed.ranks()))
            .ok_or("--per-device-train-batch-size: too large")?;
    }
    if flags.epsilon.is_some() && !matches!(config.loss.as_str(), "cdpo" | "rdpo") {
        return Err(format!(
            "--epsilon (TRL's label_smoothing) is cDPO's and rDPO's ε, and --loss {} does not \
             use it; TRL's sigmoid loss with label_smoothing is --loss cdpo",
            config.loss
        )
        .into());
    }
    // TRL's dataset_test_split names a split of dataset_name.
    if config.eval_data.is_none() && config.eval_data_split.is_some() {
        config.eval_data = Some(config.data.clone());
    }
    if let Some(noise) = &args.noise {
        match noise.as_slice() {
            [eta] => config.noise = *eta,
            _ => return Err("--noise: the trainer takes one rate (e.g. --noise 0.2)".into()),
        }
    }
    Ok(config)
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

/// Refuses a `--resume` whose flags change the stored run's settings, naming every field that
/// differs: a resumed run continues with the settings it started with.
fn refuse_changes(
    folder: &Path,
    stored: &TrainerConfig,
    given: &TrainerConfig,
) -> Result<(), Box<dyn std::error::Error>> {
    let (toml::Value::Table(stored), toml::Value::Table(given)) = (
        toml::Value::try_from(stored)?,
        toml::Value::try_from(given)?,
    ) else {
        return Ok(());
    };
    let changed: Vec<String> = given
        .iter()
        .filter(|(key, value)| stored.get(*key) != Some(*value))
        .map(|(key, value)| {
            let was = stored.get(key).map_or("unset".into(), ToString::to_string);
            format!("{key} = {value} (the run has {was})")
        })
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "--resume {}: a resumed run keeps the settings it started with, and these flags change \
         them: {}; drop them, or start a new run with --out",
        folder.display(),
        changed.join(", ")
    )
    .into())
}

/// A trainer config file, its relative paths resolved against its own folder.
fn read(path: &Path) -> Result<TrainerConfig, Box<dyn std::error::Error>> {
    let text = ropo::models::text_file::read_settings(path)?;
    let mut config: TrainerConfig = toml::from_str(&text)
        .map_err(|e| format!("{}: {}", path.display(), one_line(&e.to_string())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for file in config.paths_mut() {
        anchor(file, base);
    }
    Ok(config)
}

/// The run's default folder name: the data file's name without its extensions.
fn run_name(data: &Path) -> String {
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    if stem.is_empty() {
        "train".into()
    } else {
        stem.into()
    }
}

/// A validation error, prefixed with the config file it is about (when there is one).
fn with_source(args: &TrainArgs, error: TrainError) -> Box<dyn std::error::Error> {
    match (&args.resume, &args.config) {
        (Some(folder), _) => format!("{}: {error}", folder.join("config.toml").display()).into(),
        (None, Some(path)) => format!("{}: {error}", path.display()).into(),
        (None, None) => error.into(),
    }
}
