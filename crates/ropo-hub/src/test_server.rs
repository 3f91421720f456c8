//! A loopback HTTP server that speaks the part of the Hub's API that `huggingface_hub` and
//! `hf-hub` use, for tests: the repository listing
//! (`GET /api/{models,datasets}/org/name/revision/rev`) and file resolution
//! (`GET [/datasets]/org/name/resolve/rev/path`, with `ETag`, `X-Repo-Commit` and byte
//! ranges), with the Hub's error codes (`X-Error-Code`), tokens, gated repositories and, on
//! request, a hostile server's answers ([`Fault`]): downloads cut short or corrupted, paths in
//! headers and listings, endless bodies, silence.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::RepoKind;

/// Who may read a served repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Requests with `Authorization: Bearer {token}` only (HTTP 401 otherwise).
    Token(String),
    /// Nobody: a gated repository whose terms were not accepted (HTTP 403, `GatedRepo`).
    Gated,
}

/// What goes wrong when a served repository is listed or downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Nothing.
    None,
    /// Only the first half of the bytes announced is sent before the connection closes.
    CutShort,
    /// Every byte sent is inverted (the listing keeps the true size and SHA-256).
    Corrupt,
    /// Each file's answer gives this path as its `ETag`, `X-Linked-Etag` and `X-Repo-Commit`,
    /// as a server that wants a client to write there would.
    PathHeaders(String),
    /// The listing gives this path as the commit (`sha`).
    PathCommit(String),
    /// The listing names one more file, at this path.
    PathFile(String),
    /// The listing gives this path as every file's blob id and LFS SHA-256.
    PathBlob(String),
    /// Each file's body goes on after its bytes, without end and without a `Content-Length`.
    Endless,
    /// The listing's body never ends (no `Content-Length`).
    EndlessListing,
    /// Every request is read and never answered.
    Silent,
    /// Each file's answer sends its headers and half its bytes, then nothing more.
    Stall,
}

/// A repository the server serves at one commit, reachable as `main` or by its commit.
#[derive(Debug, Clone)]
pub struct ServedRepo {
    /// Model or dataset.
    pub kind: RepoKind,
    /// `org/name`.
    pub id: String,
    /// The commit hash (40 hex digits) the revision `main` points to.
    pub commit: String,
    /// Each file's path in the repository and its bytes.
    pub files: Vec<(String, Vec<u8>)>,
    /// Who may read it.
    pub access: Access,
    /// What goes wrong on download.
    pub fault: Fault,
}

impl ServedRepo {
    /// A public repository of `files` at a commit derived from its id.
    pub fn new(kind: RepoKind, id: &str, files: Vec<(String, Vec<u8>)>) -> Self {
        let commit = hex(&Sha256::digest(id.as_bytes()))[..40].to_owned();
        Self {
            kind,
            id: id.to_owned(),
            commit,
            files,
            access: Access::Public,
            fault: Fault::None,
        }
    }
}

/// The running server; it stops when dropped.
pub struct HubServer {
    endpoint: String,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl HubServer {
    /// Serves `repos` on a free loopback port.
    pub fn start(repos: Vec<ServedRepo>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let repos = Arc::new(repos);
        let thread = {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (repos, requests, stop) =
                                (repos.clone(), requests.clone(), stop.clone());
                            std::thread::spawn(move || serve(stream, &repos, &requests, &stop));
                        }
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            endpoint,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// The base URL to give as `HF_ENDPOINT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request on `stream` (every answer closes the connection); a silent or stalled answer
/// waits until the server stops.
fn serve(stream: TcpStream, repos: &[ServedRepo], requests: &AtomicUsize, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(stream) => stream,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(value.trim().to_owned()),
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    requests.fetch_add(1, Ordering::Relaxed);
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let path = target
        .split('?')
        .next()
        .unwrap_or(target)
        .replace("%2F", "/");
    let answer = route(&path, repos, authorization.as_deref(), range.as_deref());
    let _ = answer.write(stream, stop);
}

/// An HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Bytes of `body` actually sent (fewer than announced for a cut download).
    sent: usize,
    /// What follows the bytes sent.
    after: After,
}

/// What an answer does after its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// Closes the connection.
    Close,
    /// Sends its headers with no `Content-Length` and then `filler` bytes without end.
    Endless { filler: u8 },
    /// Waits, sending nothing more.
    Stall,
    /// Sends nothing at all, not even its status line, and waits.
    Silence,
}

impl Answer {
    fn new(status: u16, body: Vec<u8>) -> Self {
        let sent = body.len();
        Self {
            status,
            headers: Vec::new(),
            body,
            sent,
            after: After::Close,
        }
    }

