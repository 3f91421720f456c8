//! The built-in experiment: one SFT on the gold-reward task, then every chosen method (a loss,
//! or a loss with the ROPO framework's filter and rejection sampling between rounds) trained
//! from the SFT model on the same pairs under each label-noise rate, for several seeds, each
//! judged on clean held-out pairs and by the gold reward of its samples.

use std::{path::Path, sync::Mutex};

use burn::module::AutodiffModule;
use ropo_core::DEFAULT_BETA;
use ropo_data::TokenizedPair;
use ropo_models::{attention::TrainingBackend, CausalLm};

use crate::{
    config::GoldExperiment,
    detection::flip_detection_auc,
    eval_set::EvalSet,
    gold_start::Start,
    grid::{Grid, GridResult},
    label_noise::{LabelNoise, NoiseModel},
    loss_entry::{DataStep, LossEntry},
    records::{CurvePoint, ExperimentOutcome, FlipShare, Progress, RunResult, SftResult},
    run::{Method, Rounds, Run, RunOutcome},
    TrainError,
};

impl GridResult for RunResult {
    fn key(&self) -> (&str, f64, u64) {
        (&self.loss, self.noise, self.seed)
    }

    fn finished_event(&self) -> Option<Progress> {
        Some(Progress::RunFinished(self.clone()))
    }
}

