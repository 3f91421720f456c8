//! The backend this build computes on, chosen by cargo feature.
//!
//! When several backend features are on (a `--features cuda` build keeps the default `cpu`),
//! the most specific wins: `cuda`, then `wgpu`, then `ndarray`, then `cpu` (flex).

#[cfg(not(any(
    feature = "cpu",
    feature = "cuda",
    feature = "wgpu",
    feature = "ndarray"
)))]
compile_error!("enable one backend feature: cpu, cuda, wgpu or ndarray");

/// The inference backend of this build.
#[cfg(feature = "cuda")]
pub type Selected = burn::backend::Cuda;

/// The inference backend of this build.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub type Selected = burn::backend::Wgpu;

/// The inference backend of this build.
#[cfg(all(feature = "ndarray", not(any(feature = "cuda", feature = "wgpu"))))]
pub type Selected = burn::backend::NdArray;

/// The inference backend of this build.
#[cfg(all(
    feature = "cpu",
    not(any(feature = "cuda", feature = "wgpu", feature = "ndarray"))
))]
pub type Selected = burn::backend::Flex;

/// The training backend of this build: [`Selected`] with automatic differentiation.
pub type Training = burn::backend::Autodiff<Selected>;

/// The name of the selected backend, for logs and benchmark records.
pub const NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "wgpu") {
    "wgpu"
} else if cfg!(feature = "ndarray") {
    "cpu (ndarray)"
} else {
    "cpu (flex)"
};
