//! The tokenizer and chat template of a llama.cpp GGUF file, built from its `tokenizer.*`
//! keys as transformers' GGUF loader builds them (`integrations/gguf/gguf_tokenizer_mapping.py`),
//! so `--model model.gguf` needs no other file.
//!
//! - `tokenizer.ggml.model = gpt2`: byte-level BPE from `tokens` and `merges`. Tokens written
//!   outside GPT-2's byte alphabet are re-spelled in it, as transformers does. The pre-tokenizer
//!   follows `tokenizer.ggml.pre` as llama.cpp does: GPT-2's regex for `default`/`gpt2`/`gpt-2`
//!   (and when absent); `smollm` splits every digit first (SmolLM2's own `tokenizer.json`, and
//!   llama.cpp; transformers' GGUF loader does not, and so tokenizes numbers differently from
//!   the original model); `llama3`/`llama-bpe`/... and `qwen2`/... split with those models'
//!   regexes. Any other `pre` is refused by name rather than tokenized differently.
//! - `tokenizer.ggml.model = llama`: SentencePiece as a BPE with byte fallback over `tokens`,
//!   its merges from the file or, as transformers derives them, from `scores` (every split of a
//!   token into two tokens, best score first); a `▁` prepended to the first word unless
//!   `tokenizer.ggml.add_space_prefix` is false.
//! - Special tokens: the `CONTROL` tokens (type 3) and the BOS/EOS/unknown/padding tokens are
//!   special (matched whole in text, skipped in decoding); `USER_DEFINED` ones (type 4) are
//!   matched whole but not special.
//! - BOS and EOS are `tokenizer.ggml.bos_token_id` and `eos_token_id`. ropo puts BOS in front of
//!   a prompt as it does for every tokenizer (see `tokenize`), whatever
//!   `tokenizer.ggml.add_bos_token` says, as for the Hugging Face folder the file was converted
//!   from; [`GgufVocab::add_bos_token`] reports the flag, and an exported folder keeps it.
//! - The chat template is `tokenizer.chat_template`, rendered with `bos_token`, `eos_token`,
//!   `unk_token` and `pad_token` named as in a `tokenizer_config.json`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ropo_gguf::{GgufError, GgufFile};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::HfTokenizer;
use crate::DataError;

/// `tokenizer.ggml.token_type` of a control token (`<s>`, `<|im_start|>`).
const CONTROL: i128 = 3;
/// `tokenizer.ggml.token_type` of a user-defined token (`<think>`).
const USER_DEFINED: i128 = 4;

/// Llama 3's pre-tokenizer regex (also llama.cpp's `llama-bpe`, `falcon3`, `smaug-bpe`, ...).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's pre-tokenizer regex: Llama 3's with one digit at a time.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.ggml.pre` values ropo builds a byte-level tokenizer for.
const KNOWN_PRE: &str = "default, gpt2, gpt-2, smollm, llama3, llama-v3, llama-bpe, falcon3, \
                         smaug-bpe, dbrx, qwen2, deepseek-r1-qwen";

/// How a byte-level vocabulary splits text before BPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreTokenizer {
    /// GPT-2's regex.
    Gpt2,
    /// Every digit apart, then GPT-2's regex (SmolLM2, StarCoder).
    DigitsThenGpt2,
    /// A regex of its own, then the byte-level mapping.
    Regex(&'static str),
}

/// Which tokenizer `tokenizer.ggml.model` names.
#[derive(Debug, Clone)]
enum Model {
    /// `gpt2`: byte-level BPE.
    Gpt2 {
        merges: Vec<(String, String)>,
        pre: PreTokenizer,
    },
    /// `llama`: SentencePiece with byte fallback.
    Llama {
        merges: Vec<(String, String)>,
        add_space_prefix: bool,
    },
}

/// What a GGUF file says about its tokenizer: the vocabulary, its special tokens, the
/// `add_bos_token` flag and the chat template. [`GgufVocab::tokenizer`] builds the tokenizer.
#[derive(Debug, Clone)]
pub struct GgufVocab {
    path: PathBuf,
    model: Model,
    tokens: Vec<String>,
    token_types: Vec<i128>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos_token: bool,
    add_eos_token: bool,
    chat_template: Option<String>,
}

