//! Subnet statistics, with MAAS's fields and arithmetic.

use std::net::IpAddr;

use ipnet::IpNet;
use maas_net::ip::{self, Family};
use maas_net::{IpRangeKind, SubnetId};
use serde::{Deserialize, Serialize};

use crate::{Error, Ipam};

/// How a subnet's addresses are used, as MAAS reports it (`GET /subnets/{id}/statistics`).
///
/// `total_addresses` counts the addresses a host may have (the CIDR without the network
/// address, and without the IPv4 broadcast address except in /31 and /32). An address is
/// available when automatic assignment could pick it: it is in no range (in an unmanaged
/// subnet: in a reserved range and no dynamic range), not the gateway, a DNS server or a static
/// route's gateway, and not assigned or discovered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubnetStatistics {
    /// Addresses automatic assignment could still pick.
    pub num_available: u128,
    /// The size of the largest block of available addresses.
    pub largest_available: u128,
    /// Addresses that are not available.
    pub num_unavailable: u128,
    /// Addresses a host may have.
    pub total_addresses: u128,
    /// `num_unavailable / total_addresses`.
    pub usage: f64,
    /// `usage` as a whole percentage, `"2%"`.
    pub usage_string: String,
    /// The available share as a whole percentage, `"98%"`.
    pub available_string: String,
    /// The first address a host may have.
    pub first_address: IpAddr,
    /// The last address a host may have.
    pub last_address: IpAddr,
    /// 4 or 6.
    pub ip_version: u8,
    /// Every address of the subnet, in ranges of one purpose set each (when asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<RangeUsage>>,
    /// A gateway and a dynamic range to propose (when asked for).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub suggestions: Option<Suggestions>,
}

/// A run of addresses with the same purposes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeUsage {
    /// First address.
    pub start: IpAddr,
    /// Last address.
    pub end: IpAddr,
    /// Number of addresses.
    pub num_addresses: u128,
    /// What they are used for, sorted: `unused`, `assigned-ip`, `gateway-ip`, `dns-server`,
    /// `dynamic`, `reserved`, `unmanaged`, `proposed-dynamic`.
    pub purpose: Vec<String>,
}

/// MAAS's proposals for a subnet that lacks a gateway or a dynamic range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestions {
    /// A gateway, when the subnet has none.
    pub suggested_gateway: Option<IpAddr>,
    /// A dynamic range, when the subnet has none.
    pub suggested_dynamic_range: Option<RangeUsage>,
}

const PURPOSES: [&str; 7] = [
    "assigned-ip",
    "dns-server",
    "dynamic",
    "gateway-ip",
    "reserved",
    "unmanaged",
    "unused",
];
const ASSIGNED: usize = 0;
const DNS: usize = 1;
const DYNAMIC: usize = 2;
const GATEWAY: usize = 3;
const RESERVED: usize = 4;
const UNMANAGED: usize = 5;
const UNUSED: usize = 6;

impl Ipam {
    /// The statistics of a subnet, optionally with its ranges and with MAAS's suggestions.
    ///
    /// The counts come from the allocation index and cost O(log n); the ranges walk every
    /// recorded address of the subnet.
    pub fn statistics(
        &self,
        subnet: SubnetId,
        include_ranges: bool,
        include_suggestions: bool,
    ) -> Result<SubnetStatistics, Error> {
        let pools = self.pools(subnet).ok_or(Error::UnknownSubnet(subnet))?;
        let model = self
            .topology()
            .subnet(subnet)
            .ok_or(Error::UnknownSubnet(subnet))?;
        let cidr = pools.cidr;
        let family = pools.family;
        let (first, last) = ip::usable_bounds(cidr);
        let total = last - first + 1;
        let available = pools.auto_free.total();
        let unavailable = total - available;
        let largest = pools.auto_free.largest().map_or(0, |(lo, hi)| hi - lo + 1);
        let usage = unavailable as f64 / total as f64;
        let suggestions = include_suggestions.then(|| {
            let gateway = match model.gateway_ip {
                Some(_) => None,
                None => suggest_gateway(pools, family, first, last, total),
            };
            let has_dynamic = self
                .topology()
                .ip_ranges_in(subnet)
                .any(|(_, r)| r.kind == IpRangeKind::Dynamic);
            let range = if has_dynamic {
                None
            } else {
                suggest_dynamic_range(pools, family, gateway, total, available)
            };
            Suggestions {
                suggested_gateway: gateway,
                suggested_dynamic_range: range,
            }
        });
        Ok(SubnetStatistics {
            num_available: available,
            largest_available: largest,
            num_unavailable: unavailable,
            total_addresses: total,
            usage,
            usage_string: percent(usage),
            available_string: percent(available as f64 / total as f64),
            first_address: ip::from_bits(family, first),
            last_address: ip::from_bits(family, last),
            ip_version: if family == Family::V4 { 4 } else { 6 },
            ranges: include_ranges.then(|| self.range_usage(subnet, cidr, model.managed)),
            suggestions,
        })
    }

