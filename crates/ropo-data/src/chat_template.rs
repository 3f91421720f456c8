//! The model's own chat template: the Jinja template a Hugging Face tokenizer folder ships
//! (`chat_template.jinja`, or `chat_template` in `tokenizer_config.json`) or a GGUF file holds
//! (`tokenizer.chat_template`), rendered as transformers' `apply_chat_template` renders it.
//!
//! transformers compiles chat templates in a sandboxed Jinja environment with `trim_blocks`,
//! `lstrip_blocks` and loop controls, gives them `raise_exception`, `strftime_now` and a
//! `tojson` filter that is Python's `json.dumps`, and passes `messages`,
//! `add_generation_prompt` and the tokenizer's special tokens (`bos_token`, `eos_token`, ...).
//! [`ChatTemplate`] does the same with minijinja, whose Python-compatibility callback supplies
//! the string and dict methods templates call (`.strip()`, `.items()`, ...).
//!
//! A template is a program from the model's folder, so its work is bounded: at most
//! [`TEMPLATE_FUEL`] instructions and [`TEMPLATE_OUTPUT_BYTES`] of text per rendering, and
//! minijinja's own limits (500 nested calls, strings and lists repeated to at most 10⁸ items).
//! A template that passes a limit is a [`RenderError::Failed`] naming its file; one that
//! refuses a conversation (`raise_exception`, or an error on it) is a [`RenderError::Refused`].

mod clock;
mod tojson;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

use crate::{DataError, Message};

/// The file a tokenizer folder may hold its chat template in (transformers ≥ 4.47 writes it).
const TEMPLATE_FILE: &str = "chat_template.jinja";
/// The tokenizer settings file, whose `chat_template` field holds the template otherwise.
const CONFIG_FILE: &str = "tokenizer_config.json";
/// The template's name inside the environment, as error messages show it.
const NAME: &str = "chat_template";

/// The most instructions one rendering may run (minijinja's fuel). Rendering a conversation of
/// a hundred turns with a real model's template takes about 10⁴; this bounds a template that
/// loops without end to well under a second.
pub const TEMPLATE_FUEL: u64 = 10_000_000;

/// The most text one rendering may write: 16 MiB, far above any conversation a model's
/// context can hold.
pub const TEMPLATE_OUTPUT_BYTES: usize = 16 << 20;

/// Why a chat template rendered no text for a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The template refuses this conversation (its `raise_exception`, an error of its own on
    /// this conversation, or a built-in template's rule): the pair is dropped and the others
    /// go on.
    Refused(String),
    /// The template passes a limit: [`TEMPLATE_FUEL`], [`TEMPLATE_OUTPUT_BYTES`], minijinja's
    /// depth of nested calls or its longest repetition. A template that does this for one
    /// conversation is not one to train with, so the run stops.
    Failed {
        /// The file the template was read from.
        path: PathBuf,
        /// What went wrong and where (`… (line 3)`).
        problem: String,
    },
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Refused(problem) => f.write_str(problem),
            RenderError::Failed { path, problem } => {
                write!(f, "the chat template of {}: {problem}", path.display())
            }
        }
    }
}

impl std::error::Error for RenderError {}

