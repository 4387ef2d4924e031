//! The services' sections: `[dhcp]`, `[power]` (the power monitor), `[discovery]` and
//! `[proxy]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::VlanKey;

/// `[dhcp]`: the interfaces DHCP is served on (none: DHCP off).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DhcpSection {
    /// Interface names.
    #[serde(default)]
    pub(crate) interfaces: Vec<String>,
    /// Lease time in seconds.
    #[serde(default = "default_lease_secs")]
    pub(crate) lease_secs: u32,
    /// A rack's share of the new clients of each VLAN it serves with other racks, from its
    /// region ([`Config::dhcp_shares_of`](super::Config::dhcp_shares_of)); not in the file.
    #[serde(skip)]
    pub(crate) shares: Vec<DhcpShare>,
}

/// A rack's part of the new DHCP clients of a VLAN that several racks serve: part `index`
/// of `of`, by a hash of the client's identity (see `maas_pxe::dhcp::server::LoadBalance`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub(crate) struct DhcpShare {
    /// The VLAN.
    #[serde(flatten)]
    pub(crate) vlan: VlanKey,
    /// Which part (0-based, in the order of the racks' names).
    pub(crate) index: u32,
    /// How many racks serve the VLAN.
    pub(crate) of: u32,
}

fn default_lease_secs() -> u32 {
    3600
}

impl Default for DhcpSection {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            lease_secs: default_lease_secs(),
            shares: Vec::new(),
        }
    }
}

/// `[power]`: the background power monitor.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PowerSection {
    /// Seconds between two rounds of power queries of every machine with a power driver;
    /// 0 turns the monitor off.
    #[serde(default = "default_monitor_interval")]
    pub(crate) monitor_interval_secs: u64,
    /// At most this many BMCs are queried at once.
    #[serde(default = "default_monitor_concurrency")]
    pub(crate) max_concurrent_queries: usize,
}

fn default_monitor_interval() -> u64 {
    300
}

fn default_monitor_concurrency() -> usize {
    32
}

impl Default for PowerSection {
    fn default() -> Self {
        Self {
            monitor_interval_secs: default_monitor_interval(),
            max_concurrent_queries: default_monitor_concurrency(),
        }
    }
}

/// `[discovery]`: passive observation of the network and active scans.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscoverySection {
    /// Interfaces watched for ARP, NDP and mDNS (needs CAP_NET_RAW); none: discovery off.
    #[serde(default)]
    pub(crate) interfaces: Vec<String>,
    /// Seconds between active scans of the subnets with `active_discovery` that have an
    /// address on a watched interface (MAAS's default: 3 hours); 0 turns scanning off.
    #[serde(default = "default_scan_interval")]
    pub(crate) scan_interval_secs: u64,
    /// Probes per second of a scan.
    #[serde(default = "default_scan_rate")]
    pub(crate) scan_rate: u32,
    /// A DNS resolver (`IP:port`) asked for the reverse name (PTR) of each new neighbour
    /// that announced no name over mDNS; none: no lookups.
    #[serde(default)]
    pub(crate) reverse_dns: Option<SocketAddr>,
}

fn default_scan_interval() -> u64 {
    3 * 3600
}

fn default_scan_rate() -> u32 {
    200
}

impl Default for DiscoverySection {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            scan_interval_secs: default_scan_interval(),
            scan_rate: default_scan_rate(),
            reverse_dns: None,
        }
    }
}

/// `[proxy]`: the caching HTTP proxy for machines of subnets with `allow_proxy` (off when
/// the section is absent).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxySection {
    /// Where it listens (MAAS: port 8000).
    pub(crate) listen: SocketAddr,
    /// The cache directory; relative to the file.
    pub(crate) cache_dir: PathBuf,
    /// The most bytes the cache keeps on disk.
    #[serde(default = "default_cache_size")]
    pub(crate) cache_size: u64,
    /// A parent proxy, `http://[user:password@]host:port`.
    #[serde(default)]
    pub(crate) upstream: Option<String>,
    /// Destinations refused besides the built-in ones (loopback, link-local, ...), the
    /// controller's own listening addresses and the machines' BMCs.
    #[serde(default)]
    pub(crate) deny: Vec<ipnet::IpNet>,
}

fn default_cache_size() -> u64 {
    10 << 30
}
