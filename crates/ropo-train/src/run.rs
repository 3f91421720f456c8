//! The training loop: one run, a policy trained with one [`Method`] on one [`PreferenceSet`].
//! Read top to bottom: [`Run::train`] goes round by round; each round ([`Run::train_round`])
//! goes step by step, resuming from the newest checkpoint, validating and checkpointing as it
//! goes; between rounds the method's data step ([`Run::clean`]) drops the pairs the policy
//! finds least plausible and may add resampled ones (the ROPO framework). Every experiment and
//! the trainer train through [`Run::train`].

use std::{borrow::Cow, cell::RefCell, cmp::Ordering, path::Path};

use burn::module::AutodiffModule;
use ropo_core::{LossConfig, LossSpec};
use ropo_data::{
    batches::{BatchCursor, BatchSampler},
    TokenizedPair,
};
use ropo_models::{attention::TrainingBackend, CausalLm};
use serde::{Deserialize, Serialize};

use crate::{
    data_parallel::{fingerprint, DataParallel, PeerGroup, RollCall},
    eval::pair_losses,
    framework::{keep_lowest_loss, resample_pairs, Framework, Resampling, RoundSchedule},
    loss_entry::{DataStep, LossEntry},
    optim::Trainer,
    records::{FilterQuality, LossHistogram, Progress, RoundReport, StepRecord},
    reference::{swap_flipped, PairReference, ReferenceLogps},
    schedule::{Decay, LrSchedule, StepSchedule},
    seeds::Seeds,
    session::Session,
    store::{
        checkpoint::{self, Manifest, Restored},
        round::{load_round, save_round},
        snapshot,
    },
    TrainError,
};

/// The pairs a run trains on, each with its reference log-probs and whether its label was
/// flipped by injected noise (all `false` for pairs as read).
#[derive(Debug, Clone, PartialEq)]
pub struct PreferenceSet {
    /// The pairs, as the run sees them.
    pub pairs: Vec<TokenizedPair>,
    /// `log π_ref` of each pair's chosen and rejected response, in the same orientation.
    pub reference: PairReference,
    /// Whether each pair's label was flipped.
    pub flipped: Vec<bool>,
}

impl PreferenceSet {
    /// Pairs as read (no label flipped).
    pub fn clean(pairs: Vec<TokenizedPair>, reference: Vec<ReferenceLogps>) -> Self {
        let flipped = vec![false; pairs.len()];
        Self {
            pairs,
            reference: PairReference::Table(reference),
            flipped,
        }
    }

    /// The same pairs with the labels of `flipped` exchanged, and their reference log-probs
    /// with them (a per-batch reference scores the pairs as seen).
    pub fn with_flips(&self, flipped: Vec<bool>) -> Self {
        let noisy = ropo_data::noise::apply(self.pairs.clone(), flipped);
        let reference = match &self.reference {
            PairReference::Table(table) => {
                PairReference::Table(swap_flipped(table, &noisy.flipped))
            }
            PairReference::PerBatch => PairReference::PerBatch,
        };
        Self {
            pairs: noisy.pairs,
            reference,
            flipped: noisy.flipped,
        }
    }
}

/// A training method: a loss with its parameters and a data step.
#[derive(Debug, Clone, PartialEq)]
pub struct Method {
    /// Its name in tables and file names (`sigmoid`, `ropo+filter`, …).
    pub name: String,
    /// The loss trained with (and ranking pairs for the filter).
    pub loss: LossConfig,
    /// What happens between rounds.
    pub data_step: DataStep,
}

impl Method {
    /// The method a config entry names: its loss with the stage's parameters `stage` (and its
    /// own), and the data step its name's suffix asks for (`ropo+filter`).
    pub fn of(entry: &LossEntry, stage: &LossSpec) -> Result<Self, TrainError> {
        Ok(Self {
            name: entry.name(),
            loss: entry.loss(stage)?,
            data_step: entry.data_step(),
        })
    }
}

