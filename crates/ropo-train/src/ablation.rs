//! The ROPO framework's ablation on the gold-reward task: the ROPO loss alone; + noise
//! filtering; + filtering + rejection sampling; and DPO with the same filtering (to show that
//! the loss is what makes the filter work). Every variant trains the same total number of
//! steps from the same SFT model on the same noisy pairs; the filter's precision and recall
//! are measured against the recorded flips, and resampled pairs against the gold reward.

use std::path::Path;

use burn::module::AutodiffModule;
use ropo_models::attention::TrainingBackend;
use serde::{Deserialize, Serialize};

use crate::{
    config::GoldExperiment,
    eval_set::EvalSet,
    framework::Resampling,
    gold_start::Start,
    grid::{Grid, GridResult},
    records::Progress,
    run::{DataStep, Method, RoundReport, Rounds, Run},
    stages::no_validation,
    TrainError,
};

/// One variant of the ablation: a loss and a data step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variant {
    /// Its name in tables.
    pub name: &'static str,
    /// The loss trained with (and ranking pairs for the filter).
    pub loss: &'static str,
    /// What happens between rounds.
    pub data_step: DataStep,
}

/// The variants, in table order.
pub const VARIANTS: [Variant; 5] = [
    Variant {
        name: "dpo",
        loss: "sigmoid",
        data_step: DataStep::None,
    },
    Variant {
        name: "ropo",
        loss: "ropo",
        data_step: DataStep::None,
    },
    Variant {
        name: "ropo+filter",
        loss: "ropo",
        data_step: DataStep::Filter,
    },
    Variant {
        name: "ropo+filter+rs",
        loss: "ropo",
        data_step: DataStep::FilterResample,
    },
    Variant {
        name: "dpo+filter",
        loss: "sigmoid",
        data_step: DataStep::Filter,
    },
];

/// One (variant, η, seed) run of the ablation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationRun {
    /// Variant name.
    pub variant: String,
    /// Noise rate η.
    pub noise: f64,
    /// Seed index.
    pub seed: u64,
    /// Implicit-reward accuracy on clean held-out pairs.
    pub clean_accuracy: f64,
    /// Win rate of samples against the SFT model's on held-out prompts.
    pub gold_win_rate: f64,
    /// Mean gold reward of samples.
    pub gold_reward: f64,
    /// Filter and resampling reports, one per round boundary.
    pub rounds: Vec<RoundReport>,
}

impl GridResult for AblationRun {
    fn key(&self) -> (&str, f64, u64) {
        (&self.variant, self.noise, self.seed)
    }
}

impl GoldExperiment {
    /// Runs every variant at every noise rate and seed of this experiment.
    ///
    /// With a `folder`, the SFT model, finished runs and the state after each round of the run
    /// in progress are kept under `folder/checkpoints`; running again with the same folder
    /// continues from the last finished round, with identical results. `stop_after` ends the
    /// session after that many preference steps.
    pub fn run_ablation<B: TrainingBackend>(
        &self,
        device: &B::Device,
        folder: Option<&Path>,
        stop_after: Option<usize>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<AblationRun>, TrainError> {
        let framework = &self.framework;
        if framework.rounds == 0 || !(0.0..1.0).contains(&framework.rho) || framework.samples < 2 {
            return Err(TrainError::Config(
                "framework: rounds >= 1, 0 <= rho < 1 and samples >= 2 are needed".into(),
            ));
        }
        let Start {
            store,
            sft,
            reference,
            mut session,
            set,
        } = self.start::<B>(device, folder, stop_after, on_progress)?;
        let task = &self.task;
        let rounds = Rounds {
            count: framework.rounds,
            rho: framework.rho,
            resampling: Some(Resampling {
                samples: framework.samples,
                temperature: framework.temperature,
                max_new_tokens: task.length + 1,
                eos: ropo_data::gold::EOS,
                scorer: framework.scorer,
            }),
        };
        let methods = VARIANTS
            .iter()
            .map(|v| {
                Ok(Method {
                    name: v.name.into(),
                    loss: self.preference.loss(v.loss)?,
                    data_step: v.data_step,
                })
            })
            .collect::<Result<Vec<_>, TrainError>>()?;
        let grid = Grid {
            methods: &methods,
            noise: &self.noise,
            seeds: self.seeds,
            streams: self.seeds(),
            store: store.as_deref(),
        };
        let judge = |p: &ropo_data::TokenizedPair| {
            task.reward(&p.prompt, &p.chosen)
                .total_cmp(&task.reward(&p.prompt, &p.rejected))
        };
        grid.run(
            &set,
            &mut |seed| EvalSet::held_out(self, &reference, seed, device),
            &mut |test, cell, on_progress| {
                let run = Run {
                    rounds,
                    judge: Some(&judge),
                    store: cell.store.as_deref(),
                    ..cell.run(&self.preference, self.seeds(), &reference)
                };
                let outcome = run.train(
                    sft.clone(),
                    &mut no_validation::<B>,
                    &mut session,
                    device,
                    on_progress,
                )?;
                let (clean_accuracy, _, gold) =
                    test.judge(&outcome.model.valid(), task, self.preference.beta, device)?;
                Ok(AblationRun {
                    variant: cell.method.name.clone(),
                    noise: cell.noise,
                    seed: cell.seed,
                    clean_accuracy,
                    gold_win_rate: gold.win_rate,
                    gold_reward: gold.mean_reward,
                    rounds: outcome.rounds,
                })
            },
            on_progress,
        )
    }
}
