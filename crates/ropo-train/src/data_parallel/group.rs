//! The ranks of a data-parallel run as rank 0 (the calling thread) drives them: starting the
//! peer threads, one step of the whole group, and leaving the group.

use std::{
    marker::PhantomData,
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
        Mutex, MutexGuard, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use burn::{
    collective::{finish_collective, register, reset_collective, CollectiveConfig, PeerId},
    module::Module,
};
use ropo_core::LossConfig;
use ropo_data::TokenizedPair;
use ropo_models::{attention::TrainingBackend, CausalLm};

use super::{
    peer::{reduce, serve, Order, Replica, Report},
    DataParallel,
};
use crate::{
    optim::Trainer,
    reference::ReferenceLogps,
    scoring::{rank_device, shares},
    step::{apply, check_finite, preference_step, PreferenceStep, Share},
    TrainError,
};

/// burn-collective keeps one group per backend in a process, so one group runs at a time.
static GROUP: Mutex<()> = Mutex::new(());

/// One peer thread, as rank 0 sees it.
struct Peer {
    rank: usize,
    orders: Sender<Order>,
    reports: Receiver<Report>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    /// Why the peer's thread ended: its panic message, if it panicked.
    fn death(&mut self) -> String {
        let panic = self.thread.take().and_then(|thread| thread.join().err());
        match panic {
            Some(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "no message".into());
                format!("died: {message}")
            }
            None => "stopped without a report".into(),
        }
    }
}

/// The ranks 1.. of a data-parallel run, started from rank 0's policy and optimiser.
pub(crate) struct PeerGroup<B: TrainingBackend> {
    peers: Vec<Peer>,
    timeout: Duration,
    failed: bool,
    /// Held while this group exists; `None` for a single rank, which joins no group.
    group: Option<MutexGuard<'static, ()>>,
    backend: PhantomData<B>,
}

impl<B: TrainingBackend> PeerGroup<B> {
    /// Starts `settings.peers − 1` peer threads, each with a copy of `model` on its own device
    /// and of `trainer` (a fresh optimiser from `new_trainer` given `trainer`'s moments and
    /// position), and joins all ranks into one burn-collective group. A single rank starts
    /// nothing.
    pub(crate) fn start(
        model: &CausalLm<B>,
        trainer: &Trainer<CausalLm<B>, B>,
        new_trainer: &dyn Fn() -> Trainer<CausalLm<B>, B>,
        loss: &LossConfig,
        settings: DataParallel,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let mut group = Self {
            peers: Vec::new(),
            timeout: settings.timeout,
            failed: false,
            group: None,
            backend: PhantomData,
        };
        if settings.peers <= 1 {
            return Ok(group);
        }
        group.group = Some(GROUP.lock().unwrap_or_else(PoisonError::into_inner));
        let config = CollectiveConfig::default().with_num_devices(settings.peers);
        for rank in 1..settings.peers {
            let (orders, inbox) = mpsc::channel();
            let (outbox, reports) = mpsc::channel();
            let device = rank_device(device, rank);
            let replica = Replica {
                model: model.clone().fork(&device),
                trainer: new_trainer().with_moments(trainer.moments(), trainer.steps_done()),
                loss: *loss,
                device,
            };
            let config = config.clone();
            let thread = std::thread::Builder::new()
                .name(format!("ropo-peer-{rank}"))
                .spawn(move || serve(rank, replica, config, &inbox, &outbox))
                .map_err(|e| group.fail(rank, format!("could not start its thread: {e}")))?;
            group.peers.push(Peer {
                rank,
                orders,
                reports,
                thread: Some(thread),
            });
        }
        let device = device.clone();
        let joined = group.within("joining the group", move || {
            register::<B::InnerBackend>(PeerId::from(0), device, config)
        })?;
        joined.map_err(|e| group.fail(0, format!("could not join the group: {e:?}")))?;
        Ok(group)
    }

