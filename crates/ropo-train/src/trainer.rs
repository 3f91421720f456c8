//! The trainer: one method on a user's model and preference file, as they are (noise only when
//! asked), the way `trl dpo` trains — SFT optional, reference log-probs from the starting
//! model, preference training with evaluation and checkpoints, and the ROPO framework's
//! filtering (and rejection sampling) when rounds are asked for. Returns the trained policy and
//! what the run measured; writing it out is [`crate::trainer_output`]'s job.

use std::{
    cell::RefCell,
    path::{Path, PathBuf},
};

use burn::{module::AutodiffModule, tensor::backend::Backend};
use ropo_core::{LossConfig, LossParams, LossSpec, DEFAULT_BETA};
use ropo_data::{
    encoder::PairEncoder,
    formats::{open_split, ReadOptions},
    split::held_out,
    template::Template,
    tokenize::DropReason,
    ChatPair, TokenizedPair,
};
use ropo_models::{
    attention::TrainingBackend,
    checkpoint,
    config::ModelConfig,
    lora::{LoraConfig, LoraTarget},
    weights_file::SaveDtype,
    CausalLm,
};
use serde::{Deserialize, Serialize};

use crate::{
    data_parallel::{DataParallel, PeerGroup},
    eval::eval_metrics,
    framework::{Resampling, RoundSchedule, Scorer},
    loss_entry::DataStep,
    records::{EvalRecord, Progress, RoundReport, StepRecord},
    reference::PairReference,
    run::{DroppedPair, Method, PreferenceSet, Rounds, Run},
    schedule::StepSchedule,
    seeds::Seeds,
    session::Session,
    sft::{run_sft, SftStage},
    step::check_trained,
    TrainError,
};

