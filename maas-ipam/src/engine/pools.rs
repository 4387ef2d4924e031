//! The per-subnet allocation indexes ([`Pools`]) and their rebuilding from the model and the
//! records.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use maas_net::ip::{self, Family};
use maas_net::{IpRangeKind, SubnetId};

use super::Ipam;
use super::intervals::{clip, subtract};
use crate::blocks::FreeBlocks;
use crate::{Record, Timestamp};

/// The allocation state of one subnet.
#[derive(Clone, Debug)]
pub(crate) struct Pools {
    pub(crate) cidr: IpNet,
    pub(crate) family: Family,
    /// Where AUTO may allocate, before records are taken out: sorted, disjoint.
    pub(crate) auto_universe: Vec<(u128, u128)>,
    pub(crate) auto_free: FreeBlocks,
    /// Where DHCP may lease: the dynamic ranges of a managed subnet.
    pub(crate) dhcp_universe: Vec<(u128, u128)>,
    pub(crate) dhcp_free: FreeBlocks,
    /// (last seen, address) of the DISCOVERED records in the subnet.
    pub(crate) discovered_age: BTreeSet<(Timestamp, u128)>,
    /// The dynamic and the reserved ranges, each sorted; ranges of one kind never overlap.
    pub(crate) dynamic_ranges: Vec<(u128, u128)>,
    pub(crate) reserved_ranges: Vec<(u128, u128)>,
}

impl Ipam {
    pub(crate) fn discovered_between(
        &self,
        lo: IpAddr,
        hi: IpAddr,
    ) -> impl Iterator<Item = &Record> + '_ {
        self.discovered.range(lo..=hi).map(|(_, r)| r)
    }

    pub(crate) fn pools(&self, subnet: SubnetId) -> Option<&Pools> {
        self.pools.get(&subnet)
    }

    pub(super) fn rebuild_all(&mut self) {
        let ids: Vec<SubnetId> = self.topology.subnets().map(|(id, _)| id).collect();
        self.pools.retain(|id, _| ids.contains(id));
        for id in ids {
            self.rebuild(id);
        }
    }

    /// Recomputes one subnet's pools from the model and the records.
    pub(super) fn rebuild(&mut self, id: SubnetId) {
        let Some(subnet) = self.topology.subnet(id) else {
            self.pools.remove(&id);
            return;
        };
        let cidr = subnet.cidr;
        let family = Family::of_net(cidr);
        let (first, _) = ip::bounds(cidr);
        let usable = ip::usable_bounds(cidr);
        let mut points: Vec<u128> = Vec::new();
        let same_family = |a: &IpAddr| Family::of(*a) == family && cidr.contains(a);
        points.extend(
            subnet
                .gateway_ip
                .iter()
                .filter(|a| same_family(a))
                .map(|a| ip::bits(*a).1),
        );
        points.extend(
            subnet
                .dns_servers
                .iter()
                .filter(|a| same_family(a))
                .map(|a| ip::bits(*a).1),
        );
        points.extend(
            self.topology
                .static_routes_from(id)
                .map(|(_, r)| r.gateway_ip)
                .filter(|a| same_family(a))
                .map(|a| ip::bits(a).1),
        );
        let mut dynamic = Vec::new();
        let mut reserved = Vec::new();
        for (_, r) in self.topology.ip_ranges_in(id) {
            let bounds = (ip::bits(r.start).1, ip::bits(r.end).1);
            match r.kind {
                IpRangeKind::Dynamic => dynamic.push(bounds),
                IpRangeKind::Reserved => reserved.push(bounds),
            }
        }
        dynamic.sort_unstable();
        reserved.sort_unstable();
        let mut blocked: Vec<(u128, u128)> = points.iter().map(|&a| (a, a)).collect();
        blocked.extend(&dynamic);
        if let IpNet::V6(n) = cidr
            && n.prefix_len() == 64
        {
            blocked.push((first + 1, first + 0xffff_ffff));
        }
        let base = if subnet.managed {
            blocked.extend(&reserved);
            vec![usable]
        } else {
            clip(&reserved, usable)
        };
        blocked.sort_unstable();
        let auto_universe = subtract(&base, &blocked);
        let dhcp_universe = if subnet.managed {
            let mut pts: Vec<(u128, u128)> = points.iter().map(|&a| (a, a)).collect();
            pts.sort_unstable();
            subtract(&clip(&dynamic, usable), &pts)
        } else {
            Vec::new()
        };
        // Everything recorded in the subnet is taken out of both pools.
        let (lo, hi) = (cidr.network(), cidr.broadcast());
        let mut used: Vec<(u128, u128)> = self
            .held
            .range(lo..=hi)
            .chain(self.discovered.range(lo..=hi))
            .map(|(ip, _)| {
                let a = ip::bits(*ip).1;
                (a, a)
            })
            .collect();
        used.sort_unstable();
        let discovered_age = self
            .discovered
            .range(lo..=hi)
            .map(|(ip, r)| (r.updated, ip::bits(*ip).1))
            .collect();
        let pools = Pools {
            cidr,
            family,
            auto_free: FreeBlocks::from_sorted(subtract(&auto_universe, &used)),
            dhcp_free: FreeBlocks::from_sorted(subtract(&dhcp_universe, &used)),
            auto_universe,
            dhcp_universe,
            discovered_age,
            dynamic_ranges: dynamic,
            reserved_ranges: reserved,
        };
        self.pools.insert(id, pools);
    }
}
