//! Hugging Face `tokenizer.json` tokenizers, through the `tokenizers` library.

use std::path::{Path, PathBuf};

use super::Tokenizer;
use crate::DataError;

/// A tokenizer read from a Hugging Face `tokenizer.json` (GPT-2, GPT-NeoX/Pythia, Llama-2/3,
/// Mistral, Qwen, ...) or built from GPT-2's `encoder.json` + `vocab.bpe`
/// ([`HfTokenizer::from_gpt2_files`]).
///
/// `encode` runs the file's normalizer, pre-tokenizer and model but adds no special tokens (no
/// post-processor template) and ignores any truncation or padding the file asks for. As in
/// `transformers`, special tokens written out in the text (e.g. `<|endoftext|>`) are still
/// recognised as such. `decode` skips special tokens.
///
/// BOS and EOS are, in this order of precedence:
/// 1. `bos_token` / `eos_token` of a `tokenizer_config.json` beside a file named
///    `tokenizer.json` (a string, an object with `content`, or `null` for none), as in a
///    Hugging Face model folder;
/// 2. otherwise the first of these that is an added special token — BOS: `<|begin_of_text|>`,
///    `<s>`, `<bos>`, `<|endoftext|>`; EOS: `<|end_of_text|>`, `<|eot_id|>`, `</s>`, `<eos>`,
///    `<|endoftext|>` — so GPT-2 and GPT-NeoX use `<|endoftext|>` for both, Llama-2 style
///    `<s>`/`</s>`, Llama-3 `<|begin_of_text|>` and `<|end_of_text|>` (`<|eot_id|>` when a
///    chat-only vocabulary lacks it);
/// 3. otherwise none.
pub struct HfTokenizer {
    path: PathBuf,
    inner: tokenizers::Tokenizer,
    vocab_size: usize,
    bos: Option<u32>,
    eos: Option<u32>,
}

const BOS_CANDIDATES: [&str; 4] = ["<|begin_of_text|>", "<s>", "<bos>", "<|endoftext|>"];
const EOS_CANDIDATES: [&str; 5] = [
    "<|end_of_text|>",
    "<|eot_id|>",
    "</s>",
    "<eos>",
    "<|endoftext|>",
];
const CONFIG_FILE: &str = "tokenizer_config.json";

impl HfTokenizer {
    /// Reads a `tokenizer.json` (and the `tokenizer_config.json` beside it, if any; see the
    /// type's doc). Errors name the file and, for JSON, the line and column.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        // Read here rather than by the library, so an absent file is an I/O error like any other.
        let json = std::fs::read(path).map_err(DataError::io(path))?;
        // The tokenizers library panics on some malformed files (an `expect` in its decoder
        // and normalizer deserializers, found by fuzzing): parse the JSON first (syntax and
        // string escapes), so the error names the line and column, and turn any panic left
        // into an error.
        serde_json::from_slice::<serde_json::Value>(&json).map_err(|e| DataError::Tokenizers {
            path: path.into(),
            context: "not a valid tokenizer.json".into(),
            source: e.into(),
        })?;
        let loaded = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(&json))
            .unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                Err(format!("the tokenizers library failed on it: {message}").into())
            });
        let inner = loaded.map_err(|source| DataError::Tokenizers {
            path: path.into(),
            context: "not a valid tokenizer.json".into(),
            source,
        })?;
        let mut tokenizer = Self::from_inner(path, inner)?;
        let config = path.with_file_name(CONFIG_FILE);
        if path
            .file_name()
            .is_some_and(|name| name == "tokenizer.json")
            && config.is_file()
        {
            tokenizer.apply_config(&config)?;
        }
        Ok(tokenizer)
    }

    /// Wraps a library tokenizer, with BOS/EOS found by the added-special-token rule; `path`
    /// names it in errors.
    pub(super) fn from_inner(
        path: &Path,
        mut inner: tokenizers::Tokenizer,
    ) -> Result<Self, DataError> {
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|source| DataError::Tokenizers {
                path: path.into(),
                context: "cannot turn truncation off".into(),
                source,
            })?;
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&max| max as usize + 1);
        let special: Vec<(u32, String)> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, token)| (id, token.content))
            .collect();
        let find = |candidates: &[&str]| {
            candidates.iter().find_map(|candidate| {
                special
                    .iter()
                    .find(|(_, content)| content == candidate)
                    .map(|&(id, _)| id)
            })
        };
        Ok(HfTokenizer {
            path: path.into(),
            bos: find(&BOS_CANDIDATES),
            eos: find(&EOS_CANDIDATES),
            inner,
            vocab_size,
        })
    }

    /// The same tokenizer with BOS and EOS set to these ids (a GGUF file names them by id).
    pub(super) fn with_bos_eos(self, bos: Option<u32>, eos: Option<u32>) -> Self {
        Self { bos, eos, ..self }
    }

    /// The library tokenizer inside.
    pub(super) fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Takes `bos_token` and `eos_token` from a `tokenizer_config.json` where it sets them.
    fn apply_config(&mut self, config: &Path) -> Result<(), DataError> {
        let text = std::fs::read(config).map_err(DataError::io(config))?;
        let json: serde_json::Value =
            serde_json::from_slice(&text).map_err(|source| DataError::Json {
                path: config.into(),
                source,
            })?;
        for (field, slot) in [("bos_token", &mut self.bos), ("eos_token", &mut self.eos)] {
            let malformed = |problem: String| DataError::Malformed {
                path: config.into(),
                location: format!("field {field:?}"),
                problem,
            };
            let token = match json.get(field) {
                None => continue,
                Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(token)) => Some(token.as_str()),
                Some(value) => match value.get("content") {
                    Some(serde_json::Value::String(token)) => Some(token.as_str()),
                    _ => {
                        return Err(malformed(format!(
                            "expected a string, an object with \"content\" or null, found {value}"
                        )))
                    }
                },
            };
            *slot = match token {
                None => None,
                Some(token) => Some(self.inner.token_to_id(token).ok_or_else(|| {
                    malformed(format!(
                        "token {token:?} is not in the vocabulary of {}",
                        self.path.display()
                    ))
                })?),
            };
        }
        Ok(())
    }
}

