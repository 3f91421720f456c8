//! Chat templates: how a conversation and the assistant's answer become the text a model sees.
//!
//! A [`ChatFormat`] renders a pair: its [`Prompt::Messages`] conversation into [`Piece`]s (text,
//! and the BOS/EOS ids a multi-turn Llama-2 prompt holds between turns) ending where the
//! assistant's answer starts, and each answer with what must surround it. It is a built-in
//! [`Template`] or the model's own Jinja template ([`ChatTemplate`]). A [`Prompt::Text`] is
//! final text: no template touches it or its responses. BOS and EOS around the whole sequence
//! are tokenization's business (see `crate::tokenize`): it adds EOS at the end of each
//! response, and BOS at the start of the prompt unless the model's own template writes it.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use crate::chat_template::{ChatTemplate, RenderError};
use crate::{ChatPair, DataError, Message, Prompt};

/// A chat template by name (in configs and on the command line: `auto`, `plain`, `hh`,
/// `chatml`, `llama2`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// The model's own chat template (the tokenizer folder's `chat_template.jinja` or the
    /// `chat_template` of its `tokenizer_config.json`), and ChatML where it has none.
    #[default]
    Auto,
    /// The messages' contents joined by blank lines, no role markers; each answer follows
    /// after a blank line.
    Plain,
    /// Anthropic HH: an optional system text, then `\n\nHuman: {user}` and
    /// `\n\nAssistant: {assistant}` turns, ending in `\n\nAssistant:`; the answer follows after
    /// a space (unless it starts with one), as in the HH-RLHF transcripts.
    Hh,
    /// ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then the generation
    /// prompt `<|im_start|>assistant\n`; each answer ends with `<|im_end|>`.
    ChatMl,
    /// Llama-2 chat: `[INST] {user} [/INST] {answer}` turns, the first user message preceded by
    /// `<<SYS>>\n{system}\n<</SYS>>\n\n` when there is a system message, EOS and BOS between
    /// turns; the prompt ends with `[/INST]` and the answer follows after a space.
    Llama2,
}

/// Part of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text, to be tokenized.
    Text(String),
    /// The tokenizer's BOS id (left out if it has none).
    Bos,
    /// The tokenizer's EOS id (left out if it has none).
    Eos,
}

impl Template {
    /// Every template.
    pub const ALL: [Template; 5] = [
        Template::Auto,
        Template::Plain,
        Template::Hh,
        Template::ChatMl,
        Template::Llama2,
    ];

