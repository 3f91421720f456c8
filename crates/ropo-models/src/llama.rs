//! The Llama family: Llama-2/3, Mistral and Qwen2 — RMSNorm, SwiGLU MLP, grouped-query
//! attention, RoPE with `rope_theta` and optional Llama-3 scaling, optional q/k/v bias, tied or
//! untied head. Parameter names follow Hugging Face's `LlamaForCausalLM`
//! (`model.layers.0.self_attn.q_proj.weight`, ...), so checkpoints load without renaming.

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
    attention::{attend, split_heads, AttentionBackend, AttentionMask},
    cache::{with_cache, KvCache},
    family::{Family, FamilyConfig, LayerPositions, ProjectionSite},
    head::Head,
    lora::{self, LoraTarget, Site},
    norm::RmsNorm,
    rotary::{Llama3Scaling, RopeParameters, Rotary, RotaryAngles},
};

/// A Llama-family `config.json`, with Hugging Face's field names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `llama`, `mistral` or `qwen2`: kept so a saved checkpoint names its own architecture.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width `d_model`.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to `num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon (default 1e-6).
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base, transformers 4.x style (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// RoPE scaling, transformers 4.x style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeParameters>,
    /// RoPE base and scaling, transformers 5 style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    /// Context length (default 2048).
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Whether the output head shares the token embedding (default false).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Whether the attention projections have biases (default false). Qwen2 configs do not
    /// say; Qwen2 has q/k/v biases and no output bias.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether the MLP projections have biases (default false).
    #[serde(default)]
    pub mlp_bias: bool,
    /// MLP activation (default `silu`).
    #[serde(default = "default_activation")]
    pub hidden_act: Activation,
}

