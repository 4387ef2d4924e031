//! The network configuration of a deployed machine, as MAAS renders it for cloud-init and
//! netplan.
//!
//! Rendering has two steps. [`plan`] works out what each interface gets, by MAAS's rules:
//! addresses, DHCP, the one default gateway of each family, static routes, source routing,
//! name servers. The plan then writes itself out as netplan version 2 ([`NetworkPlan::to_v2`],
//! which cloud-init also takes as network-config version 2) or as the version-1 form of curtin
//! and cloud-init ([`NetworkPlan::to_v1`]). Both are YAML documents with `network:` at the top.
//!
//! The rules, as MAAS's generator has them:
//! - Interfaces are rendered parents first, disabled ones left out; in version 2 they are
//!   grouped in the sections `ethernets`, `vlans`, `bonds`, `bridges`, in that order.
//!   Physical interfaces are matched by MAC address and given their name with `set-name`.
//! - MTU: the interface's own, else its VLAN's (1500 on no VLAN), raised to the largest MTU of
//!   its children.
//! - Bond parameters go under netplan's names (`mode`, `lacp-rate`, `mii-monitor-interval`,
//!   `up-delay`, `down-delay`, `transmit-hash-policy`, `gratuitous-arp`); `lacp-rate` only for
//!   802.3ad, the gratuitous ARP count only for active-backup. Bridge parameters become
//!   `forward-delay` and `stp`; an Open vSwitch bridge gets `openvswitch: {}`.
//! - A static or auto link gives `address/prefix`; a DHCP link `dhcp4`/`dhcp6` (both when it
//!   names no subnet); an interface with only a `link_up` link, or none, is brought up bare.
//! - One default gateway per family, chosen independently: the machine's gateway link for
//!   that family if it has one, else the first of the candidate links (static or auto, on a
//!   subnet with a gateway) ordered by: VLANs with DHCP on first; then bonds and bridges, the
//!   boot interface, other physical interfaces, VLAN interfaces; then static before auto
//!   links; then interface order.
//! - A static route goes on every interface with an address in its source subnet.
//! - Source routing (optional, version 2 only): every other candidate link gets a routing
//!   table of its own (numbered from 1) with a default route through its subnet's gateway and
//!   its static routes, and policy rules at priority 1000 that send traffic from the subnet,
//!   and traffic to its routes' destinations, through that table (traffic within the subnet
//!   stays in the main table).
//! - Name servers, per address: the controller's DNS addresses of the subnet's family when the
//!   subnet allows DNS (only those inside the subnet when it has no gateway), then the
//!   subnet's own DNS servers; the search list (the machine's domain first) when the subnet
//!   allows DNS. An interface with addresses but no name servers gets the machine's default
//!   ones, unless one of its subnets refuses DNS: the DNS servers of the IPv4 (else IPv6)
//!   default gateway's subnet, after the controller's addresses when that subnet allows DNS,
//!   or else the controller's addresses.
//! - An interface on no VLAN is `optional: true`, so boot does not wait for it.
//! - The commissioning form configures the boot interface by DHCP (for the families of its
//!   subnets, IPv4 when it has none) instead of its static and auto links.
//!
//! Keys: where MAAS writes netplan keys that netplan has since deprecated, and netplan (0.106
//! in Debian 12) accepts both, the current key is written: a default gateway is a route `to:
//! 0.0.0.0/0` (or `::/0`) rather than `gateway4`/`gateway6`, and the gratuitous ARP count is
//! `gratuitous-arp` rather than MAAS's `gratuitious-arp`. The default route is written as a
//! network rather than netplan's `to: default`, which cloud-init 22.4 does not parse.
//!
//! ```
//! use maas_net::netplan::{self, RenderOptions};
//! use maas_net::{Interface, Link, Machine, Subnet, Topology};
//!
//! let mut topo = Topology::new();
//! let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
//! let subnet = topo.create_subnet(Subnet {
//!     gateway_ip: Some("10.77.0.1".parse()?),
//!     ..Subnet::new("10.77.0.0/24".parse()?, vlan)
//! })?;
//! let node = topo.create_machine(Machine::new("node1").with_interface(
//!     Interface::physical("eth0", "52:54:00:77:00:01".parse()?, Some(vlan))
//!         .with_link(Link::fixed(subnet, "10.77.0.4".parse()?)),
//! ))?;
//! let yaml = netplan::plan(&topo, node, &RenderOptions::default())?.to_v2();
//! assert!(yaml.starts_with("network:\n  version: 2\n  ethernets:\n    eth0:\n"));
//! assert!(yaml.contains("- 10.77.0.4/24"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod plan;
mod v1;
mod v2;
mod yaml;

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{BondParams, BridgeParams, Error, Mac, MachineId, Topology};

pub use plan::plan;

/// What rendering needs beyond the topology.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Give every secondary gateway a routing table of its own (version 2 only).
    pub source_routing: bool,
    /// The controller's own DNS addresses, handed to machines on subnets that allow DNS.
    pub dns_servers: Vec<IpAddr>,
    /// Search domains after the machine's own.
    pub search: Vec<String>,
    /// Render the commissioning form: the boot interface by DHCP.
    pub commissioning: bool,
}

