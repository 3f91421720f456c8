//! Tests of the dataset readers: every format, and every way a file can be malformed.

use std::io::Write;
use std::path::Path;

use super::*;
use crate::test_support::{assets, TempPath};
use crate::{DataError, Message, Preference, Prompt};

fn preferences(name: &str) -> PathBuf {
    assets().join("preferences").join(name)
}

fn strict(format: Option<Format>) -> ReadOptions {
    ReadOptions {
        format,
        on_invalid: OnInvalid::Error,
        degenerate: Degenerate::Reject,
        ..ReadOptions::default()
    }
}

/// Reads a dataset of one file: its pairs and the file's report.
fn read_one(path: &Path, options: &ReadOptions) -> Result<(Vec<ChatPair>, ReadReport), DataError> {
    let (pairs, mut reports) = read_pairs(path, options)?;
    assert_eq!(reports.len(), 1, "one file, one report");
    Ok((pairs, reports.remove(0)))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Reads `contents` (written to a temp file `name`) and returns the error's line, field
/// and message; panics if the file reads.
fn invalid(
    name: &str,
    contents: impl AsRef<[u8]>,
    options: ReadOptions,
) -> (u64, Option<String>, String) {
    let file = TempPath::file(name, contents);
    match read_pairs(file.path(), &options) {
        Ok((pairs, _)) => panic!("{name}: expected an error, read {} pairs", pairs.len()),
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.starts_with(&file.path().display().to_string()),
                "{message}"
            );
            match error {
                DataError::InvalidRecord { line, field, .. } => (line, field, message),
                other => panic!("{name}: expected an invalid record, got {other}"),
            }
        }
    }
}

/// Asserts that `contents` fails at `line`, in `field`, with `problem` in the message.
fn assert_invalid(
    contents: impl AsRef<[u8]>,
    options: ReadOptions,
    line: u64,
    field: Option<&str>,
    problem: &str,
) {
    let (at, at_field, message) = invalid("data.jsonl", contents, options);
    assert_eq!((at, at_field.as_deref()), (line, field), "{message}");
    assert!(message.contains(problem), "{message}");
    let expected = match field {
        Some(field) => format!(": line {line}: field {field:?}: "),
        None => format!(": line {line}: "),
    };
    assert!(message.contains(&expected), "{message}");
}

const GOOD: &str = r#"{"prompt": "p", "chosen": "good", "rejected": "bad"}"#;

