//! burn's `flex` CPU backend multiplies in bf16 at [`MatmulPrecision::Bf16`] where the CPU has
//! a bf16 unit (`bf16.rs`: AMX tiles or AVX-512 BF16), reading transposed and narrowed operands
//! in place; otherwise, and for products too thin to fill a tile, it uses burn's f32 `matmul`.

use std::ops::Range;

use burn::{
    backend::Flex,
    tensor::{DType, Int, Tensor},
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

/// `(logits[i, targets[i]], log Σ_j exp(logits[i, j]))` of every row of `logits = hidden ·
/// weight` (`hidden` `[rows, k]`, `weight` `[k, vocab]`, targets `[rows]`, each result
/// `[rows]`) on this CPU's bf16 unit without the logits, where the product would run in bf16
/// ([`ProductBackend::product`]); `None` elsewhere.
pub(crate) fn bf16_target_logits_and_lse(
    hidden: &Tensor<Flex, 2>,
    weight: &Tensor<Flex, 2>,
    targets: &Tensor<Flex, 1, Int>,
) -> Option<(Tensor<Flex, 1>, Tensor<Flex, 1>)> {
    #[cfg(target_arch = "x86_64")]
    if in_bf16(hidden, weight) {
        return Some(units::target_logits_and_lse(
            hidden.clone(),
            weight.clone(),
            targets,
        ));
    }
    let _ = (hidden, weight, targets);
    None
}

/// The targets' log-probs of `hidden · weight` (`[rows]`) and each row's softmax-weighted mean
/// of the weight's columns, `Σ_j softmax_j · weight[:, j]` (`[rows, k]`), in one pass on this
/// CPU's bf16 unit, where the product would run in bf16 and the head's two packings take at
/// most [`ONE_PASS_HEAD_BYTES`]; `None` elsewhere.
pub(crate) fn bf16_target_logps_and_column_mean(
    hidden: &Tensor<Flex, 2>,
    weight: &Tensor<Flex, 2>,
    targets: &Tensor<Flex, 1, Int>,
) -> Option<(Tensor<Flex, 1>, Tensor<Flex, 2>)> {
    #[cfg(target_arch = "x86_64")]
    if in_bf16(hidden, weight) && 2 * 2 * weight.shape().num_elements() <= ONE_PASS_HEAD_BYTES {
        return Some(units::target_logps_and_column_mean(
            hidden.clone(),
            weight.clone(),
            targets,
        ));
    }
    let _ = (hidden, weight, targets);
    None
}

/// The gradient of `logits[:, columns]` (`[rows, columns.len()]`) where `logits = hidden ·
/// weight`, `grad · (one_hot(target) − softmax)` from each row's target, log-sum-exp and
/// log-prob gradient (`[rows, 1]` each), on this CPU's bf16 unit as it recomputes the logits,
/// where the product would run in bf16 and `columns` starts at a multiple of 32; `None`
/// elsewhere.
pub(crate) fn bf16_logit_gradients(
    hidden: &Tensor<Flex, 2>,
    weight: &Tensor<Flex, 2>,
    columns: Range<usize>,
    targets: &Tensor<Flex, 2, Int>,
    lse: &Tensor<Flex, 2>,
    grad: &Tensor<Flex, 2>,
) -> Option<Tensor<Flex, 2>> {
    #[cfg(target_arch = "x86_64")]
    if in_bf16(hidden, weight) && columns.start.is_multiple_of(32) {
        return Some(units::logit_gradients(
            hidden.clone(),
            weight.clone(),
            columns,
            targets,
            lse,
            grad,
        ));
    }
    let _ = (hidden, weight, columns, targets, lse, grad);
    None
}

/// The largest head, in bytes of its two bf16 packings, that the one-pass log-probs and column
/// mean take: they hold the head packed in both orientations at once, beside the pack cache's
/// 1 GiB. A quarter of the cache takes SmolLM2's and Pythia's heads (113 and 154 MB); a
/// Llama-3.2-1B head (128,256 × 2,048, 1.05 GB) raised that step's peak by 0.4–0.5 GB, so
/// larger heads go a block of columns at a time (`vocab_logps::blocked_*`), one block's
/// packings in flight.
const ONE_PASS_HEAD_BYTES: usize = 256 << 20;

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
    use std::ops::Range;

    use burn::{
        backend::{flex::FlexTensor, Flex},
        tensor::{Int, Tensor, TensorData},
    };

    use crate::product::{
        bf16::{self, PackedB, Strided},
        bf16_head, pack_cache,
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

    /// The targets' logits and each row's log-sum-exp of `hidden · weight` on this CPU's bf16
    /// unit (`bf16_head.rs`), the weight packed once and kept as a product's `b` is.
    pub(super) fn target_logits_and_lse(
        hidden: Tensor<Flex, 2>,
        weight: Tensor<Flex, 2>,
        targets: &Tensor<Flex, 1, Int>,
    ) -> (Tensor<Flex, 1>, Tensor<Flex, 1>) {
        let ([m, k], [_, n]) = (hidden.dims(), weight.dims());
        let device = hidden.device();
        let [a, b] = [hidden, weight].map(|t| forward_strides(t.into_primitive().tensor()));
        let b = pack_cache::packed(&b, || PackedB::new(strided(&b), k, n));
        let (picked, lse) =
            bf16_head::target_logits_and_lse(m, k, strided(&a), &b, &indices(targets));
        let tensor = |values: Vec<f32>| Tensor::from_data(TensorData::new(values, [m]), &device);
        (tensor(picked), tensor(lse))
    }

    /// The targets' log-probs and each row's softmax-weighted mean of the weight's columns on
    /// this CPU's bf16 unit (`bf16_head.rs`, one pass), the weight packed once in each
    /// orientation and kept as a product's `b` is.
    pub(super) fn target_logps_and_column_mean(
        hidden: Tensor<Flex, 2>,
        weight: Tensor<Flex, 2>,
        targets: &Tensor<Flex, 1, Int>,
    ) -> (Tensor<Flex, 1>, Tensor<Flex, 2>) {
        let ([m, k], [_, n]) = (hidden.dims(), weight.dims());
        let device = hidden.device();
        let targets = indices(targets);
        let [a, w, wt] = [hidden, weight.clone(), weight.transpose()]
            .map(|t| forward_strides(t.into_primitive().tensor()));
        let b = pack_cache::packed(&w, || PackedB::new(strided(&w), k, n));
        let bt = pack_cache::packed(&wt, || PackedB::new(strided(&wt), n, k));
        let (picked, lse, mean) =
            bf16_head::target_logits_lse_and_expected(m, k, strided(&a), &b, &bt, &targets);
        let logps = picked.iter().zip(&lse).map(|(x, l)| x - l).collect();
        (
            Tensor::from_data(TensorData::new(logps, [m]), &device),
            Tensor::from_data(TensorData::new(mean, [m, k]), &device),
        )
    }

    /// The logits' gradient in `columns` on this CPU's bf16 unit (`bf16_head.rs`), from each
    /// row's target, log-sum-exp and log-prob gradient (`[rows, 1]` each), the weight packed
    /// once and kept as a product's `b` is.
    pub(super) fn logit_gradients(
        hidden: Tensor<Flex, 2>,
        weight: Tensor<Flex, 2>,
        columns: Range<usize>,
        targets: &Tensor<Flex, 2, Int>,
        lse: &Tensor<Flex, 2>,
        grad: &Tensor<Flex, 2>,
    ) -> Tensor<Flex, 2> {
        let ([m, k], [_, n]) = (hidden.dims(), weight.dims());
        let device = hidden.device();
        let width = columns.len();
        let floats = |t: &Tensor<Flex, 2>| t.to_data().iter::<f32>().collect::<Vec<f32>>();
        let (lse, grad) = (floats(lse), floats(grad));
        let [a, b] = [hidden, weight].map(|t| forward_strides(t.into_primitive().tensor()));
        let b = pack_cache::packed(&b, || PackedB::new(strided(&b), k, n));
        let rows = bf16_head::TargetRows {
            targets: &indices(targets),
            lse: &lse,
            grad: &grad,
        };
        let gradients = bf16_head::logit_gradients(m, k, strided(&a), &b, columns, rows);
        Tensor::from_data(TensorData::new(gradients, [m, width]), &device)
    }

    /// Token ids as indices.
    fn indices<const D: usize>(targets: &Tensor<Flex, D, Int>) -> Vec<usize> {
        targets
            .to_data()
            .iter::<i64>()
            .map(|t| usize::try_from(t).expect("targets are token ids"))
            .collect()
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
