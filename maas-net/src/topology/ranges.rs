//! IP ranges within subnets.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::RangeEnds;
use crate::ip::{self, Family};
use crate::{Error, IpRange, IpRangeId, IpRangeKind, Kind, Subnet, SubnetId};

use super::{Topology, not_found};

impl Topology {
    // ---- IP ranges -----------------------------------------------------------------------

    /// Add an IP range, checked against the subnet and its other ranges, gateway and DNS
    /// servers. A crate that tracks assigned addresses uses
    /// [`create_ip_range_with`](Self::create_ip_range_with) so that dynamic ranges avoid them.
    pub fn create_ip_range(&mut self, range: IpRange) -> Result<IpRangeId, Error> {
        self.create_ip_range_with(range, &[])
    }

    /// Add an IP range, as [`create_ip_range`](Self::create_ip_range), treating `in_use` as
    /// assigned addresses that a dynamic range may not cover.
    pub fn create_ip_range_with(
        &mut self,
        range: IpRange,
        in_use: &[IpAddr],
    ) -> Result<IpRangeId, Error> {
        self.insert_ip_range(None, range, in_use)
    }

    pub(crate) fn insert_ip_range(
        &mut self,
        id: Option<IpRangeId>,
        range: IpRange,
        in_use: &[IpAddr],
    ) -> Result<IpRangeId, Error> {
        let id = id.unwrap_or(IpRangeId::new(self.next.range));
        if self.ranges.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::IpRange,
                id: id.get(),
            });
        }
        self.check_range(id, &range, in_use)?;
        self.put_range(id, range);
        self.next.range = self.next.range.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change an IP range.
    pub fn update_ip_range(
        &mut self,
        id: IpRangeId,
        change: impl FnOnce(&mut IpRange),
    ) -> Result<(), Error> {
        self.update_ip_range_with(id, change, &[])
    }

    /// Change an IP range, treating `in_use` as assigned addresses that a dynamic range may
    /// not cover.
    pub fn update_ip_range_with(
        &mut self,
        id: IpRangeId,
        change: impl FnOnce(&mut IpRange),
        in_use: &[IpAddr],
    ) -> Result<(), Error> {
        let mut range = self
            .ranges
            .get(&id)
            .ok_or(not_found(Kind::IpRange, id.get()))?
            .clone();
        change(&mut range);
        self.check_range(id, &range, in_use)?;
        self.put_range(id, range);
        Ok(())
    }

    /// Delete an IP range. In an unmanaged subnet a reserved range that still holds a dynamic
    /// range cannot be deleted.
    pub fn delete_ip_range(&mut self, id: IpRangeId) -> Result<IpRange, Error> {
        let range = self
            .ranges
            .get(&id)
            .ok_or(not_found(Kind::IpRange, id.get()))?;
        let subnet = &self.subnets[&range.subnet];
        if !subnet.managed && range.kind == IpRangeKind::Reserved {
            let held = self
                .ip_ranges_in(range.subnet)
                .find(|(_, r)| r.kind == IpRangeKind::Dynamic && range.contains(r.start));
            if let Some((_, dynamic)) = held {
                return Err(Error::WouldInvalidate {
                    what: format!("dynamic range {}-{}", dynamic.start, dynamic.end),
                    reason: Box::new(Error::DynamicOutsideReserved {
                        start: dynamic.start,
                        end: dynamic.end,
                    }),
                });
            }
        }
        Ok(self.take_range(id).expect("checked above"))
    }

    fn check_range(&self, id: IpRangeId, range: &IpRange, in_use: &[IpAddr]) -> Result<(), Error> {
        let subnet = self
            .subnets
            .get(&range.subnet)
            .ok_or(not_found(Kind::Subnet, range.subnet.get()))?;
        // Machines' addresses count as assigned too.
        let mut assigned = self.machine_addresses_in(range.subnet);
        assigned.extend_from_slice(in_use);
        self.check_range_in(Some(id), range, subnet, &assigned, false)?;
        // In an unmanaged subnet a reserved range that changes (bounds, kind or subnet) must
        // still hold every dynamic range it held.
        if let Some(old) = self.ranges.get(&id)
            && old.kind == IpRangeKind::Reserved
            && !self.subnets[&old.subnet].managed
        {
            let still_held = |d: &IpRange| {
                range.kind == IpRangeKind::Reserved
                    && range.subnet == old.subnet
                    && range.contains(d.start)
                    && range.contains(d.end)
            };
            let stranded = self.ip_ranges_in(old.subnet).find(|(other, d)| {
                *other != id
                    && d.kind == IpRangeKind::Dynamic
                    && old.contains(d.start)
                    && !still_held(d)
            });
            if let Some((_, dynamic)) = stranded {
                return Err(Error::WouldInvalidate {
                    what: format!("dynamic range {}-{}", dynamic.start, dynamic.end),
                    reason: Box::new(Error::DynamicOutsideReserved {
                        start: dynamic.start,
                        end: dynamic.end,
                    }),
                });
            }
        }
        Ok(())
    }

    /// Checks a range against a subnet (given separately so that a subnet change can be
    /// checked before it is stored) and the subnet's other ranges.
    ///
    /// `existing` says the range is already stored, so that "no room" cannot arise from the
    /// range itself: only whether it overlaps something matters.
    pub(super) fn check_range_in(
        &self,
        id: Option<IpRangeId>,
        range: &IpRange,
        subnet: &Subnet,
        in_use: &[IpAddr],
        existing: bool,
    ) -> Result<(), Error> {
        check_range_shape(range, subnet.cidr)?;
        let (family, start) = ip::bits(range.start);
        let end = ip::bits(range.end).1;
        // The common case, in O(log n): nothing overlaps the range, so it is valid, and there is
        // room (the range itself). Only a refusal needs the full sweep below, which picks MAAS's
        // message ("no room" before "conflicts").
        let overlaps = |kind| {
            self.range_before(range.subnet, kind, end, id)
                .is_some_and(|(_, e)| e >= start)
        };
        let points_clear = || {
            subnet
                .gateway_ip
                .iter()
                .chain(&subnet.dns_servers)
                .chain(in_use)
                .all(|a| {
                    let (f, v) = ip::bits(*a);
                    f != family || v < start || v > end
                })
        };
        let fast_ok = match (subnet.managed, range.kind) {
            (true, IpRangeKind::Reserved) => {
                !overlaps(IpRangeKind::Dynamic) && !overlaps(IpRangeKind::Reserved)
            }
            (true, IpRangeKind::Dynamic) => {
                !overlaps(IpRangeKind::Dynamic)
                    && !overlaps(IpRangeKind::Reserved)
                    && points_clear()
            }
            (false, IpRangeKind::Reserved) => !overlaps(IpRangeKind::Reserved),
            (false, IpRangeKind::Dynamic) => {
                let held = self
                    .range_before(range.subnet, IpRangeKind::Reserved, start, id)
                    .is_some_and(|(_, e)| e >= end);
                held && !overlaps(IpRangeKind::Dynamic) && points_clear()
            }
        };
        if fast_ok {
            return Ok(());
        }
        let others = self
            .ip_ranges_in(range.subnet)
            .filter(|(rid, _)| Some(*rid) != id);
        let mut blockers: Vec<(u128, u128, Blocker)> = Vec::new();
        let mut reserved_within: Option<(u128, u128)> = None;
        let universe = if subnet.managed {
            for (rid, r) in others {
                blockers.push((ip::bits(r.start).1, ip::bits(r.end).1, Blocker::Range(rid)));
            }
            vec![ip::usable_bounds(subnet.cidr)]
        } else {
            // Unmanaged: dynamic ranges live inside reserved ones; reserved ranges may not
            // overlap each other.
            let mut reserved = Vec::new();
            for (rid, r) in others {
                let bounds = (ip::bits(r.start).1, ip::bits(r.end).1);
                match (range.kind, r.kind) {
                    (IpRangeKind::Dynamic, IpRangeKind::Reserved) => {
                        reserved.push(bounds);
                        if bounds.0 <= start && end <= bounds.1 {
                            reserved_within = Some(bounds);
                        }
                    }
                    (IpRangeKind::Reserved, IpRangeKind::Dynamic) => {}
                    _ => blockers.push((bounds.0, bounds.1, Blocker::Range(rid))),
                }
            }
            match range.kind {
                IpRangeKind::Dynamic => reserved,
                IpRangeKind::Reserved => vec![ip::usable_bounds(subnet.cidr)],
            }
        };
        if range.kind == IpRangeKind::Dynamic {
            let mut single = |ip: IpAddr, why: Blocker| {
                let (f, v) = ip::bits(ip);
                if f == family {
                    blockers.push((v, v, why));
                }
            };
            subnet
                .gateway_ip
                .into_iter()
                .for_each(|g| single(g, Blocker::Gateway));
            subnet
                .dns_servers
                .iter()
                .for_each(|d| single(*d, Blocker::DnsServer));
            in_use.iter().for_each(|a| single(*a, Blocker::InUse));
        }
        blockers.sort_unstable_by_key(|b| (b.0, b.1));
        if !existing && !has_room(&universe, &blockers) {
            return Err(Error::NoRoomForRange { kind: range.kind });
        }
        if range.kind == IpRangeKind::Dynamic && !subnet.managed && reserved_within.is_none() {
            return Err(Error::DynamicOutsideReserved {
                start: range.start,
                end: range.end,
            });
        }
        if let Some(&(lo, _, why)) = blockers
            .iter()
            .find(|(lo, hi, _)| *lo <= end && start <= *hi)
        {
            let with = match why {
                Blocker::Range(rid) => {
                    let r = &self.ranges[&rid];
                    format!("the {} range {}-{}", r.kind, r.start, r.end)
                }
                Blocker::Gateway => format!("the gateway {}", ip::from_bits(family, lo)),
                Blocker::DnsServer => format!("the DNS server {}", ip::from_bits(family, lo)),
                Blocker::InUse => format!("the assigned address {}", ip::from_bits(family, lo)),
            };
            return Err(Error::RangeConflict {
                kind: range.kind,
                start: range.start,
                end: range.end,
                with,
            });
        }
        Ok(())
    }

    fn put_range(&mut self, id: IpRangeId, range: IpRange) {
        self.take_range(id);
        self.ranges_by_subnet.insert((range.subnet, id));
        let (start, end) = (ip::bits(range.start).1, ip::bits(range.end).1);
        self.range_starts
            .insert((range.subnet, range.kind, start), (end, id));
        self.ranges.insert(id, range);
    }

    pub(super) fn take_range(&mut self, id: IpRangeId) -> Option<IpRange> {
        let range = self.ranges.remove(&id)?;
        self.ranges_by_subnet.remove(&(range.subnet, id));
        self.range_starts
            .remove(&(range.subnet, range.kind, ip::bits(range.start).1));
        Some(range)
    }

    /// The range of this kind in the subnet, other than `skip`, with the greatest start at or
    /// before `at`: the only one that can hold `at` or overlap an interval ending at `at`.
    fn range_before(
        &self,
        subnet: SubnetId,
        kind: IpRangeKind,
        at: u128,
        skip: Option<IpRangeId>,
    ) -> Option<(u128, u128)> {
        self.range_starts
            .range((subnet, kind, 0)..=(subnet, kind, at))
            .rev()
            .find(|(_, (_, rid))| Some(*rid) != skip)
            .map(|(&(_, _, start), &(end, _))| (start, end))
    }
}