#[test]
fn every_asset_file_reads_with_its_pair_count_and_format() {
    let cases = [
        ("helpful-base-test.jsonl.gz", 2354, Format::Hh),
        ("helpful-online-test.jsonl.gz", 1137, Format::Hh),
        ("helpful-rejection-sampled-test.jsonl.gz", 2749, Format::Hh),
        ("harmless-base-test.jsonl.gz", 2312, Format::Hh),
        ("orca_dpo_pairs_validation.jsonl", 284, Format::Orca),
    ];
    for (name, count, format) in cases {
        let (pairs, report) =
            read_one(&preferences(name), &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((pairs.len(), report.pairs), (count, count), "{name}");
        assert_eq!(report.format, Some(format), "{name}");
        assert!(report.skipped.is_empty(), "{name}");
        for pair in &pairs {
            assert!(
                !pair.chosen.is_empty() && !pair.rejected.is_empty(),
                "{name}"
            );
        }
    }
}

#[test]
fn hh_rows_without_a_shared_prompt_are_listed_by_line() {
    let cases: [(&str, &[u64], usize, &[u64]); 4] = [
        (
            "helpful-base-test.jsonl.gz",
            &[568, 1167],
            2,
            &[121, 741, 1215, 2064],
        ),
        ("helpful-online-test.jsonl.gz", &[], 2, &[553, 894, 1054]),
        ("helpful-rejection-sampled-test.jsonl.gz", &[1598], 32, &[]),
        (
            "harmless-base-test.jsonl.gz",
            &[1255, 1689, 1953, 2037],
            0,
            &[87, 517, 926, 1104],
        ),
    ];
    for (name, lines, identical, blank) in cases {
        let (_, report) = read_one(&preferences(name), &ReadOptions::default()).unwrap();
        assert_eq!(report.no_shared_prompt, lines, "{name}");
        assert_eq!(report.identical.len(), identical, "{name}");
        assert_eq!(report.blank_response, blank, "{name}");
    }
    // Rejected instead, they are counted with their reason, as are identical pairs and
    // responses in which the assistant says nothing.
    let options = ReadOptions {
        on_invalid: OnInvalid::Skip,
        ..strict(None)
    };
    let (pairs, report) = read_one(&preferences("harmless-base-test.jsonl.gz"), &options).unwrap();
    assert_eq!(pairs.len(), 2312 - 8);
    let lines: Vec<u64> = report.skipped.iter().map(|s| s.line).collect();
    assert_eq!(lines, [87, 517, 926, 1104, 1255, 1689, 1953, 2037]);
    assert!(report.skipped[0].problem.contains("whitespace only"));
    assert!(report.skipped[4]
        .problem
        .contains("does not start with the prompt"));
}

#[test]
fn hh_prompt_runs_through_the_last_assistant_marker_and_responses_keep_their_space() {
    let mut reader = open(
        &preferences("helpful-base-test.jsonl.gz"),
        &ReadOptions::default(),
    )
    .unwrap();
    let record = reader.next().unwrap().unwrap();
    let Prompt::Text(prompt) = &record.pair.prompt else {
        panic!("HH prompts are text");
    };
    assert_eq!(
        prompt,
        "\n\nHuman: Do you know why turkeys became the official food of thanksgiving?\n\nAssistant:"
    );
    assert!(record.pair.chosen.starts_with(" To be honest"));
    assert!(record
        .pair
        .rejected
        .starts_with(" I know that the American"));
    assert_eq!(record.line, 1);
}

#[test]
fn orca_prompt_is_the_input_conversation() {
    let (pairs, _) = read_pairs(
        &preferences("orca_dpo_pairs_validation.jsonl"),
        &ReadOptions::default(),
    )
    .unwrap();
    let Prompt::Messages(messages) = &pairs[0].prompt else {
        panic!("orca prompts are conversations");
    };
    let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user"]);
    assert!(pairs[0].chosen.starts_with("Step 1: Identify"));
    assert!(pairs[0].rejected.starts_with("Sure, I'd be happy"));
}

/// One record of each format and the pair it must read as.
fn one_of_each() -> Vec<(Format, &'static str, ChatPair)> {
    let msg = |role: &str, content: &str| Message {
        role: role.into(),
        content: content.into(),
    };
    let conversation = Prompt::Messages(vec![msg("system", "s"), msg("user", "u")]);
    let pair = |prompt: &Prompt, chosen: &str, rejected: &str| ChatPair {
        prompt: prompt.clone(),
        chosen: chosen.into(),
        rejected: rejected.into(),
    };
    vec![
        (
            Format::Generic,
            GOOD,
            pair(&Prompt::Text("p".into()), "good", "bad"),
        ),
        (
            Format::Trl,
            r#"{"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
               "chosen": [{"role": "assistant", "content": "good"}],
               "rejected": [{"role": "assistant", "content": "bad"}]}"#,
            pair(&conversation, "good", "bad"),
        ),
        (
            Format::Trl,
            r#"{"chosen": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "good"}],
               "rejected": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "bad"}]}"#,
            pair(&conversation, "good", "bad"),
        ),
        (
            Format::Hh,
            r#"{"chosen": "\n\nHuman: u\n\nAssistant: good", "rejected": "\n\nHuman: u\n\nAssistant: bad"}"#,
            pair(
                &Prompt::Text("\n\nHuman: u\n\nAssistant:".into()),
                " good",
                " bad",
            ),
        ),
        (
            Format::Summarize,
            r#"{"info": {"id": "t3", "post": "P", "title": "T", "subreddit": "r1"},
               "summaries": [{"text": " bad"}, {"text": " good"}], "choice": 1}"#,
            pair(
                &Prompt::Text("SUBREDDIT: r/r1\nTITLE: T\nPOST: P\nTL;DR:".into()),
                " good",
                " bad",
            ),
        ),
        (
            Format::UltraFeedback,
            r#"{"prompt": "u", "chosen": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "good"}],
               "rejected": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "bad"}],
               "score_chosen": 8.0, "score_rejected": 3.0}"#,
            pair(&Prompt::Messages(vec![msg("user", "u")]), "good", "bad"),
        ),
        (
            Format::Orca,
            r#"{"input": {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
               "preferred_output": [{"role": "assistant", "content": "good"}],
               "non_preferred_output": [{"role": "assistant", "content": "bad"}]}"#,
            pair(&conversation, "good", "bad"),
        ),
    ]
}

