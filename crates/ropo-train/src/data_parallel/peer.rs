//! A peer's life on its own thread: join the group, take each stage's copy of the policy, then
//! for each share rank 0 sends, compute the share's gradients, report its metrics, and on rank
//! 0's word sum the gradients with every rank's and step its own optimiser; across nodes, also
//! take part in the sums rank 0 makes of its node's roll call and metrics.

use std::sync::mpsc::{Receiver, Sender};

use burn::{
    collective::{
        all_reduce, finish_collective, register, CollectiveConfig, CollectiveError, PeerId,
        ReduceOperation,
    },
    module::{Module, ModuleVisitor, Param, ParamId},
    optim::GradientsParams,
    tensor::{
        backend::{AutodiffBackend, Backend},
        Tensor, TensorData, TensorPrimitive,
    },
};
use ropo_core::LossConfig;
use ropo_data::TokenizedPair;
use ropo_models::{attention::TrainingBackend, CausalLm};

use crate::{
    optim::Trainer,
    reference::ReferenceLogps,
    step::{Share, WeightedMetrics},
    store::fault,
};

/// What rank 0 tells a peer.
pub(super) enum Order<B: TrainingBackend> {
    /// Take this copy of the policy and optimiser for the stage about to start (a peer joins
    /// the group once for the whole run; each stage loads its own starting point).
    Load(Box<Replica<B>>),
    /// Compute the gradients of this share of step `step`'s batch and report its metrics.
    Share {
        step: usize,
        pairs: Vec<TokenizedPair>,
        reference: Vec<ReferenceLogps>,
        batch: usize,
        micro_batches: usize,
        layer_checkpointing: bool,
    },
    /// Sum the gradients just computed with every rank's and apply them.
    Reduce,
    /// Take part with zeros in a sum of `len` numbers over every rank, which rank 0 makes of
    /// its node's values (the roll call, a step's metrics).
    Sum {
        /// How many numbers.
        len: usize,
    },
}

/// A peer's report on its share: its weighted metrics, or why it could not compute them.
pub(super) type Report = Result<WeightedMetrics, String>;

/// What a peer holds for a stage: its copy of the policy, its optimiser and the loss.
pub(super) struct Replica<B: TrainingBackend> {
    pub model: CausalLm<B>,
    pub trainer: Trainer<CausalLm<B>, B>,
    pub loss: LossConfig,
}

/// Joins the group as `rank` on `device`, then serves rank 0's orders until it closes them
/// (then leaves the group) or something fails (then returns at once; rank 0 finds out from
/// the report or from the peer's absence).
pub(super) fn serve<B: TrainingBackend>(
    rank: usize,
    device: B::Device,
    config: CollectiveConfig,
    orders: &Receiver<Order<B>>,
    reports: &Sender<Report>,
) {
    let peer = PeerId::from(rank);
    if let Err(e) = register::<B::InnerBackend>(peer, device.clone(), config) {
        let _ = reports.send(Err(format!("could not join the group: {e:?}")));
        return;
    }
    let mut replica: Option<Replica<B>> = None;
    let mut computed = None;
    while let Ok(order) = orders.recv() {
        match order {
            Order::Load(loaded) => {
                replica = Some(*loaded);
                computed = None;
            }
            Order::Share {
                step,
                pairs,
                reference,
                batch,
                micro_batches,
                layer_checkpointing,
            } => {
                fault::in_peer(rank, step);
                let Some(own) = &replica else {
                    let _ = reports.send(Err("was sent a share before a policy".into()));
                    return;
                };
                let pairs: Vec<&TokenizedPair> = pairs.iter().collect();
                let share = Share {
                    pairs: &pairs,
                    reference: &reference,
                    batch,
                    micro_batches,
                    layer_checkpointing,
                };
                let (grads, metrics) = match share.gradients(&own.model, &own.loss, &device) {
                    Ok(result) => result,
                    Err(e) => {
                        let _ = reports.send(Err(e.to_string()));
                        return;
                    }
                };
                computed = Some(grads);
                if reports.send(Ok(metrics)).is_err() {
                    break;
                }
            }
            Order::Sum { len } => {
                if sum::<B::InnerBackend>(vec![0.0; len], &device, peer).is_err() {
                    return;
                }
            }
            Order::Reduce => {
                let (Some(grads), Some(mut own)) = (computed.take(), replica.take()) else {
                    break;
                };
                let Ok(grads) = reduce(&own.model, grads, peer) else {
                    return;
                };
                own.model = own.trainer.step(own.model, grads).0;
                replica = Some(own);
            }
        }
    }
    let _ = finish_collective::<B::InnerBackend>(peer);
}

