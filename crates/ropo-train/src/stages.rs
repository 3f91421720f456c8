//! The training loops of the two stages, shared by every experiment: SFT over examples, and
//! preference training with validation points, checkpoints and resumption.

use ropo_models::attention::TrainingBackend;
use std::{
    cell::RefCell,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
};

use ropo_core::LossConfig;
use ropo_data::{
    batches::{BatchCursor, BatchSampler},
    TokenizedPair,
};
use ropo_models::CausalLm;

use crate::{
    data_parallel::{fingerprint, DataParallel, PeerGroup, RollCall},
    optim::Trainer,
    records::{Progress, StepRecord},
    reference::PairReference,
    schedule::{Decay, LrSchedule, StepSchedule},
    step::sft_step,
    store::{
        checkpoint::{self, Manifest, Restored},
        snapshot,
    },
    TrainError,
};

/// Runs `steps` SFT steps of `batch` examples (peak `lr`, cosine after 5% warmup, clipping at
/// 1), visiting `examples` in the order of a sampler seeded with `seed`.
#[allow(clippy::too_many_arguments)]
pub fn run_sft<B: TrainingBackend>(
    mut model: CausalLm<B>,
    examples: &[(&[u32], &[u32])],
    (steps, batch, lr): (usize, usize, f64),
    bucket: usize,
    seed: u64,
    device: &B::Device,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<CausalLm<B>, TrainError> {
    let lengths = examples.iter().map(|(p, r)| p.len() + r.len()).collect();
    let mut sampler = BatchSampler::new(lengths, batch, bucket, seed);
    let schedule = LrSchedule {
        peak: lr,
        warmup: steps / 20,
        total: steps,
        decay: Decay::Cosine,
    };
    let mut trainer = Trainer::new(schedule, 0.0, Some(1.0));
    for step in 0..steps {
        let batch: Vec<(&[u32], &[u32])> = sampler
            .next_batch()
            .into_iter()
            .map(|i| examples[i])
            .collect();
        let (next, loss, _) = sft_step(model, &mut trainer, &batch, device)?;
        model = next;
        on_progress(Progress::Sft {
            step: step + 1,
            total: steps,
            loss,
        });
    }
    trainer.check_last_update()?;
    Ok(model)
}

/// Preference steps taken in this session, by every run training in it (runs of a grid train
/// on several threads), and when to stop it.
#[derive(Debug, Default)]
pub struct Session {
    steps: AtomicUsize,
    stop_after: Option<usize>,
    interrupt: Option<Arc<AtomicBool>>,
}

impl Session {
    /// A session that ends (with [`TrainError::Stopped`]) after `stop_after` preference steps
    /// in all (`None`: runs to the end).
    pub fn new(stop_after: Option<usize>) -> Self {
        Self {
            steps: AtomicUsize::new(0),
            stop_after,
            interrupt: None,
        }
    }

    /// This session, also ended after the step during which `interrupt` becomes true (set by a
    /// signal handler: Ctrl-C checkpoints the run instead of losing it).
    pub fn with_interrupt(self, interrupt: Arc<AtomicBool>) -> Self {
        Self {
            interrupt: Some(interrupt),
            ..self
        }
    }

    /// Counts one finished step; returns the steps so far, and whether the session ends now.
    fn count_step(&self) -> (usize, bool) {
        let steps = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        let interrupted = self
            .interrupt
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst));
        let limit = self.stop_after.is_some_and(|limit| steps >= limit);
        (steps, limit || interrupted)
    }
}

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

/// A finished preference run: the policy and what was measured along the way.
pub struct TrainedRun<B: TrainingBackend, P> {
    /// The trained policy.
    pub model: CausalLm<B>,
    /// Per-step training metrics.
    pub history: Vec<StepRecord>,
    /// Validation points.
    pub curve: Vec<P>,
}