/// Everything the trainer needs; every field but `model` and `data` has a default (TRL's where
/// TRL has one). `--config FILE` holds these fields; flags override them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerConfig {
    /// The model: a Hugging Face folder, a `.safetensors` file beside `config.json`, or a
    /// llama2.c `.bin`.
    pub model: PathBuf,
    /// The preference data: a file in any format `ropo-data` reads (JSONL, `.gz`, parquet) or
    /// a folder of them.
    pub data: PathBuf,
    /// The split of `data` to train on, where it is a folder holding several (a Hub dataset's
    /// `train_prefs`; TRL: `dataset_train_split`). `None`: every data file.
    pub split: Option<String>,
    /// The tokenizer file or folder (default: the model's folder).
    pub tokenizer: Option<PathBuf>,
    /// Chat template for conversation prompts (`auto`: the tokenizer's own, else ChatML).
    pub template: Template,
    /// Most tokens in prompt plus response (TRL: `max_length`, 1024).
    pub max_length: usize,
    /// Most prompt tokens, longer prompts keep their end (TRL: `max_prompt_length`, 512).
    pub max_prompt_length: usize,
    /// Fraction of the pairs held out for evaluation (0: train on everything).
    pub eval_split: f64,
    /// Separate evaluation data, a file or folder (instead of `eval_split`).
    pub eval_data: Option<PathBuf>,
    /// The split of `eval_data` (TRL: `dataset_test_split`). `None`: every data file.
    pub eval_data_split: Option<String>,
    /// Evaluate every this many steps (0: only at the end; nothing without evaluation pairs).
    pub eval_every: usize,
    /// Symmetric label noise injected into the training pairs (0: the labels as read).
    pub noise: f64,
    /// Base seed of every random stream (split, noise, batch order, sampling).
    pub seed: u64,
    /// The loss (`sigmoid`/`dpo`, `ropo`, `ipo`, `cdpo`, `rdpo`, `hinge`, `simpo`, …).
    pub loss: String,
    /// β and the loss's own parameters (β, α, ε left out: 0.1, 14, 0.1; the others:
    /// ropo-core's defaults), as keys beside the others (`beta = 0.1`, TRL's `rpo_alpha` is
    /// `nll_weight`).
    #[serde(flatten, deserialize_with = "trainer_loss")]
    pub loss_spec: LossSpec,
    /// Peak learning rate (TRL: `learning_rate`, 1e-6).
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Warmup steps.
    pub warmup: usize,
    /// Passes over the training pairs (ignored when `steps` is set).
    pub epochs: usize,
    /// Optimiser steps (overrides `epochs`).
    pub steps: Option<usize>,
    /// Pairs per optimiser step.
    pub batch: usize,
    /// Forwards each batch is split into (TRL: `gradient_accumulation_steps`).
    pub grad_accum: usize,
    /// SFT steps on the chosen responses before preference training (0: the model is the
    /// reference as given).
    pub sft_steps: usize,
    /// SFT's peak learning rate.
    pub sft_lr: f64,
    /// Checkpoint every this many steps (0: only when stopping early).
    pub save_every: usize,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Filter rounds of the ROPO framework: after each of the first `filter_rounds` of
    /// `filter_rounds + 1` equal rounds, the `filter_rho` fraction of pairs with the highest
    /// loss is dropped (0: no filtering).
    pub filter_rounds: usize,
    /// Fraction ρ dropped at each filter round.
    pub filter_rho: f64,
    /// Responses sampled per dropped prompt for rejection sampling (0: none; at least 2).
    pub resample: usize,
    /// How rejection sampling ranks its candidates.
    pub scorer: Scorer,
    /// How the learning rate runs over filter rounds: each round its own warmup and decay
    /// (`restart`, the default), or one schedule over the whole run (`continuous`).
    pub round_schedule: RoundSchedule,
    /// Sampling temperature of rejection sampling.
    pub temperature: f64,
    /// Most new tokens of a resampled response.
    pub max_new_tokens: usize,
    /// The type the trained weights are saved in (left out: the input's).
    pub save_dtype: Option<SaveDtype>,
    /// LoRA rank (TRL: `lora_r`; 0: full fine-tuning). With LoRA every base weight is frozen
    /// and the reference is the same model with its adapters off.
    pub lora_rank: usize,
    /// LoRA's α (left out: twice the rank, as TRL's defaults 16 and 32).
    pub lora_alpha: Option<f64>,
    /// Dropout on the adapters' input (TRL: 0.05).
    pub lora_dropout: f64,
    /// The projections adapted (default: every linear layer of the blocks).
    pub lora_targets: Vec<LoraTarget>,
    /// Write the adapter alone as a PEFT folder instead of the merged model.
    pub save_adapter: bool,
    /// The longest line of the data files read, in bytes (a longer one is an error).
    pub max_line_bytes: usize,
    /// The most bytes read from a data file in all (more is an error).
    pub max_total_bytes: u64,
    /// The most records read from a data file (more is an error).
    pub max_records: u64,
    /// Exported weights larger than this many bytes are split into shards with an index
    /// (transformers' `max_shard_size`, 5 GB).
    pub max_shard_size: u64,
    /// Recompute each decoder layer's activations in the backward instead of keeping them (TRL:
    /// `gradient_checkpointing`; [`crate::layer_checkpointing`]).
    pub gradient_checkpointing: bool,
    /// The ranks that share each preference step and how long rank 0 waits for one
    /// (`--data-parallel`, `--peer-timeout`). Not kept in the run's config: a run resumes with
    /// any number of ranks.
    #[serde(skip)]
    pub data_parallel: DataParallel,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            data: PathBuf::new(),
            split: None,
            tokenizer: None,
            template: Template::default(),
            max_length: 1024,
            max_prompt_length: 512,
            eval_split: 0.0,
            eval_data: None,
            eval_data_split: None,
            eval_every: 0,
            noise: 0.0,
            seed: 0,
            loss: "ropo".into(),
            loss_spec: trainer_loss_defaults(),
            lr: 1e-6,
            weight_decay: 0.0,
            warmup: 0,
            epochs: 1,
            steps: None,
            batch: 8,
            grad_accum: 1,
            sft_steps: 0,
            sft_lr: 1e-5,
            save_every: 0,
            keep_checkpoints: 2,
            filter_rounds: 0,
            filter_rho: 0.2,
            resample: 0,
            scorer: Scorer::PolicyLogProbPerToken,
            round_schedule: RoundSchedule::default(),
            temperature: 1.0,
            max_new_tokens: 128,
            save_dtype: None,
            lora_rank: 0,
            lora_alpha: None,
            lora_dropout: 0.05,
            lora_targets: LoraTarget::ALL.to_vec(),
            save_adapter: false,
            max_line_bytes: ropo_data::formats::DEFAULT_MAX_LINE_BYTES,
            max_total_bytes: ropo_data::formats::DEFAULT_MAX_TOTAL_BYTES,
            max_records: ropo_data::formats::DEFAULT_MAX_RECORDS,
            max_shard_size: ropo_models::weights_file::DEFAULT_MAX_SHARD_BYTES,
            gradient_checkpointing: false,
            data_parallel: DataParallel::default(),
        }
    }
}

