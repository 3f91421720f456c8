//! GPT-2's original tokenizer files, `encoder.json` + `vocab.bpe`, built into an
//! [`HfTokenizer`] that gives the same ids as GPT-2's `tokenizer.json`.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::AddedToken;

use super::HfTokenizer;
use crate::DataError;

/// GPT-2's one special token: end of text, also used as BOS.
const END_OF_TEXT: &str = "<|endoftext|>";

impl HfTokenizer {
    /// GPT-2's byte-level BPE from OpenAI's `encoder.json` (token -> id) and `vocab.bpe` (the
    /// merges, one `a b` pair a line in rank order after a `#version` line): a ByteLevel
    /// pre-tokenizer without prefix space, the BPE model and a ByteLevel decoder — what
    /// Hugging Face's GPT-2 `tokenizer.json` holds. `<|endoftext|>` is the special BOS and EOS
    /// when `encoder.json` has it. Errors name the file and the line at fault; later errors
    /// (encode, decode) name `encoder_json`.
    pub fn from_gpt2_files(encoder_json: &Path, vocab_bpe: &Path) -> Result<Self, DataError> {
        let vocab = read_encoder(encoder_json)?;
        let merges = read_merges(vocab_bpe, encoder_json, &vocab)?;
        let has_end_of_text = vocab.contains_key(END_OF_TEXT);
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
            .build()
            .map_err(|source| DataError::Tokenizers {
                path: vocab_bpe.into(),
                context: format!("cannot build a BPE with {}", encoder_json.display()),
                source,
            })?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner
            .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
            .with_decoder(Some(ByteLevel::default()))
            .with_post_processor(Some(ByteLevel::default()));
        if has_end_of_text {
            inner
                .add_special_tokens([AddedToken::from(END_OF_TEXT, true)])
                .map_err(|source| DataError::Tokenizers {
                    path: encoder_json.into(),
                    context: format!("cannot add {END_OF_TEXT}"),
                    source,
                })?;
        }
        Self::from_inner(encoder_json, inner)
    }
}

/// `encoder.json`: one JSON object from token to id.
fn read_encoder(path: &Path) -> Result<HashMap<String, u32>, DataError> {
    let text = std::fs::read(path).map_err(DataError::io(path))?;
    serde_json::from_slice(&text).map_err(|source| DataError::Json {
        path: path.into(),
        source,
    })
}

/// `vocab.bpe`'s merges, read as the `tokenizers` library reads a merges file (`#version`
/// lines skipped, each other line exactly two tokens separated by one space), with each
/// token and their concatenation checked against the vocabulary so that an error can name
/// the line.
fn read_merges(
    path: &Path,
    encoder_json: &Path,
    vocab: &HashMap<String, u32>,
) -> Result<Vec<(String, String)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(DataError::io(path))?;
    let mut merges = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.starts_with("#version") {
            continue;
        }
        let malformed = |problem: String| DataError::Malformed {
            path: path.into(),
            location: format!("line {}", index + 1),
            problem,
        };
        let Some((left, right)) = line
            .split_once(' ')
            .filter(|(_, right)| !right.contains(' '))
        else {
            return Err(malformed(format!(
                "expected two tokens separated by one space, found {line:?}"
            )));
        };
        for token in [left, right, &format!("{left}{right}")] {
            if !vocab.contains_key(token) {
                return Err(malformed(format!(
                    "token {token:?} is not in {}",
                    encoder_json.display()
                )));
            }
        }
        merges.push((left.to_owned(), right.to_owned()));
    }
    Ok(merges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assets, error_message, TempPath};
    use crate::Tokenizer;

    fn gpt2_from_files() -> HfTokenizer {
        let dir = assets().join("tokenizers");
        HfTokenizer::from_gpt2_files(&dir.join("encoder.json"), &dir.join("vocab.bpe")).unwrap()
    }

    #[test]
    fn gpt2_files_match_the_reference_ids() {
        let tok = gpt2_from_files();
        assert_eq!(tok.encode("The sky is").unwrap(), [464, 6766, 318]);
        assert_eq!(tok.encode(" blue").unwrap(), [4171]);
        assert_eq!(
            (tok.bos_id(), tok.eos_id(), tok.vocab_size()),
            (Some(50256), Some(50256), 50257)
        );
        assert_eq!(
            tok.decode(&[464, 6766, 318, 4171, 50256]).unwrap(),
            "The sky is blue"
        );
    }

    #[test]
    fn gpt2_files_and_tokenizer_json_agree_on_tinyshakespeare() {
        let from_files = gpt2_from_files();
        let from_json =
            HfTokenizer::open(&assets().join("tokenizers/gpt2-tokenizer.json")).unwrap();
        let text = std::fs::read_to_string(assets().join("corpora/tinyshakespeare.txt")).unwrap();
        let mut paragraphs: Vec<&str> = text.split("\n\n").take(200).collect();
        paragraphs.push(&text[..20_000]);
        paragraphs.push("  double  spaces, tabs\tand ünïcödé 🙂<|endoftext|>");
        for paragraph in paragraphs {
            let ids = from_files.encode(paragraph).unwrap();
            assert_eq!(ids, from_json.encode(paragraph).unwrap(), "{paragraph:?}");
            assert_eq!(
                from_files.decode(&ids).unwrap(),
                paragraph.replace("<|endoftext|>", "")
            );
        }
    }

    #[test]
    fn bad_merges_line_is_an_error_naming_file_and_line() {
        let dir = TempPath::dir("gpt2-bad");
        let encoder = dir.path().join("encoder.json");
        let merges = dir.path().join("vocab.bpe");
        std::fs::write(&encoder, r#"{"a": 0, "b": 1, "ab": 2, "c": 3}"#).unwrap();

        std::fs::write(&merges, "#version: 0.2\na b\nab c d\n").unwrap();
        let message = error_message(
            HfTokenizer::from_gpt2_files(&encoder, &merges),
            "three tokens",
        );
        assert!(
            message.contains("vocab.bpe: line 3: expected two tokens"),
            "{message}"
        );

        std::fs::write(&merges, "#version: 0.2\na b\nab c\n").unwrap();
        let message = error_message(
            HfTokenizer::from_gpt2_files(&encoder, &merges),
            "abc missing",
        );
        assert!(
            message.contains("vocab.bpe: line 3: token \"abc\" is not in"),
            "{message}"
        );

        std::fs::write(&merges, "#version: 0.2\na b\n").unwrap();
        let tok = HfTokenizer::from_gpt2_files(&encoder, &merges).unwrap();
        assert_eq!((tok.eos_id(), tok.vocab_size()), (None, 4));
    }

    #[test]
    fn malformed_encoder_json_is_an_error_naming_it() {
        let dir = TempPath::dir("gpt2-bad-json");
        let encoder = dir.path().join("encoder.json");
        let merges = dir.path().join("vocab.bpe");
        std::fs::write(&merges, "#version: 0.2\n").unwrap();
        for text in ["", r#"{"a": -1}"#, "[1, 2]"] {
            std::fs::write(&encoder, text).unwrap();
            let message = error_message(HfTokenizer::from_gpt2_files(&encoder, &merges), text);
            assert!(message.contains("encoder.json: invalid JSON"), "{message}");
        }
    }
}
