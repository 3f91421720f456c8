//! The order in which a trainer visits examples: shuffled from a seed, grouped by length so a
//! padded batch wastes little, and resumable from a saved cursor.

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use serde::{Deserialize, Serialize};

/// Where a [`BatchSampler`] is: the epoch and the number of batches already taken in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchCursor {
    /// Completed passes over the data.
    pub epoch: u64,
    /// Batches already taken in the current epoch.
    pub batch: usize,
}

/// Deals indices `0..lengths.len()` into batches of `batch_size`, epoch after epoch.
///
/// Each epoch shuffles with `seed + epoch`, cuts the shuffled list into chunks of
/// `batch_size × bucket` examples, sorts each chunk by length and splits it into batches, then
/// shuffles the batches: examples of similar length share a batch, yet every epoch's order is
/// random. The order depends only on the seed, the lengths and the epoch, so a cursor is all
/// that must be saved to resume.
#[derive(Debug, Clone)]
pub struct BatchSampler {
    lengths: Vec<usize>,
    batch_size: usize,
    bucket: usize,
    seed: u64,
    cursor: BatchCursor,
    order: Vec<Vec<usize>>,
}

impl BatchSampler {
    /// A sampler at the start of epoch 0. `bucket` is how many batches' worth of examples are
    /// sorted by length together (1 turns length grouping off).
    pub fn new(lengths: Vec<usize>, batch_size: usize, bucket: usize, seed: u64) -> Self {
        Self::resume(lengths, batch_size, bucket, seed, BatchCursor::default())
    }

    /// A sampler positioned at `cursor`, as one saved by [`BatchSampler::cursor`].
    pub fn resume(
        lengths: Vec<usize>,
        batch_size: usize,
        bucket: usize,
        seed: u64,
        cursor: BatchCursor,
    ) -> Self {
        let mut sampler = Self {
            lengths,
            batch_size: batch_size.max(1),
            bucket: bucket.max(1),
            seed,
            cursor,
            order: Vec::new(),
        };
        sampler.order = sampler.epoch_order(cursor.epoch);
        sampler
    }

    /// Where the sampler is; restoring it with [`BatchSampler::resume`] continues identically.
    pub fn cursor(&self) -> BatchCursor {
        self.cursor
    }

    /// Number of batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.order.len()
    }

    /// The next batch's indices (starting a new epoch when one ends); empty only when there is
    /// no data.
    pub fn next_batch(&mut self) -> Vec<usize> {
        if self.order.is_empty() {
            return Vec::new();
        }
        if self.cursor.batch >= self.order.len() {
            self.cursor = BatchCursor {
                epoch: self.cursor.epoch + 1,
                batch: 0,
            };
            self.order = self.epoch_order(self.cursor.epoch);
        }
        let batch = self.order[self.cursor.batch].clone();
        self.cursor.batch += 1;
        batch
    }

    fn epoch_order(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_add(epoch));
        let mut indices: Vec<usize> = (0..self.lengths.len()).collect();
        indices.shuffle(&mut rng);
        let mut batches: Vec<Vec<usize>> = Vec::new();
        for chunk in indices.chunks(self.batch_size * self.bucket) {
            let mut chunk = chunk.to_vec();
            chunk.sort_by_key(|i| self.lengths[*i]);
            batches.extend(chunk.chunks(self.batch_size).map(<[usize]>::to_vec));
        }
        batches.shuffle(&mut rng);
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths() -> Vec<usize> {
        (0..103).map(|i| (i * 37) % 50 + 1).collect()
    }

    #[test]
    fn an_epoch_visits_every_example_once() {
        let mut sampler = BatchSampler::new(lengths(), 8, 4, 5);
        let mut seen: Vec<usize> = (0..sampler.batches_per_epoch())
            .flat_map(|_| sampler.next_batch())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..103).collect::<Vec<_>>());
    }

    #[test]
    fn resuming_from_a_cursor_continues_the_same_sequence() {
        let mut straight = BatchSampler::new(lengths(), 8, 4, 5);
        let all: Vec<Vec<usize>> = (0..40).map(|_| straight.next_batch()).collect();
        let mut first = BatchSampler::new(lengths(), 8, 4, 5);
        let head: Vec<Vec<usize>> = (0..17).map(|_| first.next_batch()).collect();
        let mut resumed = BatchSampler::resume(lengths(), 8, 4, 5, first.cursor());
        let tail: Vec<Vec<usize>> = (0..23).map(|_| resumed.next_batch()).collect();
        assert_eq!([head, tail].concat(), all);
    }

    #[test]
    fn bucketing_groups_similar_lengths() {
        let lengths = lengths();
        let spread = |bucket| {
            let mut sampler = BatchSampler::new(lengths.clone(), 8, bucket, 1);
            (0..sampler.batches_per_epoch())
                .map(|_| {
                    let batch = sampler.next_batch();
                    let l: Vec<usize> = batch.iter().map(|i| lengths[*i]).collect();
                    l.iter().max().unwrap() - l.iter().min().unwrap()
                })
                .sum::<usize>()
        };
        assert!(spread(8) * 2 < spread(1), "{} vs {}", spread(8), spread(1));
    }
}
