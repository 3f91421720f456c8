//! The built-in gold-reward task: a small token language where the best response to a prompt
//! is known exactly, so alignment quality can be measured without a judge model.
//!
//! A prompt is `BOS x₁ … xₙ SEP` with symbols drawn uniformly from `symbols` values. A
//! response is `y₁ … yₙ EOS`. The ideal response has `yᵢ = (xᵢ + 1) mod symbols`: each
//! position must look back a fixed distance into the prompt, which a small transformer learns
//! from a few thousand examples. The gold reward `r*(x, y)` is the fraction of positions where
//! the response is right (a missing or extra token counts as wrong).
//!
//! The SFT data mixes good and bad responses: each position is right with probability
//! `sft_quality` and otherwise a uniform random symbol, so an SFT model is far from optimal
//! and preference learning has something to learn. Preference pairs are two such responses to
//! one prompt, labelled by `r*` (ties are dropped), before any label noise is added: the
//! noise is then the only reason a label is wrong, and every flip is recorded.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::TokenizedPair;

/// Beginning of a prompt.
pub const BOS: u32 = 0;
/// End of a response.
pub const EOS: u32 = 1;
/// Separates prompt from response.
pub const SEP: u32 = 2;
const FIRST_SYMBOL: u32 = 3;

/// The task's shape and how good its SFT data is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldTask {
    /// How many distinct symbols prompts and responses use.
    pub symbols: u32,
    /// Symbols per prompt (and per response).
    pub length: usize,
    /// Probability that an SFT response gets a position right on purpose.
    pub sft_quality: f64,
}

impl Default for GoldTask {
    fn default() -> Self {
        Self {
            symbols: 8,
            length: 4,
            sft_quality: 0.5,
        }
    }
}

impl GoldTask {
    /// Vocabulary size of the task's token language (BOS, EOS, SEP and the symbols).
    pub fn vocab_size(&self) -> usize {
        (FIRST_SYMBOL + self.symbols) as usize
    }

    /// Tokens of a prompt plus a full response.
    pub fn sequence_length(&self) -> usize {
        2 * self.length + 3
    }

