//! `cargo xtask bench`: what every benchmark's output starts with.

#[test]
fn a_bench_output_starts_with_the_cpu_it_ran_on() {
    // The vocabulary benchmark at a toy size: its parent reads each child's stdout as JSON,
    // so the children must not print the line.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "bench", "vocab", "--vocab", "64", "--hidden", "8", "--rows", "4",
        ])
        .output()
        .expect("xtask runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("cpu: "), "{stdout}");
    assert!(
        first.contains("avx512_bf16 ") && first.contains("amx_bf16 "),
        "{first}"
    );
    assert_eq!(stdout.matches("cpu: ").count(), 1, "{stdout}");
}
