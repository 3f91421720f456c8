//! The gold experiment's config: the task, the policy's shape, the SFT and preference stages,
//! the losses × noise × seeds grid and the evaluation sizes, each with its default (the
//! embedded run), and the checks that run before anything trains.

use ropo_core::{LossParams, LossSpec, DEFAULT_BETA};
use ropo_data::gold::GoldTask;
use ropo_models::{config::ModelConfig, llama::LlamaConfig};
use serde::{Deserialize, Serialize};

use crate::{
    framework::Framework,
    label_noise::NoiseModel,
    loss_entry::{self, DataStep, LossEntry},
    schedule::StepSchedule,
    seeds::Seeds,
    TrainError,
};

/// Everything the built-in experiment needs; every field has a default (the embedded run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoldExperiment {
    /// The task.
    pub task: GoldTask,
    /// The policy: a small Llama-style transformer.
    pub model: TinyModel,
    /// Supervised fine-tuning on the task's mixed-quality responses.
    pub sft: SftStage,
    /// Preference training, shared by every loss.
    pub preference: PreferenceStage,
    /// The methods, each trained at every noise rate and seed: loss names (`ropo-core`'s) or
    /// tables with their own parameters (`{ropo = {alpha = 6}}`), a name followed by `+filter`
    /// or `+filter+rs` adding the ROPO framework's data step between rounds (`[framework]`).
    pub losses: Vec<LossEntry>,
    /// Label-noise rates η: the expected share of flipped training labels.
    pub noise: Vec<f64>,
    /// How labels are flipped: `symmetric` (each with probability η), `bradley_terry` (a
    /// judge of the gold reward whose mistakes fall on close pairs, as often wrong) or
    /// `length_judge` (a judge who prefers the longer response, as often wrong; only for
    /// `[dataset]` configs, since every gold response has the same length).
    pub noise_model: NoiseModel,
    /// Seeds per (loss, η): each redraws the noise, the batch order and the evaluation samples.
    pub seeds: u64,
    /// Base seed of the whole experiment (model init, data).
    pub seed: u64,
    /// Clean held-out pairs for implicit-reward accuracy.
    pub eval_pairs: usize,
    /// Held-out prompts for the gold reward and win rate.
    pub eval_prompts: usize,
    /// Validation pairs and prompts (drawn apart from training and held-out data): the
    /// training-length curves are measured on them, so choices made from the curves never
    /// look at the held-out numbers.
    pub validation: usize,
    /// Evaluate on the validation split every this many preference steps (0: only at the end).
    pub eval_every: usize,
    /// At each validation point also score every training pair by its loss under the policy
    /// and record how well that finds the flipped labels (`noise_auc`); one forward over the
    /// training pairs per point.
    pub noise_detection: bool,
    /// Checkpoint a run every this many preference steps (0: never); needs a run folder.
    pub checkpoint_every: usize,
    /// How many of a run's newest checkpoints to keep.
    pub keep_checkpoints: usize,
    /// The ROPO framework's settings (used by the methods with a data step).
    pub framework: Framework,
}

/// Shape of the experiment's transformer (a `[model]` table gives every field: they only make
/// sense together).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinyModel {
    /// `d_model`.
    pub hidden: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// SwiGLU width.
    pub intermediate: usize,
}

/// The SFT stage; fields left out keep their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftStage {
    /// Training examples.
    pub examples: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate (cosine decay after 5% warmup).
    pub lr: f64,
}

/// The preference stage and the loss hyper-parameters; fields left out keep their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreferenceStage {
    /// Training pairs (before noise).
    pub pairs: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Pairs per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warmup steps.
    pub warmup: usize,
    /// The loss parameters of every loss in `losses` (β, α, ε left out: 0.1, 14 and 0.2; the
    /// others: ropo-core's defaults), in this table beside the stage's own keys.
    #[serde(flatten, deserialize_with = "stage_loss")]
    pub loss: LossSpec,
    /// AdamW's decoupled weight decay (left out: 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Forwards each batch is split into, their gradients accumulated (left out: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_accum: Option<usize>,
    /// Recompute each decoder layer's activations in the backward instead of keeping them (TRL:
    /// `gradient_checkpointing`; left out: false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_checkpointing: Option<bool>,
}

