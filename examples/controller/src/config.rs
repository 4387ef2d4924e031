//! The controller's configuration file: the network model (maas-net's document: zones,
//! spaces, fabrics, VLANs, subnets, IP ranges, static routes) at the top level, plus the
//! `[controller]`, `[dhcp]`, `[dns]` and `[[machines]]` sections (among others).
//!
//! Loading checks everything and reports every problem at once; nothing starts on a file
//! with a problem.

use std::path::Path;

use maas_net::Topology;
use serde::{Deserialize, Serialize};

#[path = "dns/config.rs"]
mod dns_section;
pub(crate) use dns_section::DnsSection;

// The paths are spelt out because the fuzz target compiles this file through `#[path]`, where
// a plain `mod check;` would be looked for beside it instead of in `config/`.
#[path = "config/check.rs"]
mod check;
#[path = "config/cluster.rs"]
mod cluster;
#[path = "config/controller.rs"]
mod controller;
#[path = "config/database.rs"]
mod database;
#[path = "config/machines.rs"]
mod machines;
#[path = "config/services.rs"]
mod services;

pub(crate) use self::check::parse_as;
pub(crate) use self::cluster::{ClusterSection, VlanKey};
pub(crate) use self::controller::{ControllerSection, TlsSetting};
pub(crate) use self::database::DatabaseSection;
pub(crate) use self::machines::{MachineConfig, power_params, valid_hostname};
pub(crate) use self::services::{
    DhcpSection, DhcpShare, DiscoverySection, PowerSection, ProxySection,
};

/// The whole file, checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) controller: ControllerSection,
    pub(crate) dhcp: DhcpSection,
    pub(crate) power: PowerSection,
    pub(crate) discovery: DiscoverySection,
    pub(crate) proxy: Option<ProxySection>,
    pub(crate) dns: Option<DnsSection>,
    pub(crate) cluster: ClusterSection,
    pub(crate) database: Option<DatabaseSection>,
    pub(crate) machines: Vec<MachineConfig>,
    pub(crate) topology: Topology,
}

impl Config {
    /// What the file describes, in a few words (`3 subnets, 2 machines`).
    pub fn summary(&self) -> String {
        format!(
            "{} subnets, {} machines",
            self.topology.subnets().count(),
            self.machines.len()
        )
    }
}

/// What this controller process is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in one process: state, API, and the network services.
    #[default]
    All,
    /// The state and the API (and the rack endpoints); no network service of its own.
    Region,
    /// The network services (DHCP, TFTP, boot HTTP, proxy, discovery) for its own networks,
    /// with the network model, machines and leases held by a region.
    Rack,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::All => "all",
            Self::Region => "region",
            Self::Rack => "rack",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            "region" => Ok(Self::Region),
            "rack" => Ok(Self::Rack),
            other => Err(format!("role {other:?}: use all, region or rack")),
        }
    }
}

/// The pxelinux file when no boot resource is imported.
pub(crate) const FALLBACK_PXELINUX: &str =
    "DEFAULT local\nSAY maas-rs: {hostname} ({mac}) is {status}\nLABEL local\n  LOCALBOOT 0\n";

/// The GRUB file when no boot resource is imported.
pub(crate) const FALLBACK_GRUB: &str = "set default=0\nset timeout=0\necho 'maas-rs: {hostname} ({mac}) is {status}'\nmenuentry 'Local disk' {\n  exit\n}\n";

/// The iPXE script when no boot resource is imported.
pub(crate) const FALLBACK_IPXE: &str =
    "#!ipxe\necho maas-rs: {hostname} ({mac}) is {status}\nexit\n";

/// Reads and checks `path`, with `role` (from the command line) overriding the file's.
/// Every problem found is listed.
pub fn load(path: &Path, role: Option<Role>) -> Result<Config, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_as(&text, base, role)
}

/// Parses and checks a configuration; relative paths are taken from `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<String>> {
    parse_as(text, base, None)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
