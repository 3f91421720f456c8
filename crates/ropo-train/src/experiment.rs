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
    records::{CurvePoint, ExperimentOutcome, Progress, RunResult, SftResult},
    reference::with_noise,
    stages::{PreferenceRun, TrainedRun},
    store::finished::save_finished,
    TrainError,
};

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
        let seeds = self.seeds();
        let total = self.losses.len() * self.noise.len() * self.seeds as usize;
        for seed in 0..self.seeds {
            let test = EvalSet::held_out(self, &reference, seed, device)?;
            let validation = EvalSet::validation(self, &reference, seed, device)?;
            let (accuracy, _, own) = test.judge(&reference, task, beta, device)?;
            outcome.sft.push(SftResult {
                seed,
                gold_reward: own.mean_reward,
                clean_accuracy: accuracy,
            });
            for &eta in &self.noise {
                let (noisy, refs) = with_noise(&train_pairs, &train_refs, eta, seeds.noise(seed))?;
                for name in &self.losses {
                    if let Some(done) = take_finished(&mut finished, name, eta, seed) {
                        on_progress(Progress::RunFinished(done.clone()));
                        outcome.runs.push(done);
                        continue;
                    }
                    on_progress(Progress::RunStarted {
                        index: outcome.runs.len(),
                        total,
                        method: name.clone(),
                        noise: eta,
                        seed,
                    });
                    let loss = self.preference.loss(name)?;
                    let run_store = store
                        .as_ref()
                        .map(|s| s.join(format!("{name}-eta{eta}-seed{seed}")));
                    let run = PreferenceRun {
                        stage: &self.preference,
                        loss: &loss,
                        pairs: &noisy.pairs,
                        refs: &refs,
                        seed: seeds.order(seed, 0),
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
