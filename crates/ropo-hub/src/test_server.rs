//! A loopback HTTP server that speaks the part of the Hub's API that `huggingface_hub` and
//! `hf-hub` use, for tests: the repository listing
//! (`GET /api/{models,datasets}/org/name/revision/rev`) and file resolution
//! (`GET [/datasets]/org/name/resolve/rev/path`, with `ETag`, `X-Repo-Commit` and byte
//! ranges), with the Hub's error codes (`X-Error-Code`), tokens, gated repositories and, on
//! request, downloads cut short.

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

/// What goes wrong when a served file is downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing.
    None,
    /// Only the first half of the bytes announced is sent before the connection closes.
    CutShort,
    /// Every byte sent is inverted (the listing keeps the true size and SHA-256).
    Corrupt,
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
                            let (repos, requests) = (repos.clone(), requests.clone());
                            std::thread::spawn(move || serve(stream, &repos, &requests));
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

/// One request on `stream` (every answer closes the connection).
fn serve(stream: TcpStream, repos: &[ServedRepo], requests: &AtomicUsize) {
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
    let _ = answer.write(stream);
}

/// An HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Bytes of `body` actually sent (fewer than announced for a cut download).
    sent: usize,
}

impl Answer {
    fn new(status: u16, body: Vec<u8>) -> Self {
        let sent = body.len();
        Self {
            status,
            headers: Vec::new(),
            body,
            sent,
        }
    }

    fn error(status: u16, code: &str) -> Self {
        let mut answer = Self::new(status, format!("{{\"error\": \"{code}\"}}").into_bytes());
        answer.headers.push(("X-Error-Code".into(), code.into()));
        answer
    }

    fn write(self, mut stream: TcpStream) -> std::io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            206 => "Partial Content",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            _ => "Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(&self.body[..self.sent])?;
        stream.flush()
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
fn listing(repo: &ServedRepo) -> Answer {
    let siblings: Vec<serde_json::Value> = repo
        .files
        .iter()
        .map(|(path, bytes)| {
            serde_json::json!({
                "rfilename": path,
                "size": bytes.len(),
                "lfs": {"sha256": hex(&Sha256::digest(bytes)), "size": bytes.len(), "pointerSize": 134},
            })
        })
        .collect();
    let body = serde_json::json!({"id": repo.id, "sha": repo.commit, "siblings": siblings});
    let mut answer = Answer::new(200, body.to_string().into_bytes());
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
    if repo.fault == Fault::CutShort && !probe {
        answer.sent = answer.body.len() / 2;
    }
    answer.headers.extend([
        (
            "ETag".into(),
            format!("\"{}\"", hex(&Sha256::digest(bytes))),
        ),
        ("X-Repo-Commit".into(), repo.commit.clone()),
        ("Accept-Ranges".into(), "bytes".into()),
        (
            "Content-Range".into(),
            format!("bytes {start}-{end}/{total}"),
        ),
    ]);
    answer
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
