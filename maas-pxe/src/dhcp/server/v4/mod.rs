//! The DHCPv4 engine: RFC 2131 states, relays, rapid commit, conflict probes and ProxyDHCP.

mod messages;
mod proxy;
mod reply;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;

use dhcproto::v4::{MessageType, Opcode};
use maas_net::{ClientKey, Subnet, SubnetId, Timestamp, Topology};

use super::{Event, Handled, Ignored, Leases, LoadBalance, LocalBoot, Mode, ServerConfig};
use crate::dhcp::options::code;
use crate::dhcp::{ConfigError, NetworkOptions, v4};

/// Rapid commit (RFC 4039).
const RAPID_COMMIT: u8 = 80;
/// Requested IP address.
const REQUESTED_IP: u8 = 50;
/// Host name.
const HOST_NAME: u8 = 12;
const CLIENT_FQDN: u8 = 81;
/// Subnet selection (RFC 3011).
const SUBNET_SELECTION: u8 = 118;
/// How many addresses a DISCOVER may see fail the conflict probe before it gets no answer.
const MAX_PROBES: u8 = 3;

/// The port a datagram arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerPort {
    /// Port 67: DHCP.
    Dhcp,
    /// Port 4011: PXE boot-server requests (ProxyDHCP).
    Pxe,
}

/// A DHCPv4 datagram as the adapter received it.
#[derive(Clone, Copy, Debug)]
pub struct Received<'a> {
    /// The UDP payload.
    pub bytes: &'a [u8],
    /// Where it came from.
    pub source: SocketAddrV4,
    /// The server's address on the receiving interface (`IP_PKTINFO`'s `ipi_spec_dst`): it
    /// selects the subnet of directly attached clients and is the default server identifier.
    pub local: Ipv4Addr,
    /// The receiving interface, as the adapter numbers them (an interface index).
    pub interface: u32,
    /// The port it arrived on.
    pub port: ServerPort,
}

/// An address to probe (ICMP echo or ARP) before it is offered; report the answer with
/// [`Server4::probe_result`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConflictProbe {
    /// Identifies the waiting offer.
    pub id: u64,
    /// The address to probe.
    pub ip: Ipv4Addr,
    /// The interface to probe on.
    pub interface: u32,
}

struct PendingOffer {
    bytes: Vec<u8>,
    source: SocketAddrV4,
    local: Ipv4Addr,
    interface: u32,
    attempts: u8,
}

#[derive(Default)]
struct Probes {
    next: u64,
    pending: HashMap<u64, PendingOffer>,
}

/// The DHCPv4 server engine: decode, decide, build; no I/O.
///
/// ```
/// # #[cfg(feature = "ipam")] {
/// use std::sync::Mutex;
/// use maas_net::{IpRange, IpRangeKind, Subnet, Timestamp, Topology};
/// use maas_pxe::dhcp::server::{Received, Server4, ServerConfig, ServerPort};
///
/// let mut topology = Topology::new();
/// let vlan = topology.default_vlan(topology.fabrics().next().unwrap().0).unwrap();
/// topology.update_vlan(vlan, |v| v.dhcp_on = true)?;
/// let subnet = topology.create_subnet(Subnet::new("10.77.0.0/24".parse()?, vlan))?;
/// let range = IpRange::new(subnet, "10.77.0.100".parse()?, "10.77.0.199".parse()?, IpRangeKind::Dynamic);
/// topology.create_ip_range(range)?;
/// let leases = Mutex::new(maas_ipam::Ipam::new(topology.clone()));
/// let server = Server4::new(ServerConfig::default(), topology, leases)?;
/// # let _ = (Received::<'static> { bytes: &[], source: "0.0.0.0:68".parse()?, local: "10.77.0.1".parse()?, interface: 1, port: ServerPort::Dhcp }, Timestamp(0));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server4<L: Leases> {
    config: ServerConfig,
    topology: Topology,
    leases: L,
    networks: HashMap<SubnetId, NetworkOptions>,
    probes: Mutex<Probes>,
    local_boot: Option<LocalBoot>,
    balance: LoadBalance,
}