    /// One preference step of the whole group on `pairs`: rank `r` takes the `r`-th share,
    /// each split into `micro_batches` forwards; the summed gradients update every rank's policy
    /// alike. Returns rank 0's updated policy and the batch's metrics. A single rank takes the
    /// plain [`preference_step`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step(
        &mut self,
        model: CausalLm<B>,
        trainer: &mut Trainer<CausalLm<B>, B>,
        loss: &LossConfig,
        pairs: &[&TokenizedPair],
        reference: &[ReferenceLogps],
        micro_batches: usize,
        device: &B::Device,
    ) -> Result<(CausalLm<B>, PreferenceStep), TrainError> {
        if self.peers.is_empty() {
            return preference_step(
                model,
                trainer,
                loss,
                pairs,
                reference,
                micro_batches,
                device,
            );
        }
        let ranks = self.peers.len() + 1;
        if pairs.len() < ranks {
            return Err(TrainError::Config(format!(
                "--data-parallel {ranks} needs batches of at least {ranks} pairs; this batch has {}",
                pairs.len()
            )));
        }
        let step = trainer.steps_done() + 1;
        let shares = shares(pairs.len(), ranks);
        for (peer, range) in self.peers.iter().zip(&shares[1..]) {
            // A peer that is gone is found when its report is awaited below.
            let _ = peer.orders.send(Order::Share {
                step,
                pairs: pairs[range.clone()].iter().map(|p| (*p).clone()).collect(),
                reference: reference[range.clone()].to_vec(),
                batch: pairs.len(),
                micro_batches,
            });
        }
        let own = Share {
            pairs: &pairs[shares[0].clone()],
            reference: &reference[shares[0].clone()],
            batch: pairs.len(),
            micro_batches,
        };
        let (grads, mut metrics) = own.gradients(&model, loss, device).inspect_err(|_| {
            self.failed = true;
        })?;
        let deadline = Instant::now() + self.timeout;
        for index in 0..self.peers.len() {
            let peer = &mut self.peers[index];
            let wait = deadline.saturating_duration_since(Instant::now());
            let reason = match peer.reports.recv_timeout(wait) {
                Ok(Ok(report)) => {
                    metrics.add(&report.0, 1.0);
                    continue;
                }
                Ok(Err(message)) => message,
                Err(RecvTimeoutError::Timeout) => {
                    format!("sent no report on step {step} within {:?}", self.timeout)
                }
                Err(RecvTimeoutError::Disconnected) => peer.death(),
            };
            let rank = peer.rank;
            return Err(self.fail(rank, reason));
        }
        trainer
            .check_last_update()
            .and_then(|()| check_finite(step, "loss", metrics.0.loss))
            .inspect_err(|_| self.failed = true)?;
        for peer in &self.peers {
            let _ = peer.orders.send(Order::Reduce);
        }
        let reduced = self.within("the gradient all-reduce", move || {
            reduce::<B>(grads, PeerId::from(0))
        })?;
        let grads = reduced.map_err(|e| self.fail(0, format!("the all-reduce failed: {e:?}")))?;
        apply(model, trainer, grads, metrics, pairs)
    }

    /// Runs `work` (which waits on the peers) on a thread of its own and waits for it at most
    /// the timeout; past that, the group is reset so that the peers return, and the error
    /// names the peers whose threads ended.
    fn within<T: Send + 'static>(
        &mut self,
        what: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, TrainError> {
        let why = match bounded(self.timeout, work) {
            Ok(result) => return Ok(result),
            Err(why) => why,
        };
        reset_collective::<B::InnerBackend>();
        let gone: Vec<String> = self
            .peers
            .iter()
            .filter(|peer| peer.thread.as_ref().is_none_or(|t| t.is_finished()))
            .map(|peer| format!("peer {}", peer.rank))
            .collect();
        let who = if gone.is_empty() {
            "a peer (none has exited)".to_string()
        } else {
            gone.join(", ")
        };
        Err(self.fail(0, format!("{what} {why}; waiting on {who}")))
    }

    /// Marks the group failed and builds the error naming `rank`.
    fn fail(&mut self, rank: usize, message: String) -> TrainError {
        self.failed = true;
        TrainError::Peer { rank, message }
    }
}

impl<B: TrainingBackend> Drop for PeerGroup<B> {
    /// Closes every peer's orders, so each leaves the group and ends, and leaves it too; after
    /// a failure, peers that have not ended are left behind (they may be stuck) and the group
    /// is reset. Nothing here waits longer than the timeout.
    fn drop(&mut self) {
        if self.group.is_none() {
            return;
        }
        let peers = std::mem::take(&mut self.peers);
        let threads: Vec<_> = peers
            .into_iter()
            .filter_map(|peer| {
                drop(peer.orders);
                peer.thread
            })
            .collect();
        if self.failed {
            reset_collective::<B::InnerBackend>();
            return;
        }
        let _ = bounded(self.timeout, || {
            for thread in threads {
                let _ = thread.join();
            }
            finish_collective::<B::InnerBackend>(PeerId::from(0))
        });
    }
}

/// `work`'s result if it returns within `timeout` on a thread of its own; otherwise why not
/// (the thread is left behind: it is waiting on ranks that will never answer).
fn bounded<T: Send + 'static>(
    timeout: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("ropo-collective".into())
        .spawn(move || {
            let _ = sender.send(work());
        })
        .map_err(|e| format!("could not start: {e}"))?;
    receiver.recv_timeout(timeout).map_err(|e| match e {
        RecvTimeoutError::Timeout => format!("did not finish within {timeout:?}"),
        RecvTimeoutError::Disconnected => "ended without a result (it panicked)".into(),
    })
}
