//! The ROPO framework's ablation on the gold-reward task: the ROPO loss alone; + noise
//! filtering; + filtering + rejection sampling; and DPO with the same filtering (to show that
//! the loss is what makes the filter work). Every variant trains the same total number of
//! steps from the same SFT model on the same noisy pairs; the filter's precision and recall
//! are measured against the recorded flips, and resampled pairs against the gold reward.

use ropo_models::attention::{AttentionBackend, TrainingBackend};
use std::path::Path;

use burn::module::AutodiffModule;
use ropo_core::LossConfig;
use ropo_data::{gold::GoldTask, TokenizedPair};
use ropo_models::CausalLm;
use serde::{Deserialize, Serialize};

use crate::{
    config::{GoldExperiment, PreferenceStage},
    eval::implicit_margins,
    eval_set::EvalSet,
    framework::{
        keep_lowest_loss, resample_pairs, FilterQuality, Framework, LossHistogram, Resampling,
    },
    gold_start::Start,
    records::Progress,
    reference::{with_noise, ReferenceLogps},
    stages::PreferenceRun,
    store::{
        finished::save_finished,
        round::{load_round, save_round},
    },
    TrainError,
};

/// One variant of the ablation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Its name in tables.
    pub name: &'static str,
    /// The loss trained with (and scoring the filter).
    pub loss: &'static str,
    /// Whether pairs are filtered between rounds.
    pub filter: bool,
    /// Whether dropped prompts get resampled pairs.
    pub resample: bool,
}

/// The variants, in table order.
pub const VARIANTS: [Variant; 5] = [
    Variant {
        name: "dpo",
        loss: "sigmoid",
        filter: false,
        resample: false,
    },
    Variant {
        name: "ropo",
        loss: "ropo",
        filter: false,
        resample: false,
    },
    Variant {
        name: "ropo+filter",
        loss: "ropo",
        filter: true,
        resample: false,
    },
    Variant {
        name: "ropo+filter+rs",
        loss: "ropo",
        filter: true,
        resample: true,
    },
    Variant {
        name: "dpo+filter",
        loss: "sigmoid",
        filter: true,
        resample: false,
    },
];

/// What happened between two rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// The round after which the filter ran (1-based).
    pub round: usize,
    /// How well the dropped set matches the flips.
    pub filter: FilterQuality,
    /// New pairs from rejection sampling.
    pub resampled: usize,
    /// Of those, how many the gold reward orders the same way (chosen strictly better).
    pub resampled_correct: usize,
    /// Of those, how many the gold reward orders the other way (chosen strictly worse).
    pub resampled_reversed: usize,
    /// The losses of clean and flipped pairs the filter ranked.
    pub histogram: LossHistogram,
}

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
            mut finished,
            mut session,
            pairs: originals,
            refs: original_refs,
        } = self.start::<B, AblationRun>(device, folder, stop_after, on_progress)?;
        let task = &self.task;
        let beta = self.preference.beta;
        let resampling = Resampling {
            samples: framework.samples,
            temperature: framework.temperature,
            max_new_tokens: task.length + 1,
            eos: ropo_data::gold::EOS,
            scorer: framework.scorer,
        };
        let round_stage = PreferenceStage {
            steps: self.preference.steps / framework.rounds,
            ..self.preference
        };
        let mut runs = Vec::new();
        let seeds = self.seeds();
        let total = VARIANTS.len() * self.noise.len() * self.seeds as usize;
        for seed in 0..self.seeds {
            let test = EvalSet::held_out(self, &reference, seed, device)?;
            for &eta in &self.noise {
                let (noisy, refs) = with_noise(&originals, &original_refs, eta, seeds.noise(seed))?;
                for variant in VARIANTS {
                    let done = finished.iter().position(|r| {
                        r.variant == variant.name && r.noise == eta && r.seed == seed
                    });
                    if let Some(index) = done {
                        runs.push(finished.remove(index));
                        continue;
                    }
                    on_progress(Progress::RunStarted {
                        index: runs.len(),
                        total,
                        method: variant.name.into(),
                        noise: eta,
                        seed,
                    });
                    let loss = self.preference.loss(variant.loss)?;
                    let run_store = store
                        .as_ref()
                        .map(|s| s.join(format!("{}-eta{eta}-seed{seed}", variant.name)));
                    let saved = match &run_store {
                        Some(dir) => load_round(dir, sft.clone(), device, &mut |w| {
                            on_progress(Progress::Warning(format!(
                                "{w}; resuming from the round before it"
                            )))
                        })?,
                        None => None,
                    };
                    let (mut policy, mut state) = saved.unwrap_or_else(|| {
                        let state = RoundState {
                            next_round: 0,
                            pairs: noisy.pairs.clone(),
                            refs: refs.clone(),
                            rounds: Vec::new(),
                        };
                        (sft.clone(), state)
                    });
                    for round in state.next_round..framework.rounds {
                        let run = PreferenceRun {
                            stage: &round_stage,
                            loss: &loss,
                            pairs: &state.pairs,
                            refs: &state.refs,
                            seed: seeds.order(seed, round),
                            bucket: 1,
                            eval_every: 0,
                            checkpoint_every: 0,
                            keep: 1,
                            store: None,
                        };
                        let no_validation = &mut |_: &CausalLm<B>, _| Ok(None);
                        policy = run
                            .train(policy, no_validation, &mut session, device, on_progress)?
                            .model;
                        if round + 1 == framework.rounds {
                            break;
                        }
                        if variant.filter {
                            let cleaner = Cleaner {
                                task,
                                reference: &reference,
                                loss: &loss,
                                framework,
                                resampling: variant.resample.then_some(&resampling),
                            };
                            let (pairs, refs, report) = cleaner.clean(
                                &policy.valid(),
                                (&noisy.pairs, &refs, &noisy.flipped),
                                seeds.resampling(seed, round),
                                device,
                            )?;
                            state.pairs = pairs;
                            state.refs = refs;
                            state.rounds.push(RoundReport {
                                round: round + 1,
                                ..report
                            });
                        }
                        state.next_round = round + 1;
                        if let Some(dir) = &run_store {
                            save_round(dir, state.next_round, &policy, &state)?;
                        }
                    }
                    let (clean_accuracy, _, gold) =
                        test.judge(&policy.valid(), task, beta, device)?;
                    runs.push(AblationRun {
                        variant: variant.name.into(),
                        noise: eta,
                        seed,
                        clean_accuracy,
                        gold_win_rate: gold.win_rate,
                        gold_reward: gold.mean_reward,
                        rounds: state.rounds,
                    });
                    if let (Some(store), Some(dir)) = (&store, &run_store) {
                        save_finished(&store.join("finished.jsonl"), &runs)?;
                        if dir.exists() {
                            std::fs::remove_dir_all(dir).map_err(TrainError::io(dir))?;
                        }
                    }
                }
            }
        }
        Ok(runs)
    }
}