impl<L: Leases> std::fmt::Debug for Server4<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server4")
            .field("config", &self.config)
            .field("subnets", &self.networks.len())
            .finish_non_exhaustive()
    }
}

/// How the client is asking (RFC 2131 4.3.2).
enum RequestState {
    Selecting(Ipv4Addr),
    InitReboot(Ipv4Addr),
    Renewing(Ipv4Addr),
}

impl<L: Leases> Server4<L> {
    /// A server answering for `topology`'s subnets with leases from `leases`. Fails when the
    /// configuration's boot table or domain names are invalid.
    pub fn new(config: ServerConfig, topology: Topology, leases: L) -> Result<Self, ConfigError> {
        config.boot.validate()?;
        let mut server = Self {
            config,
            topology: Topology::new(),
            leases,
            networks: HashMap::new(),
            probes: Mutex::new(Probes::default()),
            local_boot: None,
            balance: LoadBalance::none(),
        };
        server.set_topology(topology)?;
        Ok(server)
    }

    /// Tells the server which clients boot from their local disk (see [`LocalBoot`]).
    pub fn set_local_boot(&mut self, local_boot: LocalBoot) {
        self.local_boot = Some(local_boot);
    }

    /// Splits the DISCOVERs of some links with other servers ([`LoadBalance`]); by default
    /// every DISCOVER is answered. Only new clients are split: requests, renewals and
    /// INFORMs are answered as before (a REQUEST names its server).
    pub fn set_load_balance(&mut self, balance: LoadBalance) {
        self.balance = balance;
    }

