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

/// The precision the selected backend's matrix products run in: bf16 only where
/// `--dtype bf16` asked for it and this build computes on the CPU backend of a CPU with a bf16
/// unit, AMX-BF16 tiles or AVX-512 BF16 ([`ropo_models::product`]); f32 everywhere else.
pub fn products_precision() -> ropo_models::product::MatmulPrecision {
    use ropo_models::product::{bf16_matrix_units, matmul_precision, MatmulPrecision};
    let flex = cfg!(all(
        feature = "cpu",
        not(any(feature = "cuda", feature = "wgpu", feature = "ndarray"))
    ));
    let on_bf16_unit = flex && bf16_matrix_units();
    match matmul_precision() {
        MatmulPrecision::Bf16 if on_bf16_unit => MatmulPrecision::Bf16,
        _ => MatmulPrecision::F32,
    }
}

/// What the selected backend needs at run time, for the error when it is missing.
const NEEDS: &str = if cfg!(feature = "cuda") {
    "it needs an NVIDIA GPU with its driver: libcuda and libnvrtc, CUDA_PATH or /usr/local/cuda"
} else if cfg!(feature = "wgpu") {
    "it needs a GPU adapter: a Vulkan, Metal or DX12 driver (Mesa's lavapipe on a CPU)"
} else {
    "a CPU backend needs nothing"
};

/// Checks that the selected backend can run here, before any work: a GPU build on a machine
/// without the driver (CUDA) or adapter (wgpu) gets one clear error naming the backend
/// instead of a panic from deep inside it.
pub fn probe() -> Result<(), String> {
    use burn::tensor::Tensor;
    let cannot_start =
        |reason| format!("the {NAME} backend cannot start on this machine ({NEEDS}): {reason}");
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    wgpu_adapter().map_err(cannot_start)?;
    catch_panic(|| {
        let device = Default::default();
        Tensor::<Selected, 1>::from_floats([1.0], &device).into_data();
    })
    .map_err(cannot_start)
}

/// Runs `f`, turning a panic (how burn's GPU runtimes report a missing driver or adapter)
/// into the first line of its message, and printing nothing of it.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(quiet);
    outcome.map_err(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown reason");
        reason.lines().next().unwrap_or(reason).to_owned()
    })
}

/// The wgpu adapter burn picks for the default device, in one line: its name, kind, driver
/// and graphics API, and the buffer limits that bound tensor sizes; an error (the first line
/// of burn's panic) where no adapter can be found. A log that runs on wgpu prints it, so it
/// shows which device (a GPU, or Mesa's lavapipe on the CPU) computed the results.
///
/// The first call sets up burn's wgpu runtime on the default device, which can be done only
/// once and before any other wgpu work in the process ([`probe`] calls it first); later calls
/// give the same answer.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
pub fn wgpu_adapter() -> Result<String, String> {
    use burn::backend::wgpu::{graphics::AutoGraphicsApi, init_setup, RuntimeOptions, WgpuDevice};
    static ADAPTER: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let describe = || {
        let setup = catch_panic(|| {
            init_setup::<AutoGraphicsApi>(&WgpuDevice::default(), RuntimeOptions::default())
        })?;
        let info = setup.adapter.get_info();
        let limits = setup.adapter.limits();
        Ok(format!(
            "{} ({:?}, driver {} {}, {:?}); max buffer {} MiB, max storage binding {} MiB",
            info.name,
            info.device_type,
            info.driver,
            info.driver_info,
            info.backend,
            limits.max_buffer_size >> 20,
            limits.max_storage_buffer_binding_size >> 20
        ))
    };
    ADAPTER.get_or_init(describe).clone()
}
