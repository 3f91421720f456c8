//! Fetching a repository's files into the shared cache, and finding them there offline.
//!
//! Every request has the connect and read timeouts of [`HubConfig`]; the listing is read into
//! memory up to [`LISTING_BYTES`]; a file is read up to the size the listing announces
//! ([`crate::download`]). Paths come only from checked values: the repository id, the
//! revision, the listing's commit and file names, and each file's LFS SHA-256 or git blob id
//! ([`crate::cache`]). What the server puts in `ETag`, `X-Repo-Commit` or a redirect never
//! names a path.

use std::io::{ErrorKind, Read};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::cache::{self, RepoCache};
use crate::download::{self, Expected, Failure, Hash};
use crate::{HubConfig, HubError, HubId};

/// The most bytes of a repository listing read into memory (a listing of 100,000 files is
/// about 30 MB).
pub const LISTING_BYTES: u64 = 64 << 20;

/// What kind of repository an id names (the Hub keeps models and datasets apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A model repository (`/org/name`).
    Model,
    /// A dataset repository (`/datasets/org/name`).
    Dataset,
}

/// The Hub's repository listing (`/api/{models,datasets}/org/name/revision/rev?blobs=true`).
#[derive(Deserialize)]
struct RepoInfo {
    sha: String,
    siblings: Vec<Sibling>,
}

/// One file of a repository as the listing gives it.
#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<Lfs>,
}

/// An LFS file's content hash and size.
#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

/// A file to fetch, its listing checked: its path, blob name and size.
struct Wanted<'a> {
    path: PathBuf,
    name: &'a str,
    blob: &'a str,
    size: u64,
    hash: Hash<'a>,
}

/// A client of the Hub and its cache (see the crate's doc).
pub struct Hub {
    config: HubConfig,
    progress: bool,
    /// Listings: connect and read within `etag_timeout`.
    listing: ureq::Agent,
    /// Downloads: connect and read within `download_timeout`.
    files: ureq::Agent,
}

