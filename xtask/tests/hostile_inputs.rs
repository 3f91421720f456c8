//! Hostile inputs made at test time (a gzip of zeros, `/dev/zero`, configs whose sizes ask for
//! petabytes, shard indexes that point outside their folder, NaN weights, outputs over the
//! input or a folder, a second run into one folder): each must end in one `error: …` line that
//! names the input, with a non-zero exit, within 10 s and under a 1 GiB address-space limit.

// Each test binary uses a part of the shared helpers.
#[allow(dead_code)]
mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{scratch, TINY};

/// The address space each command may use (`RLIMIT_AS`).
const MEMORY_LIMIT: u64 = 1 << 30;

/// How long each command may take.
const TIME_LIMIT: Duration = Duration::from_secs(10);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs xtask with `args` from the workspace root under the limits, and returns its stderr
/// after checking it failed with one error line holding each of `expected`.
fn refused(args: &[&str], expected: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: MEMORY_LIMIT,
                rlim_max: MEMORY_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let start = Instant::now();
    let mut child = command.spawn().expect("xtask starts");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            panic!("{args:?}: still running after {} s", TIME_LIMIT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{args:?} succeeded; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error: "),
        "{args:?}: not one error line: {stderr}"
    );
    for needle in expected {
        assert!(
            stderr.contains(needle),
            "{args:?}: lacks {needle:?}: {stderr}"
        );
    }
    stderr
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn datasets_without_line_breaks_are_refused_in_bounded_memory() {
    let dir = scratch("data");
    let zeros = dir.join("zeros.jsonl.gz");
    // 64 MiB of NUL bytes in 64 KiB: one endless line once decompressed.
    std::fs::write(&zeros, gzip(&vec![0u8; 64 << 20])).unwrap();
    let long = dir.join("long.jsonl");
    let text = "x".repeat(2 << 20);
    std::fs::write(
        &long,
        format!("{{\"prompt\": \"p\", \"chosen\": \"{text}\", \"rejected\": \"r\"}}\n"),
    )
    .unwrap();
    for file in [zeros.as_path(), long.as_path(), Path::new("/dev/zero")] {
        let name = path_str(file);
        refused(
            &["data", "inspect", name],
            &[name, "line 1", "longer than 1048576 bytes"],
        );
    }
    // Millions of valid records (100 MB from a gzip of a few MB): reading stops at the
    // default record limit, and at a lowered byte limit.
    let record = r#"{"prompt": "p", "chosen": "c", "rejected": "r"}"#;
    let many = dir.join("many.jsonl.gz");
    let records = format!("{record}\n").repeat(2 << 20);
    std::fs::write(&many, gzip(records.as_bytes())).unwrap();
    let name = path_str(&many);
    refused(
        &["data", "inspect", name],
        &[name, "line 1000001", "more than 1000000 records"],
    );
    refused(
        &["data", "inspect", name, "--max-total-bytes", "10000000"],
        &[name, "more than 10000000 bytes read in all"],
    );
}

#[test]
fn configs_that_would_exhaust_memory_are_refused_with_the_estimate() {
    let dir = scratch("configs");
    let out = dir.join("run");
    refused(
        &["train", "--config", "/dev/zero", "--out", path_str(&out)],
        &["/dev/zero", "larger than 16 MiB"],
    );
    let model = "[model]\nhidden = 32\nlayers = 2\nheads = 4\nintermediate = 64\n";
    let task = "[task]\nsymbols = 8\nlength = 4\nsft_quality = 0.5\n";
    let edited = |from: &str, to: &str| {
        assert!(TINY.contains(from), "{from}");
        TINY.replace(from, to)
    };
    for (name, toml, expected) in [
        (
            "examples",
            edited("examples = 256", "examples = 1000000000000"),
            "sequences",
        ),
        (
            "hidden",
            format!("{TINY}{}", model.replace("32", "1099511627776")),
            "parameters",
        ),
        (
            "length",
            format!("{TINY}{}", task.replace("4", "1000000000")),
            "sequences",
        ),
        (
            "steps",
            edited("steps = 10", "steps = 0"),
            "preference.steps",
        ),
        (
            "warmup",
            edited("warmup = 2", "warmup = 10"),
            "preference.warmup",
        ),
        (
            "batch",
            edited("batch = 16", "batch = 1000000000"),
            "preference.batch",
        ),
        (
            "keep",
            format!("keep_checkpoints = 0\n{TINY}"),
            "keep_checkpoints",
        ),
        (
            "losses",
            edited(r#"["sigmoid", "ropo"]"#, r#"["ropo", "ropo"]"#),
            "named twice",
        ),
        ("noise", edited("[0.0, 0.2]", "[0.2, 0.2]"), "named twice"),
    ] {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, toml).unwrap();
        let config = path_str(&config);
        refused(
            &["train", "--config", config, "--out", path_str(&out)],
            &[config, expected],
        );
    }
}

/// A copy of the tiny Llama fixture in `dir/name` with `edit` applied to its `config.json`.
fn model_with_config(dir: &Path, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let fixture = root().join("tests/fixtures/tiny_llama");
    let model = dir.join(name);
    std::fs::create_dir_all(&model).unwrap();
    for file in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture.join(file), model.join(file)).unwrap();
    }
    let text = std::fs::read_to_string(fixture.join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut config);
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    model
}

