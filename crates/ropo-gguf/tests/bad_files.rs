//! Malformed GGUF files, each broken in one way: every one is refused with a one-line error
//! naming the file and the field, without allocating from the broken count (a test that
//! allocated 2^60 bytes would abort instead of passing).

use std::path::PathBuf;

use ropo_gguf::{GgufError, GgufFile};

/// A GGUF file written field by field, so a test can break exactly one field.
struct Gguf {
    version: u32,
    tensor_count: Option<u64>,
    kv_count: Option<u64>,
    kvs: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
    alignment: usize,
}

impl Gguf {
    fn new() -> Self {
        Self {
            version: 3,
            tensor_count: None,
            kv_count: None,
            kvs: Vec::new(),
            n_kv: 0,
            infos: Vec::new(),
            n_tensors: 0,
            data: Vec::new(),
            alignment: 32,
        }
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    /// A key with its raw value bytes (type id first).
    fn kv(mut self, key: &str, type_and_value: &[u8]) -> Self {
        Self::string(&mut self.kvs, key);
        self.kvs.extend(type_and_value);
        self.n_kv += 1;
        self
    }

    fn kv_u32(self, key: &str, value: u32) -> Self {
        let mut raw = 4u32.to_le_bytes().to_vec();
        raw.extend(value.to_le_bytes());
        self.kv(key, &raw)
    }

    fn kv_string(self, key: &str, value: &str) -> Self {
        let mut raw = 8u32.to_le_bytes().to_vec();
        Self::string(&mut raw, value);
        self.kv(key, &raw)
    }

    /// A tensor info with the given raw fields, and `bytes` appended to the data section at
    /// `offset` (padding added as needed).
    fn tensor(
        mut self,
        name: &str,
        dims: &[u64],
        ggml_type: u32,
        offset: u64,
        bytes: &[u8],
    ) -> Self {
        Self::string(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ggml_type.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.n_tensors += 1;
        if bytes.is_empty() {
            return self;
        }
        let end = offset as usize + bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset as usize..end].copy_from_slice(bytes);
        self
    }

    /// A 2 × 32 f32 tensor at `offset`.
    fn f32_tensor(self, name: &str, offset: u64) -> Self {
        let bytes: Vec<u8> = (0..64).flat_map(|i| (i as f32).to_le_bytes()).collect();
        self.tensor(name, &[32, 2], 0, offset, &bytes)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.tensor_count.unwrap_or(self.n_tensors).to_le_bytes());
        out.extend(self.kv_count.unwrap_or(self.n_kv).to_le_bytes());
        out.extend(&self.kvs);
        out.extend(&self.infos);
        out.resize(out.len().next_multiple_of(self.alignment), 0);
        out.extend(&self.data);
        out
    }
}

/// Writes `bytes` to a fresh file named `name` and opens it.
fn open(name: &str, bytes: &[u8]) -> (PathBuf, Result<GgufFile, GgufError>) {
    let dir = std::env::temp_dir().join(format!("ropo-gguf-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let result = GgufFile::open(&path);
    (path, result)
}

/// Opens `bytes` as `name`, expects an error, checks it is one line naming the file and
/// containing each of `parts`, and returns it.
fn refused(name: &str, bytes: &[u8], parts: &[&str]) -> String {
    let (path, result) = open(name, bytes);
    let message = result
        .expect_err("a broken file must be refused")
        .to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        message.starts_with(&format!("{}: ", path.display())),
        "names the file: {message}"
    );
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} should contain {part:?}"
        );
    }
    message
}

fn good() -> Gguf {
    Gguf::new()
        .kv_string("general.architecture", "llama")
        .f32_tensor("a.weight", 0)
        .f32_tensor("b.weight", 256)
}

#[test]
fn the_unbroken_file_opens_and_reads() {
    let (_, file) = open("good.gguf", &good().bytes());
    let file = file.unwrap();
    assert_eq!(file.tensors().len(), 2);
    let values = file.read_f32("b.weight").unwrap();
    assert_eq!(values, (0..64).map(|i| i as f32).collect::<Vec<_>>());
}

#[test]
fn a_file_truncated_anywhere_is_refused_naming_the_field() {
    let bytes = good().bytes();
    for (cut, field) in [
        (0, "magic"),
        (2, "magic"),
        (6, "version"),
        (12, "tensor_count"),
        (20, "metadata_kv_count"),
        // Too short for the two tensor infos the header promises.
        (30, "tensor_count"),
        (100, "tensor 'a.weight'"),
        (150, "tensor 'b.weight'"),
        (bytes.len() - 1, "tensor 'b.weight'"),
        (bytes.len() - 256, "tensor 'b.weight'"),
    ] {
        let message = refused("truncated.gguf", &bytes[..cut], &[field]);
        assert!(
            message.contains("truncated")
                || message.contains("cannot fit")
                || message.contains("past the end"),
            "cut at {cut}: {message}"
        );
    }
    // Without tensors, the key/values themselves.
    let bytes = Gguf::new()
        .kv_string("general.architecture", "llama")
        .bytes();
    refused(
        "truncated-key.gguf",
        &bytes[..40],
        &["metadata key #0", "truncated"],
    );
    refused(
        "truncated-value.gguf",
        &bytes[..60],
        &["metadata 'general.architecture'", "truncated"],
    );
}

