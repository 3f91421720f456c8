//! `cargo xtask train` end to end on a tiny config: the run folder it writes, that it is
//! reproducible, and how it refuses bad configs.

use std::path::Path;
use std::process::Command;

mod common;

use common::{scratch, train, xtask_ok, TINY};

#[test]
fn tiny_config_writes_a_complete_reproducible_run_folder() {
    let dir = scratch("tiny");
    let config = dir.join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let first = train(&config, &dir.join("a"));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    for file in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "report.md",
        "curves.svg",
        "gold_win_rate_vs_noise.svg",
        "clean_accuracy_vs_noise.svg",
    ] {
        assert!(dir.join("a").join(file).is_file(), "{file} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("a/summary.json")).unwrap())
            .unwrap();
    let results = summary["results"].as_array().unwrap();
    assert_eq!(results.len(), 2 * 2 * 3);
    for entry in results {
        assert_eq!(entry["seeds"], 2);
        let mean = entry["mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&mean), "{entry}");
    }
    assert!(results
        .iter()
        .any(|e| e["loss"] == "ropo" && e["noise"] == 0.2 && e["metric"] == "gold_win_rate"));
    let environment: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("a/environment.json")).unwrap())
            .unwrap();
    assert_eq!(environment["seed"], 0);
    assert_eq!(environment["backend"], "cpu (flex)");
    assert_eq!(environment["libraries"]["burn"], "0.21.0");
    assert!(environment["rustc"]
        .as_str()
        .unwrap()
        .starts_with("rustc 1."));
    let metrics = std::fs::read_to_string(dir.join("a/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2 * 2 * 2 * 10);
    let line: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for key in [
        "loss",
        "rewards/chosen",
        "rewards/accuracies",
        "rewards/margins",
        "lr",
        "grad_norm",
    ] {
        assert!(line.get(key).is_some(), "{key} missing from {line}");
    }
    let timing = std::fs::read_to_string(dir.join("a/timing.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(timing.lines().next().unwrap()).unwrap();
    assert!(first["tokens_per_s"].as_f64().unwrap() > 0.0, "{first}");
    assert_eq!(timing.lines().count(), metrics.lines().count());
    let second = train(&config, &dir.join("b"));
    assert!(second.status.success());
    assert_eq!(
        std::fs::read_to_string(dir.join("a/summary.json")).unwrap(),
        std::fs::read_to_string(dir.join("b/summary.json")).unwrap(),
        "same seed and config must give the same numbers"
    );
}

#[test]
fn bad_configs_are_one_line_errors_naming_the_problem() {
    let dir = scratch("bad");
    let cases = [
        (
            "unknown.toml",
            format!("{TINY}\nlearning_rate = 3\n"),
            "learning_rate",
        ),
        (
            "lr.toml",
            TINY.replace("lr = 1e-3", "lr = -1e-3"),
            "preference.lr",
        ),
        (
            "noise.toml",
            TINY.replace("noise = [0.0, 0.2]", "noise = [0.0, 0.5]"),
            "0.5",
        ),
        ("loss.toml", TINY.replace("\"ropo\"]", "\"kto\"]"), "kto"),
        ("syntax.toml", "losses = [".to_string(), "syntax.toml"),
    ];
    for (name, text, needle) in cases {
        let config = dir.join(name);
        std::fs::write(&config, text).unwrap();
        let output = train(&config, &dir.join("out"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} succeeded");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(needle), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let dataset = format!(
        "losses = [\"sigmoid\"]\nnoise = [0.0]\nseeds = 1\n\
         [dataset]\nmodel = \"{}\"\ntokenizer = \"x\"\npairs = \"y\"\ntemplate = \"hh\"\n\
         max_length = 64\nmax_prompt_length = 32\nheldout = 0.2\nsplit_seed = 0\n\
         [sft]\nsteps = 1\nbatch = 1\nlr = 1e-3\n\
         [preference]\npairs = 0\nsteps = 1\nbatch = 1\nlr = 1e-3\nwarmup = 0\nbeta = 0.1\nalpha = 14.0\nepsilon = 0.2\n",
        dir.join("no-such-model.bin").display()
    );
    let config = dir.join("dataset.toml");
    std::fs::write(&config, dataset).unwrap();
    let output = train(&config, &dir.join("out"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("dataset.model") && stderr.contains("no-such-model.bin"),
        "{stderr}"
    );
    let missing = train(&dir.join("absent.toml"), &dir.join("out"));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("absent.toml"));
}

fn manifest_step(checkpoint: &Path) -> u64 {
    let text = std::fs::read_to_string(checkpoint.join("manifest.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["step"]
        .as_u64()
        .unwrap()
}

#[test]
fn stopping_and_resuming_gives_bit_identical_results() {
    let dir = scratch("resume");
    let config = dir.join("tiny.toml");
    std::fs::write(
        &config,
        format!("checkpoint_every = 3\nkeep_checkpoints = 1\n{TINY}"),
    )
    .unwrap();
    let straight = dir.join("straight");
    assert!(train(&config, &straight).status.success());

    let pieces = dir.join("pieces");
    let first = xtask_ok([
        "train",
        "--quiet",
        "--jobs",
        "1",
        "--stop-after-steps",
        "5",
        "--config",
        config.to_str().unwrap(),
        "--out",
        pieces.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&first.stdout).contains("--resume"));
    assert!(!pieces.join("summary.json").exists());
    let run = pieces.join("checkpoints/sigmoid-eta0-seed0");
    let kept: Vec<_> = std::fs::read_dir(&run).unwrap().collect();
    assert_eq!(kept.len(), 1, "keep_checkpoints = 1 keeps one checkpoint");
    assert_eq!(manifest_step(&run.join("step-000005")), 5);
    for stop in [Some("12"), None] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command
            .args(["train", "--quiet", "--jobs", "1", "--resume"])
            .arg(&pieces);
        if let Some(stop) = stop {
            command.args(["--stop-after-steps", stop]);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if stop.is_some() {
            // 12 steps: the last 5 of the first run (resumed at step 5), 7 of the second.
            assert!(!run.exists(), "a finished run's checkpoints are removed");
            let second = pieces.join("checkpoints/ropo-eta0-seed0/step-000007");
            assert_eq!(manifest_step(&second), 7);
        }
    }
    assert_eq!(
        std::fs::read_to_string(straight.join("summary.json")).unwrap(),
        std::fs::read_to_string(pieces.join("summary.json")).unwrap()
    );
    assert_eq!(
        std::fs::read(straight.join("metrics.jsonl")).unwrap(),
        std::fs::read(pieces.join("metrics.jsonl")).unwrap(),
        "metrics.jsonl of a resumed run must equal an uninterrupted run's byte for byte"
    );
}

#[test]
fn framework_methods_resume_between_rounds_with_identical_results() {
    let dir = scratch("framework");
    let config = dir.join("tiny.toml");
    let tiny = TINY
        .replace(
            r#"losses = ["sigmoid", "ropo"]"#,
            r#"losses = ["dpo", "ropo+filter", "ropo+filter+rs"]"#,
        )
        .replace("noise = [0.0, 0.2]", "noise = [0.2]")
        .replace("seeds = 2", "seeds = 1");
    std::fs::write(&config, format!("{tiny}\n[framework]\nrounds = 3\nrho = 0.2\nsamples = 3\ntemperature = 1.0\nscorer = \"policy_log_prob_per_token\"\n")).unwrap();
    let config = config.to_str().unwrap();
    let folder = |name: &str| dir.join(name).to_str().unwrap().to_string();
    xtask_ok([
        "train",
        "--quiet",
        "--config",
        config,
        "--out",
        &folder("straight"),
    ]);
    // dpo trains 10 steps, then ropo+filter's first two rounds (3 steps each) end at 16.
    let pieces = folder("pieces");
    xtask_ok([
        "train",
        "--quiet",
        "--stop-after-steps",
        "17",
        "--config",
        config,
        "--out",
        &pieces,
    ]);
    let state = dir.join("pieces/checkpoints/ropo+filter-eta0.2-seed0/round-000002/state.json");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    assert_eq!(
        saved["next_round"], 2,
        "rounds 1 and 2 (3 steps each) were saved"
    );
    xtask_ok(["train", "--quiet", "--resume", &pieces]);
    assert_same_results(&dir, "straight", "pieces");
    let report = std::fs::read_to_string(dir.join("straight/report.md")).unwrap();
    assert!(report.contains("| ropo+filter+rs | 0.2 | 1 |"), "{report}");
    assert!(dir
        .join("straight/losses-ropo+filter-eta0.2-round1.svg")
        .is_file());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("straight/summary.json")).unwrap())
            .unwrap();
    let entry = summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["method"] == "ropo+filter" && e["metric"] == "gold_win_rate")
        .unwrap();
    let (low, high) = (
        entry["vs_dpo"]["low"].as_f64().unwrap(),
        entry["vs_dpo"]["high"].as_f64().unwrap(),
    );
    assert_eq!(low, high, "one seed: the interval is its one difference");
}

#[test]
fn the_results_do_not_depend_on_the_number_of_worker_threads() {
    let dir = scratch("jobs");
    let config = dir.join("tiny.toml");
    std::fs::write(&config, TINY.replace("seeds = 2", "seeds = 3")).unwrap();
    let config = config.to_str().unwrap();
    for (jobs, extra, out) in [
        ("1", &[][..], "one"),
        ("3", &[][..], "three"),
        ("2", &["--stop-after-steps", "9"][..], "stopped"),
    ] {
        let out = dir.join(out).to_str().unwrap().to_string();
        let args = [
            "train", "--quiet", "--jobs", jobs, "--config", config, "--out", &out,
        ];
        xtask_ok(args.iter().chain(extra));
    }
    assert!(!dir.join("stopped/summary.json").exists());
    let stopped = dir.join("stopped").to_str().unwrap().to_string();
    xtask_ok(["train", "--quiet", "--jobs", "2", "--resume", &stopped]);
    assert_same_results(&dir, "one", "three");
    assert_same_results(&dir, "one", "stopped");
}

/// `summary.json` and `metrics.jsonl` of two run folders under `dir` are byte-identical.
fn assert_same_results(dir: &Path, a: &str, b: &str) {
    for file in ["summary.json", "metrics.jsonl"] {
        let read = |folder: &str| std::fs::read(dir.join(folder).join(file)).unwrap();
        assert_eq!(read(a), read(b), "{file}: {a} against {b}");
    }
}

#[test]
fn noise_detection_records_the_loss_auc_of_the_flips_at_each_validation_point() {
    let dir = scratch("detection");
    let config = dir.join("tiny.toml");
    std::fs::write(&config, format!("noise_detection = true\n{TINY}")).unwrap();
    let output = train(&config, &dir.join("out"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.join("out/curves-noise_auc.svg").is_file());
    assert!(dir.join("out/curves-win_rate.svg").is_file());
    let report = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
    let table = report
        .split("## flip-detection AUC of the loss against training length")
        .nth(1)
        .expect("the AUC table");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| sigmoid |") || l.starts_with("| ropo |"))
        .collect();
    assert_eq!(rows.len(), 4, "{table}");
    for row in rows {
        let cells: Vec<&str> = row
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        for value in &cells[2..] {
            if cells[1] == "0" {
                assert_eq!(*value, "–", "no flips at η = 0: {row}");
            } else {
                let auc: f64 = value.parse().unwrap();
                assert!((0.0..=1.0).contains(&auc), "{row}");
            }
        }
    }
}

#[test]
fn trainer_flags_are_refused_by_the_experiments_naming_the_flag() {
    let dir = scratch("grid-trainer-flags");
    let config = dir.join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let dataset = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/hh-stories260k.toml");
    let out = dir.join("run");
    let default = ["train", "--quiet", "--warmup", "0"];
    let gold = [
        "train",
        "--quiet",
        "--config",
        config.to_str().unwrap(),
        "--lr",
        "1e-4",
    ];
    let real = [
        "train",
        "--quiet",
        "--config",
        dataset.to_str().unwrap(),
        "--seed",
        "1",
    ];
    for (args, expected) in [
        (&default[..], "unexpected argument '--warmup'"),
        (&gold[..], "unexpected argument '--lr'"),
        (&real[..], "unexpected argument '--seed'"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?} started a run");
    }
}

#[test]
fn a_partial_preference_table_runs_with_the_defaults_for_the_rest() {
    let dir = scratch("partial-preference");
    let (start, _) = TINY.split_once("[preference]").unwrap();
    let config = dir.join("partial.toml");
    std::fs::write(
        &config,
        format!("{start}[preference]\npairs = 64\nsteps = 12\nbatch = 16\nlr = 1e-4\n"),
    )
    .unwrap();
    let out = dir.join("run");
    xtask_ok([
        "train",
        "--quiet",
        "--stop-after-steps",
        "1",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let written = std::fs::read_to_string(out.join("config.toml")).unwrap();
    let written: toml::Table = toml::from_str(&written).unwrap();
    let preference = &written["preference"];
    assert_eq!(preference["lr"].as_float(), Some(1e-4));
    // The defaults `cargo xtask train` runs with (docs/training.md).
    assert_eq!(preference["warmup"].as_integer(), Some(10));
    assert_eq!(preference["beta"].as_float(), Some(0.1));
    assert_eq!(preference["alpha"].as_float(), Some(14.0));
    assert_eq!(preference["epsilon"].as_float(), Some(0.2));
}