fn score(model: &Path, expected: &[&str]) {
    let name = path_str(model);
    let args = [
        "score",
        "--model",
        name,
        "--prompt",
        "a",
        "--response",
        " b",
    ];
    refused(&args, &[&[name][..], expected].concat());
}

#[test]
fn model_configs_and_indexes_that_cannot_load_are_errors_not_aborts() {
    let dir = scratch("models");
    let layers = model_with_config(&dir, "layers", |c| {
        c["num_hidden_layers"] = (1u64 << 40).into()
    });
    score(&layers, &["config.json", "parameters", "GiB"]);
    let eps = model_with_config(&dir, "eps", |c| c["rms_norm_eps"] = (-1.0).into());
    score(
        &eps,
        &["config.json", "rms_norm_eps (-1) must be a positive number"],
    );
    let gpt2 = model_with_config(&dir, "gpt2", |c| {
        *c = serde_json::json!({"model_type": "gpt2", "vocab_size": 32, "n_positions": 16,
            "n_embd": 0, "n_layer": 1, "n_head": 1});
    });
    score(&gpt2, &["config.json", "n_embd must be > 0"]);
    for (name, map) in [
        ("index_empty", serde_json::json!({})),
        (
            "index_outside",
            serde_json::json!({"lm_head.weight": "../../../../etc/hostname"}),
        ),
    ] {
        let model = model_with_config(&dir, name, |_| {});
        std::fs::remove_file(model.join("model.safetensors")).unwrap();
        let index = serde_json::json!({ "weight_map": map });
        std::fs::write(
            model.join("model.safetensors.index.json"),
            index.to_string(),
        )
        .unwrap();
        let expected = if name == "index_empty" {
            "maps no tensors"
        } else {
            "own folder"
        };
        score(&model, &["model.safetensors.index.json", expected]);
    }
}

