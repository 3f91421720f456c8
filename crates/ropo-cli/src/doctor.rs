//! `ropo doctor`: what this build's backend finds on this machine and what is missing.
//!
//! It prints the machine (cores, memory), then what the compiled backend needs at run time —
//! wgpu: the adapter it picks (name, driver, graphics API, buffer limits); CUDA: the driver,
//! nvrtc and header files it loads — and finally runs a small computation on the backend and
//! compares it with the CPU (flex), so "it starts" and "it computes right" are both checked.
//! It exits non-zero when the backend cannot run or disagrees.

use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::{activation::log_softmax, backend::Backend, Distribution, Tensor, TensorData};
use ropo::backend::{catch_panic as catch, Selected, NAME};

use crate::CmdResult;

/// Largest relative difference from flex that still counts as agreeing (float sums run in
/// another order on a GPU).
const TOLERANCE: f64 = 1e-4;

/// Prints the report; an error when the backend cannot start or computes wrong.
pub fn run() -> CmdResult {
    println!("ropo {}, backend: {NAME}", env!("CARGO_PKG_VERSION"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = ropo::models::model_size::available_bytes()
        .map_or("unknown".to_owned(), |bytes| {
            format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
        });
    println!("machine: {cores} cores, {memory} memory available");
    backend_needs();
    let start = Instant::now();
    let difference = catch(agreement_with_flex)
        .map_err(|reason| format!("the {NAME} backend cannot start: {reason}"))?;
    let seconds = start.elapsed().as_secs_f64();
    if difference > TOLERANCE {
        return Err(format!(
            "the {NAME} backend computes a 64×512 matrix product and log-softmax {difference:.1e} \
             away from the CPU (relative; more than {TOLERANCE:.0e})"
        )
        .into());
    }
    println!(
        "check: a 64×512 matrix product and log-softmax agree with the CPU (flex) within \
         {difference:.1e} relative ({seconds:.2} s, kernel compilation included)"
    );
    Ok(())
}

/// The largest relative difference between `log_softmax(a @ b)` on the selected backend and
/// on flex, for seeded `a: [64, 512]`, `b: [512, 512]`.
fn agreement_with_flex() -> f64 {
    fn compute<B: Backend>(a: &TensorData, b: &TensorData) -> Vec<f32> {
        let device = Default::default();
        let a = Tensor::<B, 2>::from_data(a.clone(), &device);
        let b = Tensor::<B, 2>::from_data(b.clone(), &device);
        log_softmax(a.matmul(b), 1)
            .into_data()
            .to_vec()
            .expect("f32 data")
    }
    Flex::seed(&Default::default(), 7);
    let device = Default::default();
    let a =
        Tensor::<Flex, 2>::random([64, 512], Distribution::Normal(0.0, 0.1), &device).into_data();
    let b =
        Tensor::<Flex, 2>::random([512, 512], Distribution::Normal(0.0, 0.1), &device).into_data();
    let ours = compute::<Selected>(&a, &b);
    let flex = compute::<Flex>(&a, &b);
    ours.iter()
        .zip(&flex)
        .map(|(x, y)| f64::from((x - y).abs()) / f64::from(y.abs()).max(1e-6))
        .fold(0.0, f64::max)
}

/// What the compiled GPU backend loads at run time, found or missing.
fn backend_needs() {
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    wgpu_adapter();
    #[cfg(feature = "cuda")]
    cuda_files();
}

/// The wgpu adapter burn picks for the default device, or why there is none.
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
fn wgpu_adapter() {
    match ropo::backend::wgpu_adapter() {
        Ok(adapter) => println!("wgpu adapter: {adapter}"),
        Err(reason) => println!(
            "wgpu adapter: none ({reason}); install a Vulkan, Metal or DX12 driver (on Debian \
             without a GPU: mesa-vulkan-drivers, Mesa's lavapipe)"
        ),
    }
}

/// The CUDA driver, nvrtc and headers that burn-cuda loads at run time.
#[cfg(feature = "cuda")]
fn cuda_files() {
    use std::path::PathBuf;
    let cuda_root = ["CUDA_PATH", "CUDA_HOME"]
        .iter()
        .find_map(|name| std::env::var_os(name).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/usr/local/cuda"));
    let mut library_dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    library_dirs.extend([
        cuda_root.join("lib64"),
        cuda_root.join("lib"),
        PathBuf::from("/usr/lib/x86_64-linux-gnu"),
        PathBuf::from("/usr/lib64"),
        PathBuf::from("/usr/lib"),
    ]);
    for (what, prefix) in [("driver", "libcuda.so"), ("nvrtc", "libnvrtc.so")] {
        match find_prefixed(&library_dirs, prefix) {
            Some(path) => println!("cuda {what}: {}", path.display()),
            None => println!(
                "cuda {what}: missing ({prefix}* in none of {}; the NVIDIA driver, or CUDA's \
                 nvrtc, is not installed or not on LD_LIBRARY_PATH)",
                library_dirs.len()
            ),
        }
    }
    let header = cuda_root.join("include/cuda.h");
    match header.is_file() {
        true => println!("cuda headers: {}", header.display()),
        false => println!(
            "cuda headers: missing ({} does not exist; set CUDA_PATH to the CUDA toolkit)",
            header.display()
        ),
    }
}

/// The first file in `dirs` whose name starts with `prefix`.
#[cfg(feature = "cuda")]
fn find_prefixed(dirs: &[std::path::PathBuf], prefix: &str) -> Option<std::path::PathBuf> {
    dirs.iter().find_map(|dir| {
        std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
            let name = entry.file_name();
            name.to_str()?.starts_with(prefix).then(|| entry.path())
        })
    })
}