    fn error(status: u16, code: &str) -> Self {
        let mut answer = Self::new(status, format!("{{\"error\": \"{code}\"}}").into_bytes());
        answer.headers.push(("X-Error-Code".into(), code.into()));
        answer
    }

    fn write(self, mut stream: TcpStream, stop: &AtomicBool) -> std::io::Result<()> {
        let wait = || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        if self.after == After::Silence {
            wait();
            return Ok(());
        }
        let reason = match self.status {
            200 => "OK",
            206 => "Partial Content",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            _ => "Error",
        };
        let mut head = format!("HTTP/1.1 {} {reason}\r\nConnection: close\r\n", self.status);
        if !matches!(self.after, After::Endless { .. }) {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(&self.body[..self.sent])?;
        stream.flush()?;
        match self.after {
            After::Close | After::Silence => Ok(()),
            After::Stall => {
                wait();
                Ok(())
            }
            After::Endless { filler } => {
                let chunk = vec![filler; 1 << 16];
                while !stop.load(Ordering::Relaxed) {
                    stream.write_all(&chunk)?;
                }
                Ok(())
            }
        }
    }
}

/// The answer to `GET path`.
fn route(
    path: &str,
    repos: &[ServedRepo],
    authorization: Option<&str>,
    range: Option<&str>,
) -> Answer {
    let (kind, rest) = if let Some(rest) = path.strip_prefix("/api/models/") {
        (RepoKind::Model, ("api", rest))
    } else if let Some(rest) = path.strip_prefix("/api/datasets/") {
        (RepoKind::Dataset, ("api", rest))
    } else if let Some(rest) = path.strip_prefix("/datasets/") {
        (RepoKind::Dataset, ("resolve", rest))
    } else {
        (RepoKind::Model, ("resolve", path.trim_start_matches('/')))
    };
    let (what, rest) = rest;
    let mut parts = rest.splitn(4, '/');
    let (org, name, verb, tail) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let id = format!("{org}/{name}");
    let Some(repo) = repos.iter().find(|r| r.kind == kind && r.id == id) else {
        return Answer::error(404, "RepoNotFound");
    };
    if repo.fault == Fault::Silent {
        let mut answer = Answer::new(200, Vec::new());
        answer.after = After::Silence;
        return answer;
    }
    match &repo.access {
        Access::Public => {}
        Access::Token(token) if authorization == Some(&format!("Bearer {token}")) => {}
        Access::Token(_) => {
            return Answer::new(401, b"{\"error\": \"Invalid credentials\"}".to_vec())
        }
        Access::Gated => return Answer::error(403, "GatedRepo"),
    }
    let expected_verb = if what == "api" { "revision" } else { "resolve" };
    if verb != expected_verb {
        return Answer::error(404, "EntryNotFound");
    }
    let (revision, file) = if what == "api" {
        (tail, None)
    } else {
        // The revision is one segment here (`main` or a commit).
        match tail.split_once('/') {
            Some((revision, file)) => (revision, Some(file)),
            None => return Answer::error(404, "EntryNotFound"),
        }
    };
    if revision != "main" && revision != repo.commit {
        return Answer::error(404, "RevisionNotFound");
    }
    match file {
        None => listing(repo),
        Some(file) => match repo.files.iter().find(|(path, _)| path == file) {
            None => Answer::error(404, "EntryNotFound"),
            Some((_, bytes)) => resolve(repo, bytes, range),
        },
    }
}

/// The repository listing with sizes and LFS hashes (as with `?blobs=true`).
/// JSON files are plain git files (a blob id, no LFS entry), the rest LFS files, as on the Hub.
fn listing(repo: &ServedRepo) -> Answer {
    let mut siblings: Vec<serde_json::Value> = repo
        .files
        .iter()
        .map(|(path, bytes)| {
            let sha256 = match &repo.fault {
                Fault::PathBlob(path) => path.clone(),
                _ => hex(&Sha256::digest(bytes)),
            };
            if is_git_file(path) {
                serde_json::json!({"rfilename": path, "size": bytes.len(), "blobId": blob_id(repo, bytes)})
            } else {
                serde_json::json!({
                    "rfilename": path,
                    "size": bytes.len(),
                    "blobId": blob_id(repo, bytes),
                    "lfs": {"sha256": sha256, "size": bytes.len(), "pointerSize": 134},
                })
            }
        })
        .collect();
    if let Fault::PathFile(path) = &repo.fault {
        siblings.push(serde_json::json!({"rfilename": path, "size": 2, "blobId": "0".repeat(40)}));
    }
    let sha = match &repo.fault {
        Fault::PathCommit(path) => path.clone(),
        _ => repo.commit.clone(),
    };
    let body = serde_json::json!({"id": repo.id, "sha": sha, "siblings": siblings});
    let mut answer = Answer::new(200, body.to_string().into_bytes());
    if repo.fault == Fault::EndlessListing {
        answer.body.truncate(answer.body.len() / 2);
        answer.sent = answer.body.len();
        answer.after = After::Endless { filler: b' ' };
    }
    answer
        .headers
        .push(("Content-Type".into(), "application/json".into()));
    answer
}

/// A file's bytes, or the range asked for, with the headers clients key the cache on.
fn resolve(repo: &ServedRepo, bytes: &[u8], range: Option<&str>) -> Answer {
    let total = bytes.len();
    let (start, end) = range
        .and_then(|range| range.strip_prefix("bytes="))
        .and_then(|range| range.split_once('-'))
        .map(|(start, end)| {
            let start: usize = start.parse().unwrap_or(0);
            let end: usize = end.parse().unwrap_or(total.saturating_sub(1));
            (start.min(total), end.min(total.saturating_sub(1)))
        })
        .unwrap_or((0, total.saturating_sub(1)));
    let mut body = if total == 0 {
        Vec::new()
    } else {
        bytes[start..=end].to_vec()
    };
    let probe = end == start && range.is_some();
    if repo.fault == Fault::Corrupt && !probe {
        body.iter_mut().for_each(|byte| *byte = !*byte);
    }
    let mut answer = Answer::new(if range.is_some() { 206 } else { 200 }, body);
    if matches!(repo.fault, Fault::CutShort | Fault::Stall) && !probe {
        answer.sent = answer.body.len() / 2;
    }
    answer.after = match repo.fault {
        Fault::Stall => After::Stall,
        Fault::Endless => After::Endless { filler: b'x' },
        _ => After::Close,
    };
    let (etag, commit) = match &repo.fault {
        Fault::PathHeaders(path) => (path.clone(), path.clone()),
        _ => (hex(&Sha256::digest(bytes)), repo.commit.clone()),
    };
    answer.headers.extend([
        ("ETag".into(), format!("\"{etag}\"")),
        ("X-Linked-Etag".into(), format!("\"{etag}\"")),
        ("X-Repo-Commit".into(), commit),
        ("Accept-Ranges".into(), "bytes".into()),
        (
            "Content-Range".into(),
            format!("bytes {start}-{end}/{total}"),
        ),
    ]);
    answer
}

/// Whether the Hub keeps `path` in git itself rather than in LFS (small text files).
fn is_git_file(path: &str) -> bool {
    path.ends_with(".json") || path.ends_with(".txt") || path.ends_with(".jinja")
}

/// A file's git blob id as the listing gives it (SHA-1 of `blob {len}\0` and the bytes), or
/// the hostile path of [`Fault::PathBlob`].
fn blob_id(repo: &ServedRepo, bytes: &[u8]) -> String {
    match &repo.fault {
        Fault::PathBlob(path) => path.clone(),
        _ => {
            let mut hasher = sha1::Sha1::new();
            hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
            hasher.update(bytes);
            hex(&hasher.finalize())
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
