//! Generic JSONL: `{"prompt": str, "chosen": str, "rejected": str}`, the prompt used as it is.

use serde_json::{Map, Value};

use super::fields::{string, FieldError, Parsed};
use crate::{ChatPair, Prompt};

pub(super) fn parse(record: &Map<String, Value>) -> Result<Parsed, FieldError> {
    Ok(Parsed::new(ChatPair {
        prompt: Prompt::Text(string(record, "", "prompt")?.to_owned()),
        chosen: string(record, "", "chosen")?.to_owned(),
        rejected: string(record, "", "rejected")?.to_owned(),
    }))
}
