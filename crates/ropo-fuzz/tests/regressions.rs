//! Replays every input kept under `fuzz/regressions/<target>/` (what the fuzzers found, and
//! the seeds they started from) through its target: none may panic.

use std::path::Path;

#[test]
fn every_kept_fuzz_input_is_handled_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let mut replayed = 0;
    for (name, target) in ropo_fuzz::TARGETS {
        let folder = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{}: no inputs", folder.display());
        for input in inputs {
            let bytes = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "{} panicked", input.display());
            replayed += 1;
        }
    }
    assert!(replayed >= 5);
}

/// The seeds the fuzzers start from are valid inputs (so mutation starts from the readers'
/// deep paths, not their first check).
#[test]
fn the_valid_seeds_are_accepted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    for name in ["seed-orca.jsonl", "seed-hh.jsonl.gz", "seed-messages.jsonl"] {
        let path = root.join("dataset").join(name);
        let (pairs, _) = ropo_data::formats::read_pairs(&path, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!pairs.is_empty(), "{name}");
    }
    let model = root.join("llama2c/seed-tiny.bin");
    ropo_models::checkpoint::load::<burn::backend::Flex>(&model, &Default::default()).unwrap();
    for name in ["seed-gold.toml", "seed-dataset.toml"] {
        let text = std::fs::read_to_string(root.join("config").join(name)).unwrap();
        let gold = toml::from_str::<ropo_train::config::GoldExperiment>(&text);
        let dataset = toml::from_str::<ropo_train::dataset_experiment::DatasetExperiment>(&text);
        assert!(gold.is_ok() || dataset.is_ok(), "{name}");
    }
}