/// One preference run: its step schedule, the loss, the (possibly noisy) pairs with their
/// cached reference log-probs, and where checkpoints go.
pub struct PreferenceRun<'a, B: TrainingBackend> {
    /// Steps, batch size, learning rate, warmup, weight decay and accumulation.
    pub schedule: StepSchedule,
    /// Where this run's steps sit in the learning-rate schedule: `(first, total)`, the position
    /// of its first step and the length of the schedule, which warms up over the stage's warmup
    /// steps from position 0 and decays to zero at `total` (a round of the ROPO framework is a
    /// stretch of its whole run's one schedule; a run of its own is `(0, schedule.steps)`).
    pub schedule_span: (usize, usize),
    /// The loss.
    pub loss: &'a LossConfig,
    /// Training pairs as the run sees them.
    pub pairs: &'a [TokenizedPair],
    /// Reference log-probs of `pairs`, in the same order and orientation.
    pub refs: &'a PairReference,
    /// The frozen reference model (scores each batch for [`PairReference::PerBatch`]).
    pub reference: &'a CausalLm<B::InnerBackend>,
    /// Seed of the batch order.
    pub seed: u64,
    /// Batches' worth of examples sorted by length together (1: no bucketing).
    pub bucket: usize,
    /// Validate every this many steps (and at the end); 0: only at the end.
    pub eval_every: usize,
    /// Checkpoint every this many steps (0: never), keeping the newest `keep`.
    pub checkpoint_every: usize,
    /// Checkpoints to keep.
    pub keep: usize,
    /// The run's checkpoint folder; an existing checkpoint there is resumed.
    pub store: Option<&'a Path>,
    /// The ranks that share each step (see [`crate::data_parallel`]).
    pub data_parallel: DataParallel,
}

impl<B: TrainingBackend> PreferenceRun<'_, B> {
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

    /// Trains from `model` (or from the newest checkpoint in `store`) to `schedule.steps` with
    /// the ranks of `ranks`, the run's one group (across nodes a process can join only one),
    /// which `validate` may use between steps. `validate` is called at each validation point
    /// and may add a point to the curve.
    pub(crate) fn train<P: Clone + serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        ranks: &RefCell<PeerGroup<B>>,
        model: CausalLm<B>,
        validate: &mut Validator<'_, B, P>,
        session: &Session,
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<TrainedRun<B, P>, TrainError> {
        let plan = self.schedule;
        let (first_step, total) = self.schedule_span;
        let lr_schedule = LrSchedule {
            peak: plan.lr,
            warmup: plan.warmup,
            total,
            decay: Decay::Cosine,
        };
        let new_trainer =
            || Trainer::new(lr_schedule, plan.weight_decay, Some(1.0)).starting_at(first_step);
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
        let lengths = self.pairs.iter().map(TokenizedPair::max_len).collect();
        let mut sampler =
            BatchSampler::resume(lengths, plan.batch, self.bucket, self.seed, manifest.cursor);
        let (mut history, mut curve) = (manifest.history, manifest.curve);
        if self.loss.reliability().is_some() && self.data_parallel.ranks() > 1 {
            return Err(TrainError::Config(
                "RE-PO (--loss repo) learns its reliability on one rank; drop --data-parallel"
                    .into(),
            ));
        }
        // RE-PO's reliability as the last step left it (its start on a fresh run).
        let mut loss = history
            .last()
            .and_then(|r| r.reliability)
            .map_or(*self.loss, |eta| self.loss.with_reliability(eta));
        ranks.borrow_mut().load(
            &model,
            &trainer,
            &new_trainer,
            self.loss,
            RollCall {
                step: manifest.step,
                pairs: self.pairs.len(),
                ranks: self.data_parallel.peers,
                fingerprint: fingerprint(self.pairs),
            },
            device,
        )?;
        for step in manifest.step..plan.steps {
            // The backend's random stream (LoRA dropout) restarts at every step from the run's
            // seed and the step, so a resumed run draws the masks an uninterrupted one draws.
            B::seed(
                device,
                self.seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let indices = sampler.next_batch();
            let batch: Vec<&TokenizedPair> = indices.iter().map(|i| &self.pairs[*i]).collect();
            let batch_refs = self
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
        Ok(TrainedRun {
            model,
            history,
            curve,
        })
    }
}
