//! The preference losses: one enum lists them, one config pairs a loss with β.

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::{
    stable::{log_sigmoid, sigmoid, softplus},
    CoreError, PairLogps,
};

/// A preference loss and its own hyper-parameters (β, shared by all, is in [`LossConfig`]).
///
/// `h` is the DPO margin `(log πθ(y_w) − log π_ref(y_w)) − (log πθ(y_l) − log π_ref(y_l))` on
/// summed log-probs, except where a variant says otherwise; `z = β·h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// DPO (Rafailov et al., 2023): `ℓ = −log σ(z)`.
    Sigmoid,
    /// ROPO (Liang et al., arXiv 2404.04102, ICML 2025):
    /// `ℓ = 4α/(1+α)²·(−log σ(z)) + 4α²/(1+α)²·σ(−z)`. The σ(−z) term is symmetric, which makes
    /// the expected gradient under symmetric label noise keep its direction; α > 0 weighs it.
    Ropo {
        /// Weight of the noise-aware term relative to DPO's (paper default 14).
        alpha: f64,
    },
    /// ROPO's noise-aware term alone: `ℓ = σ(−z)`. Its noisy risk is `(1−2η)·R + η`.
    NoiseAware,
    /// Conservative DPO (Mitchell, 2023), label smoothing ε ∈ [0, ½]:
    /// `ℓ = −(1−ε)·log σ(z) − ε·log σ(−z)`.
    Cdpo {
        /// Assumed probability that a label is flipped.
        epsilon: f64,
    },
    /// Unbiased robust DPO (Chowdhury et al., 2024), ε ∈ [0, ½):
    /// `ℓ = [−(1−ε)·log σ(z) + ε·log σ(−z)] / (1−2ε)`. It can be negative.
    Rdpo {
        /// Assumed probability that a label is flipped.
        epsilon: f64,
    },
    /// IPO (Azar et al., 2023): `ℓ = (h − 1/(2β))²`, on the margin chosen by `margin`.
    Ipo {
        /// Whether `h` uses per-token averaged or summed log-ratios.
        margin: IpoMargin,
    },
    /// Hinge loss of SLiC (Zhao et al., 2023): `ℓ = max(0, 1 − z)`. At the kink `z = 1` its
    /// gradient is 0, as with TRL's `relu(1 − z)`.
    Hinge,
    /// SimPO (Meng et al., 2024), reference-free: `ℓ = −log σ(β·h − γ)` where `h` is the
    /// difference of the per-token *averaged* policy log-probs of chosen and rejected.
    Simpo {
        /// Target reward margin γ.
        gamma: f64,
    },
    /// Dr. DPO (Wu et al., ICLR 2025, arXiv 2407.07880): over each forward's `N` pairs,
    /// `L = −β′·log((1/N)·Σᵢ exp(−ℓᵢ/β′))` of the DPO losses `ℓᵢ = −log σ(zᵢ)`. It couples the
    /// pairs of a batch: pair `i` gets DPO's gradient times `wᵢ = N·softmax(−ℓ/β′)ᵢ` (mean 1),
    /// so pairs whose loss is high beside their batch-mates' count little. Its per-pair
    /// loss (the filter's ranking, [`LossConfig::loss_of_margin`]) is DPO's; see
    /// [`LossConfig::forward`] for how the batch loss is returned.
    DrDpo {
        /// β′ > 0: small values down-weight high-loss pairs hard; large ones give DPO.
        beta_prime: f64,
    },
    /// Hölder-DPO (NeurIPS 2025, arXiv 2505.17859), a redescending loss:
    /// `ℓ = −(1+γ)·σ(z)^γ + γ·σ(z)^(1+γ) = −σ(z)^γ·(1 + γ·σ(−z))`. Its gradient weight
    /// `βγ(1+γ)·σ(z)^γ·σ(−z)²` vanishes as `h → −∞`: a pair the policy strongly contradicts
    /// stops pulling. Values lie in (−1, 0).
    Holder {
        /// γ > 0: the power of the density-power divergence (paper default 2).
        gamma: f64,
    },
    /// RE-PO (Cao et al., ICLR 2026, arXiv 2509.24159) around a base loss `ℓ_b`: with
    /// `Δ(h) = ℓ_b(−h) − ℓ_b(h)` (the base's log-odds that the label is right) and the labels'
    /// reliability η, `ℓ = −log(η·σ(Δ) + (1−η)·σ(−Δ))`, the marginal likelihood of the label.
    /// Its gradient is that of the paper's EM step (the posterior `w = η·σ(Δ)/m` held fixed), and
    /// it vanishes for a pair the policy strongly contradicts. η is learned: after each step
    /// `η ← (1−α)·η + α·mean(w)` ([`LossConfig::next_reliability`]).
    RePo {
        /// The loss RE-PO wraps, which gives `Δ` and the margin.
        base: RePoBase,
        /// The current reliability η ∈ (½, 1]: the share of labels taken to be right.
        eta: f64,
        /// The step size α ∈ (0, 1] of η's moving average.
        momentum: f64,
    },
}

