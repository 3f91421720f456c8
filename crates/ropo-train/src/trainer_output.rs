//! What the trainer leaves in its folder ([`write_run`]): the aligned model as a Hugging Face
//! folder (`model/`), `metrics.jsonl` with TRL's names, `suspect_labels.jsonl` (every pair the
//! filter dropped), `report.md` and the curves (`config.toml` is written when the run starts).
//! Every file is written under a temporary name and renamed.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use ropo_core::DEFAULT_BETA;
use ropo_data::{ChatPair, GgufVocab, Prompt};
use ropo_models::{
    checkpoint, integrity, lora::LoraConfig, peft, weights_file::SaveDtype, CausalLm,
};
use serde_json::json;

use crate::{
    plots,
    records::RoundReport,
    records::{EvalRecord, Progress, StepRecord},
    run::DroppedPair,
    store::{snapshot, write_atomic},
    trainer::{TrainerConfig, TrainerData, TrainerOutcome},
    TrainError,
};

/// Writes a finished run into its folder `out`: the model (`out/model/`: merged, or the LoRA
/// adapter alone where the config says `save_adapter`) and the records of [`write_records`];
/// then removes the run's checkpoints (`out/checkpoints`), which a finished run no longer
/// needs. Returns the model folder.
pub fn write_run<B: Backend>(
    out: &Path,
    config: &TrainerConfig,
    data: &TrainerData,
    outcome: &TrainerOutcome<B>,
) -> Result<PathBuf, TrainError> {
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
        out,
        config,
        data,
        &outcome.history,
        &outcome.evals,
        (&outcome.rounds, &outcome.dropped),
    )?;
    let checkpoints = out.join(CHECKPOINTS);
    if checkpoints.exists() {
        std::fs::remove_dir_all(&checkpoints).map_err(TrainError::io(&checkpoints))?;
    }
    Ok(model_dir)
}

/// The folder of a trainer run's checkpoints, inside its run folder.
pub const CHECKPOINTS: &str = "checkpoints";

/// Files of a model folder copied beside the weights when the input has them.
const COPIED: [&str; 8] = [
    "tokenizer.json",
    "chat_template.jinja",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
];

/// How the trained model is written.
#[derive(Debug, Clone, Copy)]
pub enum Export<'a> {
    /// The whole model (LoRA adapters merged), its weights in this type, split into shards
    /// of at most this many bytes.
    Merged(SaveDtype, u64),
    /// The LoRA adapter alone, as a PEFT folder over the input model.
    Adapter(&'a LoraConfig),
}

/// Writes `model` into `dir` as `export` says, beside the tokenizer and generation files found
/// with the input (or in `tokenizer`; a GGUF tokenizer is written out as `tokenizer.json`,
/// `tokenizer_config.json`, `generation_config.json` and `chat_template.jinja`, see
/// [`GgufVocab::hugging_face_files`]). Merged: a Hugging Face folder, `model.safetensors` (or
/// shards with their index) and
/// the input's own `config.json` when it has one (so `architectures` and every other field
/// stay as they were). Adapter: `adapter_config.json` and `adapter_model.safetensors`, which
/// `peft.PeftModel.from_pretrained(input, dir)` loads.
///
/// The folder is written whole under a temporary name beside it (`.tmp-model`) and renamed
/// into place, as checkpoints are, so `dir` never holds weights without their `SHA256SUMS`: a
/// write that is killed leaves only the temporary folder, which the next export replaces.
pub fn export_model<B: Backend>(
    model: &CausalLm<B>,
    input: &Path,
    tokenizer: &Path,
    dir: &Path,
    export: Export<'_>,
) -> Result<(), TrainError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| TrainError::Config(format!("{}: not a folder name", dir.display())))?;
    snapshot::place(parent, name, |tmp| {
        write_model_folder(model, input, tokenizer, tmp, export)
    })?;
    Ok(())
}

