//! stories260K's SFT gradients are well conditioned: nudging every weight by a relative ε
//! moves each parameter's gradient norm by about 6ε. So two backends whose arithmetic differs
//! by a few ulps must agree on these gradients to about 1e-6, and the 1e-3 tolerance of
//! `backend_agreement.rs` can only be crossed by a real fault, not by float order
//! (docs/building.md, the wgpu rerun).

use std::path::PathBuf;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{
    backend::{AutodiffBackend, Backend},
    Distribution, ElementConversion, Tensor,
};
use ropo::backend::Training;
use ropo::models::{checkpoint, CausalLm, ScoreRow};

fn model() -> CausalLm<Training> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/assets/models/stories260K.bin");
    checkpoint::load(&path, &Default::default()).unwrap()
}

/// The norm of each parameter's gradient of the mean response NLL of six prompt/response rows
/// of different lengths (so the padded path is in it), in the model's visiting order.
fn gradient_norms(model: &CausalLm<Training>) -> Vec<f64> {
    struct Norms<'a> {
        grads: &'a GradientsParams,
        norms: Vec<f64>,
    }
    impl ModuleVisitor<Training> for Norms<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Training, D>>) {
            type Inner = <Training as AutodiffBackend>::InnerBackend;
            if let Some(grad) = self.grads.get::<Inner, D>(param.id) {
                let squares = grad.powf_scalar(2.0).sum().into_scalar().elem::<f64>();
                self.norms.push(squares.sqrt());
            }
        }
    }
    let token = |row: u32, i: u32| (i * 37 + row * 101) % 500 + 3;
    let rows: Vec<(Vec<u32>, Vec<u32>)> = (0..6u32)
        .map(|row| {
            let prompt = std::iter::once(1)
                .chain((0..3 + row * 2).map(|i| token(row, i)))
                .collect();
            let response = (100..110 + row * 3).map(|i| token(row, i)).collect();
            (prompt, response)
        })
        .collect();
    let rows: Vec<ScoreRow<'_>> = rows
        .iter()
        .map(|(prompt, response)| ScoreRow { prompt, response })
        .collect();
    let scores = ropo::models::score(model, &rows, &Default::default()).unwrap();
    let loss = scores.sum.sum().neg() / scores.count.sum().clamp_min(1.0);
    let grads = GradientsParams::from_grads(loss.backward(), model);
    let mut norms = Norms {
        grads: &grads,
        norms: Vec::new(),
    };
    model.visit(&mut norms);
    norms.norms
}

/// Multiplies every weight by `1 + ε·u`, `u` uniform in [−1, 1].
struct Nudge(f64);

impl ModuleMapper<Training> for Nudge {
    fn map_float<const D: usize>(
        &mut self,
        param: Param<Tensor<Training, D>>,
    ) -> Param<Tensor<Training, D>> {
        let epsilon = self.0;
        param.map(|weight| {
            let weight = weight.inner();
            let u = Tensor::random(
                weight.shape(),
                Distribution::Uniform(-1.0, 1.0),
                &weight.device(),
            );
            let nudged = weight.clone() + weight * u.mul_scalar(epsilon);
            Tensor::from_inner(nudged).require_grad()
        })
    }
}

#[test]
fn a_relative_nudge_of_the_weights_moves_each_gradient_norm_about_as_much() {
    let base = gradient_norms(&model());
    assert_eq!(base.len(), 47, "stories260K has 47 trained tensors");
    for epsilon in [1e-6, 1e-5, 1e-4] {
        Training::seed(&Default::default(), 7);
        let nudged = gradient_norms(&model().map(&mut Nudge(epsilon)));
        let worst = base
            .iter()
            .zip(&nudged)
            .map(|(a, b)| (a - b).abs() / a.abs())
            .fold(0.0, f64::max);
        println!("ε = {epsilon:.0e}: gradient norms move by {worst:.2e} at most");
        // Measured: 6.0e-6, 5.7e-5 and 5.8e-4, about 6ε.
        assert!(worst < 20.0 * epsilon, "ε = {epsilon:.0e}: {worst:.2e}");
        assert!(worst > 0.0, "ε = {epsilon:.0e}: the nudge changed nothing");
    }
}
