//! What a configuration would allocate, checked before anything is: its parameter count, and
//! whether its f32 weights fit in the memory this machine has available. A ~300-byte
//! `config.json` with `num_hidden_layers = 2^40` must be an error naming the file and the
//! estimate, not an allocation failure that aborts the process.

use crate::config::ModelConfig;

/// Bytes of one f32 weight.
const F32_BYTES: u128 = 4;

impl ModelConfig {
    /// The number of weights the model holds (embeddings, every block, final norm and head),
    /// computed without overflow.
    pub fn parameter_count(&self) -> u128 {
        let n = |x: usize| x as u128;
        match self {
            Self::Gpt2(c) => {
                let (d, inner) = (n(c.n_embd), n(c.inner_width()));
                let block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * d * inner + inner + d);
                let head = if c.tie_word_embeddings {
                    0
                } else {
                    n(c.vocab_size) * d
                };
                (n(c.vocab_size) + n(c.n_positions)) * d + n(c.n_layer) * block + 2 * d + head
            }
            Self::GptNeox(c) => {
                let (d, inner) = (n(c.hidden_size), n(c.intermediate_size));
                let block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * d * inner + inner + d);
                2 * n(c.vocab_size) * d + n(c.num_hidden_layers) * block + 2 * d
            }
            Self::Llama(c) => {
                let (d, inner, head) =
                    (n(c.hidden_size), n(c.intermediate_size), n(c.head_width()));
                let (q, kv) = (n(c.num_attention_heads) * head, n(c.kv_heads()) * head);
                let block = 2 * d + d * (q + 2 * kv) + q * d + 3 * d * inner;
                let output = if c.tie_word_embeddings {
                    0
                } else {
                    n(c.vocab_size) * d
                };
                n(c.vocab_size) * d + n(c.num_hidden_layers) * block + d + output
            }
        }
    }

    /// Refuses a model whose f32 weights alone exceed the memory available on this machine
    /// (`MemAvailable`; not checked where the system does not say), stating the estimate.
    pub fn check_fits_in_memory(&self) -> Result<(), String> {
        self.check_training_fits_in_memory(false)
    }

    /// Refuses a model where its f32 weights, plus for full fine-tuning
    /// (`trains_every_weight`) their gradients and AdamW's two moments, exceed the memory
    /// available, stating the estimate (activations come on top of it).
    pub fn check_training_fits_in_memory(&self, trains_every_weight: bool) -> Result<(), String> {
        let (bytes_per_weight, what) = if trains_every_weight {
            (
                4 * F32_BYTES,
                "f32 weights, gradients and AdamW's two moments",
            )
        } else {
            (F32_BYTES, "f32 weights")
        };
        if self.fits(bytes_per_weight) {
            return Ok(());
        }
        let needed = self.parameter_count().saturating_mul(bytes_per_weight);
        Err(format!(
            "this configuration has {} parameters, {} of {what} before any activation, and \
             this machine has {} available",
            self.parameter_count(),
            gib(needed),
            gib(available_bytes().map_or(0, u128::from))
        ))
    }

    /// Whether `bytes_per_weight` for each parameter fits in the available memory (`true`
    /// where the system does not say).
    fn fits(&self, bytes_per_weight: u128) -> bool {
        let needed = self.parameter_count().saturating_mul(bytes_per_weight);
        available_bytes().is_none_or(|available| needed <= u128::from(available))
    }
}

/// Memory the system says is available for new allocations, in bytes (Linux: `MemAvailable`
/// of `/proc/meminfo`); `None` where it does not say.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `bytes` as GiB for a message.
fn gib(bytes: u128) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::LlamaConfig;

    #[test]
    fn the_parameter_count_of_a_llama_2_7b_shape_is_its_published_one() {
        // Llama-2-7B: 6,738,415,616 parameters (untied head).
        let config = LlamaConfig::new(32000, 4096, 11008, 32, 32, 4096);
        assert_eq!(ModelConfig::Llama(config).parameter_count(), 6_738_415_616);
    }

    #[test]
    fn a_model_too_large_for_the_machine_is_refused_with_the_estimate() {
        let error = ModelConfig::from_json(
            r#"{"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
            "intermediate_size": 11008, "num_hidden_layers": 1099511627776,
            "num_attention_heads": 32, "max_position_embeddings": 4096}"#,
            std::path::Path::new("config.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("config.json: "), "{error}");
        assert!(
            error.contains("parameters") && error.contains("GiB"),
            "{error}"
        );
    }
}