/// Where a run of the ablation stands between rounds: what the next round trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RoundState {
    next_round: usize,
    pairs: Vec<TokenizedPair>,
    refs: Vec<ReferenceLogps>,
    rounds: Vec<RoundReport>,
}

/// The data step between two rounds: filter the original pairs by the current policy's loss,
/// and optionally add resampled pairs for the dropped prompts.
struct Cleaner<'a, B: burn::tensor::backend::Backend> {
    task: &'a GoldTask,
    reference: &'a CausalLm<B>,
    loss: &'a LossConfig,
    framework: &'a Framework,
    resampling: Option<&'a Resampling>,
}

impl<B: AttentionBackend> Cleaner<'_, B> {
    /// The next round's pairs and reference log-probs, and what the filter did (its `round`
    /// is left 0 for the caller to set).
    fn clean(
        &self,
        policy: &CausalLm<B>,
        (pairs, refs, flipped): (&[TokenizedPair], &[ReferenceLogps], &[bool]),
        seed: u64,
        device: &B::Device,
    ) -> Result<(Vec<TokenizedPair>, Vec<ReferenceLogps>, RoundReport), TrainError> {
        let margins = implicit_margins(policy, pairs, refs, self.loss.beta(), 256, device)?;
        let losses = losses_of::<B>(self.loss, &margins, device);
        let keep = keep_lowest_loss(&losses, self.framework.rho);
        let mut kept_losses: Vec<f64> = losses
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(l, _)| *l)
            .collect();
        kept_losses.sort_by(f64::total_cmp);
        let median = kept_losses
            .get(kept_losses.len() / 2)
            .copied()
            .unwrap_or(f64::INFINITY);
        let kept = pairs.iter().zip(refs).zip(&keep).filter(|(_, k)| **k);
        let (mut next_pairs, mut next_refs): (Vec<_>, Vec<_>) =
            kept.map(|((p, r), _)| (p.clone(), *r)).unzip();
        let mut report = RoundReport {
            round: 0,
            filter: FilterQuality::of(&keep, flipped),
            resampled: 0,
            resampled_correct: 0,
            resampled_reversed: 0,
            histogram: LossHistogram::of(&losses, flipped, 30),
        };
        if let Some(resampling) = self.resampling {
            let dropped: Vec<&[u32]> = pairs
                .iter()
                .zip(&keep)
                .filter(|(_, k)| !**k)
                .map(|(p, _)| p.prompt.as_slice())
                .collect();
            let new = resample_pairs(
                policy,
                self.reference,
                &dropped,
                self.loss,
                median,
                resampling,
                seed,
                device,
            )?;
            let order = |p: &TokenizedPair| {
                self.task
                    .reward(&p.prompt, &p.chosen)
                    .total_cmp(&self.task.reward(&p.prompt, &p.rejected))
            };
            report.resampled = new.len();
            report.resampled_correct = new.iter().filter(|(p, _)| order(p).is_gt()).count();
            report.resampled_reversed = new.iter().filter(|(p, _)| order(p).is_lt()).count();
            for (pair, reference) in new {
                next_pairs.push(pair);
                next_refs.push(reference);
            }
        }
        Ok((next_pairs, next_refs, report))
    }
}

/// Per-pair losses of margins `h` (given as `β·h`, as `implicit_margins` returns them).
fn losses_of<B: burn::tensor::backend::Backend>(
    loss: &LossConfig,
    scaled_margins: &[f64],
    device: &B::Device,
) -> Vec<f64> {
    let margins: Vec<f64> = scaled_margins.iter().map(|m| m / loss.beta()).collect();
    loss.loss_of_margin(burn::tensor::Tensor::<B, 1>::from_data(
        burn::tensor::TensorData::from(margins.as_slice()),
        device,
    ))
    .into_data()
    .iter::<f64>()
    .collect()
}
