//! Rotary position embedding (RoPE), shared by GPT-NeoX and the Llama family.
//!
//! Uses the Hugging Face layout: within the rotated part of a head, dimension `i` is paired
//! with `i + rot/2` ("rotate half"). Checkpoints that pair adjacent dimensions instead
//! (llama2.c) have their query/key rows permuted at load time so this one code path serves all.

use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::attention::{AttentionBackend, RotateHalf};
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
    head_dim: usize,
}

/// What rotating one forward's heads needs, built once per forward and shared by every layer:
/// for each head count asked for, cos/sin of every query position's angles written out for
/// every head, `[batch, seq, heads, head_dim]` each (both halves of the rotated part; 1 and 0
/// over the dimensions that are not rotated), so that applying them multiplies tensors of one
/// shape (burn's CPU backend copies element by element to broadcast); and the "rotate half"
/// map ([`RotateHalf`]).
#[derive(Debug, Clone)]
pub struct RotaryAngles<B: Backend> {
    tables: Vec<(usize, Tensor<B, 4>, Tensor<B, 4>)>,
    rotate_half: RotateHalf<B>,
}

impl Rotary {
    /// Frequencies for the first `rot` dimensions (even) of heads `head_dim` wide, base
    /// `theta`, with optional Llama-3 scaling.
    pub fn new(rot: usize, head_dim: usize, theta: f64, scaling: Option<Llama3Scaling>) -> Self {
        let inv_freq = (0..rot / 2)
            .map(|i| {
                let freq = 1.0 / theta.powf((2 * i) as f64 / rot as f64);
                scaling.map_or(freq, |s| s.scale(freq))
            })
            .collect();
        Self { inv_freq, head_dim }
    }

    /// The angles at `positions` (`batch` rows of `seq` positions, row-major), for heads
    /// tensors with each of the `head_counts`.
    pub fn angles<B: Backend>(
        &self,
        positions: &[i64],
        batch: usize,
        head_counts: &[usize],
        device: &B::Device,
    ) -> RotaryAngles<B> {
        let (rot, head_dim) = (self.inv_freq.len() * 2, self.head_dim);
        let seq = positions.len() / batch.max(1);
        let mut cos = Vec::with_capacity(positions.len() * head_dim);
        let mut sin = Vec::with_capacity(positions.len() * head_dim);
        for &position in positions {
            for _half in 0..2 {
                for freq in &self.inv_freq {
                    // f32 angles, as Hugging Face computes them (`position * inv_freq` in f32).
                    let angle = position as f32 * *freq as f32;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
            cos.extend(std::iter::repeat_n(1.0, head_dim - rot));
            sin.extend(std::iter::repeat_n(0.0, head_dim - rot));
        }
        let table = |values: &[f32], heads: usize| {
            let data: Vec<f32> = values
                .chunks_exact(head_dim)
                .flat_map(|row| std::iter::repeat_n(row, heads).flatten().copied())
                .collect();
            Tensor::from_data(TensorData::new(data, [batch, seq, heads, head_dim]), device)
        };
        let mut counts = head_counts.to_vec();
        counts.dedup();
        RotaryAngles {
            tables: counts
                .into_iter()
                .map(|heads| (heads, table(&cos, heads), table(&sin, heads)))
                .collect(),
            rotate_half: RotateHalf::new(head_dim, rot, device),
        }
    }
}

impl<B: AttentionBackend> RotaryAngles<B> {
    /// Rotates the first `rot` dimensions of every head of `x`: `[batch, seq, heads, head_dim]`
    /// -> same shape; the remaining `head_dim − rot` dimensions pass through (GPT-NeoX's
    /// partial rotary). `x·cos + rotate_half(x)·sin` through [`AttentionBackend::rotary`]: one
    /// pass by index on the CPU, one matrix product elsewhere (each output is one input times
    /// ±1, so the result is exact), with no slice or concatenation of the head; under autodiff
    /// one node.
    ///
    /// # Panics
    /// If the angles were not built for `x`'s number of heads (a bug in the model code).
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let heads = x.dims()[2];
        let (_, cos, sin) = self
            .tables
            .iter()
            .find(|(count, _, _)| *count == heads)
            .expect("rotary angles built for this head count");
        B::rotary(x, cos.clone(), sin.clone(), &self.rotate_half)
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