#[test]
fn non_finite_weights_give_an_error_not_null_or_garbage() {
    let dir = scratch("nan");
    let model = model_with_config(&dir, "nan", |_| {});
    let weights = model.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let norm = &header["model.norm.weight"];
    assert_eq!(norm["dtype"], "F32");
    let [start, end] = [0, 1].map(|i| norm["data_offsets"][i].as_u64().unwrap() as usize);
    for offset in (8 + header_len + start..8 + header_len + end).step_by(4) {
        bytes[offset..offset + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(&weights, bytes).unwrap();
    score(&model, &["not finite"]);
    let name = path_str(&model);
    refused(
        &[
            "generate",
            "--model",
            name,
            "--prompt",
            "a",
            "--max-tokens",
            "4",
        ],
        &["not finite", "new token 1"],
    );
}

#[test]
fn a_noisy_copy_never_replaces_its_input_or_something_that_is_not_a_file() {
    let dir = scratch("noise");
    let input = dir.join("pairs.jsonl");
    std::fs::copy(root().join("tests/fixtures/tiny_pairs.jsonl"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let name = path_str(&input);
    let noise = |out: &str| ["data", "noise", name, "--rate", "0.2", "-o", out].map(String::from);
    let args = noise(name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&args, &[name, "is the input"]);
    let folder = dir.join("a-folder");
    std::fs::create_dir_all(&folder).unwrap();
    let args = noise(path_str(&folder));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&args, &[path_str(&folder), "not a regular file"]);
    assert!(folder.is_dir());
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

#[test]
fn inputs_once_silently_accepted_are_refused_or_read_as_meant() {
    let dir = scratch("silent");
    let record = r#"{"prompt": "p", "chosen": "c", "rejected": "r"}"#;
    let twice = dir.join("twice.jsonl");
    let text = r#"{"prompt": "p", "chosen": "c", "chosen": "d", "rejected": "r"}"#;
    std::fs::write(&twice, format!("{record}\n{text}\n")).unwrap();
    let twice = path_str(&twice);
    refused(
        &["data", "inspect", twice],
        &[twice, "line 2", r#"key "chosen" given twice"#],
    );
    let blank = dir.join("blank.jsonl");
    let text = r#"{"prompt": "p", "chosen": "  \n ", "rejected": "r"}"#;
    std::fs::write(&blank, format!("{record}\n{text}\n")).unwrap();
    let blank = path_str(&blank);
    refused(
        &["data", "inspect", blank, "--reject-degenerate"],
        &[
            blank,
            "line 2",
            r#"field "chosen": a response of whitespace only"#,
        ],
    );
    let listed = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["data", "inspect", blank])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        stdout.contains("a response of whitespace only (kept): 1 (line 2)"),
        "{stdout}"
    );
    let bom = dir.join("bom.jsonl");
    std::fs::write(&bom, format!("\u{feff}{record}\n")).unwrap();
    let inspected = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["data", "inspect", path_str(&bom)])
        .output()
        .unwrap();
    assert!(
        inspected.status.success(),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );

    let out = dir.join("run");
    refused(
        &["train", "--stop-after-steps", "0", "--out", path_str(&out)],
        &["--stop-after-steps: must be at least 1"],
    );
    let tiny = dir.join("tiny.toml");
    std::fs::write(&tiny, TINY).unwrap();
    for (flag, value, expected) in [
        ("--noise", "0.7", "--noise: rate 0.7"),
        ("--losses", "kto", "--losses: unknown loss 'kto'"),
    ] {
        let args = [
            "train",
            "--config",
            path_str(&tiny),
            flag,
            value,
            "--out",
            path_str(&out),
        ];
        let stderr = refused(&args, &[expected]);
        assert!(!stderr.contains("tiny.toml"), "blames the config: {stderr}");
    }
    let model = root().join("tests/fixtures/tiny_llama");
    let data = root().join("tests/fixtures/tiny_pairs.jsonl");
    let trainer = [
        "train",
        "--model",
        path_str(&model),
        "--data",
        path_str(&data),
    ];
    for (flags, expected) in [
        (
            ["--steps", "5", "--warmup", "5"],
            "warmup (5) must be below steps (5)",
        ),
        (
            ["--steps", "5", "--batch", "1000"],
            "batch (1000) must not exceed the 48",
        ),
    ] {
        let args = [&trainer[..], &flags[..], &["--out", path_str(&out)]].concat();
        refused(&args, &[expected]);
    }
    let config = dir.join("long-loss.toml");
    let name = "x".repeat(1 << 20);
    std::fs::write(
        &config,
        TINY.replace(r#""sigmoid", "ropo""#, &format!("{name:?}")),
    )
    .unwrap();
    let stderr = refused(
        &[
            "train",
            "--config",
            path_str(&config),
            "--out",
            path_str(&out),
        ],
        &["unknown loss", "more characters"],
    );
    assert!(stderr.len() < 1000, "{} bytes of error", stderr.len());
}

#[test]
fn full_fine_tuning_that_cannot_fit_is_refused_before_loading_with_the_estimate() {
    let dir = scratch("train-size");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let available_kib: u128 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // Llama blocks of d = 4096 and 11,008 intermediate: 202,383,360 weights each. Enough of
    // them for about available / 8 bytes of weights: f32 weights fit (LoRA), and four times
    // that (weights, gradients, two AdamW moments) does not.
    let target = available_kib * 1024 / 8;
    let layers = (target / 202_383_360).max(1) as u64;
    let model = model_with_config(&dir, "big", |c| {
        c["hidden_size"] = 4096.into();
        c["intermediate_size"] = 11008.into();
        c["num_attention_heads"] = 32.into();
        c["num_key_value_heads"] = 32.into();
        c["num_hidden_layers"] = layers.into();
    });
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    let data = root().join("tests/fixtures/tiny_pairs.jsonl");
    let (model, data) = (path_str(&model), path_str(&data));
    let (out, lora_out) = (dir.join("run"), dir.join("lora"));
    let args = [
        "train",
        "--model",
        model,
        "--data",
        data,
        "--template",
        "plain",
    ];
    let full = [&args[..], &["--out", path_str(&out)]].concat();
    refused(&full, &[model, "gradients and AdamW's two moments", "GiB"]);
    // With LoRA only the f32 weights count: the check passes, and the run goes on to find
    // that this folder holds none.
    let lora = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .args(["--lora-rank", "8", "--out", path_str(&lora_out)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&lora.stderr);
    assert!(!lora.status.success());
    assert!(
        stderr.contains("no model.safetensors") && !stderr.contains("AdamW"),
        "{stderr}"
    );
}
