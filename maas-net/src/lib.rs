//! The shared network model of maas-rs.
//!
//! Every other maas-rs crate speaks this model: the address manager allocates inside its
//! subnets and ranges, the DHCP server picks a subnet by relay address and honours its
//! disabled boot architectures, discovery reports neighbours by VLAN, and the proxy opens
//! itself to the subnets that allow it.
//!
//! - [`Mac`]: MAC addresses in every common spelling, with their I/G and U/L bits, OUI and
//!   EUI-64 interface identifier.
//! - [`Fabric`], [`Vlan`], [`Space`], [`Subnet`], [`StaticRoute`], [`Zone`], [`IpRange`]: the
//!   entities, as plain values with MAAS's defaults.
//! - [`Machine`], [`Interface`], [`Link`]: machines with physical, VLAN, bond and bridge
//!   interfaces and their links to subnets (`auto`, `static`, `dhcp`, `link_up`).
//! - [`Topology`]: the container that owns them under stable ids and enforces MAAS's rules
//!   (names, VIDs, MTUs, relays, gateways, overlapping subnets, range placement; interface
//!   parents and VLANs, link subnets, free addresses, unique MACs) and referential integrity
//!   on every change.
//! - [`netplan`] (feature `netplan`, on by default): a machine's network configuration as MAAS
//!   renders it, in netplan version 2 (cloud-init network-config v2) and version-1 forms.
//! - [`doc`]: the TOML/JSON form of a topology, with references by name, and loading that
//!   reports every problem at once.
//! - [`ip`]: address arithmetic shared with the crates built on this one.
//! - [`dns`]: the reverse zones a subnet is served under (by its [`RdnsMode`]), reverse names
//!   and the generated names of dynamic-range addresses, as MAAS names them.
//!
//! The crate does no I/O.
//!
//! ```
//! use maas_net::{IpRange, IpRangeKind, Mac, Subnet, Topology, Vlan};
//!
//! let mut topo = Topology::new();
//! let pxe = topo.create_vlan(Vlan { dhcp_on: true, ..Vlan::new(Topology::DEFAULT_FABRIC, 10) })?;
//! let subnet = topo.create_subnet(Subnet {
//!     gateway_ip: Some("10.77.0.1".parse()?),
//!     ..Subnet::new("10.77.0.0/24".parse()?, pxe)
//! })?;
//! let err = topo
//!     .create_ip_range(IpRange::new(
//!         subnet,
//!         "10.77.0.1".parse()?,
//!         "10.77.0.50".parse()?,
//!         IpRangeKind::Dynamic,
//!     ))
//!     .unwrap_err();
//! assert!(err.to_string().starts_with(
//!     "Requested dynamic range conflicts with an existing IP address or range."
//! ));
//!
//! let mac: Mac = "52:54:00:77:00:10".parse()?;
//! assert!(mac.is_local());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod boot;
pub mod dns;
pub mod doc;
mod error;
pub mod ip;
pub mod lease;
mod mac;
mod machine;
mod model;
#[cfg(feature = "netplan")]
pub mod netplan;
mod topology;

pub use boot::BootArchitecture;
pub use doc::{LoadError, TopologyDoc};
pub use error::{Error, RangeEnds};
pub use lease::{ClientId, ClientKey, Timestamp};
pub use mac::{Mac, ParseMacError};
pub use machine::{
    AddressOracle, BondMode, BondParams, BridgeParams, BridgeType, DEFAULT_DOMAIN, Interface,
    InterfaceKind, LacpRate, Link, LinkMode, Machine, NoOracle, XmitHashPolicy,
};
pub use model::{
    DEFAULT_MTU, Fabric, FabricId, IpRange, IpRangeId, IpRangeKind, Kind, MAX_MTU, MAX_VID,
    MIN_MTU, MachineId, RdnsMode, Space, SpaceId, StaticRoute, StaticRouteId, Subnet, SubnetId,
    UNTAGGED_VID, Vlan, VlanId, Zone, ZoneId,
};
pub use topology::Topology;

#[cfg(all(doctest, feature = "netplan"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
