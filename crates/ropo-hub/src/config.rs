//! Where the cache is and how to reach the Hub, from the environment variables that Python's
//! `huggingface_hub` reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::HubError;

/// What `huggingface_hub` waits by default for the Hub to connect and to answer, in seconds
/// (its `HF_HUB_ETAG_TIMEOUT` and `HF_HUB_DOWNLOAD_TIMEOUT`).
const DEFAULT_TIMEOUT_S: u64 = 10;

/// The Hub's address, the cache folder, the token, whether to stay offline and how long to
/// wait for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// The Hub's base URL (`HF_ENDPOINT`; `https://huggingface.co`).
    pub endpoint: String,
    /// The cache folder holding `models--org--name` and `datasets--org--name` (absolute).
    pub cache: PathBuf,
    /// The access token sent as `Authorization: Bearer` (`HF_TOKEN`, else the token file).
    pub token: Option<String>,
    /// Read the cache only, never the network (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// The longest wait to connect and for each read of a repository listing
    /// (`HF_HUB_ETAG_TIMEOUT`, seconds; 10).
    pub etag_timeout: Duration,
    /// The longest wait to connect and for each read of a file's download
    /// (`HF_HUB_DOWNLOAD_TIMEOUT`, seconds; 10).
    pub download_timeout: Duration,
}

impl HubConfig {
    /// The configuration the process environment gives, as `huggingface_hub` reads it:
    /// - cache: `HF_HUB_CACHE`, else `$HF_HOME/hub`, where `HF_HOME` defaults to
    ///   `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`;
    /// - endpoint: `HF_ENDPOINT`, else `https://huggingface.co`;
    /// - token: `HF_TOKEN`, else the file `HF_TOKEN_PATH` (default `$HF_HOME/token`) that
    ///   `huggingface-cli login` writes;
    /// - offline: `HF_HUB_OFFLINE` set to `1`, `true`, `on` or `yes` (any case);
    /// - timeouts: `HF_HUB_ETAG_TIMEOUT` and `HF_HUB_DOWNLOAD_TIMEOUT`, whole seconds, 10 each.
    ///
    /// A timeout that is not a positive whole number of seconds is an error naming the variable.
    pub fn from_env() -> Result<Self, HubError> {
        Self::from_vars(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    }

    /// [`HubConfig::from_env`] over any source of variables (tests pass a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, HubError> {
        let home = var("HOME").map(PathBuf::from).unwrap_or_default();
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".cache"))
                .join("huggingface")
        });
        let cache = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token_file = var("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("token"));
        let token = var("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(token_file)
                .ok()
                .map(|token| token.trim().to_owned())
                .filter(|token| !token.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|value| {
            matches!(
                value.to_ascii_lowercase().as_str(),
                "1" | "true" | "on" | "yes"
            )
        });
        let timeout = |name: &'static str| match var(name) {
            None => Ok(Duration::from_secs(DEFAULT_TIMEOUT_S)),
            Some(value) => match value.trim().parse::<u64>() {
                Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
                _ => Err(HubError::Setting {
                    variable: name,
                    value,
                    expected: "a whole number of seconds, at least 1",
                }),
            },
        };
        Ok(Self {
            endpoint: var("HF_ENDPOINT")
                .map(|endpoint| endpoint.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| "https://huggingface.co".to_owned()),
            cache: absolute(&cache),
            token,
            offline,
            etag_timeout: timeout("HF_HUB_ETAG_TIMEOUT")?,
            download_timeout: timeout("HF_HUB_DOWNLOAD_TIMEOUT")?,
        })
    }
}

/// `path` made absolute against the working folder (the cache's links are relative to it).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> HubConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubConfig::from_vars(|name| vars.get(name).cloned()).unwrap()
    }

    #[test]
    fn the_cache_follows_huggingface_hub_precedence() {
        let base = [("HOME", "/home/u")];
        assert_eq!(
            config(&base).cache,
            Path::new("/home/u/.cache/huggingface/hub")
        );
        let xdg = [("HOME", "/home/u"), ("XDG_CACHE_HOME", "/x")];
        assert_eq!(config(&xdg).cache, Path::new("/x/huggingface/hub"));
        let hf_home = [("HOME", "/home/u"), ("HF_HOME", "/h")];
        assert_eq!(config(&hf_home).cache, Path::new("/h/hub"));
        let hub_cache = [("HF_HOME", "/h"), ("HF_HUB_CACHE", "/c")];
        assert_eq!(config(&hub_cache).cache, Path::new("/c"));
    }

    #[test]
    fn endpoint_token_and_offline_come_from_their_variables() {
        let defaults = config(&[("HOME", "/nonexistent-home")]);
        assert_eq!(defaults.endpoint, "https://huggingface.co");
        assert_eq!(defaults.token, None);
        assert!(!defaults.offline);
        let set = config(&[
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_TOKEN", "hf_x"),
            ("HF_HUB_OFFLINE", "TRUE"),
        ]);
        assert_eq!(set.endpoint, "http://127.0.0.1:9");
        assert_eq!(set.token.as_deref(), Some("hf_x"));
        assert!(set.offline);
        assert!(!config(&[("HF_HUB_OFFLINE", "0")]).offline);
    }

    #[test]
    fn timeouts_default_to_ten_seconds_and_a_bad_value_names_its_variable() {
        let defaults = config(&[]);
        assert_eq!(defaults.etag_timeout, Duration::from_secs(10));
        assert_eq!(defaults.download_timeout, Duration::from_secs(10));
        let set = config(&[
            ("HF_HUB_ETAG_TIMEOUT", "3"),
            ("HF_HUB_DOWNLOAD_TIMEOUT", "60"),
        ]);
        assert_eq!(set.etag_timeout, Duration::from_secs(3));
        assert_eq!(set.download_timeout, Duration::from_secs(60));
        for bad in ["0", "-1", "ten", "1.5"] {
            let error = HubConfig::from_vars(|name| {
                (name == "HF_HUB_DOWNLOAD_TIMEOUT").then(|| bad.to_owned())
            })
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("HF_HUB_DOWNLOAD_TIMEOUT") && error.contains(bad),
                "{error}"
            );
        }
    }
}
