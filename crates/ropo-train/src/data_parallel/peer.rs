//! A peer's life on its own thread: join the group, then for each share rank 0 sends, compute
//! the share's gradients, report its metrics, and on rank 0's word sum the gradients with every
//! rank's and step its own optimiser; across nodes, also take part in the sums rank 0 makes of
//! its node's roll call and metrics.

use std::sync::mpsc::{Receiver, Sender};

use burn::{
    collective::{
        all_reduce, finish_collective, register, CollectiveConfig, CollectiveError, PeerId,
        ReduceOperation,
    },
    module::{Module, ModuleVisitor, Param},
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
pub(super) enum Order {
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
    /// Take part with zeros in a sum of `len` numbers over every rank, which rank 0 makes of
    /// its node's values (the roll call, a step's metrics).
    Sum {
        /// How many numbers.
        len: usize,
    },
}

/// A peer's report on its share: its weighted metrics, or why it could not compute them.
pub(super) type Report = Result<WeightedMetrics, String>;

/// What a peer holds: its copy of the policy, its optimiser and the loss.
pub(super) struct Replica<B: TrainingBackend> {
    pub model: CausalLm<B>,
    pub trainer: Trainer<CausalLm<B>, B>,
    pub loss: LossConfig,
    pub device: B::Device,
}

/// Serves rank 0's orders until it closes them (then leaves the group) or something fails
/// (then returns at once; rank 0 finds out from the report or from the peer's absence).
pub(super) fn serve<B: TrainingBackend>(
    rank: usize,
    replica: Replica<B>,
    config: CollectiveConfig,
    orders: &Receiver<Order>,
    reports: &Sender<Report>,
) {
    let Replica {
        mut model,
        mut trainer,
        loss,
        device,
    } = replica;
    let peer = PeerId::from(rank);
    if let Err(e) = register::<B::InnerBackend>(peer, device.clone(), config) {
        let _ = reports.send(Err(format!("could not join the group: {e:?}")));
        return;
    }
    let mut computed = None;
    while let Ok(order) = orders.recv() {
        match order {
            Order::Share {
                step,
                pairs,
                reference,
                batch,
                micro_batches,
            } => {
                fault::in_peer(rank, step);
                let pairs: Vec<&TokenizedPair> = pairs.iter().collect();
                let share = Share {
                    pairs: &pairs,
                    reference: &reference,
                    batch,
                    micro_batches,
                };
                let (grads, metrics) = match share.gradients(&model, &loss, &device) {
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
                let Some(grads) = computed.take() else {
                    break;
                };
                let Ok(grads) = reduce(&model, grads, peer) else {
                    return;
                };
                model = trainer.step(model, grads).0;
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

/// This rank's gradients summed with every other rank's, one all-reduce per parameter in
/// `model`'s order (the order of its fields). Every rank of every node must reduce the same
/// parameters in the same order; burn's `GradientsParams::all_reduce` sorts by parameter id,
/// and ids are drawn afresh in each process, so across nodes it would pair one node's tensor
/// with another's.
pub(super) fn reduce<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    grads: GradientsParams,
    peer: PeerId,
) -> Result<GradientsParams, CollectiveError> {
    let mut reducer = InOrder {
        grads,
        peer,
        failed: None,
    };
    model.visit(&mut reducer);
    match reducer.failed {
        Some(e) => Err(e),
        None => Ok(reducer.grads),
    }
}

/// Visits a model's parameters in order, replacing each one's gradient by its sum over ranks;
/// after a failure it leaves the rest alone.
struct InOrder {
    grads: GradientsParams,
    peer: PeerId,
    failed: Option<CollectiveError>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for InOrder {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.failed.is_some() {
            return;
        }
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) else {
            return;
        };
        let summed = all_reduce::<B::InnerBackend>(
            self.peer,
            grad.into_primitive().tensor(),
            ReduceOperation::Sum,
        );
        match summed {
            Ok(summed) => self.grads.register::<B::InnerBackend, D>(
                param.id,
                Tensor::from_primitive(TensorPrimitive::Float(summed)),
            ),
            Err(e) => self.failed = Some(e),
        }
    }
}