#[test]
fn an_unknown_tensor_type_is_refused_naming_the_tensor_and_the_type() {
    let bytes = Gguf::new()
        .tensor("x.weight", &[32], 99, 0, &[0; 128])
        .bytes();
    refused(
        "unknown-type.gguf",
        &bytes,
        &["tensor 'x.weight'", "unknown ggml type 99"],
    );
}

#[test]
fn an_unknown_value_type_is_refused_naming_the_key() {
    let bytes = Gguf::new().kv("k", &13u32.to_le_bytes()).bytes();
    refused(
        "unknown-value.gguf",
        &bytes,
        &["metadata 'k'", "unknown value type 13"],
    );
}

#[test]
fn huge_counts_are_refused_before_anything_is_allocated() {
    let mut huge_tensors = good();
    huge_tensors.tensor_count = Some(u64::MAX / 2);
    refused(
        "huge-tensor-count.gguf",
        &huge_tensors.bytes(),
        &["tensor_count", "cannot fit"],
    );

    let mut huge_kvs = good();
    huge_kvs.kv_count = Some(1 << 60);
    refused(
        "huge-kv-count.gguf",
        &huge_kvs.bytes(),
        &["metadata_kv_count", "cannot fit"],
    );

    // An array of 2^60 u64 (2^63 bytes), and one whose byte count overflows u64.
    for count in [1u64 << 60, u64::MAX] {
        let mut raw = 9u32.to_le_bytes().to_vec();
        raw.extend(10u32.to_le_bytes());
        raw.extend(count.to_le_bytes());
        let bytes = Gguf::new().kv("tokenizer.ggml.scores", &raw).bytes();
        refused(
            "huge-array.gguf",
            &bytes,
            &["metadata 'tokenizer.ggml.scores'", "cannot fit"],
        );
    }

    // A string array whose count fits no 8-byte length prefix each.
    let mut raw = 9u32.to_le_bytes().to_vec();
    raw.extend(8u32.to_le_bytes());
    raw.extend((1u64 << 40).to_le_bytes());
    let bytes = Gguf::new().kv("tokenizer.ggml.tokens", &raw).bytes();
    refused(
        "huge-string-array.gguf",
        &bytes,
        &["string elements cannot fit"],
    );
}

#[test]
fn huge_string_lengths_are_refused_naming_the_field() {
    let mut raw = 8u32.to_le_bytes().to_vec();
    raw.extend((1u64 << 62).to_le_bytes());
    let bytes = Gguf::new().kv("general.name", &raw).bytes();
    refused(
        "huge-string.gguf",
        &bytes,
        &[
            "metadata 'general.name'",
            "string length 4611686018427387904",
        ],
    );

    // In a tensor name.
    let mut bytes = Gguf::new().f32_tensor("a", 0).bytes();
    bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    refused(
        "huge-name.gguf",
        &bytes,
        &["tensor #0 name", "string length"],
    );

    // An element of a string array.
    let mut raw = 9u32.to_le_bytes().to_vec();
    raw.extend(8u32.to_le_bytes());
    raw.extend(2u64.to_le_bytes());
    raw.extend(1u64.to_le_bytes());
    raw.push(b'a');
    raw.extend(u64::MAX.to_le_bytes());
    let bytes = Gguf::new().kv("tokenizer.ggml.tokens", &raw).bytes();
    refused(
        "huge-element.gguf",
        &bytes,
        &["metadata 'tokenizer.ggml.tokens'[1]", "string length"],
    );
}

#[test]
fn dimensions_that_overflow_or_exceed_the_file_are_refused() {
    let bytes = Gguf::new()
        .tensor("x", &[1 << 32, 1 << 32, 1 << 32], 0, 0, &[])
        .bytes();
    refused("overflow-dims.gguf", &bytes, &["tensor 'x'", "overflow"]);
    let bytes = Gguf::new().tensor("x", &[u64::MAX], 0, 0, &[]).bytes();
    refused("negative-dim.gguf", &bytes, &["tensor 'x'", "overflow"]);
    let bytes = Gguf::new().tensor("x", &[1 << 40], 0, 0, &[0; 64]).bytes();
    refused(
        "dims-past-eof.gguf",
        &bytes,
        &["tensor 'x'", "reach past the end"],
    );
    let bytes = Gguf::new()
        .tensor("x", &[1, 1, 1, 1, 1], 0, 0, &[0; 4])
        .bytes();
    refused("five-dims.gguf", &bytes, &["tensor 'x'", "5 dimensions"]);
    // A Q8_0 row of 40 values is not whole 32-value blocks.
    let bytes = Gguf::new().tensor("x", &[40], 8, 0, &[0; 64]).bytes();
    refused(
        "partial-block.gguf",
        &bytes,
        &["tensor 'x'", "not whole Q8_0 blocks"],
    );
}

