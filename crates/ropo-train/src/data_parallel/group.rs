//! The ranks of a data-parallel run as rank 0 (the calling thread) drives them: starting the
//! peer threads, one step of the whole group, and leaving the group; across nodes, rank 0 of
//! each node also makes its node's sums over the nodes (roll call, metrics).

use std::{
    marker::PhantomData,
    net::SocketAddr,
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
    nodes::{Nodes, RollCall},
    peer::{reduce, serve, sum, Order, Replica, Report},
    DataParallel,
};
use crate::{
    optim::Trainer,
    records::Progress,
    reference::{reference_share, ReferenceLogps},
    scoring::{rank_device, shares, Spread},
    step::{apply, check_finite, preference_step, PreferenceStep, Share, WeightedMetrics},
    store::fault,
    TrainError,
};

/// burn-collective keeps one group per backend in a process, so one group runs at a time.
static GROUP: Mutex<()> = Mutex::new(());

/// One peer thread, as rank 0 sees it.
struct Peer<B: TrainingBackend> {
    rank: usize,
    orders: Sender<Order<B>>,
    reports: Receiver<Report>,
    thread: Option<JoinHandle<()>>,
}

impl<B: TrainingBackend> Peer<B> {
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

/// The ranks 1.. of a data-parallel run, joined once for the whole run; each stage loads
/// them with rank 0's policy and optimiser.
pub(crate) struct PeerGroup<B: TrainingBackend> {
    peers: Vec<Peer<B>>,
    timeout: Duration,
    failed: bool,
    /// Ranks over every node.
    ranks: usize,
    /// The global rank of this node's rank 0.
    first: usize,
    /// The other machines (`None`: this one alone).
    machines: Option<Nodes>,
    /// Every node's address as the last roll call gave it (empty before the first).
    addresses: Vec<SocketAddr>,
    /// Held while this group exists; `None` for a single rank, which joins no group.
    group: Option<MutexGuard<'static, ()>>,
    backend: PhantomData<B>,
}

impl<B: TrainingBackend> PeerGroup<B> {
    /// Starts `settings.peers − 1` peer threads, each on its own device, and joins all ranks
    /// (across nodes, through the coordinator) into one burn-collective group, which lasts
    /// until the group is dropped: burn-collective lets a process join only one group across
    /// nodes. A single rank starts nothing.
    pub(crate) fn join(settings: DataParallel, device: &B::Device) -> Result<Self, TrainError> {
        let mut group = Self {
            peers: Vec::new(),
            timeout: settings.timeout,
            failed: false,
            ranks: settings.ranks(),
            first: settings.first_rank(),
            machines: settings.nodes,
            addresses: Vec::new(),
            group: None,
            backend: PhantomData,
        };
        if settings.ranks() <= 1 {
            return Ok(group);
        }
        if let Some(nodes) = settings.nodes {
            nodes
                .reach_coordinator(settings.timeout)
                .map_err(|message| group.fail_node(nodes.rank, message))?;
        }
        group.group = Some(GROUP.lock().unwrap_or_else(PoisonError::into_inner));
        let local = CollectiveConfig::default().with_num_devices(settings.peers);
        let config = match settings.nodes {
            Some(nodes) => nodes.collective(local),
            None => local,
        };
        for rank in 1..settings.peers {
            let (orders, inbox) = mpsc::channel();
            let (outbox, reports) = mpsc::channel();
            let device = rank_device(device, rank);
            let config = config.clone();
            let thread = std::thread::Builder::new()
                .name(format!("ropo-peer-{rank}"))
                .spawn(move || serve(rank, device, config, &inbox, &outbox))
                .map_err(|e| group.fail(rank, format!("could not start its thread: {e}")))?;
            group.peers.push(Peer {
                rank,
                orders,
                reports,
                thread: Some(thread),
            });
        }
        let own = device.clone();
        let joined = group.within("joining the group", move || {
            register::<B::InnerBackend>(PeerId::from(0), own, config)
        })?;
        joined.map_err(|e| {
            // burn-collective does not export its global error type; its name is in the text.
            let error = format!("{e:?}");
            let stale = settings.nodes.is_some() && error.contains("DoubleRegister");
            let hint = if stale {
                "; the coordinator still holds a run that failed: restart it"
            } else {
                ""
            };
            group.fail(0, format!("could not join the group: {error}{hint}"))
        })?;
        Ok(group)
    }

