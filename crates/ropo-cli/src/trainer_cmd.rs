//! `ropo train --model M --data D`: the trainer. One method on the user's pairs →
//! `OUT/model/` (a Hugging Face folder), `metrics.jsonl` with TRL's names, `report.md` and,
//! with filter rounds, `suspect_labels.jsonl`.

use std::{
    path::Path,
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use ropo::backend::Training;
use ropo::data::template::Template;
use ropo::models::lora::LoraTarget;
use ropo::paths::{anchor, fetch_dataset, fetch_model};
use ropo::run_folder::open_run_folder;
use ropo::train::{
    records::Progress,
    session::Session,
    trainer::TrainerConfig,
    trainer_output::{steps_per_epoch, write_run, LiveMetrics, CHECKPOINTS},
    TrainError,
};

use crate::{
    interrupt,
    run_flags::entry,
    settings::{in_config, read_toml},
    trainer_args::TrainerArgs,
    trainer_progress::TrainerProgress,
    CmdResult,
};

/// Runs the trainer and writes its folder.
pub fn run(args: &TrainerArgs) -> CmdResult {
    args.session.prepare()?;
    let (mut config, out) = match &args.resume {
        Some(folder) => {
            let stored = read(&folder.join("config.toml"))?;
            let mut given = with_flags(stored.clone(), args)?;
            for file in given.paths_mut() {
                anchor(file, Path::new(""));
            }
            fetch_hub_ids(&mut given, args.output.quiet)?;
            refuse_changes(folder, &stored, &given)?;
            (stored, folder.clone())
        }
        None => {
            let mut config = resolve(args)?;
            // Absolute, so the written config.toml resumes from any folder.
            for file in config.paths_mut() {
                anchor(file, Path::new(""));
            }
            fetch_hub_ids(&mut config, args.output.quiet)?;
            let out = args
                .output
                .folder(Path::new("runs").join(run_name(&config.data)));
            (config, out)
        }
    };
    let batch = config.batch;
    args.flags
        .distributed
        .apply(&mut config.data_parallel, batch)?;
    let source = match &args.resume {
        Some(folder) => Some(folder.join("config.toml")),
        None => args.config.clone(),
    };
    config
        .validate()
        .map_err(|e| in_config(source.as_deref(), e))?;
    config.check_fits_in_memory()?;
    let store = out.join(CHECKPOINTS);
    let tokenizer = config.tokenizer_path();
    let mut inputs = vec![
        config.model.as_path(),
        config.data.as_path(),
        tokenizer.as_path(),
    ];
    inputs.extend(config.eval_data.as_deref());
    // Node 0 alone writes the run; the other nodes of a multi-node run read its checkpoints
    // on --resume and write nothing.
    let writes = config.data_parallel.writes();
    let _folder = match writes {
        true => Some(open_run_folder(
            &out,
            &config,
            config.seed,
            entry(args.resume.as_deref(), &args.output),
            &inputs,
        )?),
        false => None,
    };
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
    let mut view = TrainerProgress::new(steps as u64, args.output.quiet);
    let mut metrics = if writes {
        Some(LiveMetrics::open(&out, steps_per_epoch(&config, &data))?)
    } else {
        None
    };
    let mut done = 0u64;
    let mut failed = None;
    let mut on_progress = |progress: Progress| {
        done += u64::from(matches!(progress, Progress::Step(_)));
        if let Some(Err(e)) = metrics.as_mut().map(|m| m.record(&progress)) {
            failed.get_or_insert(e);
        }
        view.show(&progress);
    };
    let interrupted = interrupt::on_signal()?;
    let session =
        Session::new(args.session.stop_after_steps).with_interrupt(Arc::clone(&interrupted));
    let device = Default::default();
    let store = Some(store.as_path()).filter(|_| writes || args.resume.is_some());
    let outcome = config.train::<Training>(&data, store, &session, &device, &mut on_progress);
    view.finish();
    if let Some(e) = failed {
        return Err(e.into());
    }
    let outcome = match outcome {
        Err(TrainError::Stopped(steps)) if interrupted.load(Ordering::SeqCst) => {
            return Err(format!(
                "interrupted after {steps} steps, checkpointed; continue with \
                 --resume {}",
                out.display()
            )
            .into());
        }
        Err(TrainError::Stopped(steps)) => {
            println!(
                "stopped after {steps} steps; continue with --resume {}",
                out.display()
            );
            return Ok(());
        }
        other => other?,
    };
    if let Some(nodes) = config.data_parallel.nodes.filter(|_| !writes) {
        println!(
            "node {}: {} steps in {:.0} s ({done} this session); node 0 writes the run",
            nodes.rank,
            outcome.steps,
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let model_dir = write_run(&out, &config, &data, &outcome)?;
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
    fetch_model(&mut config.model, quiet)?;
    if let Some(tokenizer) = &mut config.tokenizer {
        fetch_model(tokenizer, quiet)?;
    }
    fetch_dataset(&mut config.data, &mut config.split, quiet)?;
    if let Some(eval_data) = &mut config.eval_data {
        fetch_dataset(eval_data, &mut config.eval_data_split, quiet)?;
    }
    Ok(())
}

/// The trainer's config: `--config` (paths against its folder) or the defaults, then the flags.
fn resolve(args: &TrainerArgs) -> Result<TrainerConfig, Box<dyn std::error::Error>> {
    let config = match &args.config {
        Some(path) => read(path)?,
        None => TrainerConfig::default(),
    };
    with_flags(config, args)
}

/// `config` with the trainer flags of `args` applied over it.
fn with_flags(
    mut config: TrainerConfig,
    args: &TrainerArgs,
) -> Result<TrainerConfig, Box<dyn std::error::Error>> {
    if let Some(scorer) = args.framework.scorer {
        config.scorer = scorer.into();
    }
    if let Some(schedule) = args.framework.round_schedule {
        config.round_schedule = schedule.into();
    }
    let flags = &args.flags;
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
    if let Some(on) = flags.gradient_checkpointing {
        config.gradient_checkpointing = on;
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
    config.loss_spec = flags.loss_spec.or(&config.loss_spec);
    if let Some(name) = &flags.template {
        config.template = name
            .parse::<Template>()
            .map_err(|e| format!("--template: {e}"))?;
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
    if let Some(unused) = flags.loss_spec.unused_by(&config.loss) {
        let users: Vec<String> = unused
            .users
            .iter()
            .map(|loss| format!("--loss {loss}'s"))
            .collect();
        // TRL's sigmoid loss with label_smoothing is cDPO, which users coming from TRL look for.
        let hint = if unused.name == "epsilon" {
            "; TRL's sigmoid loss with label_smoothing is --loss cdpo"
        } else {
            ""
        };
        return Err(format!(
            "--{} is {}, and --loss {} does not use it{hint}",
            unused.name.replace('_', "-"),
            users.join(" and "),
            config.loss
        )
        .into());
    }
    // TRL's dataset_test_split names a split of dataset_name.
    if config.eval_data.is_none() && config.eval_data_split.is_some() {
        config.eval_data = Some(config.data.clone());
    }
    if let Some(noise) = args.noise {
        config.noise = noise;
    }
    Ok(config)
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
    let mut config: TrainerConfig = read_toml(path)?;
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
