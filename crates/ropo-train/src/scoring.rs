//! Log-probs of preference pairs under a model, on one rank or spread over the data-parallel
//! ranks, and how work is dealt out to ranks: contiguous shares, rank `r` on device `r`.
//!
//! A no-grad pass (reference log-probs, evaluation, the filter's scoring) batches its pairs in
//! order of length under a token budget ([`scoring_batches`]), so that its peak memory is one
//! batch's whatever the number of pairs, and deals the batches out in contiguous runs: rank `r`
//! scores its run on a copy of the model on device `r` while rank 0 (the calling thread) scores
//! the first run and reports progress for all. Each batch is scored exactly as a single rank
//! scores it, so any number of ranks gives the same numbers, bit for bit.

use std::{ops::Range, sync::mpsc};

use burn::{
    module::Module,
    tensor::backend::{Device, DeviceId},
};
use ropo_data::TokenizedPair;
use ropo_models::{attention::AttentionBackend, score_pairs, CausalLm, PairRow};

use crate::TrainError;

/// The most tokens one scoring forward holds, counted as pairs × (longest prompt + both
/// longest responses) of its batch: 16 pairs of 512 such tokens (SmolLM2 at `max_length` 256
/// holds about 0.4 GB of keys and values at this size), 256 of the gold task's short pairs.
pub const SCORING_TOKENS: usize = 8192;

/// `(log π(y_w|x), log π(y_l|x))` of every pair under `model`, in the pairs' order: at most
/// `max_pairs` pairs and [`SCORING_TOKENS`] tokens per forward, pairs of similar lengths
/// together, on `ranks` ranks. `on_batch(done)` reports the pairs scored so far.
pub fn score_all<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    max_pairs: usize,
    ranks: usize,
    device: &B::Device,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<(f64, f64)>, TrainError> {
    score_node_share(model, pairs, max_pairs, ranks, (0, 1), device, on_batch)
}

/// Sums the nodes' parts of a `(chosen, rejected)` table into the whole table.
pub type SumOverNodes<'a> = dyn FnMut(Vec<(f64, f64)>) -> Result<Vec<(f64, f64)>, TrainError> + 'a;

/// How a no-grad pass is spread: over this node's `ranks`, and over the nodes: `node` is
/// `(this node, nodes)` and `sum` adds up the nodes' parts of a table (`None` on one machine).
pub struct Spread<'a> {
    /// This node's data-parallel ranks.
    pub ranks: usize,
    /// `(this node's rank, nodes)`.
    pub node: (usize, usize),
    /// The nodes' parts of a `(chosen, rejected)` table, summed.
    pub sum: Option<&'a mut SumOverNodes<'a>>,
}

impl Spread<'_> {
    /// `ranks` ranks of one machine.
    pub fn local(ranks: usize) -> Self {
        Self {
            ranks,
            node: (0, 1),
            sum: None,
        }
    }
}

/// [`score_all`] spread as `spread` says: this node scores its part with its ranks, and the
/// parts are summed over the nodes into the whole table.
pub fn score_spread<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    max_pairs: usize,
    spread: Spread<'_>,
    device: &B::Device,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<(f64, f64)>, TrainError> {
    let Spread { ranks, node, sum } = spread;
    let part = score_node_share(model, pairs, max_pairs, ranks, node, device, on_batch)?;
    match sum {
        Some(sum) => sum(part),
        None => Ok(part),
    }
}

/// [`score_all`] as node `node` of `nodes` computes its part: the same batches, cut into
/// `nodes` contiguous runs, this node scoring its own run and leaving every other pair at
/// `(0, 0)`, so that the nodes' tables summed are [`score_all`]'s, bit for bit.
pub fn score_node_share<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    max_pairs: usize,
    ranks: usize,
    (node, nodes): (usize, usize),
    device: &B::Device,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<(f64, f64)>, TrainError> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| (pairs[i].prompt.len(), pairs[i].max_len()));
    let batches = scoring_batches(pairs, &order, max_pairs);
    let own = &batches[shares(batches.len(), nodes.max(1))[node].clone()];
    let scored = score_batches(model, pairs, own, ranks, device, on_batch)?;
    let mut out = vec![(0.0, 0.0); pairs.len()];
    for (batch, sums) in own.iter().zip(scored) {
        for (&i, sums) in batch.iter().zip(sums) {
            out[i] = sums;
        }
    }
    Ok(out)
}