    /// Gives every peer a copy of `model` on its own device and of `trainer` (a fresh
    /// optimiser from `new_trainer` given `trainer`'s moments and position) for the stage
    /// about to start; across nodes, the nodes then check in a roll call that they all start
    /// `call`.
    pub(crate) fn load(
        &mut self,
        model: &CausalLm<B>,
        trainer: &Trainer<CausalLm<B>, B>,
        new_trainer: &dyn Fn() -> Trainer<CausalLm<B>, B>,
        loss: &LossConfig,
        call: RollCall,
        device: &B::Device,
    ) -> Result<(), TrainError> {
        if self.group.is_none() {
            return Ok(());
        }
        for peer in &self.peers {
            let replica = Replica {
                model: model.clone().fork(&rank_device(device, peer.rank)),
                trainer: new_trainer().with_moments(trainer.moments(), trainer.steps_done()),
                loss: *loss,
            };
            // A peer that is gone is found when the group next waits on it.
            let _ = peer.orders.send(Order::Load(Box::new(replica)));
        }
        if let Some(nodes) = self.machines {
            let table = self.sum_over_nodes("the roll call", nodes.roll_call(call), device)?;
            self.addresses = nodes
                .check_roll_call(call, &table)
                .map_err(|message| self.fail_node(nodes.rank, message))?;
        }
        Ok(())
    }

    /// `(this node's rank, nodes)`: `(0, 1)` on one machine.
    pub(crate) fn node(&self) -> (usize, usize) {
        self.machines
            .map_or((0, 1), |nodes| (nodes.rank, nodes.count))
    }

