//! The built-in experiment: one SFT on the gold-reward task, then every chosen loss trained
//! from the SFT model on the same pairs under each label-noise rate, for several seeds, each
//! judged on clean held-out pairs and by the gold reward of its samples.

use ropo_models::attention::{AttentionBackend, TrainingBackend};
use std::path::Path;

use burn::module::AutodiffModule;
use ropo_core::{Loss, LossConfig, LossParams};
use ropo_data::{gold::GoldTask, TokenizedPair};
use ropo_models::{config::ModelConfig, llama::LlamaConfig, CausalLm};
use serde::{Deserialize, Serialize};

use crate::{
    ablation::Framework,
    eval::{gold_eval, implicit_reward_eval, sample_responses, GoldEval},
    reference::{reference_logps, with_noise, ReferenceLogps},
    stages::{run_sft, PreferenceRun, Session, TrainedRun},
    step::PreferenceStep,
    store::{
        checkpoint,
        finished::{load_finished, save_finished},
        snapshot,
    },
    TrainError,
};

/// Everything the built-in experiment needs; every field has a default (the embedded run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoldExperiment {
    /// The task.
    pub task: GoldTask,
    /// The policy: a small Llama-style transformer.
    pub model: TinyModel,
    /// Supervised fine-tuning on the task's mixed-quality responses.
    pub sft: SftStage,
    /// Preference training, shared by every loss.
    pub preference: PreferenceStage,
    /// Loss names (`ropo-core`'s), each trained at every noise rate and seed.
    pub losses: Vec<String>,
    /// Symmetric label-noise rates η.
    pub noise: Vec<f64>,
    /// Seeds per (loss, η): each redraws the noise, the batch order and the evaluation samples.
    pub seeds: u64,
    /// Base seed of the whole experiment (model init, data).
    pub seed: u64,
    /// Clean held-out pairs for implicit-reward accuracy.
    pub eval_pairs: usize,
    /// Held-out prompts for the gold reward and win rate.
    pub eval_prompts: usize,
    /// Validation pairs and prompts (drawn apart from training and held-out data): the
    /// training-length curves are measured on them, so choices made from the curves never
    /// look at the held-out numbers.
    pub validation: usize,
    /// Evaluate on the validation split every this many preference steps (0: only at the end).
    pub eval_every: usize,
    /// Checkpoint a run every this many preference steps (0: never); needs a run folder.
    pub checkpoint_every: usize,
    /// How many of a run's newest checkpoints to keep.
    pub keep_checkpoints: usize,
    /// The ROPO framework's settings (used by the ablation experiment).
    pub framework: Framework,
}

/// Shape of the experiment's transformer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinyModel {
    /// `d_model`.
    pub hidden: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// SwiGLU width.
    pub intermediate: usize,
}

/// The SFT stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftStage {
    /// Training examples.
    pub examples: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate (cosine decay after 5% warmup).
    pub lr: f64,
}

/// The preference stage and the loss hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferenceStage {
    /// Training pairs (before noise).
    pub pairs: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Pairs per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warmup steps.
    pub warmup: usize,
    /// β of every loss.
    pub beta: f64,
    /// ROPO's α.
    pub alpha: f64,
    /// cDPO's and rDPO's ε.
    pub epsilon: f64,
}

impl GoldExperiment {
    /// The clean held-out pairs and prompts (the same for every seed), with the reference's
    /// baseline samples drawn for seed index `seed`.
    pub(crate) fn test_set<B: AttentionBackend>(
        &self,
        reference: &CausalLm<B>,
        seed: u64,
        device: &B::Device,
    ) -> Result<EvalSet, TrainError> {
        EvalSet::new(
            &self.task,
            reference,
            (self.eval_pairs, self.eval_prompts),
            self.seed + 3,
            1000 + seed,
            device,
        )
    }
}

