//! LoRA: low-rank adapters on a model's projections, `y = x·W + b + (α/r)·dropout(x)·A·B`,
//! with every base weight frozen (no gradient, so no optimiser state), the reference being the
//! same model with its adapters off, and a merge that folds `(α/r)·A·B` into `W` for export.
//!
//! The adapter is shaped as burn 0.22's `LoraAdapter` (`A` `[d_in, rank]`, `B` `[rank, d_out]`,
//! scale `α/r`, in burn's `[d_in, d_out]` weight layout) so that an upgrade can swap it in.
//! `B` starts at zero, as in PEFT, so an adapted model starts equal to its base; `A` is drawn
//! from its own seeded stream per projection (PEFT's range, `U(±1/√d_in)`), so a resumed run
//! builds the same adapters whatever the backend's random state.

use burn::{
    module::{Module, Param},
    nn::{Dropout, DropoutConfig},
    tensor::{backend::Backend, Tensor, TensorData},
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{
    product::{project, ProductBackend},
    CausalLm, ModelError,
};

/// A projection role that adapters can target, by the short names users give (`q`, `k`, `v`,
/// `o`, `gate`, `up`, `down`). Each family maps its modules onto roles: GPT-NeoX's fused
/// `query_key_value` and GPT-2's `c_attn` serve `q`, `k` and `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoraTarget {
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Attention output projection.
    O,
    /// MLP gate (Llama's SwiGLU).
    Gate,
    /// MLP input projection.
    Up,
    /// MLP output projection.
    Down,
}

impl LoraTarget {
    /// Every role: all linear layers of the blocks (the head and embeddings are never adapted).
    pub const ALL: [Self; 7] = [
        Self::Q,
        Self::K,
        Self::V,
        Self::O,
        Self::Gate,
        Self::Up,
        Self::Down,
    ];

    /// A role from its short name or Llama's module name (`q` or `q_proj`, `gate` or
    /// `gate_proj`, …).
    pub fn parse(name: &str) -> Result<Self, String> {
        let short = name.trim().trim_end_matches("_proj");
        Self::ALL
            .into_iter()
            .find(|role| role.name() == short)
            .ok_or_else(|| {
                format!(
                    "unknown LoRA target `{name}` (expected some of q, k, v, o, gate, up, down)"
                )
            })
    }

    /// The short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Q => "q",
            Self::K => "k",
            Self::V => "v",
            Self::O => "o",
            Self::Gate => "gate",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// How to adapt a model: rank `r`, scale numerator `α`, dropout on the adapter's input, the
/// roles adapted, and the seed of `A`'s initial values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank `r` of `A·B` (at least 1).
    pub rank: usize,
    /// `α`: the update is scaled by `α / r`.
    pub alpha: f64,
    /// Dropout probability on the adapter's input while training, in `[0, 1)`.
    pub dropout: f64,
    /// The projection roles that get adapters.
    pub targets: Vec<LoraTarget>,
    /// Seed of the adapters' initial `A`.
    pub seed: u64,
}

impl LoraConfig {
    /// `α / r`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Checks rank, α, dropout and targets, naming the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.rank == 0 {
            return Err("lora_rank must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!("lora_alpha must be > 0, not {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "lora_dropout must be in [0, 1), not {}",
                self.dropout
            ));
        }
        if self.targets.is_empty() {
            return Err("lora_targets names no projection".into());
        }
        Ok(())
    }
}

/// A low-rank update of one projection: `(scale)·dropout(x)·A·B`.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `A`, `[d_in, rank]`.
    pub a: Param<Tensor<B, 2>>,
    /// `B`, `[rank, d_out]`.
    pub b: Param<Tensor<B, 2>>,
    /// `α / r`.
    pub scale: f64,
    dropout: Dropout,
}

impl<B: Backend> LoraAdapter<B> {
    /// An adapter from its factors (`a` `[d_in, rank]`, `b` `[rank, d_out]`), trainable.
    pub fn from_factors(a: Tensor<B, 2>, b: Tensor<B, 2>, scale: f64, dropout: f64) -> Self {
        Self {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            scale,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// A fresh adapter for a `[d_in, d_out]` projection: `A` from stream `stream` of the
    /// config's seed, `B` zero.
    fn new(
        d_in: usize,
        d_out: usize,
        config: &LoraConfig,
        stream: u64,
        device: &B::Device,
    ) -> Self {
        let mut rng =
            StdRng::seed_from_u64(config.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let bound = (d_in as f32).sqrt().recip();
        let values: Vec<f32> = (0..d_in * config.rank)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = Tensor::from_data(TensorData::new(values, [d_in, config.rank]), device);
        let b = Tensor::zeros([config.rank, d_out], device);
        Self::from_factors(a, b, config.scale(), config.dropout)
    }

    /// The update as a weight, `scale·A·B`, `[d_in, d_out]`.
    pub fn weight_delta(&self) -> Tensor<B, 2> {
        self.a.val().matmul(self.b.val()).mul_scalar(self.scale)
    }
}

impl<B: ProductBackend> LoraAdapter<B> {
    /// The update of `x` (`[batch, seq, d_in]` -> `[batch, seq, d_out]`), computed through the
    /// rank (two thin products, never the `[d_in, d_out]` matrix). The scale multiplies `B`
    /// (`[r, d_out]`), not the update (`[batch, seq, d_out]`), so that neither the forward nor
    /// the backward makes an extra pass over a full-width activation.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let low = project(self.dropout.forward(x), self.a.val(), None);
        project(low, self.b.val().mul_scalar(self.scale), None)
    }
}

/// A linear map `x·W + b` that may carry a LoRA adapter. It is named `Linear`, like burn's, so
/// that stored weights get the same conversion between burn's `[d_in, d_out]` and PyTorch's
/// `[d_out, d_in]` layout, under the same names (`weight`, `bias`).
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// `W`, `[d_in, d_out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `b`, `[d_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The adapter, when this projection is adapted.
    pub lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> From<burn::nn::Linear<B>> for Linear<B> {
    fn from(plain: burn::nn::Linear<B>) -> Self {
        Self {
            weight: plain.weight,
            bias: plain.bias,
            lora: None,
        }
    }
}

impl<B: ProductBackend> Linear<B> {
    /// `x`: `[batch, seq, d_in]` -> `[batch, seq, d_out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let base = project(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(Param::val),
        );
        match &self.lora {
            Some(adapter) => base + adapter.forward(x),
            None => base,
        }
    }
}

