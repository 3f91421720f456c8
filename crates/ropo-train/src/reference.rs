//! Reference log-probs, computed once per dataset with the frozen starting model, so that
//! preference training holds one model in memory and runs one forward per step.

use burn::tensor::backend::Backend;
use ropo_data::{
    noise::{self, Noisy},
    TokenizedPair,
};
use ropo_models::{score, CausalLm, ScoreRow};

use crate::TrainError;

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

/// The training pairs as a run under symmetric noise `eta` sees them (seeded by `seed`),
/// with their reference log-probs exchanged wherever a label was flipped.
pub fn with_noise(
    pairs: &[TokenizedPair],
    refs: &[ReferenceLogps],
    eta: f64,
    seed: u64,
) -> Result<(Noisy<TokenizedPair>, Vec<ReferenceLogps>), TrainError> {
    let noisy = noise::symmetric(pairs.to_vec(), eta, 7919 * seed + 17)?;
    let refs = refs
        .iter()
        .zip(&noisy.flipped)
        .map(|(r, flip)| if *flip { r.swapped() } else { *r })
        .collect();
    Ok((noisy, refs))
}

/// Scores every pair with `model`, `batch_size` pairs per forward (chosen and rejected of a
/// batch in the same forward).
pub fn reference_logps<B: Backend>(
    model: &CausalLm<B>,
    pairs: &[TokenizedPair],
    batch_size: usize,
    device: &B::Device,
) -> Result<Vec<ReferenceLogps>, TrainError> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let rows = pair_rows(chunk.iter());
        let sums: Vec<f64> = score(model, &rows, device)?
            .sum
            .into_data()
            .iter::<f64>()
            .collect();
        let (chosen, rejected) = sums.split_at(chunk.len());
        out.extend(chosen.iter().zip(rejected).map(|(c, r)| ReferenceLogps {
            chosen: *c,
            rejected: *r,
        }));
    }
    Ok(out)
}

/// The score rows of a batch of pairs: every chosen response, then every rejected one.
pub fn pair_rows<'a>(pairs: impl Iterator<Item = &'a TokenizedPair> + Clone) -> Vec<ScoreRow<'a>> {
    let chosen = pairs.clone().map(|p| ScoreRow {
        prompt: &p.prompt,
        response: &p.chosen,
    });
    let rejected = pairs.map(|p| ScoreRow {
        prompt: &p.prompt,
        response: &p.rejected,
    });
    chosen.chain(rejected).collect()
}
