//! The real-data experiment: a checkpoint and a preference file from disk (e.g. SmolLM2 and
//! HH-RLHF helpful-base), a seeded train/held-out split, SFT on the chosen responses, then each
//! method (a loss, optionally with the ROPO framework's filter between rounds) at each
//! label-noise rate, fully fine-tuned or with LoRA, judged by implicit-reward accuracy on the
//! clean held-out pairs and by how well it finds the flipped training labels.

use ropo_models::{
    attention::TrainingBackend,
    lora::{LoraConfig, LoraTarget},
    CausalLm,
};
use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use ropo_data::{
    encoder::PairEncoder,
    formats::{read_pairs, ReadOptions},
    split::held_out,
    template::Template,
    Preference, TokenizedPair,
};
use ropo_models::checkpoint;
use serde::{Deserialize, Serialize};

use crate::{
    config::{validate_grid, PreferenceStage},
    detection::flip_detection_auc,
    eval::implicit_reward_eval,
    framework::Framework,
    grid::{Grid, GridResult},
    label_noise::{LabelNoise, NoiseModel},
    loss_entry::{self, DataStep, LossEntry},
    records::{FilterQuality, Progress, StepRecord},
    reference::reference_logps,
    run::{no_validation, DroppedPair, Method, PreferenceSet, Rounds, Run, RunOutcome},
    seeds::Seeds,
    session::Session,
    sft::{run_sft, SftStage},
    summary::{MetricReader, Summary},
    TrainError,
};

/// A real-data experiment (`[dataset]` in a config file marks one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetExperiment {
    /// Where the model and data come from.
    pub dataset: DatasetSource,
    /// SFT on the chosen responses of the training split.
    pub sft: SftOnChosen,
    /// Preference training, shared by every loss.
    pub preference: PreferenceStage,
    /// The methods: loss names or tables with their own parameters (see [`LossEntry`]), a
    /// name followed by `+filter` or `+filter+rs` adding the ROPO framework's data step
    /// between rounds (`[framework]`).
    pub losses: Vec<LossEntry>,
    /// Label-noise rates η applied to the training split (the held-out pairs stay clean).
    pub noise: Vec<f64>,
    /// How labels are flipped: `symmetric` (each with probability η) or `length_judge` (a
    /// judge who prefers the longer response, wrong on a share η of the labels).
    #[serde(default)]
    pub noise_model: NoiseModel,
    /// Seeds per (method, η): each redraws the noise and the batch order.
    pub seeds: u64,
    /// LoRA adapters instead of full fine-tuning (absent: every weight trains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<DatasetLora>,
    /// The ROPO framework's settings (used by the methods with a data step).
    #[serde(default)]
    pub framework: Framework,
    /// At the end of each run also score every training pair by its loss under the policy
    /// and record how well that finds the flipped labels (`noise_auc`); one forward over the
    /// training pairs per run.
    #[serde(default)]
    pub noise_detection: bool,
}

/// LoRA on every projection of the model (`[lora]`), as the trainer's `--lora-rank`: the base
/// weights are frozen and are the reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetLora {
    /// Rank `r` (TRL: `lora_r`).
    pub rank: usize,
    /// `α` (TRL: `lora_alpha`); absent: `2r`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Dropout on the adapters' input (TRL: `lora_dropout`).
    #[serde(default)]
    pub dropout: f64,
}

/// The files and how to turn them into token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSource {
    /// Model checkpoint (folder, `.safetensors` or llama2.c `.bin`).
    pub model: PathBuf,
    /// Tokenizer file or folder.
    pub tokenizer: PathBuf,
    /// Preference file (any format `ropo-data` reads; `.gz` allowed).
    pub pairs: PathBuf,
    /// Chat template name (`auto`, `plain`, `hh`, `chatml`, `llama2`).
    pub template: String,
    /// Most tokens in prompt plus response.
    pub max_length: usize,
    /// Most prompt tokens (longer prompts keep their end).
    pub max_prompt_length: usize,
    /// Fraction of pairs held out (never noised) for evaluation.
    pub heldout: f64,
    /// Seed of the train/held-out split.
    pub split_seed: u64,
    /// Use only the file's first this many pairs (LLaMA-Factory's `max_samples`); absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples: Option<usize>,
}

/// SFT on the chosen responses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftOnChosen {
    /// Optimiser steps (0 skips SFT and uses the checkpoint as the reference).
    pub steps: usize,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
}

