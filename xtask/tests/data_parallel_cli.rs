//! `cargo xtask train … --data-parallel N` on the tiny Llama fixture: N ranks (threads sharing
//! the CPU device, joined by burn-collective) give the metrics and weights of one rank with the
//! same global batch, a run resumes with another N, and a peer that dies or hangs ends the run
//! with an error naming it.

mod common;

use common::trainer_runs::{difference, trainer, TOLERANCE};
use common::{ok, scratch};

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn two_and_four_ranks_give_the_metrics_and_weights_of_one() {
    let dir = scratch("ranks");
    let one = dir.join("1");
    ok(&trainer(&one, &[]));
    for ranks in ["2", "4"] {
        let run = dir.join(ranks);
        ok(&trainer(&run, &["--data-parallel", ranks]));
        let (metric, weight) = difference(&one, &run);
        println!("{ranks} ranks: metrics within {metric:.1e}, weights within {weight:.1e}");
        assert!(metric < TOLERANCE && weight < TOLERANCE);
        assert!(
            weight > 0.0,
            "{ranks} ranks wrote exactly one rank's weights: were the shares run at all?"
        );
    }
}

#[test]
fn a_run_stopped_with_two_ranks_resumes_with_one() {
    let dir = scratch("resume");
    let (whole, split) = (dir.join("whole"), dir.join("split"));
    ok(&trainer(&whole, &["--data-parallel", "2"]));
    let stopped = trainer(&split, &["--data-parallel", "2", "--stop-after-steps", "3"]);
    ok(&stopped);
    let resumed = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["train", "--quiet", "--resume"])
        .arg(&split)
        .args(["--data-parallel", "1"])
        .output()
        .unwrap();
    ok(&resumed);
    let (metric, weight) = difference(&whole, &split);
    assert!(
        metric < TOLERANCE && weight < TOLERANCE,
        "{metric} {weight}"
    );
}

#[test]
fn a_peer_that_dies_ends_the_run_with_an_error_naming_it() {
    let dir = scratch("dies");
    let started = Instant::now();
    let output = trainer(
        &dir.join("run"),
        &["--data-parallel", "2", "--fault", "peer-dies:1@3"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("data-parallel peer 1: died: fault: peer 1 dies at step 3"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_peer_that_hangs_ends_the_run_after_the_timeout() {
    let dir = scratch("hangs");
    let started = Instant::now();
    let output = trainer(
        &dir.join("run"),
        &[
            "--data-parallel",
            "3",
            "--peer-timeout",
            "2",
            "--fault",
            "peer-hangs:2@2",
        ],
    );
    let waited = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("data-parallel peer 2: sent no report on step 2 within 2s"),
        "{stderr}"
    );
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(60));
}

#[test]
fn more_ranks_than_pairs_in_a_batch_are_refused() {
    let dir = scratch("too-many");
    let output = trainer(&dir.join("run"), &["--data-parallel", "5"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("data_parallel: 5 ranks for batches of 4 pairs"),
        "{stderr}"
    );
}
