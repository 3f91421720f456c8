//! llama2.c's tokenizer: its `.bin` file format and its `encode`/`decode`, as in `run.c`.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};

use super::Tokenizer;
use crate::DataError;

/// A llama2.c tokenizer (`tokenizer.bin`, `tok512.bin`, ...): a SentencePiece BPE vocabulary
/// exported with one merge score per token.
///
/// The file holds a little-endian `i32` max token length, then for each token an `f32` score,
/// an `i32` byte length and that many bytes; the token count is not stored (llama2.c takes it
/// from the model), so it is whatever the file holds. Ids 0, 1, 2 are `<unk>`, BOS and EOS, and
/// ids 3..=258 must be the byte tokens `<0x00>`..`<0xFF>`, which byte fallback relies on.
///
/// [`Tokenizer::encode`] gives the same ids as llama2.c's `encode(text, bos=0, eos=0)`: a
/// dummy-prefix `" "` token for non-empty text, one token per UTF-8 character (its bytes as
/// byte tokens when the character is not in the vocabulary), then repeatedly the merge of the
/// adjacent pair whose concatenation is the vocabulary token with the highest score (the
/// leftmost pair on ties), until no pair merges. Where `run.c` is undefined this stays total:
/// a vocabulary without `" "` gets the dummy prefix as a byte token, and duplicate token
/// strings resolve to the lowest id.
pub struct Llama2cTokenizer {
    path: PathBuf,
    pieces: Vec<Vec<u8>>,
    scores: Vec<f32>,
    ids: HashMap<Vec<u8>, u32>,
    max_token_length: u32,
}

/// The `<unk>`, BOS and EOS ids, fixed by llama2.c.
const UNK_ID: u32 = 0;
const BOS_ID: u32 = 1;
const EOS_ID: u32 = 2;
/// Byte `b` is token `b + BYTE_OFFSET`.
const BYTE_OFFSET: u32 = 3;
/// llama2.c's merge loop starts from this best score, so no pair scoring at or below it merges.
const NO_MERGE_SCORE: f32 = -1e10;

impl Llama2cTokenizer {
    /// Reads a llama2.c tokenizer file. Errors name the file and the byte offset of the first
    /// field that is missing or wrong.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let bytes = std::fs::read(path).map_err(DataError::io(path))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses the bytes of a llama2.c tokenizer file; `path` is used in errors only.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, DataError> {
        let mut reader = Reader {
            path,
            bytes,
            pos: 0,
        };
        let max_token_length = reader.i32(|| "4 bytes of max_token_length".into())?;
        let max_token_length = u32::try_from(max_token_length).map_err(|_| {
            reader.malformed(0, format!("negative max_token_length {max_token_length}"))
        })?;

        let mut pieces = Vec::new();
        let mut scores = Vec::new();
        while !reader.at_end() {
            let id = pieces.len();
            let score =
                f32::from_le_bytes(reader.array(|| format!("4 bytes of token {id}'s score"))?);
            let len_at = reader.pos;
            let len = reader.i32(|| format!("4 bytes of token {id}'s length"))?;
            let len = usize::try_from(len).map_err(|_| {
                reader.malformed(len_at, format!("token {id} has negative length {len}"))
            })?;
            let piece = reader.take(len, || format!("{len} bytes of token {id}"))?;
            pieces.push(piece.to_vec());
            scores.push(score);
        }
        if u32::try_from(pieces.len()).is_err() {
            return Err(reader.malformed(0, format!("{} tokens do not fit u32 ids", pieces.len())));
        }

        for byte in 0..=u8::MAX {
            let id = BYTE_OFFSET + u32::from(byte);
            let expected = format!("<0x{byte:02X}>");
            match pieces.get(id as usize) {
                Some(piece) if piece == expected.as_bytes() => {}
                found => {
                    let found = match found {
                        Some(piece) => format!("{:?}", String::from_utf8_lossy(piece)),
                        None => format!("missing: the file holds {} tokens", pieces.len()),
                    };
                    return Err(DataError::Malformed {
                        path: path.into(),
                        location: format!("token {id}"),
                        problem: format!(
                            "expected the byte token {expected:?} that llama2.c's byte fallback needs, found {found}"
                        ),
                    });
                }
            }
        }

