//! Tests of the interval arithmetic and of best-fit allocation with exclusions.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::auto::best_fit_excluding;
use super::intervals::subtract;
use crate::blocks::FreeBlocks;

#[test]
fn subtract_cuts_holes() {
    assert_eq!(
        subtract(&[(1, 10)], &[(3, 4), (4, 5), (9, 12)]),
        [(1, 2), (6, 8)]
    );
    assert_eq!(
        subtract(&[(1, 10), (20, 30)], &[(0, 1), (25, 25)]),
        [(2, 10), (20, 24), (26, 30)]
    );
    assert_eq!(subtract(&[(0, u128::MAX)], &[(0, u128::MAX)]), []);
    assert_eq!(subtract(&[(5, 5)], &[]), [(5, 5)]);
}

proptest! {
    #[test]
    fn subtract_agrees_with_sets(
        base in prop::collection::btree_set(0u128..80, 0..60),
        blocked in prop::collection::vec((0u128..80, 0u128..6), 0..12),
    ) {
        let mut base_iv: Vec<(u128, u128)> = Vec::new();
        for &a in &base {
            match base_iv.last_mut() {
                Some(l) if l.1 + 1 == a => l.1 = a,
                _ => base_iv.push((a, a)),
            }
        }
        let mut blocked: Vec<(u128, u128)> = blocked.into_iter().map(|(a, n)| (a, a + n)).collect();
        blocked.sort_unstable();
        let got: BTreeSet<u128> = subtract(&base_iv, &blocked).into_iter().flat_map(|(a, b)| a..=b).collect();
        let want: BTreeSet<u128> = base.iter().copied().filter(|a| !blocked.iter().any(|&(lo, hi)| lo <= *a && *a <= hi)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn best_fit_excluding_agrees_with_a_rebuilt_index(
        free in prop::collection::btree_set(0u128..64, 0..50),
        excluded in prop::collection::btree_set(0u128..64, 0..8),
        count in 0usize..70,
    ) {
        let iv = |set: &BTreeSet<u128>| {
            let mut v: Vec<(u128, u128)> = Vec::new();
            for &a in set {
                match v.last_mut() {
                    Some(l) if l.1 + 1 == a => l.1 = a,
                    _ => v.push((a, a)),
                }
            }
            v
        };
        let blocks = FreeBlocks::from_sorted(iv(&free));
        let excluded: Vec<u128> = excluded.into_iter().collect();
        let got = best_fit_excluding(&blocks, &excluded, count);
        let remaining: BTreeSet<u128> = free.iter().copied().filter(|a| excluded.binary_search(a).is_err()).collect();
        let reference = FreeBlocks::from_sorted(iv(&remaining));
        let want: Vec<u128> = reference.best_fit().flat_map(|(a, b)| a..=b).take(count).collect();
        prop_assert_eq!(got, want);
    }
}
