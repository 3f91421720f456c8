//! Anthropic HH-RLHF: `{"chosen": str, "rejected": str}`, two whole transcripts of
//! `\n\nHuman: …\n\nAssistant: …` turns that differ in the last assistant turn.
//!
//! The prompt is `chosen` through its last `\n\nAssistant:`; the responses are what follows it
//! in each transcript (with their leading space, as the model saw them). Where `rejected` does
//! not start with that prompt (the chosen answer itself holds a `\n\nAssistant:`, or the two
//! transcripts end at different turns), the pair is split after the last `\n\nAssistant:` of
//! the text both share instead, and flagged so the reader lists its line.

use serde_json::{Map, Value};

use super::fields::{string, FieldError, Parsed};
use crate::{ChatPair, Prompt};

/// The marker that ends every HH prompt.
const ASSISTANT: &str = "\n\nAssistant:";

/// The problem reported for a pair without a shared prompt, when such pairs are rejected.
pub(super) const NO_SHARED_PROMPT: &str =
    "does not start with the prompt of \"chosen\" (its text through the last \"\\n\\nAssistant:\")";

pub(super) fn parse(record: &Map<String, Value>) -> Result<Parsed, FieldError> {
    let chosen = string(record, "", "chosen")?;
    let rejected = string(record, "", "rejected")?;
    let Some(last) = chosen.rfind(ASSISTANT) else {
        return Err(FieldError::at(
            "chosen",
            "no \"\\n\\nAssistant:\" turn: not an HH transcript",
        ));
    };
    let own_prompt = last + ASSISTANT.len();
    let shares_own_prompt = chosen
        .get(..own_prompt)
        .is_some_and(|prompt| rejected.starts_with(prompt));
    let (split, no_shared_prompt) = if shares_own_prompt {
        (own_prompt, false)
    } else {
        let shared = shared_prefix(chosen, rejected);
        let last_shared = chosen
            .get(..shared)
            .and_then(|text| text.rfind(ASSISTANT))
            .ok_or_else(|| {
                FieldError::at(
                    "rejected",
                    "shares no prompt with \"chosen\": their common text has no \"\\n\\nAssistant:\"",
                )
            })?;
        (last_shared + ASSISTANT.len(), true)
    };
    let (prompt, chosen_response) = chosen
        .split_at_checked(split)
        .ok_or_else(|| FieldError::at("chosen", "cannot split at the prompt's end"))?;
    let rejected_response = rejected
        .get(split..)
        .ok_or_else(|| FieldError::at("rejected", "cannot split at the prompt's end"))?;
    Ok(Parsed {
        pair: ChatPair {
            prompt: Prompt::Text(prompt.to_owned()),
            chosen: chosen_response.to_owned(),
            rejected: rejected_response.to_owned(),
        },
        no_shared_prompt,
    })
}

/// Byte length of the longest common prefix of `a` and `b`, at a character boundary.
fn shared_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    n
}
