use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};

use std::f64::consts::LN_2;

use super::*;
use crate::{LossParams, PreferenceMetrics};

type Cpu = Flex;
type Grad = Autodiff<Flex>;

fn tensor<B: Backend>(values: &[f64]) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::from(values), &Default::default())
}

fn values<B: Backend>(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn assert_close(actual: &[f64], expected: &[f64], tolerance: f64) {
    assert_eq!(actual.len(), expected.len());
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let scale = e.abs().max(1.0);
        assert!(
            (a - e).abs() <= tolerance * scale,
            "element {i}: got {a}, expected {e} (tolerance {tolerance})"
        );
    }
}

fn config(loss: Loss, beta: f64) -> LossConfig {
    LossConfig::new(loss, beta).unwrap()
}

/// torchtune's DPO test inputs; with β = 0.1 the margins are h = [0, 10, 20].
fn torchtune_fixture() -> PairLogps<Cpu> {
    PairLogps {
        policy_chosen: tensor(&[-0.5, -10.0, -1.0]),
        policy_rejected: tensor(&[-0.1, -30.0, -21.0]),
        reference_chosen: tensor(&[-0.5, -10.1, -0.1]),
        reference_rejected: tensor(&[-0.1, -20.1, -0.1]),
        chosen_tokens: tensor(&[1.0, 1.0, 1.0]),
        rejected_tokens: tensor(&[1.0, 1.0, 1.0]),
    }
}

fn fixture_losses(loss: Loss) -> Vec<f64> {
    values(config(loss, 0.1).forward(&torchtune_fixture()).losses)
}

#[test]
fn fixture_margins_are_0_10_20() {
    let margins = config(Loss::Sigmoid, 0.1).margin(&torchtune_fixture());
    assert_close(&values(margins), &[0.0, 10.0, 20.0], 1e-5);
}

#[test]
fn sigmoid_matches_torchtune_fixture() {
    assert_close(
        &fixture_losses(Loss::Sigmoid),
        &[LN_2, 0.313262, 0.126928],
        1e-5,
    );
}

#[test]
fn cdpo_matches_torchtune_fixture() {
    assert_close(
        &fixture_losses(Loss::Cdpo { epsilon: 0.1 }),
        &[LN_2, 0.413262, 0.326928],
        1e-5,
    );
}

#[test]
fn rdpo_matches_torchtune_fixture_and_goes_negative() {
    assert_close(
        &fixture_losses(Loss::Rdpo { epsilon: 0.1 }),
        &[LN_2, 0.188262, -0.123072],
        1e-5,
    );
}

#[test]
fn hinge_matches_torchtune_fixture() {
    assert_close(&fixture_losses(Loss::Hinge), &[1.0, 0.0, 0.0], 1e-5);
}

#[test]
fn ipo_on_summed_ratios_matches_torchtune_fixture() {
    let ipo = Loss::Ipo {
        margin: IpoMargin::Summed,
    };
    assert_close(&fixture_losses(ipo), &[25.0, 25.0, 225.0], 1e-5);
}

#[test]
fn ropo_at_zero_margin_matches_closed_form() {
    // ℓ(0) = 4α/(1+α)²·ln 2 + 4α²/(1+α)²·½.
    let ropo_at_zero = |alpha: f64| {
        values(config(Loss::Ropo { alpha }, 0.1).loss_of_margin(tensor::<Cpu>(&[0.0])))[0]
    };
    assert_close(&[ropo_at_zero(14.0)], &[1.914739], 1e-5);
    assert_close(&[ropo_at_zero(2.0)], &[8.0 / 9.0 * LN_2 + 8.0 / 9.0], 1e-5);
    assert_close(&[ropo_at_zero(6.0)], &[1.808888], 1e-5);
    assert_close(&[ropo_at_zero(30.0)], &[1.959602], 1e-5);
    assert_close(
        &fixture_losses(Loss::Ropo { alpha: 14.0 })[..1],
        &[1.914739],
        1e-5,
    );
}

