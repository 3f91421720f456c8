//! A bf16 matrix product on the CPU's matrix units: `C = A·B` with `A` and `B` rounded to bf16
//! as they are packed and every sum kept in f32, as PyTorch's bf16 autocast computes a product
//! on the CPU. Two kernels share the packing and the driver here, the faster one this CPU has
//! ([`Unit`], asked once): Intel's AMX tiles (`amx.rs`, Sapphire Rapids and later) and AVX-512
//! BF16 dot products (`dot_bf16.rs`, AMD Zen 4 and later, Intel Cooper Lake).
//!
//! `A` is packed once into chunks of 32 rows (`[32, kp]` bf16, `kp` the depth rounded up to the
//! unit's step: 32 for the tiles, 2 for the dot products), `B` into panels of 16 columns in the
//! pair layout both kernels read (`[kp / 2, 16]` words, each word two bf16 of consecutive
//! depths; [`PackedB`], which the caller may keep for a frozen weight). One call of a kernel
//! multiplies a chunk by two panels (or, on the dot products, one where the second holds no
//! columns) into a `[32, 32]` block of `C` over the whole depth. Chunks of rows run in parallel
//! (rayon).

use std::{mem::MaybeUninit, ops::Range, sync::OnceLock};

use rayon::prelude::*;

pub use super::bf16_pack::Strided;
use super::bf16_pack::{pack_panel, pack_rows, PANEL, ROWS};
use super::{amx, dot_bf16};

/// Bytes of packed `B` per block of columns, so that a block stays in a core's L2 cache.
const B_BLOCK_BYTES: usize = 1 << 20;

/// The matrix unit a bf16 product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// AMX tiles (`tdpbf16ps`): a `[16, 32] · [32, 16]` product per instruction.
    Tiles,
    /// AVX-512 BF16 dot products (`vdpbf16ps`): 16 sums of two products per instruction.
    DotProducts,
}

impl Unit {
    /// The packed depth is a multiple of this: one 64-byte tile row (32 bf16) for the tiles,
    /// one pair for the dot products (so that a LoRA rank of 16 is not padded to 32).
    fn depth_step(self) -> usize {
        match self {
            Unit::Tiles => 32,
            Unit::DotProducts => 2,
        }
    }
}

/// The fastest bf16 unit this CPU has and lets ropo use (asked once), if any.
pub fn unit() -> Option<Unit> {
    static UNIT: OnceLock<Option<Unit>> = OnceLock::new();
    *UNIT.get_or_init(|| {
        if amx::available() {
            Some(Unit::Tiles)
        } else if dot_bf16::available() {
            Some(Unit::DotProducts)
        } else {
            None
        }
    })
}

/// Whether this CPU multiplies in bf16 on a matrix unit ([`unit`]).
pub fn available() -> bool {
    unit().is_some()
}

/// Whether this CPU has `unit` and lets ropo use it.
pub fn present(unit: Unit) -> bool {
    match unit {
        Unit::Tiles => amx::available(),
        Unit::DotProducts => dot_bf16::available(),
    }
}

/// `B` (`[k, n]`) rounded to bf16 and packed for the kernels: panels of 16 columns in the pair
/// layout (`[depth / 2, 16]` words, `depth` the depth rounded up to the unit's step), an even
/// number of them, the columns past `n` zero. Packed once, it serves any number of products (a
/// frozen weight's, step after step).
pub struct PackedB {
    depth: usize,
    columns: usize,
    panels: Vec<u32>,
}

impl PackedB {
    /// Packs `b` (`[k, n]`) for this CPU's fastest unit, panels in parallel. Call only when
    /// [`available`].
    pub fn new(b: Strided, k: usize, n: usize) -> Self {
        Self::on(unit().expect("this CPU has no bf16 matrix unit"), b, k, n)
    }

