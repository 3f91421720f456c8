//! The families ropo loads, registered in one list: each line gives [`CausalLm`] and
//! [`ModelConfig`] a variant, and `config.json`'s `model_type` its reader. Everything else
//! reaches a family through [`Family`] and [`FamilyConfig`].

use burn::{module::Module, tensor::backend::Backend};
use serde_json::Value;

use crate::{
    family::{Family, FamilyConfig},
    gpt2::{Gpt2, Gpt2Config},
    gpt_neox::{GptNeox, GptNeoxConfig},
    llama::{Llama, LlamaConfig},
};

/// Defines [`CausalLm`] and [`ModelConfig`] with a variant per family, and the dispatch to
/// each family's model, configuration, `init` and `MODEL_TYPES`.
macro_rules! families {
    ($($(#[$doc:meta])* $variant:ident($model:ident, $config:ident);)*) => {
        /// A causal language model of any supported family.
        #[derive(Module, Debug)]
        pub enum CausalLm<B: Backend> {
            $($(#[$doc])* $variant($model<B>),)*
        }

        /// A model configuration of any supported family, chosen by `config.json`'s
        /// `model_type`.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ModelConfig {
            $($(#[$doc])* $variant($config),)*
        }

        impl<B: Backend> CausalLm<B> {
            /// The model as its family.
            pub fn family(&self) -> &dyn Family<B> {
                match self {
                    $(Self::$variant(model) => model,)*
                }
            }

            /// The model as its family, to change.
            pub fn family_mut(&mut self) -> &mut dyn Family<B> {
                match self {
                    $(Self::$variant(model) => model,)*
                }
            }

            /// The configuration the model was built from.
            pub fn config(&self) -> ModelConfig {
                match self {
                    $(Self::$variant(model) => ModelConfig::$variant(model.config().clone()),)*
                }
            }
        }

        impl ModelConfig {
            /// The `model_type` values ropo loads, family by family.
            pub const FAMILY_MODEL_TYPES: &[&[&str]] = &[$(<$config>::MODEL_TYPES,)*];

            /// The configuration as its family's.
            pub fn family(&self) -> &dyn FamilyConfig {
                match self {
                    $(Self::$variant(config) => config,)*
                }
            }

            /// A model with freshly initialised weights.
            pub fn init<B: Backend>(&self, device: &B::Device) -> CausalLm<B> {
                match self {
                    $(Self::$variant(config) => CausalLm::$variant(config.init(device)),)*
                }
            }

            /// The configuration of the family that loads `model_type`, read from `value`
            /// (`config.json`); `None` when no family does.
            pub(crate) fn read(
                model_type: &str,
                value: Value,
            ) -> Option<Result<Self, serde_json::Error>> {
                $(if <$config>::MODEL_TYPES.contains(&model_type) {
                    return Some(serde_json::from_value(value).map(Self::$variant));
                })*
                None
            }
        }
    };
}

families! {
    /// GPT-2.
    Gpt2(Gpt2, Gpt2Config);
    /// GPT-NeoX (Pythia).
    GptNeox(GptNeox, GptNeoxConfig);
    /// Llama-2/3, Mistral, Qwen2.
    Llama(Llama, LlamaConfig);
}
