//! UltraFeedback-binarized: `prompt` (str) and `chosen`/`rejected`, each the whole conversation
//! (the user's turns, then the assistant's answer).
//!
//! The prompt is the conversation before the answer, which must be the same in both; where a
//! conversation holds the answer alone, the prompt is one user message with `prompt`'s text.

use serde_json::{Map, Value};

use super::fields::{answer, messages, string, FieldError, Parsed};
use crate::{ChatPair, Message, Prompt};

pub(super) fn parse(record: &Map<String, Value>) -> Result<Parsed, FieldError> {
    let text = string(record, "", "prompt")?;
    let chosen = messages(record, "", "chosen")?;
    let rejected = messages(record, "", "rejected")?;
    let before = chosen.len().saturating_sub(1);
    let chosen_answer = answer(&chosen, before, "chosen")?;
    let rejected_answer = answer(&rejected, rejected.len().saturating_sub(1), "rejected")?;
    let (context, _) = chosen.split_at(before);
    if rejected.get(..rejected.len().saturating_sub(1)) != Some(context) {
        return Err(FieldError::at(
            "rejected",
            "the conversation before its answer differs from that of \"chosen\"",
        ));
    }
    let prompt = if context.is_empty() {
        vec![Message {
            role: "user".into(),
            content: text.to_owned(),
        }]
    } else {
        context.to_vec()
    };
    Ok(Parsed::new(ChatPair {
        prompt: Prompt::Messages(prompt),
        chosen: chosen_answer,
        rejected: rejected_answer,
    }))
}
