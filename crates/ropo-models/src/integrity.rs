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

/// Checks a snapshot folder: `folder/SHA256SUMS` must list every file the folder holds, once
/// each, and each must match its sum. The error names the first file that is missing,
/// unlisted, listed twice or changed, or the sums file if it is absent or malformed.
pub fn verify(folder: &Path) -> Result<(), ModelError> {
    let listed = check_listed(folder)?;
    let entries = std::fs::read_dir(folder).map_err(ModelError::io(folder))?;
    for entry in entries {
        let entry = entry.map_err(ModelError::io(folder))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != SUMS_FILE && !listed.contains(&name) {
            return Err(ModelError::Corrupt {
                path: entry.path(),
                message: format!(
                    "not listed in {SUMS_FILE}: the snapshot holds a file it was not sealed with"
                ),
            });
        }
    }
    Ok(())
}

/// Checks a model folder: every file listed in `folder/SHA256SUMS` must match its sum, and
/// each of `required` (the files a load will read) must be listed. Other files (a tokenizer a
/// user added) may sit beside them unlisted.
pub fn verify_files(folder: &Path, required: &[String]) -> Result<(), ModelError> {
    let listed = check_listed(folder)?;
    match required.iter().find(|name| !listed.contains(*name)) {
        Some(name) => Err(ModelError::Corrupt {
            path: folder.join(name),
            message: format!("not listed in {SUMS_FILE}, so its content cannot be checked"),
        }),
        None => Ok(()),
    }
}

/// Checks every file `folder/SHA256SUMS` lists against its sum and returns their names.
fn check_listed(folder: &Path) -> Result<std::collections::BTreeSet<String>, ModelError> {
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
    let mut listed = std::collections::BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let malformed = |message: &str| ModelError::Corrupt {
            path: sums_path.clone(),
            message: format!("line {}: {message}", index + 1),
        };
        let Some((expected, name)) = line.split_once("  ") else {
            return Err(malformed("expected `<sha256>  <file name>`"));
        };
        if name.contains('/') || name == ".." || name == "." || name == SUMS_FILE {
            return Err(malformed(
                "a sealed file is named by its plain name in the folder",
            ));
        }
        if !listed.insert(name.to_string()) {
            return Err(malformed(&format!("{name} is listed twice")));
        }
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
    Ok(listed)
}

/// Writes `bytes` to `path` through a temporary file that is flushed to disk and then renamed
/// into place, so `path` holds either its old content or all of the new.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    replaceable(path)?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(ModelError::io(&tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(ModelError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(ModelError::io(path))?;
    sync_folder(path.parent().unwrap_or(Path::new(".")))
}

/// Checks that a file may be written at `path` by renaming a new file over it: nothing is
/// there yet, or a regular file is (a device, folder, pipe or socket is refused, since the
/// rename would replace it with a file).
pub fn replaceable(path: &Path) -> Result<(), ModelError> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(
                "exists and is not a regular file (a folder, device or pipe); ropo writes only \
                 regular files, choose another path",
            ),
        }),
        _ => Ok(()),
    }
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
    fn a_file_the_sums_leave_out_is_corruption_in_a_snapshot_and_required_in_a_model() {
        let folder = sealed_folder("unlisted");
        let sums = folder.join(SUMS_FILE);
        let text = std::fs::read_to_string(&sums).unwrap();
        let without_a: String = text
            .lines()
            .filter(|l| !l.ends_with("a.bin"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&sums, without_a).unwrap();
        let message = verify(&folder).unwrap_err().to_string();
        assert!(
            message.contains("a.bin") && message.contains("not listed"),
            "{message}"
        );
        verify_files(&folder, &["b.json".into()]).unwrap();
        let message = verify_files(&folder, &["a.bin".into()])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("a.bin") && message.contains("not listed"),
            "{message}"
        );
        std::fs::write(&sums, "").unwrap();
        let message = verify(&folder).unwrap_err().to_string();
        assert!(message.contains("not listed"), "{message}");
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
