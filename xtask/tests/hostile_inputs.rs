//! Hostile inputs made at test time (a gzip of zeros, `/dev/zero`, configs whose sizes ask for
//! petabytes, shard indexes that point outside their folder, NaN weights, outputs over the
//! input or a folder, a second run into one folder): each must end in one `error: …` line that
//! names the input, with a non-zero exit, within 10 s and under a 1 GiB address-space limit.
//! The trainer's run folder (issue 37, items 5–9): `--overwrite` in a folder ropo did not make,
//! `--out` at the input or at `/`, a run that diverges, LoRA ranks and batches no run can
//! take, and an export killed half-way; each ends within 60 s, writes nothing outside its run
//! folder and removes no file of the user's. A hostile Hub (issue 37, items 1–3: paths in its
//! answers, silence, bodies without end) and chat templates without bound (item 4) end the
//! same way, nothing written outside the cache.

// Each test binary uses a part of the shared helpers.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{scratch, TINY};

/// The address space each command may use (`RLIMIT_AS`).
const MEMORY_LIMIT: u64 = 1 << 30;

/// How long each command may take.
const TIME_LIMIT: Duration = Duration::from_secs(10);

/// How long a trainer run on the tiny fixtures may take.
const TRAIN_LIMIT: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs xtask with `args` from the workspace root under the limits, and returns its stderr
/// after checking it failed with one error line holding each of `expected`.
fn refused(args: &[&str], expected: &[&str]) -> String {
    let (status, stderr) = run_limited(args, TIME_LIMIT);
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

/// Runs xtask with `args` as [`refused`] does, within [`TRAIN_LIMIT`], for a command that
/// stops part-way (after the trainer's lines saying what it will do): it must fail, its last
/// line must be its one `error: …` line, holding each of `expected`, and no line a panic.
fn stops(args: &[&str], expected: &[&str]) -> String {
    let (status, stderr) = run_limited(args, TRAIN_LIMIT);
    assert!(!status.success(), "{args:?} succeeded; stderr: {stderr}");
    let errors = stderr.lines().filter(|l| l.starts_with("error")).count();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        errors == 1 && last.starts_with("error: ") && !stderr.contains("panicked"),
        "{args:?}: not one error line at the end: {stderr}"
    );
    for needle in expected {
        assert!(
            last.contains(needle),
            "{args:?}: lacks {needle:?}: {stderr}"
        );
    }
    last.to_string()
}

/// Runs xtask with `args` under the limits within [`TRAIN_LIMIT`], which must succeed.
fn succeeds(args: &[&str]) {
    let (status, stderr) = run_limited(args, TRAIN_LIMIT);
    assert!(status.success(), "{args:?} failed: {stderr}");
}

/// Starts xtask with `args` from the workspace root under the memory limit, its stderr piped.
fn spawn_limited(args: &[&str]) -> Child {
    limited(args).spawn().expect("xtask starts")
}

/// xtask with `args` from the workspace root, its address space limited to [`MEMORY_LIMIT`],
/// its stderr piped.
fn limited(args: &[&str]) -> Command {
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
    command
}

/// Runs xtask with `args` under the memory limit, killing it past `limit`: its exit status
/// and stderr.
fn run_limited(args: &[&str], limit: Duration) -> (ExitStatus, String) {
    run_until(limited(args), args, limit)
}

/// Runs `command` (xtask with `args`), killing it past `limit`: its exit status and stderr.
fn run_until(mut command: Command, args: &[&str], limit: Duration) -> (ExitStatus, String) {
    let start = Instant::now();
    let mut child = command.spawn().expect("xtask starts");
    // Read as it comes, so that a long stderr never blocks the child.
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut text).unwrap();
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{args:?}: still running after {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap())
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

/// A Llama `config.json` (no weights) in `dir/big` whose f32 weights take about half of this
/// machine's `MemAvailable`: they fit, and four times them (full fine-tuning) do not.
fn model_half_the_memory(dir: &Path) -> PathBuf {
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
    let model = model_with_config(dir, "big", |c| {
        c["hidden_size"] = 4096.into();
        c["intermediate_size"] = 11008.into();
        c["num_attention_heads"] = 32.into();
        c["num_key_value_heads"] = 32.into();
        c["head_dim"] = 128.into();
        c["num_hidden_layers"] = layers.into();
    });
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    model
}

