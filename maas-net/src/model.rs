//! The entities of the network model and their identifiers.
//!
//! Entities are plain values; a [`Topology`](crate::Topology) owns them under stable ids and
//! checks every change. Constructors fill in MAAS's defaults.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::BootArchitecture;

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(u32);

        impl $name {
            /// The id with this number.
            pub const fn new(n: u32) -> Self {
                Self(n)
            }

            /// The id's number.
            pub const fn get(self) -> u32 {
                self.0
            }
        }

        impl From<u32> for $name {
            fn from(n: u32) -> Self {
                Self(n)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

ids! {
    /// Identifies a [`Fabric`]. The default fabric `fabric-0` is id 0.
    FabricId;
    /// Identifies a [`Vlan`].
    VlanId;
    /// Identifies a [`Space`].
    SpaceId;
    /// Identifies a [`Subnet`].
    SubnetId;
    /// Identifies a [`StaticRoute`].
    StaticRouteId;
    /// Identifies a [`Zone`]. The default zone `default` is id 0.
    ZoneId;
    /// Identifies an [`IpRange`].
    IpRangeId;
    /// Identifies a [`Machine`](crate::Machine).
    MachineId;
}

/// The kinds of entity, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A [`Fabric`].
    Fabric,
    /// A [`Vlan`].
    Vlan,
    /// A [`Space`].
    Space,
    /// A [`Subnet`].
    Subnet,
    /// A [`StaticRoute`].
    StaticRoute,
    /// A [`Zone`].
    Zone,
    /// An [`IpRange`].
    IpRange,
    /// A [`Machine`](crate::Machine).
    Machine,
    /// An [`Interface`](crate::Interface) of a machine.
    Interface,
}

impl Kind {
    /// The kind in lower case, as in the middle of a sentence ("fabric", "VLAN").
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fabric => "fabric",
            Self::Vlan => "VLAN",
            Self::Space => "space",
            Self::Subnet => "subnet",
            Self::StaticRoute => "static route",
            Self::Zone => "zone",
            Self::IpRange => "IP range",
            Self::Machine => "machine",
            Self::Interface => "interface",
        }
    }

    /// The kind as at the start of a sentence ("Fabric", "VLAN").
    pub const fn title(self) -> &'static str {
        match self {
            Self::Fabric => "Fabric",
            Self::Vlan => "VLAN",
            Self::Space => "Space",
            Self::Subnet => "Subnet",
            Self::StaticRoute => "Static route",
            Self::Zone => "Zone",
            Self::IpRange => "IP range",
            Self::Machine => "Machine",
            Self::Interface => "Interface",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of VLANs that are switched together: one layer-2 network, possibly trunked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fabric {
    /// Unique name matching `^[\w-]+$`. Left empty, the topology names it `fabric-<id>`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// An optional class (for example `10g`, `1g`), free text.
    pub class_type: Option<String>,
}

impl Fabric {
    /// A fabric with this name (empty for `fabric-<id>`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// The untagged VLAN's VID; every fabric has one and it cannot be deleted.
pub const UNTAGGED_VID: u16 = 0;
/// The largest VID MAAS accepts.
pub const MAX_VID: u16 = 4094;
/// The default MTU.
pub const DEFAULT_MTU: u32 = 1500;
/// The smallest MTU accepted.
pub const MIN_MTU: u32 = 552;
/// The largest MTU accepted.
pub const MAX_MTU: u32 = 65535;

/// A VLAN on a fabric. VID 0 is the fabric's untagged default VLAN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vlan {
    /// The fabric the VLAN belongs to.
    pub fabric: FabricId,
    /// The 802.1Q VLAN id, 0 (untagged) to 4094, unique within the fabric.
    pub vid: u16,
    /// Optional name. A fabric's untagged VLAN is called `untagged` unless given another name;
    /// clearing its name gives it that one back.
    pub name: Option<String>,
    /// Free text.
    pub description: String,
    /// MTU, 552 to 65535, default 1500.
    pub mtu: u32,
    /// Whether the controller serves DHCP on this VLAN. Setting it clears `relay_vlan`.
    pub dhcp_on: bool,
    /// The VLAN whose DHCP server answers for this one through a relay agent. It may not itself
    /// relay.
    pub relay_vlan: Option<VlanId>,
    /// The space the VLAN (and so each of its subnets) belongs to.
    pub space: Option<SpaceId>,
}

impl Vlan {
    /// A VLAN with MAAS's defaults: MTU 1500, DHCP off, no relay, no space.
    pub fn new(fabric: FabricId, vid: u16) -> Self {
        Self {
            fabric,
            vid,
            name: None,
            description: String::new(),
            mtu: DEFAULT_MTU,
            dhcp_on: false,
            relay_vlan: None,
            space: None,
        }
    }
}

/// A named group of VLANs, used to say which networks a service or machine needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Space {
    /// Unique name matching `^[\w-]+$`. Left empty, the topology names it `space-<id>`.
    pub name: String,
    /// Free text.
    pub description: String,
}

