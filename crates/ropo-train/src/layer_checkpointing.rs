//! Activation checkpointing per decoder layer (TRL's `gradient_checkpointing`, PyTorch's
//! per-block recomputation): a step keeps each layer's input alone and recomputes the layer's
//! activations in the backward, so a step holds one layer's activations at a time instead of
//! every layer's, for about one more forward pass of compute.
//!
//! The forward runs the [`LayerStages`] on an untracked copy of the model (no autodiff graph),
//! keeping every layer's input. The backward then takes the stages one at a time from the head
//! down: the head stage from the last layer's output, as a leaf; then each layer again from its
//! kept input, as a leaf, its backward seeded with its output's gradient (the sum of `output ·
//! gradient`); then the embedding. Each stage's parameter gradients are added up. Dropout draws
//! the same masks in a layer's forward and its recomputation: the backend's generator is set
//! from one per-step seed and the layer's index before both.

use burn::{
    module::Module,
    optim::{GradientsAccumulator, GradientsParams},
    tensor::{backend::Backend, Distribution, Tensor},
};
use ropo_models::{attention::TrainingBackend, layer_stages::LayerStages, CausalLm};

/// The gradients of `loss(stages' output)` with respect to `model`'s parameters, computed a
/// layer at a time (see the module's doc), and what `loss` gives beside its value: the same
/// gradients as one backward over the whole forward, to float rounding.
///
/// `loss` maps the head stage's output to a scalar `[1]` and the metrics to keep.
pub fn checkpointed_gradients<B, S, M>(
    model: &CausalLm<B>,
    stages: &S,
    loss: impl FnOnce(S::Output) -> (Tensor<B, 1>, M),
) -> (GradientsParams, M)
where
    B: TrainingBackend,
    S: LayerStages<B>,
{
    let layers = model.num_layers();
    let untracked = model.clone().no_grad();
    let embedded = stages.embed(&untracked);
    let device = embedded[0].device();
    let seeds = DropoutSeeds::draw::<B>(&device);
    let mut kept = Vec::with_capacity(layers);
    let mut hidden = embedded;
    for index in 0..layers {
        kept.push(hidden.clone());
        seeds.set_for_layer::<B>(&device, index);
        hidden = stages.layer(&untracked, index, hidden);
    }

    let mut accumulator = GradientsAccumulator::<CausalLm<B>>::new();
    let leaves = as_leaves(hidden);
    let (value, metrics) = loss(stages.head(model, leaves.clone()));
    let mut output_grads = backward(model, &mut accumulator, value, &leaves);
    for (index, inputs) in kept.into_iter().enumerate().rev() {
        let leaves = as_leaves(inputs);
        seeds.set_for_layer::<B>(&device, index);
        let outputs = stages.layer(model, index, leaves.clone());
        let value = seeded_by(outputs, output_grads);
        output_grads = backward(model, &mut accumulator, value, &leaves);
    }
    let value = seeded_by(stages.embed(model), output_grads);
    backward(model, &mut accumulator, value, &[]);
    (accumulator.grads(), metrics)
}

/// Hidden states as leaves of a new graph, each tracked.
fn as_leaves<B: TrainingBackend>(hidden: Vec<Tensor<B, 3>>) -> Vec<Tensor<B, 3>> {
    hidden
        .into_iter()
        .map(|h| h.detach().require_grad())
        .collect()
}

/// `Σ_s sum(outputs[s] · grads[s])`, `[1]`: its gradient with respect to each output is that
/// output's gradient, so its backward carries the later stages' gradients into this stage. A
/// segment without a gradient (nothing after it read it) adds nothing.
fn seeded_by<B: TrainingBackend>(
    outputs: Vec<Tensor<B, 3>>,
    grads: Vec<Option<Tensor<B::InnerBackend, 3>>>,
) -> Tensor<B, 1> {
    let device = outputs[0].device();
    outputs
        .into_iter()
        .zip(grads)
        .filter_map(|(output, grad)| grad.map(|grad| (output * Tensor::from_inner(grad)).sum()))
        .fold(Tensor::zeros([1], &device), |total, term| total + term)
}

/// Runs `value`'s backward, adds the parameters' gradients to `accumulator`, and returns the
/// gradient of each of `leaves`.
fn backward<B: TrainingBackend>(
    model: &CausalLm<B>,
    accumulator: &mut GradientsAccumulator<CausalLm<B>>,
    value: Tensor<B, 1>,
    leaves: &[Tensor<B, 3>],
) -> Vec<Option<Tensor<B::InnerBackend, 3>>> {
    let grads = value.backward();
    let leaf_grads = leaves.iter().map(|leaf| leaf.grad(&grads)).collect();
    accumulator.accumulate(model, GradientsParams::from_grads(grads, model));
    leaf_grads
}

/// The dropout seeds of one checkpointed step: one seed drawn from the backend's generator (so
/// a seeded run draws the same), from which each layer's generator is set before its forward
/// and again before its recomputation, so that both draw the same masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropoutSeeds(u64);

impl DropoutSeeds {
    /// A step's seed: 24 bits from each of two uniform draws of the backend's generator.
    pub fn draw<B: Backend>(device: &B::Device) -> Self {
        let seed = Tensor::<B, 1>::random([2], Distribution::Default, device)
            .into_data()
            .iter::<f64>()
            .fold(0u64, |seed, draw| {
                (seed << 24) ^ (draw * f64::from(1 << 24)) as u64
            });
        Self(seed)
    }

    /// Sets the backend's generator for layer `index`.
    pub fn set_for_layer<B: Backend>(self, device: &B::Device, index: usize) {
        B::seed(
            device,
            self.0 ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
    }
}
