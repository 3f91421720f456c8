//! Sealed folders: files flushed to disk and listed with their SHA-256 in a `SHA256SUMS` file
//! (the format `sha256sum -c` reads), written last. A folder is complete exactly when its sums
//! file exists, and a truncated or bit-flipped file is caught at load and named.

use std::{
    fs::File,
    io::{Read, Write},
    path::Path,
};

use sha2::{Digest, Sha256};

use crate::ModelError;

/// The name of the sums file in a sealed folder.
pub const SUMS_FILE: &str = "SHA256SUMS";

/// Flushes each of `names` (files in `folder`) to disk, writes their SHA-256 sums to
/// `folder/SHA256SUMS` and flushes it and the folder.
pub fn seal(folder: &Path, names: &[String]) -> Result<(), ModelError> {
    let mut sums = String::new();
    for name in names {
        let path = folder.join(name);
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(ModelError::io(&path))?;
        sums += &format!("{}  {name}\n", sha256_of(&path)?);
    }
    let path = folder.join(SUMS_FILE);
    let mut file = File::create(&path).map_err(ModelError::io(&path))?;
    file.write_all(sums.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(ModelError::io(&path))?;
    sync_folder(folder)
}

/// Whether `folder` carries a sums file (it was written by [`seal`]).
pub fn is_sealed(folder: &Path) -> bool {
    folder.join(SUMS_FILE).is_file()
}

/// Checks every file listed in `folder/SHA256SUMS` against its sum. The error names the
/// first file that is missing or whose content changed, or the sums file if it is absent or
/// malformed.
pub fn verify(folder: &Path) -> Result<(), ModelError> {
    let sums_path = folder.join(SUMS_FILE);
    let text = match std::fs::read_to_string(&sums_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModelError::Corrupt {
                path: sums_path,
                message: "missing: the folder was never completed (its write was interrupted)"
                    .into(),
            })
        }
        Err(e) => return Err(ModelError::io(&sums_path)(e)),
    };
    for (index, line) in text.lines().enumerate() {
        let Some((expected, name)) = line.split_once("  ") else {
            return Err(ModelError::Corrupt {
                path: sums_path,
                message: format!("line {}: expected `<sha256>  <file name>`", index + 1),
            });
        };
        let path = folder.join(name);
        let found = sha256_of(&path)?;
        if found != expected {
            return Err(ModelError::Corrupt {
                path,
                message: format!(
                    "checksum mismatch: SHA-256 is {found}, {SUMS_FILE} says {expected} \
                     (the file was truncated or changed after it was written)"
                ),
            });
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file that is flushed to disk and then renamed
/// into place, so `path` holds either its old content or all of the new.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(ModelError::io(&tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(ModelError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(ModelError::io(path))?;
    sync_folder(path.parent().unwrap_or(Path::new(".")))
}

/// Flushes a folder's entries (files created or renamed into it) to disk.
pub fn sync_folder(folder: &Path) -> Result<(), ModelError> {
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(ModelError::io(folder))
}

/// The SHA-256 of a file's content, as 64 lowercase hex digits.
fn sha256_of(path: &Path) -> Result<String, ModelError> {
    let mut file = File::open(path).map_err(ModelError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(ModelError::io(path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed_folder(name: &str) -> std::path::PathBuf {
        let folder =
            std::env::temp_dir().join(format!("ropo-integrity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("a.bin"), vec![7u8; 5000]).unwrap();
        std::fs::write(folder.join("b.json"), "{\"step\": 3}").unwrap();
        seal(&folder, &["a.bin".into(), "b.json".into()]).unwrap();
        folder
    }

    #[test]
    fn a_sealed_folder_verifies_and_its_sums_match_sha256sum_format() {
        let folder = sealed_folder("ok");
        verify(&folder).unwrap();
        let sums = std::fs::read_to_string(folder.join(SUMS_FILE)).unwrap();
        // The digest of `{"step": 3}` from Python's hashlib.
        assert!(sums.contains(
            "a76b25b15faff287c95e28b4a43ff88d437be30fcec77d072a333b6115427769  b.json\n"
        ));
        assert_eq!(sums.lines().count(), 2);
        assert!(is_sealed(&folder));
    }

    #[test]
    fn a_flipped_bit_is_named_with_its_file() {
        let folder = sealed_folder("flip");
        let path = folder.join("a.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4321] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();
        let message = verify(&folder).unwrap_err().to_string();
        assert!(
            message.contains("a.bin") && message.contains("checksum mismatch"),
            "{message}"
        );
    }

    #[test]
    fn a_truncated_or_missing_file_and_a_missing_sums_file_are_named() {
        let folder = sealed_folder("cut");
        let path = folder.join("b.json");
        std::fs::write(&path, "{\"st").unwrap();
        let message = verify(&folder).unwrap_err().to_string();
        assert!(
            message.contains("b.json") && message.contains("checksum mismatch"),
            "{message}"
        );
        std::fs::remove_file(&path).unwrap();
        let message = verify(&folder).unwrap_err().to_string();
        assert!(message.contains("b.json"), "{message}");
        std::fs::remove_file(folder.join(SUMS_FILE)).unwrap();
        let message = verify(&folder).unwrap_err().to_string();
        assert!(
            message.contains(SUMS_FILE) && message.contains("never completed"),
            "{message}"
        );
    }
}
