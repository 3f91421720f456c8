//! The GPT-2 family: learned position embeddings, pre-norm LayerNorm, fused q/k/v projection,
//! `gelu_new` MLP and a head tied to the token embedding. Parameter names follow Hugging Face's
//! `GPT2LMHeadModel` (`transformer.h.0.attn.c_attn.weight`, ...). The original `gpt2`
//! checkpoints on the hub name their tensors without the `transformer.` prefix and carry
//! `attn.bias` / `attn.masked_bias` mask buffers; [`FamilyConfig::key_remapping`]
//! and [`FamilyConfig::ignorable_tensors`] let those load too.

use std::ops::Range;

use burn::{
    module::{Initializer, Module, Param},
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
    lora::{Adapted, LoraAdapter, LoraTarget, Site},
    norm::LayerNorm,
    product::{project, ProductBackend},
};

/// A GPT-2 `config.json`, with Hugging Face's field names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length: rows of the learned position embedding.
    pub n_positions: usize,
    /// Model width `d_model`.
    pub n_embd: usize,
    /// Number of decoder blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Width of the MLP; defaults to `4 * n_embd`.
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// LayerNorm epsilon (default 1e-5).
    #[serde(default = "default_layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
    /// MLP activation (default `gelu_new`, the tanh approximation).
    #[serde(default = "default_activation")]
    pub activation_function: Activation,
    /// Whether the output head shares the token embedding (default true).
    /// Whether attention scores are divided by √head_dim (default true; ropo supports only
    /// true).
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    /// Whether scores are further divided by the layer index (default false; ropo supports
    /// only false).
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
}

fn default_layer_norm_epsilon() -> f64 {
    1e-5
}
fn default_activation() -> Activation {
    Activation::GeluTanh
}
impl Gpt2Config {
    /// The `model_type` values this family loads.
    pub const MODEL_TYPES: &[&str] = &["gpt2"];

    /// Width of the MLP.
    pub fn inner_width(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// A model with freshly initialised weights (call [`FamilyConfig::validate`] first).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Gpt2<B> {
        let d = self.n_embd;
        let eps = self.layer_norm_epsilon;
        let h = (0..self.n_layer)
            .map(|_| Gpt2Block {
                ln_1: LayerNorm::new(d, eps, device),
                attn: Gpt2Attention {
                    c_attn: Conv1D::new(d, 3 * d, device),
                    c_proj: Conv1D::new(d, d, device),
                    heads: self.n_head,
                },
                ln_2: LayerNorm::new(d, eps, device),
                mlp: Gpt2Mlp {
                    c_fc: Conv1D::new(d, self.inner_width(), device),
                    c_proj: Conv1D::new(self.inner_width(), d, device),
                    act: self.activation_function,
                },
            })
            .collect();
        Gpt2 {
            transformer: Gpt2Body {
                wte: EmbeddingConfig::new(self.vocab_size, d).init(device),
                wpe: EmbeddingConfig::new(self.n_positions, d).init(device),
                h,
                ln_f: LayerNorm::new(d, eps, device),
            },
            lm_head: (!self.tie_word_embeddings).then(|| {
                LinearConfig::new(d, self.vocab_size)
                    .with_bias(false)
                    .init(device)
            }),
            config: self.clone(),
        }
    }
}