#[test]
fn each_format_is_detected_and_read() {
    for (format, json, expected) in one_of_each() {
        let line = json.replace('\n', " ");
        let file = TempPath::file("one.jsonl", format!("{line}\n"));
        let (pairs, report) = read_one(file.path(), &ReadOptions::default())
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(report.format, Some(format));
        assert_eq!(pairs, std::slice::from_ref(&expected), "{format}");
        // Named, and gzipped, it reads the same.
        let gz = TempPath::file("one.jsonl.gz", gzip(line.as_bytes()));
        let options = ReadOptions {
            format: Some(format),
            ..ReadOptions::default()
        };
        assert_eq!(read_pairs(gz.path(), &options).unwrap().0, [expected]);
    }
}

#[test]
fn swapped_labels_read_as_the_swapped_pair_in_every_format() {
    for (format, json, expected) in one_of_each() {
        let mut raw: Value = serde_json::from_str(json).unwrap();
        format.swap_labels(&mut raw);
        let file = TempPath::file("swapped.jsonl", raw.to_string());
        let (pairs, _) = read_pairs(file.path(), &ReadOptions::default()).unwrap();
        assert_eq!(pairs, [expected.swapped()], "{format}");
        if format == Format::UltraFeedback {
            assert_eq!(raw["score_chosen"], 3.0);
        }
    }
}

#[test]
fn format_names_round_trip() {
    for format in Format::ALL {
        assert_eq!(format.name().parse::<Format>(), Ok(format));
    }
    let message = "alpaca".parse::<Format>().unwrap_err();
    assert!(message.contains("generic, trl"), "{message}");
}

#[test]
fn blank_lines_are_skipped_and_crlf_is_accepted() {
    let file = TempPath::file("crlf.jsonl", format!("\r\n{GOOD}\r\n\n{GOOD}\r\n"));
    let (pairs, report) = read_one(file.path(), &ReadOptions::default()).unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(report.lines, 4);
}

#[test]
fn records_carry_their_line_numbers() {
    let file = TempPath::file("lines.jsonl", format!("{GOOD}\n\n{GOOD}\n"));
    let reader = open(file.path(), &ReadOptions::default()).unwrap();
    let lines: Vec<u64> = reader.map(|r| r.unwrap().line).collect();
    assert_eq!(lines, [1, 3]);
}

// Malformed inputs: each an error naming the file, the line and the field.

#[test]
fn invalid_json_names_the_line_and_column() {
    assert_invalid(
        format!("{GOOD}\n{{\"prompt\": \"p\", \"chosen\": \n"),
        ReadOptions::default(),
        2,
        None,
        "invalid JSON at column",
    );
}

#[test]
fn text_that_is_not_json_is_invalid() {
    assert_invalid(
        "prompt,chosen,rejected\n",
        ReadOptions::default(),
        1,
        None,
        "invalid JSON",
    );
}

#[test]
fn missing_chosen_is_named() {
    assert_invalid(
        format!("{GOOD}\n{{\"prompt\": \"p\", \"rejected\": \"r\"}}\n"),
        ReadOptions::default(),
        2,
        Some("chosen"),
        "missing",
    );
}

#[test]
fn null_chosen_is_a_mistyped_field() {
    assert_invalid(
        format!("{GOOD}\n{GOOD}\n{{\"prompt\": \"p\", \"chosen\": null, \"rejected\": \"r\"}}\n"),
        ReadOptions::default(),
        3,
        Some("chosen"),
        "expected a string, found null",
    );
}

