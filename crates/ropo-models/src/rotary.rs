//! Rotary position embedding (RoPE), shared by GPT-NeoX and the Llama family.
//!
//! Uses the Hugging Face layout: within the rotated part of a head, dimension `i` is paired
//! with `i + rot/2` ("rotate half"). Checkpoints that pair adjacent dimensions instead
//! (llama2.c) have their query/key rows permuted at load time so this one code path serves all.

use burn::tensor::{backend::Backend, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// RoPE settings as `config.json` writes them: transformers 5 nests them in
/// `rope_parameters`; 4.x wrote `rope_theta` at the top level and the same object as
/// `rope_scaling`. Families accept both.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RopeParameters {
    /// RoPE base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// `default` or `llama3` (4.x files may say `type`).
    #[serde(default, alias = "type", skip_serializing_if = "Option::is_none")]
    pub rope_type: Option<RopeType>,
    /// Llama-3 scaling factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Llama-3 low-frequency factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_freq_factor: Option<f64>,
    /// Llama-3 high-frequency factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_freq_factor: Option<f64>,
    /// Llama-3 pre-training context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<f64>,
    /// Fraction of each head that is rotated (GPT-NeoX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary_factor: Option<f64>,
}

/// The RoPE scaling schemes ropo implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeType {
    /// No scaling.
    Default,
    /// Llama 3.1's frequency-dependent scaling.
    Llama3,
}

impl RopeParameters {
    /// The Llama-3 scaling these parameters ask for, if any; the error names a missing field.
    pub fn llama3_scaling(&self) -> Result<Option<Llama3Scaling>, String> {
        if self.rope_type != Some(RopeType::Llama3) {
            return Ok(None);
        }
        let field = |value: Option<f64>, name: &str| {
            value.ok_or_else(|| format!("rope_parameters.{name} is missing for llama3 scaling"))
        };
        Ok(Some(Llama3Scaling {
            factor: field(self.factor, "factor")?,
            low_freq_factor: field(self.low_freq_factor, "low_freq_factor")?,
            high_freq_factor: field(self.high_freq_factor, "high_freq_factor")?,
            original_max_position_embeddings: field(
                self.original_max_position_embeddings,
                "original_max_position_embeddings",
            )?,
        }))
    }
}

/// Llama-3 style frequency scaling (`rope_type = "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    /// Factor by which low frequencies are divided.
    pub factor: f64,
    /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are fully scaled.
    pub low_freq_factor: f64,
    /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// The context length the model was pre-trained with.
    pub original_max_position_embeddings: f64,
}

/// The inverse frequencies of one model's rotary embedding. Holds no tensors, so it can live
/// in a burn `Module` as plain data; [`Rotary::angles`] turns positions into cos/sin once per
/// forward pass, shared by every layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotary {
    inv_freq: Vec<f64>,
}

/// cos/sin of every query position's angles, `[batch, seq, 1, rot]` each (both halves).
#[derive(Debug, Clone)]
pub struct RotaryAngles<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
}

impl Rotary {
    /// Frequencies for `rot` rotated dimensions per head (even), base `theta`, with optional
    /// Llama-3 scaling.
    pub fn new(rot: usize, theta: f64, scaling: Option<Llama3Scaling>) -> Self {
        let inv_freq = (0..rot / 2)
            .map(|i| {
                let freq = 1.0 / theta.powf((2 * i) as f64 / rot as f64);
                scaling.map_or(freq, |s| s.scale(freq))
            })
            .collect();
        Self { inv_freq }
    }

    /// The angles at `positions` (`batch` rows of `seq` positions, row-major).
    pub fn angles<B: Backend>(
        &self,
        positions: &[i64],
        batch: usize,
        device: &B::Device,
    ) -> RotaryAngles<B> {
        let rot = self.inv_freq.len() * 2;
        let seq = positions.len() / batch.max(1);
        let mut cos = Vec::with_capacity(positions.len() * rot);
        let mut sin = Vec::with_capacity(positions.len() * rot);
        for &position in positions {
            for _half in 0..2 {
                for freq in &self.inv_freq {
                    // f32 angles, as Hugging Face computes them (`position * inv_freq` in f32).
                    let angle = position as f32 * *freq as f32;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let tensor = |values: Vec<f32>| {
            Tensor::from_data(TensorData::new(values, [batch, seq, 1, rot]), device)
        };
        RotaryAngles {
            cos: tensor(cos),
            sin: tensor(sin),
        }
    }
}

impl<B: Backend> RotaryAngles<B> {
    /// Rotates the first `rot` dimensions of every head of `x`: `[batch, seq, heads, head_dim]`
    /// -> same shape; the remaining `head_dim − rot` dimensions pass through (GPT-NeoX's
    /// partial rotary).
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let head_dim = x.dims()[3];
        let rot = self.cos.dims()[3];
        let half = rot / 2;
        let rotated = x.clone().narrow(3, 0, rot);
        let first = rotated.clone().narrow(3, 0, half);
        let second = rotated.clone().narrow(3, half, half);
        let rotate_half = Tensor::cat(vec![second.neg(), first], 3);
        let out = rotated * self.cos.clone() + rotate_half * self.sin.clone();
        if rot == head_dim {
            out
        } else {
            Tensor::cat(vec![out, x.narrow(3, rot, head_dim - rot)], 3)
        }
    }
}

impl Llama3Scaling {
    /// The scaled inverse frequency, as in Llama 3.1's reference code.
    fn scale(&self, freq: f64) -> f64 {
        let wavelength = 2.0 * std::f64::consts::PI / freq;
        let low_freq_wavelength = self.original_max_position_embeddings / self.low_freq_factor;
        let high_freq_wavelength = self.original_max_position_embeddings / self.high_freq_factor;
        if wavelength < high_freq_wavelength {
            freq
        } else if wavelength > low_freq_wavelength {
            freq / self.factor
        } else {
            let smooth = (self.original_max_position_embeddings / wavelength
                - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            (1.0 - smooth) * freq / self.factor + smooth * freq
        }
    }
}
