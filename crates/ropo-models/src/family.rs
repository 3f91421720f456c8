//! What a model family is to the rest of the crate: [`FamilyConfig`] for its `config.json`
//! (checks, sizes, the names transformers knows it by) and [`Family`] for its model (hidden
//! states, output head, the projections LoRA adapts). Scoring, generation, training, LoRA and
//! loading are written once against these. A new family is its own file implementing both, an
//! inherent `init` and `MODEL_TYPES` on its config, and one line in [`crate::families`].

use std::ops::Range;

use burn::tensor::{backend::Backend, Int, Tensor};
use serde_json::Value;

use crate::{
    attention::{AttentionBackend, AttentionMask},
    cache::KvCache,
    head::Head,
    lora::{LoraTarget, Site},
    rotary::{Rotary, RotaryAngles},
};

/// A projection of one block as the family's configuration describes it: its module name
/// (`self_attn.q_proj`), the LoRA roles it serves and `[d_in, d_out]`.
pub type ProjectionSite = (&'static str, &'static [LoraTarget], [usize; 2]);

/// A family's `config.json`, as the crate uses it whatever the family.
pub trait FamilyConfig {
    /// Checks the configuration can be built; the message names the field at fault.
    fn validate(&self) -> Result<(), String>;

    /// The name and value of the norms' ε (checked positive for every family).
    fn norm_epsilon(&self) -> (&'static str, f64);

    /// Vocabulary size.
    fn vocab_size(&self) -> usize;

    /// The longest sequence (prompt plus response) the model takes.
    fn context_length(&self) -> usize;

    /// Number of decoder layers.
    fn num_layers(&self) -> usize;

    /// The number of weights the model holds (embeddings, every block, final norm and head),
    /// computed without overflow.
    fn parameter_count(&self) -> u128;

    /// The projections of one block, as the model's `visit_sites` lists them.
    fn projection_sites(&self) -> Vec<ProjectionSite>;

    /// Suffixes of tensors that checkpoints may hold but the model recomputes (buffers), and
    /// which loading therefore skips.
    fn ignorable_tensors(&self) -> &'static [&'static str];

    /// `(regex, replacement)` renamings applied to a checkpoint's tensor names before they are
    /// matched to the model's, for names that differ between releases of the family.
    fn key_remapping(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// `model_type` and the `architectures` entry transformers loads the model as.
    fn transformers_names(&self) -> (&str, &'static str);

    /// The configuration's own fields as `config.json` writes them.
    fn to_value(&self) -> Value;

    /// Whether the family stores its projections `[d_in, d_out]` (GPT-2's `Conv1D`), which a
    /// PEFT adapter's `fan_in_fan_out` says.
    fn fan_in_fan_out(&self) -> bool {
        false
    }
}

/// A forward's positions as the decoder layers read them: the attention mask and, for families
/// with rotary positions, the angles at those positions (made once per forward, not per layer).
pub struct LayerPositions<B: Backend> {
    /// Which keys each query attends to, and every token's position.
    pub mask: AttentionMask<B>,
    /// The rotary angles at the mask's positions; `None` for learned positions (GPT-2).
    pub angles: Option<RotaryAngles<B>>,
}

impl<B: Backend> LayerPositions<B> {
    /// The positions of a rotary family: `mask` and `rotary`'s angles at its positions for
    /// heads tensors with each of `head_counts`.
    pub(crate) fn rotary(
        mask: &AttentionMask<B>,
        rotary: &Rotary,
        head_counts: &[usize],
        device: &B::Device,
    ) -> Self {
        Self {
            mask: mask.clone(),
            angles: Some(rotary.angles(mask.positions(), mask.batch(), head_counts, device)),
        }
    }

    /// The rotary angles, for the families whose `positions` always make them.
    pub(crate) fn rotary_angles(&self) -> &RotaryAngles<B> {
        self.angles
            .as_ref()
            .expect("a rotary family's positions carry their angles")
    }
}

/// A family's model on backend `B`, as three stages (embedding, decoder layers, final norm) so
/// that a training step can keep each layer's input alone and recompute the layer in its
/// backward (activation checkpointing, `ropo_models::layer_stages`).
pub trait Family<B: Backend> {
    /// The input of the first layer, `[batch, seq, d_model]`: the token embeddings of `tokens`
    /// `[batch, seq]` plus, where the family learns them, its position embeddings.
    fn embed(&self, tokens: Tensor<B, 2, Int>, mask: &AttentionMask<B>) -> Tensor<B, 3>;

    /// The positions the layers of a forward over `mask` read.
    fn positions(&self, mask: &AttentionMask<B>, device: &B::Device) -> LayerPositions<B>;

    /// Decoder layers `layers` in order on `x` `[batch, seq, d_model]` (the tokens after those
    /// already in `cache`, if any, whose layers it extends); same shape out.
    fn layers(
        &self,
        layers: Range<usize>,
        x: Tensor<B, 3>,
        positions: &LayerPositions<B>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3>
    where
        B: AttentionBackend;

    /// The final norm of the last layer's output, `[batch, seq, d_model]`: what the head reads.
    fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3>;

    /// The output head.
    fn head(&self) -> Head<'_, B>;

    /// The configuration the model was built from.
    fn family_config(&self) -> &dyn FamilyConfig;

    /// Calls `visit` on every adaptable projection, in the order of the layers.
    fn visit_sites(&mut self, visit: &mut dyn FnMut(Site<'_, B>));
}
