//! The safetensors file ropo writes: tensors in a fixed order with one metadata entry, so
//! equal weights always give equal bytes, and in the floating-point type asked for (f32, f16
//! or bf16, the latter two rounded to nearest even from f32). Also reads which type a
//! checkpoint stores, so a trained model can be written back as it came.

use std::{collections::HashMap, io::Read, path::Path};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// The floating-point type of saved weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaveDtype {
    /// 32-bit IEEE floats.
    F32,
    /// 16-bit IEEE floats.
    F16,
    /// bfloat16.
    Bf16,
}

impl std::str::FromStr for SaveDtype {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            other => Err(format!(
                "unknown dtype {other:?}: expected f32, f16 or bf16"
            )),
        }
    }
}

/// The type the first floating-point tensor of `file` (a safetensors file) is stored in; f32
/// when it holds none. Reads the header only.
pub fn stored_dtype(file: &Path) -> Result<SaveDtype, ModelError> {
    let corrupt = |message: String| ModelError::Corrupt {
        path: file.to_path_buf(),
        message,
    };
    let mut handle = std::fs::File::open(file).map_err(ModelError::io(file))?;
    let mut length = [0u8; 8];
    handle
        .read_exact(&mut length)
        .map_err(|e| corrupt(format!("header too small: {e}")))?;
    let length = u64::from_le_bytes(length);
    if length > 100_000_000 {
        return Err(corrupt(format!("header too large ({length} bytes)")));
    }
    let mut header = vec![0u8; length as usize];
    handle
        .read_exact(&mut header)
        .map_err(|e| corrupt(format!("header cut short: {e}")))?;
    let header: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| corrupt(format!("invalid JSON in header: {e}")))?;
    let mut names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    let first = names
        .iter()
        .filter_map(|name| header[*name].get("dtype").and_then(|d| d.as_str()))
        .find(|dtype| matches!(*dtype, "F32" | "F16" | "BF16"));
    Ok(match first {
        Some("F16") => SaveDtype::F16,
        Some("BF16") => SaveDtype::Bf16,
        _ => SaveDtype::F32,
    })
}

/// The largest weights file written before the weights are split into shards, in bytes:
/// transformers' `save_pretrained` default, 5 GB.
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// The index file of sharded weights, as transformers names it.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Writes the tensors of `whole` (a safetensors file burn-store wrote, deleted afterwards)
/// into `folder` in `dtype`: as `model.safetensors` when they fit in `max_shard_bytes`, else
/// as `model-0000K-of-0000N.safetensors` shards of at most that size (a larger tensor gets a
/// shard of its own) with `model.safetensors.index.json`, as `save_pretrained` writes them.
/// Each file holds its tensors in a fixed order (safetensors' own: by alignment, then name)
/// with one metadata entry (`format: pt`, which transformers checks), so equal weights give
/// equal bytes; burn-store's order changes from run to run. Returns the names written.
pub fn write_weights(
    whole: &Path,
    folder: &Path,
    dtype: SaveDtype,
    max_shard_bytes: u64,
) -> Result<Vec<String>, ModelError> {
    let bytes = std::fs::read(whole).map_err(ModelError::io(whole))?;
    let corrupt = |e: safetensors::SafeTensorError| ModelError::Corrupt {
        path: whole.to_path_buf(),
        message: format!("cannot rewrite the weights: {e}"),
    };
    let tensors = SafeTensors::deserialize(&bytes).map_err(corrupt)?;
    let mut converted: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let (to, data) = convert(view.dtype(), view.data(), dtype);
            (name, to, view.shape().to_vec(), data)
        })
        .collect();
    converted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0u64;
    for (index, (_, _, _, data)) in converted.iter().enumerate() {
        let bytes = data.len() as u64;
        let current = shards.last_mut().expect("one shard at least");
        if !current.is_empty() && size + bytes > max_shard_bytes {
            shards.push(vec![index]);
            size = bytes;
        } else {
            current.push(index);
            size += bytes;
        }
    }
    remove_weights(folder)?;
    let names: Vec<String> = match shards.len() {
        1 => vec!["model.safetensors".to_string()],
        n => (1..=n)
            .map(|k| format!("model-{k:05}-of-{n:05}.safetensors"))
            .collect(),
    };
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let mut weight_map = std::collections::BTreeMap::new();
    for (name, members) in names.iter().zip(&shards) {
        let views = members
            .iter()
            .map(|&i| {
                let (tensor, to, shape, data) = &converted[i];
                weight_map.insert(tensor.clone(), name.clone());
                Ok((tensor, TensorView::new(*to, shape.clone(), data)?))
            })
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(corrupt)?;
        let path = folder.join(name);
        let tmp = path.with_extension("safetensors.tmp");
        safetensors::serialize_to_file(views, Some(metadata.clone()), &tmp).map_err(corrupt)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(ModelError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(ModelError::io(&path))?;
    }
    std::fs::remove_file(whole).map_err(ModelError::io(whole))?;
    if names.len() == 1 {
        return Ok(names);
    }
    let total: usize = converted.iter().map(|(_, _, _, data)| data.len()).sum();
    let index = serde_json::json!({
        "metadata": { "total_size": total },
        "weight_map": weight_map,
    });
    let text = serde_json::to_string_pretty(&index).unwrap_or_default();
    crate::integrity::write_atomic(&folder.join(INDEX_FILE), text.as_bytes())?;
    Ok(names.into_iter().chain([INDEX_FILE.to_string()]).collect())
}

