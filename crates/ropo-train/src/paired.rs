//! Paired comparisons over seeds. For one seed every method of a grid sees the same noise
//! draw, batch order and evaluation samples, so the difference of two methods' results on the
//! same seed removes what the seed alone does; its mean over seeds, with a percentile
//! bootstrap interval, says whether one method beats the other beyond the seed-to-seed spread.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Bootstrap resamples behind every interval.
pub const RESAMPLES: usize = 10_000;

/// The seed of the bootstrap's draws, so that a summary is the same every time it is made.
const BOOTSTRAP_SEED: u64 = 2404_04102;

/// The mean paired difference `method − baseline` over seeds, with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    /// Mean over seeds of the per-seed difference.
    pub mean: f64,
    /// 2.5th percentile of the bootstrap means.
    pub low: f64,
    /// 97.5th percentile of the bootstrap means.
    pub high: f64,
}

impl PairedDifference {
    /// The difference of `values` from `baseline`, both indexed by seed (equal lengths, at
    /// least one seed); the interval resamples the seeds with replacement [`RESAMPLES`]
    /// times. `None` when the lengths differ or there is no seed.
    pub fn of(values: &[f64], baseline: &[f64]) -> Option<Self> {
        if values.len() != baseline.len() || values.is_empty() {
            return None;
        }
        let differences: Vec<f64> = values.iter().zip(baseline).map(|(v, b)| v - b).collect();
        let n = differences.len();
        let mean = differences.iter().sum::<f64>() / n as f64;
        let mut rng = StdRng::seed_from_u64(BOOTSTRAP_SEED);
        let mut means: Vec<f64> = (0..RESAMPLES)
            .map(|_| {
                (0..n)
                    .map(|_| differences[rng.random_range(0..n)])
                    .sum::<f64>()
                    / n as f64
            })
            .collect();
        means.sort_by(f64::total_cmp);
        let at = |q: f64| means[((q * RESAMPLES as f64) as usize).min(RESAMPLES - 1)];
        Some(Self {
            mean,
            low: at(0.025),
            high: at(0.975),
        })
    }

    /// `+0.041 [+0.012, +0.070]`.
    pub fn display(&self) -> String {
        format!("{:+.3} [{:+.3}, {:+.3}]", self.mean, self.low, self.high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_difference_has_a_point_interval_at_that_difference() {
        let baseline = [0.70, 0.80, 0.65, 0.90];
        let values: Vec<f64> = baseline.iter().map(|b| b + 0.05).collect();
        let d = PairedDifference::of(&values, &baseline).unwrap();
        for x in [d.mean, d.low, d.high] {
            assert!((x - 0.05).abs() < 1e-12, "{d:?}");
        }
    }

    #[test]
    fn the_interval_holds_the_mean_and_narrows_with_more_seeds() {
        let spread = |n: usize| {
            let baseline = vec![0.5; n];
            let values: Vec<f64> = (0..n)
                .map(|i| 0.5 + 0.02 + if i % 2 == 0 { 0.03 } else { -0.03 })
                .collect();
            let d = PairedDifference::of(&values, &baseline).unwrap();
            assert!(d.low <= d.mean && d.mean <= d.high, "{d:?}");
            assert!((d.mean - 0.02).abs() < 1e-12);
            d.high - d.low
        };
        let (few, many) = (spread(4), spread(64));
        assert!(few > 2.0 * many, "{few} vs {many}");
        // With ±0.03 around +0.02, 64 seeds put the whole interval above 0.
        let values: Vec<f64> = (0..64)
            .map(|i| 0.52 + if i % 2 == 0 { 0.03 } else { -0.03 })
            .collect();
        assert!(PairedDifference::of(&values, &[0.5; 64]).unwrap().low > 0.0);
    }

    #[test]
    fn the_same_inputs_give_the_same_interval_and_mismatched_ones_none() {
        let (a, b) = ([0.1, 0.4, 0.3], [0.2, 0.1, 0.3]);
        assert_eq!(PairedDifference::of(&a, &b), PairedDifference::of(&a, &b));
        assert_eq!(PairedDifference::of(&a, &b[..2]), None);
        assert_eq!(PairedDifference::of(&[], &[]), None);
    }

    #[test]
    fn the_interval_matches_the_percentiles_of_a_hand_computed_bootstrap() {
        // Two seeds with differences 0 and 1: each resample mean is 0, ½ or 1 with
        // probabilities ¼, ½, ¼, so the 2.5th and 97.5th percentiles are 0 and 1.
        let d = PairedDifference::of(&[1.0, 2.0], &[1.0, 1.0]).unwrap();
        assert_eq!((d.mean, d.low, d.high), (0.5, 0.0, 1.0));
    }
}
