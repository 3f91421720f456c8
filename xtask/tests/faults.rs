//! Faults during `cargo xtask train` — SIGKILL at any point (inside a checkpoint write too), a
//! full disk mid-run, corrupt checkpoints — and that none of them costs the run: resuming
//! gives the same `summary.json` and `metrics.jsonl`, byte for byte, as a run that was never
//! interrupted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

mod common;

use common::{scratch, train, TINY};

/// The tiny config with a checkpoint every 2 steps, the newest 2 kept, and the results of
/// its uninterrupted run.
fn checkpointed(dir: &Path) -> (PathBuf, Finished) {
    let config = dir.join("tiny.toml");
    std::fs::write(
        &config,
        format!("checkpoint_every = 2\nkeep_checkpoints = 2\n{TINY}"),
    )
    .unwrap();
    let straight = dir.join("straight");
    let output = train(&config, &straight);
    assert!(output.status.success(), "{}", stderr(&output));
    (config, Finished::of(&straight))
}

/// What a finished run's folder must hold byte for byte however often it was interrupted.
struct Finished {
    summary: String,
    metrics: String,
}

impl Finished {
    fn of(out: &Path) -> Self {
        let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
        Self {
            summary: read("summary.json"),
            metrics: read("metrics.jsonl"),
        }
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `xtask train --quiet --jobs 1 --config CONFIG --out OUT`, stdout discarded, not yet started.
fn train_command(config: &Path, out: &Path, stderr: Stdio) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    // One worker: the faults are planned in the first run's checkpoints, which are then the
    // first snapshots written.
    command
        .args(["train", "--quiet", "--jobs", "1", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(stderr);
    command
}

/// [`train_command`] started with the fault `fault` planned (`--fault`).
fn start_with_fault(config: &Path, out: &Path, fault: &str, stderr: Stdio) -> Child {
    train_command(config, out, stderr)
        .args(["--fault", fault])
        .spawn()
        .unwrap()
}

/// `xtask train --quiet --resume OUT EXTRA…`, which must succeed.
fn resume(out: &Path, extra: &[&str]) -> Output {
    let resumed = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--quiet", "--jobs", "1", "--resume"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    resumed
}

/// The `warning: …` lines a run printed.
fn warnings(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter(|line| line.starts_with("warning: "))
        .map(str::to_owned)
        .collect()
}

/// Resumes `out` to the end, which must give `expected`'s summary and metrics; returns the
/// warnings.
fn resume_and_compare(out: &Path, expected: &Finished, what: &str) -> Vec<String> {
    let resumed = resume(out, &[]);
    let found = Finished::of(out);
    assert_eq!(found.summary, expected.summary, "summary.json {what}");
    assert_eq!(found.metrics, expected.metrics, "metrics.jsonl {what}");
    warnings(&resumed)
}

/// The checkpoint folder of the first run (`sigmoid`, η = 0, seed 0).
fn first_run(out: &Path) -> PathBuf {
    out.join("checkpoints/sigmoid-eta0-seed0")
}

/// Checks that a run stopped by a failed write exited non-zero with one `error:` line naming
/// the snapshot's temporary folder `tmp` and the operating system's `reason`, and removed that
/// folder; returns the first run's checkpoint folder.
fn assert_failed_write(failed: &Output, out: &Path, tmp: &str, reason: &str) -> PathBuf {
    assert!(!failed.status.success());
    let message = stderr(failed);
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 1, "{message}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(tmp) && lines[0].contains(reason),
        "{message}"
    );
    let run = first_run(out);
    assert!(!run.join(tmp).exists(), "the partial write is cleaned up");
    run
}

/// A condition on a run folder's contents.
type Reached = dyn Fn(&Path) -> bool;

/// Whether any checkpoint folder of a run is on disk under `checkpoints`.
fn has_step_checkpoint(checkpoints: &Path) -> bool {
    std::fs::read_dir(checkpoints)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|run| {
            std::fs::read_dir(run.path())
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .any(|c| c.file_name().to_string_lossy().starts_with("step-"))
        })
}

fn finished_runs(checkpoints: &Path) -> usize {
    std::fs::read_to_string(checkpoints.join("finished.jsonl"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

#[test]
fn killing_the_process_at_any_point_and_resuming_gives_identical_results() {
    let dir = scratch("kill");
    let (config, expected) = checkpointed(&dir);
    // Kill points in every stage: during SFT, right after it, at a run's first checkpoint,
    // after the first finished run, and late.
    let stages: [(&str, &Reached); 5] = [
        ("during SFT", &|out| out.join("config.toml").exists()),
        ("after SFT", &|out| {
            out.join("checkpoints/sft/SHA256SUMS").exists()
        }),
        ("at a checkpoint", &|out| {
            has_step_checkpoint(&out.join("checkpoints"))
        }),
        ("after a run", &|out| {
            finished_runs(&out.join("checkpoints")) >= 1
        }),
        ("late", &|out| finished_runs(&out.join("checkpoints")) >= 5),
    ];
    for (stage, reached) in stages {
        let out = dir.join(stage.replace(' ', "-"));
        let mut child = train_command(&config, &out, Stdio::null()).spawn().unwrap();
        let start = std::time::Instant::now();
        while !reached(&out)
            && child.try_wait().unwrap().is_none()
            && start.elapsed().as_secs() < 60
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // SIGKILL: no chance to clean up, possibly in the middle of writing a checkpoint.
        let _ = child.kill();
        let _ = child.wait();
        resume_and_compare(&out, &expected, &format!("killed {stage}"));
    }
}

#[test]
fn a_kill_inside_a_checkpoint_write_leaves_only_complete_checkpoints() {
    let dir = scratch("kill-in-write");
    let (config, expected) = checkpointed(&dir);
    // Inside the write of the SFT model and of a preference checkpoint that has one before it.
    for (snapshot, temporary) in [
        ("sft", dir.join("in-sft/checkpoints/.tmp-sft")),
        (
            "step-000004",
            first_run(&dir.join("in-step")).join(".tmp-step-000004"),
        ),
    ] {
        let out = dir.join(if snapshot == "sft" {
            "in-sft"
        } else {
            "in-step"
        });
        let mut child =
            start_with_fault(&config, &out, &format!("pause:{snapshot}"), Stdio::piped());
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let paused = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|line| line.starts_with("fault: paused inside the write of"));
        assert!(paused.is_some(), "{snapshot}: the fault never fired");
        // SIGKILL with the snapshot's files written but not yet sealed or renamed.
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(temporary.join("model.mpk").is_file(), "{snapshot}");
        assert!(!temporary.with_file_name(snapshot).exists(), "{snapshot}");
        if snapshot != "sft" {
            assert!(first_run(&out).join("step-000002/SHA256SUMS").is_file());
        }
        let warnings = resume_and_compare(&out, &expected, &format!("killed inside {snapshot}"));
        assert!(
            warnings.is_empty(),
            "an unfinished write is not a warning: {warnings:?}"
        );
    }
}

#[test]
fn a_full_disk_mid_run_is_one_clear_error_and_the_previous_checkpoint_resumes() {
    let dir = scratch("disk-full");
    let (config, expected) = checkpointed(&dir);
    let out = dir.join("out");
    let failed = start_with_fault(&config, &out, "disk-full:step-000004", Stdio::piped())
        .wait_with_output()
        .unwrap();
    let run = assert_failed_write(&failed, &out, ".tmp-step-000004", "No space left on device");
    assert!(run.join("step-000002/SHA256SUMS").is_file());
    resume_and_compare(&out, &expected, "after a full disk");
}

#[cfg(target_os = "linux")]
#[test]
fn a_write_the_kernel_refuses_mid_run_is_one_clear_error_and_the_run_resumes() {
    use std::os::unix::process::CommandExt;
    let dir = scratch("file-size-limit");
    let (config, expected) = checkpointed(&dir);
    let out = dir.join("out");
    let mut command = train_command(&config, &out, Stdio::piped());
    // A real failed write, as on a full disk: the kernel refuses to grow any file past
    // 128 KiB (EFBIG, with SIGXFSZ ignored). The SFT model (87 KB) fits; the first
    // checkpoint's optimizer state (twice the weights) does not.
    // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 128 << 10,
                rlim_max: 128 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let failed = command.output().unwrap();
    assert_failed_write(&failed, &out, ".tmp-step-000002", "File too large");
    assert!(out.join("checkpoints/sft/SHA256SUMS").is_file());
    let warnings = resume_and_compare(&out, &expected, "after a refused write");
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn corrupt_checkpoints_are_set_aside_named_and_the_previous_ones_resume() {
    let dir = scratch("corrupt");
    let (config, expected) = checkpointed(&dir);
    let out = dir.join("out");
    let stopped = train_command(&config, &out, Stdio::piped())
        .args(["--stop-after-steps", "5"])
        .output()
        .unwrap();
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let run = first_run(&out);
    // A flipped bit in the newest checkpoint's weights, a truncated optimizer state in the
    // one before, and a flipped bit in the SFT model.
    let flip = |path: PathBuf| {
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x04;
        std::fs::write(&path, bytes).unwrap();
    };
    flip(run.join("step-000005/model.mpk"));
    flip(out.join("checkpoints/sft/model.mpk"));
    let optimizer = run.join("step-000004/optimizer.mpk");
    let length = std::fs::metadata(&optimizer).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&optimizer)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    // One step of resumption sets the three aside, with a warning each, and keeps them.
    let warned = warnings(&resume(&out, &["--stop-after-steps", "1"]));
    assert_eq!(warned.len(), 3, "{warned:?}");
    for (warning, file, then) in [
        (&warned[0], "sft/model.mpk", "training SFT again"),
        (
            &warned[1],
            "step-000005/model.mpk",
            "resuming from the checkpoint before it",
        ),
        (
            &warned[2],
            "step-000004/optimizer.mpk",
            "resuming from the checkpoint before it",
        ),
    ] {
        assert!(
            warning.contains(file)
                && warning.contains("checksum mismatch")
                && warning.contains(then),
            "{warning}"
        );
    }
    for kept in [
        run.join("corrupt-step-000005"),
        run.join("corrupt-step-000004"),
        out.join("checkpoints/corrupt-sft"),
    ] {
        assert!(kept.is_dir(), "{} is kept for inspection", kept.display());
    }
    let rest = resume_and_compare(&out, &expected, "after corruption");
    assert!(rest.is_empty(), "{rest:?}");
}
