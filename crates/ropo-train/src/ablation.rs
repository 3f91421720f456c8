//! The ROPO framework's ablation on the gold-reward task: the ROPO loss alone; + noise
//! filtering; + filtering + rejection sampling; and DPO with the same filtering (to show that
//! the loss is what makes the filter work). Every variant trains the same total number of
//! steps from the same SFT model on the same noisy pairs; the filter's precision and recall
//! are measured against the recorded flips, and resampled pairs against the gold reward.

use burn::{module::AutodiffModule, tensor::backend::AutodiffBackend};
use serde::{Deserialize, Serialize};

use crate::{
    eval::implicit_margins,
    experiment::{EvalSet, GoldExperiment, PreferenceStage, Progress},
    framework::{
        keep_lowest_loss, resample_pairs, FilterQuality, LossHistogram, Resampling, Scorer,
    },
    reference::{reference_logps, with_noise},
    stages::{PreferenceRun, Session},
    TrainError,
};

/// The framework's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    /// Rounds of {train, filter, resample}; the preference steps are split evenly over them.
    pub rounds: usize,
    /// Fraction ρ of the training pairs dropped after each round but the last.
    pub rho: f64,
    /// Responses sampled per dropped prompt.
    pub samples: usize,
    /// Temperature of those samples.
    pub temperature: f64,
    /// How rejection sampling ranks candidates.
    pub scorer: Scorer,
}

impl Default for Framework {
    fn default() -> Self {
        Self {
            rounds: 3,
            rho: 0.2,
            samples: 4,
            temperature: 1.0,
            scorer: Scorer::ImplicitReward,
        }
    }
}

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
    pub fn run_ablation<B: AutodiffBackend>(
        &self,
        framework: &Framework,
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<AblationRun>, TrainError> {
        self.validate()?;
        if framework.rounds == 0 || !(0.0..1.0).contains(&framework.rho) || framework.samples < 2 {
            return Err(TrainError::Config(
                "framework: rounds >= 1, 0 <= rho < 1 and samples >= 2 are needed".into(),
            ));
        }
        B::seed(device, self.seed);
        let sft = self.sft_model::<B>(device, None, on_progress)?;
        let reference = sft.valid();
        let task = &self.task;
        let beta = self.preference.beta;
        let originals = task.pairs(self.preference.pairs, self.seed + 2);
        let original_refs = reference_logps(&reference, &originals, 256, device)?;
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
        let total = VARIANTS.len() * self.noise.len() * self.seeds as usize;
        for seed in 0..self.seeds {
            let test = EvalSet::new(
                task,
                &reference,
                (self.eval_pairs, self.eval_prompts),
                self.seed + 3,
                1000 + seed,
                device,
            )?;
            for &eta in &self.noise {
                let (noisy, refs) = with_noise(&originals, &original_refs, eta, seed)?;
                for variant in VARIANTS {
                    on_progress(Progress::RunStarted(
                        runs.len(),
                        total,
                        variant.name.into(),
                        eta,
                        seed,
                    ));
                    let loss = self.loss(variant.loss)?;
                    let mut policy = sft.clone();
                    let (mut pairs, mut pair_refs) = (noisy.pairs.clone(), refs.clone());
                    let mut rounds = Vec::new();
                    for round in 0..framework.rounds {
                        let run = PreferenceRun {
                            stage: &round_stage,
                            loss: &loss,
                            pairs: &pairs,
                            refs: &pair_refs,
                            seed: 31 * seed + 5 + round as u64,
                            bucket: 1,
                            eval_every: 0,
                            checkpoint_every: 0,
                            keep: 1,
                            store: None,
                        };
                        policy = run
                            .train(
                                policy,
                                &mut |_, _| Ok(None),
                                &mut Session::default(),
                                device,
                                on_progress,
                            )?
                            .model;
                        if !variant.filter || round + 1 == framework.rounds {
                            continue;
                        }
                        let current = policy.valid();
                        let margins =
                            implicit_margins(&current, &noisy.pairs, &refs, beta, 256, device)?;
                        let losses = losses_of::<B>(&loss, &margins, device);
                        let keep = keep_lowest_loss(&losses, framework.rho);
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
                        let kept = noisy
                            .pairs
                            .iter()
                            .zip(&refs)
                            .zip(&keep)
                            .filter(|(_, k)| **k);
                        (pairs, pair_refs) = kept.map(|((p, r), _)| (p.clone(), *r)).unzip();
                        let mut report = RoundReport {
                            round: round + 1,
                            filter: FilterQuality::of(&keep, &noisy.flipped),
                            resampled: 0,
                            resampled_correct: 0,
                            resampled_reversed: 0,
                            histogram: LossHistogram::of(&losses, &noisy.flipped, 30),
                        };
                        if variant.resample {
                            let dropped: Vec<&[u32]> = noisy
                                .pairs
                                .iter()
                                .zip(&keep)
                                .filter(|(_, k)| !**k)
                                .map(|(p, _)| p.prompt.as_slice())
                                .collect();
                            let new = resample_pairs(
                                &current,
                                &reference,
                                &dropped,
                                &loss,
                                median,
                                &resampling,
                                100 * seed + round as u64,
                                device,
                            )?;
                            report.resampled = new.len();
                            report.resampled_correct = new
                                .iter()
                                .filter(|(p, _)| {
                                    task.reward(&p.prompt, &p.chosen)
                                        > task.reward(&p.prompt, &p.rejected)
                                })
                                .count();
                            report.resampled_reversed = new
                                .iter()
                                .filter(|(p, _)| {
                                    task.reward(&p.prompt, &p.chosen)
                                        < task.reward(&p.prompt, &p.rejected)
                                })
                                .count();
                            for (pair, reference) in new {
                                pairs.push(pair);
                                pair_refs.push(reference);
                            }
                        }
                        rounds.push(report);
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
                        rounds,
                    });
                }
            }
        }
        Ok(runs)
    }
}

