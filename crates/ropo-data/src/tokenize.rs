//! Preference pairs to the token ids a model sees, in parallel (rayon).
//!
//! For each pair: the prompt is rendered by the [`ChatFormat`] and tokenized, and BOS is put in
//! front unless the tokenizer has none, the text already starts with it, or the format is the
//! model's own template (which writes BOS where the model wants it); each response is wrapped
//! by the format, tokenized, and EOS is appended unless the tokenizer has none or the text
//! already ends with it (as TRL does). So BOS and EOS appear once, where the template says, and the
//! response mask of `prompt ++ response` is `[0; prompt.len()] ++ [1; response.len()]`
//! ([`sequence_with_mask`]).
//!
//! Lengths: a prompt longer than `max_prompt_length` keeps its end (and its BOS); a pair whose
//! prompt leaves no room for a response token within `max_length` is dropped; a response that
//! does not fit in `max_length` after the prompt keeps its start (and so loses its EOS: it did
//! not end there).
//!
//! Boundaries follow TRL's rule: each response is tokenized together with the prompt's last
//! text piece and split after that piece's own ids, so a response is tokenized as it follows
//! its prompt (a SentencePiece tokenizer, for one, adds no dummy-prefix space there). Where
//! the joint ids do not start with the prompt's (a merge across the boundary), the prompt ends
//! where both joints still agree with it and each response takes the rest of its joint, as
//! TRL's DPO trainer splits at the common prefix; so `prompt ++ response` is always the
//! tokenization of the whole text. Such pairs are counted in
//! [`TokenizeReport::boundary_mismatches`].
//!
//! [`tokenize_prompt`] gives a prompt alone the same way (BOS included), for scoring and
//! generation.

use std::fmt;

use rayon::prelude::*;

use crate::chat_template::RenderError;
use crate::template::{ChatFormat, Piece, RenderedPair};
use crate::{ChatPair, DataError, TokenizedPair, Tokenizer};

/// How to tokenize.
#[derive(Debug, Clone)]
pub struct TokenizeOptions {
    /// How conversation prompts and their answers become text.
    pub template: ChatFormat,
    /// Most tokens in prompt plus either response.
    pub max_length: usize,
    /// Most tokens in a prompt (BOS included); longer ones keep their end. `None`: no limit
    /// but `max_length`.
    pub max_prompt_length: Option<usize>,
}

impl TokenizeOptions {
    /// `template` (a [`ChatFormat`], or a built-in [`Template`](crate::template::Template)),
    /// `max_length`, no prompt limit.
    pub fn new(template: impl Into<ChatFormat>, max_length: usize) -> Self {
        Self {
            template: template.into(),
            max_length,
            max_prompt_length: None,
        }
    }
}

/// Tokenized pairs, where each came from, and what happened on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// The pairs that were kept, in input order.
    pub pairs: Vec<TokenizedPair>,
    /// `indices[i]`: the input index of `pairs[i]` (to carry flip masks along).
    pub indices: Vec<usize>,
    /// Counts and reasons.
    pub report: TokenizeReport,
}

/// What tokenization did to the pairs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenizeReport {
    /// Pairs given.
    pub pairs: usize,
    /// Pairs dropped, with their input index and why.
    pub dropped: Vec<Dropped>,
    /// Prompts cut to `max_prompt_length` (keeping their end).
    pub prompts_truncated: usize,
    /// Chosen responses cut to fit `max_length` (keeping their start, losing EOS).
    pub chosen_truncated: usize,
    /// Rejected responses cut likewise.
    pub rejected_truncated: usize,
    /// Responses whose text already ended with EOS, which was therefore not appended again.
    pub eos_in_text: usize,
    /// Input indices of pairs where tokenizing the prompt's end and a response together differs
    /// from tokenizing them apart (only with [`TokenizeOptions::check_boundaries`]).
    pub boundary_mismatches: Vec<usize>,
}

/// A pair left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Its input index.
    pub index: usize,
    /// Why.
    pub reason: DropReason,
}

