//! Hub ids: `org/name`, optionally followed by `@revision` (a branch, tag or commit).

use std::fmt;

/// A repository on the Hub and the revision to read: `org/name[@revision]`, the revision
/// `main` when none is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// A branch, tag or commit hash.
    pub revision: String,
}

impl HubId {
    /// The id `text` names, or `None` when it is not one: exactly two non-empty segments of
    /// letters, digits, `-`, `_` and `.` (not `.` or `..`), and, after an `@`, a revision of
    /// those characters and `/`. A path that exists locally should be read as a path first.
    pub fn parse(text: &str) -> Option<HubId> {
        let (repo, revision) = match text.split_once('@') {
            Some((repo, revision)) => (repo, revision),
            None => (text, "main"),
        };
        let segment_ok = |segment: &str| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let (org, name) = repo.split_once('/')?;
        let revision_ok = !revision.is_empty() && revision.split('/').all(segment_ok);
        (segment_ok(org) && segment_ok(name) && revision_ok).then(|| HubId {
            repo: repo.to_owned(),
            revision: revision.to_owned(),
        })
    }

    /// Whether the revision is a full commit hash (40 hex digits), which names one snapshot
    /// for ever.
    pub fn is_commit(&self) -> bool {
        self.revision.len() == 40 && self.revision.chars().all(|c| c.is_ascii_hexdigit())
    }
}

impl fmt::Display for HubId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repo, self.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_with_and_without_a_revision() {
        let id = HubId::parse("Qwen/Qwen2.5-0.5B-Instruct").unwrap();
        assert_eq!(
            (id.repo.as_str(), id.revision.as_str()),
            ("Qwen/Qwen2.5-0.5B-Instruct", "main")
        );
        let id = HubId::parse("trl-lib/ultrafeedback_binarized@refs/convert/parquet").unwrap();
        assert_eq!(id.revision, "refs/convert/parquet");
        assert!(!id.is_commit());
        assert!(HubId::parse(&format!(
            "a/b@{}",
            "0123456789abcdef".repeat(3)[..40].to_owned()
        ))
        .unwrap()
        .is_commit());
    }

    #[test]
    fn paths_and_malformed_ids_are_not_ids() {
        for text in [
            "gpt2",
            "/abs/path",
            "./rel/path",
            "a/b/c",
            "../x",
            "a/",
            "/b",
            "a/b@",
            "a b/c",
            "runs/mine/model.safetensors",
            "C:\\models\\x",
            "a/b@x//y",
        ] {
            assert_eq!(HubId::parse(text), None, "{text}");
        }
    }
}
