//! What a configuration would allocate, checked before anything is: its parameter count, and
//! whether its f32 weights fit in the memory this machine has available. A ~300-byte
//! `config.json` with `num_hidden_layers = 2^40` must be an error naming the file and the
//! estimate, not an allocation failure that aborts the process.

use crate::{config::ModelConfig, lora::LoraTarget};

/// Bytes of one f32 weight.
const F32_BYTES: u128 = 4;

impl ModelConfig {
    /// The number of weights the model holds (embeddings, every block, final norm and head),
    /// computed without overflow.
    pub fn parameter_count(&self) -> u128 {
        self.family().parameter_count()
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

    /// The projections of one block that LoRA adapters on `targets` attach to, by module name
    /// with their `[d_in, d_out]`, and the number of blocks (as each family's `visit_sites`
    /// lists them: GPT-2's and GPT-NeoX's fused q/k/v projection serves `q`, `k` and `v`).
    pub fn adapted_projections(
        &self,
        targets: &[LoraTarget],
    ) -> (usize, Vec<(&'static str, [usize; 2])>) {
        let (layers, sites) = (self.family().num_layers(), self.family().projection_sites());
        let adapted = sites
            .into_iter()
            .filter(|(_, roles, _)| roles.iter().any(|role| targets.contains(role)))
            .map(|(name, _, dims)| (name, dims))
            .collect();
        (layers, adapted)
    }

    /// Refuses LoRA adapters of `rank` on `targets` that this model cannot take, before any is
    /// allocated: a rank above the narrower side of an adapted projection (`A·B` of that
    /// projection cannot have a higher rank, so the extra columns only cost memory), or
    /// adapters whose f32 weights, gradients and AdamW's two moments, with the frozen f32 base
    /// unless it is already loaded (`base_loaded`), exceed the memory available.
    pub fn check_lora_fits(
        &self,
        rank: usize,
        targets: &[LoraTarget],
        base_loaded: bool,
    ) -> Result<(), String> {
        let (layers, adapted) = self.adapted_projections(targets);
        if let Some((name, [d_in, d_out])) = adapted
            .iter()
            .min_by_key(|(_, [d_in, d_out])| (*d_in).min(*d_out))
        {
            let widest = (*d_in).min(*d_out);
            if rank > widest {
                return Err(format!(
                    "lora_rank (--lora-rank) {rank} is larger than the adapted projection \
                     {name} ({d_in} × {d_out}) allows; give --lora-rank {widest} or less"
                ));
            }
        }
        let n = |x: usize| x as u128;
        let per_block: u128 = adapted
            .iter()
            .map(|(_, [d_in, d_out])| n(rank).saturating_mul(n(*d_in) + n(*d_out)))
            .fold(0, u128::saturating_add);
        let adapters = per_block.saturating_mul(n(layers));
        let base = if base_loaded {
            0
        } else {
            self.parameter_count().saturating_mul(F32_BYTES)
        };
        let needed = adapters.saturating_mul(4 * F32_BYTES).saturating_add(base);
        match available_bytes() {
            Some(available) if needed > u128::from(available) => Err(format!(
                "LoRA rank {rank} adds {adapters} adapter parameters; with their gradients and \
                 AdamW's two moments{} that is {} before any activation, and this machine has \
                 {} available",
                if base_loaded {
                    ""
                } else {
                    " and the frozen f32 weights"
                },
                gib(needed),
                gib(u128::from(available))
            )),
            _ => Ok(()),
        }
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
    fn the_adapted_projections_are_the_ones_lora_adapts_in_each_family() {
        use crate::lora::LoraConfig;
        use burn::{backend::Flex, module::Module};
        let path = std::path::Path::new("config.json");
        for json in [
            r#"{"model_type": "llama", "vocab_size": 32, "hidden_size": 16,
            "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 6, "max_position_embeddings": 16}"#,
            r#"{"model_type": "gpt2", "vocab_size": 32, "n_positions": 16, "n_embd": 16,
            "n_layer": 2, "n_head": 4}"#,
            r#"{"model_type": "gpt_neox", "vocab_size": 32, "hidden_size": 16,
            "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
            "rotary_pct": 0.5, "max_position_embeddings": 16}"#,
        ] {
            let config = ModelConfig::from_json(json, path).unwrap();
            for targets in [&LoraTarget::ALL[..], &[LoraTarget::V, LoraTarget::Down][..]] {
                let lora = LoraConfig {
                    rank: 3,
                    alpha: 6.0,
                    dropout: 0.0,
                    targets: targets.to_vec(),
                    seed: 0,
                };
                let model = config.init::<Flex>(&Default::default());
                let base = model.num_params();
                let adapted = model.with_lora(&lora).unwrap().num_params() - base;
                let (layers, projections) = config.adapted_projections(targets);
                let counted: usize = projections
                    .iter()
                    .map(|(_, [d_in, d_out])| 3 * (d_in + d_out))
                    .sum();
                assert_eq!(adapted, layers * counted, "{json} {targets:?}");
            }
            let smallest = config
                .adapted_projections(&LoraTarget::ALL)
                .1
                .iter()
                .map(|(_, [d_in, d_out])| (*d_in).min(*d_out))
                .min()
                .unwrap();
            assert!(config
                .check_lora_fits(smallest, &LoraTarget::ALL, false)
                .is_ok());
            let error = config
                .check_lora_fits(smallest + 1, &LoraTarget::ALL, false)
                .unwrap_err();
            assert!(
                error.contains("--lora-rank") && error.contains(&format!("{smallest} or less")),
                "{error}"
            );
        }
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