/// `values` summed entry by entry with every rank's (on `device`, as rank `peer`).
pub(super) fn sum<B: Backend>(
    values: Vec<f32>,
    device: &B::Device,
    peer: PeerId,
) -> Result<Vec<f32>, CollectiveError> {
    let len = values.len();
    let tensor = Tensor::<B, 1>::from_data(TensorData::new(values, [len]), device);
    let summed = all_reduce::<B>(peer, tensor.into_primitive().tensor(), ReduceOperation::Sum)?;
    let summed = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(summed));
    let data = summed.into_data().convert::<f32>();
    Ok(data.iter::<f32>().collect())
}

/// Gradient entries per all-reduce: the gradients are flattened, in the model's parameter
/// order, into buckets of at least this many entries (a parameter is never split), so that a
/// step makes a few large all-reduces rather than one per parameter (PyTorch's DDP buckets
/// its gradients alike). 4 Mi entries: 16 MiB of f32, the extra memory a bucket holds.
const BUCKET: usize = 1 << 22;

/// This rank's gradients summed with every other rank's. Every rank of every node must reduce
/// the same entries in the same order: the gradients go in `model`'s parameter order (the
/// order of its fields), not in burn's `GradientsParams::all_reduce` order (by parameter id,
/// and ids are drawn afresh in each process, so across nodes it would pair one node's tensor
/// with another's).
pub(super) fn reduce<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    grads: GradientsParams,
    peer: PeerId,
) -> Result<GradientsParams, CollectiveError> {
    let mut flatten = Flatten::<B::InnerBackend> {
        grads,
        peer,
        taken: Vec::new(),
        bucket: Vec::new(),
        bucket_len: 0,
        summed: Vec::new(),
        failed: None,
    };
    model.visit(&mut flatten);
    flatten.sum_bucket();
    if let Some(e) = flatten.failed {
        return Err(e);
    }
    let mut unflatten = Unflatten {
        grads: flatten.grads,
        taken: flatten.taken.into_iter(),
        summed: flatten.summed.into_iter(),
        current: None,
        offset: 0,
    };
    model.visit(&mut unflatten);
    Ok(unflatten.grads)
}

/// First pass over the parameters: takes each gradient out, flattened, into the bucket, and
/// sums each full bucket over the ranks.
struct Flatten<B: Backend> {
    grads: GradientsParams,
    peer: PeerId,
    /// The parameters whose gradients were taken, in order.
    taken: Vec<ParamId>,
    bucket: Vec<Tensor<B, 1>>,
    bucket_len: usize,
    /// The summed buckets, `[entries]` each, in order.
    summed: Vec<Tensor<B, 1>>,
    failed: Option<CollectiveError>,
}

impl<B: Backend> Flatten<B> {
    /// Sums the bucket over the ranks (after a failure, drops it).
    fn sum_bucket(&mut self) {
        if self.bucket.is_empty() {
            return;
        }
        let bucket = Tensor::cat(std::mem::take(&mut self.bucket), 0);
        self.bucket_len = 0;
        if self.failed.is_some() {
            return;
        }
        let summed = all_reduce::<B>(
            self.peer,
            bucket.into_primitive().tensor(),
            ReduceOperation::Sum,
        );
        match summed {
            Ok(summed) => self
                .summed
                .push(Tensor::from_primitive(TensorPrimitive::Float(summed))),
            Err(e) => self.failed = Some(e),
        }
    }
}

impl<A: AutodiffBackend<InnerBackend = B>, B: Backend> ModuleVisitor<A> for Flatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        let Some(grad) = self.grads.remove::<B, D>(param.id) else {
            return;
        };
        let entries = grad.shape().num_elements();
        self.taken.push(param.id);
        self.bucket.push(grad.reshape([entries]));
        self.bucket_len += entries;
        if self.bucket_len >= BUCKET {
            self.sum_bucket();
        }
    }
}

/// Second pass: puts each summed gradient back in its parameter's shape.
struct Unflatten<B: Backend> {
    grads: GradientsParams,
    taken: std::vec::IntoIter<ParamId>,
    summed: std::vec::IntoIter<Tensor<B, 1>>,
    /// The summed bucket being cut, and how far.
    current: Option<Tensor<B, 1>>,
    offset: usize,
}

impl<A: AutodiffBackend<InnerBackend = B>, B: Backend> ModuleVisitor<A> for Unflatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        if self.taken.as_slice().first() != Some(&param.id) {
            return;
        }
        self.taken.next();
        let shape = param.val().shape();
        let entries = shape.num_elements();
        let bucket_len = self
            .current
            .as_ref()
            .map_or(0, |b| b.shape().num_elements());
        if self.offset == bucket_len {
            self.current = self.summed.next();
            self.offset = 0;
        }
        let bucket = self
            .current
            .as_ref()
            .expect("a bucket holds every taken gradient");
        let grad = bucket
            .clone()
            .slice(self.offset..self.offset + entries)
            .reshape(shape);
        self.offset += entries;
        self.grads.register::<B, D>(param.id, grad);
    }
}
