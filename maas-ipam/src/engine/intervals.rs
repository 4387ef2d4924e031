//! Arithmetic on sorted, disjoint address intervals (addresses as `u128`).

/// Whether `a` lies in one of the sorted, disjoint intervals.
pub(crate) fn in_universe(universe: &[(u128, u128)], a: u128) -> bool {
    range_holding(universe, a).is_some()
}

/// The first address of part `index` of `of` equal runs of the sorted, disjoint intervals'
/// addresses (`None` when there are none).
pub(super) fn part_start(intervals: &[(u128, u128)], index: u32, of: u32) -> Option<u128> {
    let of = of.max(1);
    let index = index.min(of - 1);
    let total = intervals.iter().fold(0u128, |sum, &(lo, hi)| {
        sum.saturating_add(hi - lo).saturating_add(1)
    });
    let mut skip = total / u128::from(of) * u128::from(index);
    for &(lo, hi) in intervals {
        let len = (hi - lo).saturating_add(1);
        if skip < len {
            return Some(lo + skip);
        }
        skip -= len;
    }
    intervals.first().map(|&(lo, _)| lo)
}

/// The interval of the sorted, disjoint intervals that holds `a`.
pub(super) fn range_holding(intervals: &[(u128, u128)], a: u128) -> Option<(u128, u128)> {
    let i = intervals.partition_point(|&(lo, _)| lo <= a);
    (i > 0 && intervals[i - 1].1 >= a).then(|| intervals[i - 1])
}

/// The parts of sorted intervals that lie within `bounds`.
pub(super) fn clip(intervals: &[(u128, u128)], (lo, hi): (u128, u128)) -> Vec<(u128, u128)> {
    intervals
        .iter()
        .filter(|&&(a, b)| a <= hi && b >= lo)
        .map(|&(a, b)| (a.max(lo), b.min(hi)))
        .collect()
}

/// `base` (sorted, disjoint) minus `blocked` (sorted by start, may overlap).
pub(crate) fn subtract(base: &[(u128, u128)], blocked: &[(u128, u128)]) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(lo, hi) in base {
        let mut start = lo;
        // Skip blockers that end before this interval.
        while j < blocked.len() && blocked[j].1 < lo {
            j += 1;
        }
        let mut k = j;
        let mut done = false;
        while k < blocked.len() && blocked[k].0 <= hi {
            let (b_lo, b_hi) = blocked[k];
            if b_lo > start {
                out.push((start, b_lo - 1));
            }
            if b_hi >= hi {
                done = true;
                break;
            }
            start = start.max(b_hi + 1);
            k += 1;
        }
        if !done && start <= hi {
            out.push((start, hi));
        }
    }
    out
}