    /// The name used on the command line: `auto`, `plain`, `hh`, `chatml`, `llama2`.
    pub fn name(self) -> &'static str {
        match self {
            Template::Auto => "auto",
            Template::Plain => "plain",
            Template::Hh => "hh",
            Template::ChatMl => "chatml",
            Template::Llama2 => "llama2",
        }
    }

    /// The prompt as the model sees it: for text, the text; for a conversation, the rendered
    /// turns up to where the assistant's answer starts (`auto` without a model template
    /// renders ChatML). An error (a sentence) for a conversation the template cannot express:
    /// a role it does not know, turns out of order.
    pub fn prompt(self, prompt: &Prompt) -> Result<Vec<Piece>, String> {
        match prompt {
            Prompt::Text(text) => Ok(vec![Piece::Text(text.clone())]),
            Prompt::Messages(messages) => match self {
                Template::Plain => Ok(vec![Piece::Text(plain(messages))]),
                Template::Hh => hh(messages).map(|text| vec![Piece::Text(text)]),
                Template::Auto | Template::ChatMl => Ok(vec![Piece::Text(chatml(messages))]),
                Template::Llama2 => llama2(messages),
            },
        }
    }

    /// An answer as the model sees it after the prompt: for a text prompt, the answer as it
    /// is; otherwise with the template's separator before it and end-of-turn marker after it.
    pub fn response(self, prompt: &Prompt, answer: &str) -> String {
        if let Prompt::Text(_) = prompt {
            return answer.to_owned();
        }
        match self {
            Template::Plain => format!("\n\n{answer}"),
            Template::Hh | Template::Llama2 if answer.starts_with(' ') => answer.to_owned(),
            Template::Hh | Template::Llama2 => format!(" {answer}"),
            Template::Auto | Template::ChatMl => format!("{answer}<|im_end|>"),
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Template {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Template::ALL
            .into_iter()
            .find(|template| template.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Template::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "unknown chat template {name:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// How a pair's conversation becomes text: a built-in [`Template`], or the model's own Jinja
/// template.
#[derive(Debug, Clone)]
pub enum ChatFormat {
    /// A built-in template (`auto` among them renders ChatML).
    Builtin(Template),
    /// A Jinja chat template, rendered as transformers' `apply_chat_template` renders it.
    Jinja(Arc<ChatTemplate>),
}

/// A pair rendered by a [`ChatFormat`]: the prompt's pieces and each answer's text, so that
/// `prompt ++ chosen` is the text of the whole conversation with the chosen answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPair {
    /// The prompt, up to where the answers start.
    pub prompt: Vec<Piece>,
    /// The chosen answer with what surrounds it.
    pub chosen: String,
    /// The rejected answer with what surrounds it.
    pub rejected: String,
}

impl ChatFormat {
    /// The format `template` names for the tokenizer at `tokenizer`: for `auto`, the
    /// tokenizer folder's own chat template where it has one (see [`ChatTemplate::find`]),
    /// otherwise ChatML; any other name is that built-in template. Errors name the file of a
    /// template that cannot be read or compiled.
    pub fn resolve(template: Template, tokenizer: &Path) -> Result<Self, DataError> {
        if template != Template::Auto {
            return Ok(ChatFormat::Builtin(template));
        }
        Ok(match ChatTemplate::find(tokenizer)? {
            Some(chat) => ChatFormat::Jinja(Arc::new(chat)),
            None => ChatFormat::Builtin(Template::ChatMl),
        })
    }

    /// Whether tokenization puts BOS before the prompt and EOS after each response: yes for
    /// the built-in templates; no for a model's template, which writes BOS and its end-of-turn
    /// marker itself where the model wants them (transformers' `apply_chat_template` and TRL's
    /// DPO trainer add none to conversations).
    pub fn adds_special_tokens(&self) -> bool {
        matches!(self, ChatFormat::Builtin(_))
    }

    /// A prompt alone as generation starts from it: a conversation through a Jinja template
    /// rendered with the generation prompt (transformers' `apply_chat_template(messages,
    /// add_generation_prompt=True)`), anything else as [`Template::prompt`] renders it (text
    /// as it is). An error where the template refuses the conversation or passes a limit.
    pub fn render_prompt(&self, prompt: &Prompt) -> Result<Vec<Piece>, RenderError> {
        match (self, prompt) {
            (ChatFormat::Jinja(chat), Prompt::Messages(messages)) => {
                Ok(vec![Piece::Text(chat.render(messages, true)?)])
            }
            (ChatFormat::Jinja(_), Prompt::Text(_)) => {
                Template::Plain.prompt(prompt).map_err(RenderError::Refused)
            }
            (ChatFormat::Builtin(template), _) => {
                template.prompt(prompt).map_err(RenderError::Refused)
            }
        }
    }

    /// The pair as the model sees it. A text prompt and its answers are left as they are. A
    /// conversation with a Jinja template is rendered three times, as TRL does: with the
    /// generation prompt, and with each answer as a final assistant message; the prompt is
    /// what the three renderings share from their start, each answer the rest of its own. An
    /// error where the template refuses the conversation or passes a limit.
    pub fn render(&self, pair: &ChatPair) -> Result<RenderedPair, RenderError> {
        let (ChatFormat::Jinja(chat), Prompt::Messages(messages)) = (self, &pair.prompt) else {
            let template = match self {
                ChatFormat::Builtin(template) => *template,
                ChatFormat::Jinja(_) => Template::Plain,
            };
            return Ok(RenderedPair {
                prompt: template
                    .prompt(&pair.prompt)
                    .map_err(RenderError::Refused)?,
                chosen: template.response(&pair.prompt, &pair.chosen),
                rejected: template.response(&pair.prompt, &pair.rejected),
            });
        };
        let prompt = chat.render(messages, true)?;
        let answered = |answer: &str| {
            let mut conversation = messages.clone();
            conversation.push(Message {
                role: "assistant".into(),
                content: answer.into(),
            });
            chat.render(&conversation, false)
        };
        let (chosen, rejected) = (answered(&pair.chosen)?, answered(&pair.rejected)?);
        let shared = shared_prefix(shared_prefix(&prompt, &chosen), &rejected).len();
        Ok(RenderedPair {
            prompt: vec![Piece::Text(prompt[..shared].to_owned())],
            chosen: chosen[shared..].to_owned(),
            rejected: rejected[shared..].to_owned(),
        })
    }
}

impl From<Template> for ChatFormat {
    fn from(template: Template) -> Self {
        ChatFormat::Builtin(template)
    }
}

impl fmt::Display for ChatFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatFormat::Builtin(template) => write!(f, "{template}"),
            ChatFormat::Jinja(chat) => {
                write!(f, "the chat template of {}", chat.origin().display())
            }
        }
    }
}

/// The longest common start of `a` and `b`, ending on a character boundary.
fn shared_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let end = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i);
    &a[..end]
}

fn plain(messages: &[Message]) -> String {
    let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    contents.join("\n\n")
}

fn hh(messages: &[Message]) -> Result<String, String> {
    let mut text = String::new();
    for (i, message) in messages.iter().enumerate() {
        let speaker = match message.role.as_str() {
            "system" if i == 0 => {
                text.push_str(&message.content);
                continue;
            }
            "user" => "Human",
            "assistant" => "Assistant",
            role => return Err(unsupported(Template::Hh, role, i)),
        };
        text.push_str("\n\n");
        text.push_str(speaker);
        text.push_str(": ");
        text.push_str(&message.content);
    }
    text.push_str("\n\nAssistant:");
    Ok(text)
}