#[test]
fn ropo_matches_hand_derived_values_away_from_zero() {
    // 56/225·softplus(−βh) + 784/225·σ(−βh), evaluated by hand at βh = 1, −1, 2, −3, 0.37.
    let losses = config(Loss::Ropo { alpha: 14.0 }, 0.1)
        .loss_of_margin(tensor::<Cpu>(&[10.0, -10.0, 20.0, -30.0, 3.7]));
    assert_close(
        &values(losses),
        &[1.015079, 2.874189, 0.446947, 4.077951, 1.554246],
        1e-5,
    );
}

#[test]
fn noise_aware_loss_is_sigmoid_of_negative_margin() {
    let losses =
        config(Loss::NoiseAware, 0.1).loss_of_margin(tensor::<Cpu>(&[0.0, 10.0, 20.0, -30.0]));
    assert_close(&values(losses), &[0.5, 0.268941, 0.119203, 0.952574], 1e-5);
}

#[test]
fn ipo_averages_log_ratios_per_token_by_default() {
    // Chosen log-ratio 3 over 3 tokens, rejected −2 over 4 tokens: h̄ = 1 + 0.5 = 1.5.
    let logps = PairLogps::<Cpu> {
        policy_chosen: tensor(&[-7.0]),
        policy_rejected: tensor(&[-10.0]),
        reference_chosen: tensor(&[-10.0]),
        reference_rejected: tensor(&[-8.0]),
        chosen_tokens: tensor(&[3.0]),
        rejected_tokens: tensor(&[4.0]),
    };
    let ipo = Loss::from_name("ipo", &LossParams::default()).unwrap();
    let output = config(ipo, 0.1).forward(&logps);
    assert_close(&values(output.margins), &[1.5], 1e-6);
    assert_close(&values(output.losses), &[(1.5f64 - 5.0).powi(2)], 1e-6);
}

#[test]
fn simpo_uses_length_averaged_policy_logps_and_gamma() {
    // Averages −6/5 and −8/4: h = 0.8; ℓ = softplus(−(2·0.8 − 0.5)) = softplus(−1.1).
    let logps = PairLogps::<Cpu> {
        policy_chosen: tensor(&[-6.0]),
        policy_rejected: tensor(&[-8.0]),
        reference_chosen: tensor(&[0.0]),
        reference_rejected: tensor(&[0.0]),
        chosen_tokens: tensor(&[5.0]),
        rejected_tokens: tensor(&[4.0]),
    };
    let output = config(Loss::Simpo { gamma: 0.5 }, 2.0).forward(&logps);
    assert_close(&values(output.losses), &[0.287335], 1e-5);
    assert_close(&values(output.chosen_rewards), &[-2.4], 1e-6);
    assert_close(&values(output.rejected_rewards), &[-4.0], 1e-6);
}

#[test]
fn nll_term_adds_weighted_per_token_chosen_nll() {
    let logps = torchtune_fixture();
    let plain = values(config(Loss::Sigmoid, 0.1).forward(&logps).losses);
    let with_nll = config(Loss::Sigmoid, 0.1).with_nll_weight(2.0).unwrap();
    let expected: Vec<f64> = plain
        .iter()
        .zip([0.5, 10.0, 1.0])
        .map(|(l, nll)| l + 2.0 * nll)
        .collect();
    assert_close(&values(with_nll.forward(&logps).losses), &expected, 1e-5);
}

#[test]
fn empty_completions_do_not_divide_by_zero() {
    let logps = PairLogps::<Cpu> {
        policy_chosen: tensor(&[0.0]),
        policy_rejected: tensor(&[-3.0]),
        reference_chosen: tensor(&[0.0]),
        reference_rejected: tensor(&[-1.0]),
        chosen_tokens: tensor(&[0.0]),
        rejected_tokens: tensor(&[0.0]),
    };
    for loss in every_loss() {
        let output = config(loss, 0.1)
            .with_nll_weight(1.0)
            .unwrap()
            .forward(&logps);
        assert!(
            values(output.losses).iter().all(|v| v.is_finite()),
            "{loss:?}"
        );
    }
}

