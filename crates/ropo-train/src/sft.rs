//! The SFT stage: supervised steps on the chosen responses (or the gold task's examples)
//! before preference training.

use ropo_data::batches::BatchSampler;
use ropo_models::{attention::TrainingBackend, CausalLm};

use crate::{
    optim::Trainer,
    records::Progress,
    schedule::{Decay, LrSchedule},
    step::sft_step,
    TrainError,
};

/// How an SFT stage steps: optimiser steps, examples per step, peak learning rate, and whether
/// steps recompute each decoder layer's activations in their backward
/// ([`crate::layer_checkpointing`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SftStage {
    /// Optimiser steps.
    pub steps: usize,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Recompute each layer's activations in the backward instead of keeping them.
    pub layer_checkpointing: bool,
}

/// Runs `stage.steps` SFT steps of `stage.batch` examples (peak `stage.lr`, cosine after 5%
/// warmup, clipping at 1), visiting `examples` in the order of a sampler seeded with `seed`.
#[allow(clippy::too_many_arguments)]
pub fn run_sft<B: TrainingBackend>(
    mut model: CausalLm<B>,
    examples: &[(&[u32], &[u32])],
    stage: SftStage,
    bucket: usize,
    seed: u64,
    device: &B::Device,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<CausalLm<B>, TrainError> {
    let lengths = examples.iter().map(|(p, r)| p.len() + r.len()).collect();
    let (steps, batch) = (stage.steps, stage.batch);
    let mut sampler = BatchSampler::new(lengths, batch, bucket, seed);
    let schedule = LrSchedule {
        peak: stage.lr,
        warmup: steps / 20,
        total: steps,
        decay: Decay::Cosine,
    };
    let mut trainer =
        Trainer::new(schedule, 0.0, Some(1.0)).with_layer_checkpointing(stage.layer_checkpointing);
    for step in 0..steps {
        let batch: Vec<(&[u32], &[u32])> = sampler
            .next_batch()
            .into_iter()
            .map(|i| examples[i])
            .collect();
        let (next, loss, _) = sft_step(model, &mut trainer, &batch, device)?;
        model = next;
        on_progress(Progress::Sft {
            step: step + 1,
            total: steps,
            loss,
        });
    }
    trainer.check_last_update()?;
    Ok(model)
}