    /// Replaces the topology (subnets, VLANs, ranges) the server answers for.
    pub fn set_topology(&mut self, topology: Topology) -> Result<(), ConfigError> {
        let mut networks = HashMap::new();
        for (id, subnet) in topology.subnets() {
            let mtu = topology
                .vlan(subnet.vlan)
                .map_or(maas_net::DEFAULT_MTU, |v| v.mtu);
            let mut net = NetworkOptions::for_subnet(subnet, mtu);
            if let Some(domain) = &self.config.domain {
                net.set_domain(domain)?;
            }
            net.set_search(&self.config.domain_search)?;
            networks.insert(id, net);
        }
        self.networks = networks;
        self.topology = topology;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The topology served.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The lease store.
    pub fn leases(&self) -> &L {
        &self.leases
    }

    /// Answers one datagram received at time `now`.
    pub fn handle(&self, now: Timestamp, rx: &Received<'_>) -> Handled<L::Ticket> {
        let packet = match v4::decode(rx.bytes) {
            Ok(p) => p,
            Err(e) => return Handled::ignored(Ignored::Malformed(e.to_string())),
        };
        self.handle_packet(now, rx, &packet, 0)
    }

    fn handle_packet(
        &self,
        now: Timestamp,
        rx: &Received<'_>,
        packet: &v4::Packet,
        attempts: u8,
    ) -> Handled<L::Ticket> {
        if packet.opcode() != Opcode::BootRequest {
            return Handled::ignored(Ignored::NotARequest("a BOOTREPLY".into()));
        }
        let Some(kind) = packet.message_type() else {
            return Handled::ignored(Ignored::NotARequest("no message type (BOOTP)".into()));
        };
        if rx.port == ServerPort::Pxe || self.config.mode == Mode::Proxy {
            return self.proxy(rx, packet, kind);
        }
        match kind {
            MessageType::Discover => self.discover(now, rx, packet, attempts),
            MessageType::Request => self.request(now, rx, packet),
            MessageType::Decline => self.decline(now, rx, packet),
            MessageType::Release => self.release(rx, packet),
            MessageType::Inform => self.inform(rx, packet),
            other => Handled::ignored(Ignored::NotARequest(format!("{other:?}"))),
        }
    }

    /// Finishes an offer that waited for a conflict probe: `in_use` says whether anything
    /// answered at the address. An address in use is quarantined and another is offered
    /// (after its own probe), up to three times.
    pub fn probe_result(
        &self,
        probe: ConflictProbe,
        in_use: bool,
        now: Timestamp,
    ) -> Handled<L::Ticket> {
        let pending = self.lock_probes().pending.remove(&probe.id);
        let Some(pending) = pending else {
            return Handled::ignored(Ignored::Incomplete("no offer waits for this probe"));
        };
        let Ok(packet) = v4::decode(&pending.bytes) else {
            return Handled::ignored(Ignored::Incomplete("the waiting request is gone"));
        };
        let rx = Received {
            bytes: &pending.bytes,
            source: pending.source,
            local: pending.local,
            interface: pending.interface,
            port: ServerPort::Dhcp,
        };
        let client = client_key(&packet);
        let ip = IpAddr::V4(probe.ip);
        if in_use {
            let quarantined =
                self.leases
                    .decline(ip, &client, now, self.config.decline_quarantine_secs);
            if pending.attempts + 1 >= MAX_PROBES {
                return Handled::event(Event::Conflict { ip });
            }
            let mut next = self.discover(now, &rx, &packet, pending.attempts + 1);
            if next.probe.is_some() || next.transmit.is_some() {
                next.event = Event::Conflict { ip };
            }
            if let Ok(Some(ticket)) = quarantined
                && next.ticket.is_none()
            {
                next.ticket = Some(ticket);
            }
            return next;
        }
        let (subnet_id, subnet) = match self.select_subnet(&rx, &packet, false) {
            Ok(s) => s,
            Err(why) => return Handled::ignored(why),
        };
        self.offer_or_commit(now, &rx, &packet, subnet_id, subnet, &client, probe.ip)
    }

    fn lock_probes(&self) -> std::sync::MutexGuard<'_, Probes> {
        self.probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The number of offers waiting for a conflict probe.
    pub fn pending_probes(&self) -> usize {
        self.lock_probes().pending.len()
    }

    /// Forgets waiting probes whose adapter never reported back (for example after a socket
    /// error); their offers are not sent.
    pub fn cancel_probe(&self, probe: ConflictProbe) {
        self.lock_probes().pending.remove(&probe.id);
    }

    fn server_id(&self, rx: &Received<'_>) -> Ipv4Addr {
        self.config.server_id.unwrap_or(rx.local)
    }

    /// The subnet a request is for: the relay's (giaddr), the one named by option 118, the
    /// client's own address's (renewals, INFORM), or the receiving interface's.
    fn select_subnet<'s>(
        &'s self,
        rx: &Received<'_>,
        packet: &v4::Packet,
        by_ciaddr: bool,
    ) -> Result<(SubnetId, &'s Subnet), Ignored> {
        let selection = packet
            .option(SUBNET_SELECTION)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(Ipv4Addr::from);
        let ciaddr = packet.ciaddr();
        let key = if let Some(addr) = selection {
            addr
        } else if let Some(relay) = packet.relay() {
            relay
        } else if by_ciaddr && !ciaddr.is_unspecified() {
            ciaddr
        } else {
            rx.local
        };
        super::served_subnet(&self.topology, IpAddr::V4(key))
    }
}

/// The key a client's lease is filed under: its client identifier (option 61) if it sends
/// one, else its hardware address.
pub(crate) fn client_key(packet: &v4::Packet) -> ClientKey {
    if let Some(id) = packet.option(code::CLIENT_ID).filter(|id| !id.is_empty()) {
        return ClientKey::client_id(id);
    }
    match packet.mac() {
        Some(mac) => ClientKey::Mac(mac),
        None => {
            let mut id = vec![packet.htype().into()];
            id.extend_from_slice(packet.chaddr());
            ClientKey::client_id(id)
        }
    }
}