fn every_loss() -> Vec<Loss> {
    let params = LossParams::default();
    let mut losses: Vec<Loss> = Loss::NAMES
        .iter()
        .map(|name| Loss::from_name(name, &params).unwrap())
        .collect();
    losses.push(Loss::Ipo {
        margin: IpoMargin::Summed,
    });
    for base in [RePoBase::Ipo, RePoBase::Simpo { gamma: 0.5 }] {
        losses.push(Loss::RePo {
            base,
            eta: 0.7,
            momentum: 0.1,
        });
    }
    losses
}

#[test]
fn autodiff_gradient_equals_analytic_weight_for_every_loss() {
    let mut rng = StdRng::seed_from_u64(7);
    let margins: Vec<f64> = (0..1000).map(|_| rng.random_range(-60.0..60.0)).collect();
    for loss in every_loss() {
        let config = config(loss, 0.1);
        let h = tensor::<Grad>(&margins).require_grad();
        let grads = config.loss_of_margin(h.clone()).sum().backward();
        let autodiff = values(h.grad(&grads).unwrap());
        let analytic = values(config.dloss_dmargin(tensor::<Cpu>(&margins)));
        assert_close(&autodiff, &analytic, 1e-5);
    }
}

/// The margins where a form built from `max`, `abs` or a branch can break autodiff: the tie
/// at 0 (every margin of a first preference step), values on either side of it too small to
/// move a float sum, the range where `exp` overflows, and hinge's kink at `h = 1/β = 10`.
const TIE_AND_EXTREME_MARGINS: [f64; 10] =
    [0.0, 1e-30, -1e-30, 1e-6, -1e-6, 1.0, -1.0, 1e4, -1e4, 10.0];

/// Autodiff's `∂ℓ/∂h` and the analytic one at [`TIE_AND_EXTREME_MARGINS`], on backend `B`.
fn autodiff_and_analytic_at_ties<B: burn::tensor::backend::AutodiffBackend>(
    config: &LossConfig,
) -> (Vec<f64>, Vec<f64>) {
    let h = tensor::<B>(&TIE_AND_EXTREME_MARGINS).require_grad();
    let grads = config.loss_of_margin(h.clone()).sum().backward();
    let autodiff = values(h.grad(&grads).unwrap());
    let analytic =
        values(config.dloss_dmargin(tensor::<B::InnerBackend>(&TIE_AND_EXTREME_MARGINS)));
    (autodiff, analytic)
}

fn assert_relative(actual: &[f64], expected: &[f64], tolerance: f64, context: &str) {
    for ((a, e), h) in actual.iter().zip(expected).zip(TIE_AND_EXTREME_MARGINS) {
        assert!(
            (a - e).abs() <= tolerance * e.abs(),
            "{context} at h = {h}: autodiff {a}, analytic {e}"
        );
    }
}

#[test]
fn autodiff_gradient_is_the_analytic_one_at_the_tie_and_extremes_on_flex_and_ndarray() {
    for loss in every_loss() {
        let config = config(loss, 0.1);
        let (flex, analytic) = autodiff_and_analytic_at_ties::<Grad>(&config);
        assert_relative(&flex, &analytic, 1e-6, &format!("{loss:?} on flex"));
        let (ndarray, analytic) = autodiff_and_analytic_at_ties::<Autodiff<NdArray>>(&config);
        assert_relative(&ndarray, &analytic, 1e-6, &format!("{loss:?} on ndarray"));
    }
}

#[test]
fn dpo_gradient_at_zero_margin_is_minus_half_beta() {
    let h = tensor::<Grad>(&[0.0]).require_grad();
    let grads = config(Loss::Sigmoid, 0.1)
        .loss_of_margin(h.clone())
        .sum()
        .backward();
    assert_eq!(values(h.grad(&grads).unwrap()), [-0.05f32 as f64]);
}

