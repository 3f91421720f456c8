//! A reader that closes stdout early (`xtask data inspect F | head -1`) ends the command
//! quietly with exit 0, not with an internal error.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn data_inspect_into_a_closed_pipe_exits_zero_and_quietly() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/assets/preferences/helpful-base-test.jsonl.gz");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["data", "inspect"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("file:"), "{first}");
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(stderr.is_empty(), "{stderr}");
}