/// `order` (indices into `pairs`) cut into consecutive batches of at most `max_pairs` pairs and
/// [`SCORING_TOKENS`] tokens; a pair over the budget alone is a batch of its own.
pub fn scoring_batches<'o>(
    pairs: &[TokenizedPair],
    order: &'o [usize],
    max_pairs: usize,
) -> Vec<&'o [usize]> {
    let tokens = |batch: &[usize]| {
        let longest = |f: fn(&TokenizedPair) -> usize| batch.iter().map(|&i| f(&pairs[i])).max();
        let prompt = longest(|p| p.prompt.len()).unwrap_or(0);
        let response = longest(|p| p.chosen.len().max(p.rejected.len())).unwrap_or(0);
        batch.len() * (prompt + 2 * response)
    };
    runs_within(order.len(), max_pairs, SCORING_TOKENS, |run| {
        tokens(&order[run])
    })
    .into_iter()
    .map(|run| &order[run])
    .collect()
}

/// `0..len` cut into consecutive runs of at most `max_items` items whose `cost` stays within
/// `budget` (a single item over it is a run of its own), greedily from the start.
pub fn runs_within(
    len: usize,
    max_items: usize,
    budget: usize,
    cost: impl Fn(Range<usize>) -> usize,
) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for end in 2..=len {
        if end - start > 1 && (end - start > max_items.max(1) || cost(start..end) > budget) {
            runs.push(start..end - 1);
            start = end - 1;
        }
    }
    if start < len {
        runs.push(start..len);
    }
    runs
}

/// `(log π(y_w|x), log π(y_l|x))` of every pair of `chunk` under `model`, in one batch with
/// each prompt computed once.
pub fn pair_logp_sums<'p, B: AttentionBackend>(
    model: &CausalLm<B>,
    chunk: impl IntoIterator<Item = &'p TokenizedPair>,
    device: &B::Device,
) -> Result<Vec<(f64, f64)>, TrainError> {
    let rows: Vec<PairRow<'_>> = chunk.into_iter().map(pair_row).collect();
    let (chosen, rejected) = score_pairs(model, &rows, device)?;
    let values = |t: burn::tensor::Tensor<B, 1>| t.into_data().iter::<f64>().collect::<Vec<f64>>();
    Ok(values(chosen.sum)
        .into_iter()
        .zip(values(rejected.sum))
        .collect())
}

/// A pair as `ropo-models` scores it.
pub fn pair_row(pair: &TokenizedPair) -> PairRow<'_> {
    PairRow {
        prompt: &pair.prompt,
        chosen: &pair.chosen,
        rejected: &pair.rejected,
    }
}

/// `(log π(y_w|x), log π(y_l|x))` of the pairs of every batch of `batches` (indices into
/// `pairs`) under `model`, in batch order, on `ranks` ranks. `on_batch(done)` is called on the
/// calling thread with the pairs scored so far by all ranks.
pub fn score_batches<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    batches: &[&[usize]],
    ranks: usize,
    device: &B::Device,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<(f64, f64)>>, TrainError> {
    let score = |model: &CausalLm<B>, batch: &[usize], device: &B::Device| {
        pair_logp_sums(model, batch.iter().map(|&i| &pairs[i]), device)
    };
    let runs = shares(batches.len(), ranks.clamp(1, batches.len().max(1)));
    std::thread::scope(|scope| {
        let (progress, scored) = mpsc::channel::<usize>();
        let others: Vec<_> = runs[1..]
            .iter()
            .enumerate()
            .map(|(index, run)| {
                let device = rank_device(device, index + 1);
                let model = model.clone().fork(&device);
                let (run, progress) = (&batches[run.clone()], progress.clone());
                scope.spawn(move || {
                    run.iter()
                        .map(|batch| {
                            let sums = score(&model, batch, &device)?;
                            let _ = progress.send(batch.len());
                            Ok(sums)
                        })
                        .collect::<Result<Vec<_>, TrainError>>()
                })
            })
            .collect();
        drop(progress);
        let mut done = 0;
        let mut all = Vec::with_capacity(batches.len());
        for batch in &batches[runs[0].clone()] {
            all.push(score(model, batch, device)?);
            done += batch.len() + scored.try_iter().sum::<usize>();
            on_batch(done);
        }
        for count in scored {
            done += count;
            on_batch(done);
        }
        for (index, rank) in others.into_iter().enumerate() {
            let run = rank.join().map_err(|_| TrainError::Peer {
                rank: index + 1,
                message: "died while scoring pairs".into(),
            })??;
            all.extend(run);
        }
        Ok(all)
    })
}

