//! LoRA adapters as PEFT folders: `adapter_config.json` plus `adapter_model.safetensors`, the
//! layout `peft.PeftModel.from_pretrained(base, folder)` loads and `save_pretrained` writes.
//!
//! PEFT names each factor after the module path inside `PeftModel`
//! (`base_model.model.<path>.lora_A.weight`) and stores it as a PyTorch `nn.Linear` weight:
//! `lora_A` `[rank, d_in]` and `lora_B` `[d_out, rank]`, the transposes of burn's `A` and `B`.

use std::{collections::BTreeMap, path::Path};

use burn::tensor::{backend::Backend, Tensor, TensorData};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::{
    integrity,
    lora::{LoraAdapter, LoraConfig},
    CausalLm, ModelError,
};

/// The adapter's config file.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's weights file.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The fields of PEFT's `LoraConfig` that ropo writes and reads.
#[derive(Debug, Serialize, Deserialize)]
struct AdapterConfig {
    peft_type: String,
    task_type: Option<String>,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    target_modules: TargetModules,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default = "none")]
    bias: String,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    inference_mode: bool,
}

fn none() -> String {
    "none".into()
}

/// PEFT's `target_modules`: a list of module names, or one regular expression (not
/// supported here).
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum TargetModules {
    List(Vec<String>),
    Pattern(String),
}

/// PEFT's name of one factor of the adapter on module `path`.
fn tensor_name(path: &str, factor: &str) -> String {
    format!("base_model.model.{path}.lora_{factor}.weight")
}

/// A module's name within its layer (`self_attn.q_proj` of `model.layers.3.self_attn.q_proj`),
/// which PEFT matches against every layer's modules.
fn module_name(path: &str) -> String {
    let segments: Vec<&str> = path.split('.').collect();
    let layer = segments
        .iter()
        .position(|s| s.chars().all(|c| c.is_ascii_digit()))
        .map_or(0, |index| index + 1);
    segments[layer..].join(".")
}

/// Whether PEFT would adapt module `path` for target `name`: the whole path, or its end after
/// a dot.
fn matches(path: &str, name: &str) -> bool {
    path == name || path.ends_with(&format!(".{name}"))
}

/// Writes `model`'s adapters into `folder` as a PEFT adapter of the base at `base` (recorded as
/// `base_model_name_or_path`), with `config`'s rank, α and dropout. Each file is written under
/// a temporary name and renamed, and `SHA256SUMS` seals the two.
pub fn save_adapter<B: Backend>(
    model: &CausalLm<B>,
    config: &LoraConfig,
    base: &str,
    folder: &Path,
) -> Result<(), ModelError> {
    let adapters = model.adapters();
    if adapters.is_empty() {
        return Err(ModelError::InvalidInput(
            "the model has no LoRA adapters to save".into(),
        ));
    }
    std::fs::create_dir_all(folder).map_err(ModelError::io(folder))?;
    let mut tensors: BTreeMap<String, (Vec<u8>, Vec<usize>)> = BTreeMap::new();
    let mut modules = Vec::new();
    for (path, adapter) in &adapters {
        for (factor, value) in [("A", adapter.a.val()), ("B", adapter.b.val())] {
            let stored = value.transpose();
            let shape = stored.dims().to_vec();
            let bytes = stored
                .into_data()
                .iter::<f32>()
                .flat_map(f32::to_le_bytes)
                .collect();
            tensors.insert(tensor_name(path, factor), (bytes, shape));
        }
        let module = module_name(path);
        if !modules.contains(&module) {
            modules.push(module);
        }
    }
    let views = tensors
        .iter()
        .map(|(name, (bytes, shape))| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(folder, e))?;
    let weights = folder.join(WEIGHTS_FILE);
    let tmp = weights.with_extension("safetensors.tmp");
    let metadata = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| corrupt(&tmp, e))?;
    std::fs::rename(&tmp, &weights).map_err(ModelError::io(&weights))?;
    let adapter_config = AdapterConfig {
        peft_type: "LORA".into(),
        task_type: Some("CAUSAL_LM".into()),
        r: config.rank,
        lora_alpha: config.alpha,
        lora_dropout: config.dropout,
        target_modules: TargetModules::List(modules),
        fan_in_fan_out: model.family().family_config().fan_in_fan_out(),
        bias: none(),
        use_rslora: false,
        use_dora: false,
        base_model_name_or_path: Some(base.to_string()),
        inference_mode: true,
    };
    let text = serde_json::to_string_pretty(&adapter_config).unwrap_or_default();
    integrity::write_atomic(&folder.join(CONFIG_FILE), text.as_bytes())?;
    integrity::seal(folder, &[CONFIG_FILE.to_string(), WEIGHTS_FILE.to_string()])
}

/// Whether `path` is a PEFT adapter folder: it holds `adapter_config.json` and no model
/// `config.json`, so it is opened over its base ([`base_of`], [`load_adapter`]).
pub fn is_adapter(path: &Path) -> bool {
    path.is_dir() && path.join(CONFIG_FILE).is_file() && !path.join("config.json").is_file()
}