impl From<GgufError> for DataError {
    fn from(error: GgufError) -> Self {
        match error {
            GgufError::Io { path, source } => DataError::Io { path, source },
            GgufError::Invalid {
                path,
                field,
                problem,
            }
            | GgufError::Unsupported {
                path,
                field,
                problem,
            } => DataError::Malformed {
                path,
                location: field,
                problem,
            },
        }
    }
}

impl GgufVocab {
    /// Reads the `tokenizer.*` keys of the GGUF file at `path` (no tensor data). Errors name
    /// the file and the key: an absent or unknown `tokenizer.ggml.model`, an unsupported
    /// `tokenizer.ggml.pre`, arrays of different lengths, a special token id out of range, a
    /// malformed merge.
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let file = GgufFile::open(path)?;
        let key = |name: &str| format!("tokenizer.ggml.{name}");
        let field = |name: &str| format!("metadata '{}'", key(name));
        let kind = file
            .string(&key("model"))?
            .ok_or_else(|| file.invalid(field("model"), "missing: the file has no tokenizer"))?
            .to_string();
        let tokens = file
            .strings(&key("tokens"))?
            .ok_or_else(|| file.invalid(field("tokens"), "missing"))?
            .to_vec();
        let count = tokens.len();
        let token_types = match file.array(&key("token_type"))? {
            None => vec![1; count],
            Some(array) => array
                .to_i128s()
                .filter(|types| types.len() == count)
                .ok_or_else(|| {
                    file.invalid(
                        field("token_type"),
                        format!(
                            "expected {count} integers (one per token), found {}",
                            file.get(&key("token_type"))
                                .map_or(String::new(), |v| v.describe())
                        ),
                    )
                })?,
        };
        let merges = match file.strings(&key("merges"))? {
            None => None,
            Some(lines) => Some(parse_merges(&file, &field("merges"), lines)?),
        };
        let model = match kind.as_str() {
            "gpt2" => Model::Gpt2 {
                merges: merges
                    .ok_or_else(|| file.invalid(field("merges"), "missing (needed by gpt2)"))?,
                pre: pre_tokenizer(&file, &key("pre"))?,
            },
            "llama" => {
                let merges = match merges {
                    Some(merges) => merges,
                    None => {
                        let scores = file
                            .array(&key("scores"))?
                            .and_then(|a| a.to_f64s())
                            .filter(|s| s.len() == count)
                            .ok_or_else(|| {
                                file.invalid(
                                    field("scores"),
                                    format!(
                                        "expected {count} floats (one per token) to derive the \
                                         merges from"
                                    ),
                                )
                            })?;
                        merges_from_scores(&tokens, &scores)
                    }
                };
                Model::Llama {
                    merges,
                    add_space_prefix: file.bool(&key("add_space_prefix"))?.unwrap_or(true),
                }
            }
            other => {
                return Err(file
                    .unsupported(
                        field("model"),
                        format!(
                            "tokenizer '{other}' is not supported: ropo builds 'gpt2' (byte-level \
                             BPE) and 'llama' (SentencePiece) tokenizers"
                        ),
                    )
                    .into())
            }
        };
        let id = |name: &str| -> Result<Option<u32>, DataError> {
            let key = key(name);
            match file.uint(&key)? {
                None => Ok(None),
                Some(id) if (id as usize) < count => Ok(Some(id as u32)),
                Some(id) => Err(file
                    .invalid(
                        format!("metadata '{key}'"),
                        format!("token id {id} is out of range: the vocabulary has {count} tokens"),
                    )
                    .into()),
            }
        };
        let add_bos_default = matches!(model, Model::Llama { .. });
        Ok(Self {
            path: path.to_path_buf(),
            bos: id("bos_token_id")?,
            eos: id("eos_token_id")?,
            unk: id("unknown_token_id")?,
            pad: id("padding_token_id")?,
            add_bos_token: file.bool(&key("add_bos_token"))?.unwrap_or(add_bos_default),
            add_eos_token: file.bool(&key("add_eos_token"))?.unwrap_or(false),
            chat_template: file.string("tokenizer.chat_template")?.map(str::to_string),
            model,
            tokens,
            token_types,
        })
    }

    /// The tokenizer the keys describe (see the module's doc); its errors name the GGUF file.
    pub fn tokenizer(&self) -> Result<HfTokenizer, DataError> {
        let library = |context: &str| {
            let path = self.path.clone();
            let context = context.to_string();
            move |source| DataError::Tokenizers {
                path,
                context,
                source,
            }
        };
        let mut inner = match &self.model {
            Model::Gpt2 { merges, pre } => {
                let bpe = BPE::builder()
                    .vocab_and_merges(byte_level_vocab(&self.tokens), merges.clone())
                    .build()
                    .map_err(library(
                        "cannot build a byte-level BPE from tokenizer.ggml.*",
                    ))?;
                let mut inner = tokenizers::Tokenizer::new(bpe);
                inner
                    .with_pre_tokenizer(Some(byte_level_pre_tokenizer(*pre)))
                    .with_decoder(Some(ByteLevel::default()));
                inner
            }
            Model::Llama {
                merges,
                add_space_prefix,
            } => {
                let vocab: Vocab = self
                    .tokens
                    .iter()
                    .enumerate()
                    .map(|(id, token)| (token.clone(), id as u32))
                    .collect();
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges.clone())
                    .fuse_unk(true)
                    .byte_fallback(true)
                    .build()
                    .map_err(library(
                        "cannot build a SentencePiece BPE from tokenizer.ggml.*",
                    ))?;
                let mut inner = tokenizers::Tokenizer::new(bpe);
                let scheme = if *add_space_prefix {
                    PrependScheme::First
                } else {
                    PrependScheme::Never
                };
                let replace = Replace::new("▁", " ").map_err(library("cannot build a decoder"))?;
                let mut decoders = vec![
                    DecoderWrapper::Replace(replace),
                    DecoderWrapper::ByteFallback(ByteFallback::new()),
                    DecoderWrapper::Fuse(Fuse::new()),
                ];
                if *add_space_prefix {
                    decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
                }
                inner
                    .with_pre_tokenizer(Some(Metaspace::new('▁', scheme, false)))
                    .with_decoder(Some(DecoderSequence::new(decoders)));
                inner
            }
        };
        let specials = self.special_ids();
        let spelled: Option<HashSet<char>> =
            matches!(self.model, Model::Gpt2 { .. }).then(|| byte_alphabet().into_iter().collect());
        let special: Vec<AddedToken> = self
            .tokens
            .iter()
            .enumerate()
            .filter(|&(id, token)| {
                let marked = self.token_types[id] == CONTROL || specials.contains(&(id as u32));
                // A byte-level vocabulary spells every real token in its byte alphabet; a
                // "control" token outside it is a mislabel transformers skips too.
                marked
                    && spelled
                        .as_ref()
                        .is_none_or(|s| token.chars().all(|c| s.contains(&c)))
            })
            .map(|(_, token)| AddedToken::from(token.clone(), true).normalized(false))
            .collect();
        inner
            .add_special_tokens(special)
            .map_err(library("cannot add the control tokens"))?;
        let user: Vec<AddedToken> = self
            .tokens
            .iter()
            .enumerate()
            .filter(|&(id, _)| self.token_types[id] == USER_DEFINED)
            .map(|(_, token)| AddedToken::from(token.clone(), false).normalized(false))
            .collect();
        inner
            .add_tokens(user)
            .map_err(library("cannot add the user-defined tokens"))?;
        let tokenizer = HfTokenizer::from_inner(&self.path, inner)?;
        Ok(tokenizer.with_bos_eos(self.bos, self.eos))
    }

    /// The file the vocabulary was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `tokenizer.ggml.add_bos_token` (default: true for `llama`, false for `gpt2`, as
    /// transformers reads it).
    pub fn add_bos_token(&self) -> bool {
        self.add_bos_token
    }

    /// `tokenizer.chat_template`, if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The special tokens a chat template is rendered with, named as in a
    /// `tokenizer_config.json`: `("bos_token", "<s>")`, ...
    pub fn special_tokens(&self) -> Vec<(String, String)> {
        [
            ("bos_token", self.bos),
            ("eos_token", self.eos),
            ("unk_token", self.unk),
            ("pad_token", self.pad),
        ]
        .into_iter()
        .filter_map(|(name, id)| Some((name.to_string(), self.tokens[id? as usize].clone())))
        .collect()
    }

    /// The tokenizer files of a Hugging Face model folder that hold what this file says, for a
    /// model trained from a GGUF file to be exported with its tokenizer: `tokenizer.json`,
    /// `tokenizer_config.json` (special tokens, `add_bos_token`, `add_eos_token`, the chat
    /// template), `chat_template.jinja` when there is a template, and `generation_config.json`
    /// (the BOS, EOS and padding ids).
    pub fn hugging_face_files(&self) -> Result<Vec<(&'static str, Vec<u8>)>, DataError> {
        let tokenizer = self.tokenizer()?;
        let json = tokenizer
            .inner()
            .to_string(false)
            .map_err(|source| DataError::Tokenizers {
                path: self.path.clone(),
                context: "cannot write tokenizer.json".into(),
                source,
            })?;
        let mut config = serde_json::Map::new();
        config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        for (name, token) in self.special_tokens() {
            config.insert(name, token.into());
        }
        config.insert("add_bos_token".into(), self.add_bos_token.into());
        config.insert("add_eos_token".into(), self.add_eos_token.into());
        config.insert("clean_up_tokenization_spaces".into(), false.into());
        if let Some(template) = &self.chat_template {
            config.insert("chat_template".into(), template.clone().into());
        }
        let generation = serde_json::json!({
            "bos_token_id": self.bos,
            "eos_token_id": self.eos,
            "pad_token_id": self.pad,
        });
        let pretty = |value: &serde_json::Value| {
            let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
            text.push('\n');
            text.into_bytes()
        };
        let mut files = vec![
            ("tokenizer.json", json.into_bytes()),
            ("tokenizer_config.json", pretty(&config.into())),
            ("generation_config.json", pretty(&generation)),
        ];
        if let Some(template) = &self.chat_template {
            files.push(("chat_template.jinja", template.clone().into_bytes()));
        }
        Ok(files)
    }

    fn special_ids(&self) -> HashSet<u32> {
        [self.bos, self.eos, self.unk, self.pad]
            .into_iter()
            .flatten()
            .collect()
    }
}

