//! Scoring preference pairs with the prompt computed once: the prompt's keys and values are
//! computed in one forward and both responses attend to them, instead of running the prompt
//! twice (once before the chosen, once before the rejected response).

use burn::tensor::{backend::Backend, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::{
    attention::{AttentionBackend, AttentionMask},
    family::LayerPositions,
    layer_stages::{run_stages, LayerStages},
    logprobs::ResponseLogps,
    CausalLm, ModelError, ScoreRow,
};

/// One preference pair to score: a non-empty prompt and two responses.
#[derive(Debug, Clone, Copy)]
pub struct PairRow<'a> {
    /// Prompt token ids (conditioning only).
    pub prompt: &'a [u32],
    /// Preferred response token ids.
    pub chosen: &'a [u32],
    /// Dispreferred response token ids.
    pub rejected: &'a [u32],
}

/// Log-probs of the chosen and the rejected responses of every pair, each `[pairs]`, equal
/// (to float rounding) to scoring `prompt + chosen` and `prompt + rejected` separately: the
/// stages of [`PairStages`] straight through.
pub fn score_pairs<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[PairRow<'_>],
    device: &B::Device,
) -> Result<(ResponseLogps<B>, ResponseLogps<B>), ModelError> {
    Ok(run_stages(model, &PairStages::new(model, pairs, device)?))
}

/// A batch of pairs as [`LayerStages`], with the prompt computed once.
///
/// The prompts run once, left-padded to a common length `P` so every prompt ends in the last
/// column `[pairs, P]`; at each layer their keys and values are repeated for the two responses,
/// which run as one right-padded batch `[2·pairs, R]` attending to them with their true
/// positions. The output head and its log-softmax run on the real response tokens alone
/// (padding-free, as TRL's `padding_free`), whose log-probs are summed into their rows. The
/// head stage gives the chosen then the rejected responses' log-probs, each `[pairs]`.
pub struct PairStages<B: Backend> {
    pairs: usize,
    prompt_ids: Tensor<B, 2, Int>,
    prompt_positions: LayerPositions<B>,
    response_ids: Tensor<B, 2, Int>,
    response_positions: LayerPositions<B>,
    /// Where the real response tokens sit in `[2·pairs · R]`, and the row each belongs to.
    scored: Option<(Tensor<B, 1, Int>, Tensor<B, 1, Int>)>,
    counts: Tensor<B, 1>,
}

impl<B: AttentionBackend> PairStages<B> {
    /// The stages of scoring `pairs` with `model`, after the checks of plain scoring.
    pub fn new(
        model: &CausalLm<B>,
        pairs: &[PairRow<'_>],
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        check(model, pairs)?;
        let n = pairs.len();
        let prompt_width = pairs.iter().map(|p| p.prompt.len()).max().unwrap_or(0);
        let responses: Vec<&[u32]> = pairs
            .iter()
            .map(|p| p.chosen)
            .chain(pairs.iter().map(|p| p.rejected))
            .collect();
        let response_width = responses.iter().map(|r| r.len()).max().unwrap_or(0).max(1);

        let mut prompt_ids = Vec::with_capacity(n * prompt_width);
        let mut prompt_valid = Vec::with_capacity(n);
        for pair in pairs {
            let pad = prompt_width - pair.prompt.len();
            prompt_ids.extend(std::iter::repeat_n(0, pad));
            prompt_ids.extend(pair.prompt.iter().map(|t| i64::from(*t)));
            prompt_valid.push((0..prompt_width).map(|i| i >= pad).collect::<Vec<bool>>());
        }
        let prompt_mask = if pairs.iter().all(|p| p.prompt.len() == prompt_width) {
            AttentionMask::right_padded(n, prompt_width, device)
        } else {
            AttentionMask::causal(&prompt_valid, 0, prompt_width, device)
        };

        let mut response_ids = Vec::with_capacity(2 * n * response_width);
        let mut key_valid = Vec::with_capacity(2 * n);
        let mut positions = Vec::new();
        let mut owners = Vec::new();
        for (row, response) in responses.iter().enumerate() {
            let pad = response_width - response.len();
            response_ids.extend(response.iter().map(|t| i64::from(*t)));
            response_ids.extend(std::iter::repeat_n(0, pad));
            positions.extend((0..response.len()).map(|t| (row * response_width + t) as i64));
            owners.extend(std::iter::repeat_n(row as i64, response.len()));
            let mut valid = prompt_valid[row % n].clone();
            valid.extend((0..response_width).map(|i| i < response.len()));
            key_valid.push(valid);
        }
        let response_mask = AttentionMask::causal(&key_valid, prompt_width, response_width, device);
        let ids = |values: Vec<i64>| {
            let len = values.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(values, [len]), device)
        };
        let scored = (!positions.is_empty()).then(|| (ids(positions), ids(owners)));
        let counts: Vec<f32> = responses.iter().map(|r| r.len() as f32).collect();
        let family = model.family();
        Ok(Self {
            pairs: n,
            prompt_ids: ids(prompt_ids).reshape([n, prompt_width]),
            prompt_positions: family.positions(&prompt_mask, device),
            response_ids: ids(response_ids).reshape([2 * n, response_width]),
            response_positions: family.positions(&response_mask, device),
            scored,
            counts: Tensor::from_data(TensorData::new(counts, [2 * n]), device),
        })
    }
}