#[test]
fn softplus_and_sigmoid_differentiate_to_their_derivatives_at_zero() {
    let x = tensor::<Grad>(&[0.0]).require_grad();
    let grads = crate::softplus(x.clone()).sum().backward();
    assert_eq!(values(x.grad(&grads).unwrap()), [0.5]);
    let x = tensor::<Grad>(&[0.0]).require_grad();
    let grads = crate::sigmoid(x.clone()).sum().backward();
    assert_eq!(values(x.grad(&grads).unwrap()), [0.25]);
}

#[test]
fn every_loss_and_gradient_stay_finite_at_extreme_margins() {
    let margins = [1e5, -1e5, 1e4, -1e4];
    for loss in every_loss() {
        let config = config(loss, 0.1);
        let h = tensor::<Grad>(&margins).require_grad();
        let losses = config.loss_of_margin(h.clone());
        let grads = losses.clone().sum().backward();
        let all = [values(losses), values(h.grad(&grads).unwrap())].concat();
        assert!(all.iter().all(|v| v.is_finite()), "{loss:?}: {all:?}");
    }
}

#[test]
fn sigmoid_of_x_and_of_minus_x_sum_to_one() {
    let xs: Vec<f64> = (-200..=200).map(|i| i as f64 * 0.37).collect();
    let x = tensor::<Cpu>(&xs);
    let sum = values(crate::sigmoid(x.clone()) + crate::sigmoid(x.neg()));
    assert_close(&sum, &vec![1.0; xs.len()], 1e-6);
}

fn noisy_risk(config: &LossConfig, margins: &[f64], eta: f64) -> f64 {
    let clean = values(config.loss_of_margin(tensor::<Cpu>(margins)));
    let negated: Vec<f64> = margins.iter().map(|h| -h).collect();
    let flipped = values(config.loss_of_margin(tensor::<Cpu>(&negated)));
    let total: f64 = clean
        .iter()
        .zip(&flipped)
        .map(|(c, f)| (1.0 - eta) * c + eta * f)
        .sum();
    total / margins.len() as f64
}

#[test]
fn noise_aware_noisy_risk_is_affine_in_clean_risk() {
    let mut rng = StdRng::seed_from_u64(11);
    let margins: Vec<f64> = (0..500).map(|_| rng.random_range(-40.0..40.0)).collect();
    let na = config(Loss::NoiseAware, 0.1);
    let clean = noisy_risk(&na, &margins, 0.0);
    for eta in [0.1, 0.2, 0.3, 0.4] {
        let noisy = noisy_risk(&na, &margins, eta);
        assert_close(&[noisy], &[(1.0 - 2.0 * eta) * clean + eta], 1e-6);
    }
}

#[test]
fn dpo_noisy_risk_is_not_affine_in_clean_risk() {
    let mut rng = StdRng::seed_from_u64(11);
    let margins: Vec<f64> = (0..500).map(|_| rng.random_range(-40.0..40.0)).collect();
    let dpo = config(Loss::Sigmoid, 0.1);
    let clean = noisy_risk(&dpo, &margins, 0.0);
    let noisy = noisy_risk(&dpo, &margins, 0.2);
    let affine = 0.6 * clean + 0.2;
    assert!((noisy - affine).abs() > 1e-2, "{noisy} vs {affine}");
}

#[test]
fn noise_aware_noisy_gradient_is_clean_gradient_scaled() {
    let mut rng = StdRng::seed_from_u64(3);
    let margins: Vec<f64> = (0..200).map(|_| rng.random_range(-40.0..40.0)).collect();
    let na = config(Loss::NoiseAware, 0.1);
    let eta = 0.3;
    let h = tensor::<Grad>(&margins).require_grad();
    let noisy = na.loss_of_margin(h.clone()).mul_scalar(1.0 - eta)
        + na.loss_of_margin(h.clone().neg()).mul_scalar(eta);
    let noisy_grad = values(h.grad(&noisy.sum().backward()).unwrap());
    let clean_grad: Vec<f64> = values(na.dloss_dmargin(tensor::<Cpu>(&margins)))
        .iter()
        .map(|g| (1.0 - 2.0 * eta) * g)
        .collect();
    assert_close(&noisy_grad, &clean_grad, 1e-6);
}