/// Per-pair losses of margins `h` (given as `β·h`, as `implicit_margins` returns them).
fn losses_of<B: burn::tensor::backend::Backend>(
    loss: &ropo_core::LossConfig,
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

/// Markdown tables of an ablation: final quality per variant and η, then the filter's
/// precision/recall and rejection sampling per round (means over seeds).
pub fn ablation_report(noise: &[f64], runs: &[AblationRun]) -> String {
    let mean = |values: Vec<f64>| {
        let finite: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            f64::NAN
        } else {
            finite.iter().sum::<f64>() / finite.len() as f64
        }
    };
    let mut out = String::from("| variant |");
    for eta in noise {
        out += &format!(" win rate η={eta} | accuracy η={eta} |");
    }
    out += &format!("\n|---|{}", "---|---|".repeat(noise.len()));
    for variant in VARIANTS {
        out += &format!("\n| {} |", variant.name);
        for &eta in noise {
            let cell: Vec<&AblationRun> = runs
                .iter()
                .filter(|r| r.variant == variant.name && r.noise == eta)
                .collect();
            out += &format!(
                " {:.3} | {:.3} |",
                mean(cell.iter().map(|r| r.gold_win_rate).collect()),
                mean(cell.iter().map(|r| r.clean_accuracy).collect())
            );
        }
    }
    out += "\n\n| variant | η | round | dropped | precision | recall | resampled | gold-correct | gold-reversed |\n|---|---|---|---|---|---|---|---|---|";
    for variant in VARIANTS.iter().filter(|v| v.filter) {
        for &eta in noise {
            let cell: Vec<&AblationRun> = runs
                .iter()
                .filter(|r| r.variant == variant.name && r.noise == eta)
                .collect();
            let rounds = cell.first().map_or(0, |r| r.rounds.len());
            for index in 0..rounds {
                let at = |f: &dyn Fn(&RoundReport) -> f64| {
                    mean(cell.iter().map(|r| f(&r.rounds[index])).collect())
                };
                let resampled = at(&|r| r.resampled as f64);
                let total: f64 = cell.iter().map(|r| r.rounds[index].resampled as f64).sum();
                let share = |f: &dyn Fn(&RoundReport) -> usize| {
                    let count: f64 = cell.iter().map(|r| f(&r.rounds[index]) as f64).sum();
                    if variant.resample {
                        format!("{:.3}", count / total.max(1.0))
                    } else {
                        "–".into()
                    }
                };
                out += &format!(
                    "\n| {} | {eta} | {} | {:.0} | {:.3} | {:.3} | {:.1} | {} | {} |",
                    variant.name,
                    index + 1,
                    at(&|r| r.filter.dropped as f64),
                    at(&|r| r.filter.precision),
                    at(&|r| r.filter.recall),
                    resampled,
                    share(&|r| r.resampled_correct),
                    share(&|r| r.resampled_reversed),
                );
            }
        }
    }
    out + "\n"
}
