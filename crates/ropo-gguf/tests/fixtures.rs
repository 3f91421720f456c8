//! The fixtures of `fixtures/make_fixtures.py` read back: every de-quantiser against the `gguf`
//! Python package's numpy one, every metadata value type against `gguf.GGUFReader`.

use std::path::{Path, PathBuf};

use ropo_gguf::{Array, GgmlType, GgufFile, Value};
use serde_json::Value as Json;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn expected(name: &str) -> Json {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

#[test]
fn every_type_dequantises_exactly_as_ggufs_numpy_dequantisers() {
    let file = GgufFile::open(&fixture("quants.gguf")).unwrap();
    let expected = expected("quants.json");
    let tensors = expected["tensors"].as_object().unwrap();
    assert_eq!(tensors.len(), 9);
    for (name, want) in tensors {
        let info = file.tensor(name).unwrap();
        assert_eq!(info.ggml_type().name(), want["type"], "{name}");
        assert!(info.ggml_type().can_dequantize());
        let shape: Vec<usize> = serde_json::from_value(want["shape"].clone()).unwrap();
        assert_eq!(info.shape(), shape, "{name}");
        assert_eq!(
            file.data_offset() + info.offset(),
            want["offset"].as_u64().unwrap(),
            "{name}"
        );
        let got = file.read_f32(name).unwrap();
        let want: Vec<f32> = want["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{name}[{i}]: ropo {g}, numpy {w}");
        }
    }
}

#[test]
fn general_alignment_places_the_data_section_and_every_tensor() {
    let file = GgufFile::open(&fixture("quants.gguf")).unwrap();
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.version(), 3);
    assert_eq!(file.data_offset() % 64, 0);
    assert!(file.tensors().iter().all(|t| t.offset() % 64 == 0));
}

#[test]
fn every_metadata_value_type_reads_as_gguf_reader_reads_it() {
    let file = GgufFile::open(&fixture("quants.gguf")).unwrap();
    let get = |key: &str| file.get(key).unwrap_or_else(|| panic!("{key}")).clone();
    assert_eq!(get("test.u8"), Value::U8(200));
    assert_eq!(get("test.i8"), Value::I8(-100));
    assert_eq!(get("test.u16"), Value::U16(60000));
    assert_eq!(get("test.i16"), Value::I16(-30000));
    assert_eq!(get("test.u32"), Value::U32(4_000_000_000));
    assert_eq!(get("test.i32"), Value::I32(-2_000_000_000));
    assert_eq!(get("test.f32"), Value::F32(0.1));
    assert_eq!(get("test.bool"), Value::Bool(true));
    assert_eq!(get("test.string"), Value::String("café 🙂".into()));
    assert_eq!(get("test.u64"), Value::U64((1 << 63) + 5));
    assert_eq!(get("test.i64"), Value::I64(-(1 << 62)));
    assert_eq!(get("test.f64"), Value::F64(-1.5e300));
    assert_eq!(
        get("test.strings"),
        Value::Array(Array::String(vec!["a".into(), "".into(), "▁b".into()]))
    );
    assert_eq!(get("test.i32s"), Value::Array(Array::I32(vec![1, -2, 3])));
    assert_eq!(get("test.f32s"), Value::Array(Array::F32(vec![0.5, -0.25])));
    assert_eq!(
        get("test.bools"),
        Value::Array(Array::Bool(vec![true, false]))
    );
    // Every key the Python reader saw, and no other `test.` key.
    let python = expected("quants.json");
    let keys: Vec<&String> = file
        .metadata()
        .keys()
        .filter(|k| k.starts_with("test."))
        .collect();
    assert_eq!(keys.len(), python["metadata"].as_object().unwrap().len());
    assert_eq!(file.string("general.architecture").unwrap(), Some("quants"));
}

#[test]
fn typed_getters_name_the_key_and_what_they_found() {
    let file = GgufFile::open(&fixture("quants.gguf")).unwrap();
    assert_eq!(file.uint("test.u64").unwrap(), Some((1 << 63) + 5));
    assert_eq!(file.uint("test.u8").unwrap(), Some(200));
    assert_eq!(file.float("test.f32").unwrap(), Some(0.1f32 as f64));
    assert_eq!(file.uint("absent.key").unwrap(), None);
    let error = file.uint("test.i8").unwrap_err().to_string();
    assert!(
        error.contains(
            "quants.gguf: metadata 'test.i8': expected a non-negative integer, found a int8"
        ),
        "{error}"
    );
    let error = file.strings("test.i32s").unwrap_err().to_string();
    assert!(error.contains("found an array of 3 int32"), "{error}");
}

#[test]
fn the_tiny_llama_lists_its_tensors_in_nine_types() {
    let file = GgufFile::open(&fixture("tiny-llama.gguf")).unwrap();
    assert_eq!(file.string("general.architecture").unwrap(), Some("llama"));
    let types: std::collections::HashSet<GgmlType> =
        file.tensors().iter().map(|t| t.ggml_type()).collect();
    assert_eq!(types.len(), 9, "{types:?}");
    let q = file.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!((q.shape(), q.ggml_dims()), (vec![64, 64], &[64u64, 64][..]));
    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.shape(), vec![513, 64]);
    assert_eq!(file.read_f32("token_embd.weight").unwrap().len(), 513 * 64);
}