/// The files of [`export_model`], written into `dir`.
fn write_model_folder<B: Backend>(
    model: &CausalLm<B>,
    input: &Path,
    tokenizer: &Path,
    dir: &Path,
    export: Export<'_>,
) -> Result<(), TrainError> {
    let folder = if input.is_dir() {
        input
    } else {
        input.parent().unwrap_or(Path::new("."))
    };
    match export {
        Export::Adapter(lora) => {
            let base = std::fs::canonicalize(input).map_err(TrainError::io(input))?;
            peft::save_adapter(model, lora, &base.display().to_string(), dir)?;
        }
        Export::Merged(dtype, max_shard_bytes) => {
            let files = checkpoint::save(model, dir, dtype, max_shard_bytes)?;
            let input_config = folder.join("config.json");
            let is_hf =
                input.extension().is_none_or(|ext| ext != "bin") && !checkpoint::is_gguf(input);
            if is_hf && input_config.is_file() {
                let text = std::fs::read(&input_config).map_err(TrainError::io(&input_config))?;
                integrity::write_atomic(&dir.join("config.json"), &text)?;
                integrity::seal(dir, &files)?;
            }
        }
    }
    if checkpoint::is_gguf(tokenizer) && tokenizer.is_file() {
        for (name, bytes) in GgufVocab::read(tokenizer)?.hugging_face_files()? {
            integrity::write_atomic(&dir.join(name), &bytes)?;
        }
        return Ok(());
    }
    let tokenizer_folder = if tokenizer.is_dir() {
        tokenizer
    } else {
        tokenizer.parent().unwrap_or(Path::new("."))
    };
    // A GGUF file's folder is no model folder: its files belong to no model of ours.
    let folders: &[&Path] = if checkpoint::is_gguf(input) {
        &[tokenizer_folder]
    } else {
        &[folder, tokenizer_folder]
    };
    for name in COPIED {
        let from = folders.iter().map(|f| f.join(name)).find(|p| p.is_file());
        if let Some(from) = from {
            let bytes = std::fs::read(&from).map_err(TrainError::io(&from))?;
            integrity::write_atomic(&dir.join(name), &bytes)?;
        }
    }
    if tokenizer.is_file() && tokenizer.extension().is_some_and(|e| e == "json") {
        let bytes = std::fs::read(tokenizer).map_err(TrainError::io(tokenizer))?;
        integrity::write_atomic(&dir.join("tokenizer.json"), &bytes)?;
    }
    Ok(())
}

/// `metrics.jsonl`: one line per step with TRL's names (`loss`, `learning_rate`, `grad_norm`,
/// `epoch`, `rewards/*`, `logps/*`), and one line per evaluation with `eval_` names, after the
/// step it followed.
fn trl_metrics_lines(history: &[StepRecord], evals: &[EvalRecord], steps_per_epoch: f64) -> String {
    let mut out = String::new();
    let mut pending = evals.iter().peekable();
    for s in history {
        out += &trl_step_line(s, steps_per_epoch);
        while let Some(e) = pending.next_if(|e| e.step <= s.step) {
            out += &trl_eval_line(e, steps_per_epoch);
        }
    }
    out
}

/// One step's line of `metrics.jsonl`, ending in a newline.
fn trl_step_line(s: &StepRecord, steps_per_epoch: f64) -> String {
    let mut line = json!({
        "step": s.step, "epoch": s.step as f64 / steps_per_epoch.max(1.0), "loss": s.loss,
        "learning_rate": s.lr, "grad_norm": s.grad_norm,
        "rewards/chosen": s.rewards_chosen, "rewards/rejected": s.rewards_rejected,
        "rewards/accuracies": s.accuracy, "rewards/margins": s.margin,
        "logps/chosen": s.logps_chosen, "logps/rejected": s.logps_rejected,
    });
    if let Some(eta) = s.reliability {
        line["repo/reliability"] = json!(eta);
    }
    format!("{line}\n")
}

/// One evaluation's line of `metrics.jsonl`, ending in a newline.
fn trl_eval_line(e: &EvalRecord, steps_per_epoch: f64) -> String {
    let line = json!({
        "step": e.step, "epoch": e.step as f64 / steps_per_epoch.max(1.0), "eval_loss": e.loss,
        "eval_rewards/chosen": e.rewards_chosen,
        "eval_rewards/rejected": e.rewards_rejected,
        "eval_rewards/accuracies": e.accuracy, "eval_rewards/margins": e.margin,
        "eval_logps/chosen": e.logps_chosen, "eval_logps/rejected": e.logps_rejected,
    });
    format!("{line}\n")
}