impl PreferenceStage {
    /// How the stage steps: its steps, batch, learning rate, warmup, weight decay and
    /// accumulation.
    pub fn schedule(&self) -> StepSchedule {
        StepSchedule {
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
            warmup: self.warmup,
            weight_decay: self.weight_decay.unwrap_or(0.0),
            grad_accum: self.grad_accum.unwrap_or(1),
            layer_checkpointing: self.gradient_checkpointing.unwrap_or(false),
        }
    }

    /// The loss parameters a stage sets where its table leaves them out: they are written in
    /// every stage table, so a run's config says the β, α and ε it trained with.
    fn loss_defaults() -> LossSpec {
        LossSpec {
            beta: Some(DEFAULT_BETA),
            alpha: Some(LossParams::default().alpha),
            epsilon: Some(0.2),
            ..LossSpec::default()
        }
    }
}

/// A stage table's loss parameters, those it leaves out taken from the stage's defaults.
fn stage_loss<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<LossSpec, D::Error> {
    Ok(LossSpec::deserialize(deserializer)?.or(&PreferenceStage::loss_defaults()))
}

/// The methods of the embedded run: the baselines, the ROPO loss, the robust losses that came
/// after it (Dr. DPO, Hölder-DPO, RE-PO), and the framework's filter (with DPO's loss too, to tell
/// the loss's part from the filter's) and rejection sampling.
pub const DEFAULT_METHODS: [&str; 11] = [
    "dpo",
    "cdpo",
    "rdpo",
    "ipo",
    "ropo",
    "drdpo",
    "holder",
    "repo",
    "dpo+filter",
    "ropo+filter",
    "ropo+filter+rs",
];

impl Default for SftStage {
    fn default() -> Self {
        Self {
            examples: 4000,
            steps: 150,
            batch: 64,
            lr: 1e-2,
        }
    }
}

impl Default for PreferenceStage {
    fn default() -> Self {
        Self {
            pairs: 1500,
            steps: 200,
            batch: 32,
            lr: 1e-3,
            warmup: 10,
            loss: Self::loss_defaults(),
            weight_decay: None,
            grad_accum: None,
            gradient_checkpointing: None,
        }
    }
}

impl Default for GoldExperiment {
    fn default() -> Self {
        Self {
            task: GoldTask::default(),
            model: TinyModel {
                hidden: 32,
                layers: 2,
                heads: 4,
                intermediate: 64,
            },
            sft: SftStage::default(),
            preference: PreferenceStage::default(),
            losses: DEFAULT_METHODS.map(LossEntry::from).to_vec(),
            noise: vec![0.0, 0.2, 0.4],
            noise_model: NoiseModel::Symmetric,
            seeds: 8,
            seed: 0,
            eval_pairs: 500,
            eval_prompts: 500,
            validation: 300,
            eval_every: 50,
            noise_detection: false,
            checkpoint_every: 100,
            keep_checkpoints: 2,
            framework: Framework::default(),
        }
    }
}