        let mut ids = HashMap::with_capacity(pieces.len());
        for (id, piece) in (0u32..).zip(&pieces) {
            ids.entry(piece.clone()).or_insert(id);
        }
        Ok(Llama2cTokenizer {
            path: path.into(),
            pieces,
            scores,
            ids,
            max_token_length,
        })
    }

    /// The bytes of token `id` as stored in the file (byte tokens read `<0xXX>`).
    pub fn piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).map(Vec::as_slice)
    }

    /// The merge score of token `id`.
    pub fn score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// The header's max token length (llama2.c sizes its buffers with it).
    pub fn max_token_length(&self) -> u32 {
        self.max_token_length
    }

    /// Appends the token of `piece`, or its byte tokens if it is not in the vocabulary.
    fn push_piece(&self, piece: &[u8], tokens: &mut Vec<u32>) {
        match self.ids.get(piece) {
            Some(&id) => tokens.push(id),
            None => tokens.extend(piece.iter().map(|&b| BYTE_OFFSET + u32::from(b))),
        }
    }

    /// The merge of `left` and `right`: the token spelling their concatenation and its score,
    /// if that token exists and scores above llama2.c's floor.
    fn merge_of(&self, left: u32, right: u32, buffer: &mut Vec<u8>) -> Option<(u32, f32)> {
        buffer.clear();
        buffer.extend_from_slice(self.piece(left)?);
        buffer.extend_from_slice(self.piece(right)?);
        let id = *self.ids.get(buffer.as_slice())?;
        let score = self.score(id)?;
        (score > NO_MERGE_SCORE).then_some((id, score))
    }

    /// llama2.c's merge loop, in O(n log n): a heap of candidate pairs ordered by score, then
    /// by position (leftmost first), with stale candidates skipped, picks the same pair as
    /// `run.c`'s scan of all adjacent pairs at every step.
    fn merge(&self, tokens: Vec<u32>) -> Vec<u32> {
        const NONE: usize = usize::MAX;
        let n = tokens.len();
        let mut ids = tokens;
        let mut next: Vec<usize> = (1..=n).map(|i| if i < n { i } else { NONE }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.checked_sub(1).unwrap_or(NONE)).collect();
        let mut alive = vec![true; n];
        // Bumped whenever a node changes, so that heap entries made before are recognised.
        let mut version = vec![0u32; n];
        let mut heap = BinaryHeap::new();
        let mut buffer = Vec::new();

        let mut push = |heap: &mut BinaryHeap<Candidate>,
                        ids: &[u32],
                        version: &[u32],
                        left: usize,
                        right: usize| {
            if let Some((merged, score)) = self.merge_of(ids[left], ids[right], &mut buffer) {
                heap.push(Candidate {
                    score,
                    left,
                    right,
                    merged,
                    versions: (version[left], version[right]),
                });
            }
        };
        for left in 1..n {
            push(&mut heap, &ids, &version, left - 1, left);
        }

        while let Some(c) = heap.pop() {
            let current = alive[c.left]
                && alive[c.right]
                && next[c.left] == c.right
                && (version[c.left], version[c.right]) == c.versions;
            if !current {
                continue;
            }
            ids[c.left] = c.merged;
            version[c.left] += 1;
            alive[c.right] = false;
            let after = next[c.right];
            next[c.left] = after;
            if after != NONE {
                prev[after] = c.left;
                push(&mut heap, &ids, &version, c.left, after);
            }
            let before = prev[c.left];
            if before != NONE {
                push(&mut heap, &ids, &version, before, c.left);
            }
        }

        ids.into_iter()
            .zip(alive)
            .filter_map(|(id, alive)| alive.then_some(id))
            .collect()
    }
}