impl Tokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|source| DataError::Tokenizers {
                path: self.path.clone(),
                context: "cannot encode".into(),
                source,
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(DataError::TokenOutOfRange {
                path: self.path.clone(),
                id,
                vocab_size: self.vocab_size,
            });
        }
        self.inner
            .decode(ids, true)
            .map_err(|source| DataError::Tokenizers {
                path: self.path.clone(),
                context: "cannot decode".into(),
                source,
            })
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    fn eos_id(&self) -> Option<u32> {
        self.eos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assets, error_message, TempPath};

    /// A tiny word-level `tokenizer.json` whose added special tokens are `specials` (ids from 0),
    /// followed in the vocabulary by `hello` and `world`.
    fn tiny_tokenizer_json(specials: &[&str], truncation: &str) -> String {
        let added: Vec<String> = specials
            .iter()
            .enumerate()
            .map(|(id, content)| {
                format!(
                    r#"{{"id":{id},"content":"{content}","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}"#
                )
            })
            .collect();
        let mut vocab: Vec<String> = specials
            .iter()
            .enumerate()
            .map(|(id, content)| format!(r#""{content}":{id}"#))
            .collect();
        let n = specials.len();
        vocab.extend([
            format!(r#""<unk>":{n}"#),
            format!(r#""hello":{}"#, n + 1),
            format!(r#""world":{}"#, n + 2),
        ]);
        format!(
            r#"{{"version":"1.0","truncation":{truncation},"padding":null,"added_tokens":[{}],"normalizer":null,
            "pre_tokenizer":{{"type":"Whitespace"}},"post_processor":null,"decoder":null,
            "model":{{"type":"WordLevel","vocab":{{{}}},"unk_token":"<unk>"}}}}"#,
            added.join(","),
            vocab.join(",")
        )
    }

    fn open_tiny(specials: &[&str]) -> HfTokenizer {
        let file = TempPath::file("tiny.json", tiny_tokenizer_json(specials, "null"));
        HfTokenizer::open(file.path()).unwrap()
    }

    #[test]
    fn neox_20b_encodes_hello_world() {
        let tok = HfTokenizer::open(&assets().join("tokenizers/20B_tokenizer.json")).unwrap();
        assert_eq!(tok.encode("Hello world").unwrap(), [12092, 1533]);
        assert_eq!(tok.decode(&[12092, 1533]).unwrap(), "Hello world");
        // GPT-NeoX's <|endoftext|> is id 0, both BOS and EOS.
        assert_eq!((tok.bos_id(), tok.eos_id()), (Some(0), Some(0)));
        // Its added tokens run past the BPE vocabulary (50254) up to id 50280.
        assert_eq!(tok.vocab_size(), 50281);
    }

    #[test]
    fn gpt2_tokenizer_json_matches_the_reference_ids() {
        let tok = HfTokenizer::open(&assets().join("tokenizers/gpt2-tokenizer.json")).unwrap();
        assert_eq!(tok.encode("The sky is").unwrap(), [464, 6766, 318]);
        assert_eq!(tok.encode(" blue").unwrap(), [4171]);
        assert_eq!(
            (tok.bos_id(), tok.eos_id(), tok.vocab_size()),
            (Some(50256), Some(50256), 50257)
        );
    }

    #[test]
    fn encode_adds_no_special_tokens_and_decode_skips_them() {
        let tok = HfTokenizer::open(&assets().join("tokenizers/gpt2-tokenizer.json")).unwrap();
        assert_eq!(
            tok.decode(&[50256, 464, 6766, 318, 50256]).unwrap(),
            "The sky is"
        );
        // A special token written in the text is still that token, as in `transformers`.
        assert_eq!(tok.encode("is<|endoftext|>").unwrap(), [271, 50256]);
    }

    #[test]
    fn bos_and_eos_follow_the_documented_rule() {
        let llama2 = open_tiny(&["<unk0>", "<s>", "</s>"]);
        assert_eq!((llama2.bos_id(), llama2.eos_id()), (Some(1), Some(2)));
        let llama3 = open_tiny(&["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]);
        assert_eq!((llama3.bos_id(), llama3.eos_id()), (Some(0), Some(1)));
        let chat_only = open_tiny(&["<|eot_id|>", "<|begin_of_text|>"]);
        assert_eq!((chat_only.bos_id(), chat_only.eos_id()), (Some(1), Some(0)));
        let none = open_tiny(&["<pad>"]);
        assert_eq!((none.bos_id(), none.eos_id()), (None, None));
    }

    #[test]
    fn tokenizer_config_sets_bos_and_eos() {
        let dir = TempPath::dir("hf-model");
        let specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"];
        std::fs::write(
            dir.path().join("tokenizer.json"),
            tiny_tokenizer_json(&specials, "null"),
        )
        .unwrap();
        let config = dir.path().join(CONFIG_FILE);
        std::fs::write(
            &config,
            r#"{"bos_token": null, "eos_token": {"content": "<|eot_id|>"}}"#,
        )
        .unwrap();
        let tok = crate::load_tokenizer(dir.path()).unwrap();
        assert_eq!((tok.bos_id(), tok.eos_id()), (None, Some(2)));

        std::fs::write(&config, r#"{"eos_token": "<|im_end|>"}"#).unwrap();
        let message = error_message(crate::load_tokenizer(dir.path()), "unknown eos_token");
        assert!(
            message.contains("tokenizer_config.json: field \"eos_token\""),
            "{message}"
        );
        assert!(message.contains("<|im_end|>"), "{message}");

        std::fs::write(&config, "{").unwrap();
        let message = error_message(crate::load_tokenizer(dir.path()), "bad config");
        assert!(
            message.contains("tokenizer_config.json: invalid JSON"),
            "{message}"
        );
    }

    #[test]
    fn truncation_in_the_file_is_ignored() {
        let truncation =
            r#"{"direction":"Right","max_length":1,"strategy":"LongestFirst","stride":0}"#;
        let file = TempPath::file("truncating.json", tiny_tokenizer_json(&["<s>"], truncation));
        let tok = HfTokenizer::open(file.path()).unwrap();
        assert_eq!(tok.encode("hello world hello").unwrap(), [2, 3, 2]);
    }

    #[test]
    fn malformed_tokenizer_json_is_an_error_naming_the_file() {
        for (name, text) in [
            ("empty-tokenizer.json", ""),
            ("cut-tokenizer.json", r#"{"version":"1.0","model":"#),
            (
                "wrong-tokenizer.json",
                r#"{"version":"1.0","model":{"type":"Nope"}}"#,
            ),
        ] {
            let file = TempPath::file(name, text);
            let message = error_message(HfTokenizer::open(file.path()), name);
            assert!(message.contains(name), "{message}");
            assert!(message.contains("not a valid tokenizer.json"), "{message}");
        }
    }

    #[test]
    fn decode_of_an_out_of_range_id_is_an_error_naming_the_file() {
        let tok = HfTokenizer::open(&assets().join("tokenizers/gpt2-tokenizer.json")).unwrap();
        let message = error_message(tok.decode(&[464, 50257]), "id 50257");
        assert!(
            message.contains("gpt2-tokenizer.json: token id 50257 is out of range"),
            "{message}"
        );
    }
}