/// One (loss, η, seed) run of a dataset experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRun {
    /// Loss name.
    pub loss: String,
    /// Noise rate η.
    pub noise: f64,
    /// Seed index.
    pub seed: u64,
    /// Implicit-reward accuracy on the clean held-out pairs.
    pub clean_accuracy: f64,
    /// Mean implicit-reward margin on them.
    pub clean_margin: f64,
    /// ROC AUC of the final policy's per-pair loss as a detector of the flipped training
    /// labels (with `noise_detection`, when some but not all labels were flipped).
    #[serde(default)]
    pub noise_auc: Option<f64>,
    /// How well each of the filter's drops matched the flips, round by round.
    #[serde(default)]
    pub filter: Vec<FilterQuality>,
    /// The pairs the filter dropped: the labels the run believes are wrong.
    #[serde(default)]
    pub suspects: Vec<Suspect>,
    /// Per-step training metrics.
    pub history: Vec<StepRecord>,
}

/// A training pair the filter dropped, named by its place in the data file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    /// Its 0-based index among the file's pairs.
    pub index: usize,
    /// The round after which it was dropped (1-based).
    pub round: usize,
    /// Its loss under that round's policy.
    pub loss: f64,
    /// Its margin `h` under that policy.
    pub margin: f64,
    /// Whether the noise had flipped its label.
    pub injected_flip: bool,
}

/// What the data preparation kept and dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataCounts {
    /// Pairs read from the file.
    pub read: usize,
    /// Pairs dropped because the prompt alone exceeds the budget.
    pub dropped: usize,
    /// Training pairs.
    pub train: usize,
    /// Held-out pairs.
    pub heldout: usize,
}

/// The pairs of an experiment, tokenized and split.
struct Prepared {
    train: Vec<TokenizedPair>,
    heldout: Vec<TokenizedPair>,
    /// For each training pair, its index among the file's pairs.
    train_index: Vec<usize>,
    /// For each training pair, its responses' lengths as read (bytes): what a length judge
    /// sees, before any truncation.
    train_lengths: Vec<(usize, usize)>,
    counts: DataCounts,
    /// The tokenizer's end-of-sequence token (ends resampled responses).
    eos: Option<u32>,
}

impl GridResult for DatasetRun {
    fn key(&self) -> (&str, f64, u64) {
        (&self.loss, self.noise, self.seed)
    }
}

