//! Tokenizers: text to token ids and back.
//!
//! [`Tokenizer`] is what the rest of ropo sees; [`load_tokenizer`] picks the implementation
//! from the path it is given:
//! - [`HfTokenizer`]: a Hugging Face `tokenizer.json` (GPT-2, GPT-NeoX/Pythia, Llama, ...), or
//!   GPT-2's original `encoder.json` + `vocab.bpe` ([`HfTokenizer::from_gpt2_files`]);
//! - [`Llama2cTokenizer`]: llama2.c's `.bin` format (e.g. `tok512.bin`), encoded exactly as
//!   llama2.c's `run.c` does;
//! - a llama.cpp `.gguf` file's `tokenizer.ggml.*` keys, built into an [`HfTokenizer`]
//!   ([`GgufVocab`], [`HfTokenizer::from_gguf`]).
//!
//! Conventions shared by all of them: `encode` adds no BOS/EOS (chat and prompt templates do),
//! `decode` skips special tokens, and ids at or past [`Tokenizer::vocab_size`] are errors.

mod gguf;
mod gpt2;
mod hf;
mod llama2c;

use std::path::{Path, PathBuf};

pub use gguf::GgufVocab;
pub use hf::HfTokenizer;
pub use llama2c::Llama2cTokenizer;

use crate::DataError;

/// Text <-> token ids. Implementations are `Send + Sync` so rayon can share them.
pub trait Tokenizer: Send + Sync {
    /// Token ids of `text`, without BOS/EOS (templates add those).
    fn encode(&self, text: &str) -> Result<Vec<u32>, DataError>;

    /// Text of `ids` (special tokens skipped). An id at or past [`Tokenizer::vocab_size`] is
    /// an error.
    fn decode(&self, ids: &[u32]) -> Result<String, DataError>;

    /// One past the largest token id: the number of rows a model's embedding needs at least.
    fn vocab_size(&self) -> usize;

    /// The beginning-of-sequence id, if the tokenizer has one.
    fn bos_id(&self) -> Option<u32>;

    /// The end-of-sequence id, if the tokenizer has one.
    fn eos_id(&self) -> Option<u32>;
}

/// Opens a tokenizer from a path:
/// - a file: `*.json` is a Hugging Face `tokenizer.json`, except `encoder.json` which with
///   `vocab.bpe` beside it is GPT-2 (and so is `vocab.bpe` with `encoder.json` beside it);
///   `*.bin` is a llama2.c tokenizer (e.g. `tok512.bin`); `*.gguf` a llama.cpp GGUF file, whose
///   `tokenizer.ggml.*` keys describe its tokenizer;
/// - a folder, looked in for, in this order: `tokenizer.json`; `encoder.json` + `vocab.bpe`;
///   `tokenizer.bin`; a single `tok*.bin`.
///
/// Errors name the path: absent, unreadable or malformed files, a folder with no tokenizer or
/// with several `tok*.bin`, half of GPT-2's pair of files, a file of unknown kind.
pub fn load_tokenizer(path: &Path) -> Result<Box<dyn Tokenizer>, DataError> {
    let meta = std::fs::metadata(path).map_err(DataError::io(path))?;
    if meta.is_dir() {
        load_from_dir(path)
    } else {
        load_from_file(path)
    }
}

fn load_from_file(path: &Path) -> Result<Box<dyn Tokenizer>, DataError> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    match name {
        GPT2_ENCODER => {
            let merges = companion(path, GPT2_MERGES)?;
            Ok(Box::new(HfTokenizer::from_gpt2_files(path, &merges)?))
        }
        GPT2_MERGES => {
            let encoder = companion(path, GPT2_ENCODER)?;
            Ok(Box::new(HfTokenizer::from_gpt2_files(&encoder, path)?))
        }
        _ if name.ends_with(".json") => Ok(Box::new(HfTokenizer::open(path)?)),
        _ if name.ends_with(".bin") => Ok(Box::new(Llama2cTokenizer::open(path)?)),
        _ if is_gguf(path) => Ok(Box::new(HfTokenizer::from_gguf(path)?)),
        _ => Err(DataError::UnknownFormat { path: path.into() }),
    }
}

fn load_from_dir(dir: &Path) -> Result<Box<dyn Tokenizer>, DataError> {
    let hf = dir.join("tokenizer.json");
    if hf.is_file() {
        return Ok(Box::new(HfTokenizer::open(&hf)?));
    }

    let encoder = dir.join(GPT2_ENCODER);
    let merges = dir.join(GPT2_MERGES);
    match (encoder.is_file(), merges.is_file()) {
        (true, true) => return Ok(Box::new(HfTokenizer::from_gpt2_files(&encoder, &merges)?)),
        (true, false) => return Err(missing(encoder, merges)),
        (false, true) => return Err(missing(merges, encoder)),
        (false, false) => {}
    }

    let bin = dir.join("tokenizer.bin");
    if bin.is_file() {
        return Ok(Box::new(Llama2cTokenizer::open(&bin)?));
    }
    let mut candidates = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(DataError::io(dir))? {
        let entry = entry.map_err(DataError::io(dir))?;
        if let Some(name) = entry.file_name().to_str() {
            if name.starts_with("tok") && name.ends_with(".bin") && entry.path().is_file() {
                candidates.push(name.to_owned());
            }
        }
    }
    candidates.sort();
    match candidates.as_slice() {
        [] => Err(DataError::NoTokenizer { path: dir.into() }),
        [only] => Ok(Box::new(Llama2cTokenizer::open(&dir.join(only))?)),
        _ => Err(DataError::AmbiguousTokenizer {
            path: dir.into(),
            candidates,
        }),
    }
}