fn weight_at(config: &LossConfig, margins: &[f64]) -> Vec<f64> {
    values(config.dloss_dmargin(tensor::<Cpu>(margins)).neg())
}

#[test]
fn ropo_weight_peaks_at_beta_at_the_derived_margin() {
    let beta = 0.1;
    for alpha in [2.0, 6.0, 14.0, 30.0] {
        let ropo = config(Loss::Ropo { alpha }, beta);
        let peak = ((alpha - 1.0) / (alpha + 1.0)).ln() / beta;
        let around = weight_at(&ropo, &[peak, peak - 0.5, peak + 0.5]);
        assert_close(&around[..1], &[beta], 1e-6);
        assert!(around[1] < around[0] && around[2] < around[0], "{around:?}");
    }
}

#[test]
fn ropo_weight_vanishes_for_large_negative_margin_to_its_floor() {
    let beta = 0.1;
    let alpha = 14.0;
    let floor = beta * 4.0 * alpha / ((1.0 + alpha) * (1.0 + alpha));
    let ropo = config(Loss::Ropo { alpha }, beta);
    let far = weight_at(&ropo, &[-1000.0, -5000.0]);
    assert_close(&far, &[floor, floor], 1e-6);
    let dpo_far = weight_at(&config(Loss::Sigmoid, beta), &[-1000.0]);
    assert_close(&dpo_far, &[beta], 1e-6);
}

#[test]
fn ropo_loss_strictly_decreases_in_margin() {
    let margins: Vec<f64> = (-100..100).map(|i| i as f64 * 0.5).collect();
    let losses =
        values(config(Loss::Ropo { alpha: 14.0 }, 0.1).loss_of_margin(tensor::<Cpu>(&margins)));
    assert!(losses.windows(2).all(|w| w[1] < w[0]));
}

#[test]
fn invalid_hyper_parameters_are_errors() {
    let bad = [
        LossConfig::new(Loss::Sigmoid, 0.0),
        LossConfig::new(Loss::Sigmoid, -0.1),
        LossConfig::new(Loss::Sigmoid, f64::NAN),
        LossConfig::new(Loss::Ropo { alpha: 0.0 }, 0.1),
        LossConfig::new(Loss::Cdpo { epsilon: 0.6 }, 0.1),
        LossConfig::new(Loss::Rdpo { epsilon: 0.5 }, 0.1),
        LossConfig::new(Loss::Rdpo { epsilon: -0.1 }, 0.1),
        LossConfig::new(
            Loss::Simpo {
                gamma: f64::INFINITY,
            },
            2.0,
        ),
        LossConfig::new(Loss::Sigmoid, 0.1).and_then(|c| c.with_nll_weight(-1.0)),
    ];
    for result in bad {
        assert!(
            matches!(result, Err(CoreError::InvalidParameter { .. })),
            "{result:?}"
        );
    }
    assert_eq!(
        Loss::from_name("kto", &LossParams::default()),
        Err(CoreError::UnknownLoss("kto".into()))
    );
    assert_eq!(
        Loss::from_name("dpo", &LossParams::default()),
        Ok(Loss::Sigmoid)
    );
}

