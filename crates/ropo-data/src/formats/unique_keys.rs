//! A JSON record that names one key twice (`{"chosen": "a", "chosen": "b"}`) is ambiguous:
//! parsers disagree on which value wins (serde_json and Python keep the last silently). This
//! walks a record's JSON once more and refuses any object with a repeated key.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Checks that no object in the JSON `text` names a key twice; the error names the key.
pub fn check_unique_keys(text: &str) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    UniqueKeys
        .deserialize(&mut deserializer)
        .map_err(|e| e.to_string())
}

/// Walks any JSON value, failing on an object with a repeated key.
struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format!("key {key:?} given twice")));
            }
            map.next_value_seed(UniqueKeys)?;
            seen.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_at_any_depth_is_named_and_distinct_keys_pass() {
        check_unique_keys(r#"{"a": 1, "b": [{"a": 2}, {"a": 3}], "c": {"d": null}}"#).unwrap();
        let top = check_unique_keys(r#"{"chosen": "x", "rejected": "y", "chosen": "z"}"#);
        assert!(top.unwrap_err().contains(r#"key "chosen" given twice"#));
        let nested = check_unique_keys(r#"{"prompt": [{"role": "user", "role": "assistant"}]}"#);
        assert!(nested.unwrap_err().contains(r#"key "role" given twice"#));
    }
}
