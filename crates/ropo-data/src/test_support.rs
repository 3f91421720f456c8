//! Helpers shared by the unit tests: the real assets and throw-away temporary paths.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The shared real-asset folder (`shared/assets` beside the workspace); panics with the path
/// it looked at when it is missing, since the tests mean nothing without it.
pub(crate) fn assets() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/assets");
    assert!(
        dir.is_dir(),
        "the real test assets are missing: looked for the folder {} (the workspace's ../shared/assets)",
        dir.display()
    );
    dir.canonicalize().unwrap_or(dir)
}

/// A file or folder under the system temp folder with a name no other test uses; removed when
/// dropped.
pub(crate) struct TempPath(PathBuf);

impl TempPath {
    /// A fresh path ending in `name` (nothing is created).
    pub(crate) fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ropo-data-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp folder");
        TempPath(dir.join(name))
    }

    /// A fresh, empty folder ending in `name`.
    pub(crate) fn dir(name: &str) -> Self {
        let path = Self::new(name);
        std::fs::create_dir_all(&path.0).expect("create a temp folder");
        path
    }

    /// A fresh file ending in `name` holding `bytes`.
    pub(crate) fn file(name: &str, bytes: impl AsRef<[u8]>) -> Self {
        let path = Self::new(name);
        std::fs::write(&path.0, bytes).expect("write a temp file");
        path
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

/// The message of `result`'s error; panics (naming `what`) if it is `Ok`.
pub(crate) fn error_message<T>(result: Result<T, crate::DataError>, what: &str) -> String {
    match result {
        Ok(_) => panic!("{what}: expected an error, got Ok"),
        Err(e) => e.to_string(),
    }
}