impl FamilyConfig for Gpt2Config {
    /// Checks what the config promises is buildable; returns a message naming the field.
    fn validate(&self) -> Result<(), String> {
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return Err(format!(
                "n_embd ({}) must be a positive multiple of n_head ({})",
                self.n_embd, self.n_head
            ));
        }
        for (field, size) in [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_inner", self.inner_width()),
        ] {
            if size == 0 {
                return Err(format!("{field} must be > 0"));
            }
        }
        if !self.scale_attn_weights || self.scale_attn_by_inverse_layer_idx {
            return Err(
                "scale_attn_weights = false and scale_attn_by_inverse_layer_idx = true \
                        are not supported"
                    .into(),
            );
        }
        Ok(())
    }

    fn norm_epsilon(&self) -> (&'static str, f64) {
        ("layer_norm_epsilon", self.layer_norm_epsilon)
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn context_length(&self) -> usize {
        self.n_positions
    }

    fn num_layers(&self) -> usize {
        self.n_layer
    }

    fn parameter_count(&self) -> u128 {
        let n = |x: usize| x as u128;
        let (d, inner) = (n(self.n_embd), n(self.inner_width()));
        let block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * d * inner + inner + d);
        let head = if self.tie_word_embeddings {
            0
        } else {
            n(self.vocab_size) * d
        };
        (n(self.vocab_size) + n(self.n_positions)) * d + n(self.n_layer) * block + 2 * d + head
    }

    fn projection_sites(&self) -> Vec<ProjectionSite> {
        use LoraTarget::{Down, Up, K, O, Q, V};
        let (d, inner) = (self.n_embd, self.inner_width());
        vec![
            ("attn.c_attn", &[Q, K, V], [d, d.saturating_mul(3)]),
            ("attn.c_proj", &[O], [d, d]),
            ("mlp.c_fc", &[Up], [d, inner]),
            ("mlp.c_proj", &[Down], [inner, d]),
        ]
    }

    fn ignorable_tensors(&self) -> &'static [&'static str] {
        &[".attn.bias", ".attn.masked_bias"]
    }

    /// Checkpoints saved as the bare `GPT2Model` (the hub's original `gpt2`) lack the
    /// `transformer.` prefix.
    fn key_remapping(&self) -> &'static [(&'static str, &'static str)] {
        &[(r"^(h|wte|wpe|ln_f)\.", "transformer.${1}.")]
    }

    fn transformers_names(&self) -> (&str, &'static str) {
        ("gpt2", "GPT2LMHeadModel")
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn fan_in_fan_out(&self) -> bool {
        true
    }
}

/// A GPT-2 causal language model.
#[derive(Module, Debug)]
pub struct Gpt2<B: Backend> {
    /// The decoder (HF prefix `transformer.`).
    pub transformer: Gpt2Body<B>,
    /// The output head, absent when tied to the token embedding (GPT-2's default).
    pub lm_head: Option<Linear<B>>,
    config: Gpt2Config,
}

/// Token and position embeddings, decoder blocks and final norm.
#[derive(Module, Debug)]
pub struct Gpt2Body<B: Backend> {
    /// Token embedding, `[vocab, d_model]`.
    pub wte: Embedding<B>,
    /// Learned position embedding, `[n_positions, d_model]`.
    pub wpe: Embedding<B>,
    /// Decoder blocks.
    pub h: Vec<Gpt2Block<B>>,
    /// Final LayerNorm.
    pub ln_f: LayerNorm<B>,
}

/// One pre-norm decoder block: attention then MLP, each with a residual.
#[derive(Module, Debug)]
pub struct Gpt2Block<B: Backend> {
    ln_1: LayerNorm<B>,
    attn: Gpt2Attention<B>,
    ln_2: LayerNorm<B>,
    mlp: Gpt2Mlp<B>,
}

/// Multi-head self-attention with one fused q/k/v projection.
#[derive(Module, Debug)]
pub struct Gpt2Attention<B: Backend> {
    c_attn: Conv1D<B>,
    c_proj: Conv1D<B>,
    heads: usize,
}

/// MLP: `c_proj(act(c_fc(x)))`.
#[derive(Module, Debug)]
pub struct Gpt2Mlp<B: Backend> {
    c_fc: Conv1D<B>,
    c_proj: Conv1D<B>,
    act: Activation,
}

/// GPT-2's `Conv1D`: an affine map `x · weight + bias` whose weight is stored `[in, out]`,
/// the transpose of PyTorch's `nn.Linear`.
///
/// It is its own module rather than burn's `Linear` because the checkpoint adapter
/// (`PyTorchToBurnAdapter`) transposes the weight of every burn `Linear`, assuming PyTorch's
/// `[out, in]`; these weights are already `[in, out]` and must load as they are.
#[derive(Module, Debug)]
pub struct Conv1D<B: Backend> {
    /// `[in, out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[out]`.
    pub bias: Param<Tensor<B, 1>>,
    /// The adapter, when this projection is adapted.
    pub lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> Adapted<B> for Conv1D<B> {
    fn parts(&mut self) -> (&mut Param<Tensor<B, 2>>, &mut Option<LoraAdapter<B>>) {
        (&mut self.weight, &mut self.lora)
    }
}

impl<B: Backend> Family<B> for Gpt2<B> {
    fn embed(&self, tokens: Tensor<B, 2, Int>, mask: &AttentionMask<B>) -> Tensor<B, 3> {
        let body = &self.transformer;
        body.wte.forward(tokens) + body.wpe.forward(mask.position_ids())
    }