impl PreferenceStage {
    /// The loss called `name` with this stage's β, α and ε.
    pub fn loss(&self, name: &str) -> Result<LossConfig, TrainError> {
        let params = LossParams {
            alpha: self.alpha,
            epsilon: self.epsilon,
            ..LossParams::default()
        };
        Ok(LossConfig::new(Loss::from_name(name, &params)?, self.beta)?)
    }
}

impl Default for GoldExperiment {
    fn default() -> Self {
        Self {
            task: GoldTask::default(),
            model: TinyModel {
                hidden: 32,
                layers: 2,
                heads: 4,
                intermediate: 64,
            },
            sft: SftStage {
                examples: 4000,
                steps: 150,
                batch: 64,
                lr: 1e-2,
            },
            preference: PreferenceStage {
                pairs: 1500,
                steps: 200,
                batch: 32,
                lr: 1e-3,
                warmup: 10,
                beta: 0.1,
                alpha: 14.0,
                epsilon: 0.2,
            },
            losses: ["sigmoid", "cdpo", "rdpo", "ipo", "ropo"]
                .map(String::from)
                .to_vec(),
            noise: vec![0.0, 0.2, 0.4],
            seeds: 3,
            seed: 0,
            eval_pairs: 500,
            eval_prompts: 500,
            validation: 300,
            eval_every: 50,
            checkpoint_every: 100,
            keep_checkpoints: 2,
            framework: Framework::default(),
        }
    }
}

/// The outcome of one (loss, η, seed) run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Loss name.
    pub loss: String,
    /// Noise rate η.
    pub noise: f64,
    /// Seed index.
    pub seed: u64,
    /// Implicit-reward accuracy on clean held-out pairs.
    pub clean_accuracy: f64,
    /// Mean implicit-reward margin on clean held-out pairs.
    pub clean_margin: f64,
    /// Mean gold reward of samples.
    pub gold_reward: f64,
    /// Win rate of samples against the SFT model's.
    pub gold_win_rate: f64,
    /// Validation metrics against training length.
    pub curve: Vec<CurvePoint>,
    /// Per-step training metrics.
    pub history: Vec<StepRecord>,
}

/// Validation metrics after some number of preference steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Preference steps taken.
    pub step: usize,
    /// Implicit-reward accuracy on the clean validation pairs.
    pub clean_accuracy: f64,
    /// Mean gold reward of samples on the validation prompts.
    pub gold_reward: f64,
    /// Win rate against the SFT model's samples on the validation prompts.
    pub gold_win_rate: f64,
}

/// One logged training step (TRL's names in `metrics.jsonl`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimiser step (1-based).
    pub step: usize,
    /// Mean loss.
    pub loss: f64,
    /// `rewards/accuracies` on the (noisy) training batch.
    pub accuracy: f64,
    /// `rewards/margins`.
    pub margin: f64,
    /// `rewards/chosen`.
    pub rewards_chosen: f64,
    /// `rewards/rejected`.
    pub rewards_rejected: f64,
    /// Learning rate.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Training tokens processed per second in this step.
    pub tokens_per_s: f64,
}

impl StepRecord {
    /// The record of optimiser step `step` (1-based) that took `seconds`.
    pub fn of(step: usize, report: &PreferenceStep, seconds: f64) -> Self {
        Self {
            step,
            loss: report.metrics.loss,
            accuracy: report.metrics.rewards_accuracies,
            margin: report.metrics.rewards_margins,
            rewards_chosen: report.metrics.rewards_chosen,
            rewards_rejected: report.metrics.rewards_rejected,
            lr: report.optim.lr,
            grad_norm: report.optim.grad_norm,
            tokens_per_s: report.tokens as f64 / seconds.max(1e-9),
        }
    }
}