    /// Packs `b` (`[k, n]`) for `unit`, panels in parallel.
    pub fn on(unit: Unit, b: Strided, k: usize, n: usize) -> Self {
        let step = unit.depth_step();
        let depth = k.div_ceil(step).max(1) * step;
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

    /// Columns of `b` (`n`).
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Bytes the packed panels hold.
    pub fn bytes(&self) -> usize {
        self.panels.len() * size_of::<u32>()
    }

    /// Depth (`k` rounded up to the unit's step).
    pub(super) fn depth(&self) -> usize {
        self.depth
    }

    /// The two panels of columns `64 pair ..` restricted to the depths `depths` (which start
    /// and end at multiples of 2 within [`Self::depth`]): `[depths.len() / 2, 16]` words each,
    /// the `b` of a product of depth `depths.len()`.
    pub(super) fn pair_at_depths(&self, pair: usize, depths: Range<usize>) -> [&[u32]; 2] {
        let panel_len = self.depth / 2 * PANEL;
        let words = depths.start / 2 * PANEL..depths.end / 2 * PANEL;
        [2 * pair, 2 * pair + 1].map(|p| &self.panels[p * panel_len..][words.clone()])
    }
}

/// `a · b` (`[m, n]`, row-major), `a` `[m, k]` rounded to bf16 (to nearest, ties to even) and
/// `b` packed, the sums in f32, on this CPU's fastest unit. Call only when [`available`].
pub fn product(m: usize, k: usize, a: Strided, b: &PackedB) -> Vec<f32> {
    let unit = unit().expect("this CPU has no bf16 matrix unit");
    product_on(unit, m, k, a, b)
}

/// [`product`] on `unit`, which must be [`present`].
pub fn product_on(unit: Unit, m: usize, k: usize, a: Strided, b: &PackedB) -> Vec<f32> {
    let n = b.columns;
    let mut c = Vec::with_capacity(m * n);
    if m > 0 && n > 0 {
        product_into(unit, m, k, a, b, &mut c.spare_capacity_mut()[..m * n]);
        // SAFETY: `product_into` wrote every element of the `[m, n]` product: each chunk of
        // rows its live rows, each pair of panels its columns.
        unsafe { c.set_len(m * n) };
    }
    c
}

/// Writes `a · b` into `c` (`[m, n]`, every element written, none read). After each block it
/// asks the cache for the next block's place in `c` ([`prefetch_block_row`]), so that the
/// kernel's next call hides the misses of those writes (a block's 32 rows lie `n` floats
/// apart, too many streams for the hardware's prefetchers; the writes stalled on them for 7%
/// of a scoring pass).
fn product_into(
    unit: Unit,
    m: usize,
    k: usize,
    a: Strided,
    b: &PackedB,
    c: &mut [MaybeUninit<f32>],
) {
    let n = b.columns;
    let mut rows: Vec<&mut [MaybeUninit<f32>]> = c.chunks_mut(ROWS * n).collect();
    for_each_block(unit, m, k, a, b, 0..n, &mut rows, |rows, block| {
        for r in 0..block.live {
            let row = &mut rows[r * n..][..n];
            for (out, &sum) in row[block.column..].iter_mut().zip(block.row(r)) {
                out.write(sum);
            }
            prefetch_block_row(row, block.column + 2 * PANEL);
        }
    });
}

/// Asks the cache for the lines of a block's row in `row` from `column` on (32 floats, two
/// lines), where they lie inside `row`: a hint, with no effect on results.
pub(super) fn prefetch_block_row(row: &[MaybeUninit<f32>], column: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for at in [column, column + PANEL] {
        if let Some(value) = row.get(at) {
            // SAFETY: a prefetch reads nothing and faults on no address; SSE is part of x86-64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast()) }
        }
    }
}

/// Rows `0..live` of `block` (`[32, 32]` f32) `= chunk · [left right]` over `depth` on `unit`:
/// `chunk` `[32, depth]` bf16, each panel `[depth / 2, 16]` words; where the block's `width` is
/// 16 or less the dot products leave the right panel out.
///
/// # Safety
/// `unit` must be [`present`] and, for the tiles, configured on this thread
/// (`amx::Tiles::configure`); the slices must be those sizes, `depth` a positive multiple of
/// the unit's step and `live` at most 32.
pub(super) unsafe fn multiply_block(
    unit: Unit,
    chunk: &[u16],
    depth: usize,
    live: usize,
    [left, right]: [&[u32]; 2],
    width: usize,
    block: &mut [f32; ROWS * 2 * PANEL],
) {
    match unit {
        Unit::Tiles => amx::kernel(chunk, depth, left, right, block),
        Unit::DotProducts if width <= PANEL => dot_bf16::one_panel(chunk, depth, live, left, block),
        Unit::DotProducts => dot_bf16::two_panels(chunk, depth, live, left, right, block),
    }
}

/// One block of `a · b` as a kernel left it: rows `0..live` of the chunk, columns `column ..
/// column + width` of the product (`width` ≤ 32).
pub(super) struct Block<'a> {
    /// Rows of the chunk inside the product.
    pub live: usize,
    /// The product's column of the block's first.
    pub column: usize,
    /// Columns of the block inside the product.
    pub width: usize,
    /// `[32, 32]` f32 sums, row-major.
    sums: &'a [f32],
}

