//! Sealed snapshot folders inside a run folder: the preference checkpoints (`step-N`), the SFT
//! model and a framework method's rounds (`round-N`). A snapshot is written into `.tmp-NAME`,
//! its files are flushed and listed with their SHA-256 in `SHA256SUMS`
//! ([`ropo_models::integrity`]), and only then renamed to `NAME`; so a snapshot under its own
//! name is complete, and one corrupted later is caught by checksum when it is loaded, set
//! aside as `corrupt-NAME`, and the previous one is used.

use std::path::{Path, PathBuf};

use ropo_models::integrity;

use super::fault;
use crate::TrainError;

/// Writes the snapshot `folder/name`: `write` fills a temporary folder, which is sealed and
/// renamed into place. On failure the temporary folder is removed and `folder/name`, if it
/// existed, is untouched.
pub fn save(
    folder: &Path,
    name: &str,
    write: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    write_folder(folder, name, |tmp| {
        write(tmp)?;
        fault::inside_write(name, tmp)?;
        seal(tmp)
    })
}

/// Writes the folder `folder/name` whole or not at all, as [`save`] does but without sealing
/// it (for a folder whose `write` seals what it must itself, such as an exported model):
/// `write` fills `.tmp-NAME` (one left by an interrupted write is removed first), which is
/// renamed to `NAME`, replacing the folder there. On failure the temporary folder is removed
/// and `folder/name`, if it existed, is untouched. The fault `pause:NAME` or `disk-full:NAME`
/// fires with the files written, before the rename.
pub fn place(
    folder: &Path,
    name: &str,
    write: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    write_folder(folder, name, |tmp| {
        write(tmp)?;
        fault::inside_write(name, tmp)
    })
}

/// Fills `folder/.tmp-NAME` with `write` and renames it to `folder/NAME`.
fn write_folder(
    folder: &Path,
    name: &str,
    write: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    let target = folder.join(name);
    let tmp = folder.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    replace_dir(&tmp, &target)?;
    integrity::sync_folder(folder)?;
    Ok(target)
}

/// `folder/name` if it is a snapshot whose checksums hold. A corrupt one is renamed to
/// `corrupt-NAME` (kept for inspection, replacing an older corrupt copy of the same name) and
/// reported through `warn`.
pub fn open(
    folder: &Path,
    name: &str,
    warn: &mut dyn FnMut(String),
) -> Result<Option<PathBuf>, TrainError> {
    let path = folder.join(name);
    if !path.is_dir() {
        return Ok(None);
    }
    match integrity::verify(&path) {
        Ok(()) => Ok(Some(path)),
        Err(e) => {
            set_aside(&path, &e.to_string(), warn)?;
            Ok(None)
        }
    }
}

/// Renames the snapshot at `path` to `corrupt-NAME` beside it (replacing an older corrupt copy
/// of the same name) and reports `reason` through `warn`: for a snapshot whose checksums hold
/// but whose content cannot be read back.
pub fn set_aside(
    path: &Path,
    reason: &str,
    warn: &mut dyn FnMut(String),
) -> Result<(), TrainError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = path.with_file_name(format!("corrupt-{name}"));
    replace_dir(path, &aside)?;
    warn(format!("{reason}; set {name} aside as {}", aside.display()));
    Ok(())
}

/// The newest snapshot `folder/{prefix}N` whose checksums hold, setting corrupt newer ones
/// aside (see [`open`]).
pub fn newest(
    folder: &Path,
    prefix: &str,
    warn: &mut dyn FnMut(String),
) -> Result<Option<PathBuf>, TrainError> {
    for path in numbered(folder, prefix).into_iter().rev() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(valid) = open(folder, name, warn)? {
            return Ok(Some(valid));
        }
    }
    Ok(None)
}

/// Deletes all but the newest `keep` (at least one) snapshots `folder/{prefix}N`.
pub fn prune(folder: &Path, prefix: &str, keep: usize) -> Result<(), TrainError> {
    let mut all = numbered(folder, prefix);
    while all.len() > keep.max(1) {
        let oldest = all.remove(0);
        std::fs::remove_dir_all(&oldest).map_err(TrainError::io(&oldest))?;
    }
    Ok(())
}

