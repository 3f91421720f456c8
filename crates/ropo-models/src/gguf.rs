//! llama.cpp's GGUF files as Llama models: `general.architecture = llama` (Llama-2/3,
//! SmolLM2, TinyLlama, ...), read through `ropo-gguf` and de-quantised to f32 one tensor at a
//! time as the model takes it.
//!
//! - The configuration comes from the `llama.*` keys: `embedding_length`, `block_count`,
//!   `feed_forward_length`, `attention.head_count`, `attention.head_count_kv` (default: the
//!   head count), `context_length`, `attention.layer_norm_rms_epsilon`, `rope.freq_base`
//!   (default 10000); the vocabulary size from `token_embd.weight`'s rows. A head without
//!   `output.weight` is tied to the token embedding.
//! - Tensor names map to Hugging Face's (`blk.N.attn_q.weight` → `model.layers.N.self_attn.
//!   q_proj.weight`, `ffn_gate` → `mlp.gate_proj`, `attn_norm` → `input_layernorm`, ...); GGUF
//!   lists dimensions innermost first, so a `[columns, rows]` entry is PyTorch's `[rows,
//!   columns]`, and the values are already in that order.
//! - llama.cpp rotates *adjacent* pairs of a head's dimensions, so `convert_hf_to_gguf.py`
//!   permutes the query and key rows of each head from Hugging Face's rotate-half order
//!   (`reshape(heads, 2, head_dim/2, ·).swapaxes(1, 2)`). Loading undoes it, as transformers'
//!   GGUF loader does, with the query's head count for `attn_q` and the key/value head count for
//!   `attn_k`; it is the same reordering as llama2.c's ([`crate::llama2c`]).
//! - What ropo's Llama cannot compute is refused by name: another architecture, a partial
//!   rotary (`rope.dimension_count` ≠ head width), rope scaling (`rope.scaling.type`, or Llama
//!   3.1's `rope_freqs.weight`), mixtures of experts, biases.

use std::{path::Path, rc::Rc};

use burn::tensor::{backend::Backend, DType, TensorData};
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, TensorSnapshot, TensorSnapshotError};
use ropo_gguf::{GgmlType, GgufError, GgufFile};

use crate::{
    config::ModelConfig, family::FamilyConfig, llama::LlamaConfig, llama2c,
    weight_report::WeightReport, weights_file::SaveDtype, CausalLm, ModelError,
};

/// The architecture ropo reads from GGUF files.
const ARCHITECTURE: &str = "llama";

/// Loads a llama-architecture GGUF file as a Llama model, reading each tensor only when the
/// model takes it.
pub fn load<B: Backend>(path: &Path, device: &B::Device) -> Result<CausalLm<B>, ModelError> {
    let file = Rc::new(GgufFile::open(path)?);
    let config = llama_config(&file)?;
    let expected = expected_tensors(&config);
    let mut unknown = Vec::new();
    let mut snapshots = Vec::new();
    for info in file.tensors() {
        let Some(hf) = hf_name(info.name()) else {
            unknown.push(info.name().to_string());
            continue;
        };
        let Some((_, shape, rows)) = expected.iter().find(|(name, _, _)| *name == hf) else {
            unknown.push(info.name().to_string());
            continue;
        };
        if info.shape() != *shape {
            return Err(file
                .invalid(
                    format!("tensor '{}'", info.name()),
                    format!(
                        "shape {:?}, but the llama.* metadata gives {shape:?} for {hf}",
                        info.shape()
                    ),
                )
                .into());
        }
        let (file, name, rows, dims) =
            (file.clone(), info.name().to_string(), *rows, shape.clone());
        let read = move || -> Result<TensorData, TensorSnapshotError> {
            let mut values = file
                .read_f32(&name)
                .map_err(|e| TensorSnapshotError::IoError(e.to_string()))?;
            if let Some(RowOrder { heads, head_dim }) = rows {
                values = llama2c::adjacent_to_half_rotation(&values, heads, head_dim, dims[1]);
            }
            Ok(TensorData::new(values, dims.clone()))
        };
        snapshots.push(TensorSnapshot::from_closure(
            Rc::new(read),
            DType::F32,
            shape.clone().into(),
            hf.split('.').map(str::to_string).collect(),
            Vec::new(),
            Default::default(),
        ));
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|(hf, _, _)| !snapshots.iter().any(|s| s.full_path() == *hf))
        .map(|(hf, _, _)| gguf_name(hf))
        .collect();
    if !unknown.is_empty() || !missing.is_empty() {
        let mut details = Vec::new();
        if !missing.is_empty() {
            details.push(format!("missing tensors: {}", missing.join(", ")));
        }
        if !unknown.is_empty() {
            details.push(format!(
                "tensors a llama of this configuration does not have: {}",
                unknown.join(", ")
            ));
        }
        return Err(ModelError::Weights {
            path: path.to_path_buf(),
            details: details.join("; "),
        });
    }
    let mut model = ModelConfig::Llama(config).init(device);
    let mut report = WeightReport::new(&model);
    report.add(model.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), true));
    report.finish(path)?;
    Ok(model)
}