fn chatml(messages: &[Message]) -> String {
    let mut text = String::new();
    for message in messages {
        text.push_str("<|im_start|>");
        text.push_str(&message.role);
        text.push('\n');
        text.push_str(&message.content);
        text.push_str("<|im_end|>\n");
    }
    text.push_str("<|im_start|>assistant\n");
    text
}

fn llama2(messages: &[Message]) -> Result<Vec<Piece>, String> {
    let (system, turns) = match messages.split_first() {
        Some((first, rest)) if first.role == "system" => (Some(first.content.as_str()), rest),
        _ => (None, messages),
    };
    let offset = messages.len() - turns.len();
    let mut pieces = Vec::new();
    for (i, message) in turns.iter().enumerate() {
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if message.role != expected {
            return Err(format!(
                "the llama2 template needs an optional system message, then user and assistant \
                 turns alternating from a user turn and ending in one; message {} is {:?}",
                i + offset,
                message.role
            ));
        }
        if expected == "assistant" {
            pieces.push(Piece::Text(format!(" {}", message.content.trim())));
            pieces.extend([Piece::Eos, Piece::Bos]);
            continue;
        }
        let user = message.content.trim();
        let text = match system {
            Some(system) if i == 0 => {
                format!(
                    "[INST] <<SYS>>\n{}\n<</SYS>>\n\n{user} [/INST]",
                    system.trim()
                )
            }
            _ => format!("[INST] {user} [/INST]"),
        };
        pieces.push(Piece::Text(text));
    }
    if turns.len() % 2 == 0 {
        return Err(
            "the llama2 template needs the conversation to end with a user turn".to_owned(),
        );
    }
    Ok(pieces)
}

fn unsupported(template: Template, role: &str, index: usize) -> String {
    format!(
        "the {} template has no place for role {role:?} (message {index})",
        template.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    fn text(pieces: Vec<Piece>) -> String {
        pieces
            .into_iter()
            .map(|piece| match piece {
                Piece::Text(text) => text,
                Piece::Bos => "<BOS>".into(),
                Piece::Eos => "<EOS>".into(),
            })
            .collect()
    }

    fn conversation() -> Prompt {
        Prompt::Messages(vec![
            msg("system", "Be brief."),
            msg("user", "Hi"),
            msg("assistant", "Hello!"),
            msg("user", "2+2?"),
        ])
    }

    #[test]
    fn chatml_renders_every_turn_and_the_generation_prompt() {
        let prompt = Template::ChatMl.prompt(&conversation()).unwrap();
        assert_eq!(
            text(prompt),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        assert_eq!(
            Template::ChatMl.response(&conversation(), "4"),
            "4<|im_end|>"
        );
    }

    #[test]
    fn hh_renders_human_and_assistant_turns_ending_in_the_assistant_marker() {
        let prompt = Template::Hh.prompt(&conversation()).unwrap();
        assert_eq!(
            text(prompt),
            "Be brief.\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant:"
        );
        assert_eq!(Template::Hh.response(&conversation(), "4"), " 4");
        assert_eq!(Template::Hh.response(&conversation(), " 4"), " 4");
    }

    #[test]
    fn llama2_puts_the_system_message_in_the_first_turn_and_eos_bos_between_turns() {
        let prompt = Template::Llama2.prompt(&conversation()).unwrap();
        assert_eq!(
            text(prompt),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello!<EOS><BOS>[INST] 2+2? [/INST]"
        );
        assert_eq!(Template::Llama2.response(&conversation(), "4"), " 4");
    }

    #[test]
    fn llama2_refuses_turns_out_of_order() {
        for messages in [
            vec![msg("assistant", "a")],
            vec![msg("user", "u"), msg("assistant", "a")],
            vec![msg("user", "u"), msg("user", "v")],
        ] {
            assert!(Template::Llama2
                .prompt(&Prompt::Messages(messages))
                .is_err());
        }
    }

    #[test]
    fn hh_refuses_roles_it_has_no_place_for() {
        let prompt = Prompt::Messages(vec![msg("user", "u"), msg("tool", "t")]);
        let problem = Template::Hh.prompt(&prompt).unwrap_err();
        assert!(problem.contains("\"tool\""), "{problem}");
    }

    #[test]
    fn text_prompts_and_their_responses_pass_through_every_template() {
        let prompt = Prompt::Text("\n\nHuman: hi\n\nAssistant:".into());
        for template in Template::ALL {
            assert_eq!(
                text(template.prompt(&prompt).unwrap()),
                "\n\nHuman: hi\n\nAssistant:"
            );
            assert_eq!(template.response(&prompt, " yes"), " yes");
        }
    }

    #[test]
    fn plain_joins_contents_with_blank_lines() {
        let prompt = Template::Plain.prompt(&conversation()).unwrap();
        assert_eq!(text(prompt), "Be brief.\n\nHi\n\nHello!\n\n2+2?");
        assert_eq!(Template::Plain.response(&conversation(), "4"), "\n\n4");
    }

    #[test]
    fn names_round_trip() {
        for template in Template::ALL {
            assert_eq!(template.name().parse::<Template>(), Ok(template));
        }
        assert!("vicuna".parse::<Template>().is_err());
    }
}
