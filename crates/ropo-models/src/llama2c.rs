//! llama2.c's `.bin` checkpoints (Karpathy's tinyllamas, e.g. `stories260K.bin`).
//!
//! Layout: seven little-endian i32 (`dim hidden_dim n_layers n_heads n_kv_heads vocab_size
//! seq_len`; a positive `vocab_size` means the classifier shares the token embedding), then
//! f32 weights: token embedding, attention norms, wq, wk, wv, wo, FFN norms, w1, w2, w3, final
//! norm, two legacy RoPE tables, and the classifier when it is not shared. Projections are
//! `[out, in]` as in PyTorch. llama2.c rotates *adjacent* pairs of a head's dimensions; the
//! query and key rows are permuted here into Hugging Face's rotate-half order, so the one
//! Llama implementation computes exactly llama2.c's attention.

use std::path::Path;

use burn::tensor::{backend::Backend, TensorData};
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, TensorSnapshot};

use crate::{
    config::ModelConfig, family::FamilyConfig, llama::LlamaConfig, weight_report::WeightReport,
    CausalLm, ModelError,
};

const HEADER_BYTES: usize = 7 * 4;

/// Loads a llama2.c checkpoint as a Llama model.
pub fn load<B: Backend>(path: &Path, device: &B::Device) -> Result<CausalLm<B>, ModelError> {
    let bytes = std::fs::read(path).map_err(ModelError::io(path))?;
    let corrupt = |message: String| ModelError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    if bytes.len() < HEADER_BYTES {
        return Err(corrupt(format!(
            "truncated: {} bytes, shorter than the 28-byte llama2.c header",
            bytes.len()
        )));
    }
    let header: Vec<i32> = bytes[..HEADER_BYTES]
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let [dim, hidden, layers, heads, kv_heads, vocab, seq_len] = header[..] else {
        return Err(corrupt("unreadable header".into()));
    };
    let shared = vocab > 0;
    let positive = |value: i32, name: &str| {
        usize::try_from(value)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| corrupt(format!("header field {name} = {value} must be positive")))
    };
    let (dim, hidden, layers) = (
        positive(dim, "dim")?,
        positive(hidden, "hidden_dim")?,
        positive(layers, "n_layers")?,
    );
    let (heads, kv_heads) = (
        positive(heads, "n_heads")?,
        positive(kv_heads, "n_kv_heads")?,
    );
    // `abs` of i32::MIN overflows (found by fuzzing).
    let vocab = vocab
        .checked_abs()
        .ok_or_else(|| corrupt(format!("header field vocab_size = {vocab} is out of range")))?;
    let (vocab, seq_len) = (
        positive(vocab, "vocab_size")?,
        positive(seq_len, "seq_len")?,
    );
    if dim % heads != 0 || heads % kv_heads != 0 {
        return Err(corrupt(format!(
            "header: dim {dim}, n_heads {heads}, n_kv_heads {kv_heads} do not divide"
        )));
    }
    let head_dim = dim / heads;
    let kv_dim = kv_heads * head_dim;
    let config = LlamaConfig {
        num_key_value_heads: Some(kv_heads),
        rope_theta: Some(10_000.0),
        tie_word_embeddings: shared,
        ..LlamaConfig::new(vocab, dim, hidden, layers, heads, seq_len)
    };
    config.validate().map_err(corrupt)?;

    let mut reader = Reader {
        bytes: &bytes,
        offset: HEADER_BYTES,
    };
    let mut snapshots = Vec::new();
    let take =
        |reader: &mut Reader, name: String, shape: Vec<usize>| -> Result<Vec<f32>, ModelError> {
            let count: usize = shape.iter().product();
            reader.floats(count).ok_or_else(|| {
                corrupt(format!(
                    "truncated at byte {}: {name} needs {} more bytes",
                    reader.offset,
                    count * 4
                ))
            })
        };
    let mut push = |name: String, shape: Vec<usize>, values: Vec<f32>| {
        snapshots.push((name, shape, values));
    };
    let embedding = take(&mut reader, "token embedding".into(), vec![vocab, dim])?;
    push(
        "model.embed_tokens.weight".into(),
        vec![vocab, dim],
        embedding,
    );
    // Each per-layer tensor is stored for all layers at once: [L, ...].
    let per_layer: [(&str, Vec<usize>); 9] = [
        ("input_layernorm.weight", vec![dim]),
        ("self_attn.q_proj.weight", vec![dim, dim]),
        ("self_attn.k_proj.weight", vec![kv_dim, dim]),
        ("self_attn.v_proj.weight", vec![kv_dim, dim]),
        ("self_attn.o_proj.weight", vec![dim, dim]),
        ("post_attention_layernorm.weight", vec![dim]),
        ("mlp.gate_proj.weight", vec![hidden, dim]),
        ("mlp.down_proj.weight", vec![dim, hidden]),
        ("mlp.up_proj.weight", vec![hidden, dim]),
    ];
    for (name, shape) in per_layer {
        for layer in 0..layers {
            let full = format!("model.layers.{layer}.{name}");
            let mut values = take(&mut reader, full.clone(), shape.clone())?;
            if name == "self_attn.q_proj.weight" || name == "self_attn.k_proj.weight" {
                values = adjacent_to_half_rotation(&values, shape[0] / head_dim, head_dim, dim);
            }
            push(full, shape.clone(), values);
        }
    }
    let norm = take(&mut reader, "final norm".into(), vec![dim])?;
    push("model.norm.weight".into(), vec![dim], norm);
    take(
        &mut reader,
        "legacy RoPE tables".into(),
        vec![2, seq_len, head_dim / 2],
    )?;
    if !shared {
        let head = take(&mut reader, "classifier".into(), vec![vocab, dim])?;
        push("lm_head.weight".into(), vec![vocab, dim], head);
    }

    let mut model = ModelConfig::Llama(config).init(device);
    let snapshots = snapshots
        .into_iter()
        .map(|(name, shape, values)| {
            let path: Vec<String> = name.split('.').map(str::to_string).collect();
            TensorSnapshot::from_data(
                TensorData::new(values, shape),
                path,
                Vec::new(),
                Default::default(),
            )
        })
        .collect();
    let mut report = WeightReport::new(&model);
    report.add(model.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), true));
    report.finish(path)?;
    Ok(model)
}

/// Reads consecutive little-endian f32 values.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl Reader<'_> {
    fn floats(&mut self, count: usize) -> Option<Vec<f32>> {
        let end = self.offset.checked_add(count.checked_mul(4)?)?;
        let slice = self.bytes.get(self.offset..end)?;
        self.offset = end;
        Some(
            slice
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }
}

/// Reorders the output rows of a q/k projection `[heads·head_dim, width]` so that, within each
/// head, row `2i + j` (llama2.c's adjacent pair `i`, member `j`) moves to `j·head_dim/2 + i`
/// (Hugging Face's rotate-half layout). llama.cpp's GGUF files store q/k rows in the same
/// adjacent-pair order ([`crate::gguf`]).
pub(crate) fn adjacent_to_half_rotation(
    values: &[f32],
    heads: usize,
    head_dim: usize,
    width: usize,
) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0.0; values.len()];
    for head in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = (head * head_dim + 2 * i + j) * width;
                let to = (head * head_dim + j * half + i) * width;
                out[to..to + width].copy_from_slice(&values[from..from + width]);
            }
        }
    }
    out
}