fn default_model_type() -> String {
    "llama".into()
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> usize {
    2048
}
fn default_activation() -> Activation {
    Activation::Silu
}

impl LlamaConfig {
    /// The `model_type` values this family loads.
    pub const MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2"];

    /// A plain Llama of the given shape: multi-head attention, untied head, no biases, SiLU,
    /// RoPE base 10000, RMSNorm ε 1e-5 (llama2.c's); change fields to taste.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        max_position_embeddings: usize,
    ) -> Self {
        Self {
            model_type: "llama".into(),
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: None,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: None,
            rope_scaling: None,
            rope_parameters: None,
            max_position_embeddings,
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
            hidden_act: Activation::Silu,
        }
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_width(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// RoPE base and Llama-3 scaling, from whichever form the file used.
    fn rope(&self) -> Result<(f64, Option<Llama3Scaling>), String> {
        let params = self
            .rope_parameters
            .or(self.rope_scaling)
            .unwrap_or_default();
        let theta = params.rope_theta.or(self.rope_theta).unwrap_or(10_000.0);
        Ok((theta, params.llama3_scaling()?))
    }

    /// Whether q/k/v, and separately the output projection, carry biases.
    fn attention_biases(&self) -> (bool, bool) {
        if self.model_type == "qwen2" {
            (true, false)
        } else {
            (self.attention_bias, self.attention_bias)
        }
    }

    /// A model with freshly initialised weights (call [`FamilyConfig::validate`] first).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Llama<B> {
        let d = self.hidden_size;
        let heads = self.num_attention_heads;
        let kv = self.kv_heads();
        let hd = self.head_width();
        let proj = |input, output, bias| {
            LinearConfig::new(input, output)
                .with_bias(bias)
                .init(device)
        };
        let (qkv_bias, o_bias) = self.attention_biases();
        let layers = (0..self.num_hidden_layers)
            .map(|_| LlamaLayer {
                self_attn: LlamaAttention {
                    q_proj: proj(d, heads * hd, qkv_bias).into(),
                    k_proj: proj(d, kv * hd, qkv_bias).into(),
                    v_proj: proj(d, kv * hd, qkv_bias).into(),
                    o_proj: proj(heads * hd, d, o_bias).into(),
                    heads,
                    kv_heads: kv,
                },
                mlp: LlamaMlp {
                    gate_proj: proj(d, self.intermediate_size, self.mlp_bias).into(),
                    up_proj: proj(d, self.intermediate_size, self.mlp_bias).into(),
                    down_proj: proj(self.intermediate_size, d, self.mlp_bias).into(),
                    act: self.hidden_act,
                },
                input_layernorm: RmsNorm::new(d, self.rms_norm_eps, device),
                post_attention_layernorm: RmsNorm::new(d, self.rms_norm_eps, device),
            })
            .collect();
        let (theta, scaling) = self.rope().unwrap_or((10_000.0, None));
        Llama {
            model: LlamaBody {
                embed_tokens: EmbeddingConfig::new(self.vocab_size, d).init(device),
                layers,
                norm: RmsNorm::new(d, self.rms_norm_eps, device),
            },
            lm_head: (!self.tie_word_embeddings).then(|| proj(d, self.vocab_size, false)),
            rotary: Rotary::new(hd, hd, theta, scaling),
            config: self.clone(),
        }
    }
}

impl FamilyConfig for LlamaConfig {
    /// Checks what the config promises is buildable; returns a message naming the field.
    fn validate(&self) -> Result<(), String> {
        if self.num_attention_heads == 0 || self.kv_heads() == 0 {
            return Err("num_attention_heads and num_key_value_heads must be > 0".into());
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        // A zero size builds, but makes a model that has nothing to compute or whose forward
        // pass panics on empty tensors.
        for (field, size) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("head_dim", self.head_width()),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if size == 0 {
                return Err(format!("{field} must be > 0"));
            }
        }
        if !self.head_width().is_multiple_of(2) {
            return Err(format!(
                "head_dim ({}) must be even for RoPE",
                self.head_width()
            ));
        }
        self.rope().map(|_| ())
    }

    fn norm_epsilon(&self) -> (&'static str, f64) {
        ("rms_norm_eps", self.rms_norm_eps)
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
        let (d, inner, head) = (
            n(self.hidden_size),
            n(self.intermediate_size),
            n(self.head_width()),
        );
        let (q, kv) = (
            n(self.num_attention_heads) * head,
            n(self.kv_heads()) * head,
        );
        let block = 2 * d + d * (q + 2 * kv) + q * d + 3 * d * inner;
        let output = if self.tie_word_embeddings {
            0
        } else {
            n(self.vocab_size) * d
        };
        n(self.vocab_size) * d + n(self.num_hidden_layers) * block + d + output
    }

    fn projection_sites(&self) -> Vec<ProjectionSite> {
        use LoraTarget::{Down, Gate, Up, K, O, Q, V};
        let (d, inner) = (self.hidden_size, self.intermediate_size);
        let q = self.num_attention_heads.saturating_mul(self.head_width());
        let kv = self.kv_heads().saturating_mul(self.head_width());
        vec![
            ("self_attn.q_proj", &[Q], [d, q]),
            ("self_attn.k_proj", &[K], [d, kv]),
            ("self_attn.v_proj", &[V], [d, kv]),
            ("self_attn.o_proj", &[O], [q, d]),
            ("mlp.gate_proj", &[Gate], [d, inner]),
            ("mlp.up_proj", &[Up], [d, inner]),
            ("mlp.down_proj", &[Down], [inner, d]),
        ]
    }

    fn ignorable_tensors(&self) -> &'static [&'static str] {
        &["rotary_emb.inv_freq"]
    }

    fn transformers_names(&self) -> (&str, &'static str) {
        let architecture = match self.model_type.as_str() {
            "mistral" => "MistralForCausalLM",
            "qwen2" => "Qwen2ForCausalLM",
            _ => "LlamaForCausalLM",
        };
        (self.model_type.as_str(), architecture)
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A Llama-family causal language model.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// The decoder (HF prefix `model.`).
    pub model: LlamaBody<B>,
    /// The output head, absent when tied to the token embedding.
    pub lm_head: Option<Linear<B>>,
    rotary: Rotary,
    config: LlamaConfig,
}

/// Embedding, decoder layers and final norm.
#[derive(Module, Debug)]
pub struct LlamaBody<B: Backend> {
    /// Token embedding, `[vocab, d_model]`.
    pub embed_tokens: Embedding<B>,
    /// Decoder layers.
    pub layers: Vec<LlamaLayer<B>>,
    /// Final RMSNorm.
    pub norm: RmsNorm<B>,
}

/// One pre-norm decoder layer: attention then SwiGLU MLP, each with a residual.
#[derive(Module, Debug)]
pub struct LlamaLayer<B: Backend> {
    self_attn: LlamaAttention<B>,
    mlp: LlamaMlp<B>,
    input_layernorm: RmsNorm<B>,
    post_attention_layernorm: RmsNorm<B>,
}

/// Grouped-query self-attention with rotary positions.
#[derive(Module, Debug)]
pub struct LlamaAttention<B: Backend> {
    q_proj: lora::Linear<B>,
    k_proj: lora::Linear<B>,
    v_proj: lora::Linear<B>,
    o_proj: lora::Linear<B>,
    heads: usize,
    kv_heads: usize,
}

/// SwiGLU MLP: `down(act(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct LlamaMlp<B: Backend> {
    gate_proj: lora::Linear<B>,
    up_proj: lora::Linear<B>,
    down_proj: lora::Linear<B>,
    act: Activation,
}