/// The losses RE-PO wraps, each with its `Δ(h) = ℓ(−h) − ℓ(h)` on its own margin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RePoBase {
    /// DPO: `Δ = β·h`.
    Sigmoid,
    /// IPO on the per-token averaged margin `h̄`: `Δ = 2·h̄/β` (the paper's logistic surrogate,
    /// which keeps no target margin).
    Ipo,
    /// SimPO with target margin γ: `Δ = softplus(β·h̄_π + γ) − softplus(γ − β·h̄_π)`.
    Simpo {
        /// SimPO's γ.
        gamma: f64,
    },
}

/// How IPO forms its margin from the log-ratios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum IpoMargin {
    /// Per-token averaged log-ratios (TRL's choice, confirmed by IPO's authors); the default.
    Averaged,
    /// Summed log-ratios, like every other loss's margin.
    Summed,
}

impl Loss {
    /// The name this loss is known by in configs, metrics and the CLI.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sigmoid => "sigmoid",
            Self::Ropo { .. } => "ropo",
            Self::NoiseAware => "na",
            Self::Cdpo { .. } => "cdpo",
            Self::Rdpo { .. } => "rdpo",
            Self::Ipo { .. } => "ipo",
            Self::Hinge => "hinge",
            Self::Simpo { .. } => "simpo",
            Self::DrDpo { .. } => "drdpo",
            Self::Holder { .. } => "holder",
            Self::RePo { .. } => "repo",
        }
    }

    fn validate(&self) -> Result<(), CoreError> {
        match *self {
            Self::Ropo { alpha } => require(
                "alpha",
                alpha,
                alpha.is_finite() && alpha > 0.0,
                "must be finite and > 0",
            ),
            Self::Cdpo { epsilon } => require(
                "epsilon",
                epsilon,
                (0.0..=0.5).contains(&epsilon),
                "cDPO needs 0 <= epsilon <= 0.5",
            ),
            Self::Rdpo { epsilon } => require(
                "epsilon",
                epsilon,
                (0.0..0.5).contains(&epsilon),
                "rDPO needs 0 <= epsilon < 0.5",
            ),
            Self::Simpo { gamma } => require("gamma", gamma, gamma.is_finite(), "must be finite"),
            Self::DrDpo { beta_prime } => require(
                "drdpo_beta_prime",
                beta_prime,
                beta_prime.is_finite() && beta_prime > 0.0,
                "must be finite and > 0",
            ),
            Self::Holder { gamma } => require(
                "holder_gamma",
                gamma,
                gamma.is_finite() && gamma > 0.0,
                "must be finite and > 0",
            ),
            Self::RePo {
                base,
                eta,
                momentum,
            } => {
                require(
                    "repo_eta0",
                    eta,
                    eta > 0.5 && eta <= 1.0,
                    "must be in (0.5, 1]: at 0.5 every label is a coin toss and nothing trains",
                )?;
                require(
                    "repo_momentum",
                    momentum,
                    momentum > 0.0 && momentum <= 1.0,
                    "must be in (0, 1]",
                )?;
                match base {
                    RePoBase::Simpo { gamma } => {
                        require("gamma", gamma, gamma.is_finite(), "must be finite")
                    }
                    RePoBase::Sigmoid | RePoBase::Ipo => Ok(()),
                }
            }
            Self::Sigmoid | Self::NoiseAware | Self::Ipo { .. } | Self::Hinge => Ok(()),
        }
    }
}