#[test]
fn metrics_use_trl_names_and_strict_accuracy() {
    let logps = torchtune_fixture();
    let output = config(Loss::Sigmoid, 0.1).forward(&logps);
    let metrics = PreferenceMetrics::of_batch(&output, &logps);
    // Chosen rewards 0.1·[0, 0.1, −0.9]; rejected 0.1·[0, −9.9, −20.9]: the first pair ties.
    assert_close(
        &[metrics.rewards_chosen],
        &[0.1 * (0.0 + 0.1 - 0.9) / 3.0],
        1e-6,
    );
    assert_close(
        &[metrics.rewards_rejected],
        &[0.1 * (0.0 - 9.9 - 20.9) / 3.0],
        1e-6,
    );
    assert_close(&[metrics.rewards_accuracies], &[2.0 / 3.0], 1e-6);
    assert_close(&[metrics.rewards_margins], &[1.0], 1e-5);
    assert_close(&[metrics.logps_chosen], &[-11.5 / 3.0], 1e-6);
    assert_close(&[metrics.logps_rejected], &[-51.1 / 3.0], 1e-6);
    assert_close(&[metrics.loss], &[(LN_2 + 0.313262 + 0.126928) / 3.0], 1e-5);
    let names: Vec<&str> = metrics.named().iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "loss",
            "rewards/chosen",
            "rewards/rejected",
            "rewards/accuracies",
            "rewards/margins",
            "logps/chosen",
            "logps/rejected"
        ]
    );
}

/// Margins of `fixtures/robust_losses.json` (written by `fixtures/robust_losses.py`, numpy).
const ROBUST_MARGINS: [f64; 7] = [-50.0, -10.0, -1.0, 0.0, 1.0, 10.0, 50.0];

#[test]
fn holder_dpo_matches_its_formula_by_hand_and_the_numpy_reference() {
    // At h = 0, σ = ½: ℓ = −(1+γ)/2^γ + γ/2^(1+γ), ∂ℓ/∂h = −βγ(1+γ)/2^(γ+2).
    for gamma in [1.0f64, 2.0, 3.5] {
        let holder = config(Loss::Holder { gamma }, 0.1);
        let at_zero = values(holder.loss_of_margin(tensor::<Cpu>(&[0.0])))[0];
        let by_hand = -(1.0 + gamma) / 2f64.powf(gamma) + gamma / 2f64.powf(1.0 + gamma);
        assert_close(&[at_zero], &[by_hand], 1e-6);
        let slope = values(holder.dloss_dmargin(tensor::<Cpu>(&[0.0])))[0];
        assert_close(
            &[slope],
            &[-0.1 * gamma * (1.0 + gamma) / 2f64.powf(gamma + 2.0)],
            1e-6,
        );
    }
    let holder = config(Loss::Holder { gamma: 2.0 }, 0.1);
    assert_close(
        &values(holder.loss_of_margin(tensor::<Cpu>(&ROBUST_MARGINS))),
        &[
            -0.00013378315796229255,
            -0.1780836736970467,
            -0.4625623907995922,
            -0.5,
            -0.5374376092004078,
            -0.8219163263029533,
            -0.9998662168420377,
        ],
        1e-5,
    );
    assert_close(
        &values(holder.dloss_dmargin(tensor::<Cpu>(&ROBUST_MARGINS))),
        &[
            -2.651799449882247e-05,
            -0.023193751375771756,
            -0.03731304565337212,
            -0.0375,
            -0.03731304565337212,
            -0.023193751375771756,
            -2.651799449882247e-05,
        ],
        1e-5,
    );
}

#[test]
fn holder_dpo_gives_a_strongly_contradicted_pair_less_weight_than_dpo() {
    let margins = tensor::<Cpu>(&[-100.0, -30.0, 0.0]);
    let holder = values(config(Loss::Holder { gamma: 2.0 }, 0.1).dloss_dmargin(margins.clone()));
    let dpo = values(config(Loss::Sigmoid, 0.1).dloss_dmargin(margins));
    // DPO pushes hardest (−β) on the pair it contradicts most; Hölder-DPO lets it go.
    assert!(
        holder[0].abs() < 0.01 * dpo[0].abs(),
        "{holder:?} vs {dpo:?}"
    );
    assert!(holder[0].abs() < holder[1].abs() && holder[1].abs() < holder[2].abs());
}

