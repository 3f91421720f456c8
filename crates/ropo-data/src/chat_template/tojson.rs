//! The `tojson` filter of transformers' chat templates: Python's `json.dumps(value,
//! ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, byte for byte, with
//! those four keyword arguments.
//!
//! Python's defaults differ from compact JSON: items are separated by `", "` and keys by
//! `": "` (`","` between items once `indent` is given), non-ASCII text is written as it is,
//! and floats are written as Python's `repr` writes them (`1.0`, `1e-05`, `1e+16`).

use std::fmt::Write;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// How to write: the keyword arguments of `json.dumps`.
struct Style {
    ensure_ascii: bool,
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

/// `value | tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
pub(super) fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or_default().to_owned()),
        Some(v) => Some(" ".repeat(v.as_usize().ok_or_else(|| {
            invalid(format!(
                "tojson: indent must be a count or a string, not {v}"
            ))
        })?)),
    };
    let (item_separator, key_separator) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(pair) => match <[String; 2]>::try_from(pair) {
            Ok([item, key]) => (item, key),
            Err(_) => return Err(invalid("tojson: separators must be two strings".into())),
        },
        None if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        None => (", ".to_owned(), ": ".to_owned()),
    };
    let style = Style {
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        indent,
        item_separator,
        key_separator,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_value(&mut out, &value, &style, 0)?;
    Ok(Value::from(out))
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

fn write_value(out: &mut String, value: &Value, style: &Style, depth: usize) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number if value.is_integer() => {
            write!(out, "{value}").expect("writing to a String");
        }
        ValueKind::Number => {
            let number = f64::try_from(value.clone())?;
            out.push_str(&python_float(number));
        }
        ValueKind::String => write_string(out, value.as_str().unwrap_or_default(), style),
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if style.sort_keys {
                keys.sort();
            }
            let mut items = Vec::with_capacity(keys.len());
            for key in keys {
                let mut item = String::new();
                write_string(&mut item, &key_text(&key)?, style);
                item.push_str(&style.key_separator);
                write_value(&mut item, &value.get_item(&key)?, style, depth + 1)?;
                items.push(item);
            }
            write_container(out, ('{', '}'), &items, style, depth);
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let mut items = Vec::new();
            for item in value.try_iter()? {
                let mut text = String::new();
                write_value(&mut text, &item, style, depth + 1)?;
                items.push(text);
            }
            write_container(out, ('[', ']'), &items, style, depth);
        }
        kind => {
            return Err(invalid(format!(
                "tojson: a value of kind {kind} is not JSON serializable"
            )))
        }
    }
    Ok(())
}

/// A map key as Python's `json.dumps` turns it into a string.
fn key_text(key: &Value) -> Result<String, Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_owned(),
        ValueKind::None | ValueKind::Undefined => "null".to_owned(),
        ValueKind::Bool | ValueKind::Number => {
            let mut text = String::new();
            write_value(&mut text, key, &Style::compact(), 0)?;
            text
        }
        kind => {
            return Err(invalid(format!(
                "tojson: keys must be str, int, float, bool or None, not {kind}"
            )))
        }
    })
}

impl Style {
    /// The style for a key's text (no containers are written with it).
    fn compact() -> Self {
        Self {
            ensure_ascii: false,
            indent: None,
            item_separator: ", ".into(),
            key_separator: ": ".into(),
            sort_keys: false,
        }
    }
}

fn write_container(
    out: &mut String,
    (open, close): (char, char),
    items: &[String],
    style: &Style,
    depth: usize,
) {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return;
    }
    match &style.indent {
        None => out.push_str(&items.join(&style.item_separator)),
        Some(indent) => {
            let inner = format!("\n{}", indent.repeat(depth + 1));
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_separator);
                }
                out.push_str(&inner);
                out.push_str(item);
            }
            out.push('\n');
            out.push_str(&indent.repeat(depth));
        }
    }
    out.push(close);
}

/// A JSON string as Python writes it: `"`, `\` and control characters escaped (`\n`, `\t`,
/// ..., `\u001f`), everything else as it is, or as `\uXXXX` (UTF-16 units) with
/// `ensure_ascii`.
fn write_string(out: &mut String, text: &str, style: &Style) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (style.ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04x}").expect("writing to a String");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it: the shortest digits that read back, in positional
/// form for decimal exponents -4 to 15 (always with a fraction: `1.0`), otherwise as
/// `d.ddde±XX`; `NaN`, `Infinity` and `-Infinity` as `json.dumps` writes them.
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} writes an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} writes an integer exponent");
    if (-4..16).contains(&exponent) {
        let positional = format!("{x}");
        if positional.contains('.') {
            positional
        } else {
            format!("{positional}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_python_repr() {
        for (x, python) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (123456789012345.0, "123456789012345.0"),
            (1.5e300, "1.5e+300"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(python_float(x), python, "{x}");
        }
    }

    fn render(template: &str, value: Value) -> String {
        let mut env = minijinja::Environment::new();
        env.add_filter("tojson", tojson);
        env.render_str(template, minijinja::context! { v => value })
            .unwrap()
    }

    #[test]
    fn maps_and_lists_use_python_separators_and_keep_key_order() {
        let value = Value::from_pairs([
            ("z", Value::from(1)),
            (
                "a",
                Value::from(vec![
                    Value::from(true),
                    Value::from(()),
                    Value::from("é\u{1}"),
                ]),
            ),
        ]);
        assert_eq!(
            render("{{ v | tojson }}", value.clone()),
            r#"{"z": 1, "a": [true, null, "é\u0001"]}"#
        );
        assert_eq!(
            render(
                "{{ v | tojson(sort_keys=true, ensure_ascii=true) }}",
                value.clone()
            ),
            r#"{"a": [true, null, "\u00e9\u0001"], "z": 1}"#
        );
        assert_eq!(
            render("{{ v | tojson(indent=2) }}", value),
            "{\n  \"z\": 1,\n  \"a\": [\n    true,\n    null,\n    \"é\\u0001\"\n  ]\n}"
        );
    }

    #[test]
    fn ensure_ascii_writes_surrogate_pairs_beyond_the_basic_plane() {
        assert_eq!(
            render("{{ v | tojson(ensure_ascii=true) }}", Value::from("😀")),
            r#""\ud83d\ude00""#
        );
    }
}
