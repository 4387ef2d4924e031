//! Links from an interface to a subnet: how the interface gets its address there.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::SubnetId;

/// How an interface is configured on a subnet, by MAAS's link modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LinkMode {
    /// An address the address manager chooses when the machine is deployed.
    Auto,
    /// A given address, or (left empty) the next free one, chosen when the link is made and
    /// kept across deployments (MAAS's STICKY).
    Static,
    /// The deployed system asks a DHCP server; the subnet, if any, only says which family.
    Dhcp,
    /// The interface is brought up without an address.
    LinkUp,
}

impl LinkMode {
    /// The mode as MAAS writes it: `auto`, `static`, `dhcp` or `link_up`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Static => "static",
            Self::Dhcp => "dhcp",
            Self::LinkUp => "link_up",
        }
    }
}

impl fmt::Display for LinkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A link from an interface to a subnet of its VLAN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// How the address is obtained.
    pub mode: LinkMode,
    /// The subnet: required for `auto` and `static`, optional for `dhcp` (none asks for both
    /// families) and `link_up`.
    pub subnet: Option<SubnetId>,
    /// The address: for `static`, the one asked for (filled in with the next free address when
    /// left empty); for `auto`, the one assigned at deployment; never for `dhcp` or `link_up`.
    pub ip: Option<IpAddr>,
}

impl Link {
    /// A `static` link with a given address.
    pub const fn fixed(subnet: SubnetId, ip: IpAddr) -> Self {
        Self {
            mode: LinkMode::Static,
            subnet: Some(subnet),
            ip: Some(ip),
        }
    }

    /// A `static` link whose address is the next free one of the subnet.
    pub const fn sticky(subnet: SubnetId) -> Self {
        Self {
            mode: LinkMode::Static,
            subnet: Some(subnet),
            ip: None,
        }
    }

    /// An `auto` link: the address comes at deployment.
    pub const fn auto(subnet: SubnetId) -> Self {
        Self {
            mode: LinkMode::Auto,
            subnet: Some(subnet),
            ip: None,
        }
    }

    /// A `dhcp` link, on a subnet or (with `None`) for both families.
    pub const fn dhcp(subnet: Option<SubnetId>) -> Self {
        Self {
            mode: LinkMode::Dhcp,
            subnet,
            ip: None,
        }
    }

    /// A `link_up` link: up, without an address.
    pub const fn link_up(subnet: Option<SubnetId>) -> Self {
        Self {
            mode: LinkMode::LinkUp,
            subnet,
            ip: None,
        }
    }

    /// Whether the link gives the interface an address of its own (`static`, or `auto`
    /// whether or not one is assigned yet).
    pub const fn is_addressed(&self) -> bool {
        matches!(self.mode, LinkMode::Static | LinkMode::Auto)
    }
}
