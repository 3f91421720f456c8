//! The GPT-NeoX family (Pythia): LayerNorm, a fused per-head q/k/v projection, partial rotary
//! embedding, exact-GELU MLP, parallel or sequential residual, untied `embed_out` head.
//! Parameter names follow Hugging Face's `GPTNeoXForCausalLM`
//! (`gpt_neox.layers.0.attention.query_key_value.weight`, ...), so checkpoints load without
//! renaming.

use std::ops::Range;

use burn::{
    module::Module,
    nn::{Embedding, EmbeddingConfig, Linear, LinearConfig},
    tensor::{backend::Backend, Int, Tensor},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    activation::Activation,
    activation_backend::ActivationBackend,
    attention::{attend, split_heads, AttentionBackend, AttentionMask},
    cache::{with_cache, KvCache},
    family::{Family, FamilyConfig, LayerPositions, ProjectionSite},
    head::Head,
    lora::{self, LoraTarget, Site},
    norm::LayerNorm,
    rotary::{Llama3Scaling, RopeParameters, Rotary, RotaryAngles},
};

/// A GPT-NeoX `config.json`, with Hugging Face's field names and defaults. RoPE settings are
/// read from transformers 5's `rope_parameters` or, failing that, from 4.x's `rotary_pct`,
/// `rotary_emb_base` and `rope_scaling`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GptNeoxConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width `d_model`.
    pub hidden_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Context length (default 2048).
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// LayerNorm epsilon (default 1e-5).
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Whether attention and MLP read the same input and add to it together, `x + attn(ln1(x))
    /// + mlp(ln2(x))` (default true, as in Pythia), rather than one after the other.
    #[serde(default = "default_true")]
    pub use_parallel_residual: bool,
    /// MLP activation (default `gelu`, exact).
    #[serde(default = "default_activation")]
    pub hidden_act: Activation,
    /// Whether the output head shares the token embedding (default false).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Whether the attention projections have biases (default true).
    #[serde(default = "default_true")]
    pub attention_bias: bool,
    /// Fraction of each head that is rotated, transformers 4.x style (default 0.25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotary_pct: Option<f64>,
    /// RoPE base, transformers 4.x style (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotary_emb_base: Option<f64>,
    /// RoPE scaling, transformers 4.x style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeParameters>,
    /// RoPE base, rotated fraction and scaling, transformers 5 style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
}

fn default_max_positions() -> usize {
    2048
}
fn default_layer_norm_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_activation() -> Activation {
    Activation::Gelu
}

impl GptNeoxConfig {
    /// The `model_type` values this family loads.
    pub const MODEL_TYPES: &[&str] = &["gpt_neox"];

