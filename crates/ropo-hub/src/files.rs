//! Which files of a model repository ropo fetches.

/// Whether a model repository's file is one ropo reads: the model's `config.json` and
/// `generation_config.json`, the tokenizer's files (`tokenizer.json`, `tokenizer_config.json`,
/// `special_tokens_map.json`, `chat_template.jinja`, GPT-2's `vocab.json` + `merges.txt`),
/// safetensors weights and their index, and a PEFT adapter's `adapter_config.json`. Never
/// pickled weights (`*.bin`, `*.pt`, `*.pth`, `*.ckpt`) nor other frameworks' files, and only
/// files at the top of the repository.
pub fn model_files(name: &str) -> bool {
    const NAMED: [&str; 9] = [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "vocab.json",
        "merges.txt",
        "adapter_config.json",
    ];
    !name.contains('/')
        && (NAMED.contains(&name)
            || name.ends_with(".safetensors")
            || name == "model.safetensors.index.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_come_as_safetensors_only() {
        for wanted in [
            "config.json",
            "model.safetensors",
            "model-00001-of-00002.safetensors",
            "model.safetensors.index.json",
            "adapter_model.safetensors",
            "tokenizer_config.json",
        ] {
            assert!(model_files(wanted), "{wanted}");
        }
        for unwanted in [
            "pytorch_model.bin",
            "pytorch_model.bin.index.json",
            "model.pt",
            "tf_model.h5",
            "flax_model.msgpack",
            "onnx/model.onnx",
            "original/consolidated.00.pth",
            "README.md",
            "subfolder/model.safetensors",
        ] {
            assert!(!model_files(unwanted), "{unwanted}");
        }
    }
}