/// `len` items in `ranks` contiguous shares whose sizes differ by at most one, the larger ones
/// first.
pub(crate) fn shares(len: usize, ranks: usize) -> Vec<Range<usize>> {
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

/// The device of rank `rank`: the `rank`-th device of `first`'s kind after it (GPU `first +
/// rank`; the CPU backend has one device, which every rank shares).
pub(crate) fn rank_device<D: Device>(first: &D, rank: usize) -> D {
    let id = first.to_id();
    D::from_id(DeviceId {
        type_id: id.type_id,
        index_id: id.index_id + rank as u16,
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::backend::Backend;
    use ropo_data::gold::GoldTask;
    use ropo_models::{config::ModelConfig, llama::LlamaConfig};

    use super::*;

    #[test]
    fn shares_cover_the_batch_contiguously_and_evenly() {
        assert_eq!(shares(8, 2), vec![0..4, 4..8]);
        assert_eq!(shares(10, 4), vec![0..3, 3..6, 6..8, 8..10]);
        assert_eq!(shares(3, 3), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn scoring_batches_keep_to_the_token_budget_and_the_pair_cap_in_order() {
        let pair = |prompt: usize, response: usize| TokenizedPair {
            prompt: vec![1; prompt],
            chosen: vec![2; response],
            rejected: vec![3; response / 2],
        };
        // 40 short pairs (16 a batch), then 6 pairs of 100 + 2 × 700 tokens (5 fit in 8192),
        // then one over the budget alone.
        let pairs: Vec<TokenizedPair> = (0..40)
            .map(|_| pair(10, 10))
            .chain((0..6).map(|_| pair(100, 700)))
            .chain([pair(5000, 4000)])
            .collect();
        let order: Vec<usize> = (0..pairs.len()).collect();
        let batches = scoring_batches(&pairs, &order, 16);
        let sizes: Vec<usize> = batches.iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![16, 16, 8, 5, 1, 1], "{sizes:?}");
        assert_eq!(batches.concat(), order);
    }

    #[test]
    fn any_number_of_ranks_scores_every_batch_as_one_rank_does() {
        let device = Default::default();
        Flex::seed(&device, 3);
        let task = GoldTask::default();
        let config = LlamaConfig::new(task.vocab_size(), 32, 64, 2, 2, task.sequence_length());
        let model = ModelConfig::Llama(config).init::<Flex>(&device);
        let pairs = task.pairs(23, 1);
        let order: Vec<usize> = (0..pairs.len()).rev().collect();
        let batches: Vec<&[usize]> = order.chunks(4).collect();
        let one = score_batches(&model, &pairs, &batches, 1, &device, &mut |_| {}).unwrap();
        assert_eq!(one.iter().map(Vec::len).sum::<usize>(), 23);
        for ranks in [2, 3, 7, 40] {
            let mut reported = Vec::new();
            let many = score_batches(&model, &pairs, &batches, ranks, &device, &mut |done| {
                reported.push(done)
            })
            .unwrap();
            assert_eq!(many, one, "{ranks} ranks");
            assert_eq!(reported.last(), Some(&23), "{ranks} ranks");
            assert!(reported.windows(2).all(|w| w[0] < w[1]), "{reported:?}");
        }
    }

    #[test]
    fn the_nodes_shares_summed_are_one_nodes_table_bit_for_bit() {
        let device = Default::default();
        Flex::seed(&device, 5);
        let task = GoldTask::default();
        let config = LlamaConfig::new(task.vocab_size(), 32, 64, 2, 2, task.sequence_length());
        let model = ModelConfig::Llama(config).init::<Flex>(&device);
        let pairs = task.pairs(37, 2);
        let one = score_all(&model, &pairs, 4, 1, &device, &mut |_| {}).unwrap();
        for nodes in [2, 3, 20] {
            let mut summed = vec![(0.0, 0.0); pairs.len()];
            let mut scored = 0;
            for node in 0..nodes {
                let share =
                    score_node_share(&model, &pairs, 4, 2, (node, nodes), &device, &mut |_| {})
                        .unwrap();
                scored += share.iter().filter(|s| **s != (0.0, 0.0)).count();
                for (total, (chosen, rejected)) in summed.iter_mut().zip(share) {
                    // As the all-reduce sums them: in f32, each pair's values from one node.
                    total.0 = f64::from(total.0 as f32 + chosen as f32);
                    total.1 = f64::from(total.1 as f32 + rejected as f32);
                }
            }
            assert_eq!(
                scored,
                pairs.len(),
                "{nodes} nodes: a pair scored twice or never"
            );
            assert_eq!(summed, one, "{nodes} nodes");
        }
    }
}
