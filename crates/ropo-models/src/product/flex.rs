//! burn's `flex` CPU backend multiplies in bf16 at [`MatmulPrecision::Bf16`] where the CPU has
//! a bf16 unit (`bf16.rs`: AMX tiles or AVX-512 BF16), reading transposed and narrowed operands
//! in place; otherwise, and for products too thin to fill a tile, it uses burn's f32 `matmul`.

use burn::{
    backend::Flex,
    tensor::{DType, Tensor},
};

use super::{matmul_precision, MatmulPrecision, ProductBackend};

impl ProductBackend for Flex {
    fn product(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        #[cfg(target_arch = "x86_64")]
        if in_bf16(&a, &b) {
            return units::product(a, b);
        }
        a.matmul(b)
    }
}

/// Smallest rows, columns and depth a product runs in bf16 with (one AMX tile's 16 each): below
/// them (a generation step's single row) padding to the kernels' blocks costs more than f32
/// does. A LoRA rank of 16 fills them: its thin products (`x·A`, `h·B` and their gradients,
/// 16 columns or a depth of 16) run in bf16, half padded on AMX tiles (the dot products pad
/// neither), still faster than burn's f32 `matmul` on those shapes.
const MIN_ROWS: usize = 16;
const MIN_COLUMNS: usize = 16;
const MIN_DEPTH: usize = 16;

/// Whether `a · b` runs on a bf16 unit: bf16 products asked for, a unit present, f32 operands
/// big enough.
#[cfg(target_arch = "x86_64")]
fn in_bf16(a: &Tensor<Flex, 2>, b: &Tensor<Flex, 2>) -> bool {
    let ([m, k], [_, n]) = (a.dims(), b.dims());
    matmul_precision() == MatmulPrecision::Bf16
        && m >= MIN_ROWS
        && n >= MIN_COLUMNS
        && k >= MIN_DEPTH
        && a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && super::bf16::available()
}

#[cfg(target_arch = "x86_64")]
mod units {
    use burn::{
        backend::{flex::FlexTensor, Flex},
        tensor::{Tensor, TensorData},
    };

    use crate::product::{
        bf16::{self, PackedB, Strided},
        pack_cache,
    };

    /// `a · b` on this CPU's bf16 unit.
    pub(super) fn product(a: Tensor<Flex, 2>, b: Tensor<Flex, 2>) -> Tensor<Flex, 2> {
        let ([m, k], [_, n]) = (a.dims(), b.dims());
        let device = a.device();
        let [a, b] = [a, b].map(|t| forward_strides(t.into_primitive().tensor()));
        let b = pack_cache::packed(&b, || PackedB::new(strided(&b), k, n));
        let c = bf16::product(m, k, strided(&a), &b);
        Tensor::from_data(TensorData::new(c, [m, n]), &device)
    }

    /// The tensor itself when its strides are non-negative, else a contiguous copy.
    fn forward_strides(tensor: FlexTensor) -> FlexTensor {
        if tensor.layout().strides().iter().all(|&s| s >= 0) {
            tensor
        } else {
            tensor.to_contiguous()
        }
    }

    /// The matrix as the kernel reads it, in place.
    fn strided(tensor: &FlexTensor) -> Strided<'_> {
        let layout = tensor.layout();
        let strides = layout.strides();
        Strided {
            data: &tensor.storage::<f32>()[layout.start_offset()..],
            row_stride: strides[0] as usize,
            col_stride: strides[1] as usize,
        }
    }
}
