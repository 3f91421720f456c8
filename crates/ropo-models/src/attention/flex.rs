//! burn's `flex` CPU backend runs attention with the fused kernels of `cpu.rs`, reading the
//! host mask directly: no mask tensor, no `[batch, heads, queries, keys]` intermediate, both
//! cores busy; at bf16 products, forward and backward on the CPU's bf16 units
//! (`bf16_forward.rs`, `bf16_backward.rs`); and the rotary embedding by index
//! (`rotation_cpu.rs`).

use burn::{
    backend::{
        flex::{FlexDevice, FlexTensor},
        Flex,
    },
    tensor::{DType, Tensor, TensorData},
};

#[cfg(target_arch = "x86_64")]
use super::{bf16_backward, bf16_forward};
use super::{
    cpu,
    rotation::{self, RotateHalf},
    rotation_cpu::{self, Direction, HeadRows},
    AttentionBackend, KeyMask,
};
use crate::flex_storage::{contiguous, f32s};
#[cfg(target_arch = "x86_64")]
use crate::product::{bf16, matmul_precision, MatmulPrecision};

impl AttentionBackend for Flex {
    fn masked_attention(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        mask: &KeyMask,
    ) -> Tensor<Self, 4> {
        Self::masked_attention_with_lse(query, key, value, mask).0
    }

    fn masked_attention_with_lse(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        mask: &KeyMask,
    ) -> (Tensor<Self, 4>, Tensor<Self, 3>) {
        let dims = dims(&query, &key, mask);
        let (dtype, device) = (query.dtype(), query.device());
        let [query, key, value] = [query, key, value].map(host);
        let (output, lse) = forward(
            [query.storage(), key.storage(), value.storage()],
            mask,
            dims,
            dtype,
        );
        let cpu::Dims {
            batch,
            heads,
            queries,
            head_dim,
            ..
        } = dims;
        (
            tensor(output, [batch, queries, heads, head_dim], dtype, &device),
            tensor(lse, [batch, heads, queries], dtype, &device),
        )
    }

    fn masked_attention_backward(
        query: Tensor<Self, 4>,
        key: Tensor<Self, 4>,
        value: Tensor<Self, 4>,
        output: Tensor<Self, 4>,
        lse: Tensor<Self, 3>,
        grad: Tensor<Self, 4>,
        mask: &KeyMask,
    ) -> [Tensor<Self, 4>; 3] {
        let dims = dims(&query, &key, mask);
        let (dtype, device) = (query.dtype(), query.device());
        let (q_shape, kv_shape) = (query.dims(), key.dims());
        let [query, key, value, output, grad] = [query, key, value, output, grad].map(host);
        let lse = host(lse);
        let inputs = [query.storage(), key.storage(), value.storage()];
        let (grad_query, grad_key, grad_value) = backward(
            inputs,
            [output.storage(), lse.storage(), grad.storage()],
            mask,
            dims,
            dtype,
        );
        [
            tensor(grad_query, q_shape, dtype, &device),
            tensor(grad_key, kv_shape, dtype, &device),
            tensor(grad_value, kv_shape, dtype, &device),
        ]
    }

    fn rotary(
        x: Tensor<Self, 4>,
        cos: Tensor<Self, 4>,
        sin: Tensor<Self, 4>,
        rotate_half: &RotateHalf<Self>,
    ) -> Tensor<Self, 4> {
        rotate_by_index(x, cos, sin, rotate_half, Direction::Forward)
    }

    fn rotary_backward(
        grad: Tensor<Self, 4>,
        cos: Tensor<Self, 4>,
        sin: Tensor<Self, 4>,
        rotate_half: &RotateHalf<Self>,
    ) -> Tensor<Self, 4> {
        rotate_by_index(grad, cos, sin, rotate_half, Direction::Back)
    }
}

/// The attention output and each row's log-sum-exp (`cpu::forward`'s shapes) of `[query, key,
/// value]`: on the CPU's bf16 units at bf16 products (`bf16_forward.rs`), else the f32 kernel.
fn forward(
    [query, key, value]: [&[f32]; 3],
    mask: &KeyMask,
    dims: cpu::Dims,
    dtype: DType,
) -> (Vec<f32>, Vec<f32>) {
    let blocked = mask.blocked_keys();
    #[cfg(target_arch = "x86_64")]
    if in_bf16(dims, dtype) {
        return bf16_forward::forward(query, key, value, blocked, dims);
    }
    let _ = dtype;
    cpu::forward(query, key, value, blocked, mask.queries_alone(), dims)
}

