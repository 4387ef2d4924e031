//! Machines: their interfaces, the links from those to subnets, and the choices that shape
//! their network configuration (boot interface, domain, default-gateway links).
//!
//! A [`Machine`] is a plain value; a [`Topology`](crate::Topology) owns machines under
//! [`MachineId`](crate::MachineId)s and checks each change against MAAS's rules (see
//! [`Topology::create_machine`](crate::Topology::create_machine)).

pub(crate) mod check;
mod interface;
mod link;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::SubnetId;

pub use interface::{
    BondMode, BondParams, BridgeParams, BridgeType, Interface, InterfaceKind, LacpRate,
    XmitHashPolicy,
};
pub use link::{Link, LinkMode};

/// The domain a machine is in when none is given.
pub const DEFAULT_DOMAIN: &str = "maas";

/// A machine: a host name, a domain, and its interfaces.
///
/// ```
/// use maas_net::{Interface, Link, Machine, Subnet, Topology};
///
/// let mut topo = Topology::new();
/// let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
/// let subnet = topo.create_subnet(Subnet::new("10.77.0.0/24".parse()?, vlan))?;
/// let machine = Machine::new("node1").with_interface(
///     Interface::physical("eth0", "52:54:00:77:00:01".parse()?, Some(vlan))
///         .with_link(Link::sticky(subnet)),
/// );
/// let id = topo.create_machine(machine)?;
/// // A static link without an address gets the subnet's next free one.
/// let eth0 = topo.machine(id).unwrap().interface("eth0").unwrap();
/// assert_eq!(eth0.links[0].ip, Some("10.77.0.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The host name: letters, digits and `-`, unique in the topology.
    pub hostname: String,
    /// The DNS domain; first in the rendered search list. Default `maas`.
    pub domain: String,
    /// The interface the machine boots from; `None` for its first physical interface.
    pub boot_interface: Option<String>,
    /// The interface whose IPv4 link carries the default IPv4 route; `None` lets MAAS's order
    /// choose.
    pub gateway_link_ipv4: Option<String>,
    /// The interface whose IPv6 link carries the default IPv6 route; `None` lets MAAS's order
    /// choose.
    pub gateway_link_ipv6: Option<String>,
    /// The interfaces, in the order they were added.
    pub interfaces: Vec<Interface>,
}

impl Machine {
    /// A machine in the domain `maas` without interfaces.
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            domain: DEFAULT_DOMAIN.to_owned(),
            boot_interface: None,
            gateway_link_ipv4: None,
            gateway_link_ipv6: None,
            interfaces: Vec::new(),
        }
    }

    /// The machine with one more interface.
    #[must_use]
    pub fn with_interface(mut self, interface: Interface) -> Self {
        self.interfaces.push(interface);
        self
    }

    /// The interface with this name.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The interface with this name, to change it.
    pub fn interface_mut(&mut self, name: &str) -> Option<&mut Interface> {
        self.interfaces.iter_mut().find(|i| i.name == name)
    }

    /// The boot interface's name: the one named, or the first physical interface.
    pub fn boot_interface_name(&self) -> Option<&str> {
        match &self.boot_interface {
            Some(name) => Some(name),
            None => self
                .interfaces
                .iter()
                .find(|i| matches!(i.kind, InterfaceKind::Physical))
                .map(|i| i.name.as_str()),
        }
    }

    /// Whether an interface is configured on the deployed system: a physical interface when
    /// enabled, a VLAN interface when its parent is, a bond or bridge when any parent is.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.enabled_at(name, 0)
    }

    fn enabled_at(&self, name: &str, depth: usize) -> bool {
        // Parents form no cycle in a checked machine; the bound keeps a bad one finite.
        let Some(iface) = self.interface(name) else {
            return false;
        };
        if iface.parents.is_empty() || depth > self.interfaces.len() {
            return iface.enabled;
        }
        iface.parents.iter().any(|p| self.enabled_at(p, depth + 1))
    }

    /// The addresses of the machine's links, with their subnets.
    pub fn addresses(&self) -> impl Iterator<Item = (SubnetId, IpAddr)> + '_ {
        self.interfaces
            .iter()
            .flat_map(|i| &i.links)
            .filter_map(|l| Some((l.subnet?, l.ip?)))
    }
}

/// Addresses in use that the topology does not know about: what an address manager has
/// assigned or leased. Machine links are checked against it, and a `static` link without an
/// address never gets one it reports in use.
///
/// `maas-ipam` can implement it for its allocator; a closure `Fn(SubnetId, IpAddr) -> bool`
/// is one too.
pub trait AddressOracle {
    /// Whether `ip` (in `subnet`) is taken by something outside the topology.
    fn in_use(&self, subnet: SubnetId, ip: IpAddr) -> bool;
}

/// The oracle that knows of no address: only the topology's own links count.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOracle;

impl AddressOracle for NoOracle {
    fn in_use(&self, _: SubnetId, _: IpAddr) -> bool {
        false
    }
}

impl<F: Fn(SubnetId, IpAddr) -> bool> AddressOracle for F {
    fn in_use(&self, subnet: SubnetId, ip: IpAddr) -> bool {
        self(subnet, ip)
    }
}
