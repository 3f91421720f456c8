//! Reading a TOML settings file into its type, with errors on one line naming the file.

use std::path::Path;

use ropo::train::TrainError;
use serde::de::DeserializeOwned;

/// The settings in `path` (a TOML file of bounded size), or one line naming the file and what
/// is wrong.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, Box<dyn std::error::Error>> {
    let text = ropo::models::text_file::read_settings(path)?;
    parse_toml(&path.display().to_string(), &text)
}

/// `text` (the settings file `name`) as `T`, or one line naming it and what is wrong.
pub fn parse_toml<T: DeserializeOwned>(
    name: &str,
    text: &str,
) -> Result<T, Box<dyn std::error::Error>> {
    Ok(toml::from_str(text).map_err(|e| format!("{name}: {}", one_line(&e.to_string())))?)
}

/// toml's errors span several lines (a snippet of the file); keep them to one.
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^' || c == ' ')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A validation error, prefixed with the config file it is about (when there is one).
pub fn in_config(path: Option<&Path>, error: TrainError) -> Box<dyn std::error::Error> {
    match path {
        Some(path) => format!("{}: {error}", path.display()).into(),
        None => error.into(),
    }
}