/// What the experiment reports as it goes, for progress bars and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// An SFT step finished: `(step, total, loss)`.
    Sft(usize, usize, f64),
    /// A preference run started: `(index, total runs, loss, η, seed)`.
    RunStarted(usize, usize, String, f64, u64),
    /// A preference step finished.
    Step(StepRecord),
    /// A preference run finished.
    RunFinished(RunResult),
    /// Something was recovered from and the run goes on (e.g. a corrupt checkpoint set aside).
    Warning(String),
}

fn take_finished(
    finished: &mut Vec<RunResult>,
    loss: &str,
    noise: f64,
    seed: u64,
) -> Option<RunResult> {
    let index = finished
        .iter()
        .position(|r| r.loss == loss && r.noise == noise && r.seed == seed)?;
    Some(finished.remove(index))
}

/// See [`GoldExperiment::start`].
pub(crate) struct Start<B: TrainingBackend, T> {
    pub(crate) store: Option<std::path::PathBuf>,
    pub(crate) sft: CausalLm<B>,
    pub(crate) reference: CausalLm<B::InnerBackend>,
    pub(crate) finished: Vec<T>,
    pub(crate) session: Session,
    pub(crate) pairs: Vec<TokenizedPair>,
    pub(crate) refs: Vec<ReferenceLogps>,
}

/// Everything the experiment measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentOutcome {
    /// SFT model quality per seed (its samples against another draw of its own).
    pub sft: Vec<SftResult>,
    /// One entry per (loss, η, seed).
    pub runs: Vec<RunResult>,
}

/// The SFT model's own numbers, the baseline every run starts from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SftResult {
    /// Seed index.
    pub seed: u64,
    /// Mean gold reward of the SFT model's samples.
    pub gold_reward: f64,
    /// Implicit-reward accuracy of the SFT model itself (0: every margin is 0).
    pub clean_accuracy: f64,
}

/// Clean pairs and prompts to judge a policy on, with what the SFT reference gives them.
pub(crate) struct EvalSet {
    pairs: Vec<TokenizedPair>,
    refs: Vec<ReferenceLogps>,
    prompts: Vec<Vec<u32>>,
    baseline: Vec<Vec<u32>>,
    seed: u64,
}

impl EvalSet {
    /// Draws `size` pairs and prompts from `data_seed`, scores the pairs under the reference
    /// and samples the reference's baseline responses with `seed`.
    pub(crate) fn new<B: AttentionBackend>(
        task: &GoldTask,
        reference: &CausalLm<B>,
        size: (usize, usize),
        data_seed: u64,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let pairs = task.pairs(size.0, data_seed);
        let refs = reference_logps(reference, &pairs, 256, device)?;
        let prompts = task.prompts(size.1, data_seed + 1);
        let baseline = sample_responses(reference, task, &prompts, seed + 500, device)?;
        Ok(Self {
            pairs,
            refs,
            prompts,
            baseline,
            seed,
        })
    }

    pub(crate) fn judge<B: AttentionBackend>(
        &self,
        model: &CausalLm<B>,
        task: &GoldTask,
        beta: f64,
        device: &B::Device,
    ) -> Result<(f64, f64, GoldEval), TrainError> {
        let pairs = implicit_reward_eval(model, &self.pairs, &self.refs, beta, 256, device)?;
        let gold = gold_eval(
            model,
            task,
            &self.prompts,
            &self.baseline,
            self.seed,
            device,
        )?;
        Ok((pairs.accuracy, pairs.margin, gold))
    }
}

