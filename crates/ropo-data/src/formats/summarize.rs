//! OpenAI summarize-from-feedback comparisons: `info` (`post`, `title`, `subreddit`),
//! `summaries` (two objects with `text`) and `choice` (0 or 1, the preferred summary).
//!
//! The prompt is the query format of the summarize-from-feedback code,
//! `SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:` (a line whose field is
//! absent or null is left out); the responses are the summaries' texts as they are.

use serde_json::{Map, Value};

use super::fields::{field, kind, object, string, FieldError, Parsed};
use crate::{ChatPair, Prompt};

pub(super) fn parse(record: &Map<String, Value>) -> Result<Parsed, FieldError> {
    let info = object(record, "", "info")?;
    let post = string(info, "info", "post")?;
    let mut prompt = String::new();
    for (key, label) in [("subreddit", "SUBREDDIT: r/"), ("title", "TITLE: ")] {
        if let Some(value) = optional_string(info, key)? {
            prompt.push_str(label);
            prompt.push_str(value);
            prompt.push('\n');
        }
    }
    prompt.push_str("POST: ");
    prompt.push_str(post);
    prompt.push_str("\nTL;DR:");

    let summaries = match field(record, "", "summaries")? {
        Value::Array(items) if items.len() == 2 => items,
        Value::Array(items) => {
            return Err(FieldError::at(
                "summaries",
                format!("expected 2 summaries, found {}", items.len()),
            ))
        }
        other => {
            return Err(FieldError::at(
                "summaries",
                format!("expected a list of 2 summaries, found {}", kind(other)),
            ))
        }
    };
    let text = |i: usize| -> Result<&str, FieldError> {
        let at = format!("summaries[{i}]");
        match summaries.get(i) {
            Some(Value::Object(summary)) => string(summary, &at, "text"),
            Some(other) => Err(FieldError::at(
                at,
                format!("expected an object with \"text\", found {}", kind(other)),
            )),
            None => Err(FieldError::at(at, "missing")),
        }
    };
    let choice = choice(record)?;
    Ok(Parsed::new(ChatPair {
        prompt: Prompt::Text(prompt),
        chosen: text(choice)?.to_owned(),
        rejected: text(1 - choice)?.to_owned(),
    }))
}

/// Makes the other summary the preferred one.
pub(super) fn swap_choice(record: &mut Map<String, Value>) {
    if let Ok(choice) = choice(record) {
        record.insert("choice".into(), Value::from(1 - choice));
    }
}

fn choice(record: &Map<String, Value>) -> Result<usize, FieldError> {
    match field(record, "", "choice")? {
        Value::Number(n) if n.as_u64() == Some(0) => Ok(0),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(1),
        other => Err(FieldError::at(
            "choice",
            format!("expected 0 or 1, found {other}"),
        )),
    }
}

/// `info.key` as a string, `None` when absent or null.
fn optional_string<'a>(
    info: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, FieldError> {
    match info.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(FieldError::at(
            format!("info.{key}"),
            format!("expected a string or null, found {}", kind(other)),
        )),
    }
}
