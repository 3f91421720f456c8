//! Records, at build time, the versions a run folder's `environment.json` reports: rustc's and
//! those of the libraries that decide the numbers (from `Cargo.lock`).

use std::process::Command;

/// The crates whose versions are recorded.
const LIBRARIES: [&str; 5] = ["burn", "burn-store", "tokenizers", "rand", "rayon"];

fn main() {
    let lock_path = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock");
    println!("cargo:rerun-if-changed={lock_path}");
    let lock = std::fs::read_to_string(lock_path).unwrap_or_default();
    let versions: Vec<String> = LIBRARIES
        .iter()
        .map(|name| format!("{name}={}", locked_version(&lock, name)))
        .collect();
    println!(
        "cargo:rustc-env=ROPO_LIBRARY_VERSIONS={}",
        versions.join(",")
    );
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=ROPO_RUSTC_VERSION={version}");
}

/// The version of library `name` that ropo's own crates use, from `Cargo.lock`: the version
/// their dependency entries name (`"rand 0.9.5"`) where several are locked, else the only one.
fn locked_version(lock: &str, name: &str) -> String {
    let ours = lock
        .split("[[package]]")
        .filter(|package| package.contains("name = \"ropo"));
    let named = format!(" \"{name} ");
    for package in ours {
        if let Some(at) = package.find(&named) {
            let rest = &package[at + named.len()..];
            return rest.split('"').next().unwrap_or("unknown").to_string();
        }
    }
    let header = format!("name = \"{name}\"\nversion = \"");
    lock.find(&header)
        .map(|at| &lock[at + header.len()..])
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("unknown")
        .to_string()
}