#[test]
fn full_fine_tuning_that_cannot_fit_is_refused_before_loading_with_the_estimate() {
    let dir = scratch("train-size");
    let model = model_half_the_memory(&dir);
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

/// The tiny Llama fixture and pairs, as the trainer's flags, with `extra` after them.
fn trainer_args(model: &Path, extra: &[&str]) -> Vec<String> {
    let data = root().join("tests/fixtures/tiny_pairs.jsonl");
    let mut args: Vec<String> = ["train", "--quiet", "--model", path_str(model), "--data"]
        .map(String::from)
        .to_vec();
    args.push(path_str(&data).into());
    for arg in ["--template", "plain", "--max-length", "32"]
        .iter()
        .chain(extra)
    {
        args.push(arg.to_string());
    }
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A copy of the tiny Llama fixture in `dir/name`.
fn tiny_model(dir: &Path, name: &str) -> PathBuf {
    model_with_config(dir, name, |_| {})
}

/// Every file and folder under `dir` (not following links) with its content (empty for a
/// folder): what a test compares to show that nothing was written or removed.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_dir() {
                pending.push(path.clone());
                Vec::new()
            } else if meta.is_symlink() {
                std::fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                std::fs::read(&path).unwrap()
            };
            found.insert(path.strip_prefix(dir).unwrap().to_path_buf(), content);
        }
    }
    found
}

/// Names of the entries of `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn overwrite_clears_only_what_ropo_wrote_and_only_in_a_run_folder_ropo_made() {
    let dir = scratch("overwrite");
    let model = tiny_model(&dir, "model");
    // A project whose config.toml is its own, with sources and documents named as ropo's
    // files are: not a run folder, whatever it holds.
    let project = dir.join("project");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::create_dir_all(project.join("model")).unwrap();
    for (file, text) in [
        ("config.toml", "[package]\nname = \"mine\"\n"),
        ("src/main.rs", "fn main() {}\n"),
        ("report.md", "# my report\n"),
        ("metrics.jsonl", "{}\n"),
        ("model/weights.bin", "mine"),
    ] {
        std::fs::write(project.join(file), text).unwrap();
    }
    let before = tree(&dir);
    let args = trainer_args(
        &model,
        &["--steps", "1", "--out", path_str(&project), "--overwrite"],
    );
    refused(
        &strs(&args),
        &[
            "--overwrite clears only a run folder ropo made",
            "not a ropo trainer",
        ],
    );
    // A trainer config kept in the project is a ropo config, but ropo made no run here.
    let config = format!("model = {:?}\nlr = 1e-5\n", path_str(&model));
    std::fs::write(project.join("config.toml"), &config).unwrap();
    let before_config = tree(&dir);
    refused(&strs(&args), &["holds no environment.json that ropo wrote"]);
    assert_eq!(tree(&dir), before_config, "the project changed");
    std::fs::write(project.join("config.toml"), "[package]\nname = \"mine\"\n").unwrap();
    assert_eq!(tree(&dir), before, "the project changed");

    // A run folder ropo made, where the user keeps notes, a plot and the data beside the run,
    // and an interrupted export and write were left behind.
    let run = dir.join("run");
    succeeds(&strs(&trainer_args(
        &model,
        &["--steps", "1", "--out", path_str(&run)],
    )));
    std::fs::create_dir_all(run.join("data")).unwrap();
    std::fs::create_dir_all(run.join(".tmp-model")).unwrap();
    let data = run.join("data/pairs.jsonl");
    std::fs::copy(root().join("tests/fixtures/tiny_pairs.jsonl"), &data).unwrap();
    for (file, text) in [
        ("notes.txt", "mine"),
        ("mine.svg", "<svg/>"),
        (".tmp-model/model.safetensors", "half"),
        ("metrics.tmp", "half"),
    ] {
        std::fs::write(run.join(file), text).unwrap();
    }
    let kept = |tree: &BTreeMap<PathBuf, Vec<u8>>| -> Vec<(PathBuf, Vec<u8>)> {
        ["notes.txt", "mine.svg", "data", "data/pairs.jsonl"]
            .iter()
            .map(|name| {
                let path = Path::new("run").join(name);
                (path.clone(), tree[&path].clone())
            })
            .collect()
    };
    let user_files = kept(&tree(&dir));
    let mut args = trainer_args(
        &model,
        &["--steps", "1", "--out", path_str(&run), "--overwrite"],
    );
    args[5] = path_str(&data).into();
    succeeds(&strs(&args));
    assert_eq!(
        kept(&tree(&dir)),
        user_files,
        "a file of the user's changed"
    );
    assert!(!run.join(".tmp-model").exists() && !run.join("metrics.tmp").exists());
    assert!(run.join("model/SHA256SUMS").is_file());
    assert_eq!(names_in(&dir), ["model", "project", "run"]);

    // The input inside what --overwrite would remove: refused, nothing removed.
    let inside = run.join("model");
    let before = tree(&dir);
    let args = trainer_args(
        &inside,
        &["--steps", "1", "--out", path_str(&run), "--overwrite"],
    );
    refused(
        &strs(&args),
        &["would remove", "holds the input", "nothing was removed"],
    );
    assert_eq!(tree(&dir), before);
}