/// Why a pair was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// Its prompt (after `max_prompt_length`) leaves no room for a response in `max_length`.
    PromptTooLong {
        /// Prompt tokens.
        tokens: usize,
        /// The limit.
        max_length: usize,
    },
    /// The template cannot render its conversation.
    Template(String),
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::PromptTooLong { tokens, max_length } => write!(
                f,
                "prompt of {tokens} tokens leaves no room for a response within max_length {max_length}"
            ),
            DropReason::Template(problem) => f.write_str(problem),
        }
    }
}

/// Tokenizes `pairs` in parallel (see the module doc). Errors: `max_length` or
/// `max_prompt_length` of 0 ([`DataError::InvalidParameter`]), or the tokenizer failing.
pub fn tokenize(
    pairs: &[ChatPair],
    tokenizer: &dyn Tokenizer,
    options: &TokenizeOptions,
) -> Result<Tokenized, DataError> {
    if options.max_length == 0 {
        return Err(DataError::InvalidParameter {
            name: "max_length",
            value: 0.0,
            requirement: "at least 1",
        });
    }
    if options.max_prompt_length == Some(0) {
        return Err(DataError::InvalidParameter {
            name: "max_prompt_length",
            value: 0.0,
            requirement: "at least 1",
        });
    }
    let outcomes: Vec<Outcome> = pairs
        .par_iter()
        .map(|pair| tokenize_one(pair, tokenizer, options))
        .collect::<Result<_, _>>()?;

    let mut tokenized = Tokenized {
        pairs: Vec::with_capacity(pairs.len()),
        indices: Vec::with_capacity(pairs.len()),
        report: TokenizeReport {
            pairs: pairs.len(),
            ..TokenizeReport::default()
        },
    };
    let report = &mut tokenized.report;
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Dropped(reason) => report.dropped.push(Dropped { index, reason }),
            Outcome::Kept { pair, notes } => {
                report.prompts_truncated += usize::from(notes.prompt_truncated);
                report.chosen_truncated += usize::from(notes.chosen_truncated);
                report.rejected_truncated += usize::from(notes.rejected_truncated);
                report.eos_in_text += notes.eos_in_text;
                if notes.boundary_mismatch {
                    report.boundary_mismatches.push(index);
                }
                tokenized.pairs.push(pair);
                tokenized.indices.push(index);
            }
        }
    }
    Ok(tokenized)
}

/// The sequence `prompt ++ response` and its response mask (`true` on the response's tokens:
/// the ones a preference loss scores).
pub fn sequence_with_mask(prompt: &[u32], response: &[u32]) -> (Vec<u32>, Vec<bool>) {
    let ids = [prompt, response].concat();
    let mask = std::iter::repeat_n(false, prompt.len())
        .chain(std::iter::repeat_n(true, response.len()))
        .collect();
    (ids, mask)
}

enum Outcome {
    Kept { pair: TokenizedPair, notes: Notes },
    Dropped(DropReason),
}

#[derive(Default)]
struct Notes {
    prompt_truncated: bool,
    chosen_truncated: bool,
    rejected_truncated: bool,
    eos_in_text: usize,
    boundary_mismatch: bool,
}

