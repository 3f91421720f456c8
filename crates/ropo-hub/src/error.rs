use std::path::PathBuf;

use thiserror::Error;

/// Why a Hub id could not be resolved. Each message names the repository (with its
/// revision) or the file, and says what to do.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HubError {
    /// The repository, revision or file does not exist (or is private and no token was given).
    #[error("{what} not found on {endpoint} ({code}){hint}")]
    NotFound {
        /// `repository org/name`, `revision v2 of org/name`, `file f of org/name@main`.
        what: String,
        /// The Hub's address.
        endpoint: String,
        /// The Hub's `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) or
        /// the HTTP status.
        code: String,
        /// A hint: how to give a token when none was sent.
        hint: &'static str,
    },

    /// The Hub asks for a token (HTTP 401).
    #[error("{id}: the Hub asks for a token (HTTP 401: a private or gated repository): set HF_TOKEN or run `huggingface-cli login`")]
    Unauthorized {
        /// The repository.
        id: String,
    },

    /// The Hub refuses the token (HTTP 403).
    #[error("{id}: access denied (HTTP 403{detail}): for a gated repository, accept its terms on the Hub with the account whose token HF_TOKEN holds")]
    Forbidden {
        /// The repository.
        id: String,
        /// `, GatedRepo: …` where the Hub says more.
        detail: String,
    },

    /// Any other HTTP error status.
    #[error("{id}: the Hub answered HTTP {status}{detail}")]
    Http {
        /// The repository (and file).
        id: String,
        /// The HTTP status.
        status: u16,
        /// `: …` where the Hub says more.
        detail: String,
    },

    /// No connection to the Hub.
    #[error("cannot reach {endpoint}: {detail} (no network? set HF_HUB_OFFLINE=1 to use the cache only)")]
    Unreachable {
        /// The Hub's address.
        endpoint: String,
        /// What the connection attempt said.
        detail: String,
    },

    /// The Hub connected but did not answer in time, or did not connect in time.
    #[error("{what}: {endpoint} did not answer within {seconds} s; on a slow network raise {variable} (seconds)")]
    TimedOut {
        /// The repository listing or file waited for.
        what: String,
        /// The Hub's address.
        endpoint: String,
        /// The limit that passed.
        seconds: u64,
        /// The environment variable that sets it (`HF_HUB_ETAG_TIMEOUT`, `HF_HUB_DOWNLOAD_TIMEOUT`).
        variable: &'static str,
    },

    /// An environment variable of the Hub's holds a value that cannot be used.
    #[error("{variable}={value}: expected {expected}")]
    Setting {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What it should hold.
        expected: &'static str,
    },

    /// A download that ended early or does not match what the Hub lists.
    #[error("{file}: the download is damaged: {problem}; it was removed from the cache, run again to fetch it anew")]
    Damaged {
        /// `org/name@rev/path`.
        file: String,
        /// `12 of 40 bytes`, `SHA-256 … where the Hub lists …`.
        problem: String,
    },

    /// A download that stopped before its end (the connection dropped); what was received is
    /// kept as `blobs/*.incomplete` (never more than the size the Hub lists) and the next run
    /// resumes from it.
    #[error("{file}: the download stopped before its end ({detail}); run again to resume it")]
    Interrupted {
        /// `org/name@rev/path`.
        file: String,
        /// What the connection said.
        detail: String,
    },

    /// Offline, and the cache does not hold the revision.
    #[error("{id} is not in the cache {} and HF_HUB_OFFLINE forbids downloading it", cache.display())]
    NotCached {
        /// The repository and revision.
        id: String,
        /// The cache folder looked in.
        cache: PathBuf,
    },

    /// The repository holds none of the files wanted.
    #[error("{id}: none of its files is one ropo reads (it holds: {listed})")]
    NothingToFetch {
        /// The repository and revision.
        id: String,
        /// The files the Hub lists (the first few).
        listed: String,
    },

    /// The Hub's answer is not what its API documents.
    #[error("{id}: unexpected answer from the Hub: {detail}")]
    Protocol {
        /// The repository (and file).
        id: String,
        /// What was wrong.
        detail: String,
    },

    /// A file of the cache could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}
