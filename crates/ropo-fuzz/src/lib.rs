//! The bodies of ropo's fuzz targets (`fuzz/fuzz_targets/`): each takes arbitrary bytes, feeds
//! them to one reader as the file it reads, and may return an error but must never panic,
//! hang or allocate without bound. They live here, outside the cargo-fuzz crate, so that
//! `tests/regressions.rs` replays every input the fuzzers found (`fuzz/regressions/`) in the
//! ordinary test run, on stable Rust.

use std::path::{Path, PathBuf};

use burn::backend::Flex;

/// A fuzz target's body: takes any bytes, must not panic.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: the folder of `fuzz/regressions/` and the binary of `fuzz/`.
pub const TARGETS: [(&str, Target); 5] = [
    ("dataset", dataset),
    ("config", config),
    ("tokenizer", tokenizer),
    ("llama2c", llama2c),
    ("safetensors", safetensors),
];

/// A preference dataset (any of the JSON Lines formats, plain or gzip), read strictly and with
/// invalid records skipped.
pub fn dataset(bytes: &[u8]) {
    let path = scratch_file("pairs.jsonl", bytes);
    for on_invalid in [
        ropo_data::formats::OnInvalid::Error,
        ropo_data::formats::OnInvalid::Skip,
    ] {
        let options = ropo_data::formats::ReadOptions {
            on_invalid,
            ..Default::default()
        };
        let _ = ropo_data::formats::read_pairs(&path, &options);
    }
}

/// An experiment config (`cargo xtask train --config`), parsed and validated.
pub fn config(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(experiment) = toml::from_str::<ropo_train::config::GoldExperiment>(text) {
        let _ = experiment.validate();
    }
    if let Ok(experiment) =
        toml::from_str::<ropo_train::dataset_experiment::DatasetExperiment>(text)
    {
        let _ = experiment.validate();
    }
}

/// A tokenizer file: the first byte picks the kind (Hugging Face `tokenizer.json`, llama2.c
/// `.bin`, or GPT-2's `encoder.json` with a fixed `vocab.bpe`); one that loads must encode
/// and decode a short text.
pub fn tokenizer(bytes: &[u8]) {
    let Some((kind, content)) = bytes.split_first() else {
        return;
    };
    let name = match kind % 3 {
        0 => "tokenizer.json",
        1 => "tokenizer.bin",
        _ => "encoder.json",
    };
    let path = scratch_file(name, content);
    std::fs::write(path.with_file_name("vocab.bpe"), "#version: 0.2\nh e\n").unwrap();
    if let Ok(tokenizer) = ropo_data::tokenizer::load_tokenizer(&path) {
        if let Ok(ids) = tokenizer.encode("Human: hello there\n\nAssistant: hi") {
            let _ = tokenizer.decode(&ids);
        }
    }
}

/// A llama2.c model checkpoint (`.bin`).
pub fn llama2c(bytes: &[u8]) {
    let path = scratch_file("model.bin", bytes);
    let _ = ropo_models::checkpoint::load::<Flex>(&path, &Default::default());
}

/// `model.safetensors` of a Hugging Face checkpoint folder whose `config.json` is the tiny
/// Llama fixture's.
pub fn safetensors(bytes: &[u8]) {
    let path = scratch_file("model.safetensors", bytes);
    std::fs::write(path.with_file_name("config.json"), TINY_LLAMA).unwrap();
    let _ = ropo_models::checkpoint::load::<Flex>(path.parent().unwrap(), &Default::default());
}

/// The config of the tiny Llama fixture made with transformers, whose `model.safetensors`
/// seeds the fuzzer.
const TINY_LLAMA: &str = include_str!("../../ropo-models/tests/fixtures/llama/config.json");

/// Writes `bytes` to `name` in this process's (and thread's) scratch folder.
fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let folder = std::env::temp_dir().join(format!(
        "ropo-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&folder).unwrap();
    let path = Path::new(&folder).join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}
