//! What the benchmarks share: the PyTorch reference scripts run as subprocesses, and a model
//! folder opened with its weights or from its `config.json` alone.

use std::path::Path;

use ropo::models::{attention::AttentionBackend, checkpoint, config::ModelConfig, CausalLm};

/// Runs the PyTorch reference `script` with `args` under `$ROPO_PYTHON` (else `python3`) and
/// parses the one JSON line it prints.
pub fn run_python_bench(
    script: &str,
    args: &[String],
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let python = std::env::var("ROPO_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = std::process::Command::new(&python)
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| {
            format!("cannot run {python}: {e} (set ROPO_PYTHON to a Python with torch)")
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("no message");
        return Err(format!("{script} failed: {last}").into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The model in folder `dir`: its checkpoint, or random weights when the folder holds
/// `config.json` alone.
pub fn model_or_config<B: AttentionBackend>(
    dir: &Path,
    device: &B::Device,
) -> Result<CausalLm<B>, Box<dyn std::error::Error>> {
    let has_weights = !dir.is_dir()
        || std::fs::read_dir(dir)?
            .flatten()
            .any(|entry| entry.path().extension().is_some_and(|e| e == "safetensors"));
    if has_weights {
        Ok(checkpoint::load::<B>(dir, device)?)
    } else {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        Ok(config.init::<B>(device))
    }
}

/// The last component of `path`, to name its rows.
pub fn folder_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