#[test]
fn a_folder_that_is_refused_is_left_without_a_lock_file() {
    let dir = scratch("refused-lock");
    let model = tiny_model(&dir, "model");
    let link = dir.join("out-link");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("notes.txt"), "mine").unwrap();
    let before = tree(&dir);
    for extra in [&[][..], &["--overwrite"][..]] {
        let out = [&["--steps", "1", "--out", path_str(&link)][..], extra].concat();
        refused(
            &strs(&trainer_args(&model, &out)),
            &["is the input", path_str(&model)],
        );
        let out = [&["--steps", "1", "--out", path_str(&docs)][..], extra].concat();
        refused(
            &strs(&trainer_args(&model, &out)),
            &[path_str(&docs), "notes.txt"],
        );
    }
    assert_eq!(
        tree(&dir),
        before,
        "a refused run wrote or removed something"
    );
    let root_lock = Path::new("/.lock");
    let had_lock = root_lock.exists();
    for extra in [&[][..], &["--overwrite"][..]] {
        let out = [&["--steps", "1", "--out", "/"][..], extra].concat();
        refused(&strs(&trainer_args(&model, &out)), &["/: "]);
    }
    assert_eq!(root_lock.exists(), had_lock, "a refused run left /.lock");
}

#[test]
fn a_diverging_run_stops_naming_the_step_and_exports_no_model() {
    let dir = scratch("diverge");
    let model = tiny_model(&dir, "model");
    let before = tree(&model);
    // One step at lr 1e10 leaves finite weights of about 1e10, whose forward overflows.
    let run = dir.join("run");
    let args = trainer_args(
        &model,
        &["--lr", "1e10", "--steps", "1", "--out", path_str(&run)],
    );
    stops(&strs(&args), &["step 1", "diverged", "without exporting"]);
    // Three: the next step's loss is not finite, and the run stops there.
    let longer = dir.join("longer");
    let args = trainer_args(
        &model,
        &["--lr", "1e10", "--steps", "3", "--out", path_str(&longer)],
    );
    stops(&strs(&args), &["step 2", "not finite"]);
    for run in [&run, &longer] {
        assert!(!run.join("model").exists() && !run.join(".tmp-model").exists());
    }
    assert_eq!(names_in(&dir), ["longer", "model", "run"]);
    assert_eq!(tree(&model), before);
}