/// How a run is split into rounds and what the data step between them uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rounds {
    /// Rounds; the stage's steps are split evenly over them.
    pub count: usize,
    /// Fraction ρ of the pairs dropped after each round but the last.
    pub rho: f64,
    /// How dropped prompts are resampled (needed by [`DataStep::FilterResample`]).
    pub resampling: Option<Resampling>,
    /// How the learning rate runs over the rounds.
    pub schedule: RoundSchedule,
}

impl Rounds {
    /// How a method with `data_step` trains: one round without one; with one, the
    /// `framework`'s rounds and ρ, and rejection sampling of at most `max_new_tokens` tokens
    /// ending at `eos` (`None`: the method cannot resample).
    pub fn of(
        framework: &Framework,
        data_step: DataStep,
        max_new_tokens: usize,
        eos: Option<u32>,
    ) -> Self {
        if data_step == DataStep::None {
            return Self::single();
        }
        Self {
            count: framework.rounds,
            rho: framework.rho,
            resampling: eos.map(|eos| Resampling {
                samples: framework.samples,
                temperature: framework.temperature,
                max_new_tokens,
                eos,
                scorer: framework.scorer,
            }),
            schedule: framework.schedule,
        }
    }

    /// One round: no data step ever runs.
    pub fn single() -> Self {
        Self {
            count: 1,
            rho: 0.0,
            resampling: None,
            schedule: RoundSchedule::default(),
        }
    }
}

/// A pair the filter dropped: the label the run believes is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DroppedPair {
    /// The round after which it was dropped (1-based).
    pub round: usize,
    /// Its index in the run's [`PreferenceSet`].
    pub index: usize,
    /// Its loss under the policy of that round.
    pub loss: f64,
    /// Its margin `h` under that policy.
    pub margin: f64,
}

/// A finished run: the policy and everything measured along the way (`P`: a validation point).
pub struct RunOutcome<B: TrainingBackend, P> {
    /// The trained policy.
    pub model: CausalLm<B>,
    /// Per-step metrics, steps numbered across rounds.
    pub history: Vec<StepRecord>,
    /// Validation points, steps numbered across rounds.
    pub curve: Vec<P>,
    /// One report per round boundary where the data step ran.
    pub rounds: Vec<RoundReport>,
    /// Every pair the filter dropped, round by round.
    pub dropped: Vec<DroppedPair>,
}

/// Orders a resampled pair as an oracle sees it (`Greater`: chosen is better), when one exists.
pub type PairJudge<'a> = &'a dyn Fn(&TokenizedPair) -> Ordering;

/// Called at each validation point with the policy and the steps done; may return a point
/// `P` of the validation curve.
pub type Validator<'a, B, P> = dyn FnMut(&CausalLm<B>, usize) -> Result<Option<P>, TrainError> + 'a;

/// The validator of runs judged only at their end: it records nothing.
pub fn no_validation<B: TrainingBackend>(
    _: &CausalLm<B>,
    _: usize,
) -> Result<Option<()>, TrainError> {
    Ok(None)
}

/// One run: what to train, on what, and where its state is kept.
pub struct Run<'a, B: TrainingBackend> {
    /// The method.
    pub method: &'a Method,
    /// The pairs (possibly noisy).
    pub set: &'a PreferenceSet,
    /// The whole run's steps, batch, learning rate and warmup.
    pub schedule: StepSchedule,
    /// Rounds and the data step's settings.
    pub rounds: Rounds,
    /// The experiment's seeds.
    pub seeds: Seeds,
    /// This run's seed index.
    pub seed: u64,
    /// The frozen reference model (scores resampled pairs).
    pub reference: &'a CausalLm<B::InnerBackend>,
    /// Orders resampled pairs for the round reports (`None`: not counted).
    pub judge: Option<PairJudge<'a>>,
    /// Batches' worth of examples sorted by length together (1: no bucketing).
    pub bucket: usize,
    /// Validate every this many steps of a round (and at its end); 0: only at the end.
    pub eval_every: usize,
    /// Checkpoint every this many steps (0: never), keeping the newest `keep`.
    pub checkpoint_every: usize,
    /// Checkpoints to keep.
    pub keep: usize,
    /// The run's state folder (step checkpoints and round snapshots); resumed when present.
    pub store: Option<&'a Path>,
    /// The ranks that share each preference step.
    pub data_parallel: DataParallel,
}

