//! `[dns]`: the controller's authoritative DNS server (off when the section is absent).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// `[dns]`: what the DNS server listens on, forwards to, and tells clients.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DnsSection {
    /// Whether the server runs (default true when the section is there).
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
    /// Where it listens, UDP and TCP on each (default `0.0.0.0:53` and `[::]:53`). A UDP
    /// answer leaves from the address the routing table picks for the client, which is not
    /// the one asked when a link holds several subnets: list the addresses clients use then.
    #[serde(default = "default_listen")]
    pub(crate) listen: Vec<SocketAddr>,
    /// Servers queries outside the controller's zones are forwarded to, for clients that may
    /// recurse (inside a subnet with `allow_dns`, or loopback); none: such queries are
    /// refused.
    #[serde(default)]
    pub(crate) forwarders: Vec<SocketAddr>,
    /// Clients allowed a zone transfer (AXFR, over TCP); default loopback only.
    #[serde(default = "default_allow_transfer")]
    pub(crate) allow_transfer: Vec<IpNet>,
    /// The TTL of records whose domain gives none (MAAS: 30 s).
    #[serde(default = "default_ttl")]
    pub(crate) default_ttl: u32,
    /// The controller's own host name in the default domain (the zones' name server).
    #[serde(default = "default_name")]
    pub(crate) name: String,
    /// The controller's addresses: its name's A/AAAA records, and the name server DHCP and
    /// deployed network configurations hand to machines (the one in the machine's subnet,
    /// else the first of its family). Default: `[controller] advertise`.
    #[serde(default)]
    pub(crate) addresses: Vec<IpAddr>,
}

fn yes() -> bool {
    true
}

fn default_listen() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([0, 0, 0, 0], 53)),
        SocketAddr::from(([0u16; 8], 53)),
    ]
}

fn default_allow_transfer() -> Vec<IpNet> {
    vec![
        IpNet::from(IpAddr::from([127, 0, 0, 1])),
        IpNet::from(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
    ]
}

fn default_ttl() -> u32 {
    30
}

fn default_name() -> String {
    "maas-controller".into()
}

impl DnsSection {
    /// The problems of a section that parsed.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.enabled && self.listen.is_empty() {
            out.push("[dns]: listen needs at least one address".into());
        }
        if !crate::config::valid_hostname(&self.name) {
            out.push(format!("[dns]: name {:?} is not a DNS label", self.name));
        }
        if self.default_ttl > i32::MAX as u32 {
            out.push("[dns]: default_ttl is at most 2147483647".into());
        }
        out
    }

    /// The name server to hand a client of `cidr`: the controller's address inside it, or
    /// its first of that family.
    pub(crate) fn server_for(&self, cidr: IpNet, advertise: Option<IpAddr>) -> Option<IpAddr> {
        let all: Vec<IpAddr> = self.addresses.iter().copied().chain(advertise).collect();
        let same = |ip: &&IpAddr| ip.is_ipv4() == cidr.addr().is_ipv4();
        all.iter()
            .filter(same)
            .find(|ip| cidr.contains(*ip))
            .or_else(|| all.iter().find(same))
            .copied()
    }
}