#[test]
fn misaligned_overlapping_and_past_the_end_tensors_are_refused() {
    let bytes = Gguf::new().f32_tensor("x", 4).bytes();
    refused(
        "misaligned.gguf",
        &bytes,
        &["tensor 'x'", "not a multiple of the alignment 32"],
    );
    let bytes = Gguf::new().f32_tensor("a", 0).f32_tensor("b", 128).bytes();
    refused(
        "overlap.gguf",
        &bytes,
        &["tensor 'b'", "overlap those of 'a'"],
    );
    let mut bytes = good().bytes();
    bytes.truncate(bytes.len() - 4);
    refused(
        "past-eof.gguf",
        &bytes,
        &["tensor 'b.weight'", "reach past the end"],
    );
    // Offsets far past the end, and one whose end overflows u64.
    for offset in [1u64 << 62, u64::MAX - 31] {
        let bytes = Gguf::new().tensor("x", &[32, 2], 0, offset, &[]).bytes();
        refused(
            "far-offset.gguf",
            &bytes,
            &["tensor 'x'", "reach past the end"],
        );
    }
}

#[test]
fn a_bad_alignment_is_refused() {
    for value in [0, 48] {
        let bytes = Gguf::new().kv_u32("general.alignment", value).bytes();
        refused(
            "alignment.gguf",
            &bytes,
            &["metadata 'general.alignment'", "power of two"],
        );
    }
    let bytes = Gguf::new().kv_string("general.alignment", "32").bytes();
    refused("alignment-string.gguf", &bytes, &["general.alignment"]);
}

#[test]
fn not_gguf_old_versions_and_big_endian_files_are_refused() {
    refused(
        "not.gguf",
        b"PK\x03\x04 a zip file",
        &["magic", "not a GGUF file"],
    );
    let mut v1 = good();
    v1.version = 1;
    refused("v1.gguf", &v1.bytes(), &["version", "version 1"]);
    let mut big = good();
    big.version = 3u32.swap_bytes();
    refused("big-endian.gguf", &big.bytes(), &["version", "big-endian"]);
    let mut v9 = good();
    v9.version = 9;
    refused("v9.gguf", &v9.bytes(), &["version", "9 is not 2 or 3"]);
}

#[test]
fn duplicate_keys_and_names_nested_arrays_and_bad_bools_are_refused() {
    let bytes = Gguf::new().kv_u32("a", 1).kv_u32("a", 2).bytes();
    refused("dup-key.gguf", &bytes, &["metadata 'a'", "appears twice"]);
    let bytes = Gguf::new().f32_tensor("t", 0).f32_tensor("t", 256).bytes();
    refused("dup-tensor.gguf", &bytes, &["tensor 't'", "appears twice"]);
    let mut raw = 9u32.to_le_bytes().to_vec();
    raw.extend(9u32.to_le_bytes());
    raw.extend(0u64.to_le_bytes());
    let bytes = Gguf::new().kv("nested", &raw).bytes();
    refused(
        "nested.gguf",
        &bytes,
        &["metadata 'nested'", "arrays of arrays"],
    );
    let mut raw = 7u32.to_le_bytes().to_vec();
    raw.push(2);
    let bytes = Gguf::new().kv("flag", &raw).bytes();
    refused("bool.gguf", &bytes, &["metadata 'flag'", "bool byte 2"]);
}

#[test]
fn an_empty_array_and_a_file_without_tensors_are_fine() {
    let mut raw = 9u32.to_le_bytes().to_vec();
    raw.extend(5u32.to_le_bytes());
    raw.extend(0u64.to_le_bytes());
    let (_, file) = open("empty-array.gguf", &Gguf::new().kv("e", &raw).bytes());
    let file = file.unwrap();
    assert_eq!(file.array("e").unwrap().unwrap().len(), 0);
    assert!(file.tensors().is_empty());
}

#[test]
fn an_unsupported_type_parses_but_is_refused_when_read() {
    // Q5_0: 32 values in 22 bytes.
    let (_, file) = open(
        "q5_0.gguf",
        &Gguf::new().tensor("x", &[32], 6, 0, &[0; 22]).bytes(),
    );
    let file = file.unwrap();
    let message = file.read_f32("x").unwrap_err().to_string();
    assert!(
        message.contains("tensor 'x': type Q5_0 cannot be de-quantised"),
        "{message}"
    );
    let message = file.read_f32("absent").unwrap_err().to_string();
    assert!(
        message.contains("tensor 'absent': no tensor of that name"),
        "{message}"
    );
}