/// The gradients of query, key and value from the forward's `[query, key, value]`, its
/// `[output, lse, grad]` (the output's gradient): on the bf16 units where [`forward`] ran
/// there (`bf16_backward.rs`), else the f32 kernel.
fn backward(
    [query, key, value]: [&[f32]; 3],
    [output, lse, grad]: [&[f32]; 3],
    mask: &KeyMask,
    dims: cpu::Dims,
    dtype: DType,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let blocked = mask.blocked_keys();
    #[cfg(target_arch = "x86_64")]
    if in_bf16(dims, dtype) {
        return bf16_backward::backward(query, key, value, output, lse, grad, blocked, dims);
    }
    let _ = dtype;
    let alone = mask.queries_alone();
    cpu::backward(query, key, value, output, lse, grad, blocked, alone, dims)
}

/// Whether attention runs on a bf16 unit: bf16 products asked for, a unit present, f32
/// tensors, at least one tile's 16 query rows (a generation step's single row stays f32) and
/// heads at least 16 wide.
#[cfg(target_arch = "x86_64")]
fn in_bf16(dims: cpu::Dims, dtype: DType) -> bool {
    matmul_precision() == MatmulPrecision::Bf16
        && dims.queries >= 16
        && dims.head_dim >= 16
        && dtype == DType::F32
        && bf16::available()
}

/// The kernel's sizes, checked against the mask.
fn dims(query: &Tensor<Flex, 4>, key: &Tensor<Flex, 4>, mask: &KeyMask) -> cpu::Dims {
    let [batch, queries, heads, head_dim] = query.dims();
    let [_, keys, kv_heads, _] = key.dims();
    assert_eq!(
        mask.dims(),
        [batch, queries, keys],
        "attention mask is [batch, queries, keys]"
    );
    assert_eq!(
        heads % kv_heads,
        0,
        "query heads are a multiple of kv heads"
    );
    cpu::Dims {
        batch,
        heads,
        kv_heads,
        queries,
        keys,
        head_dim,
    }
}

/// The tensor as contiguous `f32` storage, read in place: shared, not copied, when it is
/// already `f32` and contiguous (autodiff keeps its own handle on the same buffer).
fn host<const D: usize>(tensor: Tensor<Flex, D>) -> FlexTensor {
    let tensor = if tensor.dtype() == DType::F32 {
        tensor
    } else {
        tensor.cast(DType::F32)
    };
    tensor.into_primitive().tensor().to_contiguous()
}

/// A tensor of `dtype` from row-major `f32` elements.
fn tensor<const D: usize>(
    data: Vec<f32>,
    shape: [usize; D],
    dtype: DType,
    device: &FlexDevice,
) -> Tensor<Flex, D> {
    let tensor = Tensor::from_data(TensorData::new(data, shape), device);
    if dtype == DType::F32 {
        tensor
    } else {
        tensor.cast(dtype)
    }
}

/// [`AttentionBackend::rotary`] or its backward on f32 tensors by index
/// (`rotation_cpu.rs`), reading `x` in place when its last dimension is contiguous; burn's
/// tensor form for other dtypes.
fn rotate_by_index(
    x: Tensor<Flex, 4>,
    cos: Tensor<Flex, 4>,
    sin: Tensor<Flex, 4>,
    rotate_half: &RotateHalf<Flex>,
    direction: Direction,
) -> Tensor<Flex, 4> {
    if [&x, &cos, &sin].iter().any(|t| t.dtype() != DType::F32) {
        return match direction {
            Direction::Forward => rotation::rotate(x, cos, sin, rotate_half),
            Direction::Back => rotation::rotate_back(x, cos, sin, rotate_half),
        };
    }
    let (dims, device) = (x.dims(), x.device());
    let x = rows_in_place(x.into_primitive().tensor());
    let [cos, sin] = [cos, sin].map(|t| contiguous(t.into_primitive().tensor()));
    let layout = x.layout();
    let strides = layout.strides();
    let rows = HeadRows {
        data: x.storage::<f32>(),
        offset: layout.start_offset(),
        strides: [0, 1, 2].map(|d| strides[d] as usize),
    };
    let out = rotation_cpu::rotate(
        rows,
        f32s(&cos),
        f32s(&sin),
        dims,
        rotate_half.rotated,
        direction,
    );
    Tensor::from_data(TensorData::new(out, dims), &device)
}

/// The tensor itself when its last dimension is contiguous and no stride is negative, else a
/// contiguous copy.
fn rows_in_place(tensor: FlexTensor) -> FlexTensor {
    let strides = tensor.layout().strides();
    if strides[3] == 1 && strides.iter().all(|&s| s >= 0) {
        tensor
    } else {
        tensor.to_contiguous()
    }
}