#[test]
fn numeric_rejected_is_a_mistyped_field() {
    assert_invalid(
        format!("{GOOD}\n{{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": 3}}\n"),
        ReadOptions::default(),
        2,
        Some("rejected"),
        "expected a string, found a number",
    );
}

#[test]
fn empty_chosen_is_invalid() {
    assert_invalid(
        r#"{"prompt": "p", "chosen": "", "rejected": "r"}"#,
        ReadOptions::default(),
        1,
        Some("chosen"),
        "empty response",
    );
}

#[test]
fn chosen_identical_to_rejected_is_invalid_when_degenerate_pairs_are_rejected() {
    let same = r#"{"prompt": "p", "chosen": "same", "rejected": "same"}"#;
    assert_invalid(
        same,
        strict(None),
        1,
        Some("rejected"),
        "identical to \"chosen\"",
    );
    // Kept by default, and listed.
    let file = TempPath::file("same.jsonl", format!("{GOOD}\n{same}\n"));
    let (pairs, report) = read_one(file.path(), &ReadOptions::default()).unwrap();
    assert_eq!((pairs.len(), report.identical), (2, vec![2]));
}

#[test]
fn non_utf8_bytes_are_invalid() {
    let mut bytes = format!("{GOOD}\n").into_bytes();
    bytes.extend_from_slice(
        b"{\"prompt\": \"p\xff\xfe\", \"chosen\": \"c\", \"rejected\": \"r\"}\n",
    );
    assert_invalid(
        bytes,
        ReadOptions::default(),
        2,
        None,
        "not valid UTF-8 (byte 14",
    );
}

#[test]
fn truncated_gzip_is_an_error_at_the_line_where_it_stops() {
    let text: String = (0..2000).map(|_| format!("{GOOD}\n")).collect();
    let gz = gzip(text.as_bytes());
    let cut = &gz[..gz.len() / 2];
    let (line, field, message) = invalid("cut.jsonl.gz", cut, ReadOptions::default());
    assert!(line > 1 && field.is_none(), "{message}");
    assert!(message.contains("cannot read"), "{message}");
    // Skipping cannot step over a broken stream.
    let options = ReadOptions {
        on_invalid: OnInvalid::Skip,
        ..ReadOptions::default()
    };
    invalid("cut.jsonl.gz", cut, options);
}

#[test]
fn gzip_magic_with_garbage_after_it_is_an_error() {
    let (line, _, message) = invalid(
        "fake.jsonl.gz",
        b"\x1f\x8b\x08\x00garbage garbage",
        ReadOptions::default(),
    );
    assert_eq!(line, 1, "{message}");
}

#[test]
fn empty_file_is_an_error() {
    assert_invalid(
        "",
        ReadOptions::default(),
        1,
        None,
        "no records: the file is empty",
    );
}

#[test]
fn file_of_blank_lines_is_an_error() {
    assert_invalid("\n  \n\n", ReadOptions::default(), 3, None, "no records");
}

#[test]
fn empty_gzip_is_an_error() {
    let (line, _, message) = invalid("empty.jsonl.gz", gzip(b""), ReadOptions::default());
    assert_eq!(line, 1);
    assert!(message.contains("no records"), "{message}");
}

#[test]
fn record_that_is_not_an_object_is_invalid() {
    assert_invalid(
        format!("{GOOD}\n[1, 2]\n"),
        ReadOptions::default(),
        2,
        None,
        "expected a JSON object, found an array",
    );
}

#[test]
fn record_of_unknown_shape_cannot_be_detected() {
    assert_invalid(
        r#"{"question": "q", "answer": "a"}"#,
        ReadOptions::default(),
        1,
        None,
        "cannot tell the dataset format from this record (fields: answer, question)",
    );
}

#[test]
fn hh_transcript_without_an_assistant_turn_is_invalid() {
    assert_invalid(
        r#"{"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: hey"}"#,
        ReadOptions::default(),
        1,
        Some("chosen"),
        "no \"\\n\\nAssistant:\" turn",
    );
}

#[test]
fn hh_transcripts_sharing_no_assistant_turn_are_invalid() {
    assert_invalid(
        r#"{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}"#,
        ReadOptions::default(),
        1,
        Some("rejected"),
        "shares no prompt",
    );
}

