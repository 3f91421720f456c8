//! A bf16 matrix product on Intel's AMX tiles (`tdpbf16ps`), for x86-64 CPUs that have them
//! (Sapphire Rapids and later): `C = A·B` with `A` and `B` rounded to bf16 as they are packed
//! and every sum kept in f32, as PyTorch's bf16 autocast computes a product on the CPU.
//!
//! `A` is packed once into chunks of 32 rows (`[32, kp]` bf16, `kp` the depth rounded up to 32),
//! `B` into panels of 16 columns in the tiles' pair layout (`[kp / 2, 16]` words, each word two
//! bf16 of consecutive depths; [`PackedB`], which the caller may keep for a frozen weight). One call of the kernel
//! multiplies a chunk by two panels into a `[32, 32]` block of `C` over the whole depth, in
//! tiles 0–3, from `A` tiles 4–5 and `B` tiles 6–7. Chunks of rows run in parallel (rayon).
//! The instructions are written with `asm!`, since Rust's AMX intrinsics are not stable.

use std::{arch::asm, mem::MaybeUninit, sync::OnceLock};

use rayon::prelude::*;

pub use super::amx_pack::Strided;
use super::amx_pack::{pack_panel, pack_rows, PANEL, ROWS};

/// Depth per tile step: 32 bf16 (one 64-byte tile row).
const DEPTH_STEP: usize = 32;
/// Bytes of packed `B` per block of columns, so that a block stays in a core's L2 cache.
const B_BLOCK_BYTES: usize = 1 << 20;
/// `arch_prctl` requests: `ARCH_REQ_XCOMP_PERM` for `XFEATURE_XTILEDATA`.
const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
const XFEATURE_XTILEDATA: i64 = 18;
const SYS_ARCH_PRCTL: i64 = 158;

/// Whether this CPU has AMX-BF16 tiles and Linux lets this process use them (asked once).
pub fn available() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        // CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
        let leaf = std::arch::x86_64::__cpuid_count(7, 0);
        let cpu = leaf.edx & (1 << 22) != 0 && leaf.edx & (1 << 24) != 0;
        cpu && request_tile_data()
    })
}

/// Asks Linux for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`),
/// which a process needs before its first tile instruction.
fn request_tile_data() -> bool {
    let status: i64;
    // SAFETY: the arch_prctl system call with these arguments only changes the process's
    // permissions; rcx and r11 are clobbered by `syscall`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => status,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    status == 0
}

/// `B` (`[k, n]`) rounded to bf16 and packed for the tiles: panels of 16 columns in the tiles'
/// pair layout (`[depth / 2, 16]` words, `depth` the depth rounded up to 32), an even number of
/// them, the columns past `n` zero. Packed once, it serves any number of products (a frozen
/// weight's, step after step).
pub struct PackedB {
    depth: usize,
    columns: usize,
    panels: Vec<u32>,
}

impl PackedB {
    /// Packs `b` (`[k, n]`), panels in parallel.
    pub fn new(b: Strided, k: usize, n: usize) -> Self {
        let depth = k.div_ceil(DEPTH_STEP).max(1) * DEPTH_STEP;
        let panel_len = depth / 2 * PANEL;
        let len = n.div_ceil(2 * PANEL) * 2 * panel_len;
        let mut panels = Vec::with_capacity(len);
        panels.spare_capacity_mut()[..len]
            .par_chunks_mut(panel_len)
            .enumerate()
            .for_each(|(p, panel)| pack_panel(b, k, n, p * PANEL, panel));
        // SAFETY: each panel's task wrote every one of its elements (`pack_panel`).
        unsafe { panels.set_len(len) };
        PackedB {
            depth,
            columns: n,
            panels,
        }
    }

    /// Bytes the packed panels hold.
    pub fn bytes(&self) -> usize {
        self.panels.len() * size_of::<u32>()
    }
}

/// `a · b` (`[m, n]`, row-major), `a` `[m, k]` rounded to bf16 (to nearest, ties to even) and
/// `b` packed, the sums in f32. Call only when [`available`].
pub fn product(m: usize, k: usize, a: Strided, b: &PackedB) -> Vec<f32> {
    assert!(available(), "AMX-BF16 tiles are not available");
    assert!(k <= b.depth, "the depth of a is that of b");
    let n = b.columns;
    let mut c = Vec::with_capacity(m * n);
    if m > 0 && n > 0 {
        product_into(m, k, a, b, &mut c.spare_capacity_mut()[..m * n]);
        // SAFETY: `product_into` wrote every element of the `[m, n]` product: each chunk of
        // rows its live rows, each pair of panels its columns.
        unsafe { c.set_len(m * n) };
    }
    c
}

