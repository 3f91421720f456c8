//! Parquet files written by pyarrow (`tests/fixtures/parquet/make_parquet.py`) read as their JSONL
//! sources do, a Hub dataset's shards read by split, and broken files are errors, not panics.

use std::path::{Path, PathBuf};

use super::*;
use crate::formats::{open_split, read_pairs, Degenerate, Format, OnInvalid, ReadOptions};
use crate::test_support::TempPath;

/// The fixture folder, or a file in it.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parquet")
        .join(name)
}

/// The fixtures that must not read, and have no JSONL source.
const BROKEN: [&str; 2] = ["missing_rejected.parquet", "chosen_number.parquet"];

/// The message of reading `path` with `options`, which must fail.
fn error(path: &Path, options: &ReadOptions) -> String {
    match read_pairs(path, options) {
        Ok((pairs, _)) => panic!("{}: read {} pairs", path.display(), pairs.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_parquet_fixture_reads_as_its_jsonl_source_in_every_format() {
    let mut formats = Vec::new();
    let mut compared = 0;
    for entry in std::fs::read_dir(fixture("")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".parquet") || BROKEN.contains(&name.as_str()) {
            continue;
        }
        // `hh_real.zstd.parquet` comes from `hh_real.jsonl`.
        let source = fixture(&format!("{}.jsonl", name.split('.').next().unwrap()));
        let strict = ReadOptions {
            on_invalid: OnInvalid::Skip,
            degenerate: Degenerate::Reject,
            ..ReadOptions::default()
        };
        for options in [ReadOptions::default(), strict] {
            let (pairs, reports) = read_pairs(&path, &options).unwrap_or_else(|e| panic!("{e}"));
            let (expected, expected_reports) = read_pairs(&source, &options).unwrap();
            assert_eq!(pairs, expected, "{name}");
            let (report, expected) = (&reports[0], &expected_reports[0]);
            assert_eq!(report.kind, FileKind::Parquet, "{name}");
            assert_eq!(
                (report.format, report.lines, report.pairs, &report.skipped),
                (
                    expected.format,
                    expected.lines,
                    expected.pairs,
                    &expected.skipped
                ),
                "{name}"
            );
            assert_eq!(
                (
                    &report.identical,
                    &report.blank_response,
                    &report.no_shared_prompt
                ),
                (
                    &expected.identical,
                    &expected.blank_response,
                    &expected.no_shared_prompt
                ),
                "{name}"
            );
            formats.extend(report.format);
        }
        compared += 1;
    }
    assert!(compared >= 13, "{compared} parquet files compared");
    formats.sort_by_key(|f| f.name());
    formats.dedup();
    let mut all = Format::ALL.to_vec();
    all.sort_by_key(|f| f.name());
    assert_eq!(formats, all);
}

#[test]
fn the_fixtures_hold_several_row_groups_and_codecs() {
    let groups = |name: &str| {
        let file = std::fs::File::open(fixture(name)).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let metadata = reader.metadata();
        let codec = metadata.row_group(0).column(0).compression().to_string();
        (metadata.num_row_groups(), codec)
    };
    assert_eq!(groups("hh_real.row_groups.parquet").0, 3);
    assert!(groups("hh_real.zstd.parquet").1.starts_with("ZSTD"));
    assert!(groups("hh_real.parquet").1.starts_with("SNAPPY"));
    assert!(groups("orca_real.gzip.parquet").1.starts_with("GZIP"));
    assert!(groups("orca_real.lz4.parquet").1.starts_with("LZ4"));
}

#[test]
fn a_hub_split_reads_its_shards_in_order() {
    let dir = fixture("split");
    let (all, _) = read_pairs(&fixture("split.jsonl"), &ReadOptions::default()).unwrap();
    let read = |split: Option<&str>| {
        let mut reader = open_split(&dir, split, &ReadOptions::default()).unwrap();
        let records: Vec<_> = reader.by_ref().map(Result::unwrap).collect();
        let places: Vec<(usize, u64)> = records.iter().map(|r| (r.file, r.line)).collect();
        let pairs: Vec<_> = records.into_iter().map(|r| r.pair).collect();
        let files: Vec<String> = reader
            .into_reports()
            .iter()
            .map(|r| r.path.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        (pairs, places, files)
    };
    let (train, places, files) = read(Some("train"));
    assert_eq!(train, all[..6]);
    assert_eq!(places, [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]);
    assert_eq!(
        files,
        [
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet"
        ]
    );
    assert_eq!(read(Some("test")).0, all[6..]);
    // The whole folder, in path order: test sorts before train.
    let (every, _, files) = read(None);
    assert_eq!(every, [&all[6..], &all[..6]].concat());
    assert_eq!(files.len(), 3);
    let message = open_split(&dir, Some("dev"), &ReadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("(splits found: test, train)"), "{message}");
}

/// The error of reading fixture `name` as generic records, after the file's path.
fn generic_error(name: &str) -> String {
    let path = fixture(name);
    let generic = ReadOptions {
        format: Some(Format::Generic),
        ..ReadOptions::default()
    };
    let message = error(&path, &generic);
    let after = message.strip_prefix(&format!("{}: ", path.display()));
    after.unwrap_or_else(|| panic!("{message}")).to_owned()
}

#[test]
fn a_missing_column_is_named_by_row_and_field() {
    let message = error(
        &fixture("missing_rejected.parquet"),
        &ReadOptions::default(),
    );
    assert!(
        message.ends_with("row 1: cannot tell the dataset format from this record (fields: chosen, prompt); name it"),
        "{message}"
    );
    assert_eq!(
        generic_error("missing_rejected.parquet"),
        "row 1: field \"rejected\": missing"
    );
}

#[test]
fn a_column_of_the_wrong_type_is_named_by_row_and_field() {
    assert_eq!(
        generic_error("chosen_number.parquet"),
        "row 1: field \"chosen\": expected a string, found a number"
    );
}

#[test]
fn a_truncated_parquet_file_is_an_error_naming_it() {
    let bytes = std::fs::read(fixture("hh_real.row_groups.parquet")).unwrap();
    for len in [4, 100, bytes.len() / 2, bytes.len() - 9, bytes.len() - 1] {
        let file = TempPath::file("cut.parquet", &bytes[..len]);
        let message = error(file.path(), &ReadOptions::default());
        assert!(
            message.starts_with(&format!(
                "{}: parquet footer: cannot read",
                file.path().display()
            )),
            "{len}: {message}"
        );
    }
}

#[test]
fn no_truncation_or_corrupted_byte_of_a_parquet_file_panics() {
    let bytes = std::fs::read(fixture("trl.parquet")).unwrap();
    let file = TempPath::new("broken.parquet");
    let read = |bytes: &[u8]| {
        // A new file each time: rewriting one in place makes ext4 flush it to disk on close.
        let _ = std::fs::remove_file(file.path());
        std::fs::write(file.path(), bytes).unwrap();
        let _ = read_pairs(file.path(), &ReadOptions::default());
    };
    for len in 0..bytes.len() {
        read(&bytes[..len]);
    }
    for at in 0..bytes.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut broken = bytes.clone();
            broken[at] ^= flip;
            read(&broken);
        }
    }
}

#[test]
fn schemas_the_record_reader_cannot_assemble_are_refused() {
    let cases = [
        (
            "message m { required fixed_len_byte_array(12) span (INTERVAL); }",
            "span",
            "cannot be read",
        ),
        (
            "message m { optional group list (LIST) { required binary a (UTF8); required binary b (UTF8); } }",
            "list",
            "a list whose group does not hold one repeated field",
        ),
        (
            "message m { optional group map (MAP) { required binary key (UTF8); } }",
            "map",
            "a map whose group does not hold one repeated key-value group",
        ),
        (
            "message m { required binary prompt (UTF8); optional group info { optional group empty { } } }",
            "info.empty",
            "a group without fields",
        ),
    ];
    for (schema, at, problem) in cases {
        let schema = parquet::schema::parser::parse_message_type(schema).unwrap();
        let error = schema
            .get_fields()
            .iter()
            .try_for_each(|field| check_readable(field, field.name()))
            .unwrap_err();
        assert_eq!(error.0, at, "{schema:?}");
        assert!(error.1.contains(problem), "{}", error.1);
    }
}