impl Space {
    /// A space with this name (empty for `space-<id>`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// An availability zone: a failure domain that machines are placed in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// Unique name matching `^[\w-]+$`.
    pub name: String,
    /// Free text.
    pub description: String,
}

impl Zone {
    /// A zone with this name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// How reverse DNS is served for a subnet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RdnsMode {
    /// No reverse zone.
    Disabled,
    /// A reverse zone on the octet or nibble boundary (MAAS's default).
    #[default]
    Enabled,
    /// Classless delegation as in RFC 2317.
    Rfc2317,
}

/// An IP network on a VLAN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// Name; MAAS uses the CIDR when none is given.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The network. Host bits are cleared on insert; prefix length 0 is refused.
    pub cidr: IpNet,
    /// The VLAN the subnet is on; the subnet's space is the VLAN's.
    pub vlan: VlanId,
    /// Default gateway: inside the CIDR, or IPv6 link-local.
    pub gateway_ip: Option<IpAddr>,
    /// DNS servers handed to clients.
    pub dns_servers: Vec<IpAddr>,
    /// Managed subnets get addresses outside their ranges; unmanaged ones only inside reserved
    /// ranges. Default true.
    pub managed: bool,
    /// Whether the controller's DNS answers for this subnet. Default true.
    pub allow_dns: bool,
    /// Whether machines on this subnet may use the controller's proxy. Default true.
    pub allow_proxy: bool,
    /// Whether the subnet is actively scanned for neighbours. Default false.
    pub active_discovery: bool,
    /// Reverse DNS mode. Default enabled.
    pub rdns_mode: RdnsMode,
    /// Boot methods not answered on this subnet.
    pub disabled_boot_architectures: Vec<BootArchitecture>,
}

impl Subnet {
    /// A subnet with MAAS's defaults, named after its CIDR.
    pub fn new(cidr: IpNet, vlan: VlanId) -> Self {
        Self {
            name: cidr.trunc().to_string(),
            description: String::new(),
            cidr,
            vlan,
            gateway_ip: None,
            dns_servers: Vec::new(),
            managed: true,
            allow_dns: true,
            allow_proxy: true,
            active_discovery: false,
            rdns_mode: RdnsMode::Enabled,
            disabled_boot_architectures: Vec::new(),
        }
    }
}

/// A route that machines on `source` use to reach `destination`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRoute {
    /// The subnet whose machines get the route.
    pub source: SubnetId,
    /// The subnet reached.
    pub destination: SubnetId,
    /// The next hop, inside `source`.
    pub gateway_ip: IpAddr,
    /// Route metric, default 0.
    pub metric: u32,
}

impl StaticRoute {
    /// A route with metric 0.
    pub fn new(source: SubnetId, destination: SubnetId, gateway_ip: IpAddr) -> Self {
        Self {
            source,
            destination,
            gateway_ip,
            metric: 0,
        }
    }
}

/// What an [`IpRange`] is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpRangeKind {
    /// Leased by DHCP.
    Dynamic,
    /// Kept out of automatic assignment (managed subnet), or the only place it happens
    /// (unmanaged subnet).
    Reserved,
}

impl IpRangeKind {
    /// `dynamic` or `reserved`, as MAAS writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Dynamic => "dynamic",
            Self::Reserved => "reserved",
        }
    }
}

impl fmt::Display for IpRangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inclusive range of addresses in a subnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRange {
    /// The subnet holding the range.
    pub subnet: SubnetId,
    /// First address.
    pub start: IpAddr,
    /// Last address (inclusive).
    pub end: IpAddr,
    /// Dynamic or reserved.
    pub kind: IpRangeKind,
    /// Free text.
    pub comment: String,
}

impl IpRange {
    /// A range without comment.
    pub fn new(subnet: SubnetId, start: IpAddr, end: IpAddr, kind: IpRangeKind) -> Self {
        Self {
            subnet,
            start,
            end,
            kind,
            comment: String::new(),
        }
    }

    /// The number of addresses in the range (0 if it is malformed: end before start or mixed
    /// families).
    pub fn size(&self) -> u128 {
        match (crate::ip::bits(self.start), crate::ip::bits(self.end)) {
            ((f1, s), (f2, e)) if f1 == f2 && e >= s => (e - s).saturating_add(1),
            _ => 0,
        }
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (fs, s) = crate::ip::bits(self.start);
        let (fe, e) = crate::ip::bits(self.end);
        let (fi, i) = crate::ip::bits(ip);
        fs == fi && fe == fi && s <= i && i <= e
    }
}
