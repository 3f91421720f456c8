//! Fetching a repository's files into the shared cache, and finding them there offline.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{HubConfig, HubError, HubId};

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
    lfs: Option<Lfs>,
}

/// An LFS file's content hash and size.
#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

/// A client of the Hub and its cache (see the crate's doc).
pub struct Hub {
    config: HubConfig,
    api: Api,
}

impl Hub {
    /// A client with `config`; `progress` draws a bar per downloaded file on stderr.
    pub fn new(config: HubConfig, progress: bool) -> Result<Self, HubError> {
        let api = ApiBuilder::from_cache(Cache::new(config.cache.clone()))
            .with_endpoint(config.endpoint.clone())
            .with_token(config.token.clone())
            .with_progress(progress)
            .build()
            .map_err(|e| HubError::Protocol {
                id: config.endpoint.clone(),
                detail: e.to_string(),
            })?;
        Ok(Self { config, api })
    }

    /// A client configured from the environment ([`HubConfig::from_env`]).
    pub fn from_env(progress: bool) -> Result<Self, HubError> {
        Self::new(HubConfig::from_env(), progress)
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
        let repo = Repo::with_revision(id.repo.clone(), kind.repo_type(), id.revision.clone());
        let folder = self.config.cache.join(repo.folder_name());
        if self.config.offline {
            return self.cached_snapshot(id, &folder);
        }
        let api = self.api.repo(repo.clone());
        let info: RepoInfo = api
            .info_request()
            .query("blobs", "true")
            .call()
            .map_err(|e| self.request_error(id, None, e))?
            .into_json()
            .map_err(|e| HubError::Protocol {
                id: id.to_string(),
                detail: format!("the repository listing is not the JSON expected: {e}"),
            })?;
        let files: Vec<&Sibling> = info
            .siblings
            .iter()
            .filter(|file| wanted(&file.rfilename))
            .collect();
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
        let snapshot = folder.join("snapshots").join(&info.sha);
        for file in files {
            if !is_complete(&snapshot.join(&file.rfilename), file) {
                let path = api.download(&file.rfilename).map_err(|e| match e {
                    ApiError::RequestError(e) => self.request_error(id, Some(&file.rfilename), *e),
                    ApiError::IoError(e) => HubError::Interrupted {
                        file: format!("{id}/{}", file.rfilename),
                        detail: e.to_string(),
                    },
                    other => HubError::Protocol {
                        id: format!("{id}/{}", file.rfilename),
                        detail: other.to_string(),
                    },
                })?;
                check_download(&path, file).map_err(|problem| {
                    discard(&path);
                    HubError::Damaged {
                        file: format!("{id}/{}", file.rfilename),
                        problem,
                    }
                })?;
            }
        }
        Cache::new(self.config.cache.clone())
            .repo(repo)
            .create_ref(&info.sha)
            .map_err(|source| HubError::Io {
                path: folder.join("refs"),
                source,
            })?;
        Ok(snapshot)
    }

    /// The cached snapshot of `id`: the commit its ref names (or the commit it is).
    fn cached_snapshot(&self, id: &HubId, folder: &Path) -> Result<PathBuf, HubError> {
        let not_cached = || HubError::NotCached {
            id: id.to_string(),
            cache: self.config.cache.clone(),
        };
        let commit = if id.is_commit() {
            id.revision.clone()
        } else {
            std::fs::read_to_string(folder.join("refs").join(&id.revision))
                .map_err(|_| not_cached())?
                .trim()
                .to_owned()
        };
        let snapshot = folder.join("snapshots").join(commit);
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

impl RepoKind {
    fn repo_type(self) -> RepoType {
        match self {
            RepoKind::Model => RepoType::Model,
            RepoKind::Dataset => RepoType::Dataset,
        }
    }
}

/// The size the Hub lists for a file.
fn listed_size(file: &Sibling) -> Option<u64> {
    file.lfs.as_ref().map(|lfs| lfs.size).or(file.size)
}

/// Whether the cache already holds `file` whole at `path`.
fn is_complete(path: &Path, file: &Sibling) -> bool {
    match (std::fs::metadata(path), listed_size(file)) {
        (Ok(meta), Some(size)) => meta.is_file() && meta.len() == size,
        (Ok(meta), None) => meta.is_file(),
        (Err(_), _) => false,
    }
}

/// Checks a download against its listing: its size, and an LFS file's SHA-256. The problem,
/// as a phrase, where it differs.
fn check_download(path: &Path, file: &Sibling) -> Result<(), String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if let Some(size) = listed_size(file) {
        if len != size {
            return Err(format!("{len} of the {size} bytes the Hub lists"));
        }
    }
    if let Some(lfs) = &file.lfs {
        let digest = sha256(path).map_err(|e| e.to_string())?;
        if !digest.eq_ignore_ascii_case(&lfs.sha256) {
            return Err(format!(
                "SHA-256 {digest} where the Hub lists {}",
                lfs.sha256
            ));
        }
    }
    Ok(())
}

fn sha256(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buf)?;
        if read == 0 {
            break;
        }
        hasher.update(&buf[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// Removes a damaged download: the snapshot's link and the blob it points to.
fn discard(path: &Path) {
    if let Ok(blob) = std::fs::canonicalize(path) {
        let _ = std::fs::remove_file(blob);
    }
    let _ = std::fs::remove_file(path);
}
