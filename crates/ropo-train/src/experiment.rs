//! The built-in experiment: one SFT on the gold-reward task, then every chosen loss trained
//! from the SFT model on the same pairs under each label-noise rate, for several seeds, each
//! judged on clean held-out pairs and by the gold reward of its samples.

use std::path::Path;

use burn::module::AutodiffModule;
use ropo_models::{attention::TrainingBackend, CausalLm};

use crate::{
    config::GoldExperiment,
    eval_set::EvalSet,
    gold_start::Start,
    grid::{Grid, GridResult},
    records::{CurvePoint, ExperimentOutcome, Progress, RunResult, SftResult},
    run::{Method, Run, RunOutcome},
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
            mut session,
            set,
        } = self.start::<B>(device, folder, stop_after, on_progress)?;
        let task = &self.task;
        let beta = self.preference.beta;
        let methods = self
            .losses
            .iter()
            .map(|entry| Method::loss_only(entry, &self.preference))
            .collect::<Result<Vec<_>, _>>()?;
        let grid = Grid {
            methods: &methods,
            noise: &self.noise,
            seeds: self.seeds,
            streams: self.seeds(),
            store: store.as_deref(),
        };
        let mut sft_results = Vec::new();
        let runs = grid.run(
            &set,
            &mut |seed| {
                let test = EvalSet::held_out(self, &reference, seed, device)?;
                let validation = EvalSet::validation(self, &reference, seed, device)?;
                let (accuracy, _, own) = test.judge(&reference, task, beta, device)?;
                sft_results.push(SftResult {
                    seed,
                    gold_reward: own.mean_reward,
                    clean_accuracy: accuracy,
                });
                Ok((test, validation))
            },
            &mut |(test, validation), cell, on_progress| {
                let run = Run {
                    eval_every: self.eval_every,
                    checkpoint_every: self.checkpoint_every,
                    keep: self.keep_checkpoints,
                    store: cell.store.as_deref(),
                    ..cell.run(&self.preference, self.seeds(), &reference)
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
                let RunOutcome {
                    model: policy,
                    history,
                    curve,
                    ..
                } = run.train(
                    sft.clone(),
                    &mut validate,
                    &mut session,
                    device,
                    on_progress,
                )?;
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
                })
            },
            on_progress,
        )?;
        Ok(ExperimentOutcome {
            sft: sft_results,
            runs,
        })
    }
}
