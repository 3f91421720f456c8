//! A seeded train/held-out split: the same seed and length always hold out the same items.

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

/// Items with their index in the list they came from.
pub type Indexed<T> = Vec<(usize, T)>;

/// Splits `items` by a shuffle drawn from `seed`: the first `round(fraction · n)` of the
/// shuffled order are held out, the rest are for training, both in the shuffled order and
/// each with its index in `items`. Returns `(held_out, train)`.
pub fn held_out<T>(items: Vec<T>, fraction: f64, seed: u64) -> (Indexed<T>, Indexed<T>) {
    let mut indexed: Indexed<T> = items.into_iter().enumerate().collect();
    indexed.shuffle(&mut StdRng::seed_from_u64(seed));
    let held = ((indexed.len() as f64) * fraction).round() as usize;
    let train = indexed.split_off(held.min(indexed.len()));
    (indexed, train)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_out_the_rounded_fraction_and_keeps_every_item_once() {
        let (held, train) = held_out((0..10).collect(), 0.25, 3);
        assert_eq!(held.len(), 3);
        assert_eq!(train.len(), 7);
        let mut all: Vec<usize> = held
            .iter()
            .chain(&train)
            .map(|(i, v)| {
                assert_eq!(i, v);
                *i
            })
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(held_out((0..10).collect::<Vec<usize>>(), 0.25, 3).0, held);
        assert!(held_out(vec![1, 2], 0.0, 3).0.is_empty());
    }
}
