//! The trainer runs the data-parallel and multi-node tests compare: the tiny Llama fixture
//! trained for 6 steps, and how far two runs' metrics and weights lie apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The largest difference allowed between N ranks and one: the ranks sum the same gradients
/// in another order (a weight's gradient is one product over a rank's rows, then the sum over
/// ranks), and each forward pads its share alone. Measured: weights within 1.2e-7 (N = 2 and
/// N = 4), metrics (the sharded evaluation's included) within 3.8e-7 and 4.8e-7.
pub const TOLERANCE: f64 = 1e-5;

/// The largest difference allowed between the weights of N ranks and of one after two filter
/// rounds (twice the steps, the second round's pairs picked by the first's losses). AdamW
/// divides each gradient by its running magnitude, so a weight whose gradient is mostly
/// rounding moves by a full step of either sign: the summation order's 1e-7 grows in the
/// weights while the model's outputs stay together (the metrics within 3.9e-7). Measured on the
/// tiny Llama, 2 nodes × 2 ranks: 3.9e-6 when each sequence had its own weight-gradient
/// product, 1.4e-5 with one product over a rank's rows.
pub const ROUNDS_WEIGHT_TOLERANCE: f64 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// `xtask train --model tiny_llama --data tiny_pairs.jsonl` with batches of 4 pairs, 6 steps,
/// a quarter of the pairs held out and evaluated every 3 steps, writing `out`, plus `extra`;
/// not started.
pub fn trainer_command(out: &Path, extra: &[&str]) -> Command {
    trainer_command_with(out, ("1e-3", "6"), extra)
}

/// [`trainer_command`] with its own learning rate and number of steps.
pub fn trainer_command_with(out: &Path, (lr, steps): (&str, &str), extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["train", "--quiet", "--model"])
        .arg(fixtures().join("tiny_llama"))
        .arg("--data")
        .arg(fixtures().join("tiny_pairs.jsonl"))
        .args(["--template", "plain", "--max-length", "32", "--batch", "4"])
        .args(["--lr", lr, "--steps", steps])
        .args(["--eval-split", "0.25", "--eval-every", "3"])
        .arg("--out")
        .arg(out)
        .args(extra);
    command
}

/// [`trainer_command`] run to its end.
pub fn trainer(out: &Path, extra: &[&str]) -> Output {
    trainer_command(out, extra).output().expect("xtask runs")
}

/// Every numeric field of each line of a run's `metrics.jsonl`.
fn metrics(run: &Path) -> Vec<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let record: BTreeMap<String, serde_json::Value> = serde_json::from_str(line).unwrap();
            record
                .into_iter()
                .filter_map(|(name, value)| Some((name, value.as_f64()?)))
                .collect()
        })
        .collect()
}

/// Every tensor of a float32 safetensors file, by name.
fn weights(run: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(run.join("model/model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    header
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, entry)| {
            assert_eq!(entry["dtype"], "F32", "{name}");
            let offsets = entry["data_offsets"].as_array().unwrap();
            let [start, end] = [0, 1].map(|i| offsets[i].as_u64().unwrap() as usize);
            let values = data[start..end]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, values)
        })
        .collect()
}

/// The largest difference between two runs' metrics (relative to the larger of 1 and the
/// value) and weights (absolute). `rewards/accuracies` counts margins above 0, so where both
/// runs' mean margin is 0 within the tolerance (step 1, policy = reference) float noise may
/// break the ties either way, and it is not compared there.
pub fn difference(a: &Path, b: &Path) -> (f64, f64) {
    let (ma, mb) = (metrics(a), metrics(b));
    assert_eq!(ma.len(), mb.len(), "the runs logged different lines");
    let mut metric = 0.0f64;
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
        let margin = |m: &BTreeMap<String, f64>| m.get("rewards/margins").map_or(1.0, |v| v.abs());
        let tied = margin(x).max(margin(y)) < TOLERANCE;
        for (name, value) in x {
            if tied && name == "rewards/accuracies" {
                continue;
            }
            metric = metric.max((value - y[name]).abs() / value.abs().max(1.0));
        }
    }
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
    let weight = wa
        .iter()
        .flat_map(|(name, x)| x.iter().zip(&wb[name]))
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max);
    (metric, weight)
}