impl GoldExperiment {
    /// Runs the whole experiment on `jobs` worker threads, reporting progress to
    /// `on_progress`; the results do not depend on `jobs`.
    ///
    /// With a `folder`, the SFT model, every finished run and a checkpoint of each run in
    /// progress are kept under `folder/checkpoints`, and running again with the same folder
    /// continues where the last session stopped, with bit-identical results on CPU.
    /// `stop_after` ends the session (with [`TrainError::Stopped`]) after that many preference
    /// steps in all.
    pub fn run<B: TrainingBackend>(
        &self,
        device: &B::Device,
        folder: Option<&Path>,
        (stop_after, jobs): (Option<usize>, usize),
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<ExperimentOutcome, TrainError> {
        let Start {
            store,
            sft,
            reference,
            session,
            set,
        } = self.start::<B>(device, folder, stop_after, on_progress)?;
        let task = &self.task;
        let beta = self.preference.loss.beta.unwrap_or(DEFAULT_BETA);
        let methods = self
            .losses
            .iter()
            .map(|entry| Method::of(entry, &self.preference.loss))
            .collect::<Result<Vec<_>, _>>()?;
        let labels = match self.noise_model {
            NoiseModel::Symmetric => LabelNoise::Symmetric,
            NoiseModel::BradleyTerry => LabelNoise::BradleyTerry(
                set.pairs
                    .iter()
                    .map(|p| {
                        task.reward(&p.prompt, &p.chosen) - task.reward(&p.prompt, &p.rejected)
                    })
                    .collect(),
            ),
            NoiseModel::LengthJudge => LabelNoise::LengthJudge(
                set.pairs
                    .iter()
                    .map(|p| (p.chosen.len(), p.rejected.len()))
                    .collect(),
            ),
        };
        let flipped = self.flip_shares(&labels, set.pairs.len())?;
        let grid = Grid {
            methods: &methods,
            noise: &self.noise,
            labels: &labels,
            seeds: self.seeds,
            streams: self.seeds(),
            store: store.as_deref(),
            jobs,
        };
        let judge = |p: &TokenizedPair| {
            task.reward(&p.prompt, &p.chosen)
                .total_cmp(&task.reward(&p.prompt, &p.rejected))
        };
        let sft_results = Mutex::new(Vec::new());
        let runs = grid.run(
            &set,
            &|seed| {
                let test = EvalSet::held_out(self, &reference, seed, device)?;
                let validation = EvalSet::validation(self, &reference, seed, device)?;
                let (accuracy, _, own) = test.judge(&reference, task, beta, device)?;
                let result = SftResult {
                    seed,
                    gold_reward: own.mean_reward,
                    clean_accuracy: accuracy,
                };
                sft_results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(result);
                Ok((test, validation))
            },
            &|(test, validation), cell, on_progress| {
                let run = Run {
                    rounds: self.rounds(cell.method.data_step),
                    judge: Some(&judge),
                    eval_every: self.eval_every,
                    checkpoint_every: self.checkpoint_every,
                    keep: self.keep_checkpoints,
                    store: cell.store.as_deref(),
                    ..cell.run(self.preference.schedule(), self.seeds(), &reference)
                };
                let mut validate = |model: &CausalLm<B>, step: usize| {
                    let policy = model.valid();
                    let (clean_accuracy, _, gold) =
                        validation.judge(&policy, task, beta, device)?;
                    let noise_auc = if self.noise_detection {
                        flip_detection_auc(&policy, cell.set, &cell.method.loss, device)?
                    } else {
                        None
                    };
                    Ok(Some(CurvePoint {
                        step,
                        clean_accuracy,
                        gold_reward: gold.mean_reward,
                        gold_win_rate: gold.win_rate,
                        noise_auc,
                    }))
                };
                let RunOutcome {
                    model: policy,
                    history,
                    curve,
                    rounds,
                    ..
                } = run.train(own_copy(&sft), &mut validate, &session, device, on_progress)?;
                let (clean_accuracy, clean_margin, gold) =
                    test.judge(&policy.valid(), task, beta, device)?;
                Ok(RunResult {
                    loss: cell.method.name.clone(),
                    noise: cell.noise,
                    seed: cell.seed,
                    clean_accuracy,
                    clean_margin,
                    gold_reward: gold.mean_reward,
                    gold_win_rate: gold.win_rate,
                    curve,
                    history,
                    rounds,
                })
            },
            on_progress,
        )?;
        let mut sft = sft_results.into_inner().unwrap_or_else(|e| e.into_inner());
        sft.sort_by_key(|r| r.seed);
        Ok(ExperimentOutcome { sft, runs, flipped })
    }

    /// The share of `n` labels `labels` flips at each η, mean over the seeds.
    fn flip_shares(&self, labels: &LabelNoise, n: usize) -> Result<Vec<FlipShare>, TrainError> {
        self.noise
            .iter()
            .map(|&noise| {
                let mut flipped = 0;
                for seed in 0..self.seeds {
                    let flips = labels.flips(n, noise, self.seeds().noise(seed))?;
                    flipped += flips.iter().filter(|f| **f).count();
                }
                Ok(FlipShare {
                    noise,
                    share: flipped as f64 / (n as f64 * self.seeds as f64),
                })
            })
            .collect()
    }

    /// The preference steps a method trains in all: the stage's steps, or for a method
    /// trained in rounds as many as split evenly over them (`⌊steps / rounds⌋ · rounds`).
    pub fn preference_steps(&self, entry: &LossEntry) -> usize {
        let rounds = self.rounds(entry.data_step()).count.max(1);
        self.preference.steps / rounds * rounds
    }

    /// How a method with `data_step` trains: one round without one; with one (`ropo+filter`),
    /// the framework's rounds, ρ and rejection sampling of the task's responses.
    fn rounds(&self, data_step: DataStep) -> Rounds {
        let eos = Some(ropo_data::gold::EOS);
        Rounds::of(&self.framework, data_step, self.task.length + 1, eos)
    }
}

/// A copy of `model` whose parameters are new autodiff leaves. A plain clone shares its
/// parameters' graph nodes with `model`, and burn's autodiff joins every graph that touches
/// the same node: runs training from clones on other threads at once would merge their first
/// step's graphs and mix their gradients.
fn own_copy<B: TrainingBackend>(model: &CausalLm<B>) -> CausalLm<B> {
    CausalLm::from_inner(model.valid())
}