impl DatasetExperiment {
    /// Checks every value before anything runs; the message names the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let fail = |message: String| Err(TrainError::Config(message));
        validate_grid(&self.noise, &self.losses, &self.preference, self.sft.lr)?;
        if self.noise_model == NoiseModel::BradleyTerry {
            return fail(
                "noise_model: bradley_terry needs a known reward, which a [dataset] comparison \
                 has not; give symmetric or length_judge"
                    .into(),
            );
        }
        if let Some(entry) = self.losses.iter().find(|e| e.data_step() != DataStep::None) {
            self.framework.check(&entry.name(), self.preference.steps)?;
        }
        if let Some(lora) = self.lora_config() {
            lora.validate()
                .map_err(|e| TrainError::Config(format!("lora: {e}")))?;
        }
        if !(self.dataset.heldout > 0.0 && self.dataset.heldout < 1.0) {
            return fail(format!(
                "dataset.heldout {} must be in (0, 1)",
                self.dataset.heldout
            ));
        }
        if self.dataset.max_samples == Some(0) {
            return fail("dataset.max_samples must be at least 1".into());
        }
        if self.preference.batch == 0 || self.sft.batch == 0 || self.seeds == 0 {
            return fail("preference.batch, sft.batch and seeds must be at least 1".into());
        }
        self.dataset
            .template
            .parse::<Template>()
            .map_err(|e| TrainError::Config(format!("dataset.template: {e}")))?;
        for (field, path) in [
            ("dataset.model", &self.dataset.model),
            ("dataset.tokenizer", &self.dataset.tokenizer),
            ("dataset.pairs", &self.dataset.pairs),
        ] {
            if !path.exists() {
                return fail(format!("{field}: {} does not exist", path.display()));
            }
        }
        Ok(())
    }

    /// Every random stream of the experiment, derived from `dataset.split_seed`.
    pub fn seeds(&self) -> Seeds {
        Seeds {
            base: self.dataset.split_seed,
        }
    }

    /// Steps the whole comparison trains: SFT, then every run's preference steps (a method
    /// trained in rounds trains `⌊steps / rounds⌋ · rounds`).
    pub fn total_steps(&self) -> u64 {
        let runs = self.noise.len() * self.seeds as usize;
        let preference: usize = self
            .losses
            .iter()
            .map(|entry| {
                let rounds = Rounds::of(&self.framework, entry.data_step(), 0, None)
                    .count
                    .max(1);
                self.preference.steps / rounds * rounds * runs
            })
            .sum();
        (self.sft.steps + preference) as u64
    }

    /// The LoRA settings of `[lora]`, on every projection.
    fn lora_config(&self) -> Option<LoraConfig> {
        self.lora.map(|lora| LoraConfig {
            rank: lora.rank,
            alpha: lora.alpha.unwrap_or(2.0 * lora.rank as f64),
            dropout: lora.dropout,
            targets: LoraTarget::ALL.to_vec(),
            seed: self.seeds().lora(),
        })
    }

    /// Runs the experiment, reporting progress to `on_progress`. With a `store` folder every
    /// finished run is kept there (`finished.jsonl`), and running again with the same folder
    /// trains only the runs not yet finished.
    pub fn run<B: TrainingBackend>(
        &self,
        device: &B::Device,
        store: Option<&Path>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<(DataCounts, Vec<DatasetRun>), TrainError> {
        self.validate()?;
        let data = self.prepare()?;
        // What the data cannot support is refused before anything trains: a rate the noise
        // model cannot reach, resampling without an end-of-sequence token.
        let labels = match self.noise_model {
            NoiseModel::LengthJudge => LabelNoise::LengthJudge(data.train_lengths.clone()),
            // `validate` refuses bradley_terry here: there is no reward to judge by.
            _ => LabelNoise::Symmetric,
        };
        for &eta in &self.noise {
            labels.flips(data.train.len(), eta, self.seeds().noise(0))?;
        }
        let methods = self
            .losses
            .iter()
            .map(|entry| Method::of(entry, &self.preference.loss))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(method) = methods
            .iter()
            .find(|m| m.data_step == DataStep::FilterResample && data.eos.is_none())
        {
            return Err(TrainError::Config(format!(
                "losses: {} resamples responses, which needs an end-of-sequence token; {} \
                 has none",
                method.name,
                self.dataset.tokenizer.display()
            )));
        }
        if let Some(store) = store {
            std::fs::create_dir_all(store).map_err(TrainError::io(store))?;
        }
        let start = self.sft_model::<B>(&data.train, device, on_progress)?;
        // With LoRA the reference is the frozen base beneath the adapters (no copy).
        let reference = match self.lora {
            Some(_) => start.valid().without_adapters(),
            None => start.valid(),
        };
        let train_refs = reference_logps(&reference, &data.train, 16, 1, device, on_progress)?;
        let heldout_refs = reference_logps(&reference, &data.heldout, 16, 1, device, on_progress)?;
        let grid = Grid {
            methods: &methods,
            noise: &self.noise,
            labels: &labels,
            seeds: self.seeds,
            streams: self.seeds(),
            store,
            jobs: 1,
        };
        let session = Session::default();
        let max_new_tokens = self.dataset.max_length - self.dataset.max_prompt_length;
        let runs = grid.run(
            &PreferenceSet::clean(data.train.clone(), train_refs),
            &|_| Ok(()),
            &|_, cell, on_progress| {
                let run = Run {
                    rounds: Rounds::of(
                        &self.framework,
                        cell.method.data_step,
                        max_new_tokens,
                        data.eos,
                    ),
                    bucket: 4,
                    ..cell.run(self.preference.schedule(), self.seeds(), &reference)
                };
                let RunOutcome {
                    model,
                    history,
                    rounds,
                    dropped,
                    ..
                } = run.train(
                    start.clone(),
                    &mut no_validation::<B>,
                    &session,
                    device,
                    on_progress,
                )?;
                let policy = model.valid();
                let eval = implicit_reward_eval(
                    &policy,
                    &data.heldout,
                    &heldout_refs,
                    cell.method.loss.beta(),
                    16,
                    device,
                )?;
                let noise_auc = match self.noise_detection {
                    true => flip_detection_auc(&policy, cell.set, &cell.method.loss, device)?,
                    false => None,
                };
                let suspect = |d: &DroppedPair| Suspect {
                    index: data.train_index[d.index],
                    round: d.round,
                    loss: d.loss,
                    margin: d.margin,
                    injected_flip: cell.set.flipped[d.index],
                };
                Ok(DatasetRun {
                    loss: cell.method.name.clone(),
                    noise: cell.noise,
                    seed: cell.seed,
                    clean_accuracy: eval.accuracy,
                    clean_margin: eval.margin,
                    noise_auc,
                    filter: rounds.iter().map(|r| r.filter).collect(),
                    suspects: dropped.iter().map(suspect).collect(),
                    history,
                })
            },
            on_progress,
        )?;
        Ok((data.counts, runs))
    }

    /// The start of every run: the checkpoint after SFT on the chosen responses, with fresh
    /// adapters on it when `[lora]` asks (SFT then trains adapters and merges them).
    fn sft_model<B: TrainingBackend>(
        &self,
        train: &[TokenizedPair],
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<CausalLm<B>, TrainError> {
        let lora = self.lora_config();
        let mut model = checkpoint::load::<B>(&self.dataset.model, device)?;
        if let Some(lora) = &lora {
            model = model.with_lora(lora)?;
        }
        if self.sft.steps == 0 {
            return Ok(model);
        }
        let chosen: Vec<(&[u32], &[u32])> = train
            .iter()
            .map(|p| (p.prompt.as_slice(), p.chosen.as_slice()))
            .collect();
        let stage = SftStage {
            steps: self.sft.steps,
            batch: self.sft.batch,
            lr: self.sft.lr,
            layer_checkpointing: false,
        };
        let order = self.seeds().sft_order();
        let sft = run_sft(model, &chosen, stage, 4, order, device, on_progress)?;
        Ok(match &lora {
            Some(lora) => sft.merged().with_lora(lora)?,
            None => sft,
        })
    }

    /// Mean ± std over seeds of each measured metric, one entry per (method, η): held-out
    /// accuracy always, `noise_auc` with noise detection, and the first filter's
    /// `filter_precision` and `filter_recall` for methods with a data step (NaN where a run
    /// did not measure one; entries no run measured are left out).
    pub fn summarise(&self, runs: &[DatasetRun]) -> Summary {
        let mut summary = Summary::over_seeds(
            (&loss_entry::names(&self.losses), &self.noise),
            runs,
            &DATASET_METRICS,
        );
        summary
            .results
            .retain(|e| e.values.iter().any(|v| !v.is_nan()));
        summary
    }

    /// Reads, tokenizes and splits the pairs.
    fn prepare(&self) -> Result<Prepared, TrainError> {
        let source = &self.dataset;
        let (mut pairs, _) = read_pairs(&source.pairs, &ReadOptions::default())?;
        if let Some(limit) = source.max_samples {
            pairs.truncate(limit);
        }
        let template = source
            .template
            .parse::<Template>()
            .map_err(|e| TrainError::Config(format!("dataset.template: {e}")))?;
        let encoder = PairEncoder::open(
            &source.tokenizer,
            template,
            (source.max_length, source.max_prompt_length),
        )?;
        let tokenized = encoder.encode(&pairs)?;
        let dropped = tokenized.report.dropped.len();
        let file_index = tokenized.indices;
        let (held, train) = held_out(tokenized.pairs, source.heldout, self.seeds().split());
        let train_index: Vec<usize> = train.iter().map(|(i, _)| file_index[*i]).collect();
        let (held, train): (Vec<_>, Vec<_>) = (
            held.into_iter().map(|(_, p)| p).collect(),
            train.into_iter().map(|(_, p)| p).collect(),
        );
        if train.is_empty() || held.is_empty() {
            return Err(TrainError::Config(format!(
                "dataset.pairs: {} leaves {} training and {} held-out pairs that fit max_length \
                 {} and max_prompt_length {} ({dropped} of {} dropped: prompt over budget)",
                source.pairs.display(),
                train.len(),
                held.len(),
                source.max_length,
                source.max_prompt_length,
                pairs.len()
            )));
        }
        let counts = DataCounts {
            read: pairs.len(),
            dropped,
            train: train.len(),
            heldout: held.len(),
        };
        Ok(Prepared {
            train_lengths: train_index
                .iter()
                .map(|&i| pairs[i].response_lengths())
                .collect(),
            train,
            heldout: held,
            train_index,
            counts,
            eos: encoder.tokenizer.eos_id(),
        })
    }
}

/// The metrics of a dataset comparison's summary, with how to read them from a run.
pub const DATASET_METRICS: [(&str, MetricReader<DatasetRun>); 4] = [
    ("clean_accuracy", |r| r.clean_accuracy),
    ("noise_auc", |r| r.noise_auc.unwrap_or(f64::NAN)),
    ("filter_precision", |r| {
        r.filter.first().map_or(f64::NAN, |f| f.precision)
    }),
    ("filter_recall", |r| {
        r.filter.first().map_or(f64::NAN, |f| f.recall)
    }),
];
