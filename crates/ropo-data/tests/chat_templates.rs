//! Chat templates against transformers and TRL: the five templates of
//! `tests/fixtures/chat_templates/`, written in the styles of current instruct families, render
//! byte for byte as transformers' `apply_chat_template` renders them, raise where it raises,
//! and tokenize preference pairs to the ids TRL's DPO trainer makes (`renders.json`, made by
//! `make_renders.py` there).

use std::path::{Path, PathBuf};

use ropo_data::chat_template::ChatTemplate;
use ropo_data::template::{ChatFormat, Template};
use ropo_data::tokenize::{tokenize, TokenizeOptions};
use ropo_data::{load_tokenizer, ChatPair, Message, Prompt};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_templates")
}

fn renders() -> Value {
    let text = std::fs::read_to_string(fixtures().join("renders.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn conversation(fixture: &Value, index: &Value) -> Vec<Message> {
    let messages = &fixture["conversations"][index.as_u64().unwrap() as usize];
    serde_json::from_value(messages.clone()).unwrap()
}

fn template_path(name: &str) -> PathBuf {
    fixtures().join(format!("{name}.jinja"))
}

#[test]
fn five_family_templates_render_as_transformers_renders_them() {
    let fixture = renders();
    let mut compared = 0;
    for (name, tokens) in fixture["templates"].as_object().unwrap() {
        let special: Vec<(String, String)> = tokens
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(field, token)| Some((field.clone(), token.as_str()?.to_owned())))
            .collect();
        let path = template_path(name);
        let source = std::fs::read_to_string(&path).unwrap();
        let chat = ChatTemplate::new(&source, &path, special).unwrap();
        for render in fixture["renders"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|render| render["template"] == name.as_str())
        {
            let messages = conversation(&fixture, &render["conversation"]);
            let generation = render["add_generation_prompt"].as_bool().unwrap();
            let ours = chat.render(&messages, generation);
            match (&ours, render.get("text"), render.get("error")) {
                (Ok(text), Some(Value::String(expected)), None) => {
                    assert_eq!(text, expected, "{name}, {render}")
                }
                (Err(problem), None, Some(Value::String(expected))) => {
                    let problem = problem.to_string();
                    assert!(problem.contains(expected.as_str()), "{name}: {problem}");
                    assert!(problem.contains(&format!("{name}.jinja")), "{problem}");
                }
                _ => panic!("{name}: ropo gives {ours:?} where transformers gives {render}"),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 70);
}

#[test]
fn pairs_on_a_folder_with_a_chat_template_tokenize_as_trl_tokenizes_them() {
    let fixture = renders();
    let special = fixture["pair"]["special_token"].as_str().unwrap();
    let folder = std::env::temp_dir().join(format!("ropo-chat-templates-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/assets");
    std::fs::copy(
        assets.join("tokenizers/gpt2-tokenizer.json"),
        folder.join("tokenizer.json"),
    )
    .unwrap();
    let tokenizer = load_tokenizer(&folder).unwrap();
    let mut compared = 0;
    for expected in fixture["pair_ids"].as_array().unwrap() {
        let name = expected["template"].as_str().unwrap();
        let source = std::fs::read_to_string(template_path(name)).unwrap();
        let config = serde_json::json!({
            "chat_template": source,
            "bos_token": special,
            "eos_token": {"content": special, "special": true},
        });
        std::fs::write(folder.join("tokenizer_config.json"), config.to_string()).unwrap();
        let format = ChatFormat::resolve(Template::Auto, &folder).unwrap();
        assert!(matches!(format, ChatFormat::Jinja(_)), "{format}");
        let pair = ChatPair {
            prompt: Prompt::Messages(conversation(&fixture, &expected["conversation"])),
            chosen: fixture["pair"]["chosen"].as_str().unwrap().into(),
            rejected: fixture["pair"]["rejected"].as_str().unwrap().into(),
        };
        let options = TokenizeOptions::new(format, usize::MAX);
        let out = tokenize(&[pair], tokenizer.as_ref(), &options).unwrap();
        let ids =
            |field: &str| -> Vec<u32> { serde_json::from_value(expected[field].clone()).unwrap() };
        let ours = &out.pairs[0];
        assert_eq!(ours.prompt, ids("prompt"), "{name} prompt");
        assert_eq!(ours.chosen, ids("chosen"), "{name} chosen");
        assert_eq!(ours.rejected, ids("rejected"), "{name} rejected");
        compared += 1;
    }
    std::fs::remove_dir_all(&folder).unwrap();
    assert_eq!(compared, 15);
}

#[test]
fn auto_without_a_model_template_is_chatml_and_a_named_template_wins() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/assets");
    let tokenizer = assets.join("tokenizers/gpt2-tokenizer.json");
    let format = ChatFormat::resolve(Template::Auto, &tokenizer).unwrap();
    assert!(
        matches!(format, ChatFormat::Builtin(Template::ChatMl)),
        "{format}"
    );
    let format = ChatFormat::resolve(Template::Hh, &fixtures()).unwrap();
    assert!(
        matches!(format, ChatFormat::Builtin(Template::Hh)),
        "{format}"
    );
}

#[test]
fn a_bad_chat_template_field_is_an_error_naming_the_config() {
    let folder = std::env::temp_dir().join(format!("ropo-bad-template-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let config = folder.join("tokenizer_config.json");
    std::fs::write(&config, r#"{"chat_template": 7}"#).unwrap();
    let error = ChatFormat::resolve(Template::Auto, &folder)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tokenizer_config.json") && error.contains("chat_template"),
        "{error}"
    );
    std::fs::write(&config, r#"{"chat_template": "{% if %}"}"#).unwrap();
    let error = ChatFormat::resolve(Template::Auto, &folder)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tokenizer_config.json: chat template:"),
        "{error}"
    );
    std::fs::remove_dir_all(&folder).unwrap();
}
