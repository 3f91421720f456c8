//! What the format parsers share: the parsed pair, the error of one field (named by its path,
//! e.g. `chosen[1].content`), and helpers that read a field as a string, an object or a list
//! of messages with that error when it is missing or of the wrong kind.

use serde_json::{Map, Value};

use super::Invalid;
use crate::{ChatPair, Message};

/// A pair as a format's parser reads it.
pub(super) struct Parsed {
    pub(super) pair: ChatPair,
    /// HH only: `rejected` does not start with the prompt of `chosen`.
    pub(super) no_shared_prompt: bool,
}

impl Parsed {
    pub(super) fn new(pair: ChatPair) -> Self {
        Self {
            pair,
            no_shared_prompt: false,
        }
    }
}

/// What is wrong with a record, before the file and line are known.
#[derive(Debug)]
pub(super) struct FieldError {
    pub(super) field: Option<String>,
    pub(super) problem: String,
}

impl FieldError {
    pub(super) fn at(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            problem: problem.into(),
        }
    }

    pub(super) fn line(problem: String) -> Self {
        Self {
            field: None,
            problem,
        }
    }

    pub(super) fn into_invalid(self, line: u64) -> Invalid {
        Invalid {
            line,
            field: self.field,
            problem: self.problem,
        }
    }
}

/// `null`, `a string`, `an array`, ...: how error messages name what they found.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn describe_keys(record: &Value) -> String {
    match record.as_object() {
        Some(object) if object.is_empty() => "an empty object".into(),
        Some(object) => {
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            format!("fields: {}", keys.join(", "))
        }
        None => format!("not an object but {}", kind(record)),
    }
}

/// `parent.key`, or `key` at the top.
pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The field `key` of `object` (whose own path is `parent`): missing is an error.
pub(super) fn field<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a Value, FieldError> {
    object
        .get(key)
        .ok_or_else(|| FieldError::at(join(parent, key), "missing"))
}

pub(super) fn string<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a str, FieldError> {
    match field(object, parent, key)? {
        Value::String(text) => Ok(text),
        other => Err(FieldError::at(
            join(parent, key),
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

pub(super) fn object<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<&'a Map<String, Value>, FieldError> {
    match field(object, parent, key)? {
        Value::Object(inner) => Ok(inner),
        other => Err(FieldError::at(
            join(parent, key),
            format!("expected an object, found {}", kind(other)),
        )),
    }
}

/// A list of `{"role": str, "content": str}` messages.
pub(super) fn messages(
    object: &Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Vec<Message>, FieldError> {
    let path = join(parent, key);
    let items = match field(object, parent, key)? {
        Value::Array(items) => items,
        other => {
            return Err(FieldError::at(
                path,
                format!("expected a list of messages, found {}", kind(other)),
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{path}[{i}]");
            let message = item.as_object().ok_or_else(|| {
                FieldError::at(
                    &at,
                    format!(
                        "expected a message {{\"role\", \"content\"}}, found {}",
                        kind(item)
                    ),
                )
            })?;
            Ok(Message {
                role: string(message, &at, "role")?.to_owned(),
                content: string(message, &at, "content")?.to_owned(),
            })
        })
        .collect()
}

/// The assistant's answer that `list[from..]` must be: exactly one message, role `assistant`.
pub(super) fn answer(list: &[Message], from: usize, field: &str) -> Result<String, FieldError> {
    match list.get(from..) {
        Some([only]) if only.role == "assistant" => Ok(only.content.clone()),
        Some([only]) => Err(FieldError::at(
            format!("{field}[{from}].role"),
            format!("expected \"assistant\", found {:?}", only.role),
        )),
        Some(rest) => Err(FieldError::at(
            field,
            format!(
                "expected one assistant message after the prompt, found {}",
                rest.len()
            ),
        )),
        None => Err(FieldError::at(field, "expected an assistant message")),
    }
}

/// Exchanges two fields' values where both are present.
pub(super) fn swap_fields(record: &mut Map<String, Value>, a: &str, b: &str) {
    if !(record.contains_key(a) && record.contains_key(b)) {
        return;
    }
    if let (Some(first), Some(second)) = (record.remove(a), record.remove(b)) {
        record.insert(a.to_owned(), second);
        record.insert(b.to_owned(), first);
    }
}