/// Deletes every snapshot `folder/{prefix}N` (e.g. a finished round's step checkpoints).
pub fn clear(folder: &Path, prefix: &str) -> Result<(), TrainError> {
    for path in numbered(folder, prefix) {
        std::fs::remove_dir_all(&path).map_err(TrainError::io(&path))?;
    }
    Ok(())
}

/// Seals every file `write` left in `tmp`.
fn seal(tmp: &Path) -> Result<(), TrainError> {
    let mut names: Vec<String> = std::fs::read_dir(tmp)
        .map_err(TrainError::io(tmp))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(integrity::seal(tmp, &names)?)
}

/// Snapshot folders `folder/{prefix}N`, oldest first (names are zero-padded, so sorting by
/// name sorts by number).
fn numbered(folder: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_dir()
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    found
}

/// Moves folder `from` to `to`, removing whatever folder was at `to` first.
fn replace_dir(from: &Path, to: &Path) -> Result<(), TrainError> {
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(TrainError::io(to))?;
    }
    std::fs::rename(from, to).map_err(TrainError::io(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let folder =
            std::env::temp_dir().join(format!("ropo-snapshot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        folder
    }

    fn write_text(text: &'static str) -> impl FnOnce(&Path) -> Result<(), TrainError> {
        move |dir| std::fs::write(dir.join("state.json"), text).map_err(TrainError::io(dir))
    }

    #[test]
    fn the_newest_intact_snapshot_is_used_and_a_corrupt_one_set_aside() {
        let folder = scratch("newest");
        save(&folder, "step-000001", write_text("one")).unwrap();
        save(&folder, "step-000002", write_text("two")).unwrap();
        std::fs::write(folder.join("step-000002/state.json"), "tw0").unwrap();
        let mut warnings = Vec::new();
        let found = newest(&folder, "step-", &mut |w| warnings.push(w)).unwrap();
        assert_eq!(found, Some(folder.join("step-000001")));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("step-000002/state.json")
                && warnings[0].contains("checksum mismatch"),
            "{}",
            warnings[0]
        );
        assert!(folder.join("corrupt-step-000002/state.json").exists());
    }

    #[test]
    fn a_failed_write_leaves_the_previous_snapshot_and_no_temporary_folder() {
        let folder = scratch("failed");
        save(&folder, "step-000001", write_text("one")).unwrap();
        let failed = save(&folder, "step-000002", |dir| {
            std::fs::write(dir.join("model.mpk"), "partial").map_err(TrainError::io(dir))?;
            Err(TrainError::Io {
                path: dir.join("optimizer.mpk"),
                source: std::io::Error::from_raw_os_error(28),
            })
        });
        assert!(failed.is_err());
        assert!(!folder.join(".tmp-step-000002").exists());
        assert!(!folder.join("step-000002").exists());
        let found = newest(&folder, "step-", &mut |w| panic!("{w}")).unwrap();
        assert_eq!(found, Some(folder.join("step-000001")));
    }

    #[test]
    fn an_unsealed_folder_is_not_a_snapshot_and_pruning_keeps_the_newest() {
        let folder = scratch("prune");
        for step in 1..=4 {
            save(&folder, &format!("step-{step:06}"), write_text("x")).unwrap();
        }
        prune(&folder, "step-", 2).unwrap();
        assert_eq!(
            numbered(&folder, "step-"),
            vec![folder.join("step-000003"), folder.join("step-000004")]
        );
        std::fs::remove_file(folder.join("step-000004/SHA256SUMS")).unwrap();
        let mut warnings = Vec::new();
        let found = newest(&folder, "step-", &mut |w| warnings.push(w)).unwrap();
        assert_eq!(found, Some(folder.join("step-000003")));
        assert!(warnings[0].contains("never completed"), "{}", warnings[0]);
    }
}