/// How many leading ids `a` and `b` share.
fn common_prefix_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn tokenize_one(
    pair: &ChatPair,
    tokenizer: &dyn Tokenizer,
    options: &TokenizeOptions,
) -> Result<Outcome, DataError> {
    let rendered = match options.template.render(pair) {
        Ok(rendered) => rendered,
        Err(RenderError::Refused(problem)) => {
            return Ok(Outcome::Dropped(DropReason::Template(problem)))
        }
        Err(RenderError::Failed { path, problem }) => {
            return Err(DataError::Malformed {
                path,
                location: "chat template".into(),
                problem,
            })
        }
    };
    let RenderedPair {
        prompt: pieces,
        chosen,
        rejected,
    } = rendered;
    let mut notes = Notes::default();
    let special_tokens = options.template.adds_special_tokens();
    let (mut prompt, tail, tail_ids) = encode_pieces(&pieces, tokenizer, special_tokens)?;
    let bos = tokenizer.bos_id();

    // Each response is tokenized together with the prompt's last text piece; where the
    // joint ids leave that piece's ids behind, the prompt ends where both joints still agree
    // with it and each response takes the rest of its joint (TRL's rule).
    let joints = [
        tokenizer.encode(&format!("{tail}{chosen}"))?,
        tokenizer.encode(&format!("{tail}{rejected}"))?,
    ];
    let shared = joints
        .iter()
        .map(|joint| common_prefix_len(&tail_ids, joint))
        .min()
        .unwrap_or_default();
    if shared < tail_ids.len() {
        notes.boundary_mismatch = true;
        prompt.truncate(prompt.len() - (tail_ids.len() - shared));
    }
    let mut responses = joints.map(|joint| joint[shared..].to_vec());
    for ids in responses.iter_mut().filter(|_| special_tokens) {
        match tokenizer.eos_id() {
            Some(eos) if ids.last() == Some(&eos) => notes.eos_in_text += 1,
            Some(eos) => ids.push(eos),
            None => {}
        }
    }

    if let Some(limit) = options.max_prompt_length {
        if prompt.len() > limit {
            let keep_bos = bos.is_some_and(|bos| prompt.first() == Some(&bos));
            let start = prompt.len() - (limit - usize::from(keep_bos));
            prompt.drain(usize::from(keep_bos)..start);
            notes.prompt_truncated = true;
        }
    }
    if prompt.len() >= options.max_length {
        return Ok(Outcome::Dropped(DropReason::PromptTooLong {
            tokens: prompt.len(),
            max_length: options.max_length,
        }));
    }
    let budget = options.max_length - prompt.len();
    let [mut chosen, mut rejected] = responses;
    notes.chosen_truncated = chosen.len() > budget;
    notes.rejected_truncated = rejected.len() > budget;
    chosen.truncate(budget);
    rejected.truncate(budget);
    Ok(Outcome::Kept {
        pair: TokenizedPair {
            prompt,
            chosen,
            rejected,
        },
        notes,
    })
}

/// The ids of `pieces`, with BOS in front where `special_tokens` asks for it and the ids do not
/// already start with it; and the last piece when it is text, with its ids (empty otherwise),
/// for the boundary with a response.
fn encode_pieces<'a>(
    pieces: &'a [Piece],
    tokenizer: &dyn Tokenizer,
    special_tokens: bool,
) -> Result<(Vec<u32>, &'a str, Vec<u32>), DataError> {
    let mut ids = Vec::new();
    let (mut tail, mut tail_ids): (&str, Vec<u32>) = ("", Vec::new());
    for piece in pieces {
        (tail, tail_ids) = match piece {
            Piece::Text(text) => (text.as_str(), tokenizer.encode(text)?),
            Piece::Bos => ("", tokenizer.bos_id().into_iter().collect()),
            Piece::Eos => ("", tokenizer.eos_id().into_iter().collect()),
        };
        ids.extend_from_slice(&tail_ids);
        if tail.is_empty() {
            tail_ids.clear();
        }
    }
    if let Some(bos) = tokenizer.bos_id().filter(|_| special_tokens) {
        if ids.first() != Some(&bos) {
            ids.insert(0, bos);
        }
    }
    Ok((ids, tail, tail_ids))
}