/// The training and evaluation pairs, and where each training pair came from.
pub struct TrainerData {
    /// Every record read from the data file, in file order.
    pub records: Vec<ChatPair>,
    /// `record_index[i]`: the file index of training pair `i`.
    pub record_index: Vec<usize>,
    /// The training pairs (noise injected when asked).
    pub train: Vec<TokenizedPair>,
    /// Which training pairs had their label flipped by `noise`.
    pub flipped: Vec<bool>,
    /// The evaluation pairs (never noised).
    pub eval: Vec<TokenizedPair>,
    /// Pairs dropped by tokenization (refused by the template, or the prompt alone over
    /// budget) in the data file.
    pub dropped: usize,
    /// Training pairs left out because a run with filter rounds that ends within its first
    /// epoch trains on a seeded subset of `steps × batch` pairs, and scores and filters only
    /// those.
    pub unused: usize,
    /// The tokenizer's end-of-sequence id (ends resampled responses).
    pub eos: Option<u32>,
    /// How conversations were rendered: a built-in template's name, or the model's chat
    /// template and the file it came from.
    pub chat_format: String,
}

/// The loss parameters a trainer config writes whatever it was given, so a run's config says
/// the β, α and ε it trained with.
fn trainer_loss_defaults() -> LossSpec {
    let published = LossParams::default();
    LossSpec {
        beta: Some(DEFAULT_BETA),
        alpha: Some(published.alpha),
        epsilon: Some(published.epsilon),
        ..LossSpec::default()
    }
}

/// A trainer config's loss parameters, those it leaves out taken from
/// [`trainer_loss_defaults`].
fn trainer_loss<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<LossSpec, D::Error> {
    Ok(LossSpec::deserialize(deserializer)?.or(&trainer_loss_defaults()))
}

/// A finished trainer run (`B`: the backend without autodiff).
pub struct TrainerOutcome<B: Backend> {
    /// The trained policy, off the autodiff graph.
    pub model: CausalLm<B>,
    /// Optimiser steps in all.
    pub steps: usize,
    /// Per-step metrics.
    pub history: Vec<StepRecord>,
    /// Evaluation points.
    pub evals: Vec<EvalRecord>,
    /// Filter reports, one per filter round.
    pub rounds: Vec<RoundReport>,
    /// Every pair the filter dropped.
    pub dropped: Vec<DroppedPair>,
}

