//! `cargo xtask data noise` on a real file: the copy it writes, its flip mask, and that the
//! length-biased judge labels the longer response chosen as often as asked; `data` on parquet
//! files and on a Hub dataset's folder, by split.

use std::path::PathBuf;

// Each test binary uses a part of the shared helpers.
#[allow(dead_code)]
mod common;

use common::{scratch, xtask_ok};

/// The shared HH-RLHF helpful-base test pairs.
fn hh() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/assets/preferences/helpful-base-test.jsonl.gz")
}

/// A parquet fixture of ropo-data (`crates/ropo-data/tests/fixtures/parquet`).
fn parquet_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/ropo-data/tests/fixtures/parquet")
        .join(name)
}

/// Reads the mask `data noise` wrote beside `out`.
fn mask(out: &std::path::Path) -> serde_json::Value {
    let path = PathBuf::from(format!("{}.flips.json", out.display()));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_length_biased_judge_labels_the_longer_response_chosen_as_often_as_asked() {
    let dir = scratch("data-noise");
    let source = hh();
    let source = source.to_str().unwrap();
    let copy = |name: &str, flags: &[&str]| {
        let out = dir.join(name);
        let args = [
            &["data", "noise", source][..],
            flags,
            &["-o", out.to_str().unwrap()],
        ];
        xtask_ok(args.concat());
        (out.clone(), mask(&out))
    };
    let (always_longer, longer) = copy("longer.jsonl", &["--length-bias", "1"]);
    let (_, shorter) = copy("shorter.jsonl", &["--length-bias", "0"]);
    let (_, half) = copy("half.jsonl", &["--length-bias", "0.5", "--seed", "3"]);
    let (_, symmetric) = copy("symmetric.jsonl", &["--rate", "0.2"]);
    assert_eq!(longer["noise"], "length_biased");
    assert_eq!(symmetric["noise"], "symmetric");
    let count = |m: &serde_json::Value| m["flipped_count"].as_u64().unwrap();
    let pairs = longer["pairs"].as_u64().unwrap();
    // p = 1 and p = 0 flip complementary sets: every pair of unequal lengths is flipped by
    // exactly one of them.
    let flipped = |m: &serde_json::Value| -> Vec<bool> {
        m["flipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_bool().unwrap())
            .collect()
    };
    let (a, b) = (flipped(&longer), flipped(&shorter));
    assert!(a.iter().zip(&b).all(|(x, y)| !(x & y)));
    let unequal = a.iter().zip(&b).filter(|(x, y)| **x || **y).count() as u64;
    assert!(unequal > pairs * 9 / 10, "{unequal} of {pairs}");
    // p = ½: about half of those.
    let share = count(&half) as f64 / unequal as f64;
    assert!((share - 0.5).abs() < 0.05, "{share}");
    // In the p = 1 copy the chosen response is never the shorter one.
    let text = std::fs::read_to_string(&always_longer).unwrap();
    assert_eq!(text.lines().count() as u64, pairs);
    let shorter_chosen = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| {
            let len = |key: &str| r[key].as_str().map_or(0, str::len);
            len("chosen") < len("rejected")
        })
        .count();
    assert_eq!(shorter_chosen, 0);
}

#[test]
fn a_noisy_copy_of_a_parquet_file_is_that_of_its_jsonl_source() {
    let dir = scratch("data-noise-parquet");
    let copy = |source: &str| {
        let out = dir.join(format!("{source}.noisy.jsonl"));
        let source = parquet_fixture(source);
        xtask_ok([
            "data",
            "noise",
            source.to_str().unwrap(),
            "--rate",
            "0.4",
            "--seed",
            "5",
            "-o",
            out.to_str().unwrap(),
        ]);
        (std::fs::read_to_string(&out).unwrap(), mask(&out))
    };
    let (parquet, parquet_mask) = copy("hh_real.parquet");
    let (jsonl, jsonl_mask) = copy("hh_real.jsonl");
    assert_eq!(parquet, jsonl);
    assert_eq!(parquet_mask["flipped"], jsonl_mask["flipped"]);
    assert_eq!(parquet_mask["source_lines"], jsonl_mask["source_lines"]);
    assert_eq!(parquet_mask["source_files"][0]["pairs"], 8);
}

#[test]
fn inspect_reads_the_shards_of_one_split_of_a_folder() {
    let folder = parquet_fixture("split");
    let output = xtask_ok([
        "data",
        "inspect",
        folder.to_str().unwrap(),
        "--split",
        "train",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let files: Vec<&str> = stdout.lines().filter(|l| l.starts_with("file: ")).collect();
    assert_eq!(files.len(), 2, "{stdout}");
    assert!(
        files[0].contains("train-00000-of-00002.parquet (parquet)"),
        "{stdout}"
    );
    assert!(
        files[1].contains("train-00001-of-00002.parquet (parquet)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("all 2 files: 6 pairs, 0 skipped"),
        "{stdout}"
    );
}
