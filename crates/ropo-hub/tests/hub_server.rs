//! Hub ids against a loopback server that speaks the Hub's API (`ropo_hub::test_server`):
//! downloads land in `huggingface_hub`'s cache layout, are reused, work offline, and every
//! failure is one clear error. Where `ROPO_PYTHON` names a Python with `huggingface_hub`, that
//! library reads the cache ropo left, offline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ropo_hub::test_server::{Access, Fault, HubServer, ServedRepo};
use ropo_hub::{model_files, Hub, HubConfig, HubError, HubId, RepoKind};

fn tiny_llama_files() -> Vec<(String, Vec<u8>)> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny_llama");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.push((
        "pytorch_model.bin".into(),
        b"a pickle ropo must not fetch".to_vec(),
    ));
    files.push(("onnx/model.onnx".into(), b"nor this".to_vec()));
    files.sort();
    files
}

/// A cache folder of its own under the temp folder, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("ropo-hub-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hub(endpoint: &str, cache: &Path, token: Option<&str>, offline: bool) -> Hub {
    let config = HubConfig {
        endpoint: endpoint.to_owned(),
        cache: cache.to_path_buf(),
        token: token.map(str::to_owned),
        offline,
        etag_timeout: Duration::from_secs(10),
        download_timeout: Duration::from_secs(10),
    };
    Hub::new(config, false).unwrap()
}

fn id(text: &str) -> HubId {
    HubId::parse(text).unwrap()
}

#[test]
fn a_model_downloads_into_the_shared_layout_is_reused_and_reads_offline() {
    let files = tiny_llama_files();
    let served = ServedRepo::new(RepoKind::Model, "ropo-test/tiny-llama", files.clone());
    let commit = served.commit.clone();
    let server = HubServer::start(vec![served]);
    let scratch = Scratch::new("layout");
    let cache = scratch.0.join("hub");

    let online = hub(server.endpoint(), &cache, None, false);
    let snapshot = online
        .snapshot(&id("ropo-test/tiny-llama"), RepoKind::Model, &model_files)
        .unwrap();
    let repo = cache.join("models--ropo-test--tiny-llama");
    assert_eq!(snapshot, repo.join("snapshots").join(&commit));
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        commit
    );
    for (name, bytes) in &files {
        let local = snapshot.join(name);
        if model_files(name) {
            assert_eq!(&std::fs::read(&local).unwrap(), bytes, "{name}");
            assert!(
                local.symlink_metadata().unwrap().is_symlink(),
                "{name} links to its blob"
            );
        } else {
            assert!(!local.exists(), "{name} was fetched");
        }
    }
    // One blob a file, nothing else; the locks are where huggingface_hub keeps its own.
    let blobs = std::fs::read_dir(repo.join("blobs")).unwrap().count();
    assert_eq!(
        blobs,
        files.iter().filter(|(name, _)| model_files(name)).count()
    );
    assert!(cache.join(".locks/models--ropo-test--tiny-llama").is_dir());

    // A second resolution lists the repository once and downloads nothing.
    let before = server.requests();
    let again = online
        .snapshot(&id("ropo-test/tiny-llama"), RepoKind::Model, &model_files)
        .unwrap();
    assert_eq!((again, server.requests() - before), (snapshot.clone(), 1));

    // Offline needs no server; online without one says so.
    let endpoint = server.endpoint().to_owned();
    drop(server);
    let offline = hub(&endpoint, &cache, None, true);
    for text in [
        "ropo-test/tiny-llama",
        &format!("ropo-test/tiny-llama@{commit}"),
    ] {
        let found = offline
            .snapshot(&id(text), RepoKind::Model, &model_files)
            .unwrap();
        assert_eq!(found, snapshot);
    }
    let error = hub(&endpoint, &cache, None, false)
        .snapshot(&id("ropo-test/tiny-llama"), RepoKind::Model, &model_files)
        .unwrap_err();
    assert!(matches!(error, HubError::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains("HF_HUB_OFFLINE=1"), "{error}");

    if let Ok(python) = std::env::var("ROPO_PYTHON") {
        huggingface_hub_reads_the_cache(&python, &cache, &snapshot);
    }
}