/// A validated loss: which [`Loss`], its inverse temperature β, and the weight of an optional
/// NLL term on the chosen response (`rpo_alpha` in TRL; 0 turns it off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    loss: Loss,
    beta: f64,
    nll_weight: f64,
}

/// What a loss gives back for a batch, every field `[batch]` and unreduced.
#[derive(Debug, Clone)]
pub struct LossOutput<B: Backend> {
    /// Per-pair loss, including the NLL term when its weight is non-zero. Their mean is the
    /// batch's loss and its gradient, for every loss; for a loss that couples the pairs of a
    /// batch (Dr. DPO) that is all they mean.
    pub losses: Tensor<B, 1>,
    /// The margin `h` the loss is a function of (see [`Loss`]).
    pub margins: Tensor<B, 1>,
    /// Implicit reward of the chosen responses, `β·(log πθ − log π_ref)` (SimPO: `β·`mean
    /// policy log-prob); detached from the graph, for logging.
    pub chosen_rewards: Tensor<B, 1>,
    /// Implicit reward of the rejected responses, as for `chosen_rewards`.
    pub rejected_rewards: Tensor<B, 1>,
    /// RE-PO's posterior that each label is right ([`LossConfig::label_posteriors`]),
    /// detached; `None` for every other loss.
    pub label_posteriors: Option<Tensor<B, 1>>,
}

impl LossConfig {
    /// A loss with inverse temperature `beta` and no NLL term; errors where a hyper-parameter is
    /// outside its range (β ≤ 0, α ≤ 0, ε out of range, non-finite values).
    pub fn new(loss: Loss, beta: f64) -> Result<Self, CoreError> {
        require(
            "beta",
            beta,
            beta.is_finite() && beta > 0.0,
            "must be finite and > 0",
        )?;
        loss.validate()?;
        Ok(Self {
            loss,
            beta,
            nll_weight: 0.0,
        })
    }

    /// Adds `weight · (−mean log πθ(y_w))` per pair, the NLL of the chosen response per token.
    pub fn with_nll_weight(self, weight: f64) -> Result<Self, CoreError> {
        require(
            "nll_weight",
            weight,
            weight.is_finite() && weight >= 0.0,
            "must be finite and >= 0",
        )?;
        Ok(Self {
            nll_weight: weight,
            ..self
        })
    }

    /// The loss.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// The inverse temperature β.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The weight of the NLL term on the chosen response.
    pub fn nll_weight(&self) -> f64 {
        self.nll_weight
    }

    /// Per-pair losses, margins and rewards of a batch; all outputs `[batch]`.
    ///
    /// Dr. DPO's batch loss `L` is returned as `ℓᵢ·sg(wᵢ) + sg(L − mean(sg(w)·ℓ))` (`sg`:
    /// detached): their mean is `L` and their gradient is exactly `∇L`, so the trainer reduces
    /// it as any other loss (its batch is each forward's pairs, as in the paper's code).
    pub fn forward<B: Backend>(&self, logps: &PairLogps<B>) -> LossOutput<B> {
        let margins = self.margin(logps);
        let mut losses = match self.loss {
            Loss::DrDpo { beta_prime } => {
                dr_dpo_batch(self.loss_of_margin(margins.clone()), beta_prime)
            }
            _ => self.loss_of_margin(margins.clone()),
        };
        if self.nll_weight > 0.0 {
            let nll = PairLogps::per_token(logps.policy_chosen.clone(), &logps.chosen_tokens).neg();
            losses = losses + nll.mul_scalar(self.nll_weight);
        }
        let (chosen, rejected) = match self.loss {
            Loss::Simpo { .. }
            | Loss::RePo {
                base: RePoBase::Simpo { .. },
                ..
            } => (
                PairLogps::per_token(logps.policy_chosen.clone(), &logps.chosen_tokens),
                PairLogps::per_token(logps.policy_rejected.clone(), &logps.rejected_tokens),
            ),
            _ => (logps.chosen_log_ratio(), logps.rejected_log_ratio()),
        };
        LossOutput {
            losses,
            label_posteriors: self.label_posteriors(margins.clone().detach()),
            margins,
            chosen_rewards: chosen.detach().mul_scalar(self.beta),
            rejected_rewards: rejected.detach().mul_scalar(self.beta),
        }
    }