    /// [`crate::reference::reference_logps`] of `pairs` under `model`, shared among this
    /// node's ranks and the nodes (each node scores its part, summed over the nodes): the
    /// same table on every node, one node's bit for bit.
    pub(crate) fn reference_logps(
        &mut self,
        model: &CausalLm<B::InnerBackend>,
        pairs: &[TokenizedPair],
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<ReferenceLogps>, TrainError> {
        let ranks = self.peers.len() + 1;
        let share = reference_share(model, pairs, 16, ranks, self.node(), device, on_progress)?;
        let table = share.iter().map(|r| (r.chosen, r.rejected)).collect();
        let summed = self.sum_scores("the reference pass", table, device)?;
        Ok(summed
            .into_iter()
            .map(|(chosen, rejected)| ReferenceLogps { chosen, rejected })
            .collect())
    }

    /// Runs `pass`, a no-grad scoring pass, spread over this group: this node's ranks, and
    /// the nodes (each scores its part; the parts are summed over the nodes as `what`).
    pub(crate) fn spread_over<T>(
        &mut self,
        what: &str,
        device: &B::Device,
        pass: impl FnOnce(Spread<'_>) -> Result<T, TrainError>,
    ) -> Result<T, TrainError> {
        let (ranks, node) = (self.peers.len() + 1, self.node());
        let mut sum = |table| self.sum_scores(what, table, device);
        pass(Spread {
            ranks,
            node,
            sum: Some(&mut sum),
        })
    }

    /// Per-pair `(chosen, rejected)` scores summed over the nodes, each node having scored
    /// its share (see [`crate::scoring::score_node_share`]; the others' pairs at 0); on one
    /// machine, `share` itself. The sums are exact: each pair's values come from one node, and
    /// they are f32 values (the model sums log-probs in f32).
    pub(crate) fn sum_scores(
        &mut self,
        what: &str,
        share: Vec<(f64, f64)>,
        device: &B::Device,
    ) -> Result<Vec<(f64, f64)>, TrainError> {
        if self.machines.is_none() {
            return Ok(share);
        }
        let values = share
            .iter()
            .flat_map(|&(chosen, rejected)| [chosen as f32, rejected as f32])
            .collect();
        let summed = self.sum_over_nodes(what, values, device)?;
        Ok(summed
            .chunks_exact(2)
            .map(|pair| (f64::from(pair[0]), f64::from(pair[1])))
            .collect())
    }

    /// `values` summed with every other node's (each node's rank 0 gives its node's values,
    /// its peers zeros), padded so the ring all-reduce can cut them in one slice per node.
    fn sum_over_nodes(
        &mut self,
        what: &str,
        mut values: Vec<f32>,
        device: &B::Device,
    ) -> Result<Vec<f32>, TrainError> {
        let len = values.len();
        values.resize(len.max(self.ranks), 0.0);
        for peer in &self.peers {
            let _ = peer.orders.send(Order::Sum { len: values.len() });
        }
        let device = device.clone();
        let summed = self.within(what, move || {
            sum::<B::InnerBackend>(values, &device, PeerId::from(0))
        })?;
        let mut summed = summed.map_err(|e| self.lost(what, format!("failed: {e:?}")))?;
        summed.truncate(len);
        Ok(summed)
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
        if self.group.is_none() {
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
        let ranks = self.ranks;
        if pairs.len() < ranks {
            return Err(TrainError::Config(format!(
                "--data-parallel {ranks} needs batches of at least {ranks} pairs; this batch has {}",
                pairs.len()
            )));
        }
        let step = trainer.steps_done() + 1;
        fault::in_peer(0, step);
        let shares = shares(pairs.len(), ranks);
        let shares = &shares[self.first..self.first + self.peers.len() + 1];
        for (peer, range) in self.peers.iter().zip(&shares[1..]) {
            // A peer that is gone is found when its report is awaited below.
            let _ = peer.orders.send(Order::Share {
                step,
                pairs: pairs[range.clone()].iter().map(|p| (*p).clone()).collect(),
                reference: reference[range.clone()].to_vec(),
                batch: pairs.len(),
                micro_batches,
                layer_checkpointing: trainer.layer_checkpointing(),
            });
        }
        let own = Share {
            pairs: &pairs[shares[0].clone()],
            reference: &reference[shares[0].clone()],
            batch: pairs.len(),
            micro_batches,
            layer_checkpointing: trainer.layer_checkpointing(),
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
        if self.machines.is_some() {
            let summed = self.sum_over_nodes(
                &format!("summing step {step}'s metrics over the nodes"),
                metrics.to_values(),
                device,
            )?;
            metrics = WeightedMetrics::from_values(&summed);
        }
        trainer
            .check_last_update()
            .and_then(|()| check_finite(step, "loss", metrics.0.loss))
            .inspect_err(|_| self.failed = true)?;
        for peer in &self.peers {
            let _ = peer.orders.send(Order::Reduce);
        }
        let order = model.clone();
        let reduced = self.within("the gradient all-reduce", move || {
            reduce(&order, grads, PeerId::from(0))
        })?;
        let grads =
            reduced.map_err(|e| self.lost("the gradient all-reduce", format!("failed: {e:?}")))?;
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
        match bounded(self.timeout, work) {
            Ok(result) => Ok(result),
            Err(why) => {
                reset::<B>();
                Err(self.lost(what, why))
            }
        }
    }

    /// The error of a wait on the group that did not end well: it names the nodes that no
    /// longer answer, if any, else this node's peers whose threads ended.
    fn lost(&mut self, what: &str, why: String) -> TrainError {
        if let Some(nodes) = self.machines.filter(|_| !self.addresses.is_empty()) {
            let gone = nodes.gone(&self.addresses);
            if !gone.is_empty() {
                let message = format!("{what} {why}; gone: {}", gone.join(", "));
                return self.fail_node(nodes.rank, message);
            }
        }
        let gone: Vec<String> = self
            .peers
            .iter()
            .filter(|peer| peer.thread.as_ref().is_none_or(|t| t.is_finished()))
            .map(|peer| format!("peer {}", peer.rank))
            .collect();
        let who = match (gone.is_empty(), &self.machines) {
            (false, _) => gone.join(", "),
            (true, None) => "a peer (none has exited)".to_string(),
            (true, Some(_)) => "a peer or a node (every node still answers)".to_string(),
        };
        self.fail(0, format!("{what} {why}; waiting on {who}"))
    }

    /// Marks the group failed and builds the error naming `rank`.
    fn fail(&mut self, rank: usize, message: String) -> TrainError {
        self.failed = true;
        TrainError::Peer { rank, message }
    }

    /// Marks the group failed and builds the error of node `node` (this one) about the nodes.
    fn fail_node(&mut self, node: usize, message: String) -> TrainError {
        self.failed = true;
        TrainError::Node { node, message }
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
            reset::<B>();
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

/// Resets burn-collective's group so that the ranks still waiting in it return. Its server
/// thread panics when another node's connection drops, and then the reset itself panics; a
/// server that is gone holds no one, so that panic is let go.
fn reset<B: TrainingBackend>() {
    let _ = std::panic::catch_unwind(reset_collective::<B::InnerBackend>);
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