/// Policy log-probs that make the margins `h` (reference 0, rejected 0, one token each).
fn margins_as_logps<B: Backend>(h: Tensor<B, 1>) -> PairLogps<B> {
    let zeros = h.zeros_like();
    let ones = h.ones_like();
    PairLogps {
        policy_chosen: h,
        policy_rejected: zeros.clone(),
        reference_chosen: zeros.clone(),
        reference_rejected: zeros,
        chosen_tokens: ones.clone(),
        rejected_tokens: ones,
    }
}

#[test]
fn dr_dpo_batch_loss_and_gradient_match_the_log_mean_exp_of_dpo_losses() {
    // The batch [−20, −2, 0, 3, 30] at β = 0.1 (fixtures/robust_losses.json): the mean of
    // the returned losses is L = −β′·log mean exp(−ℓᵢ/β′), the gradient is ∂L/∂hᵢ.
    let margins = [-20.0, -2.0, 0.0, 3.0, 30.0];
    let cases = [
        (
            1.0,
            0.6553176006055512,
            [
                -0.004043836427209973,
                -0.009533120801844312,
                -0.009628770204553182,
                -0.009415331631452913,
                -0.001739982700632977,
            ],
        ),
        (
            0.1,
            0.20868440071929545,
            [
                -8.223935807932052e-11,
                -3.0289587195318567e-05,
                -7.870546339774326e-05,
                -0.0002683853633333357,
                -0.004702599370718868,
            ],
        ),
    ];
    for (beta_prime, batch_loss, gradient) in cases {
        let dr_dpo = config(Loss::DrDpo { beta_prime }, 0.1);
        let h = tensor::<Grad>(&margins).require_grad();
        let output = dr_dpo.forward(&margins_as_logps(h.clone()));
        let mean = output.losses.mean();
        assert_close(&values(mean.clone().inner()), &[batch_loss], 1e-5);
        let grads = mean.backward();
        assert_close(&values(h.grad(&grads).unwrap()), &gradient, 1e-5);
        // By hand, with the DPO losses ℓᵢ of the reference: L lies below their mean (the
        // log-mean-exp of −ℓ/β′ is at least the mean of −ℓ/β′) and above their least.
        let dpo = values(config(Loss::Sigmoid, 0.1).loss_of_margin(tensor::<Cpu>(&margins)));
        let mean_dpo = dpo.iter().sum::<f64>() / dpo.len() as f64;
        let least = dpo.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(least < batch_loss && batch_loss < mean_dpo);
    }
}

#[test]
fn dr_dpo_with_equal_losses_is_dpo_and_stays_finite_at_extreme_margins() {
    let margins = [4.0, 4.0, 4.0];
    let dr_dpo = config(Loss::DrDpo { beta_prime: 0.5 }, 0.1);
    let dpo = config(Loss::Sigmoid, 0.1);
    let of = |loss: &LossConfig| {
        let h = tensor::<Grad>(&margins).require_grad();
        let mean = loss.forward(&margins_as_logps(h.clone())).losses.mean();
        let value = values(mean.clone().inner());
        (value, values(h.grad(&mean.backward()).unwrap()))
    };
    let (dr_value, dr_grad) = of(&dr_dpo);
    let (dpo_value, dpo_grad) = of(&dpo);
    assert_close(&dr_value, &dpo_value, 1e-6);
    assert_close(&dr_grad, &dpo_grad, 1e-6);
    let h = tensor::<Grad>(&[1e5, -1e5, 0.0]).require_grad();
    let mean = dr_dpo.forward(&margins_as_logps(h.clone())).losses.mean();
    let all = [
        values(mean.clone().inner()),
        values(h.grad(&mean.backward()).unwrap()),
    ]
    .concat();
    assert!(all.iter().all(|v| v.is_finite()), "{all:?}");
}

fn re_po(eta: f64) -> LossConfig {
    config(
        Loss::RePo {
            base: RePoBase::Sigmoid,
            eta,
            momentum: 0.1,
        },
        0.1,
    )
}