#[test]
fn hh_transcript_ending_at_the_assistant_marker_has_an_empty_response() {
    assert_invalid(
        r#"{"chosen": "\n\nHuman: a\n\nAssistant:", "rejected": "\n\nHuman: a\n\nAssistant: b"}"#,
        ReadOptions::default(),
        1,
        Some("chosen"),
        "empty response",
    );
}

#[test]
fn hh_pair_without_a_shared_prompt_is_invalid_when_rejected() {
    let row = r#"{"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d", "rejected": "\n\nHuman: a\n\nAssistant: e"}"#;
    assert_invalid(
        row,
        strict(None),
        1,
        Some("rejected"),
        "does not start with the prompt",
    );
    let file = TempPath::file("hh.jsonl", row);
    let (pairs, report) = read_one(file.path(), &ReadOptions::default()).unwrap();
    assert_eq!(report.no_shared_prompt, [1]);
    assert_eq!(
        pairs[0].prompt,
        Prompt::Text("\n\nHuman: a\n\nAssistant:".into())
    );
    assert_eq!(pairs[0].chosen, " b\n\nHuman: c\n\nAssistant: d");
}

#[test]
fn message_without_content_is_named_by_its_path() {
    assert_invalid(
        r#"{"prompt": [{"role": "user", "content": "u"}], "chosen": [{"role": "assistant"}], "rejected": [{"role": "assistant", "content": "r"}]}"#,
        ReadOptions::default(),
        1,
        Some("chosen[0].content"),
        "missing",
    );
}

#[test]
fn message_that_is_not_an_object_is_invalid() {
    assert_invalid(
        r#"{"prompt": [{"role": "user", "content": "u"}, "hi"], "chosen": [{"role": "assistant", "content": "c"}], "rejected": [{"role": "assistant", "content": "r"}]}"#,
        ReadOptions::default(),
        1,
        Some("prompt[1]"),
        "expected a message {\"role\", \"content\"}, found a string",
    );
}

#[test]
fn response_from_the_user_is_invalid() {
    assert_invalid(
        r#"{"prompt": [{"role": "user", "content": "u"}], "chosen": [{"role": "user", "content": "c"}], "rejected": [{"role": "assistant", "content": "r"}]}"#,
        ReadOptions::default(),
        1,
        Some("chosen[0].role"),
        "expected \"assistant\", found \"user\"",
    );
}

#[test]
fn response_of_two_messages_is_invalid() {
    assert_invalid(
        r#"{"prompt": [{"role": "user", "content": "u"}], "chosen": [{"role": "assistant", "content": "c"}], "rejected": [{"role": "assistant", "content": "r"}, {"role": "assistant", "content": "s"}]}"#,
        ReadOptions::default(),
        1,
        Some("rejected"),
        "expected one assistant message after the prompt, found 2",
    );
}

#[test]
fn implicit_prompt_conversations_sharing_nothing_are_invalid() {
    assert_invalid(
        r#"{"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}], "rejected": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "r"}]}"#,
        ReadOptions::default(),
        1,
        Some("rejected"),
        "shares no prompt",
    );
}

#[test]
fn ultrafeedback_conversations_with_different_contexts_are_invalid() {
    assert_invalid(
        r#"{"prompt": "u", "chosen": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "c"}], "rejected": [{"role": "user", "content": "v"}, {"role": "assistant", "content": "r"}]}"#,
        ReadOptions::default(),
        1,
        Some("rejected"),
        "differs from that of \"chosen\"",
    );
}

#[test]
fn summarize_choice_out_of_range_is_invalid() {
    assert_invalid(
        r#"{"info": {"post": "P"}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 2}"#,
        ReadOptions::default(),
        1,
        Some("choice"),
        "expected 0 or 1, found 2",
    );
}

#[test]
fn summarize_with_one_summary_is_invalid() {
    assert_invalid(
        r#"{"info": {"post": "P"}, "summaries": [{"text": "a"}], "choice": 0}"#,
        ReadOptions::default(),
        1,
        Some("summaries"),
        "expected 2 summaries, found 1",
    );
}

