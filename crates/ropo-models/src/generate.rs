//! Batched, seeded generation with a KV cache: greedy, temperature, top-k and top-p sampling.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{
    attention::{AttentionBackend, AttentionMask},
    CausalLm, ModelError,
};

/// How to pick each next token and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// The most tokens to add to each prompt (fewer if the context fills up first).
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f64,
    /// Keep only the `k` most likely tokens before sampling.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (nucleus).
    pub top_p: Option<f64>,
    /// Seed of the sampler: the same seed, prompts and model give the same tokens.
    pub seed: u64,
    /// Tokens that end a sequence (EOS); the stop token is kept in the output.
    pub stop_tokens: Vec<u32>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 0,
            stop_tokens: Vec::new(),
        }
    }
}

/// Continues every prompt; returns each one's new tokens (ending with its stop token, if one
/// was drawn).
///
/// Prompts are left-padded into one batch: padding keys are masked and positions count only
/// real tokens, so a prompt continues the same alone or batched with others (greedy).
pub fn generate<B: AttentionBackend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    sampling: &SamplingConfig,
    device: &B::Device,
) -> Result<Vec<Vec<u32>>, ModelError> {
    validate(model, prompts, sampling)?;
    let batch = prompts.len();
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let budget = sampling.max_new_tokens.min(model.context_length() - width);
    let mut key_valid: Vec<Vec<bool>> = prompts
        .iter()
        .map(|p| (0..width).map(|i| i >= width - p.len()).collect())
        .collect();
    let padded: Vec<i64> = prompts
        .iter()
        .flat_map(|p| {
            std::iter::repeat_n(0, width - p.len()).chain(p.iter().map(|t| i64::from(*t)))
        })
        .collect();
    let mut cache = model.new_cache();
    let mask = AttentionMask::causal(&key_valid, 0, width, device);
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(padded, [batch, width]), device);
    let mut logits = last_logits(model.forward(input, &mask, Some(&mut cache)));
    let mut rng = StdRng::seed_from_u64(sampling.seed);
    let mut outputs = vec![Vec::new(); batch];
    let mut done = vec![false; batch];
    for _ in 0..budget {
        let vocab = logits.len() / batch;
        let mut next = Vec::with_capacity(batch);
        for row in 0..batch {
            // A finished row feeds padding that no real token attends to.
            let token = if done[row] {
                None
            } else {
                let row_logits = &logits[row * vocab..(row + 1) * vocab];
                if row_logits.iter().any(|l| l.is_nan() || *l == f32::INFINITY) {
                    return Err(ModelError::NonFinite(format!(
                        "the logits of new token {} of prompt {row}",
                        outputs[row].len() + 1
                    )));
                }
                let token = pick(row_logits, sampling, &mut rng);
                outputs[row].push(token);
                done[row] = sampling.stop_tokens.contains(&token);
                Some(token)
            };
            key_valid[row].push(token.is_some());
            next.push(token.map_or(0, i64::from));
        }
        if done.iter().all(|d| *d) {
            break;
        }
        let offset = cache.len();
        let mask = AttentionMask::causal(&key_valid, offset, 1, device);
        let input = Tensor::<B, 2, Int>::from_data(TensorData::new(next, [batch, 1]), device);
        logits = last_logits(model.forward(input, &mask, Some(&mut cache)));
    }
    Ok(outputs)
}

fn validate<B: Backend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    sampling: &SamplingConfig,
) -> Result<(), ModelError> {
    let invalid = |message: String| Err(ModelError::InvalidInput(message));
    if prompts.is_empty() {
        return invalid("no prompts to continue".into());
    }
    if !(sampling.temperature >= 0.0 && sampling.temperature.is_finite()) {
        return invalid(format!("temperature {} must be >= 0", sampling.temperature));
    }
    if sampling.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return invalid(format!("top_p {:?} must be in (0, 1]", sampling.top_p));
    }
    if sampling.top_k == Some(0) {
        return invalid("top_k must be at least 1".into());
    }
    let vocab = model.vocab_size();
    for (index, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() {
            return invalid(format!("prompt {index} is empty (start it with BOS)"));
        }
        if prompt.len() > model.context_length() {
            return Err(ModelError::ContextExceeded {
                tokens: prompt.len(),
                context: model.context_length(),
            });
        }
        if let Some(bad) = prompt.iter().find(|t| **t as usize >= vocab) {
            return invalid(format!(
                "prompt {index}: token id {bad} is outside the vocabulary of {vocab}"
            ));
        }
    }
    Ok(())
}

/// The logits at each row's last position, flattened `[batch * vocab]`, on the host.
fn last_logits<B: Backend>(logits: Tensor<B, 3>) -> Vec<f32> {
    let [batch, seq, vocab] = logits.dims();
    logits
        .narrow(1, seq - 1, 1)
        .reshape([batch, vocab])
        .into_data()
        .iter::<f32>()
        .collect()
}

/// Chooses the next token from one row's logits.
fn pick(logits: &[f32], sampling: &SamplingConfig, rng: &mut StdRng) -> u32 {
    if sampling.temperature == 0.0 {
        return argmax(logits);
    }
    let mut ranked: Vec<(usize, f64)> = logits
        .iter()
        .map(|l| f64::from(*l) / sampling.temperature)
        .enumerate()
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(k) = sampling.top_k {
        ranked.truncate(k);
    }
    let max = ranked[0].1;
    let mut probs: Vec<f64> = ranked.iter().map(|(_, l)| (l - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(top_p) = sampling.top_p {
        let mut cumulative = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                cumulative += p;
                cumulative >= top_p
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut draw = rng.random::<f64>() * total;
    for (index, p) in probs.iter().enumerate() {
        draw -= p;
        if draw <= 0.0 {
            return ranked[index].0 as u32;
        }
    }
    ranked[probs.len() - 1].0 as u32
}

/// Index of the largest logit; the first one on ties, as `torch.argmax`.
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (index, value) in logits.iter().enumerate() {
        if *value > logits[best] {
            best = index;
        }
    }
    best as u32
}