#[test]
fn lora_ranks_the_model_cannot_take_and_zero_batches_are_one_line_errors() {
    let dir = scratch("lora-batch");
    let model = tiny_model(&dir, "model");
    let out = dir.join("run");
    let out = path_str(&out);
    // 10^9 columns of each adapter would be a 128 GB allocation: refused from config.json.
    let args = trainer_args(&model, &["--lora-rank", "1000000000", "--out", out]);
    refused(
        &strs(&args),
        &["--lora-rank", "q_proj (32 × 32)", "32 or less"],
    );
    let args = trainer_args(&model, &["--batch", "0", "--out", out]);
    let stderr = refused(&strs(&args), &["--batch: must be at least 1"]);
    assert!(!stderr.contains("give 1 to 0"), "{stderr}");
    let config = dir.join("zero-batch.toml");
    let data = root().join("tests/fixtures/tiny_pairs.jsonl");
    let text = format!(
        "model = {:?}\ndata = {:?}\ntemplate = \"plain\"\nbatch = 0\n",
        path_str(&model),
        path_str(&data)
    );
    std::fs::write(&config, text).unwrap();
    let config = path_str(&config);
    refused(
        &["train", "--config", config, "--out", out],
        &[config, "batch: must be at least 1"],
    );
    // Rank 4096 on a model whose f32 weights take half the memory: the adapters, their
    // gradients and AdamW's moments do not fit beside them (rank 8 does; see above).
    let big = model_half_the_memory(&dir);
    let args = trainer_args(&big, &["--lora-rank", "4096", "--out", out]);
    refused(&strs(&args), &["LoRA rank 4096 adds", "AdamW", "GiB"]);
    assert_eq!(names_in(&dir), ["big", "model", "zero-batch.toml"]);
}

#[test]
fn the_exported_model_appears_whole_under_its_name_or_not_at_all() {
    let dir = scratch("export");
    let model = tiny_model(&dir, "model");
    let run = dir.join("run");
    let args = trainer_args(
        &model,
        &[
            "--steps",
            "1",
            "--out",
            path_str(&run),
            "--fault",
            "pause:model",
        ],
    );
    let mut child = spawn_limited(&strs(&args));
    let stderr = child.stderr.take().unwrap();
    let (sender, paused) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let line = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.starts_with("fault: paused inside the write of"));
        let _ = sender.send(line);
    });
    let line = paused.recv_timeout(TRAIN_LIMIT);
    // SIGKILL with every file of the model written, before the rename.
    child.kill().unwrap();
    child.wait().unwrap();
    let line = line
        .expect("the export paused in time")
        .expect("the fault fired");
    let temporary = run.join(".tmp-model");
    assert!(line.ends_with(path_str(&temporary)), "{line}");
    assert!(temporary.join("model.safetensors").is_file());
    assert!(temporary.join("SHA256SUMS").is_file());
    assert!(
        !run.join("model").exists(),
        "a model folder before it was complete"
    );
    // The next run replaces the leftover and renames a complete folder into place.
    succeeds(&["train", "--quiet", "--resume", path_str(&run)]);
    assert!(!temporary.exists());
    assert!(run.join("model/SHA256SUMS").is_file());
    let exported = run.join("model");
    let name = path_str(&exported);
    succeeds(&[
        "score",
        "--model",
        name,
        "--prompt",
        "a",
        "--response",
        " b",
    ]);
    assert_eq!(names_in(&dir), ["model", "run"]);
}

/// `dir/name`: `tiny_chat`'s tokenizer with `template` as its `chat_template.jinja`.
fn tokenizer_with_template(dir: &Path, name: &str, template: &str) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(
            root().join("tests/fixtures/tiny_chat").join(file),
            folder.join(file),
        )
        .unwrap();
    }
    std::fs::write(folder.join("chat_template.jinja"), template).unwrap();
    folder
}

/// Conversational pairs (TRL's form: a list of messages as the prompt, one assistant message
/// per answer), which a model's chat template renders.
fn conversations(dir: &Path) -> PathBuf {
    let path = dir.join("conversations.jsonl");
    let line = |i: usize| {
        serde_json::json!({
            "prompt": [{"role": "user", "content": format!("what is the cat {i}")}],
            "chosen": [{"role": "assistant", "content": "the cat is nice"}],
            "rejected": [{"role": "assistant", "content": "the cat is bad"}],
        })
        .to_string()
    };
    let text: Vec<String> = (0..8).map(line).collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    path
}