/// Python's `huggingface_hub`, offline, finds the same snapshot and files in the cache.
fn huggingface_hub_reads_the_cache(python: &str, cache: &Path, snapshot: &Path) {
    let script = r#"
import json, sys
from huggingface_hub import hf_hub_download, snapshot_download
folder = snapshot_download("ropo-test/tiny-llama", local_files_only=True)
config = hf_hub_download("ropo-test/tiny-llama", "config.json")
print(json.dumps({"folder": folder, "config": open(config).read()}))
"#;
    let output = std::process::Command::new(python)
        .args(["-c", script])
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("ROPO_PYTHON runs");
    assert!(
        output.status.success(),
        "huggingface_hub failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(read["folder"].as_str().unwrap(), snapshot.to_str().unwrap());
    let config = std::fs::read_to_string(snapshot.join("config.json")).unwrap();
    assert_eq!(read["config"].as_str().unwrap(), config);
}

#[test]
fn each_failure_is_one_clear_error() {
    let files = tiny_llama_files();
    let mut private = ServedRepo::new(RepoKind::Model, "ropo-test/private", files.clone());
    private.access = Access::Token("hf_secret".into());
    let mut gated = ServedRepo::new(RepoKind::Model, "ropo-test/gated", files.clone());
    gated.access = Access::Gated;
    let mut cut = ServedRepo::new(RepoKind::Model, "ropo-test/cut", files.clone());
    cut.fault = Fault::CutShort;
    let mut corrupt = ServedRepo::new(RepoKind::Model, "ropo-test/corrupt", files.clone());
    corrupt.fault = Fault::Corrupt;
    let server = HubServer::start(vec![private, gated, cut, corrupt]);
    let scratch = Scratch::new("errors");
    let cache = scratch.0.join("hub");
    let anonymous = hub(server.endpoint(), &cache, None, false);
    let fetch = |hub: &Hub, text: &str| {
        hub.snapshot(&id(text), RepoKind::Model, &model_files)
            .map(|_| ())
            .map_err(|e| (e.to_string(), e))
    };

    let (message, error) = fetch(&anonymous, "ropo-test/missing").unwrap_err();
    assert!(matches!(error, HubError::NotFound { .. }), "{message}");
    assert!(
        message.contains("repository ropo-test/missing") && message.contains("RepoNotFound"),
        "{message}"
    );
    assert!(message.contains("HF_TOKEN"), "{message}");

    let (message, _) = fetch(&anonymous, "ropo-test/cut@v9").unwrap_err();
    assert!(
        message.contains("revision v9 of ropo-test/cut"),
        "{message}"
    );

    let (message, error) = fetch(&anonymous, "ropo-test/private").unwrap_err();
    assert!(matches!(error, HubError::Unauthorized { .. }), "{message}");
    assert!(
        message.contains("ropo-test/private") && message.contains("HF_TOKEN"),
        "{message}"
    );
    let with_token = hub(server.endpoint(), &cache, Some("hf_secret"), false);
    fetch(&with_token, "ropo-test/private").unwrap();

    let (message, error) = fetch(&anonymous, "ropo-test/gated").unwrap_err();
    assert!(matches!(error, HubError::Forbidden { .. }), "{message}");
    assert!(
        message.contains("GatedRepo") && message.contains("accept its terms"),
        "{message}"
    );

    let (message, error) = fetch(&anonymous, "ropo-test/cut").unwrap_err();
    assert!(matches!(error, HubError::Interrupted { .. }), "{message}");
    assert!(
        message.contains("ropo-test/cut@main/") && message.contains("run again"),
        "{message}"
    );
    let snapshots = cache.join("models--ropo-test--cut/snapshots");
    let kept: Vec<_> = walk(&snapshots)
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    assert!(
        kept.is_empty(),
        "a damaged download stayed in the cache: {kept:?}"
    );

    let (message, error) = fetch(&anonymous, "ropo-test/corrupt").unwrap_err();
    assert!(matches!(error, HubError::Damaged { .. }), "{message}");
    assert!(
        message.contains("config.json: the download is damaged: git blob id")
            && message.contains("removed from the cache"),
        "{message}"
    );
    let repo = cache.join("models--ropo-test--corrupt");
    let files = [walk(&repo.join("blobs")), walk(&repo.join("snapshots"))].concat();
    let left: Vec<_> = files.iter().collect();
    assert!(
        left.is_empty(),
        "a damaged download stayed in the cache: {left:?}"
    );

    let offline = hub(server.endpoint(), &scratch.0.join("empty"), None, true);
    let (message, error) = fetch(&offline, "ropo-test/private").unwrap_err();
    assert!(matches!(error, HubError::NotCached { .. }), "{message}");
    assert!(message.contains("HF_HUB_OFFLINE"), "{message}");
}

#[test]
fn a_repository_with_nothing_ropo_reads_is_refused_naming_its_files() {
    let files = vec![("pytorch_model.bin".to_owned(), b"pickle".to_vec())];
    let server = HubServer::start(vec![ServedRepo::new(
        RepoKind::Model,
        "ropo-test/old",
        files,
    )]);
    let scratch = Scratch::new("nothing");
    let error = hub(server.endpoint(), &scratch.0, None, false)
        .snapshot(&id("ropo-test/old"), RepoKind::Model, &model_files)
        .unwrap_err()
        .to_string();
    assert!(error.contains("pytorch_model.bin"), "{error}");
}

/// Every file and link under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}
