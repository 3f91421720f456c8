//! Loading and saving Hugging Face checkpoints: `config.json` plus `model.safetensors` or
//! shards listed in `model.safetensors.index.json`, f32/f16/bf16 on disk, through burn-store.
//!
//! PyTorch's `nn.Linear` stores `[out, in]`; burn's `Linear` holds `[in, out]`, so
//! `PyTorchToBurnAdapter` transposes exactly the tensors that belong to a burn `Linear`.
//! GPT-2's `Conv1D` weights are already `[in, out]` and live in a module of their own, so the
//! adapter leaves them alone. Half-precision tensors are upcast to f32 as they load.
//!
//! A path ending in `.gguf` is a llama.cpp GGUF file, read by `gguf.rs` (a Llama, de-quantised
//! to f32); a path ending in `.bin` a llama2.c checkpoint. Both save as the usual Hugging Face
//! folder.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    rc::Rc,
};

use burn::tensor::{backend::Backend, DType};
use burn_store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore, TensorSnapshot,
};
use serde::Deserialize;

use crate::{
    config::ModelConfig,
    gguf, integrity, llama2c, peft,
    weight_report::WeightReport,
    weights_file::{self, SaveDtype},
    CausalLm, ModelError,
};

/// Opens a model from a checkpoint folder (`config.json` + safetensors), a `.safetensors` file
/// whose folder holds `config.json`, a llama2.c `.bin` file or a llama.cpp `.gguf` file (see
/// [`is_gguf`]). A PEFT adapter folder is an error naming its base (see [`peft::load_adapter`]
/// to apply one).
pub fn load<B: Backend>(path: &Path, device: &B::Device) -> Result<CausalLm<B>, ModelError> {
    if !path.exists() {
        return Err(ModelError::io(path)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such checkpoint file or folder",
        )));
    }
    if peft::is_adapter(path) {
        return Err(peft::not_a_model(path));
    }
    if path.extension().is_some_and(|ext| ext == "bin") {
        return llama2c::load(path, device);
    }
    if is_gguf(path) {
        return gguf::load(path, device);
    }
    let folder = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    let files = if path.is_dir() {
        weight_files(folder)?
    } else {
        vec![path.to_path_buf()]
    };
    if integrity::is_sealed(folder) {
        let mut read = vec!["config.json".to_string()];
        read.extend(
            files
                .iter()
                .filter_map(|f| Some(f.file_name()?.to_str()?.to_string())),
        );
        integrity::verify_files(folder, &read)?;
    }
    let config = ModelConfig::from_file(&folder.join("config.json"))?;
    let mut model = config.init(device);
    apply_weights(&mut model, &files, path)?;
    Ok(model)
}

/// Writes `config.json` and the weights (in `dtype`; `model.safetensors`, or shards of at most
/// `max_shard_bytes` with their index) into `folder`, in the layout Hugging Face transformers
/// loads, plus `SHA256SUMS` (see [`integrity`]), which [`load`] checks. Each file is written
/// under a temporary name, flushed and renamed, and the sums file comes last, so a failed save
/// never leaves a half-written file and a later corruption is caught at load. Equal weights
/// give equal files ([`weights_file::write_weights`]). A model with LoRA adapters is saved
/// merged ([`CausalLm::merged`]), as transformers loads it. Returns the files written,
/// `config.json` first.
pub fn save<B: Backend>(
    model: &CausalLm<B>,
    folder: &Path,
    dtype: SaveDtype,
    max_shard_bytes: u64,
) -> Result<Vec<String>, ModelError> {
    let merged;
    let model = if model.has_adapters() {
        merged = model.clone().merged();
        &merged
    } else {
        model
    };
    std::fs::create_dir_all(folder).map_err(ModelError::io(folder))?;
    let sums = folder.join(integrity::SUMS_FILE);
    if sums.exists() {
        std::fs::remove_file(&sums).map_err(ModelError::io(&sums))?;
    }
    let weights_tmp = folder.join("model.whole.tmp");
    let mut store = SafetensorsStore::from_file(&weights_tmp)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .overwrite(true)
        .metadata("format", "pt");
    model
        .save_into(&mut store)
        .map_err(|e| ModelError::Corrupt {
            path: weights_tmp.clone(),
            message: format!("cannot write safetensors: {e}"),
        })?;
    let mut files = weights_file::write_weights(&weights_tmp, folder, dtype, max_shard_bytes)?;
    let text = serde_json::to_string_pretty(&model.config().to_json()).unwrap_or_default();
    integrity::write_atomic(&folder.join("config.json"), text.as_bytes())?;
    files.insert(0, "config.json".to_string());
    integrity::seal(folder, &files)?;
    Ok(files)
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

/// Whether `path` names a llama.cpp GGUF file (by its `.gguf` extension), which [`load`] reads
/// as a Llama model and whose tokenizer `ropo-data` builds from the same file.
pub fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"))
}

