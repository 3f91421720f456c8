//! Reading a burn-flex tensor's f32 elements as a slice, for ropo's fused CPU loops
//! (`activation_backend/flex.rs`, `attention/flex.rs`, `vocab_logps/flex.rs`).

use burn::backend::flex::FlexTensor;

/// The tensor itself when its elements lie in row-major order from the first, else a
/// contiguous copy.
pub(crate) fn contiguous(tensor: FlexTensor) -> FlexTensor {
    match tensor.as_slice::<f32>() {
        Some(_) => tensor,
        None => tensor.to_contiguous(),
    }
}

/// The elements of an f32 tensor made [`contiguous`].
pub(crate) fn f32s(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("an f32 tensor made contiguous")
}