impl Tokenizer for Llama2cTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        let mut tokens = Vec::with_capacity(text.len() + 1);
        if !text.is_empty() {
            self.push_piece(b" ", &mut tokens);
        }
        let mut utf8 = [0u8; 4];
        for c in text.chars() {
            self.push_piece(c.encode_utf8(&mut utf8).as_bytes(), &mut tokens);
        }
        Ok(self.merge(tokens))
    }

    /// As llama2.c's `decode`, token by token: the leading space of a token right after BOS is
    /// dropped (SentencePiece's dummy prefix), and the start of `ids` counts as right after BOS,
    /// so `decode(encode(text)) == text`; byte tokens `<0xXX>` become their byte. `<unk>`, BOS
    /// and EOS are skipped. The bytes are read as UTF-8, invalid sequences replaced by U+FFFD.
    fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        let mut prev = BOS_ID;
        for &id in ids {
            let mut piece = self.piece(id).ok_or_else(|| DataError::TokenOutOfRange {
                path: self.path.clone(),
                id,
                vocab_size: self.pieces.len(),
            })?;
            if ![UNK_ID, BOS_ID, EOS_ID].contains(&id) {
                if prev == BOS_ID {
                    piece = piece.strip_prefix(b" ").unwrap_or(piece);
                }
                match byte_token(piece) {
                    Some(byte) => bytes.push(byte),
                    None => bytes.extend_from_slice(piece),
                }
            }
            prev = id;
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    fn bos_id(&self) -> Option<u32> {
        Some(BOS_ID)
    }

    fn eos_id(&self) -> Option<u32> {
        Some(EOS_ID)
    }
}

/// The byte of a `<0xXX>` token, read as `run.c`'s `sscanf(piece, "<0x%02hhX>")` does:
/// `<0x` then one or two hex digits.
fn byte_token(piece: &[u8]) -> Option<u8> {
    let digits = piece.strip_prefix(b"<0x")?;
    let hex = |b: &u8| char::from(*b).to_digit(16);
    let first = hex(digits.first()?)?;
    Some(match digits.get(1).and_then(hex) {
        Some(second) => (first * 16 + second) as u8,
        None => first as u8,
    })
}

/// A pair of adjacent nodes that merge into `merged` with `score`, as it was when pushed.
struct Candidate {
    score: f32,
    left: usize,
    right: usize,
    merged: u32,
    versions: (u32, u32),
}