impl<B: Backend> Family<B> for Llama<B> {
    fn embed(&self, tokens: Tensor<B, 2, Int>, _mask: &AttentionMask<B>) -> Tensor<B, 3> {
        self.model.embed_tokens.forward(tokens)
    }

    fn positions(&self, mask: &AttentionMask<B>, device: &B::Device) -> LayerPositions<B> {
        let heads = [self.config.num_attention_heads, self.config.kv_heads()];
        LayerPositions::rotary(mask, &self.rotary, &heads, device)
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
            let layer = &self.model.layers[index];
            let attn = layer.self_attn.forward(
                layer.input_layernorm.forward(x.clone()),
                &positions.mask,
                angles,
                cache.as_deref_mut(),
                index,
            );
            x = x + attn;
            x = x.clone() + layer.mlp.forward(layer.post_attention_layernorm.forward(x));
        }
        x
    }

    fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.model.norm.forward(x)
    }

    /// The output head: its own projection, or the token embedding when tied.
    fn head(&self) -> Head<'_, B> {
        Head {
            projection: self.lm_head.as_ref(),
            embedding: &self.model.embed_tokens,
        }
    }

    fn family_config(&self) -> &dyn FamilyConfig {
        &self.config
    }

    /// Calls `visit` on each block's seven projections (see [`lora::Site`]).
    fn visit_sites(&mut self, visit: &mut dyn FnMut(Site<'_, B>)) {
        use LoraTarget::{Down, Gate, Up, K, O, Q, V};
        for (index, layer) in self.model.layers.iter_mut().enumerate() {
            let (attn, mlp) = (&mut layer.self_attn, &mut layer.mlp);
            let sites: [(&str, &'static [LoraTarget], &mut lora::Linear<B>); 7] = [
                ("self_attn.q_proj", &[Q], &mut attn.q_proj),
                ("self_attn.k_proj", &[K], &mut attn.k_proj),
                ("self_attn.v_proj", &[V], &mut attn.v_proj),
                ("self_attn.o_proj", &[O], &mut attn.o_proj),
                ("mlp.gate_proj", &[Gate], &mut mlp.gate_proj),
                ("mlp.up_proj", &[Up], &mut mlp.up_proj),
                ("mlp.down_proj", &[Down], &mut mlp.down_proj),
            ];
            for (name, roles, layer) in sites {
                visit(Site {
                    path: format!("model.layers.{index}.{name}"),
                    roles,
                    layer,
                });
            }
        }
    }
}

impl<B: Backend> Llama<B> {
    /// The configuration the model was built from.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }
}

impl<B: AttentionBackend> LlamaAttention<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: &AttentionMask<B>,
        angles: &RotaryAngles<B>,
        cache: Option<&mut KvCache<B>>,
        layer: usize,
    ) -> Tensor<B, 3> {
        let q = angles.apply(split_heads(self.q_proj.forward(x.clone()), self.heads));
        let k = angles.apply(split_heads(self.k_proj.forward(x.clone()), self.kv_heads));
        let v = split_heads(self.v_proj.forward(x), self.kv_heads);
        let (k, v) = with_cache(cache, layer, k, v);
        self.o_proj.forward(attend(q, k, v, mask))
    }
}

impl<B: crate::product::ProductBackend + crate::activation_backend::ActivationBackend> LlamaMlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = self.gate_proj.forward(x.clone());
        let up = self.up_proj.forward(x);
        self.down_proj.forward(self.act.gated(gate, up))
    }
}
