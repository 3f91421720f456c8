//! One file's bytes from the Hub into its blob: streamed into `{blob}.incomplete`, resumed from
//! there after a dropped connection, cut at the size the listing announced (a server that
//! sends more cannot fill the disk), checked against the hash the listing gives (an LFS file's
//! SHA-256, a git file's blob id), then renamed whole.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Files at least this large get a progress bar (when bars are asked for).
const BAR_FROM_BYTES: u64 = 1 << 20;

/// What is expected of a download.
pub(crate) struct Expected<'a> {
    /// The size the listing announces; no byte past it is read.
    pub size: u64,
    /// The hash the listing gives.
    pub hash: Hash<'a>,
}

/// A file's hash as the Hub lists it (hexadecimal).
#[derive(Clone, Copy)]
pub(crate) enum Hash<'a> {
    /// An LFS file's SHA-256 of its bytes.
    Sha256(&'a str),
    /// A git file's blob id: SHA-1 of `blob {size}\0` followed by its bytes.
    GitBlob(&'a str),
}

/// Why a download did not complete.
pub(crate) enum Failure {
    /// The request was refused or could not be sent.
    Request(Box<ureq::Error>),
    /// A read waited longer than the timeout.
    TimedOut,
    /// The connection ended before the announced size; what came is kept for resuming.
    Interrupted(String),
    /// What came is not what the listing announces; it was removed.
    Damaged(String),
    /// The cache could not be written.
    Io(PathBuf, std::io::Error),
}

/// Downloads into `blob` what `request` (given the byte to start from) answers, as described in
/// the module's doc. `label` names the file on the progress bar, when there is one.
pub(crate) fn download(
    request: &dyn Fn(u64) -> Result<ureq::Response, Box<ureq::Error>>,
    blob: &Path,
    expected: &Expected,
    label: Option<&str>,
) -> Result<(), Failure> {
    let partial = PathBuf::from(format!("{}.incomplete", blob.display()));
    let io = |source| Failure::Io(partial.clone(), source);
    let kept = std::fs::metadata(&partial).map_or(0, |meta| meta.len());
    let from = if kept <= expected.size { kept } else { 0 };
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&partial)
        .map_err(io)?;
    let written = if from < expected.size {
        receive(request, &mut file, from, expected.size, label)?
    } else {
        from
    };
    file.set_len(written).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    if written < expected.size {
        return Err(Failure::Interrupted(format!(
            "the connection closed after {written} of {} bytes",
            expected.size
        )));
    }
    let (kind, listed, digest) = match expected.hash {
        Hash::Sha256(listed) => ("SHA-256", listed, hash_of::<Sha256>(&partial, "")),
        Hash::GitBlob(listed) => {
            let header = format!("blob {}\0", expected.size);
            ("git blob id", listed, hash_of::<Sha1>(&partial, &header))
        }
    };
    let digest = digest.map_err(io)?;
    if !digest.eq_ignore_ascii_case(listed) {
        let _ = std::fs::remove_file(&partial);
        return Err(Failure::Damaged(format!(
            "{kind} {digest} where the Hub lists {listed}"
        )));
    }
    std::fs::rename(&partial, blob).map_err(|source| Failure::Io(blob.to_path_buf(), source))
}

/// Streams the answer into `file` from byte `from` (where the server resumes there; from 0
/// otherwise) up to `size`; the bytes the file then holds.
fn receive(
    request: &dyn Fn(u64) -> Result<ureq::Response, Box<ureq::Error>>,
    file: &mut File,
    from: u64,
    size: u64,
    label: Option<&str>,
) -> Result<u64, Failure> {
    let response = request(from).map_err(|error| match *error {
        ureq::Error::Transport(transport) if timed_out(&transport) => Failure::TimedOut,
        error => Failure::Request(Box::new(error)),
    })?;
    let resumed = response.status() == 206
        && response
            .header("content-range")
            .and_then(|range| range.strip_prefix("bytes "))
            .and_then(|range| range.split_once('-'))
            .and_then(|(start, _)| start.trim().parse::<u64>().ok())
            == Some(from);
    let start = if resumed { from } else { 0 };
    let io = |source| Failure::Io(PathBuf::from("the partial download"), source);
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let bar = label
        .filter(|_| size >= BAR_FROM_BYTES)
        .map(|label| progress_bar(label, size, start));
    let mut body = response.into_reader().take(size - start);
    let mut buffer = vec![0u8; 1 << 16];
    let mut position = start;
    loop {
        match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                file.write_all(&buffer[..read]).map_err(io)?;
                position += read as u64;
                if let Some(bar) = &bar {
                    bar.set_position(position);
                }
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => {
                file.set_len(position).map_err(io)?;
                return Err(if error.kind() == ErrorKind::TimedOut {
                    Failure::TimedOut
                } else {
                    Failure::Interrupted(error.to_string())
                });
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(position)
}

/// Whether a transport failure is a connection or read that waited past its timeout.
pub(crate) fn timed_out(transport: &ureq::Transport) -> bool {
    let mut source = std::error::Error::source(transport);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
                return true;
            }
        }
        source = error.source();
    }
    false
}

fn progress_bar(label: &str, size: u64, start: u64) -> ProgressBar {
    let bar = ProgressBar::new(size).with_message(label.to_owned());
    bar.set_style(
        ProgressStyle::with_template("{msg} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(start);
    bar
}

/// The hash `D` of `header` followed by the bytes of the file at `path`, in hexadecimal.
fn hash_of<D: Digest>(path: &Path, header: &str) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = D::new();
    hasher.update(header.as_bytes());
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