    /// The margin `h` this loss is a function of, `[batch]`.
    pub fn margin<B: Backend>(&self, logps: &PairLogps<B>) -> Tensor<B, 1> {
        match self.loss {
            Loss::Ipo {
                margin: IpoMargin::Averaged,
            }
            | Loss::RePo {
                base: RePoBase::Ipo,
                ..
            } => {
                PairLogps::per_token(logps.chosen_log_ratio(), &logps.chosen_tokens)
                    - PairLogps::per_token(logps.rejected_log_ratio(), &logps.rejected_tokens)
            }
            Loss::Simpo { .. }
            | Loss::RePo {
                base: RePoBase::Simpo { .. },
                ..
            } => {
                PairLogps::per_token(logps.policy_chosen.clone(), &logps.chosen_tokens)
                    - PairLogps::per_token(logps.policy_rejected.clone(), &logps.rejected_tokens)
            }
            _ => logps.chosen_log_ratio() - logps.rejected_log_ratio(),
        }
    }

    /// The preference loss `ℓ(h)` of each margin, `[n] -> [n]` (no NLL term).
    pub fn loss_of_margin<B: Backend>(&self, margins: Tensor<B, 1>) -> Tensor<B, 1> {
        let beta = self.beta;
        let z = margins.clone().mul_scalar(beta);
        match self.loss {
            Loss::Sigmoid => softplus(z.neg()),
            Loss::Ropo { alpha } => {
                let (dpo_weight, na_weight) = ropo_weights(alpha);
                softplus(z.clone().neg()).mul_scalar(dpo_weight)
                    + sigmoid(z.neg()).mul_scalar(na_weight)
            }
            Loss::NoiseAware => sigmoid(z.neg()),
            Loss::Cdpo { epsilon } => {
                softplus(z.clone().neg()).mul_scalar(1.0 - epsilon)
                    + softplus(z).mul_scalar(epsilon)
            }
            Loss::Rdpo { epsilon } => (softplus(z.clone().neg()).mul_scalar(1.0 - epsilon)
                - softplus(z).mul_scalar(epsilon))
            .div_scalar(1.0 - 2.0 * epsilon),
            Loss::Ipo { .. } => margins.sub_scalar(0.5 / beta).powf_scalar(2.0),
            Loss::Hinge => burn::tensor::activation::relu(z.neg().add_scalar(1.0)),
            Loss::Simpo { gamma } => softplus(z.sub_scalar(gamma).neg()),
            Loss::DrDpo { .. } => softplus(z.neg()),
            Loss::Holder { gamma } => {
                let sigmoid_power = log_sigmoid(z.clone()).mul_scalar(gamma).exp();
                (sigmoid_power * sigmoid(z.neg()).mul_scalar(gamma).add_scalar(1.0)).neg()
            }
            Loss::RePo { base, eta, .. } => {
                log_marginal(re_po_delta(base, margins, beta), eta).neg()
            }
        }
    }

