//! The cache's layout, shared with Python's `huggingface_hub`, and the checks that keep every
//! path the Hub's answers name inside it.
//!
//! A repository lives in `{cache}/{models|datasets}--org--name/` as `blobs/{hash}` (each file's
//! bytes once, named by its LFS SHA-256 or its git blob id), `snapshots/{commit}/{path}` (links
//! to the blobs) and `refs/{revision}` (the commit a branch or tag pointed to). Locks sit in
//! `{cache}/.locks/{repo folder}/{hash}.lock`, where `huggingface_hub` keeps its own, so the two
//! never download the same blob at once. The hash, the commit and the paths all come from the
//! Hub; each is checked here ([`commit`], [`blob_name`], [`relative`]) before it becomes a path,
//! so no answer can make ropo write outside the repository's folder.

use std::fs::File;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::{HubError, HubId, RepoKind};

/// A repository's folder in the cache, and where its blobs, snapshots, refs and locks go.
pub(crate) struct RepoCache {
    /// `{cache}/{models|datasets}--org--name`.
    pub folder: PathBuf,
    /// `{cache}/.locks/{models|datasets}--org--name`.
    locks: PathBuf,
}

impl RepoCache {
    /// The folder of `id`'s repository in `cache`; an error where the id's name is not one
    /// plain `org/name` (a [`HubId`] built without [`HubId::parse`]).
    pub fn new(cache: &Path, id: &HubId, kind: RepoKind) -> Result<Self, HubError> {
        let segments: Vec<&str> = id.repo.split('/').collect();
        if segments.len() != 2 || relative(&id.repo).is_err() || relative(&id.revision).is_err() {
            return Err(HubError::Protocol {
                id: id.to_string(),
                detail: "a repository is named org/name, a revision by plain names".into(),
            });
        }
        let prefix = match kind {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        };
        let name = format!("{prefix}--{}--{}", segments[0], segments[1]);
        Ok(Self {
            folder: cache.join(&name),
            locks: cache.join(".locks").join(name),
        })
    }

    /// `snapshots/{commit}`.
    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.folder.join("snapshots").join(commit)
    }

    /// `blobs/{blob}`.
    pub fn blob(&self, blob: &str) -> PathBuf {
        self.folder.join("blobs").join(blob)
    }

    /// An exclusive lock on `blob`, held until the file is dropped; it waits while another
    /// process (ropo or `huggingface_hub`) holds it.
    pub fn lock(&self, blob: &str) -> Result<File, HubError> {
        let path = self.locks.join(format!("{blob}.lock"));
        let io = |source| HubError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.locks).map_err(io)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(file)
    }

    /// The commit `revision` pointed to when it was last resolved, if the cache knows.
    pub fn read_ref(&self, revision: &str) -> Option<String> {
        let path = self.folder.join("refs").join(relative(revision).ok()?);
        let text = std::fs::read_to_string(path).ok()?;
        commit(text.trim()).ok().map(str::to_owned)
    }

    /// Records that `revision` points to `commit` (`refs/{revision}`, written whole).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        let path = self
            .folder
            .join("refs")
            .join(relative(revision).map_err(|problem| HubError::Protocol {
                id: revision.to_owned(),
                detail: format!("the revision {problem}"),
            })?);
        let io = |source| HubError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let temporary = path.with_extension("tmp-ropo");
        let mut file = File::create(&temporary).map_err(io)?;
        file.write_all(commit.as_bytes()).map_err(io)?;
        drop(file);
        std::fs::rename(&temporary, &path).map_err(io)
    }

    /// Makes `snapshots/{commit}/{file}` name `blobs/{blob}`: a relative link where links
    /// exist (as `huggingface_hub` makes), a copy elsewhere.
    pub fn link(&self, commit: &str, file: &Path, blob: &str) -> Result<(), HubError> {
        let path = self.snapshot(commit).join(file);
        let io = |source| HubError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        if path.symlink_metadata().is_ok() {
            std::fs::remove_file(&path).map_err(io)?;
        }
        #[cfg(unix)]
        {
            let up = "../".repeat(file.components().count() + 1);
            std::os::unix::fs::symlink(format!("{up}blobs/{blob}"), &path).map_err(io)
        }
        #[cfg(not(unix))]
        {
            std::fs::copy(self.blob(blob), &path)
                .map(|_| ())
                .map_err(io)
        }
    }
}

/// `text` when it is a commit hash (40 hexadecimal digits); otherwise what is wrong with it.
pub(crate) fn commit(text: &str) -> Result<&str, String> {
    if text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text)
    } else {
        Err(format!(
            "{text:?} is not a commit hash (40 hexadecimal digits)"
        ))
    }
}

/// `text` when it can name a blob: a git blob id (40 hexadecimal digits) or a SHA-256 (64).
pub(crate) fn blob_name(text: &str) -> Result<&str, String> {
    if matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text)
    } else {
        Err(format!(
            "{text:?} is not a blob hash (40 or 64 hexadecimal digits)"
        ))
    }
}

/// `text` as a path below a folder: `/`-separated plain names, none empty, `.` or `..`, no
/// `\`, `:` or NUL, not absolute. Otherwise what is wrong with it.
pub(crate) fn relative(text: &str) -> Result<PathBuf, String> {
    let plain = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && !segment.contains(['\\', ':', '\0'])
    };
    let path = PathBuf::from(text);
    let only_names = path
        .components()
        .all(|component| matches!(component, Component::Normal(_)));
    if text.split('/').all(plain) && only_names {
        Ok(path)
    } else {
        Err(format!("{text:?} is not a plain relative path"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_become_paths() {
        for good in [
            "config.json",
            "data/train-00000-of-00001.parquet",
            "a.b/c-d_e",
        ] {
            assert_eq!(relative(good).unwrap(), Path::new(good));
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "C:\\x",
            "c:x",
            "a\\..\\b",
            "a\0b",
            "a/",
        ] {
            assert!(relative(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commits_and_blobs_are_hexadecimal_hashes() {
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        assert!(commit(sha1).is_ok() && blob_name(sha1).is_ok());
        assert!(blob_name(&"ab".repeat(32)).is_ok());
        for bad in [
            "/some/abs/path",
            "../../../../tmp/x",
            "main",
            &sha1[..39],
            "0123456789abcdef0123456789abcdef0123456g",
        ] {
            assert!(commit(bad).is_err() && blob_name(bad).is_err(), "{bad}");
        }
    }
}
