//! Integration tests of maas-ipam: one test binary, one module per area.
#![allow(clippy::unwrap_used)]

mod fuzz_corpus;
mod leases;
mod model;
mod rules;
mod statistics;
mod store;

use std::net::IpAddr;

use maas_ipam::{Ipam, Timestamp};
use maas_net::{IpRange, IpRangeKind, Subnet, SubnetId, Topology};

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(crate) fn ips(list: &[IpAddr]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

pub(crate) const NOW: Timestamp = Timestamp(1_700_000_000);

/// A subnet in a fresh topology, with optional gateway and DNS servers, managed or not.
#[derive(Clone)]
pub(crate) struct Net {
    pub(crate) topo: Topology,
    pub(crate) subnet: SubnetId,
}

impl Net {
    pub(crate) fn new(cidr: &str) -> Self {
        Self::with(cidr, None, &[], true)
    }

    pub(crate) fn with(cidr: &str, gateway: Option<&str>, dns: &[&str], managed: bool) -> Self {
        let mut topo = Topology::new();
        let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
        let subnet = topo
            .create_subnet(Subnet {
                gateway_ip: gateway.map(ip),
                dns_servers: dns.iter().map(|d| ip(d)).collect(),
                managed,
                ..Subnet::new(cidr.parse().unwrap(), vlan)
            })
            .unwrap();
        Self { topo, subnet }
    }

    pub(crate) fn range(mut self, start: &str, end: &str, kind: IpRangeKind) -> Self {
        self.topo
            .create_ip_range(IpRange::new(self.subnet, ip(start), ip(end), kind))
            .unwrap();
        self
    }

    pub(crate) fn ipam(self) -> (Ipam, SubnetId) {
        (Ipam::new(self.topo), self.subnet)
    }
}