/// Steps in one epoch of the trainer's pairs (the `epoch` of `metrics.jsonl`).
pub fn steps_per_epoch(config: &TrainerConfig, data: &TrainerData) -> f64 {
    data.train.len().div_ceil(config.batch) as f64
}

/// `metrics.jsonl` as the run goes: each step's and evaluation's line appended and flushed as
/// it comes, so a run that is stopped or dies leaves its metrics so far (a resumed run appends
/// again from its checkpoint, so a step may appear twice: the later line holds). The finished
/// run rewrites the file whole.
pub struct LiveMetrics {
    file: std::fs::File,
    path: std::path::PathBuf,
    steps_per_epoch: f64,
}

impl LiveMetrics {
    /// Opens `dir/metrics.jsonl` for appending.
    pub fn open(dir: &Path, steps_per_epoch: f64) -> Result<Self, TrainError> {
        let path = dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(TrainError::io(&path))?;
        Ok(Self {
            file,
            path,
            steps_per_epoch,
        })
    }

    /// Appends the line of a step or an evaluation; other progress is not a metric.
    pub fn record(&mut self, progress: &Progress) -> Result<(), TrainError> {
        use std::io::Write;
        let line = match progress {
            Progress::Step(s) => trl_step_line(s, self.steps_per_epoch),
            Progress::Evaluated(e) => trl_eval_line(e, self.steps_per_epoch),
            _ => return Ok(()),
        };
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(TrainError::io(&self.path))
    }
}

/// `suspect_labels.jsonl`: each dropped pair as read from the data file (`record`), its line
/// index in that file (0-based), the round that dropped it, its loss and margin, and whether
/// ropo itself flipped it (`injected_flip`, only with `noise`).
pub fn suspect_lines(data: &TrainerData, dropped: &[DroppedPair]) -> String {
    let mut out = String::new();
    for d in dropped {
        let index = data.record_index[d.index];
        let line = json!({
            "index": index, "round": d.round, "loss": d.loss, "margin": d.margin,
            "injected_flip": data.flipped[d.index], "record": record_json(&data.records[index]),
        });
        out += &line.to_string();
        out.push('\n');
    }
    out
}

/// A pair as the data file gave it: `prompt` a string or a list of messages.
fn record_json(pair: &ChatPair) -> serde_json::Value {
    let prompt = match &pair.prompt {
        Prompt::Text(text) => json!(text),
        Prompt::Messages(messages) => json!(messages),
    };
    json!({ "prompt": prompt, "chosen": pair.chosen, "rejected": pair.rejected })
}

