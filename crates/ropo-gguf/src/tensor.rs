//! Tensor types (`ggml_type`) and tensor infos.

use std::fmt;

/// A tensor's storage type, with ggml's numbering (`enum ggml_type` in `ggml.h`). Every type is
/// known by its block size, so any file parses; [`GgmlType::can_dequantize`] says which ones
/// [`crate::dequant::dequantize`] turns into f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// 32 values: an f16 scale and 4-bit values.
    Q4_0,
    /// 32 values: an f16 scale and minimum and 4-bit values.
    Q4_1,
    /// 32 values: an f16 scale and 5-bit values.
    Q5_0,
    /// 32 values: an f16 scale and minimum and 5-bit values.
    Q5_1,
    /// 32 values: an f16 scale and 8-bit values.
    Q8_0,
    /// 32 values: an f16 scale and sum and 8-bit values (an intermediate type of ggml's).
    Q8_1,
    /// 256 values, 2-bit K-quant.
    Q2_K,
    /// 256 values, 3-bit K-quant.
    Q3_K,
    /// 256 values, 4-bit K-quant with 6-bit sub-block scales and minimums.
    Q4_K,
    /// 256 values, 5-bit K-quant with 6-bit sub-block scales and minimums.
    Q5_K,
    /// 256 values, 6-bit K-quant with 8-bit sub-block scales.
    Q6_K,
    /// 256 values, 8-bit K-quant (ggml's intermediate type).
    Q8_K,
    /// 256 values, 2.06-bit importance quant.
    IQ2_XXS,
    /// 256 values, 2.31-bit importance quant.
    IQ2_XS,
    /// 256 values, 3.06-bit importance quant.
    IQ3_XXS,
    /// 256 values, 1.56-bit importance quant.
    IQ1_S,
    /// 32 values, 4-bit non-linear quant.
    IQ4_NL,
    /// 256 values, 3.44-bit importance quant.
    IQ3_S,
    /// 256 values, 2.5-bit importance quant.
    IQ2_S,
    /// 256 values, 4.25-bit non-linear quant.
    IQ4_XS,
    /// 8-bit integer.
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 64-bit IEEE float.
    F64,
    /// 256 values, 1.75-bit importance quant.
    IQ1_M,
    /// bfloat16.
    BF16,
    /// 256 values, ternary 1.69-bit quant.
    TQ1_0,
    /// 256 values, ternary 2-bit quant.
    TQ2_0,
    /// 32 values, OCP microscaling 4-bit float.
    MXFP4,
}

/// `(type, id, name, elements per block, bytes per block)`, from ggml's `type_traits` table.
const TYPES: [(GgmlType, u32, &str, u64, u64); 32] = {
    use GgmlType::*;
    [
        (F32, 0, "F32", 1, 4),
        (F16, 1, "F16", 1, 2),
        (Q4_0, 2, "Q4_0", 32, 18),
        (Q4_1, 3, "Q4_1", 32, 20),
        (Q5_0, 6, "Q5_0", 32, 22),
        (Q5_1, 7, "Q5_1", 32, 24),
        (Q8_0, 8, "Q8_0", 32, 34),
        (Q8_1, 9, "Q8_1", 32, 36),
        (Q2_K, 10, "Q2_K", 256, 84),
        (Q3_K, 11, "Q3_K", 256, 110),
        (Q4_K, 12, "Q4_K", 256, 144),
        (Q5_K, 13, "Q5_K", 256, 176),
        (Q6_K, 14, "Q6_K", 256, 210),
        (Q8_K, 15, "Q8_K", 256, 292),
        (IQ2_XXS, 16, "IQ2_XXS", 256, 66),
        (IQ2_XS, 17, "IQ2_XS", 256, 74),
        (IQ3_XXS, 18, "IQ3_XXS", 256, 98),
        (IQ1_S, 19, "IQ1_S", 256, 50),
        (IQ4_NL, 20, "IQ4_NL", 32, 18),
        (IQ3_S, 21, "IQ3_S", 256, 110),
        (IQ2_S, 22, "IQ2_S", 256, 82),
        (IQ4_XS, 23, "IQ4_XS", 256, 136),
        (I8, 24, "I8", 1, 1),
        (I16, 25, "I16", 1, 2),
        (I32, 26, "I32", 1, 4),
        (I64, 27, "I64", 1, 8),
        (F64, 28, "F64", 1, 8),
        (IQ1_M, 29, "IQ1_M", 256, 56),
        (BF16, 30, "BF16", 1, 2),
        (TQ1_0, 34, "TQ1_0", 256, 54),
        (TQ2_0, 35, "TQ2_0", 256, 66),
        (MXFP4, 39, "MXFP4", 32, 17),
    ]
};

impl GgmlType {
    /// The type numbered `id` in a file, if ggml has one.
    pub fn from_id(id: u32) -> Option<Self> {
        TYPES.iter().find(|t| t.1 == id).map(|t| t.0)
    }

    fn traits(self) -> (GgmlType, u32, &'static str, u64, u64) {
        // Every variant is in the table (`every_type_is_in_the_table` checks).
        *TYPES
            .iter()
            .find(|t| t.0 == self)
            .expect("every GgmlType is in TYPES")
    }

    /// ggml's number for the type.
    pub fn id(self) -> u32 {
        self.traits().1
    }

    /// ggml's name for the type (`Q4_K`, `BF16`, ...).
    pub fn name(self) -> &'static str {
        self.traits().2
    }

    /// Elements per block (1 for plain types, 32 or 256 for quantised ones).
    pub fn block_elements(self) -> u64 {
        self.traits().3
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        self.traits().4
    }

    /// Whether [`crate::dequant::dequantize`] reads this type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q4_K | Q5_K | Q6_K
        )
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a tensor is and what it holds, as its tensor info says (checked at open: its type is
/// known, its rows are whole blocks, its bytes lie inside the file, aligned and apart from every
/// other tensor's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub(crate) name: String,
    pub(crate) dims: Vec<u64>,
    pub(crate) ggml_type: GgmlType,
    pub(crate) offset: u64,
    pub(crate) n_bytes: u64,
}

impl TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dimensions as the file lists them, innermost (contiguous) first: a `[rows, columns]`
    /// matrix is `[columns, rows]` here.
    pub fn ggml_dims(&self) -> &[u64] {
        &self.dims
    }

    /// The shape, outermost first (row-major, as PyTorch and burn write it): the reverse of
    /// [`TensorInfo::ggml_dims`] (each below 2^63, checked at open).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The storage type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Offset of the tensor's bytes from the start of the data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes the tensor takes in the file.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_in_the_table_once_and_round_trips_its_id() {
        for (ty, id, name, elements, bytes) in TYPES {
            assert_eq!(GgmlType::from_id(id), Some(ty), "{name}");
            assert_eq!((ty.id(), ty.name()), (id, name));
            assert!(elements > 0 && bytes > 0);
        }
        assert_eq!(GgmlType::from_id(4), None, "Q4_2 was removed from ggml");
        assert_eq!(GgmlType::from_id(99), None);
    }
}
