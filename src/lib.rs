//! maas-rs: the networking half of bare-metal provisioning, as a Rust SDK.
//!
//! This umbrella crate re-exports the member crates behind features, so an application can
//! depend on `maas` alone and switch on what it embeds:
//!
//! | feature | module | crate |
//! |---|---|---|
//! | `net` (default) | [`net`] | `maas-net`: MAC, fabric, VLAN, space, subnet, static route, zone, IP range |
//! | `ipam` | `ipam` | `maas-ipam`: address management with MAAS semantics, durable |
//! | `pxe` | `pxe` | `maas-pxe`: PXE/HTTP-boot DHCP option decoding, client classification, boot answers |
//! | `discovery` | `discovery` | `maas-discovery`: passive ARP/NDP/mDNS discovery, active scanning |
//! | `power` | `power` | `maas-power`: BMC power drivers (IPMI, Redfish, WoL, webhook, manual), power manager |
//! | `proxy` | `proxy` | `maas-proxy`: caching forward HTTP proxy with access control and apt rules |
//!
//! ```
//! # #[cfg(feature = "net")] {
//! use maas::net::{Subnet, Topology};
//!
//! let mut topo = Topology::new();
//! let untagged = topo.default_vlan(Topology::DEFAULT_FABRIC).expect("fabric-0 has one");
//! topo.create_subnet(Subnet::new("10.77.0.0/24".parse().unwrap(), untagged)).unwrap();
//! assert_eq!(topo.subnets().count(), 1);
//! # }
//! ```
#![forbid(unsafe_code)]

/// The shared network model (`maas-net`).
#[cfg(feature = "net")]
pub use maas_net as net;

/// Address management (`maas-ipam`).
#[cfg(feature = "ipam")]
pub use maas_ipam as ipam;

/// PXE and HTTP-boot DHCP (`maas-pxe`).
#[cfg(feature = "pxe")]
pub use maas_pxe as pxe;

/// Passive ARP/NDP/mDNS discovery and active scanning (`maas-discovery`).
#[cfg(feature = "discovery")]
pub use maas_discovery as discovery;

/// BMC power drivers and the power manager (`maas-power`).
#[cfg(feature = "power")]
pub use maas_power as power;

/// The caching forward proxy (`maas-proxy`).
#[cfg(feature = "proxy")]
pub use maas_proxy as proxy;