impl Hub {
    /// A client with `config`; `progress` draws a bar per downloaded file on stderr.
    pub fn new(config: HubConfig, progress: bool) -> Result<Self, HubError> {
        let agent = |timeout: Duration| {
            ureq::AgentBuilder::new()
                .timeout_connect(timeout)
                .timeout_read(timeout)
                .timeout_write(timeout)
                .user_agent(concat!("ropo/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Ok(Self {
            listing: agent(config.etag_timeout),
            files: agent(config.download_timeout),
            config,
            progress,
        })
    }

    /// A client configured from the environment ([`HubConfig::from_env`]).
    pub fn from_env(progress: bool) -> Result<Self, HubError> {
        Self::new(HubConfig::from_env()?, progress)
    }

    /// The snapshot folder of `id` in the cache, holding every file of the repository for
    /// which `wanted` (given the file's path in the repository) is true. Online, the Hub
    /// lists the revision's files, those missing from the cache are downloaded and checked,
    /// and `refs/{revision}` is pointed at the commit; offline, the cache's snapshot of the
    /// revision is returned as it is.
    pub fn snapshot(
        &self,
        id: &HubId,
        kind: RepoKind,
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<PathBuf, HubError> {
        let repo = RepoCache::new(&self.config.cache, id, kind)?;
        if self.config.offline {
            return self.cached_snapshot(id, &repo);
        }
        let info = self.list(id, kind)?;
        let unsafe_listing = |detail: String| HubError::Protocol {
            id: id.to_string(),
            detail: format!("the repository listing names {detail}; nothing was written"),
        };
        let commit = cache::commit(&info.sha).map_err(|e| unsafe_listing(format!("sha {e}")))?;
        for file in &info.siblings {
            cache::relative(&file.rfilename)
                .map_err(|e| unsafe_listing(format!("the file {e}")))?;
        }
        let mut files = Vec::new();
        for file in info.siblings.iter().filter(|file| wanted(&file.rfilename)) {
            files.push(checked(file).map_err(unsafe_listing)?);
        }
        if files.is_empty() {
            let listed: Vec<&str> = info
                .siblings
                .iter()
                .take(12)
                .map(|f| f.rfilename.as_str())
                .collect();
            return Err(HubError::NothingToFetch {
                id: id.to_string(),
                listed: listed.join(", "),
            });
        }
        let snapshot = repo.snapshot(commit);
        for file in &files {
            let here = snapshot.join(&file.path);
            let whole = std::fs::metadata(&here).is_ok_and(|m| m.is_file() && m.len() == file.size);
            if !whole {
                self.fetch(id, kind, &repo, commit, file)?;
            }
        }
        repo.write_ref(&id.revision, commit)?;
        Ok(snapshot)
    }

    /// The listing of `id`'s revision, read up to [`LISTING_BYTES`].
    fn list(&self, id: &HubId, kind: RepoKind) -> Result<RepoInfo, HubError> {
        let api = match kind {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        };
        let url = format!(
            "{}/api/{api}/{}/revision/{}?blobs=true",
            self.config.endpoint,
            id.repo,
            encode(&id.revision, false)
        );
        let what = format!("{id} (its listing)");
        let timed_out = || self.timed_out(&what, self.config.etag_timeout, "HF_HUB_ETAG_TIMEOUT");
        let response =
            self.authorized(self.listing.get(&url))
                .call()
                .map_err(|error| match error {
                    ureq::Error::Transport(t) if download::timed_out(&t) => timed_out(),
                    error => self.request_error(id, None, error),
                })?;
        let mut body = Vec::new();
        response
            .into_reader()
            .take(LISTING_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|error| match error.kind() {
                ErrorKind::TimedOut | ErrorKind::WouldBlock => timed_out(),
                _ => HubError::Interrupted {
                    file: what.clone(),
                    detail: error.to_string(),
                },
            })?;
        if body.len() as u64 > LISTING_BYTES {
            return Err(HubError::Protocol {
                id: id.to_string(),
                detail: format!(
                    "the repository listing is longer than {} MiB",
                    LISTING_BYTES >> 20
                ),
            });
        }
        serde_json::from_slice(&body).map_err(|e| HubError::Protocol {
            id: id.to_string(),
            detail: format!("the repository listing is not the JSON expected: {e}"),
        })
    }

    /// Downloads `file` into its blob (once, under the blob's lock) and links it into the
    /// snapshot of `commit`.
    fn fetch(
        &self,
        id: &HubId,
        kind: RepoKind,
        repo: &RepoCache,
        commit: &str,
        file: &Wanted,
    ) -> Result<(), HubError> {
        let blob = repo.blob(file.blob);
        let io = |source| HubError::Io {
            path: blob.clone(),
            source,
        };
        std::fs::create_dir_all(repo.folder.join("blobs")).map_err(io)?;
        let _lock = repo.lock(file.blob)?;
        let cached = std::fs::metadata(&blob).is_ok_and(|m| m.is_file() && m.len() == file.size);
        if !cached {
            let prefix = match kind {
                RepoKind::Model => "",
                RepoKind::Dataset => "datasets/",
            };
            let url = format!(
                "{}/{prefix}{}/resolve/{commit}/{}",
                self.config.endpoint,
                id.repo,
                encode(file.name, true)
            );
            let request = |from: u64| {
                let request = self.authorized(self.files.get(&url));
                let request = if from > 0 {
                    request.set("Range", &format!("bytes={from}-"))
                } else {
                    request
                };
                request.call().map_err(Box::new)
            };
            let expected = Expected {
                size: file.size,
                hash: file.hash,
            };
            let label = self.progress.then_some(file.name);
            let name = format!("{id}/{}", file.name);
            download::download(&request, &blob, &expected, label).map_err(
                |failure| match failure {
                    Failure::Request(error) => self.request_error(id, Some(file.name), *error),
                    Failure::TimedOut => self.timed_out(
                        &name,
                        self.config.download_timeout,
                        "HF_HUB_DOWNLOAD_TIMEOUT",
                    ),
                    Failure::Interrupted(detail) => HubError::Interrupted {
                        file: name.clone(),
                        detail,
                    },
                    Failure::Damaged(problem) => HubError::Damaged {
                        file: name.clone(),
                        problem,
                    },
                    Failure::Io(path, source) => HubError::Io { path, source },
                },
            )?;
        }
        repo.link(commit, &file.path, file.blob)
    }

    /// `request` with the token, where there is one.
    fn authorized(&self, request: ureq::Request) -> ureq::Request {
        match &self.config.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    fn timed_out(&self, what: &str, limit: Duration, variable: &'static str) -> HubError {
        HubError::TimedOut {
            what: what.to_owned(),
            endpoint: self.config.endpoint.clone(),
            seconds: limit.as_secs(),
            variable,
        }
    }

    /// The cached snapshot of `id`: the commit its ref names (or the commit it is).
    fn cached_snapshot(&self, id: &HubId, repo: &RepoCache) -> Result<PathBuf, HubError> {
        let not_cached = || HubError::NotCached {
            id: id.to_string(),
            cache: self.config.cache.clone(),
        };
        let commit = if id.is_commit() {
            id.revision.clone()
        } else {
            repo.read_ref(&id.revision).ok_or_else(not_cached)?
        };
        let snapshot = repo.snapshot(&commit);
        if snapshot.is_dir() {
            Ok(snapshot)
        } else {
            Err(not_cached())
        }
    }

    /// A request's failure as the Hub explains it (`X-Error-Code`, status).
    fn request_error(&self, id: &HubId, file: Option<&str>, error: ureq::Error) -> HubError {
        let response = match error {
            ureq::Error::Status(_, response) => response,
            ureq::Error::Transport(transport) => {
                return HubError::Unreachable {
                    endpoint: self.config.endpoint.clone(),
                    detail: transport.to_string(),
                }
            }
        };
        let status = response.status();
        let code = response.header("x-error-code").map(str::to_owned);
        let message = response.header("x-error-message").map(str::to_owned);
        let detail = [code.clone(), message]
            .into_iter()
            .flatten()
            .map(|part| format!(", {part}"))
            .collect::<String>();
        let what = match (code.as_deref(), file) {
            (Some("RevisionNotFound"), _) => {
                Some(format!("revision {} of {}", id.revision, id.repo))
            }
            (Some("EntryNotFound"), Some(file)) => Some(format!("file {file} of {id}")),
            (Some("RepoNotFound"), _) => Some(format!("repository {}", id.repo)),
            (None, Some(file)) if status == 404 => Some(format!("file {file} of {id}")),
            (None, None) if status == 404 => Some(format!("{id}")),
            _ => None,
        };
        match (what, status) {
            (Some(what), _) => HubError::NotFound {
                what,
                endpoint: self.config.endpoint.clone(),
                code: code.unwrap_or_else(|| format!("HTTP {status}")),
                hint: if self.config.token.is_none() {
                    "; if it is private, set HF_TOKEN"
                } else {
                    ""
                },
            },
            (None, 401) => HubError::Unauthorized { id: id.to_string() },
            (None, 403) => HubError::Forbidden {
                id: id.to_string(),
                detail,
            },
            (None, status) => HubError::Http {
                id: match file {
                    Some(file) => format!("{id}/{file}"),
                    None => id.to_string(),
                },
                status,
                detail,
            },
        }
    }
}

/// A listed file checked before any of it becomes a path: a plain relative name, a blob name
/// that is a hash, and a size. What is wrong, as a phrase, otherwise. The blob is named as
/// `huggingface_hub` names it: an LFS file by its SHA-256, a git file by its blob id.
fn checked(file: &Sibling) -> Result<Wanted<'_>, String> {
    let name = file.rfilename.as_str();
    let path = cache::relative(name).map_err(|e| format!("the file {e}"))?;
    let (blob, size) = match (&file.lfs, &file.blob_id) {
        (Some(lfs), _) => (lfs.sha256.as_str(), lfs.size),
        (None, Some(blob_id)) => {
            let size = file.size.ok_or_else(|| format!("no size for {name:?}"))?;
            (blob_id.as_str(), size)
        }
        (None, None) => return Err(format!("neither a blobId nor an LFS hash for {name:?}")),
    };
    let blob = cache::blob_name(blob).map_err(|e| format!("for {name:?} the blob {e}"))?;
    let hash = match file.lfs {
        Some(_) => Hash::Sha256(blob),
        None => Hash::GitBlob(blob),
    };
    Ok(Wanted {
        path,
        name,
        blob,
        size,
        hash,
    })
}

/// `text` percent-encoded for a URL path: every byte but letters, digits and `-._~` (and `/`
/// between a file's folders, where `keep_slash`).
fn encode(text: &str, keep_slash: bool) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            b'/' if keep_slash => "/".to_owned(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