    /// The analytic derivative `∂ℓ/∂h` of each margin, `[n] -> [n]`: how hard the loss pushes
    /// on a pair (its gradient weight is `−∂ℓ/∂h`).
    pub fn dloss_dmargin<B: Backend>(&self, margins: Tensor<B, 1>) -> Tensor<B, 1> {
        let beta = self.beta;
        let z = margins.clone().mul_scalar(beta);
        let weight = match self.loss {
            Loss::Sigmoid => sigmoid(z.neg()),
            Loss::Ropo { alpha } => {
                let (dpo_weight, _) = ropo_weights(alpha);
                sigmoid(z.clone().neg()) * sigmoid(z).mul_scalar(alpha).add_scalar(1.0) * dpo_weight
            }
            Loss::NoiseAware => sigmoid(z.clone()) * sigmoid(z.neg()),
            Loss::Cdpo { epsilon } => {
                sigmoid(z.clone().neg()).mul_scalar(1.0 - epsilon) - sigmoid(z).mul_scalar(epsilon)
            }
            Loss::Rdpo { epsilon } => (sigmoid(z.clone().neg()).mul_scalar(1.0 - epsilon)
                + sigmoid(z).mul_scalar(epsilon))
            .div_scalar(1.0 - 2.0 * epsilon),
            Loss::Ipo { .. } => return margins.sub_scalar(0.5 / beta).mul_scalar(2.0),
            Loss::Hinge => z.lower_elem(1.0).float(),
            Loss::Simpo { gamma } => sigmoid(z.sub_scalar(gamma).neg()),
            Loss::DrDpo { .. } => sigmoid(z.neg()),
            Loss::Holder { gamma } => {
                let sigmoid_power = log_sigmoid(z.clone()).mul_scalar(gamma).exp();
                sigmoid_power
                    * sigmoid(z.neg())
                        .powf_scalar(2.0)
                        .mul_scalar(gamma * (1.0 + gamma))
            }
            Loss::RePo { base, eta, .. } => {
                // ∂ℓ/∂h = −(2η−1)·σ(Δ)σ(−Δ)/m · Δ′(h), each factor from logs.
                let delta = re_po_delta(base, margins.clone(), beta);
                let log_m = log_marginal(delta.clone(), eta);
                let pq_over_m =
                    (log_sigmoid(delta.clone()) + log_sigmoid(delta.neg()) - log_m).exp();
                let slope = match base {
                    RePoBase::Sigmoid => margins.ones_like().mul_scalar(beta),
                    RePoBase::Ipo => margins.ones_like().mul_scalar(2.0 / beta),
                    RePoBase::Simpo { gamma } => {
                        let z = margins.mul_scalar(beta);
                        (sigmoid(z.clone().add_scalar(gamma)) + sigmoid(z.neg().add_scalar(gamma)))
                            .mul_scalar(beta)
                    }
                };
                return (pq_over_m * slope).mul_scalar(-(2.0 * eta - 1.0));
            }
        };
        weight.mul_scalar(-beta)
    }

    /// RE-PO's posterior that each pair's label is right, `w = η·σ(Δ)/m`, `[n] -> [n]`, from
    /// the margins; `None` for every other loss. Its mean over a batch moves η
    /// ([`LossConfig::next_reliability`]); `1 − w` is RE-PO's mislabel score.
    pub fn label_posteriors<B: Backend>(&self, margins: Tensor<B, 1>) -> Option<Tensor<B, 1>> {
        let Loss::RePo { base, eta, .. } = self.loss else {
            return None;
        };
        let delta = re_po_delta(base, margins, self.beta);
        let log_m = log_marginal(delta.clone(), eta);
        Some((log_sigmoid(delta).add_scalar(eta.ln()) - log_m).exp())
    }

    /// RE-PO's current reliability η; `None` for every other loss.
    pub fn reliability(&self) -> Option<f64> {
        match self.loss {
            Loss::RePo { eta, .. } => Some(eta),
            _ => None,
        }
    }

    /// This loss with RE-PO's reliability set to `eta` (a resumed run's); every other loss as
    /// it is.
    pub fn with_reliability(&self, eta: f64) -> Self {
        match self.loss {
            Loss::RePo { base, momentum, .. } => Self {
                loss: Loss::RePo {
                    base,
                    eta,
                    momentum,
                },
                ..*self
            },
            _ => *self,
        }
    }