#[test]
fn summarize_without_a_post_is_invalid() {
    assert_invalid(
        r#"{"info": {"title": "T"}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 0}"#,
        ReadOptions::default(),
        1,
        Some("info.post"),
        "missing",
    );
}

#[test]
fn summarize_title_of_the_wrong_type_is_invalid() {
    assert_invalid(
        r#"{"info": {"post": "P", "title": 7}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 0}"#,
        ReadOptions::default(),
        1,
        Some("info.title"),
        "expected a string or null, found a number",
    );
}

#[test]
fn orca_messages_that_are_not_a_list_are_invalid() {
    assert_invalid(
        r#"{"input": {"messages": "hi"}, "preferred_output": [], "non_preferred_output": []}"#,
        ReadOptions::default(),
        1,
        Some("input.messages"),
        "expected a list of messages, found a string",
    );
}

#[test]
fn orca_empty_output_is_invalid() {
    assert_invalid(
        r#"{"input": {"messages": [{"role": "user", "content": "u"}]}, "preferred_output": [], "non_preferred_output": [{"role": "assistant", "content": "r"}]}"#,
        ReadOptions::default(),
        1,
        Some("preferred_output"),
        "found 0",
    );
}

#[test]
fn a_named_format_that_does_not_fit_names_the_field() {
    assert_invalid(
        GOOD,
        ReadOptions {
            format: Some(Format::Orca),
            ..ReadOptions::default()
        },
        1,
        Some("input"),
        "missing",
    );
}

#[test]
fn absent_file_is_an_error_naming_it() {
    let path = TempPath::new("absent.jsonl");
    let message = match read_pairs(path.path(), &ReadOptions::default()) {
        Ok(_) => panic!("absent file read"),
        Err(e) => e.to_string(),
    };
    assert!(message.contains("absent.jsonl: cannot read"), "{message}");
}

#[test]
fn skip_invalid_counts_every_bad_record_with_its_reason_and_reads_the_rest() {
    let mut bytes = Vec::new();
    for line in [
        GOOD,
        "{not json",
        r#"{"prompt": "p", "chosen": null, "rejected": "r"}"#,
        GOOD,
        r#"{"prompt": "p", "rejected": "r"}"#,
        r#"{"prompt": "p", "chosen": "", "rejected": "r"}"#,
        r#"{"prompt": "p", "chosen": "same", "rejected": "same"}"#,
        "[]",
        GOOD,
    ] {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(b"\xff\n");
    let file = TempPath::file("mixed.jsonl", &bytes);
    let options = ReadOptions {
        on_invalid: OnInvalid::Skip,
        ..strict(None)
    };
    let (pairs, report) = read_one(file.path(), &options).unwrap();
    assert_eq!(pairs.len(), 3);
    assert_eq!(report.pairs, 3);
    let skipped: Vec<String> = report.skipped.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        skipped,
        [
            "line 2: invalid JSON at column 2: key must be a string",
            "line 3: field \"chosen\": expected a string, found null",
            "line 5: field \"chosen\": missing",
            "line 6: field \"chosen\": empty response",
            "line 7: field \"rejected\": identical to \"chosen\"",
            "line 8: expected a JSON object, found an array",
            "line 10: not valid UTF-8 (byte 1 of the line)",
        ]
    );
}

#[test]
fn skip_invalid_detects_the_format_from_the_first_valid_record() {
    let file = TempPath::file("late.jsonl", format!("[]\n{{\"x\": 1}}\n{GOOD}\n"));
    let options = ReadOptions {
        on_invalid: OnInvalid::Skip,
        ..ReadOptions::default()
    };
    let (pairs, report) = read_one(file.path(), &options).unwrap();
    assert_eq!((pairs.len(), report.skipped.len()), (1, 2));
    assert_eq!(report.format, Some(Format::Generic));
}

#[test]
fn reader_yields_nothing_after_an_error() {
    let file = TempPath::file("stop.jsonl", format!("{GOOD}\nbad\n{GOOD}\n"));
    let mut reader = open(file.path(), &ReadOptions::default()).unwrap();
    assert!(reader.next().unwrap().is_ok());
    assert!(reader.next().unwrap().is_err());
    assert!(reader.next().is_none());
}