impl<B: AttentionBackend> LayerStages<B> for PairStages<B> {
    type Output = (ResponseLogps<B>, ResponseLogps<B>);

    /// The prompts' and the responses' embeddings.
    fn embed(&self, model: &CausalLm<B>) -> Vec<Tensor<B, 3>> {
        let family = model.family();
        vec![
            family.embed(self.prompt_ids.clone(), &self.prompt_positions.mask),
            family.embed(self.response_ids.clone(), &self.response_positions.mask),
        ]
    }

    /// Layer `index` on the prompts, then on the responses attending to the prompts' keys and
    /// values (repeated once for the chosen, once for the rejected responses).
    fn layer(
        &self,
        model: &CausalLm<B>,
        index: usize,
        hidden: Vec<Tensor<B, 3>>,
    ) -> Vec<Tensor<B, 3>> {
        let family = model.family();
        let [prompts, responses] = segments(hidden);
        let mut cache = model.new_cache();
        let layer = index..index + 1;
        let prompts = family.layers(
            layer.clone(),
            prompts,
            &self.prompt_positions,
            Some(&mut cache),
        );
        let mut cache = cache.repeat_batch(2);
        let responses = family.layers(layer, responses, &self.response_positions, Some(&mut cache));
        vec![prompts, responses]
    }

    /// Each response's summed, mean and count of log-probs: column 0 of a response is predicted
    /// by its prompt's last position, column `t ≥ 1` by the response's position `t − 1`.
    fn head(&self, model: &CausalLm<B>, hidden: Vec<Tensor<B, 3>>) -> Self::Output {
        let family = model.family();
        let [prompts, responses] = segments(hidden);
        let (n, [_, prompt_width, _], [_, response_width, width]) =
            (self.pairs, prompts.dims(), responses.dims());
        let device = responses.device();
        let last_prompt = family.final_norm(prompts.narrow(1, prompt_width - 1, 1));
        let first = Tensor::cat(vec![last_prompt.clone(), last_prompt], 0);
        let predictors = if response_width == 1 {
            first
        } else {
            let responses = family.final_norm(responses.narrow(1, 0, response_width - 1));
            Tensor::cat(vec![first, responses], 1)
        };
        let sum = Tensor::<B, 1>::zeros([2 * n], &device);
        let sum = match &self.scored {
            None => sum,
            Some((positions, owners)) => {
                let scored = positions.dims()[0];
                let predictors = predictors
                    .reshape([2 * n * response_width, width])
                    .select(0, positions.clone());
                let targets = self
                    .response_ids
                    .clone()
                    .reshape([2 * n * response_width])
                    .select(0, positions.clone());
                let token_logps = model
                    .target_logps(predictors.unsqueeze_dim(0), targets.unsqueeze_dim(0))
                    .reshape([scored]);
                sum.select_assign(0, owners.clone(), token_logps, IndexingUpdateOp::Add)
            }
        };
        let count = self.counts.clone();
        let mean = sum.clone() / count.clone().clamp_min(1.0);
        let half = |t: Tensor<B, 1>, start: usize| t.narrow(0, start, n);
        (
            ResponseLogps {
                sum: half(sum.clone(), 0),
                mean: half(mean.clone(), 0),
                count: half(count.clone(), 0),
            },
            ResponseLogps {
                sum: half(sum, n),
                mean: half(mean, n),
                count: half(count, n),
            },
        )
    }
}

/// The prompts' and the responses' hidden states.
fn segments<B: Backend>(hidden: Vec<Tensor<B, 3>>) -> [Tensor<B, 3>; 2] {
    hidden
        .try_into()
        .unwrap_or_else(|_| unreachable!("a pair batch has two segments"))
}

/// The checks of plain scoring (non-empty batch and prompts, ids in the vocabulary, within the
/// context), applied to both sequences of every pair.
fn check<B: Backend>(model: &CausalLm<B>, pairs: &[PairRow<'_>]) -> Result<(), ModelError> {
    let rows: Vec<ScoreRow<'_>> = pairs
        .iter()
        .flat_map(|p| {
            [p.chosen, p.rejected].map(|response| ScoreRow {
                prompt: p.prompt,
                response,
            })
        })
        .collect();
    crate::logprobs::checked_width(model, &rows).map(drop)
}