/// A projection that can carry an adapter: its weight `[d_in, d_out]` and its adapter slot.
pub trait Adapted<B: Backend> {
    /// The weight and the adapter slot, to attach, merge or drop an adapter.
    fn parts(&mut self) -> (&mut Param<Tensor<B, 2>>, &mut Option<LoraAdapter<B>>);
}

impl<B: Backend> Adapted<B> for Linear<B> {
    fn parts(&mut self) -> (&mut Param<Tensor<B, 2>>, &mut Option<LoraAdapter<B>>) {
        (&mut self.weight, &mut self.lora)
    }
}

/// One adaptable projection of a model, as a family lists them: its Hugging Face module path
/// (`model.layers.0.self_attn.q_proj`), the roles it serves, and the projection.
pub struct Site<'a, B: Backend> {
    /// The module's path, as in the checkpoint and in PEFT's tensor names.
    pub path: String,
    /// The roles this module serves.
    pub roles: &'static [LoraTarget],
    /// The projection.
    pub layer: &'a mut dyn Adapted<B>,
}

impl<B: Backend> CausalLm<B> {
    /// Calls `visit` on every adaptable projection, in the order of the layers.
    pub fn visit_sites(&mut self, visit: &mut dyn FnMut(Site<'_, B>)) {
        self.family_mut().visit_sites(visit)
    }

    /// This model with every weight frozen and fresh adapters on the projections whose roles
    /// `config` targets. Fails when the config is invalid or no projection matches.
    pub fn with_lora(self, config: &LoraConfig) -> Result<Self, ModelError> {
        config.validate().map_err(ModelError::InvalidInput)?;
        let mut stream = 0;
        let targets = format!("the LoRA targets {:?}", config.targets);
        self.with_adapters(&targets, |site, [d_in, d_out], device| {
            stream += 1;
            site.roles
                .iter()
                .any(|role| config.targets.contains(role))
                .then(|| LoraAdapter::new(d_in, d_out, config, stream, device))
        })
    }

    /// This model with every weight frozen and, on each projection (`[d_in, d_out]`, in layer
    /// order), the adapter `make` gives it, if any. Fails, naming `targets`, when no
    /// projection gets one.
    pub(crate) fn with_adapters(
        self,
        targets: &str,
        mut make: impl FnMut(&Site<'_, B>, [usize; 2], &B::Device) -> Option<LoraAdapter<B>>,
    ) -> Result<Self, ModelError> {
        let mut model = self.no_grad();
        let mut adapted = 0;
        model.visit_sites(&mut |site| {
            let weight = site.layer.parts().0.val();
            if let Some(adapter) = make(&site, weight.dims(), &weight.device()) {
                *site.layer.parts().1 = Some(adapter);
                adapted += 1;
            }
        });
        if adapted == 0 {
            return Err(ModelError::InvalidInput(format!(
                "no projection of this model matches {targets}"
            )));
        }
        Ok(model)
    }

    /// Whether any projection carries an adapter.
    pub fn has_adapters(&self) -> bool {
        let mut found = false;
        self.clone().visit_sites(&mut |site| {
            found |= site.layer.parts().1.is_some();
        });
        found
    }

    /// The adapters with their module paths, in layer order.
    pub fn adapters(&self) -> Vec<(String, LoraAdapter<B>)> {
        let mut found = Vec::new();
        self.clone().visit_sites(&mut |site| {
            if let Some(adapter) = site.layer.parts().1 {
                found.push((site.path.clone(), adapter.clone()));
            }
        });
        found
    }

    /// The same model with its adapters off: the base, sharing its weights (no copy), as the
    /// reference of a LoRA run.
    pub fn without_adapters(&self) -> Self {
        let mut model = self.clone();
        model.visit_sites(&mut |site| *site.layer.parts().1 = None);
        model
    }

    /// Every adapter folded into its weight (`W + scale·A·B`) and removed: a plain model that
    /// computes what the adapted one computes (without dropout).
    pub fn merged(self) -> Self {
        let mut model = self;
        model.visit_sites(&mut |site| {
            let (weight, slot) = site.layer.parts();
            if let Some(adapter) = slot.take() {
                let merged = weight.val().detach() + adapter.weight_delta().detach();
                *weight = Param::initialized(weight.id, merged);
            }
        });
        model
    }
}

#[cfg(test)]
mod tests;
