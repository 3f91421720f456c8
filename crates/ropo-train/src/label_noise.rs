//! How a grid corrupts its training labels at each rate η: symmetric flips, the noise ROPO's
//! analysis covers; a Bradley–Terry judge of a known reward, as often wrong but wrong mostly
//! where the two responses are close (the practical noise of human and model judges); or a
//! judge who prefers longer responses, wrong only where the better response is the shorter.

use ropo_data::noise::{
    bradley_terry_flips, bradley_terry_temperature, length_judge_flips, symmetric_flips,
};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The noise model a config names (`noise_model`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseModel {
    /// Each label flipped independently with probability η.
    #[default]
    Symmetric,
    /// A Bradley–Terry judge of the gold reward: pair `i` keeps its label with probability
    /// σ(Δrᵢ / T), with `T` solved so that the expected share of flipped labels is η.
    BradleyTerry,
    /// A judge who, on a random share of the pairs, labels the longer response chosen, the
    /// share solved so that the expected share of flipped labels is η (needs η at most the
    /// share of pairs whose chosen response is the shorter).
    LengthJudge,
}

/// A noise model ready to draw flips for one set of pairs.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelNoise {
    /// Each label flipped with probability η.
    Symmetric,
    /// A Bradley–Terry judge of these per-pair margins (chosen's reward minus rejected's,
    /// positive for the clean labels).
    BradleyTerry(Vec<f64>),
    /// A length-preferring judge of pairs with these `(chosen, rejected)` response lengths.
    LengthJudge(Vec<(usize, usize)>),
}

impl LabelNoise {
    /// Which of `n` pairs are flipped at rate `eta`, drawn from `seed`.
    pub fn flips(&self, n: usize, eta: f64, seed: u64) -> Result<Vec<bool>, TrainError> {
        match self {
            Self::Symmetric => Ok(symmetric_flips(n, eta, seed)?),
            Self::BradleyTerry(_) if eta == 0.0 => Ok(vec![false; n]),
            Self::BradleyTerry(margins) => {
                if margins.len() != n {
                    return Err(TrainError::Config(format!(
                        "Bradley-Terry noise has {} margins for {n} pairs",
                        margins.len()
                    )));
                }
                let temperature = bradley_terry_temperature(margins, eta)?;
                Ok(bradley_terry_flips(margins, temperature, seed)?)
            }
            Self::LengthJudge(lengths) if lengths.len() != n => Err(TrainError::Config(format!(
                "the length judge has {} lengths for {n} pairs",
                lengths.len()
            ))),
            Self::LengthJudge(lengths) => Ok(length_judge_flips(lengths, eta, seed)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_models_flip_about_the_asked_share_and_nothing_at_zero() {
        let margins: Vec<f64> = (0..4000).map(|i| 0.25 * (1 + i % 4) as f64).collect();
        let lengths: Vec<(usize, usize)> = (0..4000).map(|i| (1 + i % 3, 2)).collect();
        for model in [
            LabelNoise::Symmetric,
            LabelNoise::BradleyTerry(margins),
            LabelNoise::LengthJudge(lengths),
        ] {
            assert_eq!(model.flips(4000, 0.0, 1).unwrap(), vec![false; 4000]);
            let flips = model.flips(4000, 0.2, 1).unwrap();
            let share = flips.iter().filter(|f| **f).count() as f64 / 4000.0;
            assert!((share - 0.2).abs() < 0.03, "{model:?}: {share}");
            assert_eq!(flips, model.flips(4000, 0.2, 1).unwrap());
        }
    }
}