impl HfTokenizer {
    /// The tokenizer of the GGUF file at `path` (see [`GgufVocab`]).
    pub fn from_gguf(path: &Path) -> Result<Self, DataError> {
        GgufVocab::read(path)?.tokenizer()
    }
}

/// `tokenizer.ggml.merges`: each line two tokens separated by one space.
fn parse_merges(
    file: &GgufFile,
    field: &str,
    lines: &[String],
) -> Result<Vec<(String, String)>, DataError> {
    lines
        .iter()
        .enumerate()
        .map(|(index, line)| match line.split_once(' ') {
            Some((left, right)) if !right.contains(' ') => {
                Ok((left.to_string(), right.to_string()))
            }
            _ => Err(file
                .invalid(
                    format!("{field}[{index}]"),
                    format!("expected two tokens separated by one space, found {line:?}"),
                )
                .into()),
        })
        .collect()
}

/// The pre-tokenizer `tokenizer.ggml.pre` names (absent: GPT-2's).
fn pre_tokenizer(file: &GgufFile, key: &str) -> Result<PreTokenizer, DataError> {
    Ok(match file.string(key)? {
        None | Some("default" | "gpt2" | "gpt-2") => PreTokenizer::Gpt2,
        Some("smollm") => PreTokenizer::DigitsThenGpt2,
        Some("llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx") => {
            PreTokenizer::Regex(LLAMA3_SPLIT)
        }
        Some("qwen2" | "deepseek-r1-qwen") => PreTokenizer::Regex(QWEN2_SPLIT),
        Some(other) => {
            return Err(file
                .unsupported(
                    format!("metadata '{key}'"),
                    format!("pre-tokenizer '{other}' is not supported (ropo knows {KNOWN_PRE})"),
                )
                .into())
        }
    })
}

