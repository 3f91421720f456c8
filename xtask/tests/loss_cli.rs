//! `cargo xtask loss` checked from outside: the JSON it prints and how it refuses bad input.

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn floats(value: &serde_json::Value) -> Vec<f64> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

#[test]
fn ropo_on_margins_prints_loss_and_derivative() {
    let report = json(&xtask(&[
        "loss",
        "--loss",
        "ropo",
        "--alpha",
        "14",
        "--beta",
        "0.1",
        "--margins=0,1.5,-3",
    ]));
    let loss = floats(&report["loss"]);
    let dloss = floats(&report["dloss_dh"]);
    assert_eq!(loss.len(), 3);
    assert!((loss[0] - 1.914739).abs() < 1e-5, "{loss:?}");
    // At h = 0: ∂ℓ/∂h = −β·4α/(1+α)²·½·(1 + α/2) = −0.1·(56/225)·4.
    assert!(
        (dloss[0] + 0.1 * 56.0 / 225.0 * 4.0).abs() < 1e-6,
        "{dloss:?}"
    );
    assert!(loss[1] < loss[0] && loss[0] < loss[2]);
}

#[test]
fn dpo_on_log_prob_vectors_matches_torchtune_fixture() {
    let report = json(&xtask(&[
        "loss",
        "--loss",
        "dpo",
        "--policy-chosen=-0.5,-10,-1",
        "--policy-rejected=-0.1,-30,-21",
        "--reference-chosen=-0.5,-10.1,-0.1",
        "--reference-rejected=-0.1,-20.1,-0.1",
    ]));
    let expected = [std::f64::consts::LN_2, 0.313262, 0.126928];
    for (got, want) in floats(&report["loss"]).iter().zip(expected) {
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
    let margins = floats(&report["margins"]);
    assert!((margins[2] - 20.0).abs() < 1e-4, "{margins:?}");
}

#[test]
fn bad_input_is_a_one_line_error_and_a_failure_exit() {
    let cases: [&[&str]; 4] = [
        &["loss", "--loss", "rdpo", "--epsilon", "0.5", "--margins=0"],
        &["loss", "--loss", "kto", "--margins=0"],
        &["loss", "--loss", "dpo", "--beta", "0", "--margins=0"],
        &[
            "loss",
            "--loss",
            "dpo",
            "--policy-chosen=1,2",
            "--policy-rejected=1",
            "--reference-chosen=0,0",
            "--reference-rejected=0,0",
        ],
    ];
    for args in cases {
        let output = xtask(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