impl Block<'_> {
    /// Row `r`'s `width` sums.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.sums[r * 2 * PANEL..r * 2 * PANEL + self.width]
    }
}

/// Runs `unit`'s kernel over every `[32, 32]` block of `a · b` in `columns` (which start at a
/// multiple of 32) and hands each to `visit` with the state of its chunk of rows (`states[i]`
/// for rows `32 i ..`, one per chunk): chunks in parallel, one block of columns of `b` (about 1
/// MiB of panels, so that it stays in a core's L2 cache) at a time, the blocks of one chunk in
/// column order.
#[allow(clippy::too_many_arguments)]
pub(super) fn for_each_block<S: Send>(
    unit: Unit,
    m: usize,
    k: usize,
    a: Strided,
    b: &PackedB,
    columns: Range<usize>,
    states: &mut [S],
    visit: impl Fn(&mut S, Block<'_>) + Sync,
) {
    assert!(present(unit), "this CPU has no {unit:?}");
    assert!(k <= b.depth, "the depth of a is that of b");
    assert!(
        b.depth.is_multiple_of(unit.depth_step()),
        "b is packed for another unit"
    );
    assert_eq!(
        states.len(),
        m.div_ceil(ROWS),
        "one state per chunk of rows"
    );
    assert!(
        columns.start.is_multiple_of(2 * PANEL) && columns.end <= b.columns,
        "columns {columns:?} start a pair of panels of b's {}",
        b.columns
    );
    let depth = b.depth;
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
    for first in columns.clone().step_by(block_columns) {
        let pairs = block_columns.min(columns.end - first).div_ceil(2 * PANEL);
        let panels = &b.panels[first / PANEL * panel_len..];
        let chunks = &chunks;
        states.par_iter_mut().enumerate().for_each(|(i, state)| {
            let live = ROWS.min(m - i * ROWS);
            let chunk = &chunks[i * ROWS * depth..(i + 1) * ROWS * depth];
            let mut block = [0f32; ROWS * 2 * PANEL];
            let _tiles = (unit == Unit::Tiles).then(amx::Tiles::configure);
            for pair in 0..pairs {
                let left = &panels[2 * pair * panel_len..(2 * pair + 1) * panel_len];
                let right = &panels[(2 * pair + 1) * panel_len..(2 * pair + 2) * panel_len];
                let column = first + pair * 2 * PANEL;
                let width = (2 * PANEL).min(columns.end - column);
                // SAFETY: `unit` is present (checked above), and tiles are configured on this
                // thread for it; `chunk` holds 32 rows of `depth` (a multiple of the unit's
                // step), each panel `depth / 2` rows of 16 words, `block` 32 × 32 floats,
                // `live` ≤ 32.
                unsafe {
                    multiply_block(unit, chunk, depth, live, [left, right], width, &mut block)
                };
                let sums = &block[..];
                visit(
                    state,
                    Block {
                        live,
                        column,
                        width,
                        sums,
                    },
                );
            }
        });
    }
}
