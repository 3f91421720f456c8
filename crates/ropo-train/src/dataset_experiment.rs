//! The real-data experiment: a checkpoint and a preference file from disk (e.g. stories260K and
//! HH-RLHF helpful-base), a seeded train/held-out split, SFT on the chosen responses, then each
//! loss at each label-noise rate, judged by implicit-reward accuracy on the clean held-out pairs.

use ropo_models::attention::TrainingBackend;
use std::path::PathBuf;

use burn::module::AutodiffModule;
use ropo_data::{
    encoder::PairEncoder,
    formats::{read_pairs, ReadOptions},
    split::held_out,
    template::Template,
    TokenizedPair,
};
use ropo_models::checkpoint;
use serde::{Deserialize, Serialize};

use crate::{
    config::{validate_grid, PreferenceStage},
    eval::implicit_reward_eval,
    grid::{Grid, GridResult},
    label_noise::LabelNoise,
    loss_entry::{self, DataStep, LossEntry},
    records::{Progress, StepRecord},
    reference::reference_logps,
    run::{no_validation, Method, PreferenceSet, Run},
    seeds::Seeds,
    session::Session,
    sft::run_sft,
    summary::Summary,
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
    /// The losses: names or tables with their own parameters (see [`LossEntry`]).
    pub losses: Vec<LossEntry>,
    /// Symmetric label-noise rates η applied to the training split.
    pub noise: Vec<f64>,
    /// Seeds per (loss, η).
    pub seeds: u64,
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
    /// Per-step training metrics.
    pub history: Vec<StepRecord>,
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
        if let Some(entry) = self.losses.iter().find(|e| e.data_step() != DataStep::None) {
            return fail(format!(
                "losses: {} asks for the framework's data step, which a [dataset] comparison \
                 does not run (the gold experiment does; the trainer takes --filter-rounds)",
                entry.name()
            ));
        }
        if !(self.dataset.heldout > 0.0 && self.dataset.heldout < 1.0) {
            return fail(format!(
                "dataset.heldout {} must be in (0, 1)",
                self.dataset.heldout
            ));
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

    /// Runs the experiment, reporting progress to `on_progress`.
    pub fn run<B: TrainingBackend>(
        &self,
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<(DataCounts, Vec<DatasetRun>), TrainError> {
        self.validate()?;
        let (train, heldout, counts) = self.prepare()?;
        let base = checkpoint::load::<B>(&self.dataset.model, device)?;
        let chosen: Vec<(&[u32], &[u32])> = train
            .iter()
            .map(|p| (p.prompt.as_slice(), p.chosen.as_slice()))
            .collect();
        let stage = (self.sft.steps, self.sft.batch, self.sft.lr);
        let sft = run_sft(
            base,
            &chosen,
            stage,
            4,
            self.seeds().sft_order(),
            device,
            on_progress,
        )?;
        let reference = sft.valid();
        let train_refs = reference_logps(&reference, &train, 16, 1, device, on_progress)?;
        let heldout_refs = reference_logps(&reference, &heldout, 16, 1, device, on_progress)?;
        let methods = self
            .losses
            .iter()
            .map(|entry| Method::of(entry, &self.preference.loss))
            .collect::<Result<Vec<_>, _>>()?;
        let grid = Grid {
            methods: &methods,
            noise: &self.noise,
            labels: &LabelNoise::Symmetric,
            seeds: self.seeds,
            streams: self.seeds(),
            store: None,
            jobs: 1,
        };
        let session = Session::default();
        let runs = grid.run(
            &PreferenceSet::clean(train, train_refs),
            &|_| Ok(()),
            &|_, cell, on_progress| {
                let run = Run {
                    bucket: 4,
                    ..cell.run(self.preference.schedule(), self.seeds(), &reference)
                };
                let trained = run.train(
                    sft.clone(),
                    &mut no_validation::<B>,
                    &session,
                    device,
                    on_progress,
                )?;
                let eval = implicit_reward_eval(
                    &trained.model.valid(),
                    &heldout,
                    &heldout_refs,
                    cell.method.loss.beta(),
                    16,
                    device,
                )?;
                Ok(DatasetRun {
                    loss: cell.method.name.clone(),
                    noise: cell.noise,
                    seed: cell.seed,
                    clean_accuracy: eval.accuracy,
                    clean_margin: eval.margin,
                    history: trained.history,
                })
            },
            on_progress,
        )?;
        Ok((counts, runs))
    }

    /// Mean ± std over seeds of the held-out accuracy, one entry per (loss, η).
    pub fn summarise(&self, runs: &[DatasetRun]) -> Summary {
        Summary::over_seeds(
            (&loss_entry::names(&self.losses), &self.noise),
            runs,
            &[("clean_accuracy", |r| r.clean_accuracy)],
        )
    }

    /// Reads, tokenizes and splits the pairs.
    fn prepare(&self) -> Result<(Vec<TokenizedPair>, Vec<TokenizedPair>, DataCounts), TrainError> {
        let source = &self.dataset;
        let (pairs, _) = read_pairs(&source.pairs, &ReadOptions::default())?;
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
        let (held, train) = held_out(tokenized.pairs, source.heldout, self.seeds().split());
        let unindexed = |pairs: Vec<(usize, TokenizedPair)>| pairs.into_iter().map(|(_, p)| p);
        let (held, train): (Vec<_>, Vec<_>) =
            (unindexed(held).collect(), unindexed(train).collect());
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
        Ok((train, held, counts))
    }
}
