//! Reads llama.cpp's GGUF files (versions 2 and 3): the header, every metadata key/value (all
//! thirteen value types, arrays included), the tensor infos and the data alignment
//! (`general.alignment`), and de-quantises a tensor to f32 when asked ([`GgufFile::read_f32`]).
//!
//! It is a crate of its own, with no model or tokenizer in it, so that `ropo-models` (the
//! weights) and `ropo-data` (the tokenizer and chat template, from the `tokenizer.*` keys) can
//! both read the same file without one importing the other.
//!
//! A GGUF file is untrusted input. [`GgufFile::open`] checks every count, string length,
//! dimension and offset against the file's size before it allocates anything from it, so a
//! corrupt or hostile file costs memory in proportion to its own size at most; it refuses
//! truncated files, unknown value and tensor types, misaligned or overlapping tensors and
//! tensors that reach past the end of the file, each with a one-line [`GgufError`] naming the
//! file and the field. Tensor data is not read at open: [`GgufFile::read_f32`] reads one
//! tensor's bytes when it is asked for, so a model loads one tensor at a time.
//!
//! De-quantisation ([`dequant`]) follows ggml's block layouts (`ggml-common.h`) and
//! `dequantize_row_*` (`ggml-quants.c`) for F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and
//! Q6_K; other types parse (their sizes are known) but [`GgufFile::read_f32`] refuses them,
//! naming the tensor and its type.

pub mod dequant;
mod error;
mod file;
mod tensor;
mod value;

pub use error::GgufError;
pub use file::GgufFile;
pub use tensor::{GgmlType, TensorInfo};
pub use value::{Array, Value, ValueType};