/// The base model the adapter in `folder` names in `base_model_name_or_path` (a path or a
/// Hub id, as written). An error naming the field where it is absent, null or empty.
pub fn base_of(folder: &Path) -> Result<String, ModelError> {
    let path = folder.join(CONFIG_FILE);
    let text = crate::text_file::read_settings(&path)?;
    let bad = |message: String| ModelError::Config {
        path: path.clone(),
        message,
    };
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    match config.get("base_model_name_or_path") {
        Some(serde_json::Value::String(base)) if !base.trim().is_empty() => Ok(base.clone()),
        _ => Err(bad(
            "base_model_name_or_path does not name the base model this adapter applies to; \
             set it to the base's folder or Hub id"
                .into(),
        )),
    }
}

/// The error for a PEFT adapter folder given where a whole model is wanted: it names the base
/// to give instead.
pub(crate) fn not_a_model(folder: &Path) -> ModelError {
    let base = base_of(folder).map_or_else(
        |_| "base_model_name_or_path is not set".to_owned(),
        |base| format!("base_model_name_or_path = {base:?}"),
    );
    ModelError::Config {
        path: folder.join(CONFIG_FILE),
        message: format!(
            "a PEFT adapter, not a model: give its base ({base}) as the model; `score` and \
             `generate` take the adapter folder and apply it"
        ),
    }
}

/// `model` (the base) with the PEFT adapter of `folder` attached: every module its
/// `target_modules` names gets the stored factors. Refuses what ropo cannot reproduce
/// (DoRA, rsLoRA, trained biases, a pattern for `target_modules`) and any missing, extra or
/// wrongly shaped tensor, naming it.
pub fn load_adapter<B: Backend>(
    model: CausalLm<B>,
    folder: &Path,
) -> Result<CausalLm<B>, ModelError> {
    let config_path = folder.join(CONFIG_FILE);
    let text = crate::text_file::read_settings(&config_path)?;
    let bad_config = |message: String| ModelError::Config {
        path: config_path.clone(),
        message,
    };
    let config: AdapterConfig =
        serde_json::from_str(&text).map_err(|e| bad_config(e.to_string()))?;
    if config.peft_type != "LORA" {
        return Err(bad_config(format!(
            "peft_type {} is not LORA",
            config.peft_type
        )));
    }
    if config.use_dora || config.use_rslora || config.bias != "none" {
        return Err(bad_config(
            "DoRA, rsLoRA and trained biases are not supported".into(),
        ));
    }
    let TargetModules::List(targets) = &config.target_modules else {
        return Err(bad_config(
            "target_modules as a regular expression is not supported; list the modules".into(),
        ));
    };
    let lora = LoraConfig {
        rank: config.r,
        alpha: config.lora_alpha,
        dropout: config.lora_dropout,
        targets: crate::lora::LoraTarget::ALL.to_vec(),
        seed: 0,
    };
    lora.validate().map_err(bad_config)?;
    let weights_path = folder.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights_path).map_err(ModelError::io(&weights_path))?;
    let stored = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(&weights_path, e))?;
    let mut wanted = Vec::new();
    let mut problems = Vec::new();
    let what = format!("the adapter's target_modules {targets:?}");
    let loaded = model.with_adapters(&what, |site, [d_in, d_out], device| {
        if !targets.iter().any(|name| matches(&site.path, name)) {
            return None;
        }
        let mut read = |factor: &str, shape: [usize; 2]| {
            let name = tensor_name(&site.path, factor);
            wanted.push(name.clone());
            match stored.tensor(&name) {
                Ok(view) if view.dtype() == Dtype::F32 && view.shape() == shape => {
                    let values: Vec<f32> = view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    let [rows, columns] = shape;
                    Some(Tensor::<B, 2>::from_data(
                        TensorData::new(transposed(&values, shape), [columns, rows]),
                        device,
                    ))
                }
                Ok(view) => {
                    problems.push(format!(
                        "{name} is {:?} {:?}, expected F32 {shape:?}",
                        view.dtype(),
                        view.shape()
                    ));
                    None
                }
                Err(_) => {
                    problems.push(format!("{name} is missing"));
                    None
                }
            }
        };
        let (a, b) = (read("A", [lora.rank, d_in]), read("B", [d_out, lora.rank]));
        Some(LoraAdapter::from_factors(
            a?,
            b?,
            lora.scale(),
            lora.dropout,
        ))
    });
    if wanted.is_empty() {
        // No module matched: the error names the targets.
        return loaded;
    }
    problems.extend(
        stored
            .names()
            .into_iter()
            .filter(|name| !wanted.iter().any(|w| w == name))
            .map(|name| format!("{name} is not an adapter of this model")),
    );
    if problems.is_empty() {
        loaded
    } else {
        problems.sort();
        Err(ModelError::Weights {
            path: weights_path,
            details: problems.join("; "),
        })
    }
}

/// A row-major `[rows, columns]` matrix as the row-major `[columns, rows]` one: PEFT's factor
/// laid out as burn's, contiguous like a freshly initialised adapter's, so that a loaded
/// adapter multiplies exactly as the one that was saved (a transposed view would be summed in
/// another order by the matrix product).
fn transposed(values: &[f32], [rows, columns]: [usize; 2]) -> Vec<f32> {
    (0..columns)
        .flat_map(|column| (0..rows).map(move |row| values[row * columns + column]))
        .collect()
}

fn corrupt(path: &Path, error: safetensors::SafeTensorError) -> ModelError {
    ModelError::Corrupt {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}
