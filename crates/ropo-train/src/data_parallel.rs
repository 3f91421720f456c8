//! Data-parallel preference steps on one machine: `peers` ranks, each a thread with its own
//! copy of the policy and of AdamW, each taking a contiguous share of every batch. Their
//! gradients are summed by burn-collective's all-reduce (every loss is already divided by the
//! whole batch's size), so each rank clips and applies the same update and the copies stay
//! equal. Rank 0 is the calling thread: it alone validates, checkpoints and writes, and a
//! resumed run starts every rank from rank 0's checkpoint, whatever the number of peers.
//!
//! A step runs in two phases so that no rank waits inside the all-reduce for one that has
//! failed: each peer computes its share and reports its metrics, and only when rank 0 has every
//! report (and found the loss finite) does it tell the peers to reduce. A peer that dies, sends
//! nothing within the timeout, or leaves the all-reduce unfinished ends the run with an error
//! naming it.

use std::{
    marker::PhantomData,
    ops::Range,
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
        Mutex, MutexGuard, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use burn::{
    collective::{
        finish_collective, register, reset_collective, CollectiveConfig, PeerId, ReduceOperation,
    },
    module::Module,
    optim::GradientsParams,
    tensor::backend::AutodiffBackend,
};
use ropo_core::LossConfig;
use ropo_data::TokenizedPair;
use ropo_models::{attention::TrainingBackend, CausalLm};

use crate::{
    optim::Trainer,
    reference::ReferenceLogps,
    step::{apply, check_finite, preference_step, PreferenceStep, Share, WeightedMetrics},
    store::fault,
    TrainError,
};

/// How many ranks share each preference step, and how long rank 0 waits for any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataParallel {
    /// Ranks, rank 0 included (1: no data parallelism).
    pub peers: usize,
    /// The longest rank 0 waits for a peer's report or for the all-reduce to finish.
    pub timeout: Duration,
}

impl Default for DataParallel {
    fn default() -> Self {
        Self {
            peers: 1,
            timeout: Duration::from_secs(600),
        }
    }
}

/// burn-collective keeps one group per backend in a process, so one group runs at a time.
static GROUP: Mutex<()> = Mutex::new(());

/// What rank 0 tells a peer.
enum Order {
    /// Compute the gradients of this share of step `step`'s batch and report its metrics.
    Share {
        step: usize,
        pairs: Vec<TokenizedPair>,
        reference: Vec<ReferenceLogps>,
        batch: usize,
        micro_batches: usize,
    },
    /// Sum the gradients just computed with every rank's and apply them.
    Reduce,
}

/// A peer's report on its share: its weighted metrics, or why it could not compute them.
type Report = Result<WeightedMetrics, String>;

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
    /// Starts `settings.peers − 1` peer threads, each with a copy of `model` and of `trainer`
    /// (a fresh optimiser from `new_trainer` given `trainer`'s moments and position), and joins
    /// all ranks into one burn-collective group. A single rank starts nothing.
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
            let rank_model = model.clone().fork(device);
            let rank_trainer = new_trainer().with_moments(trainer.moments(), trainer.steps_done());
            let (loss, device, config) = (*loss, device.clone(), config.clone());
            let thread = std::thread::Builder::new()
                .name(format!("ropo-peer-{rank}"))
                .spawn(move || {
                    serve(
                        rank,
                        rank_model,
                        rank_trainer,
                        &loss,
                        &device,
                        config,
                        &inbox,
                        &outbox,
                    )
                })
                .map_err(|e| group.fail(rank, format!("could not start its thread: {e}")))?;
            group.peers.push(Peer {
                rank,
                orders,
                reports,
                thread: Some(thread),
            });
        }
        let device = device.clone();
        let joined = group.within("joining the group", || {
            register::<B::InnerBackend>(PeerId::from(0), device, config)
        })?;
        joined.map_err(|e| group.fail(0, format!("could not join the group: {e:?}")))?;
        Ok(group)
    }

    /// One preference step of the whole group on `pairs`: rank 0 takes the first share, each
    /// peer the next, each split into `micro_batches` forwards; the summed gradients update
    /// every rank's policy alike. Returns rank 0's updated policy and the batch's metrics. A
    /// single rank takes the plain [`preference_step`].
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
        check_finite(step, "loss", metrics.0.loss).inspect_err(|_| self.failed = true)?;
        for peer in &self.peers {
            let _ = peer.orders.send(Order::Reduce);
        }
        let reduced = self.within("the gradient all-reduce", || {
            reduce::<B>(grads, PeerId::from(0))
        })?;
        let grads = reduced.map_err(|e| self.fail(0, format!("the all-reduce failed: {e:?}")))?;
        apply(model, trainer, grads, metrics, pairs)
    }

    /// Runs `work` (which blocks on the peers); if it has not returned after the timeout, the
    /// group is reset so that it returns, and the error names the peers whose threads ended.
    fn within<T>(&mut self, what: &str, work: impl FnOnce() -> T) -> Result<T, TrainError> {
        let (done, finished) = mpsc::channel::<()>();
        let timeout = self.timeout;
        let watchdog = std::thread::spawn(move || {
            let expired = finished.recv_timeout(timeout) == Err(RecvTimeoutError::Timeout);
            if expired {
                reset_collective::<B::InnerBackend>();
            }
            expired
        });
        let result = work();
        let _ = done.send(());
        if !watchdog.join().unwrap_or(true) {
            return Ok(result);
        }
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
        Err(self.fail(
            0,
            format!("{what} did not finish within {timeout:?}; waiting on {who}"),
        ))
    }

    /// Marks the group failed and builds the error naming `rank`.
    fn fail(&mut self, rank: usize, message: String) -> TrainError {
        self.failed = true;
        TrainError::Peer { rank, message }
    }
}

