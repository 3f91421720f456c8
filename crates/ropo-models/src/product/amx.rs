//! The bf16 product's kernel on Intel's AMX tiles (`tdpbf16ps`), for x86-64 CPUs that have them
//! (Sapphire Rapids and later): a chunk of 32 packed rows times two panels into a `[32, 32]`
//! block, in tiles 0–3, from `A` tiles 4–5 and `B` tiles 6–7 (`bf16.rs` packs and drives).
//! The instructions are written with `asm!`, since Rust's AMX intrinsics are not stable.

use std::{arch::asm, sync::OnceLock};

use super::bf16_pack::{PANEL, ROWS};

/// Depth per tile step: 32 bf16 (one 64-byte tile row).
const DEPTH_STEP: usize = 32;
/// `arch_prctl` requests: `ARCH_REQ_XCOMP_PERM` for `XFEATURE_XTILEDATA`.
const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
const XFEATURE_XTILEDATA: i64 = 18;
const SYS_ARCH_PRCTL: i64 = 158;

/// Whether this CPU has AMX-BF16 tiles and Linux lets this process use them (asked once).
pub(super) fn available() -> bool {
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

/// The tile configuration of this thread while it lives: tiles 0–7 of 16 rows × 64 bytes.
pub(super) struct Tiles;

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
    pub(super) fn configure() -> Self {
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
pub(super) unsafe fn kernel(
    chunk: &[u16],
    depth: usize,
    left: &[u32],
    right: &[u32],
    block: &mut [f32],
) {
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