    /// Checks that the task can make preference pairs; the message names the field. With fewer
    /// than 2 symbols, no positions or an `sft_quality` of 1, every two responses to a prompt
    /// tie, so [`GoldTask::pairs`] would never finish; an `sft_quality` outside [0, 1] is no
    /// probability.
    pub fn validate(&self) -> Result<(), String> {
        if self.symbols < 2 {
            return Err(format!("symbols = {} must be at least 2", self.symbols));
        }
        if self.length == 0 {
            return Err("length = 0 must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.sft_quality) {
            return Err(format!(
                "sft_quality = {} must be in [0, 1)",
                self.sft_quality
            ));
        }
        Ok(())
    }

    /// A random prompt `BOS x₁ … xₙ SEP`.
    pub fn prompt(&self, rng: &mut impl Rng) -> Vec<u32> {
        let mut prompt = vec![BOS];
        prompt.extend((0..self.length).map(|_| FIRST_SYMBOL + rng.random_range(0..self.symbols)));
        prompt.push(SEP);
        prompt
    }

    /// The ideal response to `prompt` (without EOS).
    pub fn ideal(&self, prompt: &[u32]) -> Vec<u32> {
        let x: Vec<u32> = prompt
            .iter()
            .filter(|t| **t >= FIRST_SYMBOL)
            .map(|t| t - FIRST_SYMBOL)
            .collect();
        (0..x.len())
            .map(|i| FIRST_SYMBOL + (x[i] + 1) % self.symbols)
            .collect()
    }

    /// `r*(x, y)` ∈ [0, 1]: the fraction of the ideal response's positions `response` gets
    /// right, reading up to the first EOS.
    pub fn reward(&self, prompt: &[u32], response: &[u32]) -> f64 {
        let ideal = self.ideal(prompt);
        let body = response.split(|t| *t == EOS).next().unwrap_or(&[]);
        let right = ideal.iter().zip(body).filter(|(a, b)| a == b).count();
        let extra = body.len().saturating_sub(ideal.len());
        right.saturating_sub(extra) as f64 / ideal.len().max(1) as f64
    }

    /// A response as the SFT data writes them: each position right with probability
    /// `sft_quality`, else a uniform random symbol; ends with EOS.
    pub fn sft_response(&self, prompt: &[u32], rng: &mut impl Rng) -> Vec<u32> {
        let mut response: Vec<u32> = self
            .ideal(prompt)
            .into_iter()
            .map(|right| {
                if rng.random_bool(self.sft_quality) {
                    right
                } else {
                    FIRST_SYMBOL + rng.random_range(0..self.symbols)
                }
            })
            .collect();
        response.push(EOS);
        response
    }

    /// `n` SFT examples `(prompt, response)`, from `seed`.
    pub fn sft_examples(&self, n: usize, seed: u64) -> Vec<(Vec<u32>, Vec<u32>)> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let prompt = self.prompt(&mut rng);
                let response = self.sft_response(&prompt, &mut rng);
                (prompt, response)
            })
            .collect()
    }

    /// `n` correctly labelled pairs: two SFT-style responses per prompt, the one with the
    /// higher gold reward as `chosen` (prompts whose two responses tie are redrawn).
    pub fn pairs(&self, n: usize, seed: u64) -> Vec<TokenizedPair> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut pairs = Vec::with_capacity(n);
        while pairs.len() < n {
            let prompt = self.prompt(&mut rng);
            let a = self.sft_response(&prompt, &mut rng);
            let b = self.sft_response(&prompt, &mut rng);
            let (ra, rb) = (self.reward(&prompt, &a), self.reward(&prompt, &b));
            if ra == rb {
                continue;
            }
            let (chosen, rejected) = if ra > rb { (a, b) } else { (b, a) };
            pairs.push(TokenizedPair {
                prompt,
                chosen,
                rejected,
            });
        }
        pairs
    }

    /// `n` prompts to generate from when evaluating, from `seed`.
    pub fn prompts(&self, n: usize, seed: u64) -> Vec<Vec<u32>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| self.prompt(&mut rng)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ideal_response_gets_full_reward_and_sft_responses_less() {
        let task = GoldTask::default();
        let prompt = vec![BOS, 3, 4, 10, 5, SEP];
        // x = [0, 1, 7, 2]: (x + 1) mod 8 = [1, 2, 0, 3], tokens 3 higher.
        assert_eq!(task.ideal(&prompt), [4, 5, 3, 6]);
        assert_eq!(task.reward(&prompt, &[4, 5, 3, 6, EOS]), 1.0);
        assert_eq!(task.reward(&prompt, &[4, 5, 9, 6, EOS]), 0.75);
        assert_eq!(task.reward(&prompt, &[4, 5, EOS]), 0.5);
        assert_eq!(task.reward(&prompt, &[4, 5, 3, 6, 7, EOS]), 0.75);
        let examples = task.sft_examples(4000, 1);
        let mean: f64 = examples.iter().map(|(p, r)| task.reward(p, r)).sum::<f64>() / 4000.0;
        // Right on purpose half the time, by chance 1/8 of the rest: 0.5 + 0.5/8.
        assert!((mean - 0.5625).abs() < 0.02, "{mean}");
    }

    #[test]
    fn pairs_are_labelled_by_the_gold_reward_and_reproducible() {
        let task = GoldTask::default();
        let pairs = task.pairs(500, 3);
        assert_eq!(pairs.len(), 500);
        for pair in &pairs {
            assert!(
                task.reward(&pair.prompt, &pair.chosen) > task.reward(&pair.prompt, &pair.rejected)
            );
            assert_eq!(
                pair.prompt.len() + pair.chosen.len(),
                task.sequence_length()
            );
        }
        assert_eq!(pairs, task.pairs(500, 3));
        assert_ne!(pairs, task.pairs(500, 4));
    }

    #[test]
    fn tasks_whose_pairs_always_tie_are_refused_by_field() {
        let task = GoldTask::default();
        assert_eq!(task.validate(), Ok(()));
        let cases = [
            (GoldTask { symbols: 1, ..task }, "symbols"),
            (GoldTask { length: 0, ..task }, "length"),
            (
                GoldTask {
                    sft_quality: 1.0,
                    ..task
                },
                "sft_quality",
            ),
            (
                GoldTask {
                    sft_quality: -0.1,
                    ..task
                },
                "sft_quality",
            ),
        ];
        for (bad, field) in cases {
            let message = bad.validate().expect_err(field);
            assert!(message.starts_with(field), "{message}");
        }
    }
}
