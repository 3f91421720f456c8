//! Orca-style pairs: `input.messages` (the conversation), `preferred_output` and
//! `non_preferred_output` (each a list of one assistant message).

use serde_json::{Map, Value};

use super::fields::{answer, messages, object, FieldError, Parsed};
use crate::{ChatPair, Prompt};

pub(super) fn parse(record: &Map<String, Value>) -> Result<Parsed, FieldError> {
    let input = object(record, "", "input")?;
    let prompt = messages(input, "input", "messages")?;
    if prompt.is_empty() {
        return Err(FieldError::at("input.messages", "no messages"));
    }
    let preferred = messages(record, "", "preferred_output")?;
    let dispreferred = messages(record, "", "non_preferred_output")?;
    Ok(Parsed::new(ChatPair {
        prompt: Prompt::Messages(prompt),
        chosen: answer(&preferred, 0, "preferred_output")?,
        rejected: answer(&dispreferred, 0, "non_preferred_output")?,
    }))
}
