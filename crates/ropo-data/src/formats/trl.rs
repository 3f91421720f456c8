//! TRL's conversational preference form: `prompt`, `chosen` and `rejected` as lists of
//! `{"role", "content"}` messages (`chosen`/`rejected` one assistant message each), or TRL's
//! implicit prompt: no `prompt`, and `chosen`/`rejected` whole conversations that share every
//! message but the last, the assistant's answer.

use serde_json::{Map, Value};

use super::fields::{answer, messages, FieldError, Parsed};
use crate::{ChatPair, Prompt};

pub(super) fn parse(record: &Map<String, Value>) -> Result<Parsed, FieldError> {
    let chosen = messages(record, "", "chosen")?;
    let rejected = messages(record, "", "rejected")?;
    if record.contains_key("prompt") {
        let prompt = messages(record, "", "prompt")?;
        if prompt.is_empty() {
            return Err(FieldError::at("prompt", "no messages"));
        }
        return Ok(Parsed::new(ChatPair {
            prompt: Prompt::Messages(prompt),
            chosen: answer(&chosen, 0, "chosen")?,
            rejected: answer(&rejected, 0, "rejected")?,
        }));
    }
    // Implicit prompt: the messages both share, short of each one's last.
    let shared = chosen
        .iter()
        .zip(&rejected)
        .take_while(|(a, b)| a == b)
        .count()
        .min(chosen.len().saturating_sub(1))
        .min(rejected.len().saturating_sub(1));
    if shared == 0 {
        return Err(FieldError::at(
            "rejected",
            "shares no prompt with \"chosen\" (implicit-prompt form: the conversations must \
             share every message before the answer)",
        ));
    }
    let (prompt, _) = chosen.split_at(shared);
    Ok(Parsed::new(ChatPair {
        prompt: Prompt::Messages(prompt.to_vec()),
        chosen: answer(&chosen, shared, "chosen")?,
        rejected: answer(&rejected, shared, "rejected")?,
    }))
}
