//! [`ProductBackend`]: the matrix products of ropo's projections and output head, and the
//! precision they run in ([`MatmulPrecision`], process-wide, like PyTorch's
//! `torch.set_float32_matmul_precision`).
//!
//! Weights, activations, gradients and optimiser state stay f32 whatever the precision; at
//! [`MatmulPrecision::Bf16`] a backend may round a product's inputs to bf16 and multiply them on
//! the CPU's matrix units, keeping the sums in f32, as `torch.autocast("cpu",
//! dtype=torch.bfloat16)` does for linear layers. The CPU backend does so on the CPU's bf16
//! units where it has them (`bf16.rs`: AMX tiles, else AVX-512 BF16 dot products); elsewhere,
//! and on the other backends, products stay f32.

#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod amx;
mod autodiff;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
pub(crate) mod bf16;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod bf16_head;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod bf16_pack;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod dot_bf16;
#[cfg(feature = "flex")]
mod flex;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod pack_cache;
#[cfg(test)]
mod tests;

#[cfg(feature = "flex")]
pub(crate) use flex::{
    bf16_logit_gradients, bf16_target_logits_and_lse, bf16_target_logps_and_column_mean,
};

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{backend::Backend, Tensor};

/// The precision of the matrix products of projections and the output head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulPrecision {
    /// f32 inputs and sums.
    F32,
    /// Inputs rounded to bf16 (to nearest, ties to even), sums in f32.
    Bf16,
}

/// Whether products run at [`MatmulPrecision::Bf16`].
static BF16_PRODUCTS: AtomicBool = AtomicBool::new(false);

/// Sets the precision of every later product in this process (f32 unless set).
pub fn set_matmul_precision(precision: MatmulPrecision) {
    BF16_PRODUCTS.store(precision == MatmulPrecision::Bf16, Ordering::Relaxed);
}

/// The precision products run in now.
pub fn matmul_precision() -> MatmulPrecision {
    if BF16_PRODUCTS.load(Ordering::Relaxed) {
        MatmulPrecision::Bf16
    } else {
        MatmulPrecision::F32
    }
}

/// Whether this machine multiplies in bf16 on matrix units, so that
/// [`MatmulPrecision::Bf16`] changes anything on the CPU backend: true on x86-64 CPUs with
/// AMX-BF16 that Linux lets ropo use, or with AVX-512 BF16.
pub fn bf16_matrix_units() -> bool {
    #[cfg(all(feature = "flex", target_arch = "x86_64"))]
    {
        bf16::available()
    }
    #[cfg(not(all(feature = "flex", target_arch = "x86_64")))]
    {
        false
    }
}

/// A burn backend's matrix product for projections and the output head, at the process's
/// [`MatmulPrecision`]. The provided method is burn's `matmul` (f32); the CPU backend
/// overrides it with bf16 tiles at [`MatmulPrecision::Bf16`], and `Autodiff` records one graph
/// node whose backward is two products of the inner backend's.
pub trait ProductBackend: Backend {
    /// `a · b`: `a` `[m, k]`, `b` `[k, n]` -> `[m, n]`. Either operand may be a transposed or
    /// narrowed view.
    fn product(a: Tensor<Self, 2>, b: Tensor<Self, 2>) -> Tensor<Self, 2> {
        a.matmul(b)
    }
}

#[cfg(feature = "ndarray")]
impl ProductBackend for burn::backend::NdArray {}

#[cfg(feature = "cuda")]
impl ProductBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl ProductBackend for burn::backend::Wgpu {}

/// A projection `x · weight (+ bias)`: `x` `[batch, seq, d_in]`, `weight` `[d_in, d_out]`,
/// `bias` `[d_out]` -> `[batch, seq, d_out]`, as one `[batch·seq, d_in]` product of the
/// backend's ([`ProductBackend::product`]). Its backward multiplies by the weight's transposed
/// view in place; burn's batched `linear` copied the transposed weight on every backward.
pub fn project<B: ProductBackend>(
    x: Tensor<B, 3>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 3> {
    let [batch, seq, d_in] = x.dims();
    let d_out = weight.dims()[1];
    let flat = B::product(x.reshape([batch * seq, d_in]), weight);
    let flat = match bias {
        Some(bias) => flat + bias.unsqueeze_dim(0),
        None => flat,
    };
    flat.reshape([batch, seq, d_out])
}