impl TrainerConfig {
    /// Checks every value before anything runs; the message names the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let fail = |message: String| Err(TrainError::Config(message));
        for (field, path) in [("model", &self.model), ("data", &self.data)] {
            if path.as_os_str().is_empty() {
                return fail(format!("{field}: no path given"));
            }
            if !path.exists() {
                return fail(format!("{field}: {} does not exist", path.display()));
            }
        }
        if !(0.0..1.0).contains(&self.eval_split) {
            return fail(format!("eval_split: {} must be in [0, 1)", self.eval_split));
        }
        if self.eval_split > 0.0 && self.eval_data.is_some() {
            return fail("eval_split and eval_data: give one, not both".into());
        }
        if !(0.0..0.5).contains(&self.noise) {
            return fail(format!("noise: {} must be in [0, 0.5)", self.noise));
        }
        if self.max_shard_size == 0 {
            return fail("max_shard_size: must be at least 1 byte".into());
        }
        for (field, value) in [
            ("batch", self.batch),
            ("grad_accum", self.grad_accum),
            ("max_length", self.max_length),
            ("max_prompt_length", self.max_prompt_length),
            ("keep_checkpoints", self.keep_checkpoints),
        ] {
            if value == 0 {
                return fail(format!("{field}: must be at least 1"));
            }
        }
        self.data_parallel
            .check(self.batch)
            .map_err(TrainError::Config)?;
        let peers = self.data_parallel.peers;
        if peers > 1 && self.lora_rank > 0 && self.lora_dropout > 0.0 {
            return fail(format!(
                "data_parallel: {peers} ranks with LoRA dropout {} would draw the dropout masks \
                 in thread order, so runs would not repeat; give --lora-dropout 0 or \
                 --data-parallel 1",
                self.lora_dropout
            ));
        }
        if self.steps == Some(0) || (self.steps.is_none() && self.epochs == 0) {
            return fail("steps / epochs: must be at least 1".into());
        }
        if let Some(steps) = self.steps.filter(|steps| self.warmup >= *steps) {
            return fail(format!(
                "warmup ({}) must be below steps ({steps}): the learning rate would never leave \
                 its warmup",
                self.warmup
            ));
        }
        for (field, value) in [("lr", self.lr), ("sft_lr", self.sft_lr)] {
            if !(value > 0.0 && value.is_finite()) {
                return fail(format!("{field}: learning rate {value} must be > 0"));
            }
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return fail(format!("weight_decay: {} must be >= 0", self.weight_decay));
        }
        if !(0.0..1.0).contains(&self.filter_rho) {
            return fail(format!("filter_rho: {} must be in [0, 1)", self.filter_rho));
        }
        if self.resample == 1 {
            return fail("resample: needs at least 2 samples per prompt (0: none)".into());
        }
        if self.resample > 0 && self.filter_rounds == 0 {
            return fail("resample: needs filter_rounds >= 1 (it refills dropped prompts)".into());
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return fail(format!("temperature: {} must be > 0", self.temperature));
        }
        self.loss_config()?;
        if let Some(lora) = self.lora() {
            lora.validate().map_err(TrainError::Config)?;
        }
        if self.save_adapter && self.lora_rank == 0 {
            return fail("save_adapter: needs LoRA (lora_rank >= 1)".into());
        }
        if self.save_adapter && self.sft_steps > 0 {
            return fail(
                "save_adapter: with sft_steps the adapter would apply to the SFT model, not to \
                 the input; export the merged model instead"
                    .into(),
            );
        }
        Ok(())
    }

    /// The LoRA settings, when `lora_rank` asks for LoRA (adapters seeded from `seed`).
    pub fn lora(&self) -> Option<LoraConfig> {
        (self.lora_rank > 0).then(|| LoraConfig {
            rank: self.lora_rank,
            alpha: self.lora_alpha.unwrap_or(2.0 * self.lora_rank as f64),
            dropout: self.lora_dropout,
            targets: self.lora_targets.clone(),
            seed: self.seeds().lora(),
        })
    }

    /// How the run steps, for `pairs` training pairs.
    fn schedule(&self, pairs: usize) -> StepSchedule {
        StepSchedule {
            steps: self.total_steps(pairs),
            batch: self.batch,
            lr: self.lr,
            warmup: self.warmup,
            weight_decay: self.weight_decay,
            grad_accum: self.grad_accum,
            layer_checkpointing: self.gradient_checkpointing,
        }
    }

    /// The loss with its parameters.
    pub fn loss_config(&self) -> Result<LossConfig, TrainError> {
        Ok(self.loss_spec.config(&self.loss)?)
    }

    /// Optimiser steps for `pairs` training pairs: `steps`, or `epochs` passes of whole
    /// batches (at least one step), rounded down to a multiple of the rounds.
    pub fn total_steps(&self, pairs: usize) -> usize {
        let steps = self
            .steps
            .unwrap_or_else(|| (self.epochs * pairs.div_ceil(self.batch)).max(1));
        let rounds = self.filter_rounds + 1;
        (steps / rounds).max(1) * rounds
    }

    /// How many of `pairs` training pairs the run trains on, when that is fewer than all: a run
    /// that ends within its first epoch (an epoch has ⌈pairs / batch⌉ batches) uses at most
    /// `steps × batch` pairs. `None`: every pair is used.
    pub fn pairs_used(&self, pairs: usize) -> Option<usize> {
        let steps = self.total_steps(pairs);
        (steps < pairs.div_ceil(self.batch)).then_some(steps * self.batch)
    }

    /// The method: the loss and, with filter rounds, its data step.
    pub fn method(&self) -> Result<Method, TrainError> {
        let data_step = match (self.filter_rounds, self.resample) {
            (0, _) => DataStep::None,
            (_, 0) => DataStep::Filter,
            _ => DataStep::FilterResample,
        };
        Ok(Method {
            name: format!("{}{}", self.loss, data_step.suffix()),
            loss: self.loss_config()?,
            data_step,
        })
    }

    /// Every path the config names (model, data, tokenizer, evaluation data).
    pub fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [&mut self.model, &mut self.data].into_iter().chain(
            [&mut self.tokenizer, &mut self.eval_data]
                .into_iter()
                .flatten(),
        )
    }

    /// The tokenizer's path: given, or the model's folder (a GGUF file itself, which holds its
    /// tokenizer and chat template).
    pub fn tokenizer_path(&self) -> PathBuf {
        self.tokenizer.clone().unwrap_or_else(|| {
            if self.model.is_dir() || checkpoint::is_gguf(&self.model) {
                self.model.clone()
            } else {
                self.model.parent().unwrap_or(Path::new(".")).to_path_buf()
            }
        })
    }

    /// Reads and tokenizes the pairs, splits off the evaluation pairs and injects the noise.
    pub fn prepare(&self) -> Result<TrainerData, TrainError> {
        let encoder = PairEncoder::open(
            &self.tokenizer_path(),
            self.template,
            (self.max_length, self.max_prompt_length),
        )?;
        let read = ReadOptions {
            max_line_bytes: self.max_line_bytes,
            max_total_bytes: self.max_total_bytes,
            max_records: self.max_records,
            ..ReadOptions::default()
        };
        let (records, _) = open_split(&self.data, self.split.as_deref(), &read)?.into_pairs()?;
        let tokenized = encoder.encode(&records)?;
        let dropped = tokenized.report.dropped.len();
        let (held, mut train) = held_out(tokenized.pairs, self.eval_split, self.seeds().split());
        let all = train.len();
        if let Some(used) = self.pairs_used(all).filter(|_| self.filter_rounds > 0) {
            let (subset, _) = held_out(train, used as f64 / all as f64, self.seeds().subset());
            train = subset.into_iter().map(|(_, pair)| pair).collect();
        }
        let unused = all - train.len();
        train.sort_unstable_by_key(|(i, _)| *i);
        let mut eval: Vec<TokenizedPair> = held.into_iter().map(|(_, p)| p).collect();
        if let Some(path) = &self.eval_data {
            let (eval_records, _) =
                open_split(path, self.eval_data_split.as_deref(), &read)?.into_pairs()?;
            eval = encoder.encode(&eval_records)?.pairs;
        }
        let (record_index, clean): (Vec<usize>, Vec<TokenizedPair>) = train
            .into_iter()
            .map(|(i, pair)| (tokenized.indices[i], pair))
            .unzip();
        let noisy = ropo_data::noise::symmetric(clean, self.noise, self.seeds().noise(self.seed))?;
        if noisy.pairs.is_empty() {
            let refused = tokenized
                .report
                .dropped
                .iter()
                .find(|d| matches!(d.reason, DropReason::Template(_)));
            return Err(TrainError::Config(match refused {
                Some(first) => format!(
                    "data: {}: no pair is left; {} of {} were refused by the chat template (pair {}: {})",
                    self.data.display(),
                    tokenized
                        .report
                        .dropped
                        .iter()
                        .filter(|d| matches!(d.reason, DropReason::Template(_)))
                        .count(),
                    tokenized.report.pairs,
                    first.index + 1,
                    first.reason
                ),
                None => format!(
                    "data: {} has no pair that fits max_length {} / max_prompt_length {}",
                    self.data.display(),
                    self.max_length,
                    self.max_prompt_length
                ),
            }));
        }
        if self.batch > noisy.pairs.len() {
            return Err(TrainError::Config(format!(
                "batch ({}) must not exceed the {} training pairs of {}",
                self.batch,
                noisy.pairs.len(),
                self.data.display()
            )));
        }
        Ok(TrainerData {
            record_index,
            records,
            train: noisy.pairs,
            flipped: noisy.flipped,
            eval,
            dropped,
            unused,
            eos: encoder.tokenizer.eos_id(),
            chat_format: encoder.options.template.to_string(),
        })
    }

    /// Refuses a model whose weights and, for full fine-tuning, gradients and AdamW state (with
    /// LoRA: the adapters' weights, gradients and AdamW state) exceed the memory available, and
    /// a LoRA rank above the model's projections, from its `config.json` alone: call it before
    /// [`TrainerConfig::prepare`] and [`TrainerConfig::train`], so that nothing is read first.
    pub fn check_fits_in_memory(&self) -> Result<(), TrainError> {
        match checkpoint::config_of(&self.model)? {
            Some(model) => self.check_model_fits(&model, false),
            None => Ok(()),
        }
    }

    /// [`TrainerConfig::check_fits_in_memory`] for `model`'s configuration, whose weights are
    /// already in memory when `loaded` (a llama2.c model, whose header is its configuration).
    fn check_model_fits(&self, model: &ModelConfig, loaded: bool) -> Result<(), TrainError> {
        let fits = match self.lora() {
            Some(lora) => model.check_lora_fits(lora.rank, &lora.targets, loaded),
            None if loaded => Ok(()),
            None => model.check_training_fits_in_memory(true),
        };
        fits.map_err(|e| TrainError::Config(format!("{}: {e}", self.model.display())))
    }

    /// The type to save the trained weights in: `save_dtype`, or the input's.
    pub fn output_dtype(&self) -> Result<SaveDtype, TrainError> {
        match self.save_dtype {
            Some(dtype) => Ok(dtype),
            None => Ok(checkpoint::stored_dtype(&self.model)?),
        }
    }

    /// Every random stream, derived from `seed`.
    pub fn seeds(&self) -> Seeds {
        Seeds { base: self.seed }
    }

    /// What the run will score besides its training steps (the passes over pairs without
    /// training), said before it starts, since on a real model those passes take minutes.
    pub fn scoring_plan(&self, data: &TrainerData) -> String {
        let (train, eval) = (data.train.len(), data.eval.len());
        let mut passes = Vec::new();
        match self.pairs_used(train) {
            Some(used) => passes.push(format!(
                "reference log-probs computed batch by batch (the run trains on at most {used} of \
                 {train} pairs)"
            )),
            None => passes.push(format!("reference log-probs of {train} training pairs")),
        }
        if eval > 0 {
            // Every round evaluates at its end and every `eval_every` of its own steps.
            let rounds = self.filter_rounds + 1;
            let round_steps = self.total_steps(train) / rounds;
            let evaluations = rounds * round_steps.div_ceil(self.eval_every.max(round_steps));
            passes.push(format!(
                "reference log-probs of {eval} evaluation pairs, then {evaluations} evaluation(s) \
                 of them"
            ));
        }
        if self.filter_rounds > 0 {
            passes.push(format!(
                "{} filter round(s) scoring the {train} training pairs",
                self.filter_rounds
            ));
        }
        if data.unused > 0 {
            passes.push(format!(
                "{} pairs left out: with filter rounds, a run shorter than an epoch trains on, \
                 scores and filters a seeded subset of steps × batch pairs (give --epochs \
                 without --steps to filter every pair)",
                data.unused
            ));
        }
        format!("scoring passes: {}", passes.join("; "))
    }

    /// Trains on `data`, keeping checkpoints in `store` (resumed when they are there; `None`:
    /// no checkpoints), until the end or until `session` says to stop (then the run is
    /// checkpointed first). A node other than node 0 reads `store` and writes nothing there.
    pub fn train<B: TrainingBackend>(
        &self,
        data: &TrainerData,
        store: Option<&Path>,
        session: &Session,
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<TrainerOutcome<B::InnerBackend>, TrainError> {
        self.validate()?;
        B::seed(device, self.seeds().init());
        let lora = self.lora();
        let mut start = checkpoint::load::<B>(&self.model, device)?;
        let context = start.context_length();
        if self.max_length > context {
            return Err(TrainError::Config(format!(
                "max_length: {} is longer than the {context} positions of {}; give \
                 --max-length {context} or less",
                self.max_length,
                self.model.display()
            )));
        }
        if let Some(lora) = &lora {
            self.check_model_fits(&start.config(), true)?;
            start = start.with_lora(lora)?;
        }
        if self.sft_steps > 0 {
            let chosen: Vec<(&[u32], &[u32])> = data
                .train
                .iter()
                .map(|p| (p.prompt.as_slice(), p.chosen.as_slice()))
                .collect();
            let stage = SftStage {
                steps: self.sft_steps,
                batch: self.batch,
                lr: self.sft_lr,
                layer_checkpointing: self.gradient_checkpointing,
            };
            let order = self.seeds().sft_order();
            start = run_sft(start, &chosen, stage, 4, order, device, on_progress)?;
            if let Some(lora) = &lora {
                // The SFT model becomes the base: fresh adapters on it, the reference beneath.
                start = start.merged().with_lora(lora)?;
            }
        }
        // With LoRA the reference shares the frozen base weights with the policy: one model.
        let reference = start.valid().without_adapters();
        let schedule = self.schedule(data.train.len());
        // Evaluation reports from inside the run's loop, which holds the callback too.
        let progress = RefCell::new(on_progress);
        let report = |event: Progress| {
            let mut callback = progress.borrow_mut();
            (*callback)(event)
        };
        report(Progress::Stage(self.scoring_plan(data)));
        // The run's one group, joined before the reference pass so that the nodes share it
        // and the evaluation: each node scores its part, summed over the nodes.
        let group = RefCell::new(PeerGroup::join(self.data_parallel, device)?);
        let shared_reference = |pairs: &[TokenizedPair]| {
            group
                .borrow_mut()
                .reference_logps(&reference, pairs, device, &mut { report })
        };
        let train_refs = if self.pairs_used(data.train.len()).is_some() {
            PairReference::PerBatch
        } else {
            PairReference::Table(shared_reference(&data.train)?)
        };
        let eval_refs = shared_reference(&data.eval)?;
        let set = PreferenceSet {
            pairs: data.train.clone(),
            reference: train_refs,
            flipped: data.flipped.clone(),
        };
        let method = self.method()?;
        let run = Run {
            rounds: Rounds {
                count: self.filter_rounds + 1,
                rho: self.filter_rho,
                resampling: data.eos.map(|eos| Resampling {
                    samples: self.resample,
                    temperature: self.temperature,
                    max_new_tokens: self.max_new_tokens,
                    eos,
                    scorer: self.scorer,
                }),
                schedule: self.round_schedule,
            },
            bucket: 4,
            eval_every: self.eval_every,
            checkpoint_every: self.save_every,
            keep: self.keep_checkpoints,
            store,
            data_parallel: self.data_parallel,
            ..Run::new(
                &method,
                &set,
                schedule,
                (self.seeds(), self.seed),
                &reference,
            )
        };
        let loss = method.loss;
        let mut evaluate = |model: &CausalLm<B>, step: usize| {
            if data.eval.is_empty() {
                return Ok(None);
            }
            let (valid, pairs, mut report) = (model.valid(), &data.eval, report);
            let metrics = group
                .borrow_mut()
                .spread_over("the evaluation", device, |spread| {
                    eval_metrics(
                        &valid,
                        pairs,
                        &eval_refs,
                        &loss,
                        spread,
                        device,
                        &mut report,
                    )
                })?;
            let record = EvalRecord::of(step, &metrics);
            report(Progress::Evaluated(record));
            Ok(Some(record))
        };
        let outcome = run.train_in(&group, start, &mut evaluate, session, device, &mut {
            report
        })?;
        let model = outcome.model.valid();
        if let Some(pair) = data.train.first() {
            check_trained(&model, pair, schedule.steps, device)?;
        }
        Ok(TrainerOutcome {
            model,
            steps: schedule.steps,
            history: outcome.history,
            evals: outcome.curve,
            rounds: outcome.rounds,
            dropped: outcome.dropped,
        })
    }
}
