use burn::tensor::{backend::Backend, Tensor};

/// Per-sequence log-probabilities of one batch of preference pairs: every field is `[batch]`.
///
/// Log-probabilities are summed over the response tokens only. The token counts are needed
/// by the losses that normalise by length (IPO's averaged margin, SimPO, the NLL term); a count
/// of zero (an empty completion) is treated as one so that no loss divides by zero.
#[derive(Debug, Clone)]
pub struct PairLogps<B: Backend> {
    /// `log πθ(y_w | x)`, `[batch]`.
    pub policy_chosen: Tensor<B, 1>,
    /// `log πθ(y_l | x)`, `[batch]`.
    pub policy_rejected: Tensor<B, 1>,
    /// `log π_ref(y_w | x)`, `[batch]`; zeros for reference-free losses.
    pub reference_chosen: Tensor<B, 1>,
    /// `log π_ref(y_l | x)`, `[batch]`; zeros for reference-free losses.
    pub reference_rejected: Tensor<B, 1>,
    /// Number of chosen response tokens, `[batch]`, as floats.
    pub chosen_tokens: Tensor<B, 1>,
    /// Number of rejected response tokens, `[batch]`, as floats.
    pub rejected_tokens: Tensor<B, 1>,
}

impl<B: Backend> PairLogps<B> {
    /// Log-ratio of policy to reference on the chosen responses, `[batch]`.
    pub fn chosen_log_ratio(&self) -> Tensor<B, 1> {
        self.policy_chosen.clone() - self.reference_chosen.clone()
    }

    /// Log-ratio of policy to reference on the rejected responses, `[batch]`.
    pub fn rejected_log_ratio(&self) -> Tensor<B, 1> {
        self.policy_rejected.clone() - self.reference_rejected.clone()
    }

    /// Divides a per-sequence sum by its token count (at least one), `[batch]`.
    pub(crate) fn per_token(sum: Tensor<B, 1>, tokens: &Tensor<B, 1>) -> Tensor<B, 1> {
        sum / tokens.clone().clamp_min(1.0)
    }
}