    /// Every usable address of the subnet, in runs of one purpose set.
    fn range_usage(&self, subnet: SubnetId, cidr: IpNet, managed: bool) -> Vec<RangeUsage> {
        let family = Family::of_net(cidr);
        let (first, last) = ip::usable_bounds(cidr);
        let model = self
            .topology()
            .subnet(subnet)
            .expect("checked by the caller");
        // (position, +1 or -1, purpose): a purpose starts covering at `position` or stops.
        let mut edges: Vec<(u128, i8, usize)> = Vec::new();
        let mut cover = |lo: u128, hi: u128, purpose: usize| {
            let (lo, hi) = (lo.max(first), hi.min(last));
            if lo <= hi {
                edges.push((lo, 1, purpose));
                if let Some(after) = hi.checked_add(1) {
                    edges.push((after, -1, purpose));
                }
            }
        };
        let point =
            |ip: &IpAddr| (Family::of(*ip) == family && cidr.contains(ip)).then(|| ip::bits(*ip).1);
        for a in model.gateway_ip.iter().filter_map(point) {
            cover(a, a, GATEWAY);
        }
        for (_, route) in self.topology().static_routes_from(subnet) {
            if let Some(a) = point(&route.gateway_ip) {
                cover(a, a, GATEWAY);
            }
        }
        for a in model.dns_servers.iter().filter_map(point) {
            cover(a, a, DNS);
        }
        let mut reserved = Vec::new();
        for (_, r) in self.topology().ip_ranges_in(subnet) {
            let (lo, hi) = (ip::bits(r.start).1, ip::bits(r.end).1);
            match r.kind {
                IpRangeKind::Dynamic => cover(lo, hi, DYNAMIC),
                // In an unmanaged subnet the reserved ranges are where assignment happens:
                // what is free there is unused, and everything else is unmanaged.
                IpRangeKind::Reserved if managed => cover(lo, hi, RESERVED),
                IpRangeKind::Reserved => reserved.push((lo, hi)),
            }
        }
        if !managed {
            reserved.sort_unstable();
            for (lo, hi) in crate::engine::subtract(&[(first, last)], &reserved) {
                cover(lo, hi, UNMANAGED);
            }
        }
        if let IpNet::V6(n) = cidr
            && n.prefix_len() == 64
        {
            let base = ip::bounds(cidr).0;
            cover(base + 1, base + 0xffff_ffff, RESERVED);
        }
        let (lo, hi) = (cidr.network(), cidr.broadcast());
        for ip in self
            .records_in(subnet)
            .chain(self.discovered_between(lo, hi))
            .map(|r| r.ip)
        {
            let a = ip::bits(ip).1;
            cover(a, a, ASSIGNED);
        }
        edges.sort_unstable();

        let mut out: Vec<RangeUsage> = Vec::new();
        let mut counts = [0i64; PURPOSES.len()];
        let mut i = 0;
        let mut pos = first;
        loop {
            while i < edges.len() && edges[i].0 == pos {
                counts[edges[i].2] += i64::from(edges[i].1);
                i += 1;
            }
            let end = if i < edges.len() {
                edges[i].0 - 1
            } else {
                last
            };
            let mask: u8 = counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .fold(0, |m, (p, _)| m | 1 << p);
            let mask = if mask == 0 { 1 << UNUSED } else { mask };
            push_run(&mut out, family, pos, end, mask);
            if end >= last {
                break;
            }
            pos = end + 1;
        }
        out
    }
}

fn push_run(out: &mut Vec<RangeUsage>, family: Family, lo: u128, hi: u128, mask: u8) {
    let purpose: Vec<String> = (0..PURPOSES.len())
        .filter(|p| mask & (1 << p) != 0)
        .map(|p| PURPOSES[p].to_owned())
        .collect();
    if let Some(prev) = out.last_mut()
        && prev.purpose == purpose
        && ip::bits(prev.end).1.checked_add(1) == Some(lo)
    {
        prev.end = ip::from_bits(family, hi);
        prev.num_addresses += hi - lo + 1;
        return;
    }
    out.push(RangeUsage {
        start: ip::from_bits(family, lo),
        end: ip::from_bits(family, hi),
        num_addresses: hi - lo + 1,
        purpose,
    });
}

/// Python's `f"{x:.0%}"`.
fn percent(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// MAAS's choice: for IPv6 the subnet-router anycast address; for IPv4 the first usable
/// address if unused, else the last, else the first unused one.
fn suggest_gateway(
    pools: &crate::engine::Pools,
    family: Family,
    first: u128,
    last: u128,
    total: u128,
) -> Option<IpAddr> {
    if family == Family::V6 {
        return (total > 2).then(|| ip::from_bits(family, first - 1));
    }
    let free = &pools.auto_free;
    let pick = if free.contains(first) {
        Some(first)
    } else if free.contains(last) {
        Some(last)
    } else {
        free.lowest()
    };
    pick.map(|a| ip::from_bits(family, a))
}

/// MAAS's proposal: the top of the largest unused block, at most a quarter of the subnet and at
/// most half of what is left, minus a suggested gateway at either end.
fn suggest_dynamic_range(
    pools: &crate::engine::Pools,
    family: Family,
    gateway: Option<IpAddr>,
    total: u128,
    available: u128,
) -> Option<RangeUsage> {
    let (mut lo, mut hi) = pools.auto_free.largest()?;
    if gateway.is_some() && lo == hi {
        return None;
    }
    if let Some(g) = gateway.map(|g| ip::bits(g).1)
        && lo <= g
        && g <= hi
    {
        if g == lo {
            lo += 1;
        } else {
            hi -= 1;
        }
    }
    // Sizes are at most 2^127 (no subnet is /0), so `hi - lo + 1` cannot overflow, even at
    // the top of the IPv6 space where `hi + 1` would.
    let size = (hi - lo).saturating_add(1);
    let quarter = total >> 2;
    let half_left = available >> 1;
    let mut first = lo;
    if size > quarter {
        first = hi.checked_sub(quarter)?;
    } else if size >= half_left {
        // The top `half_left` addresses: hi - (half_left - 1).
        first = hi - half_left.checked_sub(1)?;
    }
    if first >= hi {
        return None;
    }
    Some(RangeUsage {
        start: ip::from_bits(family, first),
        end: ip::from_bits(family, hi),
        num_addresses: hi - first + 1,
        purpose: vec!["proposed-dynamic".to_owned()],
    })
}