#[test]
fn chat_templates_without_bound_stop_naming_their_file() {
    let dir = scratch("hostile-templates");
    let model = tiny_model(&dir, "model");
    let data = conversations(&dir);
    let cases = [
        (
            "loops",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "instructions",
        ),
        (
            "writes",
            "{% for i in range(100000) %}{{ 'y' * 100000 }}{% endfor %}",
            "16 MiB",
        ),
        (
            "recurses",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "recursion",
        ),
        (
            "repeats",
            "{% for i in [0] * 100000000 %}{{ i }}{% endfor %}",
            "instructions",
        ),
        (
            "raises",
            "{{ raise_exception('this template takes no conversations') }}",
            "8 of 8 were refused by the chat template (pair 1: ",
        ),
    ];
    for (name, template, expected) in cases {
        let tokenizer = tokenizer_with_template(&dir, name, template);
        let out = dir.join(format!("run-{name}"));
        let args = [
            "train",
            "--quiet",
            "--model",
            path_str(&model),
            "--tokenizer",
            path_str(&tokenizer),
            "--data",
            path_str(&data),
            "--max-length",
            "48",
            "--steps",
            "1",
            "--out",
            path_str(&out),
        ];
        let line = stops(&args, &[expected]);
        assert!(
            line.contains(path_str(&tokenizer.join("chat_template.jinja"))),
            "{name}: {line}"
        );
    }
}

/// The tiny Llama's files, served by a loopback Hub as `ropo-test/tiny` with `fault`.
fn hostile_hub(fault: ropo_hub::test_server::Fault) -> ropo_hub::test_server::HubServer {
    use ropo_hub::test_server::{HubServer, ServedRepo};
    let folder = root().join("tests/fixtures/tiny_llama");
    let files = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    let mut served = ServedRepo::new(ropo_hub::RepoKind::Model, "ropo-test/tiny", files);
    served.fault = fault;
    HubServer::start(vec![served])
}

/// Runs xtask with `args` as [`run_limited`] does, within [`TRAIN_LIMIT`], with the Hub's
/// variables set to `endpoint` and `cache` and timeouts of 2 s.
fn run_against_hub(args: &[&str], endpoint: &str, cache: &Path) -> (ExitStatus, String) {
    let mut command = limited(args);
    command
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_ETAG_TIMEOUT", "2")
        .env("HF_HUB_DOWNLOAD_TIMEOUT", "2")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE");
    run_until(command, args, TRAIN_LIMIT)
}

#[test]
fn a_hostile_hub_cannot_write_outside_the_cache_or_hang_a_run() {
    use ropo_hub::test_server::Fault;
    let dir = scratch("hostile-hub");
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let score = |fault: Fault, name: &str| {
        let server = hostile_hub(fault);
        let args = [
            "score",
            "--model",
            "ropo-test/tiny",
            "--prompt",
            "the cat",
            "--response",
            " is",
        ];
        run_against_hub(&args, server.endpoint(), &dir.join(name))
    };
    let cases = [
        (
            Fault::PathHeaders(path_str(&outside.join("etag")).to_owned()),
            None,
        ),
        (
            Fault::PathCommit(path_str(&outside.join("commit")).to_owned()),
            Some("sha"),
        ),
        (
            Fault::PathFile("../../outside/config.json".into()),
            Some("the file"),
        ),
        (
            Fault::PathBlob("../../outside/blob".into()),
            Some("the blob"),
        ),
        (Fault::Silent, Some("HF_HUB_ETAG_TIMEOUT")),
        (Fault::Stall, Some("HF_HUB_DOWNLOAD_TIMEOUT")),
        (Fault::Endless, None),
        (Fault::EndlessListing, Some("longer than 64 MiB")),
    ];
    for (i, (fault, expected)) in cases.into_iter().enumerate() {
        let shown = format!("{fault:?}");
        let (status, stderr) = score(fault, &format!("cache-{i}"));
        match expected {
            None => assert!(status.success(), "{shown}: {stderr}"),
            Some(expected) => {
                assert!(!status.success(), "{shown} succeeded: {stderr}");
                let lines: Vec<&str> = stderr.lines().collect();
                assert!(
                    lines.len() == 1
                        && lines[0].starts_with("error: ")
                        && lines[0].contains(expected),
                    "{shown}: not one error line with {expected:?}: {stderr}"
                );
            }
        }
        assert_eq!(
            names_in(&outside),
            Vec::<String>::new(),
            "{shown} wrote outside the cache"
        );
        let stray: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                let name = path.file_name().unwrap().to_str().unwrap();
                !(name.starts_with("cache-") || name == "outside")
            })
            .collect();
        assert_eq!(stray, Vec::<PathBuf>::new(), "{shown}");
    }
}