impl<B: TrainingBackend> Drop for PeerGroup<B> {
    /// Closes every peer's orders, so each leaves the group and ends; after a failure, peers
    /// that have not ended are left behind (they may be stuck) and the group is reset.
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
        for thread in threads {
            let _ = thread.join();
        }
        let _ = finish_collective::<B::InnerBackend>(PeerId::from(0));
    }
}

/// `len` items in `ranks` contiguous shares whose sizes differ by at most one, the larger ones
/// first.
fn shares(len: usize, ranks: usize) -> Vec<Range<usize>> {
    let (base, extra) = (len / ranks, len % ranks);
    let mut start = 0;
    (0..ranks)
        .map(|rank| {
            let size = base + usize::from(rank < extra);
            start += size;
            start - size..start
        })
        .collect()
}

/// A peer's life: join the group, then for each share rank 0 sends, compute its gradients,
/// report, and on rank 0's word sum them with every rank's and step the optimiser; leave the
/// group when rank 0 closes the orders.
#[allow(clippy::too_many_arguments)]
fn serve<B: TrainingBackend>(
    rank: usize,
    mut model: CausalLm<B>,
    mut trainer: Trainer<CausalLm<B>, B>,
    loss: &LossConfig,
    device: &B::Device,
    config: CollectiveConfig,
    orders: &Receiver<Order>,
    reports: &Sender<Report>,
) {
    let peer = PeerId::from(rank);
    if let Err(e) = register::<B::InnerBackend>(peer, device.clone(), config) {
        let _ = reports.send(Err(format!("could not join the group: {e:?}")));
        return;
    }
    while let Ok(Order::Share {
        step,
        pairs,
        reference,
        batch,
        micro_batches,
    }) = orders.recv()
    {
        fault::in_peer(rank, step);
        let pairs: Vec<&TokenizedPair> = pairs.iter().collect();
        let share = Share {
            pairs: &pairs,
            reference: &reference,
            batch,
            micro_batches,
        };
        let (grads, metrics) = match share.gradients(&model, loss, device) {
            Ok(computed) => computed,
            Err(e) => {
                let _ = reports.send(Err(e.to_string()));
                return;
            }
        };
        if reports.send(Ok(metrics)).is_err() || !matches!(orders.recv(), Ok(Order::Reduce)) {
            break;
        }
        let Ok(grads) = reduce::<B>(grads, peer) else {
            return;
        };
        model = trainer.step(model, grads).0;
    }
    let _ = finish_collective::<B::InnerBackend>(peer);
}

/// This rank's gradients summed with every other rank's, parameter by parameter.
fn reduce<B: AutodiffBackend>(
    grads: GradientsParams,
    peer: PeerId,
) -> Result<GradientsParams, burn::collective::CollectiveError> {
    grads.all_reduce::<B::InnerBackend>(peer, ReduceOperation::Sum)
}

#[cfg(test)]
mod tests {
    use super::shares;

    #[test]
    fn shares_cover_the_batch_contiguously_and_evenly() {
        assert_eq!(shares(8, 2), vec![0..4, 4..8]);
        assert_eq!(shares(10, 4), vec![0..3, 3..6, 6..8, 8..10]);
        assert_eq!(shares(3, 3), vec![0..1, 1..2, 2..3]);
    }
}
