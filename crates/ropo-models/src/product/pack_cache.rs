//! Packed bf16 copies of the `b` operands that come back, so that a frozen weight (LoRA's base,
//! a scoring pass's model) is rounded and packed for the bf16 kernels once, not at every product.
//!
//! An operand is known by its storage (a `Weak` to burn-flex's shared buffer) and its view
//! (offset, strides, shape). The first product with an operand only notes it; the second packs
//! it and keeps the packing, so the one-off operands of a backward pass (a gradient, an
//! activation) are never kept. A `Weak` keeps the buffer's identity without keeping it alive,
//! and burn-flex cannot write in place to a buffer a `Weak` points at (`Arc::get_mut` refuses,
//! `Arc::make_mut` moves it), so a kept packing always matches its operand; one whose operand
//! is gone is dropped at the next product.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use burn::{backend::flex::FlexTensor, tensor::Bytes};

use super::bf16::PackedB;

/// Bytes of packings kept at most; past it the least recently used go. SmolLM2-135M's weights
/// in both orientations (forward and backward) take 0.54 GB.
const CAPACITY_BYTES: usize = 1 << 30;

/// Where an operand's elements lie in its buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
struct View {
    offset: usize,
    strides: [isize; 2],
    dims: [usize; 2],
}

/// One operand seen before, and its packing from the second time on.
struct Entry {
    source: Weak<Bytes>,
    view: View,
    packed: Option<Arc<PackedB>>,
    last_use: u64,
}

/// The operands seen, and a clock for recency.
struct Cache {
    entries: Vec<Entry>,
    clock: u64,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    entries: Vec::new(),
    clock: 0,
});

/// The packing of `tensor` (`[k, n]` f32): kept from an earlier product, else made by `pack`
/// (outside the lock, since it runs in parallel) and kept when this operand was seen before.
pub(super) fn packed(tensor: &FlexTensor, pack: impl FnOnce() -> PackedB) -> Arc<PackedB> {
    let source = tensor.data_arc();
    let layout = tensor.layout();
    let view = View {
        offset: layout.start_offset(),
        strides: [layout.strides()[0], layout.strides()[1]],
        dims: [layout.shape()[0], layout.shape()[1]],
    };
    let seen = {
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        cache.clock += 1;
        let clock = cache.clock;
        cache
            .entries
            .retain(|entry| entry.source.strong_count() > 0);
        match cache.find(&source, view) {
            Some(entry) => {
                entry.last_use = clock;
                if let Some(packed) = &entry.packed {
                    return Arc::clone(packed);
                }
                true
            }
            None => {
                cache.entries.push(Entry {
                    source: Arc::downgrade(&source),
                    view,
                    packed: None,
                    last_use: clock,
                });
                false
            }
        }
    };
    let packed = Arc::new(pack());
    if seen {
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = cache.find(&source, view) {
            entry.packed = Some(Arc::clone(&packed));
        }
        cache.keep_within(CAPACITY_BYTES);
    }
    packed
}

impl Cache {
    /// The entry of this buffer and view.
    fn find(&mut self, source: &Arc<Bytes>, view: View) -> Option<&mut Entry> {
        self.entries
            .iter_mut()
            .find(|entry| entry.view == view && Weak::as_ptr(&entry.source) == Arc::as_ptr(source))
    }

    /// Drops the least recently used packings until the rest hold at most `capacity` bytes.
    fn keep_within(&mut self, capacity: usize) {
        let bytes = |entries: &[Entry]| -> usize {
            entries
                .iter()
                .filter_map(|entry| entry.packed.as_ref())
                .map(|packed| packed.bytes())
                .sum()
        };
        while bytes(&self.entries) > capacity {
            let oldest = self
                .entries
                .iter_mut()
                .filter(|entry| entry.packed.is_some())
                .min_by_key(|entry| entry.last_use);
            match oldest {
                Some(entry) => entry.packed = None,
                None => break,
            }
        }
    }
}
