//! `config.json`: which family a checkpoint is (read by the family registered for its
//! `model_type`), and that family's configuration.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

pub use crate::families::ModelConfig;
use crate::ModelError;

/// The `model_type` values ropo loads.
pub fn model_types() -> String {
    ModelConfig::FAMILY_MODEL_TYPES.concat().join(", ")
}

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
        let config = Self::read(&model_type, value)
            .ok_or_else(|| {
                error(format!(
                    "unknown model_type '{model_type}': expected one of {}",
                    model_types()
                ))
            })?
            .map_err(|e| error(format!("{model_type} config: {e}")))?;
        config.validate().map_err(error)?;
        config.check_fits_in_memory().map_err(error)?;
        Ok(config)
    }

    /// Checks the configuration can be built; the message names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let (name, epsilon) = self.family().norm_epsilon();
        // A norm divides by √(variance + ε): ε ≤ 0 gives NaN or ∞ on a constant row.
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(format!("{name} ({epsilon}) must be a positive number"));
        }
        self.family().validate()
    }

    /// The `config.json` Hugging Face transformers loads this model from.
    pub fn to_json(&self) -> Value {
        let family = self.family();
        let (model_type, architecture) = family.transformers_names();
        let mut value = family.to_value();
        if let Value::Object(map) = &mut value {
            map.insert("model_type".into(), model_type.into());
            map.insert("architectures".into(), vec![architecture].into());
            map.insert("torch_dtype".into(), "float32".into());
        }
        value
    }
}
