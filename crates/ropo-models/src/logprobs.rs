//! Per-sequence log-probabilities of response tokens: what every preference loss consumes.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::{
    attention::{AttentionBackend, AttentionMask},
    family::LayerPositions,
    layer_stages::{run_stages, LayerStages},
    CausalLm, ModelError,
};

/// Summed and mean log-probability of each row's response tokens and how many there are, all
/// `[batch]`. The mean divides by at least one token, so empty responses give 0, not NaN.
#[derive(Debug, Clone)]
pub struct ResponseLogps<B: Backend> {
    /// `Σ log π(y_t | x, y_<t)` over response tokens, `[batch]`.
    pub sum: Tensor<B, 1>,
    /// `sum / max(count, 1)`, `[batch]`.
    pub mean: Tensor<B, 1>,
    /// Number of response tokens, `[batch]` (floats).
    pub count: Tensor<B, 1>,
}

/// One sequence to score: a non-empty prompt (starting with BOS where the model uses one) and
/// the response whose tokens are scored.
#[derive(Debug, Clone, Copy)]
pub struct ScoreRow<'a> {
    /// Prompt token ids (conditioning only, not scored).
    pub prompt: &'a [u32],
    /// Response token ids (scored).
    pub response: &'a [u32],
}

/// Scores every row in one forward pass over a right-padded batch: the stages of
/// [`ScoreStages`] straight through.
///
/// Padding sits after each row's last token and attention is causal, so it never reaches a
/// real position: a row scores the same alone or in any batch.
pub fn score<B: AttentionBackend>(
    model: &CausalLm<B>,
    rows: &[ScoreRow<'_>],
    device: &B::Device,
) -> Result<ResponseLogps<B>, ModelError> {
    Ok(run_stages(model, &ScoreStages::new(model, rows, device)?))
}

/// A right-padded batch of rows `[batch, width]` as [`LayerStages`] (one segment); the head
/// stage gives each row's response log-probs.
pub struct ScoreStages<B: Backend> {
    tokens: Tensor<B, 2, Int>,
    positions: LayerPositions<B>,
    /// 1 where position `t` predicts a response token, `[batch, width − 1]`.
    scored: Tensor<B, 2>,
}

impl<B: AttentionBackend> ScoreStages<B> {
    /// The stages of scoring `rows` with `model`, after checking them.
    pub fn new(
        model: &CausalLm<B>,
        rows: &[ScoreRow<'_>],
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let width = checked_width(model, rows)?;
        let batch = rows.len();
        let mut tokens = Vec::with_capacity(batch * width);
        let mut scored = Vec::with_capacity(batch * (width - 1));
        for row in rows {
            let len = row.prompt.len() + row.response.len();
            tokens.extend(row.prompt.iter().chain(row.response).map(|t| i64::from(*t)));
            tokens.extend(std::iter::repeat_n(0, width - len));
            // Position t predicts token t + 1; response tokens sit at prompt_len..len.
            scored.extend(
                (1..width).map(|next| f32::from(u8::from(next >= row.prompt.len() && next < len))),
            );
        }
        let mask = AttentionMask::right_padded(batch, width, device);
        Ok(Self {
            tokens: Tensor::from_data(TensorData::new(tokens, [batch, width]), device),
            positions: model.family().positions(&mask, device),
            scored: Tensor::from_data(TensorData::new(scored, [batch, width - 1]), device),
        })
    }
}

impl<B: AttentionBackend> LayerStages<B> for ScoreStages<B> {
    type Output = ResponseLogps<B>;

    fn embed(&self, model: &CausalLm<B>) -> Vec<Tensor<B, 3>> {
        vec![model
            .family()
            .embed(self.tokens.clone(), &self.positions.mask)]
    }

    fn layer(
        &self,
        model: &CausalLm<B>,
        index: usize,
        hidden: Vec<Tensor<B, 3>>,
    ) -> Vec<Tensor<B, 3>> {
        let family = model.family();
        hidden
            .into_iter()
            .map(|x| family.layers(index..index + 1, x, &self.positions, None))
            .collect()
    }

    fn head(&self, model: &CausalLm<B>, hidden: Vec<Tensor<B, 3>>) -> Self::Output {
        let [batch, width] = self.tokens.dims();
        let x = hidden
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!("a scoring batch has one segment"));
        let predictors = model.family().final_norm(x.narrow(1, 0, width - 1));
        let targets = self.tokens.clone().narrow(1, 1, width - 1);
        let token_logps = model.target_logps(predictors, targets);
        let sum = (token_logps * self.scored.clone())
            .sum_dim(1)
            .reshape([batch]);
        let count = self.scored.clone().sum_dim(1).reshape([batch]);
        let mean = sum.clone() / count.clone().clamp_min(1.0);
        ResponseLogps { sum, mean, count }
    }
}

/// Per-token log-probabilities of one whole sequence, `[len − 1]`: entry `t` is
/// `log p(tokens[t+1] | tokens[..=t])`. For checks against reference implementations.
pub fn token_logps<B: AttentionBackend>(
    model: &CausalLm<B>,
    tokens: &[u32],
    device: &B::Device,
) -> Result<Vec<f64>, ModelError> {
    let Some((first, rest)) = tokens.split_first().filter(|(_, rest)| !rest.is_empty()) else {
        return Err(ModelError::InvalidInput(
            "token_logps needs at least two tokens".into(),
        ));
    };
    let row = ScoreRow {
        prompt: std::slice::from_ref(first),
        response: rest,
    };
    let width = checked_width(model, &[row])?;
    let ids = tokens.iter().map(|t| i64::from(*t)).collect();
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, width]), device);
    Ok(next_token_logps(model, input)
        .into_data()
        .iter::<f64>()
        .collect())
}

/// `log p(tokens[:, t+1] | tokens[:, ..=t])` for every position, `[batch, seq] -> [batch, seq − 1]`.
fn next_token_logps<B: AttentionBackend>(
    model: &CausalLm<B>,
    tokens: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    let [batch, width] = tokens.dims();
    let device = tokens.device();
    let attention = AttentionMask::right_padded(batch, width, &device);
    let targets = tokens.clone().narrow(1, 1, width - 1);
    let hidden = model
        .hidden(tokens, &attention, None)
        .narrow(1, 0, width - 1);
    model.target_logps(hidden, targets)
}

/// Checks every row fits the model (a prompt, ids inside the vocabulary, within the context)
/// and returns the padded width.
pub(crate) fn checked_width<B: Backend>(
    model: &CausalLm<B>,
    rows: &[ScoreRow<'_>],
) -> Result<usize, ModelError> {
    if rows.is_empty() {
        return Err(ModelError::InvalidInput(
            "nothing to score: empty batch".into(),
        ));
    }
    let vocab = model.vocab_size();
    let mut width = 0;
    for (index, row) in rows.iter().enumerate() {
        if row.prompt.is_empty() {
            return Err(ModelError::InvalidInput(format!(
                "row {index}: empty prompt (the first response token needs a token before it; \
                 start prompts with BOS)"
            )));
        }
        let len = row.prompt.len() + row.response.len();
        if len > model.context_length() {
            return Err(ModelError::ContextExceeded {
                tokens: len,
                context: model.context_length(),
            });
        }
        if let Some(bad) = row
            .prompt
            .iter()
            .chain(row.response)
            .find(|t| **t as usize >= vocab)
        {
            return Err(ModelError::InvalidInput(format!(
                "row {index}: token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        width = width.max(len);
    }
    Ok(width.max(2))
}