/// Writes `a · b` into `c` (`[m, n]`, every element written, none read), one block of columns
/// of `b` (about 1 MiB of panels, so that it stays in a core's L2 cache) at a time.
fn product_into(m: usize, k: usize, a: Strided, b: &PackedB, c: &mut [MaybeUninit<f32>]) {
    let (depth, n) = (b.depth, b.columns);
    let len = m.div_ceil(ROWS) * ROWS * depth;
    let mut chunks = Vec::with_capacity(len);
    chunks.spare_capacity_mut()[..len]
        .par_chunks_mut(ROWS * depth)
        .enumerate()
        .for_each(|(i, chunk)| pack_rows(a, m, k, i * ROWS, depth, chunk));
    // SAFETY: each chunk's task wrote every one of its elements (`pack_rows`).
    unsafe { chunks.set_len(len) };
    let panel_len = depth / 2 * PANEL;
    let block_columns = (B_BLOCK_BYTES / (depth * 2) / (2 * PANEL) * (2 * PANEL)).max(2 * PANEL);
    for first in (0..n).step_by(block_columns) {
        let pairs = block_columns.min(n - first).div_ceil(2 * PANEL);
        let panels = &b.panels[first / PANEL * panel_len..];
        let chunks = &chunks;
        c.par_chunks_mut(ROWS * n)
            .enumerate()
            .for_each(|(i, rows)| {
                let live = rows.len() / n;
                let chunk = &chunks[i * ROWS * depth..(i + 1) * ROWS * depth];
                let mut block = [0f32; ROWS * 2 * PANEL];
                let _tiles = Tiles::configure();
                for pair in 0..pairs {
                    let left = &panels[2 * pair * panel_len..(2 * pair + 1) * panel_len];
                    let right = &panels[(2 * pair + 1) * panel_len..(2 * pair + 2) * panel_len];
                    // SAFETY: tiles are configured on this thread; `chunk` holds 32 rows of
                    // `depth`, each panel `depth / 2` rows of 16 words, `block` 32 × 32 floats.
                    unsafe { kernel(chunk, depth, left, right, &mut block) };
                    let column = first + pair * 2 * PANEL;
                    let width = (2 * PANEL).min(n - column);
                    for r in 0..live {
                        let out = &mut rows[r * n + column..r * n + column + width];
                        let sums = &block[r * 2 * PANEL..r * 2 * PANEL + width];
                        for (out, &sum) in out.iter_mut().zip(sums) {
                            out.write(sum);
                        }
                    }
                }
            });
    }
}

/// The tile configuration of this thread while it lives: tiles 0–7 of 16 rows × 64 bytes.
struct Tiles;

/// The 64-byte operand of `ldtilecfg` (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

impl Tiles {
    fn configure() -> Self {
        let mut config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        config.bytes_per_row[..8].fill(64);
        config.rows[..8].fill(16);
        // SAFETY: the process has tile permission (`available`), and the config is valid.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
        Tiles
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: releases the tile state this thread configured.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// `block` (`[32, 32]` f32) `= chunk · [left right]` over `depth`: `chunk` `[32, depth]` bf16,
/// `left` and `right` panels `[depth / 2, 16]` words.
///
/// # Safety
/// Tiles must be configured on this thread ([`Tiles::configure`]); the slices must be the
/// sizes above, `depth` a positive multiple of 32.
#[inline(always)]
unsafe fn kernel(chunk: &[u16], depth: usize, left: &[u32], right: &[u32], block: &mut [f32]) {
    debug_assert!(chunk.len() == ROWS * depth && left.len() == depth / 2 * PANEL);
    debug_assert!(right.len() == left.len() && block.len() == ROWS * 2 * PANEL);
    let top = chunk.as_ptr();
    let out = block.as_mut_ptr();
    asm!(
        "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
        "2:",
        "tileloadd tmm4, [{top} + {a_stride}*1]",
        "tileloadd tmm6, [{left} + {b_stride}*1]",
        "tileloadd tmm5, [{bottom} + {a_stride}*1]",
        "tileloadd tmm7, [{right} + {b_stride}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "add {top}, 64", "add {bottom}, 64", "add {left}, 1024", "add {right}, 1024",
        "dec {steps}", "jnz 2b",
        "tilestored [{c0} + {c_stride}*1], tmm0",
        "tilestored [{c1} + {c_stride}*1], tmm1",
        "tilestored [{c2} + {c_stride}*1], tmm2",
        "tilestored [{c3} + {c_stride}*1], tmm3",
        top = inout(reg) top => _,
        bottom = inout(reg) top.add(16 * depth) => _,
        left = inout(reg) left.as_ptr() => _,
        right = inout(reg) right.as_ptr() => _,
        steps = inout(reg) depth / DEPTH_STEP => _,
        a_stride = in(reg) depth * 2,
        b_stride = in(reg) PANEL * 4,
        c0 = in(reg) out,
        c1 = in(reg) out.add(PANEL),
        c2 = in(reg) out.add(16 * 2 * PANEL),
        c3 = in(reg) out.add(16 * 2 * PANEL + PANEL),
        c_stride = in(reg) 2 * PANEL * 4,
        options(nostack),
    );
}