/// A compiled chat template with the special tokens it is rendered with.
pub struct ChatTemplate {
    origin: PathBuf,
    env: Environment<'static>,
    special_tokens: Vec<(String, String)>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("special_tokens", &self.special_tokens)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`, read from `origin` (named in every error), to be rendered with
    /// `special_tokens` (`("bos_token", "<s>")`, ...) in scope. A template that does not
    /// parse is an error naming `origin` and the line.
    pub fn new(
        source: &str,
        origin: &Path,
        special_tokens: Vec<(String, String)>,
    ) -> Result<Self, DataError> {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", clock::strftime_now);
        env.add_filter("tojson", tojson::tojson);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| DataError::Malformed {
                path: origin.into(),
                location: "chat template".into(),
                problem: describe(&e),
            })?;
        Ok(Self {
            origin: origin.into(),
            env,
            special_tokens,
        })
    }

    /// The chat template of the tokenizer at `tokenizer` (a folder, or a file whose folder is
    /// looked in): `chat_template.jinja` if the folder has one, otherwise the `chat_template`
    /// of its `tokenizer_config.json` (a string, or a list of `{name, template}` of which the
    /// one named `default` is taken). `None` when the folder has neither. The special tokens
    /// are the config's string-valued `*_token` fields (`bos_token`, `eos_token`, ...).
    ///
    /// A llama.cpp `.gguf` file holds its own: `tokenizer.chat_template`, with the special
    /// tokens its `tokenizer.ggml.*_token_id` keys name (see [`crate::GgufVocab`]).
    pub fn find(tokenizer: &Path) -> Result<Option<Self>, DataError> {
        if crate::tokenizer::is_gguf(tokenizer) && tokenizer.is_file() {
            let vocab = crate::GgufVocab::read(tokenizer)?;
            return match vocab.chat_template() {
                Some(source) => Self::new(source, tokenizer, vocab.special_tokens()).map(Some),
                None => Ok(None),
            };
        }
        let folder = if tokenizer.is_dir() {
            tokenizer
        } else {
            tokenizer.parent().unwrap_or(Path::new("."))
        };
        let config_path = folder.join(CONFIG_FILE);
        let config = match std::fs::read(&config_path) {
            Ok(bytes) => Some(serde_json::from_slice::<serde_json::Value>(&bytes).map_err(
                |source| DataError::Json {
                    path: config_path.clone(),
                    source,
                },
            )?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(DataError::io(&config_path)(e)),
        };
        let special_tokens = config.as_ref().map(special_tokens).unwrap_or_default();
        let template_path = folder.join(TEMPLATE_FILE);
        if template_path.is_file() {
            let source =
                std::fs::read_to_string(&template_path).map_err(DataError::io(&template_path))?;
            return Self::new(&source, &template_path, special_tokens).map(Some);
        }
        let Some(field) = config
            .as_ref()
            .and_then(|config| config.get("chat_template"))
        else {
            return Ok(None);
        };
        let source = config_template(field).map_err(|problem| DataError::Malformed {
            path: config_path.clone(),
            location: "field \"chat_template\"".into(),
            problem,
        })?;
        Self::new(source, &config_path, special_tokens).map(Some)
    }

    /// The file the template was read from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The conversation as the template renders it, with the assistant's generation prompt
    /// at the end when `add_generation_prompt`. [`RenderError::Failed`] where the template
    /// passes a limit, [`RenderError::Refused`] where it raises (`raise_exception`) or fails
    /// otherwise; either names the template's file and line.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, RenderError> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let mut context: Vec<(&str, Value)> = self
            .special_tokens
            .iter()
            .map(|(name, token)| (name.as_str(), Value::from(token.as_str())))
            .collect();
        context.extend([
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
        ]);
        let failed = |problem: String| RenderError::Failed {
            path: self.origin.clone(),
            problem,
        };
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| failed(describe(&e)))?;
        let mut output = Capped(Vec::new());
        let limit = match template.render_captured_to(Value::from_pairs(context), &mut output) {
            Ok(_) => return String::from_utf8(output.0).map_err(|e| failed(e.to_string())),
            Err(e) => e,
        };
        let line = limit.line().unwrap_or_default();
        let detail = limit.detail().unwrap_or_default();
        Err(match limit.kind() {
            ErrorKind::WriteFailure => failed(format!(
                "its text passes {} MiB (line {line})",
                TEMPLATE_OUTPUT_BYTES >> 20
            )),
            ErrorKind::OutOfFuel => failed(format!(
                "it runs past {TEMPLATE_FUEL} instructions (line {line})"
            )),
            ErrorKind::InvalidOperation
                if detail.contains("recursion limit") || detail.contains("too large") =>
            {
                failed(describe(&limit))
            }
            _ => RenderError::Refused(format!(
                "the chat template of {}: {}",
                self.origin.display(),
                describe(&limit)
            )),
        })
    }
}

/// A buffer that refuses to grow past [`TEMPLATE_OUTPUT_BYTES`].
struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + bytes.len() > TEMPLATE_OUTPUT_BYTES {
            return Err(std::io::Error::other("the rendered text is too long"));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `raise_exception(message)`: the template refuses the conversation.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// An error with where it happened (`… (line 12)`), without minijinja's kind prefix for the
/// template's own `raise_exception`.
fn describe(error: &Error) -> String {
    let what = match (error.kind(), error.detail()) {
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_owned(),
        _ => error.to_string(),
    };
    match error.line() {
        Some(line) if !what.contains("line") => format!("{what} (line {line})"),
        _ => what,
    }
}

/// A config's `chat_template`: a string, or the `default` of a list of named templates.
fn config_template(field: &serde_json::Value) -> Result<&str, String> {
    if let Some(source) = field.as_str() {
        return Ok(source);
    }
    let named = field.as_array().ok_or_else(|| {
        format!("expected a string or a list of {{\"name\", \"template\"}}, found {field}")
    })?;
    named
        .iter()
        .find(|entry| entry.get("name").and_then(|n| n.as_str()) == Some("default"))
        .and_then(|entry| entry.get("template"))
        .and_then(|template| template.as_str())
        .ok_or_else(|| "a list of named templates with no \"default\" template".to_owned())
}

/// The config's special tokens: every `*_token` field that is a string or `{"content": str}`.
fn special_tokens(config: &serde_json::Value) -> Vec<(String, String)> {
    let Some(fields) = config.as_object() else {
        return Vec::new();
    };
    fields
        .iter()
        .filter(|(name, _)| name.ends_with("_token"))
        .filter_map(|(name, value)| {
            let token = value
                .as_str()
                .or_else(|| value.get("content").and_then(|c| c.as_str()))?;
            Some((name.clone(), token.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(source: &str) -> ChatTemplate {
        let tokens = vec![("bos_token".into(), "<s>".into())];
        ChatTemplate::new(source, Path::new("test.jinja"), tokens).unwrap()
    }

    fn user(content: &str) -> Message {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }

    #[test]
    fn special_tokens_and_the_generation_prompt_are_in_scope() {
        let chat = template("{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}{% if add_generation_prompt %}>{% endif %}");
        assert_eq!(chat.render(&[user("a")], true).unwrap(), "<s>[a]>");
        assert_eq!(chat.render(&[user("a")], false).unwrap(), "<s>[a]");
    }

    #[test]
    fn raise_exception_is_an_error_naming_the_template_and_its_message() {
        let chat = template(
            "{% if messages|length > 1 %}\n{{ raise_exception('one turn only') }}\n{% endif %}x",
        );
        let error = chat.render(&[user("a"), user("b")], false).unwrap_err();
        assert!(matches!(error, RenderError::Refused(_)), "{error}");
        let error = error.to_string();
        assert!(
            error.contains("test.jinja") && error.contains("one turn only"),
            "{error}"
        );
        assert!(error.contains("line 2"), "{error}");
    }

    /// Renders `source` (which must fail on a limit) and returns the error's text after
    /// checking it names the template's file.
    fn past_a_limit(source: &str) -> String {
        let error = template(source).render(&[user("a")], true).unwrap_err();
        assert!(
            matches!(error, RenderError::Failed { .. }),
            "{source}: {error}"
        );
        let error = error.to_string();
        assert!(error.contains("test.jinja"), "{error}");
        error
    }

    #[test]
    fn templates_that_loop_recurse_or_write_without_bound_stop_at_a_limit() {
        let started = std::time::Instant::now();
        let nested =
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let error = past_a_limit(nested);
        assert!(error.contains("instructions"), "{error}");
        let wide = "{% for i in range(100000) %}{{ 'y' * 10000 }}{% endfor %}";
        let error = past_a_limit(wide);
        assert!(error.contains("passes 16 MiB"), "{error}");
        let recursive = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        let error = past_a_limit(recursive);
        assert!(error.contains("recursion"), "{error}");
        let repeated = "{{ 'z' * 1000000000 }}{{ [0] * 1000000000 }}";
        past_a_limit(repeated);
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn a_template_that_does_not_parse_is_an_error_naming_its_file() {
        let error = ChatTemplate::new("{% for %}", Path::new("bad.jinja"), Vec::new()).unwrap_err();
        assert!(
            error.to_string().starts_with("bad.jinja: chat template:"),
            "{error}"
        );
    }

    #[test]
    fn python_string_methods_work() {
        let chat = template("{{ messages[0].content.strip().upper() }}");
        assert_eq!(chat.render(&[user("  hi ")], false).unwrap(), "HI");
    }

    #[test]
    fn the_config_template_is_a_string_or_the_default_of_a_named_list() {
        let named = serde_json::json!([
            {"name": "tool_use", "template": "T"},
            {"name": "default", "template": "D"}
        ]);
        assert_eq!(config_template(&named), Ok("D"));
        assert_eq!(config_template(&serde_json::json!("S")), Ok("S"));
        assert!(config_template(&serde_json::json!([{"name": "x", "template": "X"}])).is_err());
        assert!(config_template(&serde_json::json!(3)).is_err());
    }

    #[test]
    fn special_tokens_are_read_as_strings_or_added_token_objects() {
        let config = serde_json::json!({
            "bos_token": "<s>",
            "eos_token": {"content": "</s>", "lstrip": false},
            "pad_token": null,
            "model_max_length": 4096
        });
        assert_eq!(
            special_tokens(&config),
            vec![
                ("bos_token".to_owned(), "<s>".to_owned()),
                ("eos_token".to_owned(), "</s>".to_owned())
            ]
        );
    }
}
