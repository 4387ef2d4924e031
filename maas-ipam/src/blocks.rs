//! A set of free addresses kept as disjoint blocks, indexed by start and by size.
//!
//! Every operation is O(log b) in the number of blocks b, whatever the number of addresses: an
//! IPv6 /64 with nothing used is one block, exactly like an IPv4 /30.

use std::collections::{BTreeMap, BTreeSet};

/// Disjoint, non-adjacent inclusive blocks of free addresses (as integers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FreeBlocks {
    /// start -> end
    by_start: BTreeMap<u128, u128>,
    /// (size - 1, start): ordered smallest first, lowest start first among equals. Sizes are
    /// kept minus one so that a block of 2^128 addresses cannot overflow.
    by_size: BTreeSet<(u128, u128)>,
    /// Number of free addresses, saturating.
    total: u128,
}

impl FreeBlocks {
    /// Blocks from sorted intervals; overlapping or adjacent ones are merged.
    pub(crate) fn from_sorted(intervals: impl IntoIterator<Item = (u128, u128)>) -> Self {
        let mut merged: Vec<(u128, u128)> = Vec::new();
        for (lo, hi) in intervals {
            debug_assert!(lo <= hi);
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        let mut blocks = Self::default();
        for (lo, hi) in merged {
            blocks.put(lo, hi);
        }
        blocks
    }

    fn put(&mut self, lo: u128, hi: u128) {
        self.by_start.insert(lo, hi);
        self.by_size.insert((hi - lo, lo));
        self.total = self.total.saturating_add(hi - lo).saturating_add(1);
    }

    fn take(&mut self, lo: u128) -> Option<u128> {
        let hi = self.by_start.remove(&lo)?;
        self.by_size.remove(&(hi - lo, lo));
        self.total = self.total.saturating_sub(hi - lo).saturating_sub(1);
        Some(hi)
    }

    /// The block holding `a`.
    pub(crate) fn block_of(&self, a: u128) -> Option<(u128, u128)> {
        let (&lo, &hi) = self.by_start.range(..=a).next_back()?;
        (a <= hi).then_some((lo, hi))
    }

    /// Whether `a` is free.
    pub(crate) fn contains(&self, a: u128) -> bool {
        self.block_of(a).is_some()
    }

    /// Marks `a` used; false if it was not free.
    pub(crate) fn remove(&mut self, a: u128) -> bool {
        let Some((lo, hi)) = self.block_of(a) else {
            return false;
        };
        self.take(lo);
        if lo < a {
            self.put(lo, a - 1);
        }
        if a < hi {
            self.put(a + 1, hi);
        }
        true
    }

    /// Marks `a` free, merging with its neighbours; false if it was already free.
    pub(crate) fn insert(&mut self, a: u128) -> bool {
        if self.contains(a) {
            return false;
        }
        let mut lo = a;
        let mut hi = a;
        if let Some(before) = a.checked_sub(1)
            && let Some((b_lo, _)) = self.block_of(before)
        {
            self.take(b_lo);
            lo = b_lo;
        }
        if let Some(after) = a.checked_add(1)
            && let Some(a_hi) = self.by_start.get(&after).copied()
        {
            self.take(after);
            hi = a_hi;
        }
        self.put(lo, hi);
        true
    }

    /// Number of free addresses.
    pub(crate) const fn total(&self) -> u128 {
        self.total
    }

    /// The lowest free address.
    pub(crate) fn lowest(&self) -> Option<u128> {
        self.by_start.keys().next().copied()
    }

    /// The lowest free address at or above `a`.
    pub(crate) fn first_at_or_after(&self, a: u128) -> Option<u128> {
        if self.contains(a) {
            return Some(a);
        }
        self.by_start.range(a..).next().map(|(&lo, _)| lo)
    }

    /// The largest block, lowest start among equals.
    pub(crate) fn largest(&self) -> Option<(u128, u128)> {
        let &(size, _) = self.by_size.iter().next_back()?;
        let &(_, lo) = self.by_size.range((size, 0)..).next()?;
        Some((lo, lo + size))
    }

    /// Blocks in best-fit order: smallest first, lowest start among equals.
    pub(crate) fn best_fit(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.by_size.iter().map(|&(size, lo)| (lo, lo + size))
    }

    /// All blocks in address order.
    #[cfg(test)]
    pub(crate) fn blocks(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.by_start.iter().map(|(&lo, &hi)| (lo, hi))
    }

    /// Number of blocks.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_start.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet as Set;

    fn naive_blocks(free: &Set<u128>) -> Vec<(u128, u128)> {
        let mut out: Vec<(u128, u128)> = Vec::new();
        for &a in free {
            match out.last_mut() {
                Some(last) if last.1 + 1 == a => last.1 = a,
                _ => out.push((a, a)),
            }
        }
        out
    }

    #[test]
    fn split_and_merge() {
        let mut b = FreeBlocks::from_sorted([(1, 6)]);
        assert!(b.remove(3));
        assert_eq!(b.blocks().collect::<Vec<_>>(), [(1, 2), (4, 6)]);
        assert_eq!(b.best_fit().next(), Some((1, 2)));
        assert_eq!(b.total(), 5);
        assert!(!b.remove(3));
        assert!(b.insert(3));
        assert_eq!(b.blocks().collect::<Vec<_>>(), [(1, 6)]);
        assert!(!b.insert(3));
        assert_eq!(b.largest(), Some((1, 6)));
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut b = FreeBlocks::from_sorted([(0, u128::MAX)]);
        assert_eq!(b.total(), u128::MAX);
        assert!(b.remove(0) && b.remove(u128::MAX));
        assert_eq!(b.blocks().collect::<Vec<_>>(), [(1, u128::MAX - 1)]);
        assert!(b.insert(u128::MAX) && b.insert(0));
        assert_eq!(b.len(), 1);
    }

    proptest! {
        #[test]
        fn agrees_with_a_set(ops in prop::collection::vec((any::<bool>(), 0u128..64), 0..200)) {
            let mut b = FreeBlocks::from_sorted([(10, 40)]);
            let mut set: Set<u128> = (10..=40).collect();
            for (insert, a) in ops {
                if insert {
                    prop_assert_eq!(b.insert(a), set.insert(a));
                } else {
                    prop_assert_eq!(b.remove(a), set.remove(&a));
                }
                let blocks = naive_blocks(&set);
                prop_assert_eq!(b.blocks().collect::<Vec<_>>(), blocks.clone());
                prop_assert_eq!(b.total(), set.len() as u128);
                let mut by_fit = blocks.clone();
                by_fit.sort_by_key(|&(lo, hi)| (hi - lo, lo));
                prop_assert_eq!(b.best_fit().collect::<Vec<_>>(), by_fit);
                let largest = blocks.iter().copied().max_by_key(|&(lo, hi)| (hi - lo, u128::MAX - lo));
                prop_assert_eq!(b.largest(), largest);
                prop_assert_eq!(b.lowest(), set.first().copied());
            }
        }
    }
}