/// The model configuration of a GGUF file, from its metadata and tensor infos (no tensor data
/// is read).
pub fn config_of(path: &Path) -> Result<ModelConfig, ModelError> {
    Ok(ModelConfig::Llama(llama_config(&GgufFile::open(path)?)?))
}

/// The type to save a model loaded from `path` in: f16 or bf16 when every matrix is stored so
/// (only the norms in f32, as llama.cpp writes them), else f32 — a quantised tensor's values
/// need f32 to be kept exactly.
pub fn stored_dtype(path: &Path) -> Result<SaveDtype, ModelError> {
    let file = GgufFile::open(path)?;
    let matrices: Vec<GgmlType> = file
        .tensors()
        .iter()
        .filter(|t| t.ggml_dims().len() > 1)
        .map(|t| t.ggml_type())
        .collect();
    Ok(match matrices.first() {
        Some(GgmlType::F16) if matrices.iter().all(|&t| t == GgmlType::F16) => SaveDtype::F16,
        Some(GgmlType::BF16) if matrices.iter().all(|&t| t == GgmlType::BF16) => SaveDtype::Bf16,
        _ => SaveDtype::F32,
    })
}

impl From<GgufError> for ModelError {
    fn from(error: GgufError) -> Self {
        match error {
            GgufError::Io { path, source } => ModelError::Io { path, source },
            GgufError::Invalid {
                path,
                field,
                problem,
            }
            | GgufError::Unsupported {
                path,
                field,
                problem,
            } => ModelError::Corrupt {
                path,
                message: format!("{field}: {problem}"),
            },
        }
    }
}

/// The Llama configuration the `llama.*` keys and the tensor infos describe.
fn llama_config(file: &GgufFile) -> Result<LlamaConfig, ModelError> {
    let architecture = file.string("general.architecture")?;
    if architecture != Some(ARCHITECTURE) {
        return Err(file
            .unsupported(
                "metadata 'general.architecture'",
                format!(
                    "{}; ropo reads GGUF models of architecture '{ARCHITECTURE}'",
                    architecture.map_or("absent".to_string(), |a| format!("'{a}'"))
                ),
            )
            .into());
    }
    let key = |name: &str| format!("{ARCHITECTURE}.{name}");
    let required = |name: &str| -> Result<usize, ModelError> {
        let key = key(name);
        let value = file
            .uint(&key)?
            .ok_or_else(|| file.invalid(format!("metadata '{key}'"), "missing"))?;
        usize::try_from(value).map_err(|_| {
            file.invalid(format!("metadata '{key}'"), "out of range")
                .into()
        })
    };
    let hidden = required("embedding_length")?;
    let heads = required("attention.head_count")?;
    let kv_heads = match file.uint(&key("attention.head_count_kv"))? {
        Some(kv) => usize::try_from(kv).unwrap_or(usize::MAX),
        None => heads,
    };
    let eps = file
        .float(&key("attention.layer_norm_rms_epsilon"))?
        .ok_or_else(|| {
            file.invalid(
                format!("metadata '{}'", key("attention.layer_norm_rms_epsilon")),
                "missing",
            )
        })?;
    let vocab = match file.tensor("token_embd.weight") {
        Some(embedding) => embedding.shape()[0],
        None => return Err(file.invalid("tensor 'token_embd.weight'", "missing").into()),
    };
    let config = LlamaConfig {
        num_key_value_heads: Some(kv_heads),
        rms_norm_eps: as_written_f32(eps),
        rope_theta: Some(
            file.float(&key("rope.freq_base"))?
                .map_or(10_000.0, as_written_f32),
        ),
        tie_word_embeddings: file.tensor("output.weight").is_none(),
        ..LlamaConfig::new(
            vocab,
            hidden,
            required("feed_forward_length")?,
            required("block_count")?,
            heads,
            required("context_length")?,
        )
    };
    let invalid = |field: String, problem: String| ModelError::from(file.invalid(field, problem));
    if let Err(problem) = config.validate() {
        return Err(invalid("metadata 'llama.*'".into(), problem));
    }
    if let Err(problem) = ModelConfig::Llama(config.clone()).check_fits_in_memory() {
        return Err(invalid("metadata 'llama.*'".into(), problem));
    }
    let head_dim = config.head_width();
    for (name, value) in [
        ("rope.dimension_count", head_dim),
        ("attention.key_length", head_dim),
        ("attention.value_length", head_dim),
    ] {
        match file.uint(&key(name))? {
            Some(given) if given != value as u64 => {
                return Err(file
                    .unsupported(
                        format!("metadata '{}'", key(name)),
                        format!(
                            "{given}, but ropo's Llama needs the head width {head_dim} \
                             (embedding_length / head_count) here"
                        ),
                    )
                    .into())
            }
            _ => {}
        }
    }
    if let Some(scaling) = file.string(&key("rope.scaling.type"))? {
        if scaling != "none" {
            return Err(file
                .unsupported(
                    format!("metadata '{}'", key("rope.scaling.type")),
                    format!("rope scaling '{scaling}' is not supported"),
                )
                .into());
        }
    }
    if file.uint(&key("expert_count"))?.unwrap_or(0) > 0 {
        return Err(file
            .unsupported(
                format!("metadata '{}'", key("expert_count")),
                "mixtures of experts are not supported",
            )
            .into());
    }
    if file.tensor("rope_freqs.weight").is_some() {
        return Err(file
            .unsupported(
                "tensor 'rope_freqs.weight'",
                "llama.cpp's rope frequency factors (Llama 3.1 rope scaling) are not supported",
            )
            .into());
    }
    Ok(config)
}