/// Whether `path` names a llama.cpp GGUF file (by its `.gguf` extension), which holds its
/// tokenizer and chat template in its metadata.
pub fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"))
}

const GPT2_ENCODER: &str = "encoder.json";
const GPT2_MERGES: &str = "vocab.bpe";

/// The file `name` beside `path`, which must exist.
fn companion(path: &Path, name: &str) -> Result<PathBuf, DataError> {
    let other = path.with_file_name(name);
    if other.is_file() {
        Ok(other)
    } else {
        Err(missing(path.into(), other))
    }
}

fn missing(path: PathBuf, missing: PathBuf) -> DataError {
    DataError::MissingCompanion { path, missing }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assets, error_message, TempPath};

    #[test]
    fn tokenizers_are_send_and_sync_behind_the_trait() {
        fn shareable<T: Send + Sync + ?Sized>() {}
        shareable::<dyn Tokenizer>();
        shareable::<HfTokenizer>();
        shareable::<Llama2cTokenizer>();

        let tok = load_tokenizer(&assets().join("models/tok512.bin")).unwrap();
        let texts = ["Once upon a time", "The cat sat.", "Lily was happy."];
        let ids: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = texts
                .iter()
                .map(|text| s.spawn(|| tok.encode(text).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (text, ids) in texts.iter().zip(&ids) {
            assert_eq!(ids, &tok.encode(text).unwrap());
        }
    }

    #[test]
    fn each_asset_loads_by_file_and_by_folder() {
        let assets = assets();
        let cases: [(PathBuf, &str, &[u32]); 6] = [
            (
                assets.join("models/tok512.bin"),
                "Once upon a time",
                &[403, 407, 261, 378],
            ),
            (
                assets.join("models"),
                "Once upon a time",
                &[403, 407, 261, 378],
            ),
            (
                assets.join("tokenizers/20B_tokenizer.json"),
                "Hello world",
                &[12092, 1533],
            ),
            (
                assets.join("tokenizers/gpt2-tokenizer.json"),
                "The sky is",
                &[464, 6766, 318],
            ),
            (
                assets.join("tokenizers/encoder.json"),
                "The sky is",
                &[464, 6766, 318],
            ),
            // No tokenizer.json in this folder: encoder.json + vocab.bpe are found.
            (assets.join("tokenizers"), " blue", &[4171]),
        ];
        for (path, text, expected) in cases {
            let tok = load_tokenizer(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(tok.encode(text).unwrap(), expected, "{}", path.display());
        }
        let via_merges = load_tokenizer(&assets.join("tokenizers/vocab.bpe")).unwrap();
        assert_eq!(via_merges.eos_id(), Some(50256));
    }

    #[test]
    fn absent_path_is_an_error_naming_it() {
        let path = TempPath::new("no-such-tokenizer.json");
        let message = error_message(load_tokenizer(path.path()), "absent file");
        assert!(message.contains("no-such-tokenizer.json"), "{message}");
        assert!(message.contains("cannot read"), "{message}");
    }

    #[test]
    fn empty_files_are_errors_naming_them() {
        for name in ["tokenizer.json", "tokenizer.bin", "encoder.json"] {
            let file = TempPath::file(name, b"");
            let message = error_message(load_tokenizer(file.path()), name);
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn folder_without_a_tokenizer_is_an_error_naming_it() {
        let dir = TempPath::dir("empty-model-folder");
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let err = load_tokenizer(dir.path())
            .err()
            .expect("no tokenizer there");
        assert!(matches!(err, DataError::NoTokenizer { .. }), "{err}");
        assert!(err.to_string().contains("empty-model-folder"), "{err}");
    }

    #[test]
    fn encoder_json_without_vocab_bpe_is_an_error_naming_both() {
        let dir = TempPath::dir("gpt2-half");
        let encoder = dir.path().join("encoder.json");
        std::fs::write(&encoder, r#"{"a": 0}"#).unwrap();
        for path in [dir.path(), encoder.as_path()] {
            let message = error_message(load_tokenizer(path), "encoder.json alone");
            assert!(message.contains("encoder.json"), "{message}");
            assert!(message.contains("vocab.bpe"), "{message}");
        }
    }

    #[test]
    fn several_tok_bins_in_a_folder_is_an_error_listing_them() {
        let dir = TempPath::dir("two-tokenizers");
        let tok512 = std::fs::read(assets().join("models/tok512.bin")).unwrap();
        std::fs::write(dir.path().join("tok512.bin"), &tok512).unwrap();
        std::fs::write(dir.path().join("tok4096.bin"), &tok512).unwrap();
        let message = error_message(load_tokenizer(dir.path()), "two tok*.bin");
        assert!(message.contains("tok4096.bin, tok512.bin"), "{message}");

        // tokenizer.bin settles it.
        std::fs::write(dir.path().join("tokenizer.bin"), &tok512).unwrap();
        assert_eq!(load_tokenizer(dir.path()).unwrap().vocab_size(), 512);
    }

    #[test]
    fn file_of_unknown_kind_is_an_error_naming_it() {
        let file = TempPath::file("tokenizer.model", b"\x0a\x0b");
        let err = load_tokenizer(file.path()).err().expect("unknown kind");
        assert!(matches!(err, DataError::UnknownFormat { .. }), "{err}");
        assert!(err.to_string().contains("tokenizer.model"), "{err}");
    }

    #[test]
    fn llama2c_model_file_is_not_taken_for_a_tokenizer() {
        let path = assets().join("models/stories260K.bin");
        let message = error_message(load_tokenizer(&path), "stories260K.bin");
        assert!(message.contains("stories260K.bin"), "{message}");
    }
}