    fn positions(&self, mask: &AttentionMask<B>, _device: &B::Device) -> LayerPositions<B> {
        LayerPositions {
            mask: mask.clone(),
            angles: None,
        }
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
        for index in layers {
            let block = &self.transformer.h[index];
            let attn = block.attn.forward(
                block.ln_1.forward(x.clone()),
                &positions.mask,
                cache.as_deref_mut(),
                index,
            );
            x = x + attn;
            x = x.clone() + block.mlp.forward(block.ln_2.forward(x));
        }
        x
    }

    fn final_norm(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.transformer.ln_f.forward(x)
    }

    /// The output head: its own projection, or the token embedding when tied.
    fn head(&self) -> Head<'_, B> {
        Head {
            projection: self.lm_head.as_ref(),
            embedding: &self.transformer.wte,
        }
    }

    fn family_config(&self) -> &dyn FamilyConfig {
        &self.config
    }

    /// Calls `visit` on each block's four projections (the fused `c_attn` serves q, k and v;
    /// see [`Site`]).
    fn visit_sites(&mut self, visit: &mut dyn FnMut(Site<'_, B>)) {
        use LoraTarget::{Down, Up, K, O, Q, V};
        for (index, block) in self.transformer.h.iter_mut().enumerate() {
            let (attn, mlp) = (&mut block.attn, &mut block.mlp);
            let sites: [(&str, &'static [LoraTarget], &mut Conv1D<B>); 4] = [
                ("attn.c_attn", &[Q, K, V], &mut attn.c_attn),
                ("attn.c_proj", &[O], &mut attn.c_proj),
                ("mlp.c_fc", &[Up], &mut mlp.c_fc),
                ("mlp.c_proj", &[Down], &mut mlp.c_proj),
            ];
            for (name, roles, layer) in sites {
                visit(Site {
                    path: format!("transformer.h.{index}.{name}"),
                    roles,
                    layer,
                });
            }
        }
    }
}

impl<B: Backend> Gpt2<B> {
    /// The configuration the model was built from.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }
}

impl<B: AttentionBackend> Gpt2Attention<B> {
    /// `x`: `[batch, seq, d_model]` -> same shape.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: &AttentionMask<B>,
        cache: Option<&mut KvCache<B>>,
        layer: usize,
    ) -> Tensor<B, 3> {
        // c_attn's output is `[q | k | v]`, each `d_model` wide.
        let qkv = self.c_attn.forward(x);
        let d = qkv.dims()[2] / 3;
        let part = |i: usize| split_heads(qkv.clone().narrow(2, i * d, d), self.heads);
        let (k, v) = with_cache(cache, layer, part(1), part(2));
        self.c_proj.forward(attend(part(0), k, v, mask))
    }
}

impl<B: ProductBackend + ActivationBackend> Gpt2Mlp<B> {
    /// `x`: `[batch, seq, d_model]` -> same shape.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.c_proj.forward(self.act.forward(self.c_fc.forward(x)))
    }
}

impl<B: Backend> Conv1D<B> {
    /// A `[input, output]` map initialised as GPT-2 does: weight `N(0, 0.02²)`, bias zero.
    pub fn new(input: usize, output: usize, device: &B::Device) -> Self {
        Self {
            weight: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([input, output], device),
            bias: Initializer::Zeros.init([output], device),
            lora: None,
        }
    }
}

impl<B: ProductBackend> Conv1D<B> {
    /// `x`: `[batch, seq, in]` -> `[batch, seq, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let base = project(x.clone(), self.weight.val(), Some(self.bias.val()));
        match &self.lora {
            Some(adapter) => base + adapter.forward(x),
            None => base,
        }
    }
}

fn default_true() -> bool {
    true
}