/// The configuration of the checkpoint at `path` (read from its `config.json`, or a GGUF
/// file's metadata, without loading any weight); `None` for a llama2.c `.bin`, whose header
/// [`load`] reads.
pub fn config_of(path: &Path) -> Result<Option<ModelConfig>, ModelError> {
    if peft::is_adapter(path) {
        return Err(peft::not_a_model(path));
    }
    if path.extension().is_some_and(|ext| ext == "bin") {
        return Ok(None);
    }
    if is_gguf(path) {
        return gguf::config_of(path).map(Some);
    }
    let folder = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    ModelConfig::from_file(&folder.join("config.json")).map(Some)
}

/// The type `path`'s weights are stored in (a checkpoint [`load`] accepts; a llama2.c `.bin`
/// holds f32; a GGUF file f16 or bf16 where all its matrices are, else f32, since de-quantised
/// values need it), so that a trained model can be saved as its input came.
pub fn stored_dtype(path: &Path) -> Result<SaveDtype, ModelError> {
    if peft::is_adapter(path) {
        return Err(peft::not_a_model(path));
    }
    if path.extension().is_some_and(|ext| ext == "bin") {
        return Ok(SaveDtype::F32);
    }
    if is_gguf(path) {
        return gguf::stored_dtype(path);
    }
    let files = if path.is_dir() {
        weight_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    match files.first() {
        Some(first) => weights_file::stored_dtype(first),
        None => Ok(SaveDtype::F32),
    }
}

/// The safetensors files of a checkpoint folder: the shards its index lists, or the one file.
fn weight_files(folder: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let index = folder.join("model.safetensors.index.json");
    if index.exists() {
        let text = crate::text_file::read_settings(&index)?;
        let parsed: ShardIndex = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: index.clone(),
            message: e.to_string(),
        })?;
        let shards: BTreeSet<&String> = parsed.weight_map.values().collect();
        if shards.is_empty() {
            return Err(ModelError::Config {
                path: index,
                message: "weight_map maps no tensors to a file".into(),
            });
        }
        if let Some(outside) = shards.iter().find(|name| !is_plain_file_name(name)) {
            return Err(ModelError::Config {
                path: index,
                message: format!(
                    "weight_map names {outside:?}; shards must be files in the index's own folder"
                ),
            });
        }
        return Ok(shards.into_iter().map(|name| folder.join(name)).collect());
    }
    let single = folder.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(ModelError::Io {
        path: folder.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no model.safetensors or model.safetensors.index.json in this folder",
        ),
    })
}

/// Whether `name` is one file name (no folder part, not `.` or `..`), so that joining it to a
/// folder stays inside that folder.
fn is_plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    )
}

/// Loads every file into `model`, renamed by its family's
/// [`FamilyConfig::key_remapping`](crate::family::FamilyConfig::key_remapping), and fails, naming the tensors, unless each parameter was
/// found with the right shape and nothing unexpected was left over.
fn apply_weights<B: Backend>(
    model: &mut CausalLm<B>,
    files: &[PathBuf],
    checkpoint: &Path,
) -> Result<(), ModelError> {
    let mut report = WeightReport::new(model);
    // The patterns are constants of this crate, so a failure here is a bug, not bad input.
    let remapper =
        KeyRemapper::from_patterns(model.family().family_config().key_remapping().to_vec())
            .expect("key_remapping patterns are valid regexes");
    for file in files {
        if !file.exists() {
            return Err(ModelError::io(file)(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "weights file not found",
            )));
        }
        let mut store = SafetensorsStore::from_file(file)
            .with_from_adapter(PyTorchToBurnAdapter.chain(UpcastToF32))
            .remap(remapper.clone())
            .skip_enum_variants(true)
            .allow_partial(true)
            .validate(false);
        let result = model
            .load_from(&mut store)
            .map_err(|e| ModelError::Corrupt {
                path: file.clone(),
                message: format!("not a readable safetensors file: {e}"),
            })?;
        report.add(result);
    }
    report.finish(checkpoint)
}

/// Casts f16/bf16 (or f64) tensors to f32 as they are read, so every model computes in f32.
#[derive(Debug, Clone, Copy)]
struct UpcastToF32;

impl ModuleAdapter for UpcastToF32 {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        if snapshot.dtype == DType::F32 {
            return snapshot.clone();
        }
        let read = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            Rc::new(move || read().map(|data| data.convert::<f32>())),
            DType::F32,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}
