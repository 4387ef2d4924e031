//! The allocation engine: which address a machine, a DHCP client or a user gets.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use maas_net::{Mac, SubnetId, Topology};
use serde::{Deserialize, Serialize};

use crate::{Change, ClientKey, Record, Timestamp};

// Declared in this order (kept apart so that rustfmt does not sort them) because the docs list
// `Ipam`'s methods in declaration order: the core first, then topology, AUTO, requested
// addresses, discovery and DHCP.
mod state;

mod topology;

mod auto;

mod requested;

mod discovery;

mod dhcp;

mod records;

mod pools;

mod intervals;

pub(crate) use intervals::subtract;
pub(crate) use pools::Pools;

/// The address manager: the network model plus every recorded address, with indexes that make
/// each decision O(log n).
///
/// It does no I/O. Every change it makes is also queued as a [`Change`]; a caller that wants
/// durability hands [`take_changes`](Self::take_changes) to a [`Store`](crate::Store) (the
/// [`Durable`](crate::Durable) wrapper does exactly that, with group commit) and acknowledges
/// the operation only once the store has committed it. Time is passed in as a [`Timestamp`].
///
/// Rules, as MAAS applies them:
///
/// - **AUTO** in a managed subnet takes an address outside every reserved and dynamic range,
///   never the network address (nor the IPv4 broadcast address, except in /31 and /32; nor
///   the IPv6 subnet-router anycast address, except in /127 and /128), the gateway, the DNS
///   servers, the gateways of the subnet's static routes, an assigned or discovered address,
///   nor (in an IPv6 /64) `::1` to `::ffff:ffff`. It picks the first address of the smallest
///   free block, lowest start among equals. In an unmanaged subnet only reserved ranges are
///   used. When nothing is free it reuses the least recently seen DISCOVERED address and says
///   so ([`Event::ReusedDiscovered`]).
/// - **STICKY** and **USER_RESERVED** addresses are asked for by address: inside the subnet,
///   not in a dynamic range, not in a reserved range unless allowed, not in use.
/// - **DHCP** leases come only from dynamic ranges of managed subnets; a client gets its
///   previous address again while that is free; declined addresses are quarantined.
/// - **DISCOVERED** addresses never block an assignment of the same address, but are avoided
///   while free addresses exist.
///
/// ```
/// use maas_ipam::{AutoRequest, Ipam, Timestamp};
/// use maas_net::{Subnet, Topology};
///
/// let mut topo = Topology::new();
/// let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
/// let subnet = topo.create_subnet(Subnet {
///     gateway_ip: Some("10.77.0.1".parse()?),
///     ..Subnet::new("10.77.0.0/29".parse()?, vlan)
/// })?;
/// let mut ipam = Ipam::new(topo);
/// let now = Timestamp(1_700_000_000);
/// let got = ipam.allocate(subnet, &AutoRequest::new().exclude("10.77.0.3".parse()?).count(6), now)?;
/// let got: Vec<String> = got.iter().map(|ip| ip.to_string()).collect();
/// assert_eq!(got, ["10.77.0.2", "10.77.0.4", "10.77.0.5", "10.77.0.6"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Ipam {
    topology: Topology,
    pools: HashMap<SubnetId, Pools>,
    /// Every record but the DISCOVERED ones: at most one per address.
    held: BTreeMap<IpAddr, Record>,
    /// DISCOVERED records, apart: they may share an address with a held record.
    discovered: BTreeMap<IpAddr, Record>,
    /// Each DHCP client's last address.
    bindings: HashMap<ClientKey, IpAddr>,
    /// (expiry, address) of every DHCP record.
    expiries: BTreeSet<(Timestamp, IpAddr)>,
    changes: Vec<Change>,
    events: VecDeque<Event>,
}

/// Something worth telling an operator about, from [`Ipam::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A subnet had no free address left, so an address last seen in use on the wire was
    /// assigned. If its old user comes back, the two will clash.
    ReusedDiscovered {
        /// The subnet.
        subnet: SubnetId,
        /// The reused address.
        ip: IpAddr,
        /// The interface it was last seen on.
        mac: Option<Mac>,
        /// When it was last seen.
        last_seen: Timestamp,
    },
}

/// What to ask of [`Ipam::allocate`]: how many addresses, which to avoid, who they are for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoRequest {
    /// How many addresses (default 1). Fewer are returned when fewer are free.
    pub count: usize,
    /// Addresses not to hand out this time.
    pub exclude: Vec<IpAddr>,
    /// The interface the addresses are for.
    pub mac: Option<Mac>,
    /// Free text naming the holder.
    pub owner: Option<String>,
}

impl AutoRequest {
    /// One address, nothing excluded.
    pub fn new() -> Self {
        Self {
            count: 1,
            ..Self::default()
        }
    }

    /// Ask for `n` addresses.
    pub fn count(mut self, n: usize) -> Self {
        self.count = n;
        self
    }

    /// Do not hand out `ip`.
    pub fn exclude(mut self, ip: IpAddr) -> Self {
        self.exclude.push(ip);
        self
    }

    /// For this interface.
    pub fn mac(mut self, mac: Mac) -> Self {
        self.mac = Some(mac);
        self
    }
}

/// The kinds of address that are asked for by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Requested {
    /// Kept for a machine's interface until released.
    Sticky,
    /// Kept for something outside the controller's management.
    UserReserved,
}

/// Options of [`Ipam::assign`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignOptions {
    /// The interface the address is for.
    pub mac: Option<Mac>,
    /// Free text naming the holder.
    pub owner: Option<String>,
    /// Whether the address may lie in a reserved range of a managed subnet.
    pub allow_reserved: bool,
}

#[cfg(test)]
mod tests;
