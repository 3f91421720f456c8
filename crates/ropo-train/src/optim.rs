//! The optimiser: burn's AdamW, with global-norm gradient clipping and the learning-rate
//! schedule, one place for every training stage; and the check that an update left the
//! weights finite.

use burn::{
    module::{AutodiffModule, ModuleVisitor, Param},
    optim::{adaptor::OptimizerAdaptor, AdamW, AdamWConfig, GradientsParams, Optimizer},
    tensor::{backend::AutodiffBackend, ElementConversion, Tensor},
};

use crate::{schedule::LrSchedule, TrainError};

/// AdamW plus the schedule and clipping of one training stage.
pub struct Trainer<M: AutodiffModule<B>, B: AutodiffBackend> {
    optimizer: OptimizerAdaptor<AdamW, M, B>,
    schedule: LrSchedule,
    max_grad_norm: Option<f64>,
    step: usize,
    first_step: usize,
    /// The step last taken and the sum of the weights it trained, queued on the device and
    /// read by [`Trainer::check_last_update`].
    last_update: Option<(usize, Tensor<B::InnerBackend, 1>)>,
    /// Whether steps recompute each decoder layer's activations in the backward
    /// ([`crate::layer_checkpointing`]) instead of keeping them.
    layer_checkpointing: bool,
}

/// AdamW's first and second moments of every parameter, by parameter id.
pub type Moments<M, B> = <OptimizerAdaptor<AdamW, M, B> as Optimizer<M, B>>::Record;

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The learning rate used.
    pub lr: f64,
    /// Global L2 norm of the gradients before clipping.
    pub grad_norm: f64,
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> Trainer<M, B> {
    /// AdamW (β₁ 0.9, β₂ 0.999, ε 1e-8) with decoupled `weight_decay`, the `schedule`, and
    /// clipping of the global gradient norm to `max_grad_norm` when given.
    pub fn new(schedule: LrSchedule, weight_decay: f64, max_grad_norm: Option<f64>) -> Self {
        Self {
            optimizer: AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(weight_decay as f32)
                .init(),
            schedule,
            max_grad_norm,
            step: 0,
            first_step: 0,
            last_update: None,
            layer_checkpointing: false,
        }
    }

    /// This optimiser with steps that recompute each decoder layer's activations in their
    /// backward rather than keep them (TRL: `gradient_checkpointing`) when `on`.
    pub fn with_layer_checkpointing(mut self, on: bool) -> Self {
        self.layer_checkpointing = on;
        self
    }

    /// Whether steps recompute each decoder layer's activations in their backward.
    pub fn layer_checkpointing(&self) -> bool {
        self.layer_checkpointing
    }

    /// This optimiser with its first step at position `first_step` of the schedule: a round of
    /// a longer run continues the run's one schedule rather than starting its own.
    pub fn starting_at(mut self, first_step: usize) -> Self {
        self.first_step = first_step;
        self
    }

    /// Optimiser steps taken so far.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// The optimiser's moments of every parameter, by parameter id (what a checkpoint keeps).
    pub fn moments(&self) -> Moments<M, B> {
        self.optimizer.to_record()
    }

    /// This optimiser with `moments` (from [`Trainer::moments`]) restored and the schedule at
    /// position `step`.
    pub fn with_moments(mut self, moments: Moments<M, B>, step: usize) -> Self {
        self.optimizer = self.optimizer.load_record(moments);
        self.step = step;
        self
    }

    /// Applies `grads` (of `model`'s parameters) and advances the schedule.
    pub fn step(&mut self, model: M, mut grads: GradientsParams) -> (M, StepReport) {
        let grad_norm = global_norm::<M, B>(&model, &grads);
        if let Some(max) = self.max_grad_norm {
            if grad_norm > max {
                scale_grads::<M, B>(&model, &mut grads, max / grad_norm);
            }
        }
        let lr = self.schedule.at(self.first_step + self.step);
        let model = self.optimizer.step(lr, model, grads);
        self.step += 1;
        self.last_update = trained_sum::<M, B>(&model).map(|sum| (self.step, sum));
        (model, StepReport { lr, grad_norm })
    }

    /// Refuses the last step's update if it left a trained weight NaN or infinite (a
    /// learning rate far too high), naming that step. The check is one sum over the trained
    /// weights, queued on the device by [`Trainer::step`] and read here: call it when the
    /// device has caught up anyway (after the next step's loss is read, or after the last
    /// step), so it adds no wait.
    pub fn check_last_update(&mut self) -> Result<(), TrainError> {
        let Some((step, sum)) = self.last_update.take() else {
            return Ok(());
        };
        let value = sum.into_scalar().elem::<f64>();
        if value.is_finite() {
            return Ok(());
        }
        Err(TrainError::Diverged {
            step,
            what: format!(
                "its update left trained weights that are not finite (their sum is {value})"
            ),
        })
    }
}

/// `Σθ` over the weights `model` trains (those that take a gradient: with LoRA the adapters
/// only), not yet read: not finite exactly when a weight is NaN or infinite, or when the
/// weights are so large that their sum overflows f32, which is divergence too.
fn trained_sum<M: AutodiffModule<B>, B: AutodiffBackend>(
    model: &M,
) -> Option<Tensor<B::InnerBackend, 1>> {
    struct Sum<B: AutodiffBackend> {
        total: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Sum<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            if !value.is_require_grad() {
                return;
            }
            let sum = value.inner().sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + sum,
                None => sum,
            });
        }
    }
    let mut visitor = Sum::<B> { total: None };
    model.visit(&mut visitor);
    visitor.total
}

/// `sqrt(Σ‖g‖²)` over every parameter's gradient.
fn global_norm<M: AutodiffModule<B>, B: AutodiffBackend>(
    model: &M,
    grads: &GradientsParams,
) -> f64 {
    struct SumSquares<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        total: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let squares = grad.powf_scalar(2.0).sum();
                self.total = Some(match self.total.take() {
                    Some(total) => total + squares,
                    None => squares,
                });
            }
        }
    }
    let mut visitor = SumSquares::<B> { grads, total: None };
    model.visit(&mut visitor);
    visitor
        .total
        .map_or(0.0, |total| total.into_scalar().elem::<f64>().sqrt())
}

fn scale_grads<M: AutodiffModule<B>, B: AutodiffBackend>(
    model: &M,
    grads: &mut GradientsParams,
    factor: f64,
) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.grads.register(param.id, grad.mul_scalar(self.factor));
            }
        }
    }
    model.visit(&mut Scale { grads, factor });
}
