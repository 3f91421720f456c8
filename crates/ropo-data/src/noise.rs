//! Seeded label noise. Every noisy dataset carries its flip mask, so a trainer can report how
//! well it finds the flips.

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{pair::Preference, DataError};

/// Pairs with some labels flipped, and which ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Noisy<P> {
    /// The pairs as a trainer sees them.
    pub pairs: Vec<P>,
    /// `flipped[i]`: pair `i`'s label was flipped (its `chosen` is the truly worse response).
    pub flipped: Vec<bool>,
}

/// Flips each label independently with probability `rate` (symmetric noise), 0 ≤ rate < ½.
pub fn symmetric<P: Preference>(
    pairs: Vec<P>,
    rate: f64,
    seed: u64,
) -> Result<Noisy<P>, DataError> {
    if !(0.0..0.5).contains(&rate) {
        return Err(DataError::InvalidParameter {
            name: "noise rate",
            value: rate,
            requirement: "symmetric noise needs 0 <= rate < 0.5",
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let flipped: Vec<bool> = pairs.iter().map(|_| rng.random_bool(rate)).collect();
    Ok(apply(pairs, flipped))
}

/// Flips exactly the pairs marked in `flipped`.
pub fn apply<P: Preference>(pairs: Vec<P>, flipped: Vec<bool>) -> Noisy<P> {
    let pairs = pairs
        .into_iter()
        .zip(&flipped)
        .map(|(pair, flip)| if *flip { pair.swapped() } else { pair })
        .collect();
    Noisy { pairs, flipped }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TextPair;

    fn pairs(n: usize) -> Vec<TextPair> {
        (0..n)
            .map(|i| TextPair {
                prompt: format!("p{i}"),
                chosen: "good".into(),
                rejected: "bad".into(),
            })
            .collect()
    }

    #[test]
    fn symmetric_noise_flips_the_asked_fraction() {
        let noisy = symmetric(pairs(10_000), 0.2, 1).unwrap();
        let flipped = noisy.flipped.iter().filter(|f| **f).count() as f64 / 10_000.0;
        assert!((flipped - 0.2).abs() <= 0.015, "{flipped}");
        for (pair, flip) in noisy.pairs.iter().zip(&noisy.flipped) {
            assert_eq!(pair.chosen == "bad", *flip);
        }
    }

    #[test]
    fn same_seed_same_flips_other_seed_other_flips() {
        let a = symmetric(pairs(1000), 0.3, 7).unwrap().flipped;
        assert_eq!(a, symmetric(pairs(1000), 0.3, 7).unwrap().flipped);
        assert_ne!(a, symmetric(pairs(1000), 0.3, 8).unwrap().flipped);
    }

    #[test]
    fn rates_outside_zero_to_half_are_errors() {
        for rate in [-0.1, 0.5, 0.7, f64::NAN] {
            assert!(matches!(
                symmetric(pairs(3), rate, 0),
                Err(DataError::InvalidParameter { .. })
            ));
        }
        assert!(symmetric(pairs(3), 0.0, 0)
            .unwrap()
            .flipped
            .iter()
            .all(|f| !f));
    }
}