/// What may not overlap a range being placed, for the error message.
#[derive(Clone, Copy)]
enum Blocker {
    Range(IpRangeId),
    Gateway,
    DnsServer,
    InUse,
}

/// The checks on a range that need only the range and its subnet's CIDR, in MAAS's order.
fn check_range_shape(range: &IpRange, cidr: IpNet) -> Result<(), Error> {
    let (fs, start) = ip::bits(range.start);
    let (fe, end) = ip::bits(range.end);
    if fs != fe {
        return Err(Error::RangeFamilyMismatch);
    }
    if end < start {
        return Err(Error::RangeEndBeforeStart);
    }
    let outside = match (cidr.contains(&range.start), cidr.contains(&range.end)) {
        (true, true) => None,
        (false, false) => Some(RangeEnds::Both),
        (false, true) => Some(RangeEnds::Start),
        (true, false) => Some(RangeEnds::End),
    };
    if let Some(outside) = outside {
        return Err(Error::RangeOutsideSubnet { outside, cidr });
    }
    let (first, last) = ip::bounds(cidr);
    let (usable_first, usable_last) = ip::usable_bounds(cidr);
    if start == first && usable_first != first {
        return Err(Error::RangeIncludesNetwork);
    }
    if end == last && usable_last != last {
        return Err(Error::RangeIncludesBroadcast);
    }
    if fs == Family::V6 && range.kind == IpRangeKind::Dynamic && end - start < 255 {
        return Err(Error::Ipv6DynamicRangeTooSmall {
            size: end - start + 1,
        });
    }
    Ok(())
}

/// Whether some address of the universe (disjoint intervals) is not covered by the blockers
/// (sorted by start).
fn has_room(universe: &[(u128, u128)], blockers: &[(u128, u128, Blocker)]) -> bool {
    universe.iter().any(|&(lo, hi)| {
        // Walk the blockers in order, advancing the first uncovered address.
        let mut next = lo;
        for &(b_lo, b_hi, _) in blockers {
            if b_hi < next {
                continue;
            }
            if b_lo > next {
                break;
            }
            match b_hi.checked_add(1) {
                Some(n) => next = n,
                None => return false,
            }
            if next > hi {
                return false;
            }
        }
        next <= hi
    })
}
