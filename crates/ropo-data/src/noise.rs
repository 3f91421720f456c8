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
    let flipped = symmetric_flips(pairs.len(), rate, seed)?;
    Ok(apply(pairs, flipped))
}

/// The flip mask [`symmetric`] draws for `n` pairs, without the pairs (to noise a file as it
/// streams past). The mask of the first `k` pairs does not depend on `n`.
pub fn symmetric_flips(n: usize, rate: f64, seed: u64) -> Result<Vec<bool>, DataError> {
    if !(0.0..0.5).contains(&rate) {
        return Err(DataError::InvalidParameter {
            name: "noise rate",
            value: rate,
            requirement: "symmetric noise needs 0 <= rate < 0.5",
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    Ok((0..n).map(|_| rng.random_bool(rate)).collect())
}

/// Length-biased labels, the bias of annotators (and reward models) who prefer longer answers:
/// each pair's longer response is labelled chosen with probability `p` (0 ≤ p ≤ 1), the
/// shorter one otherwise; pairs with responses of equal length keep their label. `flipped`
/// marks the pairs whose label now differs from the original one. Lengths are
/// [`Preference::response_lengths`] (bytes for text, tokens for token ids).
pub fn length_biased<P: Preference>(
    pairs: Vec<P>,
    p: f64,
    seed: u64,
) -> Result<Noisy<P>, DataError> {
    let flipped = length_biased_flips(pairs.iter().map(P::response_lengths), p, seed)?;
    Ok(apply(pairs, flipped))
}

/// The flip mask [`length_biased`] draws for pairs with these `(chosen, rejected)` response
/// lengths, without the pairs (to noise a file as it streams past).
pub fn length_biased_flips(
    lengths: impl IntoIterator<Item = (usize, usize)>,
    p: f64,
    seed: u64,
) -> Result<Vec<bool>, DataError> {
    if !(0.0..=1.0).contains(&p) {
        return Err(DataError::InvalidParameter {
            name: "length bias p",
            value: p,
            requirement: "a probability: 0 <= p <= 1",
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    Ok(lengths
        .into_iter()
        .map(|(chosen, rejected)| {
            let longer_chosen = rng.random_bool(p);
            chosen != rejected && (chosen > rejected) != longer_chosen
        })
        .collect())
}

/// A judge who prefers longer responses, wrong at rate `rate`: on a random share λ of the
/// pairs it picks the longer response, so only pairs whose chosen response is the shorter one
/// can flip, and λ = `rate` / (share of such pairs) makes the expected share of flipped labels
/// `rate`. Unlike [`length_biased_flips`] the judge keeps every other label, so its noise rate
/// can be set beside symmetric noise's. Lengths are `(chosen, rejected)` per pair. Errors: a
/// rate outside `[0, 1)`, or above the share of pairs whose chosen response is shorter (no
/// length judge can flip more).
pub fn length_judge_flips(
    lengths: &[(usize, usize)],
    rate: f64,
    seed: u64,
) -> Result<Vec<bool>, DataError> {
    if !(0.0..1.0).contains(&rate) {
        return Err(DataError::InvalidParameter {
            name: "length-judge noise rate",
            value: rate,
            requirement: "0 <= rate < 1",
        });
    }
    let shorter_chosen = lengths.iter().filter(|(c, r)| c < r).count();
    let reachable = shorter_chosen as f64 / lengths.len().max(1) as f64;
    if rate > reachable {
        return Err(DataError::InvalidParameter {
            name: "length-judge noise rate",
            value: rate,
            requirement: "at most the share of pairs whose chosen response is the shorter one",
        });
    }
    let judged = if rate == 0.0 { 0.0 } else { rate / reachable };
    let mut rng = StdRng::seed_from_u64(seed);
    Ok(lengths
        .iter()
        .map(|(chosen, rejected)| rng.random_bool(judged) && chosen < rejected)
        .collect())
}

/// Bradley–Terry relabelling: pair `i` keeps its label with probability
/// σ(`margins[i]` / `temperature`) and is flipped otherwise, where `margins[i]` is a score of
/// how much better the chosen response is (e.g. r(x, chosen) − r(x, rejected) under a reward
/// model). A small temperature follows the scores' sign; a large one flips half of the pairs.
/// Errors: a temperature that is not positive and finite, a margin that is not finite, or
/// not one margin per pair.
pub fn bradley_terry<P: Preference>(
    pairs: Vec<P>,
    margins: &[f64],
    temperature: f64,
    seed: u64,
) -> Result<Noisy<P>, DataError> {
    if margins.len() != pairs.len() {
        return Err(DataError::InvalidParameter {
            name: "number of Bradley-Terry margins",
            value: margins.len() as f64,
            requirement: "one margin per pair",
        });
    }
    let flipped = bradley_terry_flips(margins, temperature, seed)?;
    Ok(apply(pairs, flipped))
}

/// The flip mask [`bradley_terry`] draws for pairs with `margins`, without the pairs.
pub fn bradley_terry_flips(
    margins: &[f64],
    temperature: f64,
    seed: u64,
) -> Result<Vec<bool>, DataError> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(DataError::InvalidParameter {
            name: "Bradley-Terry temperature",
            value: temperature,
            requirement: "positive and finite",
        });
    }
    check_finite(margins)?;
    let mut rng = StdRng::seed_from_u64(seed);
    Ok(margins
        .iter()
        .map(|margin| !rng.random_bool(sigmoid(margin / temperature)))
        .collect())
}

/// The temperature at which [`bradley_terry`] flips the fraction `rate` of pairs with
/// `margins` in expectation, `mean σ(−mᵢ/T) = rate`: a judge as often wrong as symmetric
/// noise at that rate, whose mistakes fall on the pairs whose responses are closest.
/// Found by bisection on `log T` to 1e-9 relative; needs `0 < rate < ½` and positive, finite
/// margins (clean labels).
pub fn bradley_terry_temperature(margins: &[f64], rate: f64) -> Result<f64, DataError> {
    if !(rate > 0.0 && rate < 0.5) {
        return Err(DataError::InvalidParameter {
            name: "Bradley-Terry flip rate",
            value: rate,
            requirement: "0 < rate < 0.5",
        });
    }
    check_finite(margins)?;
    if let Some(&bad) = margins.iter().find(|m| **m <= 0.0) {
        return Err(DataError::InvalidParameter {
            name: "Bradley-Terry margin",
            value: bad,
            requirement: "positive (the clean label's margin) to solve for a flip rate",
        });
    }
    let expected = |log_t: f64| {
        let t = log_t.exp();
        margins.iter().map(|m| sigmoid(-m / t)).sum::<f64>() / margins.len().max(1) as f64
    };
    let (mut low, mut high) = (-30.0_f64, 30.0_f64);
    while high - low > 1e-9 {
        let middle = 0.5 * (low + high);
        if expected(middle) < rate {
            low = middle;
        } else {
            high = middle;
        }
    }
    Ok((0.5 * (low + high)).exp())
}

fn check_finite(margins: &[f64]) -> Result<(), DataError> {
    match margins.iter().find(|m| !m.is_finite()) {
        Some(&bad) => Err(DataError::InvalidParameter {
            name: "Bradley-Terry margin",
            value: bad,
            requirement: "finite",
        }),
        None => Ok(()),
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
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

    /// Pairs whose chosen response has `chosen_len[i]` bytes and rejected one byte.
    fn lengths(chosen_len: &[usize]) -> Vec<TextPair> {
        chosen_len
            .iter()
            .map(|&n| TextPair {
                prompt: String::new(),
                chosen: "x".repeat(n),
                rejected: "y".into(),
            })
            .collect()
    }

    #[test]
    fn symmetric_flips_match_symmetric_and_do_not_depend_on_the_count() {
        let flips = symmetric_flips(1000, 0.2, 3).unwrap();
        assert_eq!(flips, symmetric(pairs(1000), 0.2, 3).unwrap().flipped);
        assert_eq!(symmetric_flips(10, 0.2, 3).unwrap(), flips[..10]);
        assert!(symmetric_flips(3, 0.5, 3).is_err());
    }

    #[test]
    fn length_bias_labels_the_longer_response_chosen_with_probability_p() {
        // Half the pairs have the longer response chosen, half the shorter one.
        let sizes: Vec<usize> = (0..10_000)
            .map(|i| if i % 2 == 0 { 5 } else { 0 })
            .collect();
        let noisy = length_biased(lengths(&sizes), 0.8, 4).unwrap();
        let longer_chosen = noisy
            .pairs
            .iter()
            .filter(|pair| pair.chosen.len() > pair.rejected.len())
            .count() as f64
            / 10_000.0;
        assert!((longer_chosen - 0.8).abs() <= 0.015, "{longer_chosen}");
        for ((before, after), flip) in lengths(&sizes).iter().zip(&noisy.pairs).zip(&noisy.flipped)
        {
            assert_eq!(before.chosen != after.chosen, *flip);
        }
        assert_eq!(
            noisy.flipped,
            length_biased(lengths(&sizes), 0.8, 4).unwrap().flipped
        );
    }

    #[test]
    fn length_bias_extremes_are_deterministic_and_equal_lengths_keep_their_label() {
        let all_longer = length_biased(lengths(&[0, 3, 1]), 1.0, 0).unwrap();
        assert_eq!(all_longer.flipped, [true, false, false]);
        let all_shorter = length_biased(lengths(&[0, 3, 1]), 0.0, 0).unwrap();
        assert_eq!(all_shorter.flipped, [false, true, false]);
        for p in [-0.1, 1.1, f64::NAN] {
            assert!(matches!(
                length_biased(lengths(&[1]), p, 0),
                Err(DataError::InvalidParameter { .. })
            ));
        }
    }

    #[test]
    fn bradley_terry_flips_with_the_logistic_of_the_scaled_margin() {
        let n = 10_000;
        // σ(-ln 4) = 0.2: a fifth of the pairs should flip.
        let margins = vec![4f64.ln(); n];
        let noisy = bradley_terry(pairs(n), &margins, 1.0, 9).unwrap();
        let rate = noisy.flipped.iter().filter(|f| **f).count() as f64 / n as f64;
        assert!((rate - 0.2).abs() <= 0.015, "{rate}");
        assert_eq!(
            noisy.flipped,
            bradley_terry(pairs(n), &margins, 1.0, 9).unwrap().flipped
        );
        // Temperature scales the margin: a cold one follows the sign.
        let signs = [5.0, -5.0, 5.0];
        assert_eq!(
            bradley_terry(pairs(3), &signs, 1e-3, 0).unwrap().flipped,
            [false, true, false]
        );
        let hot = bradley_terry(pairs(n), &vec![1.0; n], 1e6, 1).unwrap();
        let rate = hot.flipped.iter().filter(|f| **f).count() as f64 / n as f64;
        assert!((rate - 0.5).abs() <= 0.02, "{rate}");
    }

    #[test]
    fn the_solved_temperature_flips_the_asked_rate_and_mostly_the_closest_pairs() {
        // One pair in four at each margin 0.25, 0.5, 0.75, 1 (the gold task's reward gaps).
        let margins: Vec<f64> = (0..20_000).map(|i| 0.25 * (1 + i % 4) as f64).collect();
        for rate in [0.05, 0.2, 0.4] {
            let t = bradley_terry_temperature(&margins, rate).unwrap();
            let expected: f64 =
                margins.iter().map(|m| sigmoid(-m / t)).sum::<f64>() / margins.len() as f64;
            assert!((expected - rate).abs() < 1e-6, "{rate}: {expected}");
            let flipped = bradley_terry_flips(&margins, t, 3).unwrap();
            let share = |gap: usize| {
                let of: Vec<bool> = (0..margins.len())
                    .filter(|i| i % 4 == gap)
                    .map(|i| flipped[i])
                    .collect();
                of.iter().filter(|f| **f).count() as f64 / of.len() as f64
            };
            let all = flipped.iter().filter(|f| **f).count() as f64 / margins.len() as f64;
            assert!((all - rate).abs() < 0.015, "{rate}: {all}");
            assert!(share(0) > share(3), "{rate}: {} vs {}", share(0), share(3));
        }
        for (margins, rate) in [(vec![1.0], 0.0), (vec![1.0], 0.5), (vec![0.0, 1.0], 0.2)] {
            assert!(bradley_terry_temperature(&margins, rate).is_err());
        }
    }

    #[test]
    fn bradley_terry_refuses_bad_temperatures_margins_and_counts() {
        for (margins, temperature) in [
            (vec![0.0; 3], 0.0),
            (vec![0.0; 3], -1.0),
            (vec![0.0; 3], f64::INFINITY),
            (vec![0.0, f64::NAN, 0.0], 1.0),
            (vec![0.0; 2], 1.0),
        ] {
            assert!(matches!(
                bradley_terry(pairs(3), &margins, temperature, 0),
                Err(DataError::InvalidParameter { .. })
            ));
        }
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

    #[test]
    fn the_length_judge_flips_the_asked_rate_only_where_chosen_is_shorter() {
        // A quarter of the pairs have the shorter response chosen; a tenth tie.
        let lengths: Vec<(usize, usize)> = (0..20_000)
            .map(|i| match i % 20 {
                0..=4 => (3, 9),
                5 | 6 => (4, 4),
                _ => (9, 3),
            })
            .collect();
        let flips = length_judge_flips(&lengths, 0.2, 5).unwrap();
        let share = flips.iter().filter(|f| **f).count() as f64 / 20_000.0;
        assert!((share - 0.2).abs() <= 0.01, "{share}");
        assert!(flips.iter().zip(&lengths).all(|(f, (c, r))| !f || c < r));
        assert_eq!(flips, length_judge_flips(&lengths, 0.2, 5).unwrap());
        assert_ne!(flips, length_judge_flips(&lengths, 0.2, 6).unwrap());
        assert_eq!(
            length_judge_flips(&lengths, 0.0, 5).unwrap(),
            vec![false; 20_000]
        );
        assert!(length_judge_flips(&lengths, 0.25, 5)
            .unwrap()
            .iter()
            .zip(&lengths)
            .all(|(f, (c, r))| *f == (c < r)));
        assert!(length_judge_flips(&lengths, 0.26, 5).is_err());
        assert!(length_judge_flips(&lengths, -0.1, 5).is_err());
    }
}
