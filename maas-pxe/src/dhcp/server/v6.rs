//! The DHCPv6 engine.

use std::net::{Ipv6Addr, SocketAddrV6};

use maas_net::{Timestamp, Topology};

use super::{Handled, Ignored, Leases, ServerConfig};
use crate::dhcp::ConfigError;

/// A DHCPv6 datagram as the adapter received it.
#[derive(Clone, Copy, Debug)]
pub struct Received6<'a> {
    /// The UDP payload.
    pub bytes: &'a [u8],
    /// Where it came from (a client's link-local address, or a relay).
    pub source: SocketAddrV6,
    /// The server's address on the receiving interface (`IPV6_PKTINFO`).
    pub local: Ipv6Addr,
    /// The receiving interface, as the adapter numbers them (an interface index).
    pub interface: u32,
}

/// The DHCPv6 server engine.
pub struct Server6<L: Leases> {
    config: ServerConfig,
    topology: Topology,
    leases: L,
}

impl<L: Leases> std::fmt::Debug for Server6<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server6")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<L: Leases> Server6<L> {
    /// A server answering for `topology`'s IPv6 subnets with leases from `leases`.
    pub fn new(config: ServerConfig, topology: Topology, leases: L) -> Result<Self, ConfigError> {
        config.boot.validate()?;
        Ok(Self {
            config,
            topology,
            leases,
        })
    }

    /// The lease store.
    pub fn leases(&self) -> &L {
        &self.leases
    }

    /// Answers one datagram received at time `now`.
    pub fn handle(&self, now: Timestamp, rx: &Received6<'_>) -> Handled<L::Ticket> {
        let _ = (now, rx, &self.topology);
        Handled::ignored(Ignored::NotARequest("DHCPv6 is not served yet".into()))
    }
}
