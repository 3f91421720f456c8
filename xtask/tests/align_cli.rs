//! `cargo xtask train --model M --data D`, the trainer, on the tiny Llama fixture: the folder it
//! writes, resume after a stop giving byte-identical metrics and weights, suspect labels from
//! filter rounds, and flags that do not apply being refused.

mod common;

use common::{ok, scratch};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// `xtask train --model tiny_llama --data tiny_pairs.jsonl … EXTRA`, run to its end.
fn trainer(extra: &[&str]) -> Output {
    trainer_command(extra).output().expect("xtask runs")
}

/// The command of [`trainer`], to spawn.
fn trainer_command(extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["train", "--quiet", "--model"])
        .arg(fixtures().join("tiny_llama"))
        .arg("--data")
        .arg(fixtures().join("tiny_pairs.jsonl"))
        .args([
            "--template",
            "plain",
            "--max-length",
            "32",
            "--batch",
            "4",
            "--lr",
            "1e-3",
        ])
        .args(extra);
    command
}

/// `xtask train --quiet --resume FOLDER EXTRA…`, run to its end.
fn resume(folder: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--quiet", "--resume"])
        .arg(folder)
        .args(extra)
        .output()
        .expect("xtask runs")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs the trainer with `common` into `NAME/whole`, and again into `NAME/split` stopped after
/// 3 steps (no model exported yet) and then resumed: the two folders and the stopped run's
/// output.
fn whole_and_resumed(name: &str, common: &[&str]) -> (PathBuf, PathBuf, Output) {
    let dir = scratch(name);
    let (whole, split) = (dir.join("whole"), dir.join("split"));
    ok(&trainer(
        &[common, &["--out", whole.to_str().unwrap()]].concat(),
    ));
    let stopped = trainer(
        &[
            common,
            &["--out", split.to_str().unwrap(), "--stop-after-steps", "3"],
        ]
        .concat(),
    );
    ok(&stopped);
    assert!(
        !split.join("model").exists(),
        "the stopped run exported a model"
    );
    ok(&resume(&split, &[]));
    (whole, split, stopped)
}

#[test]
fn a_stopped_and_resumed_run_writes_the_same_metrics_and_weights_as_an_uninterrupted_one() {
    let common = ["--steps", "8", "--eval-split", "0.25", "--eval-every", "4"];
    let (whole, split, stopped) = whole_and_resumed("align-resume", &common);
    assert!(String::from_utf8_lossy(&stopped.stdout).contains("--resume"));
    for file in [
        "metrics.jsonl",
        "model/model.safetensors",
        "model/config.json",
    ] {
        let same = read(&whole.join(file)) == read(&split.join(file));
        assert!(same, "{file} differs between the whole and the resumed run");
    }
    let metrics = String::from_utf8(read(&whole.join("metrics.jsonl"))).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for name in [
        "loss",
        "learning_rate",
        "grad_norm",
        "epoch",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
    ] {
        assert!(first.get(name).is_some(), "metrics.jsonl lacks {name}");
    }
    assert_eq!(metrics.matches("\"eval_loss\"").count(), 2);
    assert_eq!(metrics.lines().count(), 8 + 2);
}

#[test]
fn a_stopped_and_resumed_lora_run_writes_the_same_adapter_as_an_uninterrupted_one() {
    let dir = scratch("align-lora");
    let (whole, split) = (dir.join("whole"), dir.join("split"));
    let common = ["--steps", "6", "--lora-rank", "4", "--save-adapter"];
    ok(&trainer(
        &[&common[..], &["--out", whole.to_str().unwrap()]].concat(),
    ));
    let stopped = &["--out", split.to_str().unwrap(), "--stop-after-steps", "3"];
    ok(&trainer(&[&common[..], stopped].concat()));
    let resumed = resume(&split, &[]);
    ok(&resumed);
    assert!(!whole.join("model/model.safetensors").exists());
    for file in [
        "metrics.jsonl",
        "model/adapter_model.safetensors",
        "model/adapter_config.json",
        "model/tokenizer.json",
    ] {
        let same = read(&whole.join(file)) == read(&split.join(file));
        assert!(same, "{file} differs between the whole and the resumed run");
    }
}

#[test]
fn a_run_shorter_than_an_epoch_scores_the_reference_per_batch_with_the_values_of_a_full_pass() {
    let dir = scratch("align-reference");
    let (short, epoch) = (dir.join("short"), dir.join("epoch"));
    let short_run = trainer(&["--steps", "2", "--out", short.to_str().unwrap()]);
    ok(&short_run);
    let epoch_run = trainer(&["--epochs", "1", "--out", epoch.to_str().unwrap()]);
    ok(&epoch_run);
    let per_batch = "computed batch by batch";
    assert!(String::from_utf8_lossy(&short_run.stderr).contains(per_batch));
    assert!(!String::from_utf8_lossy(&epoch_run.stderr).contains(per_batch));
    let first_step = |run: &Path| -> serde_json::Value {
        let text = String::from_utf8(read(&run.join("metrics.jsonl"))).unwrap();
        serde_json::from_str(text.lines().next().unwrap()).unwrap()
    };
    let (a, b) = (first_step(&short), first_step(&epoch));
    for key in [
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
    ] {
        let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
        assert!((x - y).abs() <= 1e-6, "{key}: per batch {x}, full pass {y}");
    }
}

#[test]
fn a_used_run_folder_is_refused_unless_resumed_or_overwritten() {
    let dir = scratch("align-folder");
    let out = dir.join("run");
    let out_arg = out.to_str().unwrap();
    ok(&trainer(&["--steps", "2", "--out", out_arg]));
    let again = trainer(&["--steps", "2", "--out", out_arg]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already holds")
            && stderr.contains("--resume")
            && stderr.contains("--overwrite"),
        "{stderr}"
    );
    ok(&trainer(&["--steps", "2", "--out", out_arg, "--overwrite"]));
    assert!(out.join("model").is_dir());

    let folder = dir.join("not-a-run");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), "mine").unwrap();
    let refused = trainer(&["--out", folder.to_str().unwrap(), "--overwrite"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no config.toml"));
    assert_eq!(std::fs::read(folder.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn a_folder_another_run_holds_is_refused_at_once() {
    let dir = scratch("align-lock");
    let out = dir.join("run");
    std::fs::create_dir_all(&out).unwrap();
    let lock = std::fs::File::create(out.join(".lock")).unwrap();
    lock.try_lock().unwrap();
    let second = trainer(&["--steps", "2", "--out", out.to_str().unwrap()]);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another ropo run is writing"), "{stderr}");
    drop(lock);
    ok(&trainer(&["--steps", "2", "--out", out.to_str().unwrap()]));
}

#[test]
fn resume_refuses_flags_that_change_the_stored_settings() {
    let dir = scratch("align-resume-flags");
    let out = dir.join("run");
    let stopped = [
        "--steps",
        "4",
        "--stop-after-steps",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    ok(&trainer(&stopped));
    let changed = resume(&out, &["--lr", "5e-4", "--batch", "4"]);
    assert!(!changed.status.success());
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert!(
        stderr.contains("lr = 0.0005 (the run has 0.001)") && !stderr.contains("batch ="),
        "{stderr}"
    );
    let same = resume(&out, &["--batch", "4"]);
    ok(&same);
}

#[test]
fn a_checkpoint_whose_sums_hold_but_whose_weights_do_not_load_is_set_aside() {
    let dir = scratch("align-empty-weights");
    let (whole, split) = (dir.join("whole"), dir.join("split"));
    let common = ["--steps", "6", "--save-every", "2"];
    ok(&trainer(
        &[&common[..], &["--out", whole.to_str().unwrap()]].concat(),
    ));
    let stopped = ["--out", split.to_str().unwrap(), "--stop-after-steps", "4"];
    ok(&trainer(&[&common[..], &stopped[..]].concat()));
    let checkpoint = split.join("checkpoints/step-000004");
    std::fs::write(checkpoint.join("model.mpk"), b"").unwrap();
    let sums = Command::new("sha256sum")
        .current_dir(&checkpoint)
        .args(["manifest.json", "model.mpk", "optimizer.mpk"])
        .output()
        .unwrap();
    assert!(sums.status.success());
    std::fs::write(checkpoint.join("SHA256SUMS"), sums.stdout).unwrap();
    let resumed = resume(&split, &[]);
    ok(&resumed);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("set step-000004 aside"),
        "{stderr}"
    );
    assert_eq!(
        read(&whole.join("metrics.jsonl")),
        read(&split.join("metrics.jsonl"))
    );
}

#[test]
fn max_shard_size_splits_the_exported_weights_as_transformers_does() {
    let dir = scratch("align-shards");
    let out = dir.join("run");
    let args = [
        "--steps",
        "2",
        "--max-shard-size",
        "40KB",
        "--out",
        out.to_str().unwrap(),
    ];
    ok(&trainer(&args));
    let model = out.join("model");
    assert!(model.join("model.safetensors.index.json").is_file());
    assert!(model.join("model-00001-of-00004.safetensors").is_file());
    assert!(!model.join("model.safetensors").exists());
    let bad = trainer(&[
        "--max-shard-size",
        "5XB",
        "--out",
        dir.join("bad").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown unit \"XB\""));
}

#[test]
fn a_run_killed_after_a_checkpoint_resumes_to_the_same_metrics_and_weights() {
    let dir = scratch("align-kill");
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    let common = ["--steps", "80", "--save-every", "5", "--eval-split", "0.25"];
    ok(&trainer(
        &[&common[..], &["--out", whole.to_str().unwrap()]].concat(),
    ));
    let mut child = trainer_command(&[&common[..], &["--out", killed.to_str().unwrap()]].concat())
        .spawn()
        .unwrap();
    let checkpointed = |out: &Path| {
        std::fs::read_dir(out.join("checkpoints"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("step-"))
    };
    let start = std::time::Instant::now();
    while !checkpointed(&killed)
        && child.try_wait().unwrap().is_none()
        && start.elapsed().as_secs() < 60
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SIGKILL: no chance to clean up, possibly in the middle of writing the next checkpoint.
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !killed.join("model").exists(),
        "the run ended before the kill"
    );
    let resumed = resume(&killed, &[]);
    ok(&resumed);
    for file in ["metrics.jsonl", "model/model.safetensors"] {
        let same = read(&whole.join(file)) == read(&killed.join(file));
        assert!(
            same,
            "{file} differs between the whole and the killed-and-resumed run"
        );
    }
}

#[test]
fn filter_rounds_write_every_dropped_pair_to_suspect_labels() {
    let dir = scratch("align-suspects");
    let out = dir.join("run");
    // One epoch: 12 steps of 4 pairs, so every pair is trained on, scored and filtered.
    ok(&trainer(&[
        "--filter-rounds",
        "2",
        "--filter-rho",
        "0.25",
        "--noise",
        "0.25",
        "--out",
        out.to_str().unwrap(),
    ]));
    let text = String::from_utf8(read(&out.join("suspect_labels.jsonl"))).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 48 pairs, a quarter dropped after each of the two filter rounds.
    assert_eq!(records.len(), 2 * 12);
    let data = std::fs::read_to_string(fixtures().join("tiny_pairs.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = data
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for record in &records {
        let index = record["index"].as_u64().unwrap() as usize;
        assert_eq!(record["record"], lines[index]);
        assert!(record["injected_flip"].is_boolean());
        assert!(record["loss"].as_f64().unwrap().is_finite());
        assert!([1, 2].contains(&record["round"].as_u64().unwrap()));
    }
}

#[test]
fn options_that_compare_methods_are_refused_by_the_trainer() {
    let dir = scratch("align-refused");
    for (extra, expected) in [
        (&["--losses", "sigmoid,ropo"][..], "--losses"),
        (&["--noise", "0.1,0.2"][..], "--noise"),
        (&["--noise-model", "bradley_terry"][..], "--noise-model"),
        (&["--jobs", "2"][..], "--jobs"),
        (&["--eval-split", "1.5"][..], "eval_split"),
        (&["--resample", "4"][..], "filter_rounds"),
        (&["--loss", "nope"][..], "nope"),
        (&["--save-adapter"][..], "save_adapter: needs LoRA"),
        (
            &["--lora-rank", "4", "--lora-targets", "q,qkv"][..],
            "unknown LoRA target `qkv`",
        ),
        (
            &["--lora-rank", "4", "--lora-dropout", "1"][..],
            "lora_dropout",
        ),
    ] {
        let out = dir.join("run");
        let output = trainer(&[extra, &["--out", out.to_str().unwrap()]].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} was accepted");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn flags_a_dataset_comparison_cannot_honour_are_refused() {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/hh-stories260k.toml");
    let out = scratch("dataset-refused").join("run");
    for (extra, expected) in [
        (
            &["--stop-after-steps", "3"][..],
            "unexpected argument '--stop-after-steps'",
        ),
        (
            &["--experiment", "practical"][..],
            "unexpected argument '--experiment'",
        ),
        (&["--jobs", "2"][..], "unexpected argument '--jobs'"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["train", "--quiet", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} was accepted");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(!out.exists(), "{extra:?} started a run");
    }
    // A comparison resumes only a run folder ropo made, not a config copied into a folder.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(&config, out.join("config.toml")).unwrap();
    let resumed = resume(&out, &[]);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(!resumed.status.success());
    assert!(
        stderr.contains("--resume continues a run folder ropo made"),
        "{stderr}"
    );
}

#[test]
fn a_filter_run_shorter_than_an_epoch_scores_and_filters_only_the_pairs_it_trains_on() {
    let dir = scratch("align-filter-subset");
    let out = dir.join("run");
    let run = trainer(&[
        "--steps",
        "6",
        "--filter-rounds",
        "2",
        "--filter-rho",
        "0.25",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&run);
    // 6 steps of 4 pairs: 24 of the 48 pairs, a quarter of them dropped after each of two rounds.
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("24 pairs left out"), "{stderr}");
    assert!(
        stderr.contains("2 filter round(s) scoring the 24 training pairs"),
        "{stderr}"
    );
    let text = String::from_utf8(read(&out.join("suspect_labels.jsonl"))).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2 * 6);
    let data = std::fs::read_to_string(fixtures().join("tiny_pairs.jsonl")).unwrap();
    let lines: Vec<&str> = data.lines().collect();
    for record in &records {
        let index = record["index"].as_u64().unwrap() as usize;
        let line: serde_json::Value = serde_json::from_str(lines[index]).unwrap();
        assert_eq!(record["record"], line);
    }
}

#[test]
fn filter_rounds_restart_the_learning_rate_schedule_or_continue_it_as_asked() {
    let dir = scratch("align-schedule");
    // Warmup then cosine to zero: the rate of 0-based `step` of a schedule of `total` steps.
    let cosine = |step: usize, total: usize| match step {
        0 | 1 => 1e-3 * (step + 1) as f64 / 2.0,
        _ => {
            let progress = (step - 2) as f64 / (total - 2) as f64;
            1e-3 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    };
    let restart: Vec<f64> = (0..8).map(|step| cosine(step % 4, 4)).collect();
    let continuous: Vec<f64> = (0..8).map(|step| cosine(step, 8)).collect();
    for (schedule, expected) in [("restart", restart), ("continuous", continuous)] {
        let out = dir.join(schedule);
        ok(&trainer(&[
            "--steps",
            "8",
            "--filter-rounds",
            "1",
            "--warmup",
            "2",
            "--round-schedule",
            schedule,
            "--out",
            out.to_str().unwrap(),
        ]));
        let text = String::from_utf8(read(&out.join("metrics.jsonl"))).unwrap();
        let rates: Vec<f64> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|line| line["learning_rate"].as_f64().unwrap())
            .collect();
        assert_eq!(rates.len(), 8);
        for (step, (rate, want)) in rates.iter().zip(&expected).enumerate() {
            let step = step + 1;
            assert!(
                (rate - want).abs() < 1e-12,
                "{schedule} step {step}: lr {rate}, want {want}"
            );
        }
    }
}

#[test]
fn a_max_length_beyond_the_models_positions_is_refused_naming_the_flag() {
    let dir = scratch("align-context");
    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--quiet", "--model"])
        .arg(fixtures().join("tiny_llama"))
        .arg("--data")
        .arg(fixtures().join("tiny_pairs.jsonl"))
        .args(["--template", "plain", "--max-length", "100", "--out"])
        .arg(dir.join("run"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("max_length: 100 is longer than the 64 positions")
            && stderr.contains("--max-length 64"),
        "{stderr}"
    );
    assert!(!stderr.contains("scoring passes"), "{stderr}");
}

#[test]
fn progress_names_every_pass_and_the_export_keeps_the_chat_template() {
    let dir = scratch("align-progress");
    let out = dir.join("run");
    // Not --quiet; stderr is a pipe, so each phase prints lines rather than a bar.
    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--model"])
        .arg(fixtures().join("tiny_llama"))
        .arg("--tokenizer")
        .arg(fixtures().join("tiny_chat"))
        .arg("--data")
        .arg(fixtures().join("tiny_pairs.jsonl"))
        .args([
            "--max-length",
            "48",
            "--batch",
            "4",
            "--lr",
            "1e-3",
            "--steps",
            "8",
        ])
        .args(["--eval-split", "0.25", "--filter-rounds", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    ok(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    for line in [
        "scoring passes: reference log-probs of 32 training pairs",
        "reference log-probs 32/32 (100%)",
        "reference log-probs 12/12 (100%)",
        "filter scoring 32/32 (100%)",
        "evaluation 12/12 (100%)",
        "preference steps 4/8 (50%)",
        "preference steps 8/8 (100%)",
    ] {
        assert!(stderr.contains(line), "no {line:?} in:\n{stderr}");
    }
    let template = |dir: &Path| read(&dir.join("chat_template.jinja"));
    assert_eq!(
        template(&out.join("model")),
        template(&fixtures().join("tiny_chat"))
    );
}

#[test]
fn an_interrupted_run_checkpoints_keeps_its_metrics_and_resumes_to_the_same_result() {
    let dir = scratch("align-interrupt");
    let (whole, stopped) = (dir.join("whole"), dir.join("stopped"));
    let common = [
        "--steps",
        "60",
        "--eval-split",
        "0.25",
        "--eval-every",
        "20",
    ];
    ok(&trainer(
        &[&common[..], &["--out", whole.to_str().unwrap()]].concat(),
    ));
    let mut child = trainer_command(&[&common[..], &["--out", stopped.to_str().unwrap()]].concat())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = stopped.join("metrics.jsonl");
    let logged = || std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count());
    let start = std::time::Instant::now();
    while logged() < 3 && child.try_wait().unwrap().is_none() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SAFETY: signals a child process this test started and still holds.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the run ended before the interrupt"
    );
    assert!(stderr.contains("interrupted after"), "{stderr}");
    assert!(!stopped.join("model").exists());
    let steps_logged = logged();
    assert!((3..60).contains(&steps_logged), "{steps_logged} lines");
    let resumed = resume(&stopped, &[]);
    ok(&resumed);
    for file in ["metrics.jsonl", "model/model.safetensors"] {
        let same = read(&whole.join(file)) == read(&stopped.join(file));
        assert!(
            same,
            "{file} differs between the whole and the interrupted-and-resumed run"
        );
    }
}

#[test]
fn re_po_learns_its_reliability_and_a_resumed_run_continues_from_it() {
    let common = ["--loss", "repo", "--steps", "6", "--save-every", "2"];
    let (whole, split, _) = whole_and_resumed("align-repo", &common);
    let dir = whole.parent().unwrap().to_path_buf();
    for file in ["metrics.jsonl", "model/model.safetensors"] {
        assert!(
            read(&whole.join(file)) == read(&split.join(file)),
            "{file} differs between the whole and the stopped-and-resumed run"
        );
    }
    let text = String::from_utf8(read(&whole.join("metrics.jsonl"))).unwrap();
    let etas: Vec<f64> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| line["repo/reliability"].as_f64())
        .collect();
    assert_eq!(etas.len(), 6, "{text}");
    assert!(etas.iter().all(|eta| (0.5..1.0).contains(eta)), "{etas:?}");
    assert!(
        etas.windows(2).any(|w| w[0] != w[1]),
        "η never moved: {etas:?}"
    );
    let dpo = trainer(&[
        "--loss",
        "dpo",
        "--repo-eta0",
        "0.8",
        "--out",
        dir.join("x").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&dpo.stderr).contains("--repo-eta0 is --loss repo's"));
}
