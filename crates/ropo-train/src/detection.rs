//! How well a policy's loss finds the flipped labels of its training pairs: every pair scored
//! by its loss under the policy (high loss: "this label looks wrong"), and the area under the
//! ROC curve of that score against the recorded flips. 0.5 is chance; 1 ranks every flipped
//! pair above every clean one. This is what the framework's filter relies on, measured
//! without choosing a threshold.

use ropo_core::LossConfig;
use ropo_models::{attention::AttentionBackend, CausalLm};

use crate::{
    eval::pair_losses, reference::PairReference, run::PreferenceSet, scoring::Spread, TrainError,
};

/// The AUC of `loss` under `policy` as a detector of `set`'s flipped labels; `None` when the
/// set has no flipped or no clean pair. Needs the set's reference log-probs as a table.
pub fn flip_detection_auc<B: AttentionBackend>(
    policy: &CausalLm<B>,
    set: &PreferenceSet,
    loss: &LossConfig,
    device: &B::Device,
) -> Result<Option<f64>, TrainError> {
    let PairReference::Table(table) = &set.reference else {
        return Err(TrainError::Config(
            "flip detection needs the pairs' reference log-probs as a table".into(),
        ));
    };
    let (_, losses) = pair_losses(
        policy,
        &set.pairs,
        table,
        loss,
        Spread::local(1),
        device,
        &mut |_| {},
    )?;
    Ok(auc(&losses, &set.flipped))
}

/// The probability that a random positive scores above a random negative (ties count ½):
/// the Mann–Whitney form of the ROC AUC, from mid-ranks. `None` without both classes.
pub fn auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let positives = positive.iter().filter(|p| **p).count();
    let negatives = positive.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && scores[order[end + 1]] == scores[order[start]] {
            end += 1;
        }
        let mid_rank = (start + end) as f64 / 2.0 + 1.0;
        rank_sum += mid_rank * order[start..=end].iter().filter(|&&i| positive[i]).count() as f64;
        start = end + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_reversed_and_tied_scores_give_one_zero_and_a_half() {
        let positive = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &positive), Some(1.0));
        assert_eq!(auc(&[0.8, 0.9, 0.1, 0.2], &positive), Some(0.0));
        assert_eq!(auc(&[0.5; 4], &positive), Some(0.5));
        assert_eq!(auc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn the_auc_counts_pairs_by_hand() {
        // Positives 0.4 and 0.9 against negatives 0.1, 0.4, 0.6: of the 6 pairs, 0.4 beats
        // 0.1 and ties 0.4 (½); 0.9 beats all three: (1 + ½ + 3) / 6 = 0.75.
        let scores = [0.1, 0.4, 0.6, 0.4, 0.9];
        let positive = [false, false, false, true, true];
        assert_eq!(auc(&scores, &positive), Some(0.75));
    }
}