/// Removes the weights an earlier save left in `folder` (one file, or shards and their
/// index), so that a save with another shard count leaves no stale file beside its own.
fn remove_weights(folder: &Path) -> Result<(), ModelError> {
    let entries = std::fs::read_dir(folder).map_err(ModelError::io(folder))?;
    for entry in entries {
        let entry = entry.map_err(ModelError::io(folder))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let shard = name.starts_with("model-") && name.ends_with(".safetensors");
        if name == "model.safetensors" || name == INDEX_FILE || shard {
            std::fs::remove_file(entry.path()).map_err(ModelError::io(entry.path()))?;
        }
    }
    Ok(())
}

/// `data` of type `from` as `to` wants it: f32 converted, anything else left as it is.
fn convert(from: Dtype, data: &[u8], to: SaveDtype) -> (Dtype, Vec<u8>) {
    let floats = || {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match (from, to) {
        (Dtype::F32, SaveDtype::F16) => (
            Dtype::F16,
            floats()
                .flat_map(|x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
        ),
        (Dtype::F32, SaveDtype::Bf16) => (
            Dtype::BF16,
            floats()
                .flat_map(|x| half::bf16::from_f32(x).to_le_bytes())
                .collect(),
        ),
        _ => (from, data.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_becomes_the_nearest_half_and_bfloat_values() {
        let data: Vec<u8> = [1.0f32, -2.5, 1.0 + 1.0 / 1024.0, 3.1e-3]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let (dtype, bytes) = convert(Dtype::F32, &data, SaveDtype::Bf16);
        assert_eq!(dtype, Dtype::BF16);
        let back: Vec<f32> = bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        assert_eq!(back[..3], [1.0, -2.5, 1.0]);
        assert!((back[3] - 3.1e-3).abs() < 3.1e-3 / 128.0);
        let (dtype, bytes) = convert(Dtype::F32, &data, SaveDtype::F16);
        assert_eq!(dtype, Dtype::F16);
        let back: Vec<f32> = bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        assert_eq!(back[..3], [1.0, -2.5, 1.0 + 1.0 / 1024.0]);
        assert!((back[3] - 3.1e-3).abs() < 3.1e-3 / 1024.0);
        assert_eq!(
            convert(Dtype::I64, &data, SaveDtype::F16),
            (Dtype::I64, data)
        );
    }
}
