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

/// Runs `steps` SFT steps of `batch` examples (peak `lr`, cosine after 5% warmup, clipping at
/// 1), visiting `examples` in the order of a sampler seeded with `seed`.
#[allow(clippy::too_many_arguments)]
pub fn run_sft<B: TrainingBackend>(
    mut model: CausalLm<B>,
    examples: &[(&[u32], &[u32])],
    (steps, batch, lr): (usize, usize, f64),
    bucket: usize,
    seed: u64,
    device: &B::Device,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<CausalLm<B>, TrainError> {
    let lengths = examples.iter().map(|(p, r)| p.len() + r.len()).collect();
    let mut sampler = BatchSampler::new(lengths, batch, bucket, seed);
    let schedule = LrSchedule {
        peak: lr,
        warmup: steps / 20,
        total: steps,
        decay: Decay::Cosine,
    };
    let mut trainer = Trainer::new(schedule, 0.0, Some(1.0));
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