/// The token ids of `pieces`, a prompt alone as [`ChatFormat::render_prompt`] renders it
/// (for scoring or generation), with BOS as [`tokenize`] puts it before a pair's prompt: in
/// front where `format` adds special tokens (a built-in template) unless the ids already start
/// with it, as a template that writes BOS as text does; never by a model's own template, which
/// writes BOS itself where the model wants it. No length limit.
pub fn tokenize_prompt(
    pieces: &[Piece],
    tokenizer: &dyn Tokenizer,
    format: &ChatFormat,
) -> Result<Vec<u32>, DataError> {
    encode_pieces(pieces, tokenizer, format.adds_special_tokens()).map(|(ids, _, _)| ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{read_pairs, ReadOptions};
    use crate::template::Template;
    use crate::test_support::assets;
    use crate::{load_tokenizer, Message, Prompt};

    /// One id per character (its code point + 10), with BOS = 1 and EOS = 2 when asked; the
    /// texts `<B>` and `<E>` encode to BOS and EOS, as special tokens written out do.
    struct Chars {
        bos: Option<u32>,
        eos: Option<u32>,
    }

    impl Tokenizer for Chars {
        fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
            let mut ids = Vec::new();
            let mut rest = text;
            while let Some(c) = rest.chars().next() {
                if let (Some(bos), Some(tail)) = (self.bos, rest.strip_prefix("<B>")) {
                    ids.push(bos);
                    rest = tail;
                } else if let (Some(eos), Some(tail)) = (self.eos, rest.strip_prefix("<E>")) {
                    ids.push(eos);
                    rest = tail;
                } else {
                    ids.push(c as u32 + 10);
                    rest = &rest[c.len_utf8()..];
                }
            }
            Ok(ids)
        }

        fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
            Ok(ids
                .iter()
                .filter_map(|&id| char::from_u32(id.checked_sub(10)?))
                .collect())
        }

        fn vocab_size(&self) -> usize {
            0x11_0000 + 10
        }

        fn bos_id(&self) -> Option<u32> {
            self.bos
        }

        fn eos_id(&self) -> Option<u32> {
            self.eos
        }
    }

    const CHARS: Chars = Chars {
        bos: Some(1),
        eos: Some(2),
    };

    fn text_pair(prompt: &str, chosen: &str, rejected: &str) -> ChatPair {
        ChatPair {
            prompt: Prompt::Text(prompt.into()),
            chosen: chosen.into(),
            rejected: rejected.into(),
        }
    }

    fn ids(text: &str) -> Vec<u32> {
        text.chars().map(|c| c as u32 + 10).collect()
    }

    fn options(max_length: usize) -> TokenizeOptions {
        TokenizeOptions::new(Template::ChatMl, max_length)
    }

    #[test]
    fn bos_starts_the_prompt_and_eos_ends_each_response_once() {
        let out = tokenize(&[text_pair("ab", "cd", "e")], &CHARS, &options(100)).unwrap();
        let pair = &out.pairs[0];
        assert_eq!(pair.prompt, [vec![1], ids("ab")].concat());
        assert_eq!(pair.chosen, [ids("cd"), vec![2]].concat());
        assert_eq!(pair.rejected, [ids("e"), vec![2]].concat());
    }

    #[test]
    fn bos_and_eos_already_in_the_text_are_not_doubled() {
        let out = tokenize(&[text_pair("<B>ab", "c<E>", "d")], &CHARS, &options(100)).unwrap();
        let pair = &out.pairs[0];
        assert_eq!(pair.prompt, [vec![1], ids("ab")].concat());
        assert_eq!(pair.chosen, [ids("c"), vec![2]].concat());
        assert_eq!(pair.rejected, [ids("d"), vec![2]].concat());
        assert_eq!(out.report.eos_in_text, 1);
    }

    #[test]
    fn a_tokenizer_without_bos_or_eos_gets_neither() {
        let plain = Chars {
            bos: None,
            eos: None,
        };
        let out = tokenize(&[text_pair("ab", "c", "d")], &plain, &options(100)).unwrap();
        assert_eq!(out.pairs[0].prompt, ids("ab"));
        assert_eq!(out.pairs[0].chosen, ids("c"));
    }

    #[test]
    fn long_prompts_keep_their_end_and_their_bos() {
        let mut opts = options(100);
        opts.max_prompt_length = Some(4);
        let out = tokenize(&[text_pair("abcdef", "x", "y")], &CHARS, &opts).unwrap();
        assert_eq!(out.pairs[0].prompt, [vec![1], ids("def")].concat());
        assert_eq!(out.report.prompts_truncated, 1);
    }

    #[test]
    fn long_responses_keep_their_start_and_lose_eos() {
        let out = tokenize(&[text_pair("ab", "cdefg", "h")], &CHARS, &options(6)).unwrap();
        let pair = &out.pairs[0];
        assert_eq!(pair.chosen, ids("cde"));
        assert_eq!(pair.rejected, [ids("h"), vec![2]].concat());
        assert_eq!(
            (out.report.chosen_truncated, out.report.rejected_truncated),
            (1, 0)
        );
        assert!(pair.max_len() <= 6);
    }

    #[test]
    fn pairs_whose_prompt_fills_the_budget_are_dropped_and_counted() {
        let pairs = [
            text_pair("abc", "x", "y"),
            text_pair("abcdefgh", "x", "y"),
            text_pair("a", "x", "y"),
        ];
        let out = tokenize(&pairs, &CHARS, &options(5)).unwrap();
        assert_eq!(out.indices, [0, 2]);
        assert_eq!(
            out.report.dropped,
            [Dropped {
                index: 1,
                reason: DropReason::PromptTooLong {
                    tokens: 9,
                    max_length: 5
                }
            }]
        );
        assert!(out.report.dropped[0]
            .reason
            .to_string()
            .contains("9 tokens"));
    }

    #[test]
    fn conversations_the_template_cannot_render_are_dropped_with_the_reason() {
        let pair = ChatPair {
            prompt: Prompt::Messages(vec![Message {
                role: "tool".into(),
                content: "t".into(),
            }]),
            chosen: "c".into(),
            rejected: "r".into(),
        };
        let mut opts = options(100);
        opts.template = Template::Hh.into();
        let out = tokenize(&[pair], &CHARS, &opts).unwrap();
        assert!(out.pairs.is_empty());
        assert!(
            matches!(&out.report.dropped[0].reason, DropReason::Template(p) if p.contains("tool"))
        );
    }

    #[test]
    fn llama2_multi_turn_prompts_hold_eos_and_bos_between_turns_and_one_leading_bos() {
        let msg = |role: &str, content: &str| Message {
            role: role.into(),
            content: content.into(),
        };
        let pair = ChatPair {
            prompt: Prompt::Messages(vec![
                msg("user", "u"),
                msg("assistant", "a"),
                msg("user", "v"),
            ]),
            chosen: "c".into(),
            rejected: "r".into(),
        };
        let mut opts = options(1000);
        opts.template = Template::Llama2.into();
        let out = tokenize(&[pair], &CHARS, &opts).unwrap();
        let expected = [
            vec![1],
            ids("[INST] u [/INST] a"),
            vec![2, 1],
            ids("[INST] v [/INST]"),
        ]
        .concat();
        assert_eq!(out.pairs[0].prompt, expected);
        assert_eq!(out.pairs[0].chosen, [ids(" c"), vec![2]].concat());
    }

    #[test]
    fn zero_lengths_are_invalid_parameters() {
        let pairs = [text_pair("a", "b", "c")];
        assert!(matches!(
            tokenize(&pairs, &CHARS, &options(0)),
            Err(DataError::InvalidParameter { .. })
        ));
        let mut opts = options(10);
        opts.max_prompt_length = Some(0);
        assert!(matches!(
            tokenize(&pairs, &CHARS, &opts),
            Err(DataError::InvalidParameter { .. })
        ));
    }

    #[test]
    fn masks_select_exactly_the_response_tokens_on_real_hh_rows() {
        let assets = assets();
        let tokenizer = load_tokenizer(&assets.join("tokenizers/20B_tokenizer.json")).unwrap();
        let (bos, eos) = (tokenizer.bos_id().unwrap(), tokenizer.eos_id().unwrap());
        let (pairs, _) = read_pairs(
            &assets.join("preferences/helpful-base-test.jsonl.gz"),
            &ReadOptions::default(),
        )
        .unwrap();
        let pairs = &pairs[..300];
        let out = tokenize(pairs, tokenizer.as_ref(), &options(1 << 20)).unwrap();
        assert_eq!(out.pairs.len(), pairs.len());
        for (pair, text) in out.pairs.iter().zip(pairs) {
            let Prompt::Text(prompt_text) = &text.prompt else {
                panic!("HH prompts are text");
            };
            // Compared as ids: this tokenizer.json has `assistant` as an added special token,
            // which decoding skips.
            let prompt_ids = tokenizer.encode(prompt_text).unwrap();
            assert_eq!(pair.prompt, [vec![bos], prompt_ids].concat());
            for (response, response_text) in [
                (&pair.chosen, &text.chosen),
                (&pair.rejected, &text.rejected),
            ] {
                let (sequence, mask) = sequence_with_mask(&pair.prompt, response);
                let selected: Vec<u32> = sequence
                    .iter()
                    .zip(&mask)
                    .filter(|(_, m)| **m)
                    .map(|(id, _)| *id)
                    .collect();
                assert_eq!(&selected, response);
                let response_ids = tokenizer.encode(response_text).unwrap();
                assert_eq!(selected, [response_ids, vec![eos]].concat());
                // GPT-NeoX's BOS and EOS are one token: it appears exactly twice, first and
                // last.
                let specials: Vec<usize> = sequence
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| **id == bos || **id == eos)
                    .map(|(i, _)| i)
                    .collect();
                assert_eq!(specials, [0, sequence.len() - 1]);
                assert_eq!(mask.iter().filter(|m| !**m).count(), pair.prompt.len());
            }
        }
    }

    #[test]
    fn boundary_merges_move_the_split_to_the_shared_prefix_and_are_counted() {
        let tokenizer = load_tokenizer(&assets().join("tokenizers/20B_tokenizer.json")).unwrap();
        // "Hello" + "world" is one word when tokenized together.
        let pairs = [
            text_pair("Say: Hello", "world", " there"),
            text_pair("Say:", " hi", " bye"),
        ];
        let out = tokenize(&pairs, tokenizer.as_ref(), &options(100)).unwrap();
        assert_eq!(out.report.boundary_mismatches, [0]);
        let encode = |text: &str| tokenizer.encode(text).unwrap();
        let (bos, eos) = (tokenizer.bos_id().unwrap(), tokenizer.eos_id().unwrap());
        for (pair, (prompt, chosen, rejected)) in out
            .pairs
            .iter()
            .zip([("Say: Hello", "world", " there"), ("Say:", " hi", " bye")])
        {
            for (response, text) in [(&pair.chosen, chosen), (&pair.rejected, rejected)] {
                let whole = [vec![bos], encode(&format!("{prompt}{text}")), vec![eos]].concat();
                assert_eq!([pair.prompt.clone(), response.clone()].concat(), whole);
            }
        }
        let unsplit = [vec![bos], encode("Say: Hello")].concat();
        assert!(pair_prompt_is_a_proper_prefix(
            &out.pairs[0].prompt,
            &unsplit
        ));
        assert_eq!(out.pairs[1].prompt, [vec![bos], encode("Say:")].concat());
    }

    /// `tests/fixtures/tiny_chat`: SmolLM2-Instruct's shape, BOS `<|im_start|>` (id 1) and a
    /// chat template that starts every turn with `<|im_start|>` (see its `make_tiny_chat.py`).
    fn tiny_chat() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny_chat")
    }

    #[test]
    fn bos_written_by_the_template_as_im_start_is_not_doubled() {
        let folder = tiny_chat();
        let tokenizer = load_tokenizer(&folder).unwrap();
        let (bos, eos) = (tokenizer.bos_id().unwrap(), tokenizer.eos_id().unwrap());
        assert_eq!((bos, eos), (1, 2), "<|im_start|> and <|im_end|>");
        let encode = |text: &str| tokenizer.encode(text).unwrap();
        let user = Message {
            role: "user".into(),
            content: "the cat sat".into(),
        };
        let pair = ChatPair {
            prompt: Prompt::Messages(vec![user]),
            chosen: "yes".into(),
            rejected: "no".into(),
        };
        let system = "<|im_start|>system\nyou help and you are kind<|im_end|>\n";
        let rendered =
            format!("{system}<|im_start|>user\nthe cat sat<|im_end|>\n<|im_start|>assistant\n");
        let own = ChatFormat::resolve(Template::Auto, &folder).unwrap();
        assert!(matches!(own, ChatFormat::Jinja(_)), "{own}");
        for format in [own, Template::ChatMl.into()] {
            let out = tokenize(
                std::slice::from_ref(&pair),
                tokenizer.as_ref(),
                &TokenizeOptions::new(format.clone(), 1000),
            )
            .unwrap();
            let prompt = &out.pairs[0].prompt;
            assert_eq!(prompt[0], bos, "{format}");
            assert_ne!(prompt[1], bos, "{format}: BOS twice");
            if let ChatFormat::Jinja(_) = format {
                assert_eq!(prompt, &encode(&rendered));
                assert_eq!(out.pairs[0].chosen, encode("yes<|im_end|>\n"));
            }
            let pieces = format.render_prompt(&pair.prompt).unwrap();
            let alone = tokenize_prompt(&pieces, tokenizer.as_ref(), &format).unwrap();
            assert_eq!(&alone, prompt, "{format}: the prompt alone as in a pair");
        }
        // Text that starts with BOS written out gets no second one from a built-in template.
        let text = Prompt::Text("<|im_start|>user\nthe cat".into());
        let plain: ChatFormat = Template::Plain.into();
        let pieces = plain.render_prompt(&text).unwrap();
        let ids = tokenize_prompt(&pieces, tokenizer.as_ref(), &plain).unwrap();
        assert_eq!(ids, encode("<|im_start|>user\nthe cat"));
        let pieces = plain
            .render_prompt(&Prompt::Text("the cat".into()))
            .unwrap();
        let ids = tokenize_prompt(&pieces, tokenizer.as_ref(), &plain).unwrap();
        assert_eq!(ids, [vec![bos], encode("the cat")].concat());
    }

    fn pair_prompt_is_a_proper_prefix(prompt: &[u32], unsplit: &[u32]) -> bool {
        prompt.len() < unsplit.len() && unsplit.starts_with(prompt)
    }

    #[test]
    fn llama2c_hh_pairs_tokenize_as_prompt_and_response_written_together() {
        let tokenizer = load_tokenizer(&assets().join("models/tok512.bin")).unwrap();
        let (pairs, _) = read_pairs(
            &assets().join("preferences/helpful-base-test.jsonl.gz"),
            &ReadOptions::default(),
        )
        .unwrap();
        let out = tokenize(&pairs, tokenizer.as_ref(), &options(usize::MAX)).unwrap();
        assert!(out.report.boundary_mismatches.is_empty());
        assert_eq!(out.pairs.len(), pairs.len());
        let (bos, eos) = (tokenizer.bos_id().unwrap(), tokenizer.eos_id().unwrap());
        for (pair, text) in out.pairs.iter().zip(&pairs).take(200) {
            let Prompt::Text(prompt) = &text.prompt else {
                panic!("HH prompts are text")
            };
            let whole = tokenizer
                .encode(&format!("{prompt}{}", text.chosen))
                .unwrap();
            let expected = [&[bos][..], &whole, &[eos]].concat();
            assert_eq!([&pair.prompt[..], &pair.chosen[..]].concat(), expected);
        }
    }

    #[test]
    fn chatml_responses_end_with_im_end_then_eos() {
        let tokenizer = load_tokenizer(&assets().join("tokenizers/20B_tokenizer.json")).unwrap();
        let (pairs, _) = read_pairs(
            &assets().join("preferences/orca_dpo_pairs_validation.jsonl"),
            &ReadOptions::default(),
        )
        .unwrap();
        let out = tokenize(&pairs[..20], tokenizer.as_ref(), &options(1 << 20)).unwrap();
        // This tokenizer.json has <|im_start|>, <|im_end|> (and `assistant`) as added tokens.
        let encode = |text: &str| tokenizer.encode(text).unwrap();
        let (bos, eos) = (tokenizer.bos_id().unwrap(), tokenizer.eos_id().unwrap());
        for (pair, text) in out.pairs.iter().zip(&pairs) {
            let Prompt::Messages(messages) = &text.prompt else {
                panic!("orca prompts are conversations");
            };
            let rendered: String = messages
                .iter()
                .map(|m| format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content))
                .collect();
            let rendered = format!("{rendered}<|im_start|>assistant\n");
            assert_eq!(pair.prompt, [vec![bos], encode(&rendered)].concat());
            let expected = [encode(&text.chosen), encode("<|im_end|>"), vec![eos]].concat();
            assert_eq!(pair.chosen, expected);
        }
    }
}