fn byte_level_pre_tokenizer(pre: PreTokenizer) -> PreTokenizerWrapper {
    let gpt2 = || ByteLevel::new(false, true, true).into();
    match pre {
        PreTokenizer::Gpt2 => gpt2(),
        PreTokenizer::DigitsThenGpt2 => {
            PreSequence::new(vec![Digits::new(true).into(), gpt2()]).into()
        }
        PreTokenizer::Regex(regex) => {
            let split = Split::new(
                SplitPattern::Regex(regex.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .expect("the pre-tokenizer regexes are constants that compile");
            PreSequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into()
        }
    }
}

/// GPT-2's byte alphabet (`bytes_to_unicode`): the printable Latin-1 bytes stand for
/// themselves, the other 68 bytes for U+0100 onwards, in byte order.
fn byte_alphabet() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut chars = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        chars[b as usize] = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("U+0100..U+0143 are characters")
        };
    }
    chars
}

/// `tokens` as a byte-level BPE's vocabulary: a token with a character outside the byte
/// alphabet is re-spelled from its UTF-8 bytes (as transformers' `byte_level_tokenizer` does);
/// a later duplicate takes the id.
fn byte_level_vocab(tokens: &[String]) -> Vocab {
    let alphabet = byte_alphabet();
    let known: HashSet<char> = alphabet.iter().copied().collect();
    tokens
        .iter()
        .enumerate()
        .map(|(id, token)| {
            let spelled = if token.chars().all(|c| known.contains(&c)) {
                token.clone()
            } else {
                token.bytes().map(|b| alphabet[b as usize]).collect()
            };
            (spelled, id as u32)
        })
        .collect()
}