impl GoldExperiment {
    /// Checks every value before anything runs; the message names the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let fail = |message: String| Err(TrainError::Config(message));
        if let Some(eta) = self.noise.iter().find(|eta| !(0.0..0.5).contains(*eta)) {
            return fail(format!("noise: rate {eta} must be in [0, 0.5)"));
        }
        for name in &self.losses {
            self.preference.loss(name)?;
        }
        for (field, value) in [
            ("sft.lr", self.sft.lr),
            ("preference.lr", self.preference.lr),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                return fail(format!("{field}: learning rate {value} must be > 0"));
            }
        }
        for (field, value) in [
            ("sft.batch", self.sft.batch),
            ("preference.batch", self.preference.batch),
            ("preference.pairs", self.preference.pairs),
            ("sft.examples", self.sft.examples),
            ("seeds", self.seeds as usize),
            ("eval_pairs", self.eval_pairs),
            ("eval_prompts", self.eval_prompts),
        ] {
            if value == 0 {
                return fail(format!("{field} must be at least 1"));
            }
        }
        if self.losses.is_empty() || self.noise.is_empty() {
            return fail("losses and noise must each name at least one value".into());
        }
        self.task
            .validate()
            .map_err(|e| TrainError::Config(format!("task.{e}")))?;
        self.model_config()
            .validate()
            .map_err(|e| TrainError::Config(format!("model: {e}")))
    }

    pub(crate) fn model_config(&self) -> ModelConfig {
        ModelConfig::Llama(LlamaConfig::new(
            self.task.vocab_size(),
            self.model.hidden,
            self.model.intermediate,
            self.model.layers,
            self.model.heads,
            self.task.sequence_length(),
        ))
    }

    /// Runs the whole experiment, reporting progress to `on_progress`.
    ///
    /// With a `folder`, the SFT model, every finished run and a checkpoint of the run in progress
    /// are kept under `folder/checkpoints`, and running again with the same folder continues
    /// where the last session stopped, with bit-identical results on CPU. `stop_after` ends the
    /// session (with [`TrainError::Stopped`]) after that many preference steps.
    pub fn run<B: TrainingBackend>(
        &self,
        device: &B::Device,
        folder: Option<&Path>,
        stop_after: Option<usize>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<ExperimentOutcome, TrainError> {
        let Start {
            store,
            sft,
            reference,
            mut finished,
            mut session,
            pairs: train_pairs,
            refs: train_refs,
        } = self.start::<B, RunResult>(device, folder, stop_after, on_progress)?;
        let task = &self.task;
        let beta = self.preference.beta;
        let mut outcome = ExperimentOutcome {
            sft: Vec::new(),
            runs: Vec::new(),
        };
        let total = self.losses.len() * self.noise.len() * self.seeds as usize;
        for seed in 0..self.seeds {
            let test = self.test_set(&reference, seed, device)?;
            let validation = EvalSet::new(
                task,
                &reference,
                (self.validation, self.validation),
                self.seed + 5,
                2000 + seed,
                device,
            )?;
            let (accuracy, _, own) = test.judge(&reference, task, beta, device)?;
            outcome.sft.push(SftResult {
                seed,
                gold_reward: own.mean_reward,
                clean_accuracy: accuracy,
            });
            for &eta in &self.noise {
                let (noisy, refs) = with_noise(&train_pairs, &train_refs, eta, seed)?;
                for name in &self.losses {
                    if let Some(done) = take_finished(&mut finished, name, eta, seed) {
                        on_progress(Progress::RunFinished(done.clone()));
                        outcome.runs.push(done);
                        continue;
                    }
                    on_progress(Progress::RunStarted(
                        outcome.runs.len(),
                        total,
                        name.clone(),
                        eta,
                        seed,
                    ));
                    let loss = self.preference.loss(name)?;
                    let run_store = store
                        .as_ref()
                        .map(|s| s.join(format!("{name}-eta{eta}-seed{seed}")));
                    let run = PreferenceRun {
                        stage: &self.preference,
                        loss: &loss,
                        pairs: &noisy.pairs,
                        refs: &refs,
                        seed: 31 * seed + 5,
                        bucket: 1,
                        eval_every: self.eval_every,
                        checkpoint_every: self.checkpoint_every,
                        keep: self.keep_checkpoints,
                        store: run_store.as_deref(),
                    };
                    let mut validate = |model: &CausalLm<B>, step: usize| {
                        let (clean_accuracy, _, gold) =
                            validation.judge(&model.valid(), task, beta, device)?;
                        Ok(Some(CurvePoint {
                            step,
                            clean_accuracy,
                            gold_reward: gold.mean_reward,
                            gold_win_rate: gold.win_rate,
                        }))
                    };
                    let TrainedRun {
                        model: policy,
                        history,
                        curve,
                    } = run.train(
                        sft.clone(),
                        &mut validate,
                        &mut session,
                        device,
                        on_progress,
                    )?;
                    let (clean_accuracy, clean_margin, gold) =
                        test.judge(&policy.valid(), task, beta, device)?;
                    let result = RunResult {
                        loss: name.clone(),
                        noise: eta,
                        seed,
                        clean_accuracy,
                        clean_margin,
                        gold_reward: gold.mean_reward,
                        gold_win_rate: gold.win_rate,
                        curve,
                        history,
                    };
                    on_progress(Progress::RunFinished(result.clone()));
                    outcome.runs.push(result);
                    if let (Some(store), Some(run_store)) = (&store, &run_store) {
                        save_finished(&store.join("finished.jsonl"), &outcome.runs)?;
                        if run_store.exists() {
                            std::fs::remove_dir_all(run_store)
                                .map_err(TrainError::io(run_store))?;
                        }
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// What both gold experiments start from: the config validated, the backend seeded, the
    /// run folder's checkpoint store opened, the SFT model (trained or reloaded), the runs
    /// earlier sessions finished, and the training pairs with their reference log-probs.
    pub(crate) fn start<B: TrainingBackend, T: serde::de::DeserializeOwned>(
        &self,
        device: &B::Device,
        folder: Option<&Path>,
        stop_after: Option<usize>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Start<B, T>, TrainError> {
        self.validate()?;
        B::seed(device, self.seed);
        let store = folder.map(|f| f.join("checkpoints"));
        if let Some(store) = &store {
            std::fs::create_dir_all(store).map_err(TrainError::io(store))?;
        }
        let sft = self.sft_model::<B>(device, store.as_deref(), on_progress)?;
        let finished = match &store {
            Some(store) => load_finished(&store.join("finished.jsonl"))?,
            None => Vec::new(),
        };
        let reference = sft.valid();
        let pairs = self.task.pairs(self.preference.pairs, self.seed + 2);
        let refs = reference_logps(&reference, &pairs, 256, device)?;
        Ok(Start {
            store,
            sft,
            reference,
            finished,
            session: Session {
                steps: 0,
                stop_after,
            },
            pairs,
            refs,
        })
    }

    /// The SFT model: loaded from the run folder when an earlier session trained it.
    pub(crate) fn sft_model<B: TrainingBackend>(
        &self,
        device: &B::Device,
        store: Option<&Path>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<CausalLm<B>, TrainError> {
        let fresh = self.model_config().init::<B>(device);
        let Some(store) = store else {
            return self.train_sft(fresh, device, on_progress);
        };
        let saved = snapshot::open(store, "sft", &mut |warning| {
            on_progress(Progress::Warning(format!("{warning}; training SFT again")))
        })?;
        if let Some(saved) = saved {
            return checkpoint::load_model(&saved, fresh, device);
        }
        let model = self.train_sft(fresh, device, on_progress)?;
        checkpoint::save_model(&model, store, "sft", &[])?;
        Ok(model)
    }

    fn train_sft<B: TrainingBackend>(
        &self,
        model: CausalLm<B>,
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<CausalLm<B>, TrainError> {
        let examples = self.task.sft_examples(self.sft.examples, self.seed + 1);
        let rows: Vec<(&[u32], &[u32])> = examples
            .iter()
            .map(|(p, r)| (p.as_slice(), r.as_slice()))
            .collect();
        let stage = (self.sft.steps, self.sft.batch, self.sft.lr);
        run_sft(model, &rows, stage, 1, self.seed, device, on_progress)
    }
}
