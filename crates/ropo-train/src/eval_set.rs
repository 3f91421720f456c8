//! The clean pairs and prompts the gold experiments judge a policy on (held-out and
//! validation), scored once under the SFT reference, with its baseline samples.

use ropo_data::{gold::GoldTask, TokenizedPair};
use ropo_models::{attention::AttentionBackend, CausalLm};

use crate::{
    config::GoldExperiment,
    eval::{gold_eval, implicit_reward_eval, sample_responses, GoldEval},
    reference::{reference_logps, ReferenceLogps},
    seeds::EvalSeeds,
    TrainError,
};

/// Clean pairs and prompts to judge a policy on, with what the SFT reference gives them.
pub(crate) struct EvalSet {
    pairs: Vec<TokenizedPair>,
    refs: Vec<ReferenceLogps>,
    prompts: Vec<Vec<u32>>,
    baseline: Vec<Vec<u32>>,
    seed: u64,
}

impl EvalSet {
    /// The clean held-out pairs and prompts of `experiment` (the same for every seed), with
    /// the reference's baseline samples drawn for seed index `run`.
    pub(crate) fn held_out<B: AttentionBackend>(
        experiment: &GoldExperiment,
        reference: &CausalLm<B>,
        run: u64,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let size = (experiment.eval_pairs, experiment.eval_prompts);
        let seeds = experiment.seeds().held_out(run);
        Self::new(&experiment.task, reference, size, seeds, device)
    }

    /// The validation pairs and prompts of `experiment` (drawn apart from training and
    /// held-out data), with the reference's baseline samples drawn for seed index `run`.
    pub(crate) fn validation<B: AttentionBackend>(
        experiment: &GoldExperiment,
        reference: &CausalLm<B>,
        run: u64,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let size = (experiment.validation, experiment.validation);
        let seeds = experiment.seeds().validation(run);
        Self::new(&experiment.task, reference, size, seeds, device)
    }

    /// Draws `size` pairs and prompts, scores the pairs under the reference and samples the
    /// reference's baseline responses.
    fn new<B: AttentionBackend>(
        task: &GoldTask,
        reference: &CausalLm<B>,
        size: (usize, usize),
        seeds: EvalSeeds,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let pairs = task.pairs(size.0, seeds.pairs);
        let refs = reference_logps(reference, &pairs, 256, 1, device, &mut |_| {})?;
        let prompts = task.prompts(size.1, seeds.prompts);
        let baseline = sample_responses(reference, task, &prompts, seeds.baseline, device)?;
        Ok(Self {
            pairs,
            refs,
            prompts,
            baseline,
            seed: seeds.samples,
        })
    }

    /// `model`'s implicit-reward accuracy and mean margin on the pairs, and the gold reward
    /// and win rate of its samples on the prompts.
    pub(crate) fn judge<B: AttentionBackend>(
        &self,
        model: &CausalLm<B>,
        task: &GoldTask,
        beta: f64,
        device: &B::Device,
    ) -> Result<(f64, f64, GoldEval), TrainError> {
        let pairs = implicit_reward_eval(model, &self.pairs, &self.refs, beta, 256, device)?;
        let gold = gold_eval(
            model,
            task,
            &self.prompts,
            &self.baseline,
            self.seed,
            device,
        )?;
        Ok((pairs.accuracy, pairs.margin, gold))
    }
}
