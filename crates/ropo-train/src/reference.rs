//! Reference log-probs, computed once per dataset with the frozen starting model, so that
//! preference training holds one model in memory and runs one forward per step.

use ropo_data::TokenizedPair;
use ropo_models::attention::AttentionBackend;
use ropo_models::CausalLm;

use crate::{
    records::{Progress, ScoringPass},
    scoring::{pair_logp_sums, score_node_share},
    TrainError,
};

/// `log π_ref` of one pair's chosen and rejected responses (summed over response tokens).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceLogps {
    /// `log π_ref(y_w | x)`.
    pub chosen: f64,
    /// `log π_ref(y_l | x)`.
    pub rejected: f64,
}

impl ReferenceLogps {
    /// The same pair with chosen and rejected exchanged (a flipped label).
    pub fn swapped(self) -> Self {
        Self {
            chosen: self.rejected,
            rejected: self.chosen,
        }
    }
}

/// Reference log-probs with chosen and rejected exchanged wherever `flipped` says a pair's
/// label was.
pub fn swap_flipped(refs: &[ReferenceLogps], flipped: &[bool]) -> Vec<ReferenceLogps> {
    refs.iter()
        .zip(flipped)
        .map(|(r, flip)| if *flip { r.swapped() } else { *r })
        .collect()
}

/// Scores every pair with `model`, at most `max_pairs` pairs per forward (chosen and rejected
/// of a batch in the same forward, pairs of similar lengths together, see
/// [`crate::scoring::score_all`]) spread over `ranks` data-parallel ranks, reporting
/// [`Progress::Scoring`] after each batch. The result is in the pairs' order, and the same for
/// any number of ranks.
pub fn reference_logps<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    max_pairs: usize,
    ranks: usize,
    device: &B::Device,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Vec<ReferenceLogps>, TrainError> {
    reference_share(model, pairs, max_pairs, ranks, (0, 1), device, on_progress)
}

/// [`reference_logps`] as node `node` of `nodes` computes its share (see
/// [`score_node_share`]): the pairs of its run of the batches scored, every other pair left at
/// 0, so that the nodes' shares summed are [`reference_logps`]'s table, bit for bit.
pub fn reference_share<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    max_pairs: usize,
    ranks: usize,
    node: (usize, usize),
    device: &B::Device,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Vec<ReferenceLogps>, TrainError> {
    let total = pairs.len();
    let scored = score_node_share(model, pairs, max_pairs, ranks, node, device, &mut |done| {
        on_progress(Progress::Scoring {
            pass: ScoringPass::Reference,
            done,
            total,
        })
    })?;
    Ok(scored
        .into_iter()
        .map(|(chosen, rejected)| ReferenceLogps { chosen, rejected })
        .collect())
}

/// The reference log-probs of a set's pairs.
#[derive(Debug, Clone, PartialEq)]
pub enum PairReference {
    /// One per pair, in the pairs' order and orientation, computed before training.
    Table(Vec<ReferenceLogps>),
    /// Computed by the run's reference model for each batch as training reaches it: for a run
    /// that uses each pair at most once, which then scores no pair it never trains on. No
    /// cache is kept, since no pair comes back.
    PerBatch,
}

impl PairReference {
    /// The reference log-probs of `batch` (pairs as the run sees them, at `indices` of its
    /// set): looked up in the table, or scored with `model` in one forward.
    pub fn of_batch<B: AttentionBackend>(
        &self,
        model: &CausalLm<B>,
        batch: &[&TokenizedPair],
        indices: &[usize],
        device: &B::Device,
    ) -> Result<Vec<ReferenceLogps>, TrainError> {
        match self {
            Self::Table(table) => Ok(indices.iter().map(|i| table[*i]).collect()),
            Self::PerBatch => Ok(pair_logp_sums(model, batch.iter().copied(), device)?
                .into_iter()
                .map(|(chosen, rejected)| ReferenceLogps { chosen, rejected })
                .collect()),
        }
    }
}
