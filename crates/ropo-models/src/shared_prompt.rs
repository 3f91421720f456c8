//! Scoring preference pairs with the prompt computed once: the prompt's keys and values are
//! computed in one forward and both responses attend to them, instead of running the prompt
//! twice (once before the chosen, once before the rejected response).

use burn::tensor::{backend::Backend, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::{
    attention::{AttentionBackend, AttentionMask},
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
/// (to float rounding) to scoring `prompt + chosen` and `prompt + rejected` separately.
///
/// The prompts run once, left-padded to a common length `P` so every prompt ends in the last
/// column `[pairs, P]`; their cached keys and values are repeated for the two responses, which
/// run as one right-padded batch `[2·pairs, R]` attending to them with their true positions.
/// The output head and its log-softmax run on the real response tokens alone (padding-free,
/// as TRL's `padding_free`), whose log-probs are summed into their rows.
pub fn score_pairs<B: AttentionBackend>(
    model: &CausalLm<B>,
    pairs: &[PairRow<'_>],
    device: &B::Device,
) -> Result<(ResponseLogps<B>, ResponseLogps<B>), ModelError> {
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
    let prompt_ids =
        Tensor::<B, 2, Int>::from_data(TensorData::new(prompt_ids, [n, prompt_width]), device);
    let mut cache = model.new_cache();
    let last_prompt_hidden = model
        .hidden(prompt_ids, &prompt_mask, Some(&mut cache))
        .narrow(1, prompt_width - 1, 1);
    let mut cache = cache.repeat_batch(2);

    let mut response_ids = Vec::with_capacity(2 * n * response_width);
    let mut key_valid = Vec::with_capacity(2 * n);
    // Padding-free head: the positions of real response tokens in `[2·pairs · R]` and the row
    // each belongs to, so that the head and its log-softmax run on them alone.
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
    let counts: Vec<f32> = responses.iter().map(|r| r.len() as f32).collect();
    let response_ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(response_ids, [2 * n, response_width]),
        device,
    );
    let response_mask = AttentionMask::causal(&key_valid, prompt_width, response_width, device);
    // Column 0 of every response is predicted by the prompt's last position, column t ≥ 1 by
    // the response's position t − 1.
    let response_hidden = model.hidden(response_ids.clone(), &response_mask, Some(&mut cache));
    let first = Tensor::cat(vec![last_prompt_hidden.clone(), last_prompt_hidden], 0);
    let predictors = if response_width == 1 {
        first
    } else {
        Tensor::cat(
            vec![first, response_hidden.narrow(1, 0, response_width - 1)],
            1,
        )
    };
    let sum = Tensor::<B, 1>::zeros([2 * n], device);
    let sum = if positions.is_empty() {
        sum
    } else {
        let scored = positions.len();
        let positions =
            Tensor::<B, 1, Int>::from_data(TensorData::new(positions, [scored]), device);
        let owners = Tensor::<B, 1, Int>::from_data(TensorData::new(owners, [scored]), device);
        let width = predictors.dims()[2];
        let predictors = predictors
            .reshape([2 * n * response_width, width])
            .select(0, positions.clone());
        let targets = response_ids
            .reshape([2 * n * response_width])
            .select(0, positions);
        let token_logps = model
            .target_logps(predictors.unsqueeze_dim(0), targets.unsqueeze_dim(0))
            .reshape([scored]);
        sum.select_assign(0, owners, token_logps, IndexingUpdateOp::Add)
    };
    let count = Tensor::<B, 1>::from_data(TensorData::new(counts, [2 * n]), device);
    let mean = sum.clone() / count.clone().clamp_min(1.0);
    let half = |t: Tensor<B, 1>, start: usize| t.narrow(0, start, n);
    Ok((
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
    ))
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
