//! Reading a settings file (`config.json`, an index, a TOML config) whole, with a size limit:
//! `/dev/zero` or a huge file given where a small one belongs is an error naming it, not a
//! process that reads until memory runs out.

use std::{io::Read, path::Path};

use crate::ModelError;

/// The largest settings file read: 16 MiB, far above any `config.json`, shard index or run
/// config (the index of a 70B-parameter checkpoint is about 100 KB).
pub const SETTINGS_FILE_LIMIT: u64 = 16 << 20;

/// The text of the settings file at `path` (without a leading byte-order mark), refused when
/// it is larger than [`SETTINGS_FILE_LIMIT`] or not UTF-8.
pub fn read_settings(path: &Path) -> Result<String, ModelError> {
    let file = std::fs::File::open(path).map_err(ModelError::io(path))?;
    let mut bytes = Vec::new();
    file.take(SETTINGS_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(ModelError::io(path))?;
    if bytes.len() as u64 > SETTINGS_FILE_LIMIT {
        return Err(ModelError::Config {
            path: path.to_path_buf(),
            message: format!(
                "larger than {} MiB; a settings file is small text (is this the right file?)",
                SETTINGS_FILE_LIMIT >> 20
            ),
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to() + 1),
    })?;
    // A UTF-8 byte-order mark (written by some Windows editors) is not part of the text.
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}