impl<'a, B: TrainingBackend> Run<'a, B> {
    /// One round of `method` on `set`: no judge, no bucketing, no validation points between
    /// the ends of rounds, no checkpoints and no store; callers set what differs with struct
    /// update syntax.
    pub fn new(
        method: &'a Method,
        set: &'a PreferenceSet,
        schedule: StepSchedule,
        (seeds, seed): (Seeds, u64),
        reference: &'a CausalLm<B::InnerBackend>,
    ) -> Self {
        Self {
            method,
            set,
            schedule,
            rounds: Rounds::single(),
            seeds,
            seed,
            reference,
            judge: None,
            bucket: 1,
            eval_every: 0,
            checkpoint_every: 0,
            keep: 1,
            store: None,
            data_parallel: DataParallel::default(),
        }
    }
}

/// Where a run stands between rounds: what the next round trains on (the set's own pairs
/// until a data step has replaced them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RoundState<P> {
    next_round: usize,
    replaced: Option<(Vec<TokenizedPair>, Vec<ReferenceLogps>)>,
    history: Vec<StepRecord>,
    curve: Vec<P>,
    rounds: Vec<RoundReport>,
    dropped: Vec<DroppedPair>,
}

/// The next round's pairs after a data step, and what the step did.
struct Cleaned {
    pairs: Vec<TokenizedPair>,
    reference: Vec<ReferenceLogps>,
    report: RoundReport,
    dropped: Vec<DroppedPair>,
}

/// One round of a run: where its steps sit and what they train on.
struct Round<'r, B: TrainingBackend> {
    /// The policy the round starts from (a checkpoint of it in the store is resumed instead).
    start: CausalLm<B>,
    /// Steps, batch size, learning rate, warmup, weight decay and accumulation of the round.
    schedule: StepSchedule,
    /// Where the round's steps sit in the learning-rate schedule: `(first, total)`, the
    /// position of its first step and the length of the schedule, which warms up over the
    /// warmup steps from position 0 and decays to zero at `total` (a round of the ROPO
    /// framework is a stretch of its whole run's one schedule under
    /// [`RoundSchedule::Continuous`]; otherwise `(0, schedule.steps)`).
    schedule_span: (usize, usize),
    /// Training pairs as the round sees them.
    pairs: &'r [TokenizedPair],
    /// Reference log-probs of `pairs`, in the same order and orientation.
    refs: &'r PairReference,
    /// Seed of the batch order.
    seed: u64,
}

/// A finished round: the policy and what was measured along the way.
struct TrainedRound<B: TrainingBackend, P> {
    model: CausalLm<B>,
    history: Vec<StepRecord>,
    curve: Vec<P>,
}

