//! [`GgufFile`]: a GGUF file's header, metadata and tensor infos, read and checked at open; its
//! tensors read one at a time when asked for.
//!
//! Layout (little-endian; `string` is a u64 byte length then the bytes):
//! `"GGUF"`, u32 version, u64 tensor count, u64 key/value count; each key/value: `string` key,
//! u32 value type, the value (an array: u32 element type, u64 count, the elements); each tensor
//! info: `string` name, u32 dimension count (at most 4), u64 per dimension (innermost first), u32
//! `ggml_type`, u64 offset; padding to the alignment; the data section, in which each tensor's
//! offset is counted and is a multiple of the alignment.

use std::{
    collections::{BTreeMap, HashSet},
    fs::File,
    io::{BufReader, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::{dequant, Array, GgmlType, GgufError, TensorInfo, Value, ValueType};

/// The magic number every GGUF file starts with.
const MAGIC: &[u8; 4] = b"GGUF";
/// The alignment of the data section and of each tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a tensor has (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// The fewest bytes a key/value takes: an empty key's length, the value type, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// The fewest bytes a tensor info takes: an empty name's length, a dimension count of 0, the
/// type and the offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// An open GGUF file: its metadata and tensor infos, checked; tensor data stays on disk until
/// [`GgufFile::read_f32`] reads one tensor.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    metadata: BTreeMap<String, Value>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: u64,
    file: Mutex<File>,
}

impl GgufFile {
    /// Opens and checks `path`: reads the header, every metadata value and every tensor info,
    /// and checks that each tensor's type is known, its rows are whole blocks, and its bytes are
    /// aligned, inside the file and apart from every other tensor's. Nothing is allocated from
    /// a count or length in the file before it is checked against the bytes left.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let file = File::open(path).map_err(GgufError::io(path))?;
        let len = file.metadata().map_err(GgufError::io(path))?.len();
        let mut header = Header {
            path,
            reader: BufReader::new(file),
            pos: 0,
            len,
        };
        let magic: [u8; 4] = header.array(&|| "magic".into())?;
        if &magic != MAGIC {
            return Err(header.invalid(
                "magic",
                format!("starts with {magic:02x?}, not \"GGUF\": not a GGUF file"),
            ));
        }
        let version = header.u32(&|| "version".into())?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(header.unsupported(
                    "version",
                    "GGUF version 1 (32-bit counts) is not supported; convert the file with a \
                     current llama.cpp",
                ))
            }
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(header.unsupported(
                    "version",
                    "a big-endian GGUF file; only little-endian files are read",
                ))
            }
            v => return Err(header.invalid("version", format!("{v} is not 2 or 3"))),
        }
        let tensor_count = header.u64(&|| "tensor_count".into())?;
        let kv_count = header.u64(&|| "metadata_kv_count".into())?;
        header.fits(
            "tensor_count",
            tensor_count,
            MIN_TENSOR_INFO_BYTES,
            "tensor infos",
        )?;
        header.fits("metadata_kv_count", kv_count, MIN_KV_BYTES, "key/values")?;

        let mut metadata = BTreeMap::new();
        for index in 0..kv_count {
            let key = header.name(&|| format!("metadata key #{index}"))?;
            let field = || format!("metadata '{key}'");
            let id = header.u32(&field)?;
            let ty = ValueType::from_id(id)
                .ok_or_else(|| header.invalid(field(), format!("unknown value type {id}")))?;
            let value = header.value(ty, &field)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(header.invalid(field(), "the key appears twice"));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if *a > 0 && a.is_power_of_two() => u64::from(*a),
            Some(other) => {
                return Err(header.invalid(
                    "metadata 'general.alignment'",
                    format!("{other:?} is not a uint32 power of two"),
                ))
            }
        };

        let mut tensors = Vec::new();
        let mut names = HashSet::new();
        for index in 0..tensor_count {
            let info = header.tensor_info(index, alignment)?;
            if !names.insert(info.name.clone()) {
                return Err(
                    header.invalid(format!("tensor '{}'", info.name), "the name appears twice")
                );
            }
            tensors.push(info);
        }
        let data_offset = header.pos.next_multiple_of(alignment);
        check_data(path, &tensors, data_offset, len)?;

        Ok(Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            file: Mutex::new(header.reader.into_inner()),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of the data section and of every tensor in it (`general.alignment`, else 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts in the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Every metadata key/value, by key.
    pub fn metadata(&self) -> &BTreeMap<String, Value> {
        &self.metadata
    }

    /// The value of `key`, if the file has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of the tensor named `name`, if there is one.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// An [`GgufError::Invalid`] naming this file, `field` and `problem`: for readers of the
    /// metadata (a model's or a tokenizer's) to report a value they cannot use as this crate
    /// reports a malformed file.
    pub fn invalid(&self, field: impl Into<String>, problem: impl Into<String>) -> GgufError {
        GgufError::Invalid {
            path: self.path.clone(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// An [`GgufError::Unsupported`] naming this file, `field` and `problem`.
    pub fn unsupported(&self, field: impl Into<String>, problem: impl Into<String>) -> GgufError {
        GgufError::Unsupported {
            path: self.path.clone(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// `key` as a non-negative integer of any integer type; `None` when absent, an error naming
    /// the key when it is something else.
    pub fn uint(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "a non-negative integer", |v| {
            v.as_i128().and_then(|i| u64::try_from(i).ok())
        })
    }

    /// `key` as a float (`float32` or `float64`; an integer is taken too).
    pub fn float(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.typed(key, "a number", |v| {
            v.as_f64().or_else(|| v.as_i128().map(|i| i as f64))
        })
    }

    /// `key` as a string.
    pub fn string(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "a string", Value::as_str)
    }

    /// `key` as a boolean.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "a bool", Value::as_bool)
    }

    /// `key` as an array.
    pub fn array(&self, key: &str) -> Result<Option<&Array>, GgufError> {
        self.typed(key, "an array", Value::as_array)
    }

    /// `key` as an array of strings.
    pub fn strings(&self, key: &str) -> Result<Option<&[String]>, GgufError> {
        self.typed(key, "an array of strings", |v| {
            v.as_array().and_then(Array::as_strings)
        })
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        read: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        let Some(value) = self.metadata.get(key) else {
            return Ok(None);
        };
        read(value).map(Some).ok_or_else(|| {
            self.invalid(
                format!("metadata '{key}'"),
                format!("expected {expected}, found {}", value.describe()),
            )
        })
    }

    /// The raw bytes of the tensor named `name`, read from disk now.
    pub fn read_bytes(&self, name: &str) -> Result<Vec<u8>, GgufError> {
        let info = self
            .tensor(name)
            .ok_or_else(|| self.invalid(format!("tensor '{name}'"), "no tensor of that name"))?;
        // `open` checked that the bytes lie inside the file as it was then.
        let mut bytes = vec![0; info.n_bytes as usize];
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let read = file
            .seek(SeekFrom::Start(self.data_offset + info.offset))
            .and_then(|_| file.read_exact(&mut bytes));
        read.map_err(|source| GgufError::Io {
            path: self.path.clone(),
            source: std::io::Error::new(
                source.kind(),
                format!("reading tensor '{name}': {source}"),
            ),
        })?;
        Ok(bytes)
    }

    /// The tensor named `name` de-quantised to f32, in the file's element order (innermost
    /// dimension fastest: row-major for [`TensorInfo::shape`]). An error names the tensor when
    /// its type is one [`dequant::dequantize`] does not read.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let ty = self
            .tensor(name)
            .map(TensorInfo::ggml_type)
            .ok_or_else(|| self.invalid(format!("tensor '{name}'"), "no tensor of that name"))?;
        if !ty.can_dequantize() {
            return Err(self.unsupported(
                format!("tensor '{name}'"),
                format!(
                    "type {ty} cannot be de-quantised here (F32, F16, BF16, Q8_0, Q4_0, Q4_1, \
                     Q4_K, Q5_K and Q6_K can)"
                ),
            ));
        }
        let bytes = self.read_bytes(name)?;
        // The byte count is whole blocks of `ty` (checked at open).
        dequant::dequantize(ty, &bytes)
            .ok_or_else(|| self.invalid(format!("tensor '{name}'"), "not whole blocks"))
    }
}

/// Checks the tensors' bytes against the data section: each offset aligned, each tensor inside
/// the file, no two overlapping.
fn check_data(
    path: &Path,
    tensors: &[TensorInfo],
    data_offset: u64,
    len: u64,
) -> Result<(), GgufError> {
    let invalid = |name: &str, problem: String| GgufError::Invalid {
        path: path.to_path_buf(),
        field: format!("tensor '{name}'"),
        problem,
    };
    for info in tensors {
        let end = data_offset
            .checked_add(info.offset)
            .and_then(|start| start.checked_add(info.n_bytes));
        match end {
            Some(end) if end <= len => {}
            _ => {
                return Err(invalid(
                    &info.name,
                    format!(
                        "its {} bytes at data offset {} (file offset {}) reach past the end of \
                         the {len}-byte file: truncated or corrupt",
                        info.n_bytes,
                        info.offset,
                        data_offset.saturating_add(info.offset)
                    ),
                ))
            }
        }
    }
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // In the file, so the sum does not overflow.
        if a.offset + a.n_bytes > b.offset {
            return Err(invalid(
                &b.name,
                format!(
                    "its bytes at data offset {} overlap those of '{}' ({} bytes at {})",
                    b.offset, a.name, a.n_bytes, a.offset
                ),
            ));
        }
    }
    Ok(())
}

/// The header as it is read: a buffered reader that knows its position and the file's length,
/// so every count is checked against the bytes left before anything is allocated for it.
struct Header<'a> {
    path: &'a Path,
    reader: BufReader<File>,
    pos: u64,
    len: u64,
}

type Field<'f> = &'f dyn Fn() -> String;

impl Header<'_> {
    fn invalid(&self, field: impl Into<String>, problem: impl Into<String>) -> GgufError {
        GgufError::Invalid {
            path: self.path.to_path_buf(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn unsupported(&self, field: impl Into<String>, problem: impl Into<String>) -> GgufError {
        GgufError::Unsupported {
            path: self.path.to_path_buf(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Errors unless `bytes` more bytes are left in the file.
    fn need(&self, bytes: u64, field: Field) -> Result<(), GgufError> {
        if bytes <= self.remaining() {
            return Ok(());
        }
        Err(self.invalid(
            field(),
            format!(
                "truncated: needs {bytes} bytes at offset {} but the file ends at {}",
                self.pos, self.len
            ),
        ))
    }

    /// Errors unless `count` items of at least `min_bytes` each fit in the bytes left.
    fn fits(&self, field: &str, count: u64, min_bytes: u64, what: &str) -> Result<(), GgufError> {
        match count.checked_mul(min_bytes) {
            Some(bytes) if bytes <= self.remaining() => Ok(()),
            _ => Err(self.invalid(
                field,
                format!(
                    "{count} {what} cannot fit in the {} bytes left of the file (each takes at \
                     least {min_bytes})",
                    self.remaining()
                ),
            )),
        }
    }

    fn bytes(&mut self, n: u64, field: Field) -> Result<Vec<u8>, GgufError> {
        self.need(n, field)?;
        // `need` bounds `n` by the file's length.
        let mut buf = vec![0; n as usize];
        self.reader
            .read_exact(&mut buf)
            .map_err(GgufError::io(self.path))?;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self, field: Field) -> Result<[u8; N], GgufError> {
        self.need(N as u64, field)?;
        let mut buf = [0; N];
        self.reader
            .read_exact(&mut buf)
            .map_err(GgufError::io(self.path))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, field: Field) -> Result<u32, GgufError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: Field) -> Result<u64, GgufError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// A string's bytes: a u64 length, checked against the bytes left, then the bytes.
    fn string_bytes(&mut self, field: Field) -> Result<Vec<u8>, GgufError> {
        let len = self.u64(field)?;
        if len > self.remaining() {
            return Err(self.invalid(
                field(),
                format!(
                    "string length {len} exceeds the {} bytes left of the file",
                    self.remaining()
                ),
            ));
        }
        self.bytes(len, field)
    }

    /// A key or tensor name: a string that must be UTF-8, since it is looked up by name.
    fn name(&mut self, field: Field) -> Result<String, GgufError> {
        let bytes = self.string_bytes(field)?;
        String::from_utf8(bytes).map_err(|e| self.invalid(field(), format!("not UTF-8: {e}")))
    }

    fn value(&mut self, ty: ValueType, field: Field) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array(field)?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(field)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(field)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(field)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(field)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(field)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(field)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(field)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(field)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(field)?)),
            ValueType::Bool => Value::Bool(self.boolean(field)?),
            ValueType::String => {
                Value::String(String::from_utf8_lossy(&self.string_bytes(field)?).into_owned())
            }
            ValueType::Array => Value::Array(self.array_value(field)?),
        })
    }

    fn boolean(&mut self, field: Field) -> Result<bool, GgufError> {
        match self.array::<1>(field)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.invalid(field(), format!("bool byte {b} is not 0 or 1"))),
        }
    }

    fn array_value(&mut self, field: Field) -> Result<Array, GgufError> {
        let id = self.u32(field)?;
        let ty = ValueType::from_id(id)
            .ok_or_else(|| self.invalid(field(), format!("unknown array element type {id}")))?;
        if ty == ValueType::Array {
            return Err(self.unsupported(
                field(),
                "arrays of arrays are not supported (ggml's reader refuses them too)",
            ));
        }
        let count = self.u64(field)?;
        let what = format!("{ty} elements");
        self.fits(&field(), count, ty.min_size(), &what)?;
        // `fits` bounds `count` by the bytes left, so these allocations are too.
        let count = count as usize;
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let size = std::mem::size_of::<$t>();
                let bytes = self.bytes((count * size) as u64, field)?;
                Array::$variant(
                    bytes
                        .chunks_exact(size)
                        .map(|b| <$t>::from_le_bytes(b.try_into().expect("chunk of the size")))
                        .collect(),
                )
            }};
        }
        Ok(match ty {
            ValueType::U8 => fixed!(U8, u8),
            ValueType::I8 => fixed!(I8, i8),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::Bool => {
                let mut values = Vec::with_capacity(count);
                for _ in 0..count {
                    values.push(self.boolean(field)?);
                }
                Array::Bool(values)
            }
            ValueType::String => {
                let mut values = Vec::with_capacity(count);
                for index in 0..count {
                    let element = || format!("{}[{index}]", field());
                    let bytes = self.string_bytes(&element)?;
                    values.push(String::from_utf8_lossy(&bytes).into_owned());
                }
                Array::String(values)
            }
            ValueType::Array => unreachable!("refused above"),
        })
    }

    /// One tensor info, with its type known, its dimensions and byte size in range, its rows
    /// whole blocks and its offset aligned.
    fn tensor_info(&mut self, index: u64, alignment: u64) -> Result<TensorInfo, GgufError> {
        let name = self.name(&|| format!("tensor #{index} name"))?;
        let field = || format!("tensor '{name}'");
        let n_dims = self.u32(&field)?;
        if n_dims > MAX_DIMS {
            return Err(self.invalid(
                field(),
                format!("{n_dims} dimensions; ggml tensors have at most {MAX_DIMS}"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64(&field)?);
        }
        let id = self.u32(&field)?;
        let ggml_type = GgmlType::from_id(id)
            .ok_or_else(|| self.invalid(field(), format!("unknown ggml type {id}")))?;
        let offset = self.u64(&field)?;
        // ggml counts in i64: each dimension, and their product, must be below 2^63.
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| {
                (d <= i64::MAX as u64).then_some(())?;
                acc.checked_mul(d)
            })
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                self.invalid(
                    field(),
                    format!("dimensions {dims:?} overflow a 64-bit element count"),
                )
            })?;
        let block = ggml_type.block_elements();
        let row = dims.first().copied().unwrap_or(1);
        if !row.is_multiple_of(block) {
            return Err(self.invalid(
                field(),
                format!(
                    "its rows of {row} elements are not whole {ggml_type} blocks of {block} \
                     (dimensions {dims:?})"
                ),
            ));
        }
        // Whole rows of whole blocks, so `elements` is a multiple of `block`.
        let n_bytes = (elements / block)
            .checked_mul(ggml_type.block_bytes())
            .ok_or_else(|| {
                self.invalid(
                    field(),
                    format!("{elements} {ggml_type} elements overflow a 64-bit byte count"),
                )
            })?;
        if !offset.is_multiple_of(alignment) {
            return Err(self.invalid(
                field(),
                format!("data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_bytes,
        })
    }
}
