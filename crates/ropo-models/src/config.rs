//! `config.json`: which family a checkpoint is, and that family's configuration.

use std::path::Path;

use burn::tensor::backend::Backend;
use serde::Deserialize;
use serde_json::Value;

use crate::{gpt2::Gpt2Config, gpt_neox::GptNeoxConfig, llama::LlamaConfig, CausalLm, ModelError};

/// A model configuration of any supported family, chosen by `config.json`'s `model_type`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// `model_type` `gpt2`.
    Gpt2(Gpt2Config),
    /// `model_type` `gpt_neox` (Pythia).
    GptNeox(GptNeoxConfig),
    /// `model_type` `llama`, `mistral` or `qwen2`.
    Llama(LlamaConfig),
}

/// The `model_type` values ropo loads.
pub const MODEL_TYPES: &str = "gpt2, gpt_neox, llama, mistral, qwen2";

#[derive(Deserialize)]
struct ModelType {
    model_type: String,
}

impl ModelConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = crate::text_file::read_settings(path)?;
        Self::from_json(&text, path)
    }

    /// Parses `config.json`'s text; `path` is only used to name the file in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, ModelError> {
        let error = |message: String| ModelError::Config {
            path: path.to_path_buf(),
            message,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| error(e.to_string()))?;
        let ModelType { model_type } =
            serde_json::from_value(value.clone()).map_err(|e| error(e.to_string()))?;
        let family = |e: serde_json::Error| error(format!("{model_type} config: {e}"));
        let config = match model_type.as_str() {
            "gpt2" => Self::Gpt2(serde_json::from_value(value.clone()).map_err(family)?),
            "gpt_neox" => Self::GptNeox(serde_json::from_value(value.clone()).map_err(family)?),
            "llama" | "mistral" | "qwen2" => {
                Self::Llama(serde_json::from_value(value.clone()).map_err(family)?)
            }
            other => {
                return Err(error(format!(
                    "unknown model_type '{other}': expected one of {MODEL_TYPES}"
                )))
            }
        };
        config.validate().map_err(error)?;
        config.check_fits_in_memory().map_err(error)?;
        Ok(config)
    }

    /// Checks the configuration can be built; the message names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let (name, epsilon) = match self {
            Self::Gpt2(config) => ("layer_norm_epsilon", config.layer_norm_epsilon),
            Self::GptNeox(config) => ("layer_norm_eps", config.layer_norm_eps),
            Self::Llama(config) => ("rms_norm_eps", config.rms_norm_eps),
        };
        // A norm divides by √(variance + ε): ε ≤ 0 gives NaN or ∞ on a constant row.
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(format!("{name} ({epsilon}) must be a positive number"));
        }
        match self {
            Self::Gpt2(config) => config.validate(),
            Self::GptNeox(config) => config.validate(),
            Self::Llama(config) => config.validate(),
        }
    }

    /// Suffixes of tensors that checkpoints may hold but the model recomputes (buffers), and
    /// which loading therefore skips.
    pub fn ignorable_tensors(&self) -> Vec<&'static str> {
        match self {
            Self::Gpt2(_) => vec![".attn.bias", ".attn.masked_bias"],
            Self::GptNeox(_) => vec![
                ".attention.bias",
                ".attention.masked_bias",
                "rotary_emb.inv_freq",
            ],
            Self::Llama(_) => vec!["rotary_emb.inv_freq"],
        }
    }

    /// `(regex, replacement)` renamings applied to a checkpoint's tensor names before they are
    /// matched to the model's, for names that differ between releases of one family. GPT-2
    /// checkpoints saved as the bare `GPT2Model` (the hub's original `gpt2`) lack the
    /// `transformer.` prefix.
    pub fn key_remapping(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            Self::Gpt2(_) => vec![(r"^(h|wte|wpe|ln_f)\.", "transformer.${1}.")],
            Self::GptNeox(_) | Self::Llama(_) => Vec::new(),
        }
    }

    /// A model with freshly initialised weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> CausalLm<B> {
        match self {
            Self::Gpt2(config) => CausalLm::Gpt2(config.init(device)),
            Self::GptNeox(config) => CausalLm::GptNeox(config.init(device)),
            Self::Llama(config) => CausalLm::Llama(config.init(device)),
        }
    }

    /// The `config.json` Hugging Face transformers loads this model from.
    pub fn to_json(&self) -> Value {
        let (value, model_type, architecture) = match self {
            Self::Gpt2(config) => (serde_json::to_value(config), "gpt2", "GPT2LMHeadModel"),
            Self::GptNeox(config) => (
                serde_json::to_value(config),
                "gpt_neox",
                "GPTNeoXForCausalLM",
            ),
            Self::Llama(config) => (
                serde_json::to_value(config),
                config.model_type.as_str(),
                match config.model_type.as_str() {
                    "mistral" => "MistralForCausalLM",
                    "qwen2" => "Qwen2ForCausalLM",
                    _ => "LlamaForCausalLM",
                },
            ),
        };
        let mut value = value.unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("model_type".into(), model_type.into());
            map.insert("architectures".into(), vec![architecture].into());
            map.insert("torch_dtype".into(), "float32".into());
        }
        value
    }
}