impl<B: TrainingBackend> Run<'_, B> {
    /// Trains from `start` (or from the newest round snapshot and checkpoint in the store)
    /// to the end of the last round. `validate` is called at each validation point.
    pub fn train<P: Clone + Serialize + serde::de::DeserializeOwned>(
        &self,
        start: CausalLm<B>,
        validate: &mut Validator<'_, B, P>,
        session: &Session,
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<RunOutcome<B, P>, TrainError> {
        let ranks = RefCell::new(PeerGroup::join(self.data_parallel, device)?);
        self.train_in(&ranks, start, validate, session, device, on_progress)
    }

    /// [`Self::train`] with the ranks of `ranks`, one group for every round (across nodes a
    /// process can join only one), which the caller may use before (the reference pass) and
    /// in `validate`.
    pub(crate) fn train_in<P: Clone + Serialize + serde::de::DeserializeOwned>(
        &self,
        ranks: &RefCell<PeerGroup<B>>,
        start: CausalLm<B>,
        validate: &mut Validator<'_, B, P>,
        session: &Session,
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<RunOutcome<B, P>, TrainError> {
        let rounds = self.rounds.count.max(1);
        let round_schedule = StepSchedule {
            steps: self.schedule.steps / rounds,
            ..self.schedule
        };
        let (mut policy, saved) = match self.store {
            Some(dir) => load_round(dir, start, device, &mut |w| {
                on_progress(Progress::Warning(format!(
                    "{w}; resuming from the round before it"
                )))
            })?,
            None => (start, None),
        };
        let mut state = saved.unwrap_or_else(|| RoundState {
            next_round: 0,
            replaced: None,
            history: Vec::new(),
            curve: Vec::new(),
            rounds: Vec::new(),
            dropped: Vec::new(),
        });
        for round in state.next_round..rounds {
            let offset = round * round_schedule.steps;
            let replaced_refs;
            let (pairs, refs) = match &state.replaced {
                Some((pairs, refs)) => {
                    replaced_refs = PairReference::Table(refs.clone());
                    (pairs.as_slice(), &replaced_refs)
                }
                None => (self.set.pairs.as_slice(), &self.set.reference),
            };
            let plan = Round {
                start: policy,
                schedule: round_schedule,
                schedule_span: match self.rounds.schedule {
                    RoundSchedule::Restart => (0, round_schedule.steps),
                    RoundSchedule::Continuous => (offset, rounds * round_schedule.steps),
                },
                pairs,
                refs,
                seed: self.seeds.order(self.seed, round),
            };
            let mut shifted = |model: &CausalLm<B>, step: usize| validate(model, offset + step);
            // Steps are numbered across rounds in what the caller sees, as in the history.
            let mut report = |progress: Progress| {
                on_progress(match progress {
                    Progress::Step(r) => Progress::Step(StepRecord {
                        step: r.step + offset,
                        ..r
                    }),
                    other => other,
                })
            };
            let trained =
                self.train_round(ranks, plan, &mut shifted, session, device, &mut report)?;
            policy = trained.model;
            state
                .history
                .extend(trained.history.into_iter().map(|r| StepRecord {
                    step: r.step + offset,
                    ..r
                }));
            state.curve.extend(trained.curve);
            if round + 1 == rounds {
                break;
            }
            if self.method.data_step != DataStep::None {
                let cleaned = self.clean(ranks, &policy.valid(), round, device, on_progress)?;
                state.replaced = Some((cleaned.pairs, cleaned.reference));
                state.rounds.push(cleaned.report);
                state.dropped.extend(cleaned.dropped);
            }
            state.next_round = round + 1;
            if let Some(dir) = self.store.filter(|_| self.data_parallel.writes()) {
                snapshot::clear(dir, "step-")?;
                save_round(dir, state.next_round, &policy, &state)?;
            }
        }
        Ok(RunOutcome {
            model: policy,
            history: state.history,
            curve: state.curve,
            rounds: state.rounds,
            dropped: state.dropped,
        })
    }

    /// The newest intact checkpoint in the run's store, reporting any corrupt one set aside.
    fn resumable(
        &self,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<std::path::PathBuf>, TrainError> {
        let Some(store) = self.store else {
            return Ok(None);
        };
        checkpoint::newest(store, &mut |warning| {
            on_progress(Progress::Warning(format!(
                "{warning}; resuming from the checkpoint before it"
            )))
        })
    }

    /// Trains one round from `round.start` (or from the newest checkpoint in the store) to its
    /// `schedule.steps` with the ranks of `ranks`, the run's one group (across nodes a process
    /// can join only one), which `validate` may use between steps. `validate` is called at each
    /// validation point and may add a point to the curve.
    fn train_round<P: Clone + Serialize + serde::de::DeserializeOwned>(
        &self,
        ranks: &RefCell<PeerGroup<B>>,
        round: Round<'_, B>,
        validate: &mut Validator<'_, B, P>,
        session: &Session,
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<TrainedRound<B, P>, TrainError> {
        let plan = round.schedule;
        let model = round.start;
        let base_loss = &self.method.loss;
        let (first_step, total) = round.schedule_span;
        let lr_schedule = LrSchedule {
            peak: plan.lr,
            warmup: plan.warmup,
            total,
            decay: Decay::Cosine,
        };
        let new_trainer = || {
            Trainer::new(lr_schedule, plan.weight_decay, Some(1.0))
                .starting_at(first_step)
                .with_layer_checkpointing(plan.layer_checkpointing)
        };
        // A checkpoint whose checksums hold but whose files do not load is set aside, and the
        // one before it is tried.
        let restored = loop {
            let Some(path) = self.resumable(on_progress)? else {
                break None;
            };
            match checkpoint::load(&path, model.clone(), new_trainer(), device) {
                Ok(restored) => break Some(restored),
                Err(e) => snapshot::set_aside(&path, &e.to_string(), &mut |warning| {
                    on_progress(Progress::Warning(format!(
                        "{warning}; resuming from the checkpoint before it"
                    )))
                })?,
            }
        };
        let Restored {
            mut model,
            mut trainer,
            manifest,
        } = restored.unwrap_or_else(|| Restored {
            model,
            trainer: new_trainer(),
            manifest: Manifest {
                step: 0,
                cursor: BatchCursor::default(),
                history: Vec::with_capacity(plan.steps),
                curve: Vec::new(),
            },
        });
        let lengths = round.pairs.iter().map(TokenizedPair::max_len).collect();
        let mut sampler = BatchSampler::resume(
            lengths,
            plan.batch,
            self.bucket,
            round.seed,
            manifest.cursor,
        );
        let (mut history, mut curve) = (manifest.history, manifest.curve);
        if base_loss.reliability().is_some() && self.data_parallel.ranks() > 1 {
            return Err(TrainError::Config(
                "RE-PO (--loss repo) learns its reliability on one rank; drop --data-parallel"
                    .into(),
            ));
        }
        // RE-PO's reliability as the last step left it (its start on a fresh run).
        let mut loss = history
            .last()
            .and_then(|r| r.reliability)
            .map_or(*base_loss, |eta| base_loss.with_reliability(eta));
        ranks.borrow_mut().load(
            &model,
            &trainer,
            &new_trainer,
            base_loss,
            RollCall {
                step: manifest.step,
                pairs: round.pairs.len(),
                ranks: self.data_parallel.peers,
                fingerprint: fingerprint(round.pairs),
            },
            device,
        )?;
        for step in manifest.step..plan.steps {
            // The backend's random stream (LoRA dropout) restarts at every step from the run's
            // seed and the step, so a resumed run draws the masks an uninterrupted one draws.
            B::seed(
                device,
                round.seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let indices = sampler.next_batch();
            let batch: Vec<&TokenizedPair> = indices.iter().map(|i| &round.pairs[*i]).collect();
            let batch_refs = round
                .refs
                .of_batch(self.reference, &batch, &indices, device)?;
            let started = std::time::Instant::now();
            let (next, report) = ranks.borrow_mut().step(
                model,
                &mut trainer,
                &loss,
                &batch,
                &batch_refs,
                plan.grad_accum,
                device,
            )?;
            model = next;
            let mut record = report.record(step + 1, started.elapsed().as_secs_f64());
            if let Some(posterior) = report.metrics.label_posterior {
                loss = loss.next_reliability(posterior);
                record.reliability = loss.reliability();
            }
            on_progress(Progress::Step(record));
            history.push(record);
            let done = step + 1;
            if done == plan.steps || (self.eval_every > 0 && done % self.eval_every == 0) {
                curve.extend(validate(&model, done)?);
            }
            let (session_steps, stopping) = session.count_step();
            let due = self.checkpoint_every > 0 && done % self.checkpoint_every == 0;
            if let Some(store) = self.store.filter(|_| self.data_parallel.writes()) {
                if done < plan.steps && (due || stopping) {
                    let manifest = Manifest {
                        step: done,
                        cursor: sampler.cursor(),
                        history: history.clone(),
                        curve: curve.clone(),
                    };
                    checkpoint::save(store, &model, &trainer, &manifest, self.keep)?;
                }
            }
            if stopping && done < plan.steps {
                return Err(TrainError::Stopped(session_steps));
            }
        }
        trainer.check_last_update()?;
        Ok(TrainedRound {
            model,
            history,
            curve,
        })
    }

    /// The data step after round `round` (0-based): filter the set's original pairs by the
    /// policy's loss and, for [`DataStep::FilterResample`], add resampled pairs.
    fn clean(
        &self,
        ranks: &RefCell<PeerGroup<B>>,
        policy: &CausalLm<B::InnerBackend>,
        round: usize,
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Cleaned, TrainError> {
        let (set, loss) = (self.set, &self.method.loss);
        let table: Cow<'_, [ReferenceLogps]> = match &set.reference {
            PairReference::Table(table) => Cow::Borrowed(table),
            PairReference::PerBatch => Cow::Owned(ranks.borrow_mut().reference_logps(
                self.reference,
                &set.pairs,
                device,
                on_progress,
            )?),
        };
        on_progress(Progress::Stage(format!(
            "filter after round {}: scoring {} training pairs",
            round + 1,
            set.pairs.len()
        )));
        let (margins, losses) =
            ranks
                .borrow_mut()
                .spread_over("the filter's scoring", device, |spread| {
                    pair_losses(
                        policy,
                        &set.pairs,
                        &table,
                        loss,
                        spread,
                        device,
                        on_progress,
                    )
                })?;
        let keep = keep_lowest_loss(&losses, self.rounds.rho);
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
        let kept = set.pairs.iter().zip(table.iter()).zip(&keep);
        let (mut pairs, mut reference): (Vec<_>, Vec<_>) = kept
            .filter(|(_, k)| **k)
            .map(|((p, r), _)| (p.clone(), *r))
            .unzip();
        let dropped: Vec<DroppedPair> = (0..keep.len())
            .filter(|i| !keep[*i])
            .map(|index| DroppedPair {
                round: round + 1,
                index,
                loss: losses[index],
                margin: margins[index],
            })
            .collect();
        let mut report = RoundReport {
            round: round + 1,
            filter: FilterQuality::of(&keep, &set.flipped),
            resampled: 0,
            resampled_correct: 0,
            resampled_reversed: 0,
            histogram: LossHistogram::of(&losses, &set.flipped, 30),
        };
        if self.method.data_step == DataStep::FilterResample {
            let resampling = self.rounds.resampling.as_ref().ok_or_else(|| {
                TrainError::Config(format!(
                    "method {}: rejection sampling needs its settings",
                    self.method.name
                ))
            })?;
            let prompts: Vec<&[u32]> = dropped
                .iter()
                .map(|d| set.pairs[d.index].prompt.as_slice())
                .collect();
            let new = resample_pairs(
                policy,
                self.reference,
                &prompts,
                loss,
                median,
                resampling,
                self.seeds.resampling(self.seed, round),
                device,
            )?;
            report.resampled = new.len();
            if let Some(judge) = self.judge {
                report.resampled_correct = new.iter().filter(|(p, _)| judge(p).is_gt()).count();
                report.resampled_reversed = new.iter().filter(|(p, _)| judge(p).is_lt()).count();
            }
            for (pair, logps) in new {
                pairs.push(pair);
                reference.push(logps);
            }
        }
        Ok(Cleaned {
            pairs,
            reference,
            report,
            dropped,
        })
    }
}
