//! `cargo xtask train` with Hub ids for the model and the data (a parquet dataset with a
//! `train` and a `test` split), against a loopback server that speaks the Hub's API: the first
//! run downloads the model's files and the train split into the shared cache, a second run with
//! `HF_HUB_OFFLINE=1` and no server trains the same from the cache, and a missing repository
//! is one clear error.

mod common;

use common::ok;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ropo_hub::test_server::{HubServer, ServedRepo};
use ropo_hub::RepoKind;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn files_of(folder: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

/// `xtask train --model MODEL --data DATA …` with the Hub variables set for `endpoint` and
/// `cache`.
fn train(
    model: &str,
    data: &str,
    out: &Path,
    endpoint: &str,
    cache: &Path,
    offline: bool,
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["train", "--quiet", "--model", model, "--data", data])
        .args([
            "--template",
            "plain",
            "--max-length",
            "32",
            "--batch",
            "4",
            "--steps",
            "3",
        ])
        .arg("--out")
        .arg(out)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", cache)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HOME");
    if offline {
        command.env("HF_HUB_OFFLINE", "1");
    } else {
        command.env_remove("HF_HUB_OFFLINE");
    }
    command.output().expect("xtask runs")
}

#[test]
fn hub_ids_train_online_then_offline_from_the_cache() {
    let dir = common::scratch("hub-ids");
    let cache = dir.join("hub");
    let model = ServedRepo::new(
        RepoKind::Model,
        "ropo-test/tiny-llama",
        files_of(&fixtures().join("tiny_llama")),
    );
    let pairs = std::fs::read(fixtures().join("tiny_pairs.parquet")).unwrap();
    let data = ServedRepo::new(
        RepoKind::Dataset,
        "ropo-test/tiny-pairs",
        vec![
            ("data/train-00000-of-00001.parquet".into(), pairs),
            (
                "data/test-00000-of-00001.parquet".into(),
                b"not parquet: never fetched".to_vec(),
            ),
            ("README.md".into(), b"# tiny pairs".to_vec()),
        ],
    );
    let server = HubServer::start(vec![model, data]);
    let endpoint = server.endpoint().to_owned();
    let (online, offline) = (dir.join("online"), dir.join("offline"));
    ok(&train(
        "ropo-test/tiny-llama",
        "ropo-test/tiny-pairs",
        &online,
        &endpoint,
        &cache,
        false,
    ));
    let config = std::fs::read_to_string(online.join("config.toml")).unwrap();
    assert!(
        config.contains("models--ropo-test--tiny-llama/snapshots/"),
        "{config}"
    );
    assert!(
        config.contains("datasets--ropo-test--tiny-pairs/snapshots/"),
        "{config}"
    );
    assert!(config.contains("split = \"train\""), "{config}");
    assert!(online.join("model/config.json").is_file());
    let snapshot = std::fs::read_dir(cache.join("datasets--ropo-test--tiny-pairs/snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(snapshot.join("data/train-00000-of-00001.parquet").is_file());
    assert!(!snapshot.join("data/test-00000-of-00001.parquet").exists());
    assert!(!snapshot.join("README.md").exists());

    drop(server);
    ok(&train(
        "ropo-test/tiny-llama",
        "ropo-test/tiny-pairs",
        &offline,
        &endpoint,
        &cache,
        true,
    ));
    let metrics = |folder: &Path| std::fs::read(folder.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics(&online), metrics(&offline));
}

#[test]
fn a_missing_repository_is_one_clear_error() {
    let dir = common::scratch("hub-missing");
    let server = HubServer::start(Vec::new());
    let data = fixtures().join("tiny_pairs.jsonl");
    let output = train(
        "ropo-test/missing",
        data.to_str().unwrap(),
        &dir.join("out"),
        server.endpoint(),
        &dir.join("hub"),
        false,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ropo-test/missing: no such file or folder here, and as a Hub id: repository ropo-test/missing not found"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