impl Ord for Candidate {
    /// Higher score first, then the leftmost pair. Scores compare as `run.c`'s `>` does
    /// (`-0.0 == 0.0`); none is NaN, since only scores above [`NO_MERGE_SCORE`] are pushed.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// A cursor over a binary file that reports what it could not read, and where.
struct Reader<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// The next `n` bytes; `what` describes them for the error when the file is shorter.
    fn take(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<&'a [u8], DataError> {
        let found = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end));
        match found {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(DataError::Truncated {
                path: self.path.into(),
                offset: self.pos as u64,
                expected: what(),
                len: self.bytes.len() as u64,
            }),
        }
    }

    fn array<const N: usize>(
        &mut self,
        what: impl FnOnce() -> String,
    ) -> Result<[u8; N], DataError> {
        let at = self.pos;
        let slice = self.take(N, what)?;
        slice
            .try_into()
            .map_err(|_| self.malformed(at, format!("expected {N} bytes")))
    }

    fn i32(&mut self, what: impl FnOnce() -> String) -> Result<i32, DataError> {
        self.array(what).map(i32::from_le_bytes)
    }

    fn malformed(&self, offset: usize, problem: String) -> DataError {
        DataError::Malformed {
            path: self.path.into(),
            location: format!("byte {offset}"),
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assets, error_message, TempPath};

    fn tok512() -> Llama2cTokenizer {
        Llama2cTokenizer::open(&assets().join("models/tok512.bin")).unwrap()
    }

    /// `run.c`'s `encode` (bos = eos = 0), transcribed loop for loop: the reference that the
    /// heap-based merge must reproduce.
    fn run_c_encode(tok: &Llama2cTokenizer, text: &str) -> Vec<u32> {
        let mut tokens = Vec::new();
        if !text.is_empty() {
            tokens.push(tok.ids[b" ".as_slice()]);
        }
        let mut utf8 = [0u8; 4];
        for c in text.chars() {
            let bytes = c.encode_utf8(&mut utf8).as_bytes();
            match tok.ids.get(bytes) {
                Some(&id) => tokens.push(id),
                None => tokens.extend(bytes.iter().map(|&b| u32::from(b) + 3)),
            }
        }
        loop {
            let mut best_score = -1e10f32;
            let mut best = None;
            for i in 0..tokens.len().saturating_sub(1) {
                let pair = [
                    tok.pieces[tokens[i] as usize].as_slice(),
                    &tok.pieces[tokens[i + 1] as usize],
                ]
                .concat();
                if let Some(&id) = tok.ids.get(&pair) {
                    if tok.scores[id as usize] > best_score {
                        best_score = tok.scores[id as usize];
                        best = Some((i, id));
                    }
                }
            }
            let Some((i, id)) = best else { break };
            tokens[i] = id;
            tokens.remove(i + 1);
        }
        tokens
    }

    #[test]
    fn once_upon_a_time_encodes_as_llama2c_does() {
        let tok = tok512();
        assert_eq!(
            tok.encode("Once upon a time").unwrap(),
            [403, 407, 261, 378]
        );
        assert_eq!(
            (tok.bos_id(), tok.eos_id(), tok.vocab_size()),
            (Some(1), Some(2), 512)
        );
        assert_eq!(tok.max_token_length(), 7);
        assert_eq!(tok.piece(403), Some(b" Once".as_slice()));
        assert_eq!(tok.score(403), Some(-144.0));
    }

    #[test]
    fn empty_text_encodes_to_no_tokens() {
        assert_eq!(tok512().encode("").unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn heap_merge_matches_run_c_loop_on_real_text() {
        let tok = tok512();
        let assets = assets();
        let stories =
            std::fs::read_to_string(assets.join("corpora/tinystories_head_944k.txt")).unwrap();
        let shakespeare =
            std::fs::read_to_string(assets.join("corpora/tinyshakespeare.txt")).unwrap();
        let mut texts: Vec<&str> = stories.lines().take(150).collect();
        texts.extend(shakespeare.split("\n\n").take(150));
        texts.extend([
            " ",
            "  leading",
            "a  b",
            "é",
            "naïve café 🙂 日本",
            "<0x41>",
            "\n<s>\n",
            "tab\there",
        ]);
        for text in texts {
            assert_eq!(
                tok.encode(text).unwrap(),
                run_c_encode(&tok, text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn decode_round_trips_ordinary_text() {
        let tok = tok512();
        let stories =
            std::fs::read_to_string(assets().join("corpora/tinystories_head_944k.txt")).unwrap();
        for text in stories
            .lines()
            .take(200)
            .chain([" two  spaces ", "Line\nbreak"])
        {
            let ids = tok.encode(text).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), text);
            // With the BOS and EOS a model sees, too.
            let framed = [&[1][..], &ids, &[2]].concat();
            assert_eq!(tok.decode(&framed).unwrap(), text);
        }
    }

    #[test]
    fn characters_outside_the_vocabulary_fall_back_to_bytes_and_decode_back() {
        let tok = tok512();
        // " " is token 410 and "é" is in the vocabulary (485); "🙂" is not, so its UTF-8
        // bytes F0 9F 99 82 become byte tokens (byte + 3).
        assert_eq!(tok.encode("é").unwrap(), [410, 485]);
        assert_eq!(
            tok.encode("🙂").unwrap(),
            [410, 0xF0 + 3, 0x9F + 3, 0x99 + 3, 0x82 + 3]
        );
        for text in ["🙂", "naïve café", "The dog 🐶 ran.", "日本"] {
            let ids = tok.encode(text).unwrap();
            assert!(
                ids.iter().any(|id| (3..=258).contains(id)),
                "{text:?}: {ids:?}"
            );
            assert_eq!(tok.decode(&ids).unwrap(), text);
        }
    }

    #[test]
    fn decode_drops_the_space_after_bos_and_skips_special_tokens() {
        let tok = tok512();
        assert_eq!(tok.decode(&[403, 407]).unwrap(), "Once upon");
        assert_eq!(tok.decode(&[1, 403, 407, 2]).unwrap(), "Once upon");
        assert_eq!(tok.decode(&[378, 0, 1, 403]).unwrap(), "timeOnce");
        // A lone byte of a multi-byte character is replaced, not an error.
        assert_eq!(tok.decode(&[0xC3 + 3]).unwrap(), "\u{FFFD}");
    }

    #[test]
    fn decode_of_an_out_of_range_id_is_an_error_naming_the_file() {
        let message = error_message(tok512().decode(&[403, 512]), "id 512");
        assert!(message.contains("tok512.bin"), "{message}");
        assert!(message.contains("token id 512"), "{message}");
    }

    #[test]
    fn truncated_file_is_an_error_naming_file_offset_and_field() {
        let bytes = std::fs::read(assets().join("models/tok512.bin")).unwrap();
        let tok = tok512();
        // The header, then per token 4 bytes of score, 4 of length and the bytes.
        let token_start = |id: u32| {
            4 + (0..id)
                .map(|i| 8 + tok.piece(i).unwrap().len())
                .sum::<usize>()
        };
        let length_at = token_start(17) + 4;
        let file = TempPath::file("tok512.bin", &bytes[..length_at + 2]);
        let message = error_message(
            Llama2cTokenizer::open(file.path()),
            "cut in token 17's length",
        );
        assert!(
            message.starts_with(&file.path().display().to_string()),
            "{message}"
        );
        assert!(
            message.ends_with(&format!(
                "tok512.bin: truncated at byte {length_at}: expected 4 bytes of token 17's length (the file ends at byte {})",
                length_at + 2
            )),
            "{message}"
        );

        // No prefix panics, and every one that cuts into the byte tokens is an error.
        let byte_tokens_end = token_start(259);
        for len in 0..bytes.len() {
            let parsed = Llama2cTokenizer::from_bytes(&bytes[..len], file.path());
            if len < byte_tokens_end {
                assert!(parsed.is_err(), "prefix of {len} bytes");
            }
        }
    }

    #[test]
    fn empty_file_is_an_error_naming_it() {
        let file = TempPath::file("tok512.bin", b"");
        let message = error_message(Llama2cTokenizer::open(file.path()), "empty file");
        assert!(
            message
                .contains("tok512.bin: truncated at byte 0: expected 4 bytes of max_token_length"),
            "{message}"
        );
    }

    #[test]
    fn negative_token_length_is_an_error_naming_the_offset() {
        let mut bytes = std::fs::read(assets().join("models/tok512.bin")).unwrap();
        // Token 0's length sits after the header and token 0's score.
        bytes[8..12].copy_from_slice(&(-5i32).to_le_bytes());
        let message = error_message(
            Llama2cTokenizer::from_bytes(&bytes, Path::new("bad.bin")),
            "negative length",
        );
        assert_eq!(message, "bad.bin: byte 8: token 0 has negative length -5");
    }

    #[test]
    fn missing_byte_tokens_are_an_error() {
        let mut bytes = 7i32.to_le_bytes().to_vec();
        for piece in [b"<unk>".as_slice(), b"<s>", b"</s>", b"<0x00>"] {
            bytes.extend(0f32.to_le_bytes());
            bytes.extend((piece.len() as i32).to_le_bytes());
            bytes.extend(piece);
        }
        let message = error_message(
            Llama2cTokenizer::from_bytes(&bytes, Path::new("small.bin")),
            "4 tokens",
        );
        assert!(
            message.starts_with("small.bin: token 4: expected the byte token \"<0x01>\""),
            "{message}"
        );
    }
}
