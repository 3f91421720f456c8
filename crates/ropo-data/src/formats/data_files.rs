//! The files of a dataset: a file is itself; a folder is every data file under it, in path
//! order, or those of one split, by the Hugging Face Hub's conventions for naming them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::DataError;

/// The names of the files a folder's dataset is read from: JSON Lines (gzipped or not, `.json`
/// read as lines too) and parquet. A file given by itself is read whatever its name.
pub const DATA_FILE_SUFFIXES: [&str; 4] = [".jsonl", ".jsonl.gz", ".json", ".parquet"];

/// The files to read for `path`, in order: `path` itself if it is a file; every data file under
/// it, recursively, sorted by path, if it is a folder (hidden files and folders, whose names
/// start with `.`, left out, and links to folders not followed). With a `split`, only the files
/// of that split (see [`in_split`]), which must exist.
pub(super) fn list(path: &Path, split: Option<&str>) -> Result<Vec<PathBuf>, DataError> {
    let metadata = std::fs::metadata(path).map_err(DataError::io(path))?;
    let (root, mut files) = if metadata.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files)?;
        files.sort();
        (path, files)
    } else {
        // Its folder's name is part of the path a split is told from.
        let root = path.parent().and_then(Path::parent);
        (root.unwrap_or(Path::new("")), vec![path.to_owned()])
    };
    let no_data_files = |splits: Vec<String>| DataError::NoDataFiles {
        path: path.to_owned(),
        split: split.map(str::to_owned),
        splits,
    };
    if files.is_empty() {
        return Err(no_data_files(Vec::new()));
    }
    if let Some(split) = split {
        let relative = |file: &PathBuf| file.strip_prefix(root).unwrap_or(file).to_owned();
        let all = std::mem::take(&mut files);
        let found: BTreeSet<String> = all.iter().filter_map(|f| split_of(&relative(f))).collect();
        files = all
            .into_iter()
            .filter(|file| in_split(&relative(file), split))
            .collect();
        if files.is_empty() {
            return Err(no_data_files(found.into_iter().collect()));
        }
    }
    Ok(files)
}

/// Whether a folder's dataset reads the file at `relative` (its path under the folder, e.g. a
/// file of a Hub dataset repository): a data file by its name ([`DATA_FILE_SUFFIXES`]), and of
/// `split` where one is given (see [`open_split`](super::open_split)).
pub fn is_data_file(relative: &Path, split: Option<&str>) -> bool {
    let name = relative.file_name().and_then(|n| n.to_str()).unwrap_or("");
    DATA_FILE_SUFFIXES
        .iter()
        .any(|suffix| name.ends_with(suffix))
        && split.is_none_or(|split| in_split(relative, split))
}

/// Whether the file at `relative` (its path under the dataset's folder) belongs to `split`: its
/// name starts with `{split}-` or `{split}.` (`train-00000-of-00002.parquet`, `test.jsonl`), or
/// its folder is named `split` (`train_prefs/0000.parquet`).
fn in_split(relative: &Path, split: &str) -> bool {
    let name = relative.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let named = name
        .strip_prefix(split)
        .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('.'));
    named || folder_name(relative) == Some(split)
}

/// The split an error lists for a file: its name up to the first `-` or `.`, or, where that is
/// a number (`0000.parquet`), its folder's name.
fn split_of(relative: &Path) -> Option<String> {
    let name = relative.file_name()?.to_str()?;
    let stem = name.split(['-', '.']).next().unwrap_or("");
    if !stem.is_empty() && !stem.bytes().all(|b| b.is_ascii_digit()) {
        return Some(stem.to_owned());
    }
    folder_name(relative).map(str::to_owned)
}

/// The name of the folder holding `relative`, if it is under the dataset's folder.
fn folder_name(relative: &Path) -> Option<&str> {
    relative.parent()?.file_name()?.to_str()
}

/// Adds the data files under `dir` to `files`.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), DataError> {
    for entry in std::fs::read_dir(dir).map_err(DataError::io(dir))? {
        let entry = entry.map_err(DataError::io(dir))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let file_type = entry.file_type().map_err(DataError::io(&path))?;
        if file_type.is_dir() {
            walk(&path, files)?;
        } else if DATA_FILE_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
            // A link is read when it leads to a file (the Hub's cache links its files to blobs).
            && (file_type.is_file() || path.is_file())
        {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempPath;

    /// A folder holding empty files at `paths`.
    fn folder(paths: &[&str]) -> TempPath {
        let dir = TempPath::dir("dataset");
        for path in paths {
            let file = dir.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, "").unwrap();
        }
        dir
    }

    /// The files `list` gives, relative to `dir`.
    fn listed(dir: &TempPath, split: Option<&str>) -> Vec<String> {
        list(dir.path(), split)
            .unwrap()
            .iter()
            .map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn a_folder_is_its_data_files_in_path_order_without_hidden_or_other_files() {
        let dir = folder(&[
            "README.md",
            "b/2.jsonl.gz",
            "a.parquet",
            "b/10.json",
            ".cache/x.jsonl",
            "b/.hidden.jsonl",
            "notes.txt",
        ]);
        assert_eq!(
            listed(&dir, None),
            ["a.parquet", "b/10.json", "b/2.jsonl.gz"]
        );
    }

    #[test]
    fn a_split_is_chosen_by_file_name_or_folder_name() {
        let dir = folder(&[
            "data/train_prefs-00000-of-00002.parquet",
            "data/train_prefs-00001-of-00002.parquet",
            "data/test_prefs-00000-of-00001.parquet",
            "train.jsonl",
            "trainer.jsonl",
            "validation/0000.parquet",
        ]);
        assert_eq!(
            listed(&dir, Some("train_prefs")),
            [
                "data/train_prefs-00000-of-00002.parquet",
                "data/train_prefs-00001-of-00002.parquet"
            ]
        );
        assert_eq!(listed(&dir, Some("train")), ["train.jsonl"]);
        assert_eq!(
            listed(&dir, Some("validation")),
            ["validation/0000.parquet"]
        );
    }

    #[test]
    fn a_split_without_files_is_an_error_listing_the_splits_found() {
        let dir = folder(&["data/train-00000-of-00001.parquet", "test/0000.parquet"]);
        let message = list(dir.path(), Some("dev")).unwrap_err().to_string();
        assert!(
            message.ends_with("no data files of split \"dev\" (splits found: test, train)"),
            "{message}"
        );
        assert!(
            message.starts_with(&dir.path().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn a_folder_without_data_files_is_an_error() {
        let dir = folder(&["README.md"]);
        let message = list(dir.path(), None).unwrap_err().to_string();
        assert!(message.contains("no data files (.jsonl, "), "{message}");
    }

    #[test]
    fn a_file_is_itself_and_a_split_must_name_it() {
        let dir = folder(&["test.jsonl"]);
        let file = dir.path().join("test.jsonl");
        assert_eq!(list(&file, None).unwrap(), std::slice::from_ref(&file));
        assert_eq!(
            list(&file, Some("test")).unwrap(),
            std::slice::from_ref(&file)
        );
        let message = list(&file, Some("train")).unwrap_err().to_string();
        assert!(message.contains("(splits found: test)"), "{message}");
        let dir = folder(&["train/0000.parquet"]);
        let file = dir.path().join("train/0000.parquet");
        assert_eq!(
            list(&file, Some("train")).unwrap(),
            std::slice::from_ref(&file)
        );
    }
}
