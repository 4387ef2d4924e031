//! AUTO assignment: the first address of the smallest free block, avoiding DISCOVERED
//! addresses while free ones remain.

use std::collections::BTreeMap;
use std::net::IpAddr;

use maas_net::SubnetId;
use maas_net::ip::{self, Family};

use super::intervals::in_universe;
use super::{AutoRequest, Event, Ipam};
use crate::blocks::FreeBlocks;
use crate::{AddressKind, Error, Record, Timestamp};

impl Ipam {
    /// The addresses [`allocate`](Self::allocate) would pick, without recording anything.
    pub fn next_addresses(
        &self,
        subnet: SubnetId,
        request: &AutoRequest,
    ) -> Result<Vec<IpAddr>, Error> {
        Ok(self
            .choose(subnet, request)?
            .into_iter()
            .map(|(ip, _)| ip)
            .collect())
    }

    /// Allocates addresses for automatic assignment and records them as AUTO.
    ///
    /// Returns up to `request.count` addresses, in MAAS's order: the first address of the
    /// smallest free block, then the next, and so on. When no block is free, least recently
    /// seen DISCOVERED addresses are reused, each with an [`Event::ReusedDiscovered`]; when
    /// none is left either, the error is `"No more IPs available in subnet: <cidr>."`
    pub fn allocate(
        &mut self,
        subnet: SubnetId,
        request: &AutoRequest,
        now: Timestamp,
    ) -> Result<Vec<IpAddr>, Error> {
        let chosen = self.choose(subnet, request)?;
        let mut out = Vec::with_capacity(chosen.len());
        for (ip, reused) in chosen {
            if let Some(old) = reused {
                self.events.push_back(Event::ReusedDiscovered {
                    subnet,
                    ip,
                    mac: old.mac,
                    last_seen: old.updated,
                });
            }
            self.put_held(Record {
                ip,
                subnet,
                kind: AddressKind::Auto,
                mac: request.mac,
                owner: request.owner.clone(),
                lease: None,
                created: now,
                updated: now,
            });
            out.push(ip);
        }
        Ok(out)
    }

    /// The addresses to hand out, each with the DISCOVERED record it reuses, if any.
    fn choose(
        &self,
        subnet: SubnetId,
        request: &AutoRequest,
    ) -> Result<Vec<(IpAddr, Option<Record>)>, Error> {
        let pools = self
            .pools
            .get(&subnet)
            .ok_or(Error::UnknownSubnet(subnet))?;
        let mut excluded: Vec<u128> = request
            .exclude
            .iter()
            .filter(|ip| Family::of(**ip) == pools.family)
            .map(|ip| ip::bits(*ip).1)
            .collect();
        excluded.sort_unstable();
        excluded.dedup();
        let picks = best_fit_excluding(&pools.auto_free, &excluded, request.count);
        let mut out: Vec<(IpAddr, Option<Record>)> = picks
            .into_iter()
            .map(|a| (ip::from_bits(pools.family, a), None))
            .collect();
        if out.len() < request.count {
            // Nothing free: fall back to addresses only seen on the wire, oldest first.
            for &(_, a) in &pools.discovered_age {
                if out.len() == request.count {
                    break;
                }
                let ip = ip::from_bits(pools.family, a);
                if excluded.binary_search(&a).is_ok()
                    || self.held.contains_key(&ip)
                    || !in_universe(&pools.auto_universe, a)
                {
                    continue;
                }
                out.push((ip, self.discovered.get(&ip).cloned()));
            }
        }
        if out.is_empty() && request.count > 0 {
            return Err(Error::Exhausted { cidr: pools.cidr });
        }
        Ok(out)
    }
}

/// The first `count` addresses in best-fit order, as if the `excluded` addresses (sorted) were
/// not free. Only blocks that hold an excluded address are split; the rest are read straight
/// from the size index, so the cost does not grow with the number of blocks.
pub(super) fn best_fit_excluding(free: &FreeBlocks, excluded: &[u128], count: usize) -> Vec<u128> {
    let mut affected: BTreeMap<u128, u128> = BTreeMap::new();
    for &e in excluded {
        if let Some((lo, hi)) = free.block_of(e) {
            affected.insert(lo, hi);
        }
    }
    let mut pieces: Vec<(u128, u128)> = Vec::new();
    for (&lo, &hi) in &affected {
        let mut start = lo;
        let from = excluded.partition_point(|&e| e < lo);
        for &e in excluded[from..].iter().take_while(|&&e| e <= hi) {
            if e > start {
                pieces.push((start, e - 1));
            }
            start = e.saturating_add(1);
            if e == u128::MAX {
                start = hi.saturating_add(1);
            }
        }
        if start <= hi && !(start == 0 && hi == u128::MAX && lo != 0) {
            pieces.push((start, hi));
        }
    }
    pieces.sort_unstable_by_key(|&(lo, hi)| (hi - lo, lo));
    let mut pieces = pieces.into_iter().peekable();
    let mut whole = free
        .best_fit()
        .filter(|(lo, _)| !affected.contains_key(lo))
        .peekable();
    let mut out = Vec::with_capacity(count.min(1024));
    while out.len() < count {
        let take_piece = match (pieces.peek(), whole.peek()) {
            (Some(p), Some(w)) => (p.1 - p.0, p.0) <= (w.1 - w.0, w.0),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let Some((lo, hi)) = (if take_piece {
            pieces.next()
        } else {
            whole.next()
        }) else {
            break;
        };
        let mut a = lo;
        loop {
            out.push(a);
            if out.len() == count || a == hi {
                break;
            }
            a += 1;
        }
    }
    out
}