impl GoldExperiment {
    /// Checks every value before anything runs; the message names the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let fail = |message: String| Err(TrainError::Config(message));
        validate_grid(&self.noise, &self.losses, &self.preference, self.sft.lr)?;
        if self.noise_model == NoiseModel::LengthJudge && self.noise.iter().any(|n| *n > 0.0) {
            return fail(
                "noise_model: length_judge needs responses of different lengths, and every \
                 response of the gold task has task.length tokens; use it with a [dataset] \
                 config"
                    .into(),
            );
        }
        for (field, value) in [
            ("sft.batch", self.sft.batch),
            ("preference.batch", self.preference.batch),
            ("preference.pairs", self.preference.pairs),
            ("sft.examples", self.sft.examples),
            ("seeds", self.seeds as usize),
            ("eval_pairs", self.eval_pairs),
            ("eval_prompts", self.eval_prompts),
        ] {
            if value == 0 {
                return fail(format!("{field} must be at least 1"));
            }
        }
        if self.losses.is_empty() || self.noise.is_empty() {
            return fail("losses and noise must each name at least one value".into());
        }
        for (field, value) in [
            ("preference.steps", self.preference.steps),
            ("keep_checkpoints", self.keep_checkpoints),
            ("validation", self.validation),
        ] {
            if value == 0 {
                return fail(format!("{field} must be at least 1"));
            }
        }
        if self.preference.warmup >= self.preference.steps {
            return fail(format!(
                "preference.warmup ({}) must be below preference.steps ({}): the learning rate \
                 would never leave its warmup",
                self.preference.warmup, self.preference.steps
            ));
        }
        for (field, batch, of, pool) in [
            (
                "sft.batch",
                self.sft.batch,
                "sft.examples",
                self.sft.examples,
            ),
            (
                "preference.batch",
                self.preference.batch,
                "preference.pairs",
                self.preference.pairs,
            ),
        ] {
            if batch > pool {
                return fail(format!("{field} ({batch}) must not exceed {of} ({pool})"));
            }
        }
        let names = self.loss_names();
        if let Some(name) = names
            .iter()
            .enumerate()
            .find_map(|(i, n)| names[..i].contains(n).then_some(n))
        {
            return fail(format!("losses: {name} is named twice"));
        }
        if let Some(eta) = self
            .noise
            .iter()
            .enumerate()
            .find_map(|(i, e)| self.noise[..i].contains(e).then_some(e))
        {
            return fail(format!("noise: rate {eta} is named twice"));
        }
        if let Some(entry) = self.losses.iter().find(|e| e.data_step() != DataStep::None) {
            self.framework.check(&entry.name(), self.preference.steps)?;
        }
        self.task
            .validate()
            .map_err(|e| TrainError::Config(format!("task.{e}")))?;
        let model = self.model_config();
        model
            .validate()
            .map_err(|e| TrainError::Config(format!("model: {e}")))?;
        model
            .check_fits_in_memory()
            .map_err(|e| TrainError::Config(format!("model: {e}")))?;
        self.check_data_fits_in_memory()
    }

    /// Refuses sizes whose token data alone (SFT examples, preference and evaluation pairs,
    /// 4 bytes a token) would not fit in the memory available, before any is generated.
    fn check_data_fits_in_memory(&self) -> Result<(), TrainError> {
        let sequences = [
            self.sft.examples,
            self.preference.pairs.saturating_mul(3),
            self.eval_pairs.saturating_mul(3),
            self.eval_prompts,
        ]
        .iter()
        .fold(0u128, |sum, n| sum + *n as u128);
        let bytes = sequences * self.task.sequence_length() as u128 * 4;
        match ropo_models::model_size::available_bytes() {
            Some(available) if bytes > u128::from(available) => Err(TrainError::Config(format!(
                "sft.examples, preference.pairs, eval_pairs, eval_prompts and task.length ask for \
                 {sequences} sequences of {} tokens, {:.1} GiB, and this machine has {:.1} GiB \
                 available",
                self.task.sequence_length(),
                bytes as f64 / f64::from(1u32 << 30),
                available as f64 / f64::from(1u32 << 30)
            ))),
            _ => Ok(()),
        }
    }

    /// The losses' names, in table order.
    pub fn loss_names(&self) -> Vec<String> {
        loss_entry::names(&self.losses)
    }

    /// Every random stream of the experiment, derived from `seed`.
    pub fn seeds(&self) -> Seeds {
        Seeds { base: self.seed }
    }

    pub(crate) fn model_config(&self) -> ModelConfig {
        ModelConfig::Llama(LlamaConfig::new(
            self.task.vocab_size(),
            self.model.hidden,
            self.model.intermediate,
            self.model.layers,
            self.model.heads,
            self.task.sequence_length(),
        ))
    }
}