    /// Per-head width.
    pub fn head_width(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Rotated dimensions per head: `int(head_dim * partial_rotary_factor)`, as transformers
    /// computes it.
    pub fn rotary_dims(&self) -> usize {
        let factor = self
            .rope_parameters
            .and_then(|p| p.partial_rotary_factor)
            .or(self.rotary_pct)
            .unwrap_or(0.25);
        (self.head_width() as f64 * factor) as usize
    }

    /// RoPE base and Llama-3 scaling, from whichever form the file used.
    fn rope(&self) -> Result<(f64, Option<Llama3Scaling>), String> {
        let params = self
            .rope_parameters
            .or(self.rope_scaling)
            .unwrap_or_default();
        let theta = params
            .rope_theta
            .or(self.rotary_emb_base)
            .unwrap_or(10_000.0);
        Ok((theta, params.llama3_scaling()?))
    }

    /// A model with freshly initialised weights (call [`FamilyConfig::validate`] first).
    pub fn init<B: Backend>(&self, device: &B::Device) -> GptNeox<B> {
        let d = self.hidden_size;
        let eps = self.layer_norm_eps;
        let proj = |input, output, bias| {
            LinearConfig::new(input, output)
                .with_bias(bias)
                .init(device)
        };
        let layers = (0..self.num_hidden_layers)
            .map(|_| GptNeoxLayer {
                input_layernorm: LayerNorm::new(d, eps, device),
                post_attention_layernorm: LayerNorm::new(d, eps, device),
                attention: GptNeoxAttention {
                    query_key_value: proj(d, 3 * d, self.attention_bias).into(),
                    dense: proj(d, d, self.attention_bias).into(),
                    heads: self.num_attention_heads,
                },
                mlp: GptNeoxMlp {
                    dense_h_to_4h: proj(d, self.intermediate_size, true).into(),
                    dense_4h_to_h: proj(self.intermediate_size, d, true).into(),
                    act: self.hidden_act,
                },
            })
            .collect();
        let (theta, scaling) = self.rope().unwrap_or((10_000.0, None));
        GptNeox {
            gpt_neox: GptNeoxBody {
                embed_in: EmbeddingConfig::new(self.vocab_size, d).init(device),
                layers,
                final_layer_norm: LayerNorm::new(d, eps, device),
            },
            embed_out: (!self.tie_word_embeddings).then(|| proj(d, self.vocab_size, false)),
            rotary: Rotary::new(self.rotary_dims(), self.head_width(), theta, scaling),
            config: self.clone(),
        }
    }
}

impl FamilyConfig for GptNeoxConfig {
    /// Checks what the config promises is buildable; returns a message naming the field.
    fn validate(&self) -> Result<(), String> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size ({}) must be a positive multiple of num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (field, size) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if size == 0 {
                return Err(format!("{field} must be > 0"));
            }
        }
        let rot = self.rotary_dims();
        if rot == 0 || !rot.is_multiple_of(2) {
            return Err(format!(
                "partial_rotary_factor (rotary_pct) gives {rot} rotary dimensions of a head of {}; \
                 they must be even and positive",
                self.head_width()
            ));
        }
        self.rope().map(|_| ())
    }

    fn norm_epsilon(&self) -> (&'static str, f64) {
        ("layer_norm_eps", self.layer_norm_eps)
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn context_length(&self) -> usize {
        self.max_position_embeddings
    }

    fn num_layers(&self) -> usize {
        self.num_hidden_layers
    }

    fn parameter_count(&self) -> u128 {
        let n = |x: usize| x as u128;
        let (d, inner) = (n(self.hidden_size), n(self.intermediate_size));
        let block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * d * inner + inner + d);
        2 * n(self.vocab_size) * d + n(self.num_hidden_layers) * block + 2 * d
    }

    fn projection_sites(&self) -> Vec<ProjectionSite> {
        use LoraTarget::{Down, Up, K, O, Q, V};
        let (d, inner) = (self.hidden_size, self.intermediate_size);
        vec![
            (
                "attention.query_key_value",
                &[Q, K, V],
                [d, d.saturating_mul(3)],
            ),
            ("attention.dense", &[O], [d, d]),
            ("mlp.dense_h_to_4h", &[Up], [d, inner]),
            ("mlp.dense_4h_to_h", &[Down], [inner, d]),
        ]
    }

    fn ignorable_tensors(&self) -> &'static [&'static str] {
        &[
            ".attention.bias",
            ".attention.masked_bias",
            "rotary_emb.inv_freq",
        ]
    }

    fn transformers_names(&self) -> (&str, &'static str) {
        ("gpt_neox", "GPTNeoXForCausalLM")
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A GPT-NeoX causal language model.
#[derive(Module, Debug)]
pub struct GptNeox<B: Backend> {
    /// The decoder (HF prefix `gpt_neox.`).
    pub gpt_neox: GptNeoxBody<B>,
    /// The output head, absent when tied to the token embedding.
    pub embed_out: Option<Linear<B>>,
    rotary: Rotary,
    config: GptNeoxConfig,
}

/// Embedding, decoder layers and final norm.
#[derive(Module, Debug)]
pub struct GptNeoxBody<B: Backend> {
    /// Token embedding, `[vocab, d_model]`.
    pub embed_in: Embedding<B>,
    /// Decoder layers.
    pub layers: Vec<GptNeoxLayer<B>>,
    /// Final LayerNorm.
    pub final_layer_norm: LayerNorm<B>,
}

/// One pre-norm decoder layer with a parallel or sequential residual.
#[derive(Module, Debug)]
pub struct GptNeoxLayer<B: Backend> {
    input_layernorm: LayerNorm<B>,
    post_attention_layernorm: LayerNorm<B>,
    attention: GptNeoxAttention<B>,
    mlp: GptNeoxMlp<B>,
}

/// Multi-head self-attention with a fused projection whose output is laid out per head as
/// `[head][q | k | v][head_dim]`, and rotary positions on part of each head.
#[derive(Module, Debug)]
pub struct GptNeoxAttention<B: Backend> {
    query_key_value: lora::Linear<B>,
    dense: lora::Linear<B>,
    heads: usize,
}

/// MLP: `dense_4h_to_h(act(dense_h_to_4h(x)))`.
#[derive(Module, Debug)]
pub struct GptNeoxMlp<B: Backend> {
    dense_h_to_4h: lora::Linear<B>,
    dense_4h_to_h: lora::Linear<B>,
    act: Activation,
}

impl<B: Backend> Family<B> for GptNeox<B> {
    fn embed(&self, tokens: Tensor<B, 2, Int>, _mask: &AttentionMask<B>) -> Tensor<B, 3> {
        self.gpt_neox.embed_in.forward(tokens)
    }

    fn positions(&self, mask: &AttentionMask<B>, device: &B::Device) -> LayerPositions<B> {
        LayerPositions::rotary(
            mask,
            &self.rotary,
            &[self.config.num_attention_heads],
            device,
        )
    }

    fn layers(
        &self,
        layers: Range<usize>,
        mut x: Tensor<B, 3>,
        positions: &LayerPositions<B>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3>
    where
        B: AttentionBackend,
    {
        let angles = positions.rotary_angles();
        for index in layers {
            let layer = &self.gpt_neox.layers[index];
            let attn = layer.attention.forward(
                layer.input_layernorm.forward(x.clone()),
                &positions.mask,
                angles,
                cache.as_deref_mut(),
                index,
            );
            x = if self.config.use_parallel_residual {
                let mlp = layer
                    .mlp
                    .forward(layer.post_attention_layernorm.forward(x.clone()));
                x + attn + mlp
            } else {
                let h = x + attn;
                h.clone() + layer.mlp.forward(layer.post_attention_layernorm.forward(h))
            };
        }
        x
    }

    fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.gpt_neox.final_layer_norm.forward(x)
    }

    /// The output head: its own projection, or the token embedding when tied.
    fn head(&self) -> Head<'_, B> {
        Head {
            projection: self.embed_out.as_ref(),
            embedding: &self.gpt_neox.embed_in,
        }
    }

    fn family_config(&self) -> &dyn FamilyConfig {
        &self.config
    }

    /// Calls `visit` on each layer's four projections (the fused `query_key_value` serves q, k
    /// and v; see [`lora::Site`]).
    fn visit_sites(&mut self, visit: &mut dyn FnMut(Site<'_, B>)) {
        use LoraTarget::{Down, Up, K, O, Q, V};
        for (index, layer) in self.gpt_neox.layers.iter_mut().enumerate() {
            let (attn, mlp) = (&mut layer.attention, &mut layer.mlp);
            let sites: [(&str, &'static [LoraTarget], &mut lora::Linear<B>); 4] = [
                (
                    "attention.query_key_value",
                    &[Q, K, V],
                    &mut attn.query_key_value,
                ),
                ("attention.dense", &[O], &mut attn.dense),
                ("mlp.dense_h_to_4h", &[Up], &mut mlp.dense_h_to_4h),
                ("mlp.dense_4h_to_h", &[Down], &mut mlp.dense_4h_to_h),
            ];
            for (name, roles, layer) in sites {
                visit(Site {
                    path: format!("gpt_neox.layers.{index}.{name}"),
                    roles,
                    layer,
                });
            }
        }
    }
}

impl<B: Backend> GptNeox<B> {
    /// The configuration the model was built from.
    pub fn config(&self) -> &GptNeoxConfig {
        &self.config
    }
}

impl<B: AttentionBackend> GptNeoxAttention<B> {
    /// `x`: `[batch, seq, d_model]` -> same shape.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: &AttentionMask<B>,
        angles: &RotaryAngles<B>,
        cache: Option<&mut KvCache<B>>,
        layer: usize,
    ) -> Tensor<B, 3> {
        // `[batch, seq, heads, 3 * head_dim]`: each head's slice holds its q, k and v in turn.
        let qkv = split_heads(self.query_key_value.forward(x), self.heads);
        let head_dim = qkv.dims()[3] / 3;
        let part = |i: usize| qkv.clone().narrow(3, i * head_dim, head_dim);
        let q = angles.apply(part(0));
        let (k, v) = with_cache(cache, layer, angles.apply(part(1)), part(2));
        self.dense.forward(attend(q, k, v, mask))
    }
}

impl<B: crate::product::ProductBackend + ActivationBackend> GptNeoxMlp<B> {
    /// `x`: `[batch, seq, d_model]` -> same shape.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.dense_4h_to_h
            .forward(self.act.forward(self.dense_h_to_4h.forward(x)))
    }
}