/// A value llama.cpp stored as f32 (`1e-5` is 9.99999974738e-06 there) as the decimal that was
/// written (the shortest that rounds to the same f32), so a saved `config.json` reads `1e-05`
/// as the original did.
fn as_written_f32(value: f64) -> f64 {
    let single = value as f32;
    if f64::from(single) == value {
        single.to_string().parse().unwrap_or(value)
    } else {
        value
    }
}

/// How the rows of a permuted projection are grouped: `heads` heads of `head_dim` rows each.
#[derive(Debug, Clone, Copy)]
struct RowOrder {
    heads: usize,
    head_dim: usize,
}

/// Every tensor the model takes: its Hugging Face name, PyTorch shape, and for the query and
/// key projections the row grouping whose llama.cpp permutation is undone.
fn expected_tensors(config: &LlamaConfig) -> Vec<(String, Vec<usize>, Option<RowOrder>)> {
    let (d, ffn, vocab) = (
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
    );
    let head_dim = config.head_width();
    let (heads, kv_heads) = (config.num_attention_heads, config.kv_heads());
    let mut tensors = vec![
        (
            "model.embed_tokens.weight".to_string(),
            vec![vocab, d],
            None,
        ),
        ("model.norm.weight".to_string(), vec![d], None),
    ];
    if !config.tie_word_embeddings {
        tensors.push(("lm_head.weight".to_string(), vec![vocab, d], None));
    }
    for layer in 0..config.num_hidden_layers {
        let name = |part: &str| format!("model.layers.{layer}.{part}.weight");
        let rows = |heads| Some(RowOrder { heads, head_dim });
        tensors.extend([
            (
                name("self_attn.q_proj"),
                vec![heads * head_dim, d],
                rows(heads),
            ),
            (
                name("self_attn.k_proj"),
                vec![kv_heads * head_dim, d],
                rows(kv_heads),
            ),
            (name("self_attn.v_proj"), vec![kv_heads * head_dim, d], None),
            (name("self_attn.o_proj"), vec![d, heads * head_dim], None),
            (name("mlp.gate_proj"), vec![ffn, d], None),
            (name("mlp.up_proj"), vec![ffn, d], None),
            (name("mlp.down_proj"), vec![d, ffn], None),
            (name("input_layernorm"), vec![d], None),
            (name("post_attention_layernorm"), vec![d], None),
        ]);
    }
    tensors
}

/// The llama.cpp name of a Hugging Face Llama tensor name (the inverse of [`hf_name`]).
fn gguf_name(hf: &str) -> String {
    let top = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = top {
        return name.to_string();
    }
    PARTS.iter().fold(
        hf.replacen("model.layers.", "blk.", 1),
        |name, (gguf, hf)| name.replacen(&format!(".{hf}."), &format!(".{gguf}."), 1),
    )
}

/// llama.cpp's names of a block's tensors and Hugging Face's.
const PARTS: [(&str, &str); 9] = [
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// The Hugging Face name of a llama.cpp tensor name, if it is one of a Llama's.
fn hf_name(gguf: &str) -> Option<String> {
    let top = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = top {
        return Some(name.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let (_, part) = PARTS.iter().find(|(gguf, _)| *gguf == part)?;
    Some(format!("model.layers.{layer}.{part}.{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_names_map_to_hugging_face_names() {
        assert_eq!(
            hf_name("blk.12.attn_q.weight").unwrap(),
            "model.layers.12.self_attn.q_proj.weight"
        );
        assert_eq!(
            hf_name("blk.0.ffn_norm.weight").unwrap(),
            "model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(hf_name("output.weight").unwrap(), "lm_head.weight");
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(hf_name("blk.0.attn_qkv.weight"), None);
        assert_eq!(hf_name("rope_freqs.weight"), None);
        for name in [
            "blk.3.attn_output.weight",
            "output.weight",
            "blk.0.ffn_norm.weight",
        ] {
            assert_eq!(gguf_name(&hf_name(name).unwrap()), name);
        }
    }

    #[test]
    fn f32_metadata_reads_as_the_decimal_that_was_written() {
        assert_eq!(as_written_f32(f64::from(1e-5f32)), 1e-5);
        assert_eq!(as_written_f32(f64::from(100_000f32)), 100_000.0);
        assert_eq!(as_written_f32(1e-5), 1e-5);
    }
}