#[test]
fn re_po_matches_its_formula_by_hand_and_the_numpy_reference() {
    // At h = 0, σ(Δ) = ½ whatever η: ℓ = log 2, w = η, ∂ℓ/∂h = −(2η−1)·β/2.
    for eta in [0.6, 0.9, 1.0] {
        let at_zero = tensor::<Cpu>(&[0.0]);
        let loss = re_po(eta);
        assert_close(&values(loss.loss_of_margin(at_zero.clone())), &[LN_2], 1e-6);
        assert_close(
            &values(loss.label_posteriors(at_zero.clone()).unwrap()),
            &[eta],
            1e-6,
        );
        assert_close(
            &values(loss.dloss_dmargin(at_zero)),
            &[-(2.0 * eta - 1.0) * 0.05],
            1e-6,
        );
    }
    // fixtures/robust_losses.json, DPO base, η = 0.9.
    let loss = re_po(0.9);
    let margins = tensor::<Cpu>(&ROBUST_MARGINS);
    assert_close(
        &values(loss.loss_of_margin(margins.clone())),
        &[
            2.250427, 1.154697, 0.733934, LN_2, 0.653958, 0.378560, 0.111327,
        ],
        1e-5,
    );
    assert_close(
        &values(loss.dloss_dmargin(margins.clone())),
        &[
            -0.0050482,
            -0.0499089,
            -0.0415612,
            -0.04,
            -0.0383668,
            -0.0229671,
            -0.00059448,
        ],
        1e-5,
    );
    assert_close(
        &values(loss.label_posteriors(margins).unwrap()),
        &[
            0.057174, 0.768031, 0.890633, 0.9, 0.908647, 0.960730, 0.999252,
        ],
        1e-5,
    );
}

#[test]
fn re_po_at_full_reliability_is_dpo_and_learns_its_reliability_from_the_posteriors() {
    let margins = [-20.0, -2.0, 0.0, 3.0, 30.0];
    let dpo = config(Loss::Sigmoid, 0.1);
    assert_close(
        &values(re_po(1.0).loss_of_margin(tensor::<Cpu>(&margins))),
        &values(dpo.loss_of_margin(tensor::<Cpu>(&margins))),
        1e-6,
    );
    // The paper's Eq. 7 on the reference batch: w = [0.54915, 0.88051, 0.9, 0.92395, 0.99450],
    // η = 0.9·0.9 + 0.1·mean(w) = 0.894962.
    let loss = re_po(0.9);
    let posteriors = values(loss.label_posteriors(tensor::<Cpu>(&margins)).unwrap());
    assert_close(
        &posteriors,
        &[0.54915, 0.88051, 0.9, 0.92395, 0.99450],
        1e-5,
    );
    let mean = posteriors.iter().sum::<f64>() / posteriors.len() as f64;
    let Loss::RePo { eta, .. } = loss.next_reliability(mean).loss() else {
        panic!("RE-PO stays RE-PO");
    };
    assert_close(&[eta], &[0.894962], 1e-5);
    assert!(config(Loss::Sigmoid, 0.1)
        .label_posteriors(tensor::<Cpu>(&margins))
        .is_none());
    assert_eq!(dpo.next_reliability(0.3), dpo);
}

#[test]
fn re_po_lets_a_contradicted_pair_go_where_dpo_pushes_hardest() {
    let margins = tensor::<Cpu>(&[-100.0, 0.0]);
    let re_po = values(re_po(0.9).dloss_dmargin(margins.clone()));
    let dpo = values(config(Loss::Sigmoid, 0.1).dloss_dmargin(margins));
    assert!(re_po[0].abs() < 0.01 * dpo[0].abs(), "{re_po:?} vs {dpo:?}");
    assert!(re_po[0].abs() < re_po[1].abs());
}

#[test]
fn re_po_refuses_a_reliability_of_a_coin_toss() {
    for eta in [0.5, 0.2, 1.5] {
        let result = LossConfig::new(
            Loss::RePo {
                base: RePoBase::Sigmoid,
                eta,
                momentum: 0.1,
            },
            0.1,
        );
        assert!(
            result.unwrap_err().to_string().contains("repo_eta0"),
            "{eta}"
        );
    }
}
