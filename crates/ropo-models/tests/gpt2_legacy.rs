//! The hub's original `gpt2` checkpoint layout (no `transformer.` prefix, causal-mask
//! buffers stored as weights) loads as the prefixed one does.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use ropo_models::{checkpoint, token_logps};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2")
}

/// Writes the gpt2 fixture as the hub's original `gpt2` stores it: no `transformer.`
/// prefix, plus the causal-mask buffers `attn.bias` and `attn.masked_bias`.
fn write_legacy_checkpoint(folder: &Path) {
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mask: Vec<u8> = (0..64 * 64)
        .flat_map(|i| f32::from(u8::from(i % 64 <= i / 64)).to_le_bytes())
        .collect();
    let masked_bias = (-1e4f32).to_le_bytes();
    let mut tensors: Vec<(String, TensorView)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name.replace("transformer.", ""), view))
        .collect();
    for layer in 0..2 {
        tensors.push((
            format!("h.{layer}.attn.bias"),
            TensorView::new(Dtype::F32, vec![1, 1, 64, 64], &mask).unwrap(),
        ));
        tensors.push((
            format!("h.{layer}.attn.masked_bias"),
            TensorView::new(Dtype::F32, vec![], &masked_bias).unwrap(),
        ));
    }
    std::fs::create_dir_all(folder).unwrap();
    safetensors::serialize_to_file(tensors, None, &folder.join("model.safetensors")).unwrap();
    std::fs::copy(fixture().join("config.json"), folder.join("config.json")).unwrap();
}

#[test]
fn checkpoint_without_transformer_prefix_and_with_mask_buffers_loads() {
    let folder = std::env::temp_dir().join(format!("ropo-gpt2-legacy-{}", std::process::id()));
    write_legacy_checkpoint(&folder);
    let device = Default::default();
    let legacy = checkpoint::load::<Flex>(&folder, &device);
    std::fs::remove_dir_all(&folder).unwrap();
    let legacy = legacy.unwrap();
    let original = checkpoint::load::<Flex>(&fixture(), &device).unwrap();
    let tokens = [77, 9, 29, 30, 78, 3, 76];
    assert_eq!(
        token_logps(&legacy, &tokens, &device).unwrap(),
        token_logps(&original, &tokens, &device).unwrap()
    );
}