/// SentencePiece merges derived from the vocabulary, as transformers' `generate_merges` derives
/// them: for each token (in file order, once), every split into two tokens of the vocabulary
/// (ordered by their ids), then all of them ordered by the token's score, best first, and the
/// lengths of the two parts, longer first; ties keep their order.
fn merges_from_scores(tokens: &[String], scores: &[f64]) -> Vec<(String, String)> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut score_of: HashMap<&str, f64> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (id, (token, &score)) in tokens.iter().zip(scores).enumerate() {
        ids.insert(token, id);
        if score_of.insert(token, score).is_none() {
            order.push(token);
        }
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for token in order {
        let score = score_of[token];
        let mut local: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(left, right)| ids.contains_key(left) && ids.contains_key(right))
            .map(|(left, right)| (left, right, score))
            .collect();
        local.sort_by_key(|(left, right, _)| (ids[left], ids[right]));
        merges.extend(local);
    }
    let chars = |s: &str| s.chars().count();
    merges.sort_by(|a, b| {
        (b.2, chars(b.0), chars(b.1))
            .partial_cmp(&(a.2, chars(a.0), chars(a.1)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    merges
        .into_iter()
        .map(|(left, right, _)| (left.to_string(), right.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        let alphabet = byte_alphabet();
        assert_eq!(alphabet[b' ' as usize], 'Ġ');
        assert_eq!(alphabet[b'\n' as usize], 'Ċ');
        assert_eq!(alphabet[b'A' as usize], 'A');
        assert_eq!(alphabet[0], 'Ā');
        assert_eq!(alphabet.iter().collect::<HashSet<_>>().len(), 256);
    }

    #[test]
    fn merges_come_from_scores_best_first_with_ties_in_file_order() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "abc", "bc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let scores = [0.0, 0.0, 0.0, -1.0, -3.0, -1.0];
        let merges = merges_from_scores(&tokens, &scores);
        let pairs: Vec<(&str, &str)> = merges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(pairs, [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]);
    }
}
