//! `[cluster]`: how racks and a region find and trust each other, the VLANs each rack
//! serves, and how racks that share a VLAN split its DHCP clients.

use std::path::PathBuf;

use maas_net::Topology;
use serde::{Deserialize, Serialize};

use super::{Config, DhcpShare};

/// `[cluster]`: how racks and a region find and trust each other.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterSection {
    /// The shared secret racks present (`Authorization: Bearer ...`); without it a region
    /// refuses every rack.
    #[serde(default)]
    pub(crate) secret: Option<String>,
    /// A rack's region: its API URL (`http://host:5240`); the same as a one-element
    /// `regions`.
    #[serde(default)]
    pub(crate) region: Option<String>,
    /// A rack's regions, in failover order: one is used at a time, and a call the one in use
    /// does not answer (no connection in 2 s, no answer in 10 s, or a 5xx) goes to the next.
    #[serde(default)]
    pub(crate) regions: Vec<String>,
    /// How long a rack tries its regions at start before it starts from its cached
    /// configuration (or, without one, gives up).
    #[serde(default = "default_start_wait_secs")]
    pub(crate) start_wait_secs: u64,
    /// How many addresses of each dynamic range's subnet a region holds for each rack, for
    /// the rack to hand to new clients while no region answers (0: none).
    #[serde(default = "default_rack_block_size")]
    pub(crate) rack_block_size: u32,
    /// A rack's name, as the region lists it (default: the host name).
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Seconds between a rack's refreshes of the network model, machines and addresses.
    #[serde(default = "default_sync_secs")]
    pub(crate) sync_secs: u64,
    /// A rack's trust in an `https://` region: a PEM file of the certificate authority (or
    /// the region's self-signed certificate) to verify it against.
    #[serde(default)]
    pub(crate) region_ca: Option<PathBuf>,
    /// A rack's trust in an `https://` region: the SHA-256 fingerprint of the region's
    /// certificate (64 hex digits, `:` separators allowed), as the region prints it.
    #[serde(default)]
    pub(crate) region_fingerprint: Option<String>,
    /// A region's racks and the VLANs each serves: a rack may report leases, machines and
    /// discoveries only for addresses on its VLANs.
    #[serde(default)]
    pub(crate) racks: Vec<RackSection>,
}

/// `[[cluster.racks]]`: a rack and the VLANs it serves.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RackSection {
    /// The rack's name (its `[cluster] name`).
    pub(crate) name: String,
    /// The VLANs, by fabric name and VID.
    pub(crate) vlans: Vec<VlanKey>,
}

/// A VLAN by its fabric's name and its VID.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VlanKey {
    /// The fabric's name.
    pub(crate) fabric: String,
    /// The VID (0: untagged).
    pub(crate) vid: u16,
}

impl Config {
    /// The VLANs rack `name` serves, as configured (`None`: not listed).
    pub(crate) fn rack_vlans(&self, name: &str) -> Option<&[VlanKey]> {
        self.cluster
            .racks
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.vlans.as_slice())
    }

    /// Whether rack `name` serves the VLAN of the subnet `ip` lies in.
    /// Rack `name`'s share of each of its VLANs that `[[cluster.racks]]` gives to other racks
    /// too: the racks of a VLAN, in name order, split its new clients between them.
    pub(crate) fn dhcp_shares_of(&self, name: &str) -> Vec<DhcpShare> {
        let Some(vlans) = self.rack_vlans(name) else {
            return Vec::new();
        };
        vlans
            .iter()
            .filter_map(|vlan| {
                let mut racks: Vec<&str> = self
                    .cluster
                    .racks
                    .iter()
                    .filter(|r| r.vlans.contains(vlan))
                    .map(|r| r.name.as_str())
                    .collect();
                racks.sort_unstable();
                racks.dedup();
                let index = racks.iter().position(|r| *r == name)?;
                (racks.len() > 1).then(|| DhcpShare {
                    vlan: vlan.clone(),
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    of: u32::try_from(racks.len()).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// `dhcp.shares` resolved in the network model: each shared VLAN, with this rack's part.
    pub(crate) fn shared_vlans(&self) -> Vec<(maas_net::VlanId, u32, u32)> {
        let topology = &self.topology;
        self.dhcp
            .shares
            .iter()
            .filter(|share| share.of > 1 && share.index < share.of)
            .filter_map(|share| {
                topology
                    .vlans()
                    .find(|(_, v)| {
                        v.vid == share.vlan.vid
                            && topology
                                .fabric(v.fabric)
                                .is_some_and(|f| f.name == share.vlan.fabric)
                    })
                    .map(|(id, _)| (id, share.index, share.of))
            })
            .collect()
    }

    pub(crate) fn rack_serves(
        &self,
        name: &str,
        topology: &Topology,
        ip: std::net::IpAddr,
    ) -> bool {
        let Some(vlans) = self.rack_vlans(name) else {
            return false;
        };
        let Some(vlan) = topology
            .subnets()
            .find(|(_, s)| s.cidr.contains(&ip))
            .and_then(|(_, s)| topology.vlan(s.vlan))
        else {
            return false;
        };
        let Some(fabric) = topology.fabric(vlan.fabric) else {
            return false;
        };
        vlans
            .iter()
            .any(|k| k.vid == vlan.vid && k.fabric == fabric.name)
    }
}

fn default_sync_secs() -> u64 {
    10
}

fn default_start_wait_secs() -> u64 {
    30
}

/// The largest `[cluster] rack_block_size`.
pub(super) const MAX_RACK_BLOCK: u32 = 256;

fn default_rack_block_size() -> u32 {
    8
}

impl ClusterSection {
    /// A rack's regions, in failover order (`region` or `regions`).
    pub(crate) fn region_urls(&self) -> Vec<String> {
        self.region.iter().chain(&self.regions).cloned().collect()
    }
}