    /// This loss after a step whose pairs' mean posterior was `mean_posterior`: RE-PO's
    /// `η ← (1−α)·η + α·mean(w)` (the paper's Eq. 7); every other loss as it is.
    pub fn next_reliability(&self, mean_posterior: f64) -> Self {
        match self.loss {
            Loss::RePo {
                base,
                eta,
                momentum,
            } => Self {
                loss: Loss::RePo {
                    base,
                    eta: (1.0 - momentum) * eta + momentum * mean_posterior,
                    momentum,
                },
                ..*self
            },
            _ => *self,
        }
    }
}

/// RE-PO's `Δ(h)` for `base` (see [`RePoBase`]), `[n] -> [n]`.
fn re_po_delta<B: Backend>(base: RePoBase, margins: Tensor<B, 1>, beta: f64) -> Tensor<B, 1> {
    match base {
        RePoBase::Sigmoid => margins.mul_scalar(beta),
        RePoBase::Ipo => margins.mul_scalar(2.0 / beta),
        RePoBase::Simpo { gamma } => {
            let z = margins.mul_scalar(beta);
            softplus(z.clone().add_scalar(gamma)) - softplus(z.neg().add_scalar(gamma))
        }
    }
}

/// `log m = log(η·σ(Δ) + (1−η)·σ(−Δ))`, as the max-shifted log-sum-exp of its two terms (the
/// second dropped at η = 1), so it stays finite and differentiable for any Δ.
fn log_marginal<B: Backend>(delta: Tensor<B, 1>, eta: f64) -> Tensor<B, 1> {
    let right = log_sigmoid(delta.clone()).add_scalar(eta.ln());
    if eta >= 1.0 {
        return right;
    }
    let wrong = log_sigmoid(delta.neg()).add_scalar((1.0 - eta).ln());
    let top = right.clone().max_pair(wrong.clone()).detach();
    ((right - top.clone()).exp() + (wrong - top.clone()).exp()).log() + top
}

/// Dr. DPO's batch loss over the DPO losses `ℓ` of one forward, `[n] -> [n]`, in the form
/// [`LossConfig::forward`] states. The weights and `L` come from detached values, through
/// the max-shifted log-sum-exp, so they stay finite for any losses.
fn dr_dpo_batch<B: Backend>(losses: Tensor<B, 1>, beta_prime: f64) -> Tensor<B, 1> {
    let n = losses.dims()[0];
    if n == 0 {
        return losses;
    }
    let scaled = losses.clone().detach().div_scalar(-beta_prime);
    let top = scaled.clone().max();
    let shifted = (scaled - top.clone()).exp();
    let total = shifted.clone().sum();
    let weights = (shifted / total.clone()).mul_scalar(n as f64);
    let batch_loss = (total.div_scalar(n as f64).log() + top).mul_scalar(-beta_prime);
    let weighted = losses * weights;
    let offset = batch_loss - weighted.clone().detach().mean();
    weighted + offset
}

/// ROPO's two coefficients `(4α/(1+α)², 4α²/(1+α)²)`: of the DPO term and the noise-aware term.
fn ropo_weights(alpha: f64) -> (f64, f64) {
    let scale = 4.0 * alpha / ((1.0 + alpha) * (1.0 + alpha));
    (scale, scale * alpha)
}

/// `name` as an error quotes it: whole up to 64 characters, else its first 64 and how many
/// more, so that a huge value does not flood the terminal.
pub(crate) fn shortened(name: &str) -> String {
    const SHOWN: usize = 64;
    match name.char_indices().nth(SHOWN) {
        Some((end, _)) => format!(
            "{}… ({} more characters)",
            &name[..end],
            name[end..].chars().count()
        ),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests;

fn require(
    name: &'static str,
    value: f64,
    holds: bool,
    requirement: &'static str,
) -> Result<(), CoreError> {
    if holds {
        Ok(())
    } else {
        Err(CoreError::InvalidParameter {
            name,
            value,
            requirement,
        })
    }
}