/// A short `report.md`: the data, the method, the last training and evaluation metrics and,
/// with filter rounds, what the filter did.
fn trainer_report_md(
    config: &TrainerConfig,
    data: &TrainerData,
    history: &[StepRecord],
    evals: &[EvalRecord],
    rounds: &[RoundReport],
) -> String {
    let mut out = format!(
        "# ropo train: {} on {}\n\n\
         {} training pairs, {} evaluation pairs ({} dropped as too long), model {}; \
         β = {}, lr = {}, batch {}, {} steps.\n",
        config.loss,
        config.data.display(),
        data.train.len(),
        data.eval.len(),
        data.dropped,
        config.model.display(),
        config.loss_spec.beta.unwrap_or(DEFAULT_BETA),
        config.lr,
        config.batch,
        history.len(),
    );
    if let Some(lora) = config.lora() {
        let targets: Vec<&str> = lora.targets.iter().map(|t| t.name()).collect();
        out += &format!(
            "LoRA: rank {}, α = {}, dropout {} on {} (the base frozen, and the reference).\n",
            lora.rank,
            lora.alpha,
            lora.dropout,
            targets.join(", ")
        );
    }
    if let (Some(first), Some(last)) = (history.first(), history.last()) {
        out += "\n| step | loss | rewards/accuracies | rewards/margins | grad_norm |\n|---|---|---|---|---|\n";
        for s in [first, last] {
            out += &format!(
                "| {} | {:.4} | {:.3} | {:.4} | {:.3} |\n",
                s.step, s.loss, s.accuracy, s.margin, s.grad_norm
            );
        }
    }
    if !evals.is_empty() {
        out += "\n| step | eval_loss | eval_rewards/accuracies | eval_rewards/margins |\n|---|---|---|---|\n";
        for e in evals {
            out += &format!(
                "| {} | {:.4} | {:.3} | {:.4} |\n",
                e.step, e.loss, e.accuracy, e.margin
            );
        }
    }
    out += "\n![loss](loss.svg)\n![rewards/accuracies](accuracy.svg)\n![rewards/margins](margin.svg)\n";
    if !rounds.is_empty() {
        out +=
            "\n| after round | dropped | resampled | precision | recall |\n|---|---|---|---|---|\n";
        for r in rounds {
            let (precision, recall) = if config.noise > 0.0 {
                (
                    format!("{:.3}", r.filter.precision),
                    format!("{:.3}", r.filter.recall),
                )
            } else {
                ("–".into(), "–".into())
            };
            out += &format!(
                "| {} | {} | {} | {precision} | {recall} |\n",
                r.round, r.filter.dropped, r.resampled
            );
        }
        out += "\nThe dropped pairs are listed in `suspect_labels.jsonl`. Precision and recall \
                (of the flips `noise` injected among the dropped pairs) are shown only when \
                ropo injected the noise itself.\n";
    }
    out
}

/// The trainer's curves: loss, reward accuracy and margin against step, train and eval, as
/// `(file name, svg)`.
pub fn curves(
    history: &[StepRecord],
    evals: &[EvalRecord],
) -> Result<Vec<(&'static str, String)>, TrainError> {
    type Pick<T> = fn(&T) -> f64;
    let charts: [(&str, &str, Pick<StepRecord>, Pick<EvalRecord>); 3] = [
        ("loss.svg", "loss", |s| s.loss, |e| e.loss),
        (
            "accuracy.svg",
            "rewards/accuracies",
            |s| s.accuracy,
            |e| e.accuracy,
        ),
        ("margin.svg", "rewards/margins", |s| s.margin, |e| e.margin),
    ];
    charts
        .into_iter()
        .map(|(file, name, train, eval)| {
            let eval_name = format!("eval_{name}");
            let series = [
                (
                    name,
                    history.iter().map(|s| (s.step as f64, train(s))).collect(),
                ),
                (
                    eval_name.as_str(),
                    evals.iter().map(|e| (e.step as f64, eval(e))).collect(),
                ),
            ];
            Ok((file, plots::step_curves(name, name, &series)?))
        })
        .collect()
}

/// Writes `metrics.jsonl`, `timing.jsonl`, `suspect_labels.jsonl`, `report.md` and the curves
/// into `dir`.
pub fn write_records(
    dir: &Path,
    config: &TrainerConfig,
    data: &TrainerData,
    history: &[StepRecord],
    evals: &[EvalRecord],
    (rounds, dropped): (&[RoundReport], &[DroppedPair]),
) -> Result<(), TrainError> {
    write_atomic(
        &dir.join("metrics.jsonl"),
        &trl_metrics_lines(history, evals, steps_per_epoch(config, data)),
    )?;
    let method = config.method()?;
    let run = [(method.name.as_str(), config.noise, config.seed, history)];
    write_atomic(
        &dir.join("timing.jsonl"),
        &crate::report::timing_lines(run.into_iter()),
    )?;
    if config.filter_rounds > 0 {
        write_atomic(
            &dir.join("suspect_labels.jsonl"),
            &suspect_lines(data, dropped),
        )?;
    }
    for (file, svg) in curves(history, evals)? {
        write_atomic(&dir.join(file), &svg)?;
    }
    write_atomic(
        &dir.join("report.md"),
        &trainer_report_md(config, data, history, evals, rounds),
    )
}