/// The checks every experiment makes: noise rates in [0, ½), known losses with valid
/// parameters, and positive learning rates for SFT (`sft_lr`) and the preference stage.
pub(crate) fn validate_grid(
    noise: &[f64],
    losses: &[LossEntry],
    preference: &PreferenceStage,
    sft_lr: f64,
) -> Result<(), TrainError> {
    if let Some(eta) = noise.iter().find(|eta| !(0.0..0.5).contains(*eta)) {
        return Err(TrainError::Config(format!(
            "noise: rate {eta} must be in [0, 0.5)"
        )));
    }
    for entry in losses {
        entry.loss(&preference.loss)?;
    }
    if preference.grad_accum == Some(0) {
        return Err(TrainError::Config(
            "preference.grad_accum: must be at least 1".into(),
        ));
    }
    if let Some(decay) = preference
        .weight_decay
        .filter(|d| !(*d >= 0.0 && d.is_finite()))
    {
        return Err(TrainError::Config(format!(
            "preference.weight_decay: {decay} must be a finite number >= 0"
        )));
    }
    for (field, value) in [("sft.lr", sft_lr), ("preference.lr", preference.lr)] {
        if !(value > 0.0 && value.is_finite()) {
            return Err(TrainError::Config(format!(
                "{field}: learning rate {value} must be > 0"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ropo_core::{IpoMargin, Loss};

    use super::*;

    #[test]
    fn simpo_gamma_ipo_margin_and_nll_weight_come_from_the_config() {
        let config: GoldExperiment = toml::from_str(
            "[preference]\npairs = 8\nsteps = 2\nbatch = 2\nlr = 1e-3\nwarmup = 0\nbeta = 0.1\n\
             alpha = 14.0\nepsilon = 0.2\ngamma = 1.5\nipo_margin = \"summed\"\nnll_weight = 0.5\n",
        )
        .unwrap();
        let simpo = config.preference.loss.config("simpo").unwrap();
        assert_eq!(simpo.loss(), Loss::Simpo { gamma: 1.5 });
        assert_eq!(simpo.nll_weight(), 0.5);
        let ipo = config.preference.loss.config("ipo").unwrap();
        assert_eq!(
            ipo.loss(),
            Loss::Ipo {
                margin: IpoMargin::Summed
            }
        );
    }

    #[test]
    fn a_loss_table_overrides_the_stage_for_that_loss_alone() {
        let config: GoldExperiment = toml::from_str(
            r#"losses = ["ropo", {ropo = {alpha = 6, beta = 0.5}}, {simpo = {gamma = 1.5}}]"#,
        )
        .unwrap();
        let stage = config.preference;
        let plain = &config.losses[0].loss(&stage.loss).unwrap();
        let tuned = &config.losses[1].loss(&stage.loss).unwrap();
        assert_eq!(
            (plain.loss(), plain.beta()),
            (Loss::Ropo { alpha: 14.0 }, 0.1)
        );
        assert_eq!(
            (tuned.loss(), tuned.beta()),
            (Loss::Ropo { alpha: 6.0 }, 0.5)
        );
        let simpo = &config.losses[2].loss(&stage.loss).unwrap();
        assert_eq!(simpo.loss(), Loss::Simpo { gamma: 1.5 });
        assert_eq!(
            config.loss_names(),
            ["ropo", "ropo{beta=0.5,alpha=6}", "simpo{gamma=1.5}"]
        );
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_partial_stage_table_takes_the_defaults_for_the_fields_it_leaves_out() {
        let config: GoldExperiment =
            toml::from_str("[preference]\nlr = 1e-4\n\n[sft]\nsteps = 3\n").unwrap();
        let default = GoldExperiment::default();
        assert_eq!(
            config.preference,
            PreferenceStage {
                lr: 1e-4,
                ..default.preference
            }
        );
        assert_eq!(
            config.sft,
            SftStage {
                steps: 3,
                ..default.sft
            }
        );
        assert!(config.validate().is_ok());
    }

    #[test]
    fn gradient_checkpointing_comes_from_the_stage_and_is_off_when_left_out() {
        let config: GoldExperiment =
            toml::from_str("[preference]\ngradient_checkpointing = true\n").unwrap();
        assert!(config.preference.schedule().layer_checkpointing);
        let default = GoldExperiment::default();
        assert!(!default.preference.schedule().layer_checkpointing);
        assert!(!toml::to_string_pretty(&default)
            .unwrap()
            .contains("gradient_checkpointing"));
    }

    #[test]
    fn settings_left_out_keep_the_defaults_and_stay_out_of_the_written_config() {
        let default = GoldExperiment::default();
        let written = toml::to_string_pretty(&default).unwrap();
        assert!(!written.contains("gamma") && !written.contains("nll_weight"));
        let dpo = default.preference.loss.config("sigmoid").unwrap();
        assert_eq!(dpo.nll_weight(), 0.0);
        let simpo = default.preference.loss.config("simpo").unwrap();
        assert_eq!(
            simpo.loss(),
            Loss::Simpo {
                gamma: LossParams::default().gamma
            }
        );
    }
}
