//! A hostile Hub (issue 37): answers that name paths outside the cache (in `ETag`,
//! `X-Repo-Commit`, the listing's commit, file names and blob ids), a server that never
//! answers or stalls mid-file, and bodies without end. Each ends in one error (or, for a body
//! longer than announced, the file cut at its size) within seconds, and nothing is written
//! outside the cache.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ropo_hub::test_server::{Fault, HubServer, ServedRepo};
use ropo_hub::{model_files, Hub, HubConfig, HubError, HubId, RepoKind};

const REPO: &str = "ropo-test/hostile";

/// A scratch folder holding `hub/` (the cache) and `outside/` (where a hostile answer points).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("ropo-hostile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("outside")).unwrap();
        Scratch(path)
    }

    fn cache(&self) -> PathBuf {
        self.0.join("hub")
    }

    fn outside(&self) -> PathBuf {
        self.0.join("outside")
    }

    /// Every file, link and folder under the scratch folder that is not inside the cache.
    fn written_outside(&self) -> Vec<PathBuf> {
        walk(&self.0)
            .into_iter()
            .filter(|path| !path.starts_with(self.cache()) && path != &self.outside())
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            let mut found = vec![path.clone()];
            if path.is_dir() && !path.is_symlink() {
                found.extend(walk(&path));
            }
            found
        })
        .collect()
}

fn files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("config.json".into(), br#"{"model_type": "llama"}"#.to_vec()),
        ("model.safetensors".into(), vec![7u8; 3 << 20]),
    ]
}

/// Fetches [`REPO`] served with `fault` into `scratch`'s cache, with `timeout` for both waits.
fn fetch(scratch: &Scratch, fault: Fault, timeout: u64) -> Result<PathBuf, HubError> {
    let mut served = ServedRepo::new(RepoKind::Model, REPO, files());
    served.fault = fault;
    let server = HubServer::start(vec![served]);
    let config = HubConfig {
        endpoint: server.endpoint().to_owned(),
        cache: scratch.cache(),
        token: None,
        offline: false,
        etag_timeout: Duration::from_secs(timeout),
        download_timeout: Duration::from_secs(timeout),
    };
    let hub = Hub::new(config, false).unwrap();
    hub.snapshot(&HubId::parse(REPO).unwrap(), RepoKind::Model, &model_files)
}

#[test]
fn paths_in_the_servers_headers_are_never_written() {
    let scratch = Scratch::new("headers");
    for target in [
        scratch.outside().join("etag").display().to_string(),
        "../../../outside/etag".to_owned(),
    ] {
        let snapshot = fetch(&scratch, Fault::PathHeaders(target), 10).unwrap();
        assert!(
            snapshot.starts_with(scratch.cache()),
            "{}",
            snapshot.display()
        );
        assert_eq!(
            std::fs::read(snapshot.join("model.safetensors")).unwrap(),
            files()[1].1
        );
        assert_eq!(scratch.written_outside(), Vec::<PathBuf>::new());
    }
}

#[test]
fn paths_in_the_listing_are_refused_before_anything_is_written() {
    let scratch = Scratch::new("listing");
    let absolute = scratch.outside().join("x").display().to_string();
    let cases = [
        (Fault::PathCommit(absolute.clone()), "sha"),
        (Fault::PathCommit("../../../outside/x".into()), "sha"),
        (Fault::PathFile(format!("{absolute}/config.json")), "file"),
        (Fault::PathFile("../../outside/config.json".into()), "file"),
        (Fault::PathBlob("../../../outside/blob".into()), "blob"),
        (Fault::PathBlob(absolute.clone()), "blob"),
    ];
    for (fault, field) in cases {
        let shown = format!("{fault:?}");
        let error = fetch(&scratch, fault, 10).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, HubError::Protocol { .. }),
            "{shown}: {message}"
        );
        assert!(
            message.contains(REPO)
                && message.contains(field)
                && message.contains("nothing was written"),
            "{shown}: {message}"
        );
        assert!(
            !scratch
                .cache()
                .join("models--ropo-test--hostile/blobs")
                .exists(),
            "{shown}"
        );
        assert_eq!(scratch.written_outside(), Vec::<PathBuf>::new(), "{shown}");
    }
}

#[test]
fn a_hub_that_never_answers_times_out_naming_the_variable() {
    let scratch = Scratch::new("silent");
    let started = Instant::now();
    let error = fetch(&scratch, Fault::Silent, 1).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, HubError::TimedOut { .. }), "{message}");
    assert!(
        message.contains("within 1 s") && message.contains("HF_HUB_ETAG_TIMEOUT"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_download_that_stalls_times_out_and_resumes_from_what_came() {
    let scratch = Scratch::new("stall");
    let started = Instant::now();
    let error = fetch(&scratch, Fault::Stall, 1).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, HubError::TimedOut { .. }), "{message}");
    assert!(
        message.contains("ropo-test/hostile@main/config.json")
            && message.contains("HF_HUB_DOWNLOAD_TIMEOUT"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let blobs = scratch.cache().join("models--ropo-test--hostile/blobs");
    let partial: Vec<PathBuf> = walk(&blobs)
        .into_iter()
        .filter(|path| path.to_str().unwrap().ends_with(".incomplete"))
        .collect();
    assert_eq!(partial.len(), 1, "{partial:?}");
    let kept = std::fs::metadata(&partial[0]).unwrap().len();
    assert_eq!(kept, files()[0].1.len() as u64 / 2);

    // The next run, against a server that answers, resumes and completes the same blob.
    let snapshot = fetch(&scratch, Fault::None, 10).unwrap();
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        files()[1].1
    );
    assert!(!partial[0].exists());
}

#[test]
fn a_body_longer_than_announced_is_cut_at_its_size() {
    let scratch = Scratch::new("endless");
    let started = Instant::now();
    let snapshot = fetch(&scratch, Fault::Endless, 10).unwrap();
    for (name, bytes) in files() {
        assert_eq!(
            std::fs::read(snapshot.join(&name)).unwrap(),
            bytes,
            "{name}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let blobs = scratch.cache().join("models--ropo-test--hostile/blobs");
    let stored: u64 = walk(&blobs)
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    let expected: u64 = files().iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(stored, expected);
}

#[test]
fn a_listing_without_end_is_refused_at_its_cap() {
    let scratch = Scratch::new("endless-listing");
    let error = fetch(&scratch, Fault::EndlessListing, 10).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, HubError::Protocol { .. }) && message.contains("longer than 64 MiB"),
        "{message}"
    );
    assert!(!scratch.cache().join("models--ropo-test--hostile").exists());
}
