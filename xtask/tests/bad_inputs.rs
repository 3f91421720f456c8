//! The bad-input corpus (`tests/bad_inputs/`, written by its `make_bad_inputs.py`) through the
//! command line: every malformed dataset, config, tokenizer and checkpoint is refused with a
//! non-zero exit and one line `error: …` that names the file (and the line or field where
//! there is one), never a panic or a backtrace.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Which command a case goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `xtask data inspect FILE`.
    Data,
    /// `xtask train --quiet --config FILE --out TMP`.
    Config,
    /// `xtask score --model <the tiny llama fixture> --tokenizer PATH …`.
    Tokenizer,
    /// `xtask score --model PATH --tokenizer tok512.bin …`.
    Checkpoint,
}

use Kind::{Checkpoint, Config, Data, Tokenizer};

/// Each case: its path under `tests/bad_inputs`, the command it goes through, and what the
/// error must say besides the path (which every error must hold): the line and field for
/// data, the field or TOML line for configs, the problem for the rest.
#[rustfmt::skip]
const CASES: &[(&str, Kind, &[&str])] = &[
    ("data/empty.jsonl", Data, &["line 1", "no records"]),
    ("data/blank_lines.jsonl", Data, &["line 3", "no records"]),
    ("data/not_json.jsonl", Data, &["line 2", "invalid JSON at column 1"]),
    ("data/truncated_json.jsonl", Data, &["line 2", "EOF while parsing"]),
    ("data/not_an_object.jsonl", Data, &["line 1", "not an object but an array"]),
    ("data/string_record.jsonl", Data, &["line 1", "not an object but a string"]),
    ("data/unknown_shape.jsonl", Data, &["line 1", "cannot tell the dataset format", "question"]),
    ("data/invalid_utf8.jsonl", Data, &["line 3", "not valid UTF-8"]),
    ("data/nul_bytes.jsonl", Data, &["line 1", "invalid JSON"]),
    ("data/lone_surrogate.jsonl", Data, &["line 2", "invalid JSON"]),
    ("data/deeply_nested.jsonl", Data, &["line 1", "recursion limit"]),
    ("data/generic_missing_rejected.jsonl", Data, &["line 2", r#"field "rejected": missing"#]),
    ("data/generic_chosen_null.jsonl", Data, &["line 2", r#"field "chosen""#, "found null"]),
    ("data/generic_chosen_number.jsonl", Data, &["line 3", r#"field "chosen""#, "found a number"]),
    ("data/generic_empty_response.jsonl", Data, &["line 2", r#"field "rejected": empty response"#]),
    ("data/mixed_formats.jsonl", Data, &["line 2", r#"field "prompt": missing"#]),
    ("data/hh_no_assistant.jsonl", Data, &["line 1", r#"field "chosen""#, "not an HH transcript"]),
    ("data/hh_no_shared_prompt.jsonl", Data, &["line 2", r#"field "rejected""#, "shares no prompt"]),
    ("data/trl_wrong_role.jsonl", Data, &["line 1", r#"field "chosen[0].role""#, "\"user\""]),
    ("data/trl_message_not_object.jsonl", Data, &["line 1", r#"field "rejected[0]""#]),
    ("data/trl_content_number.jsonl", Data, &["line 1", r#"field "prompt[0].content""#]),
    ("data/trl_missing_role.jsonl", Data, &["line 1", r#"field "chosen[0].role": missing"#]),
    ("data/trl_two_answers.jsonl", Data, &["line 1", r#"field "chosen""#, "found 2"]),
    ("data/trl_empty_prompt.jsonl", Data, &["line 1", r#"field "prompt": no messages"#]),
    ("data/trl_implicit_no_shared_prompt.jsonl", Data, &["line 1", r#"field "rejected""#, "shares no prompt"]),
    ("data/summarize_choice_2.jsonl", Data, &["line 1", r#"field "choice""#, "found 2"]),
    ("data/summarize_one_summary.jsonl", Data, &["line 1", r#"field "summaries""#, "found 1"]),
    ("data/summarize_post_missing.jsonl", Data, &["line 2", r#"field "info.post": missing"#]),
    ("data/summarize_title_number.jsonl", Data, &["line 1", r#"field "info.title""#]),
    ("data/summarize_summary_text_null.jsonl", Data, &["line 1", r#"field "summaries[1].text""#]),
    ("data/ultrafeedback_context_differs.jsonl", Data, &["line 1", r#"field "rejected""#, "differs"]),
    ("data/ultrafeedback_last_not_assistant.jsonl", Data, &["line 1", r#"field "chosen[1].role""#]),
    ("data/orca_no_messages.jsonl", Data, &["line 1", r#"field "input.messages": no messages"#]),
    ("data/orca_input_string.jsonl", Data, &["line 1", r#"field "input""#, "found a string"]),
    ("data/orca_output_not_list.jsonl", Data, &["line 1", r#"field "non_preferred_output""#]),
    ("data/gz_truncated.jsonl.gz", Data, &["line 1", "truncated or corrupt"]),
    ("data/gz_bad_crc.jsonl.gz", Data, &["line 3", "checksum"]),
    ("data/gz_garbage.jsonl.gz", Data, &["line 1", "invalid gzip header"]),
    ("data/gz_empty.jsonl.gz", Data, &["line 1", "no records"]),
    ("data/gz_bad_line.jsonl.gz", Data, &["line 3", "invalid JSON"]),
    ("data/plain_named_gz.jsonl.gz", Data, &["line 2", r#"field "chosen": missing"#]),
    ("configs/syntax_error.toml", Config, &["line 2", "unclosed array"]),
    ("configs/unknown_field.toml", Config, &["line 4", "unknown field `lossses`"]),
    ("configs/unknown_nested_field.toml", Config, &["line 5", "unknown field `stepz`"]),
    ("configs/wrong_type.toml", Config, &["line 2", "seeds", "expected u64"]),
    ("configs/negative_seeds.toml", Config, &["line 2", "seeds", "`-1`"]),
    ("configs/duplicate_key.toml", Config, &["line 4", "duplicate key"]),
    ("configs/incomplete_table.toml", Config, &["[model]", "missing field `layers`"]),
    ("configs/noise_out_of_range.toml", Config, &["noise", "0.5"]),
    ("configs/unknown_loss.toml", Config, &["unknown loss 'dpoo'"]),
    ("configs/empty_losses.toml", Config, &["losses"]),
    ("configs/zero_seeds.toml", Config, &["seeds must be at least 1"]),
    ("configs/zero_lr.toml", Config, &["sft.lr"]),
    ("configs/nan_lr.toml", Config, &["preference.lr", "NaN"]),
    ("configs/zero_batch.toml", Config, &["preference.batch"]),
    ("configs/negative_beta.toml", Config, &["beta = -0.1"]),
    ("configs/epsilon_too_large.toml", Config, &["epsilon = 0.7"]),
    ("configs/zero_heads.toml", Config, &["model:", "num_attention_heads"]),
    ("configs/odd_head_dim.toml", Config, &["model:", "head_dim (9)"]),
    ("configs/zero_hidden.toml", Config, &["model:", "hidden_size must be > 0"]),
    ("configs/zero_intermediate.toml", Config, &["model:", "intermediate_size must be > 0"]),
    ("configs/task_zero_symbols.toml", Config, &["task.symbols = 0"]),
    ("configs/task_one_symbol.toml", Config, &["task.symbols = 1"]),
    ("configs/task_zero_length.toml", Config, &["task.length = 0"]),
    ("configs/task_quality_above_one.toml", Config, &["task.sft_quality = 1.5"]),
    ("configs/task_quality_one.toml", Config, &["task.sft_quality = 1 "]),
    ("configs/not_utf8.toml", Config, &["not UTF-8 text"]),
    ("configs/dataset_heldout_one.toml", Config, &["dataset.heldout"]),
    ("configs/dataset_bad_template.toml", Config, &["dataset.template", "alpaca"]),
    ("configs/dataset_missing_pairs.toml", Config, &["dataset.pairs", "no-such-file.jsonl"]),
    ("configs/dataset_unknown_field.toml", Config, &["line 14", "unknown field `shuffle`"]),
    ("configs/dataset_missing_field.toml", Config, &["[dataset]", "missing field `tokenizer`"]),
    ("configs/dataset_gold_noise.toml", Config, &["noise_model", "bradley_terry", "known reward"]),
    ("tokenizers/hf_empty.json", Tokenizer, &["not a valid tokenizer.json", "EOF"]),
    ("tokenizers/hf_not_json.json", Tokenizer, &["not a valid tokenizer.json", "line 1 column 2"]),
    ("tokenizers/hf_truncated.json", Tokenizer, &["not a valid tokenizer.json", "EOF"]),
    ("tokenizers/hf_decoder_cut.json", Tokenizer, &["hf_decoder_cut.json", "not a valid tokenizer.json", "at line 12"]),
    ("tokenizers/hf_bpe_merge_longer_than_vocab.json", Tokenizer, &["not a valid tokenizer.json", "the tokenizers library failed on it"]),
    ("tokenizers/hf_decoder_lone_surrogate.json", Tokenizer, &["not a valid tokenizer.json", "hex escape at line 11"]),
    ("tokenizers/hf_array.json", Tokenizer, &["not a valid tokenizer.json", "sequence"]),
    ("tokenizers/hf_no_model.json", Tokenizer, &["Model missing"]),
    ("tokenizers/hf_unknown_model.json", Tokenizer, &["not a valid tokenizer.json", "Model"]),
    ("tokenizers/hf_vocab_string_id.json", Tokenizer, &["string \"zero\""]),
    ("tokenizers/hf_bpe_merge_unknown.json", Tokenizer, &["Token `q` out of vocabulary"]),
    ("tokenizers/hf_bad_regex.json", Tokenizer, &["not a valid tokenizer.json", "parenthesis"]),
    ("tokenizers/hf_unknown_normalizer.json", Tokenizer, &["not a valid tokenizer.json", "Normalizer"]),
    ("tokenizers/hf_no_unk.json", Tokenizer, &["cannot encode", "[UNK]"]),
    ("tokenizers/hf_bad_config", Tokenizer, &["tokenizer_config.json", r#"field "bos_token""#]),
    ("tokenizers/hf_config_unknown_token", Tokenizer, &["tokenizer_config.json", r#"field "eos_token""#, "</s>"]),
    ("tokenizers/hf_config_not_json", Tokenizer, &["tokenizer_config.json", "invalid JSON"]),
    ("tokenizers/l2c_empty.bin", Tokenizer, &["truncated at byte 0", "max_token_length"]),
    ("tokenizers/l2c_short_header.bin", Tokenizer, &["truncated at byte 0", "ends at byte 2"]),
    ("tokenizers/l2c_negative_max_len.bin", Tokenizer, &["byte 0", "negative max_token_length"]),
    ("tokenizers/l2c_truncated_score.bin", Tokenizer, &["truncated at byte 17", "token 1's score"]),
    ("tokenizers/l2c_negative_token_len.bin", Tokenizer, &["byte 21", "token 1 has negative length"]),
    ("tokenizers/l2c_token_past_end.bin", Tokenizer, &["1000 bytes of token 262"]),
    ("tokenizers/l2c_huge_token_len.bin", Tokenizer, &["2147483647 bytes of token 0"]),
    ("tokenizers/l2c_no_byte_tokens.bin", Tokenizer, &["token 3", "<0x00>"]),
    ("tokenizers/l2c_wrong_byte_token.bin", Tokenizer, &["token 100", "<0xZZ>"]),
    ("tokenizers/l2c_model_file.bin", Tokenizer, &["truncated at byte"]),
    ("tokenizers/l2c_too_many_tokens.bin", Tokenizer, &["300 tokens", "fixtures/llama only 96"]),
    ("tokenizers/gpt2_no_merges", Tokenizer, &["encoder.json", "vocab.bpe", "does not exist"]),
    ("tokenizers/gpt2_encoder_not_json", Tokenizer, &["encoder.json: invalid JSON"]),
    ("tokenizers/gpt2_negative_id", Tokenizer, &["encoder.json: invalid JSON", "`-1`"]),
    ("tokenizers/gpt2_three_tokens", Tokenizer, &["vocab.bpe: line 3", "two tokens"]),
    ("tokenizers/gpt2_unknown_merge", Tokenizer, &["vocab.bpe: line 2", "token \"q\""]),
    ("tokenizers/gpt2_merges_not_utf8", Tokenizer, &["vocab.bpe: cannot read", "UTF-8"]),
    ("tokenizers/unknown_kind.model", Tokenizer, &["not a tokenizer this crate reads"]),
    ("tokenizers/no_tokenizer", Tokenizer, &["no tokenizer found"]),
    ("tokenizers/two_tok_bins", Tokenizer, &["tok1024.bin, tok512.bin"]),
    ("checkpoints/no_config", Checkpoint, &["config.json", "No such file"]),
    ("checkpoints/config_empty", Checkpoint, &["config.json", "EOF"]),
    ("checkpoints/config_not_json", Checkpoint, &["config.json", "line 1 column 1"]),
    ("checkpoints/config_no_model_type", Checkpoint, &["config.json", "missing field `model_type`"]),
    ("checkpoints/config_unknown_model_type", Checkpoint, &["config.json", "unknown model_type 'bert'"]),
    ("checkpoints/config_missing_hidden_size", Checkpoint, &["config.json", "missing field `hidden_size`"]),
    ("checkpoints/config_hidden_size_string", Checkpoint, &["config.json", "string \"4\""]),
    ("checkpoints/config_negative_layers", Checkpoint, &["config.json", "`-1`"]),
    ("checkpoints/config_zero_heads", Checkpoint, &["config.json", "num_attention_heads"]),
    ("checkpoints/config_kv_heads_do_not_divide", Checkpoint, &["config.json", "num_key_value_heads (3)"]),
    ("checkpoints/config_odd_head_dim", Checkpoint, &["config.json", "head_dim (3)"]),
    ("checkpoints/config_zero_hidden_size", Checkpoint, &["config.json", "hidden_size must be > 0"]),
    ("checkpoints/config_zero_vocab", Checkpoint, &["config.json", "vocab_size must be > 0"]),
    ("checkpoints/config_zero_context", Checkpoint, &["config.json", "max_position_embeddings must be > 0"]),
    ("checkpoints/config_llama3_rope_incomplete", Checkpoint, &["config.json", "rope_parameters.factor"]),
    ("checkpoints/config_shapes_disagree", Checkpoint, &["wrong tensors", "gate_proj"]),
    ("checkpoints/config_more_layers", Checkpoint, &["missing tensors", "model.layers.1."]),
    ("checkpoints/no_weights", Checkpoint, &["no model.safetensors"]),
    ("checkpoints/weights_empty", Checkpoint, &["model.safetensors", "header too small"]),
    ("checkpoints/weights_short", Checkpoint, &["model.safetensors", "header too small"]),
    ("checkpoints/weights_header_too_long", Checkpoint, &["model.safetensors", "header too large"]),
    ("checkpoints/weights_header_past_end", Checkpoint, &["model.safetensors", "invalid header length"]),
    ("checkpoints/weights_header_not_json", Checkpoint, &["model.safetensors", "invalid JSON in header"]),
    ("checkpoints/weights_truncated", Checkpoint, &["model.safetensors", "not fully covered"]),
    ("checkpoints/weights_offsets_wrong", Checkpoint, &["model.safetensors", "offset"]),
    ("checkpoints/weights_unknown_dtype", Checkpoint, &["model.safetensors", "`F31`"]),
    ("checkpoints/weights_missing_tensor", Checkpoint, &["missing tensors: lm_head.weight"]),
    ("checkpoints/weights_extra_tensor", Checkpoint, &["unexpected tensors", "self_attn.extra"]),
    ("checkpoints/weights_wrong_shape", Checkpoint, &["wrong tensors", "model.norm.weight"]),
    ("checkpoints/sealed_bit_flipped", Checkpoint, &["model.safetensors", "checksum mismatch"]),
    ("checkpoints/sealed_truncated", Checkpoint, &["model.safetensors", "checksum mismatch"]),
    ("checkpoints/index_not_json", Checkpoint, &["model.safetensors.index.json"]),
    ("checkpoints/index_missing_shard", Checkpoint, &["model-00002-of-00002.safetensors", "not found"]),
    ("checkpoints/l2c_empty.bin", Checkpoint, &["0 bytes", "28-byte"]),
    ("checkpoints/l2c_short_header.bin", Checkpoint, &["12 bytes", "28-byte"]),
    ("checkpoints/l2c_negative_dim.bin", Checkpoint, &["dim = -4"]),
    ("checkpoints/l2c_zero_layers.bin", Checkpoint, &["n_layers = 0"]),
    ("checkpoints/l2c_heads_do_not_divide.bin", Checkpoint, &["n_heads 3"]),
    ("checkpoints/l2c_odd_head_dim.bin", Checkpoint, &["head_dim (3)"]),
    ("checkpoints/l2c_truncated.bin", Checkpoint, &["truncated at byte 156", "input_layernorm"]),
    ("checkpoints/l2c_huge_dims.bin", Checkpoint, &["truncated at byte 28", "token embedding"]),
];

/// How long one command may take: every case fails while reading its input, in well under a
/// second; a case that starts training instead is stopped and reported.
const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn every_bad_input_is_a_one_line_error_naming_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let corpus = Path::new("tests/bad_inputs");
    let scratch = std::env::temp_dir().join(format!("ropo-bad-inputs-{}", std::process::id()));
    let mut failures = Vec::new();

    let listed: BTreeSet<&str> = CASES.iter().map(|(path, ..)| *path).collect();
    for path in corpus_entries(&root.join(corpus)) {
        if !listed.contains(path.as_str()) {
            failures.push(format!("{path}: in the corpus but not in CASES"));
        }
    }

    for (index, &(case, kind, expected)) in CASES.iter().enumerate() {
        let path = corpus.join(case);
        if !root.join(&path).exists() {
            failures.push(format!("{case}: in CASES but not in the corpus"));
            continue;
        }
        let dir = scratch.join(index.to_string());
        std::fs::create_dir_all(&dir).expect("scratch folder");
        let (status, stderr) = match run(&root, &command(kind, &path, &dir), &dir) {
            Ok(outcome) => outcome,
            Err(problem) => {
                failures.push(format!("{case}: {problem}"));
                continue;
            }
        };
        let mut problems = Vec::new();
        if status.success() {
            problems.push("exited with success".to_string());
        }
        let lines: Vec<&str> = stderr.lines().collect();
        if lines.len() != 1 || !lines[0].starts_with("error: ") {
            problems.push("stderr is not one line starting with `error: `".to_string());
        }
        let named = path.display().to_string();
        for needle in std::iter::once(named.as_str()).chain(expected.iter().copied()) {
            if !stderr.contains(needle) {
                problems.push(format!("stderr lacks {needle:?}"));
            }
        }
        for sign in ["panicked", "internal error", "backtrace", "RUST_BACKTRACE"] {
            if stderr.contains(sign) {
                problems.push(format!("stderr holds {sign:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{case}: {}\n    stderr: {}",
                problems.join("; "),
                stderr.trim_end().replace('\n', "\n            ")
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs were not refused as they should be:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn a_run_folder_that_cannot_be_created_is_refused_before_training() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("ropo-bad-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    // A path under a regular file: no one, root included, can create it.
    let file = dir.join("a-file");
    std::fs::write(&file, "not a folder").expect("scratch file");
    let out = file.join("run").display().to_string();
    let args = ["train", "--quiet", "--out", &out].map(String::from);
    let outcome = run(&root, &args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let (status, stderr) = outcome.unwrap_or_else(|problem| panic!("{problem}"));
    assert!(!status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {out}: cannot create the run folder")),
        "{stderr}"
    );
}

/// The command line for one case, run from the workspace root; `dir` is the case's scratch
/// folder (a config's run folder goes there).
fn command(kind: Kind, path: &Path, dir: &Path) -> Vec<String> {
    let path = path.display().to_string();
    let args: Vec<&str> = match kind {
        Data => vec!["data", "inspect", &path],
        Config => vec!["train", "--quiet", "--config", &path, "--out"],
        Tokenizer => vec![
            "score",
            "--model",
            "crates/ropo-models/tests/fixtures/llama",
            "--tokenizer",
            &path,
        ],
        Checkpoint => vec![
            "score",
            "--model",
            &path,
            "--tokenizer",
            "../shared/assets/models/tok512.bin",
        ],
    };
    let mut args: Vec<String> = args.into_iter().map(String::from).collect();
    match kind {
        Config => args.push(dir.join("run").display().to_string()),
        Tokenizer | Checkpoint => {
            args.extend(["--prompt", "hi", "--response", "there"].map(String::from))
        }
        Data => {}
    }
    args
}

/// Runs xtask with `args` from `root`, with stderr in a file under `dir` (no pipe to fill),
/// and stops it after [`TIMEOUT`]. Backtraces are asked for, so that a panic cannot hide.
fn run(root: &Path, args: &[String], dir: &Path) -> Result<(ExitStatus, String), String> {
    let stderr_path = dir.join("stderr");
    let stderr = File::create(&stderr_path).map_err(|e| format!("stderr file: {e}"))?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(root)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start xtask: {e}"))?;
    let start = Instant::now();
    let status = loop {
        match child
            .try_wait()
            .map_err(|e| format!("waiting for xtask: {e}"))?
        {
            Some(status) => break status,
            None if start.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "still running after {} s (it took the input as valid?); args {args:?}",
                    TIMEOUT.as_secs()
                ));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let text = std::fs::read(&stderr_path).map_err(|e| format!("reading stderr: {e}"))?;
    Ok((status, String::from_utf8_lossy(&text).into_owned()))
}

/// The cases on disk, as `CASES` names them: every file under `data/` and `configs/`, and
/// every entry (a file, or a folder given whole) under `tokenizers/` and `checkpoints/`.
fn corpus_entries(corpus: &Path) -> Vec<String> {
    let mut entries = Vec::new();
    for folder in ["data", "configs", "tokenizers", "checkpoints"] {
        let Ok(read) = std::fs::read_dir(corpus.join(folder)) else {
            entries.push(format!("{folder} (missing folder)"));
            continue;
        };
        for entry in read.flatten() {
            let name: PathBuf = [folder, &entry.file_name().to_string_lossy()]
                .iter()
                .collect();
            entries.push(name.display().to_string());
        }
    }
    entries.sort();
    entries
}