impl RenderOptions {
    /// Turns source routing on or off.
    pub fn source_routing(&mut self, on: bool) -> &mut Self {
        self.source_routing = on;
        self
    }

    /// Adds one of the controller's DNS addresses.
    pub fn dns_server(&mut self, ip: IpAddr) -> &mut Self {
        self.dns_servers.push(ip);
        self
    }

    /// Adds a search domain after the machine's own.
    pub fn search_domain(&mut self, domain: impl Into<String>) -> &mut Self {
        self.search.push(domain.into());
        self
    }

    /// Turns the commissioning form on or off.
    pub fn commissioning(&mut self, on: bool) -> &mut Self {
        self.commissioning = on;
        self
    }
}

/// The two document forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// netplan version 2, also cloud-init's network-config version 2.
    V2,
    /// The version-1 form of curtin and cloud-init.
    V1,
}

/// Renders one machine's network configuration in either form.
pub fn render(
    topo: &Topology,
    machine: MachineId,
    options: &RenderOptions,
    format: Format,
) -> Result<String, Error> {
    let plan = plan(topo, machine, options)?;
    Ok(match format {
        Format::V2 => plan.to_v2(),
        Format::V1 => plan.to_v1(),
    })
}

/// What each interface of a machine gets: the rendering before it is written out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPlan {
    /// The enabled interfaces, parents before children.
    pub interfaces: Vec<InterfacePlan>,
    /// The machine's default name servers (version 1 writes them once for the machine).
    pub dns_servers: Vec<IpAddr>,
    /// The search list: the machine's domain first.
    pub search: Vec<String>,
}

/// One interface's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfacePlan {
    /// The interface's name.
    pub name: String,
    /// What it is, with what that kind needs.
    pub kind: KindPlan,
    /// The effective MTU.
    pub mtu: u32,
    /// `accept-ra`, when set.
    pub accept_ra: Option<bool>,
    /// Brought up without addresses or DHCP (version 1 says `manual`).
    pub link_up: bool,
    /// One entry per static or auto link, in link order.
    pub addresses: Vec<AddressPlan>,
    /// DHCP for IPv4.
    pub dhcp4: bool,
    /// DHCP for IPv6.
    pub dhcp6: bool,
    /// Routes (version 2): default routes first, then static routes, with their tables when
    /// source routing gives them one.
    pub routes: Vec<RoutePlan>,
    /// Policy rules (version 2, source routing).
    pub routing_policy: Vec<RulePlan>,
    /// Name servers for the interface (version 2); empty when it has none.
    pub nameservers: Vec<IpAddr>,
    /// The search list that goes with them; empty when none.
    pub nameserver_search: Vec<String>,
    /// The boot does not wait for it (interfaces on no VLAN); `Some(false)` is written out
    /// (Open vSwitch bridges, which cloud-init would otherwise not wait for).
    pub optional: Option<bool>,
}

/// The kind of an interface, with what its section needs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KindPlan {
    /// A physical interface, matched by MAC address.
    Physical {
        /// Its MAC address.
        mac: Mac,
    },
    /// A VLAN interface.
    Vlan {
        /// The parent's name.
        parent: String,
        /// The VID.
        vid: u16,
    },
    /// A bond.
    Bond {
        /// Its MAC address (its first parent's unless set).
        mac: Option<Mac>,
        /// The enabled parents, by name.
        parents: Vec<String>,
        /// Its parameters.
        params: BondParams,
    },
    /// A bridge.
    Bridge {
        /// Its MAC address (its first parent's unless set).
        mac: Option<Mac>,
        /// The enabled parents, by name.
        parents: Vec<String>,
        /// Its parameters.
        params: BridgeParams,
    },
}

/// One static or auto link of an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPlan {
    /// The subnet.
    pub subnet: IpNet,
    /// The address with the subnet's prefix; `None` for an auto link not yet assigned (its
    /// subnet's routes and name servers still apply, as in MAAS).
    pub address: Option<IpNet>,
    /// The default gateway, when this link carries the machine's default route.
    pub gateway: Option<IpAddr>,
    /// The name servers this subnet brings.
    pub dns: Vec<IpAddr>,
    /// The search list, when the subnet allows DNS and brings name servers.
    pub search: Vec<String>,
    /// The static routes from this subnet (version 1 writes them per subnet).
    pub routes: Vec<RoutePlan>,
}

/// A route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePlan {
    /// The destination.
    pub to: IpNet,
    /// The next hop.
    pub via: IpAddr,
    /// The metric (static routes; default routes have none).
    pub metric: Option<u32>,
    /// The routing table (source routing); `None` is the main table.
    pub table: Option<u32>,
}

/// A policy routing rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulePlan {
    /// Source network.
    pub from: IpNet,
    /// Destination network, if the rule has one.
    pub to: Option<IpNet>,
    /// The table the rule sends to (254 is the main table).
    pub table: u32,
    /// The rule's priority, if it has one.
    pub priority: Option<u32>,
}

/// The priority of source-routing rules.
pub const POLICY_PRIORITY: u32 = 1000;
/// Linux's main routing table.
pub const MAIN_TABLE: u32 = 254;
