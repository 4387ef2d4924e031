//! The DHCPv4 engine: RFC 2131 states, relays, rapid commit, conflict probes and ProxyDHCP.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Mutex;

use dhcproto::v4::{Flags, MessageType, Opcode};
use maas_net::{ClientKey, Subnet, SubnetId, Timestamp, Topology};

use super::{
    BootDecision, CLIENT_PORT, Destination, Event, Handled, Ignored, LeaseError, Leases,
    LoadBalance, LocalBoot, Mode, ServerConfig, Transmit, relay_addr,
};
use crate::dhcp::options::code;
use crate::dhcp::{
    BootClient, Classification, ConfigError, LeaseTimes, NetworkOptions, Reply, build_boot_options,
    build_proxy_boot_options, reply_to, v4,
};

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

    fn discover(
        &self,
        now: Timestamp,
        rx: &Received<'_>,
        packet: &v4::Packet,
        attempts: u8,
    ) -> Handled<L::Ticket> {
        let (subnet_id, subnet) = match self.select_subnet(rx, packet, false) {
            Ok(s) => s,
            Err(why) => return Handled::ignored(why),
        };
        let client = client_key(packet);
        if !self.balance.answers(subnet.vlan, &client, packet.secs()) {
            return Handled::ignored(Ignored::OtherShare(super::bucket(&client)));
        }
        let ip = match self
            .leases
            .offer(subnet_id, &client, now, self.config.offer_hold_secs)
        {
            Ok(IpAddr::V4(ip)) => ip,
            Ok(IpAddr::V6(ip)) => {
                return Handled::ignored(Ignored::Leases(LeaseError::Storage {
                    message: format!(
                        "the lease store offered the IPv6 address {ip} to a DHCPv4 client"
                    ),
                }));
            }
            Err(e) => return Handled::ignored(Ignored::Leases(e)),
        };
        if self.config.conflict_check {
            let mut probes = self.lock_probes();
            probes.next += 1;
            let id = probes.next;
            probes.pending.insert(
                id,
                PendingOffer {
                    bytes: rx.bytes.to_vec(),
                    source: rx.source,
                    local: rx.local,
                    interface: rx.interface,
                    attempts,
                },
            );
            let mut handled = Handled::event(Event::Offered {
                client,
                mac: packet.mac(),
                ip: IpAddr::V4(ip),
                boot: None,
            });
            handled.probe = Some(ConflictProbe {
                id,
                ip,
                interface: rx.interface,
            });
            return handled;
        }
        self.offer_or_commit(now, rx, packet, subnet_id, subnet, &client, ip)
    }

    /// The OFFER for `ip`, or with rapid commit the ACK.
    #[allow(clippy::too_many_arguments)]
    fn offer_or_commit(
        &self,
        now: Timestamp,
        rx: &Received<'_>,
        packet: &v4::Packet,
        subnet_id: SubnetId,
        subnet: &Subnet,
        client: &ClientKey,
        ip: Ipv4Addr,
    ) -> Handled<L::Ticket> {
        if self.config.rapid_commit && packet.option(RAPID_COMMIT).is_some() {
            return self.commit(now, rx, packet, subnet_id, subnet, client, ip, true);
        }
        let (mut reply, boot) = self.answer(rx, packet, MessageType::Offer, subnet_id, subnet);
        reply.set_yiaddr(ip);
        LeaseTimes::new(self.config.lease_secs).apply(&mut reply);
        let transmit = self.transmit(rx, packet, &reply, MessageType::Offer, ip);
        Handled {
            transmit: Some(transmit),
            ticket: None,
            probe: None,
            event: Event::Offered {
                client: client.clone(),
                mac: packet.mac(),
                ip: IpAddr::V4(ip),
                boot,
            },
        }
    }

    /// Binds `ip` and builds the ACK (or, when the store refuses, the NAK).
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        now: Timestamp,
        rx: &Received<'_>,
        packet: &v4::Packet,
        subnet_id: SubnetId,
        subnet: &Subnet,
        client: &ClientKey,
        ip: Ipv4Addr,
        rapid: bool,
    ) -> Handled<L::Ticket> {
        // Option 12, else the name in option 81 (client FQDN).
        let fqdn = packet
            .option(CLIENT_FQDN)
            .and_then(|o| super::fqdn_host_name(o, true));
        let hostname = packet
            .option(HOST_NAME)
            .and_then(|h| std::str::from_utf8(h).ok())
            .or(fqdn.as_deref());
        let bound = match self.leases.bind(
            IpAddr::V4(ip),
            client,
            hostname,
            now,
            self.config.lease_secs,
        ) {
            Ok(b) => b,
            Err(e @ LeaseError::Storage { .. }) => return Handled::ignored(Ignored::Leases(e)),
            Err(e) => return self.nak(rx, packet, client, Some(ip), e.to_string()),
        };
        let (mut reply, boot) = self.answer(rx, packet, MessageType::Ack, subnet_id, subnet);
        reply.set_yiaddr(ip);
        let remaining = bound.expires.0.saturating_sub(now.0);
        let lease = if self.config.lease_secs == u32::MAX {
            u32::MAX
        } else {
            u32::try_from(remaining).unwrap_or(u32::MAX - 1)
        };
        LeaseTimes::new(lease).apply(&mut reply);
        if rapid {
            reply.set(RAPID_COMMIT, &[]);
        }
        let transmit = self.transmit(rx, packet, &reply, MessageType::Ack, ip);
        Handled {
            transmit: Some(transmit),
            ticket: bound.ticket,
            probe: None,
            event: Event::Leased {
                client: client.clone(),
                mac: packet.mac(),
                ip: IpAddr::V4(ip),
                expires: bound.expires,
                rapid_commit: rapid,
                boot,
            },
        }
    }

    fn request(
        &self,
        now: Timestamp,
        rx: &Received<'_>,
        packet: &v4::Packet,
    ) -> Handled<L::Ticket> {
        let requested = option_addr(packet, REQUESTED_IP);
        let ciaddr = packet.ciaddr();
        let state = if let Some(server) = option_addr(packet, code::SERVER_ID) {
            if server != self.server_id(rx) {
                // The client chose another server's offer; ours lapses.
                return Handled::ignored(Ignored::OtherServer(IpAddr::V4(server)));
            }
            match requested.or((!ciaddr.is_unspecified()).then_some(ciaddr)) {
                Some(ip) => RequestState::Selecting(ip),
                None => return Handled::ignored(Ignored::Incomplete("REQUEST names no address")),
            }
        } else if let Some(ip) = requested.filter(|_| ciaddr.is_unspecified()) {
            RequestState::InitReboot(ip)
        } else if !ciaddr.is_unspecified() {
            RequestState::Renewing(ciaddr)
        } else {
            return Handled::ignored(Ignored::Incomplete("REQUEST names no address"));
        };
        let by_ciaddr = matches!(state, RequestState::Renewing(_));
        let client = client_key(packet);
        let (subnet_id, subnet) = match self.select_subnet(rx, packet, by_ciaddr) {
            Ok(s) => s,
            Err(Ignored::NoSubnet(net))
                if self.config.mode == Mode::Authoritative && !by_ciaddr =>
            {
                let ip = match state {
                    RequestState::Selecting(ip)
                    | RequestState::InitReboot(ip)
                    | RequestState::Renewing(ip) => ip,
                };
                return self.nak(
                    rx,
                    packet,
                    &client,
                    Some(ip),
                    format!("no subnet serves the client's network {net}"),
                );
            }
            Err(why) => return Handled::ignored(why),
        };
        let (ip, must_answer) = match state {
            RequestState::Selecting(ip) => (ip, true),
            RequestState::InitReboot(ip) | RequestState::Renewing(ip) => {
                (ip, self.config.mode == Mode::Authoritative)
            }
        };
        if !subnet.cidr.contains(&IpAddr::V4(ip)) {
            let reason = format!("{ip} is not on the client's network {}", subnet.cidr);
            return if must_answer {
                self.nak(rx, packet, &client, Some(ip), reason)
            } else {
                Handled::ignored(Ignored::NotAuthoritative(reason))
            };
        }
        if !must_answer {
            // Non-authoritative: answer only what the store agrees to, silently otherwise.
            let handled = self.commit(now, rx, packet, subnet_id, subnet, &client, ip, false);
            return match handled.event {
                Event::Refused { reason, .. } => {
                    Handled::ignored(Ignored::NotAuthoritative(reason))
                }
                _ => handled,
            };
        }
        self.commit(now, rx, packet, subnet_id, subnet, &client, ip, false)
    }

    fn decline(
        &self,
        now: Timestamp,
        rx: &Received<'_>,
        packet: &v4::Packet,
    ) -> Handled<L::Ticket> {
        if let Some(server) = option_addr(packet, code::SERVER_ID)
            && server != self.server_id(rx)
        {
            return Handled::ignored(Ignored::OtherServer(IpAddr::V4(server)));
        }
        let Some(ip) = option_addr(packet, REQUESTED_IP) else {
            return Handled::ignored(Ignored::Incomplete("DECLINE names no address"));
        };
        let client = client_key(packet);
        let result = self.leases.decline(
            IpAddr::V4(ip),
            &client,
            now,
            self.config.decline_quarantine_secs,
        );
        silent(result, || Event::Declined {
            client,
            ip: IpAddr::V4(ip),
        })
    }

    fn release(&self, rx: &Received<'_>, packet: &v4::Packet) -> Handled<L::Ticket> {
        if let Some(server) = option_addr(packet, code::SERVER_ID)
            && server != self.server_id(rx)
        {
            return Handled::ignored(Ignored::OtherServer(IpAddr::V4(server)));
        }
        let ip = packet.ciaddr();
        if ip.is_unspecified() {
            return Handled::ignored(Ignored::Incomplete("RELEASE has no ciaddr"));
        }
        let client = client_key(packet);
        let result = self.leases.release(IpAddr::V4(ip), &client);
        silent(result, || Event::Released {
            client,
            ip: IpAddr::V4(ip),
        })
    }

    fn inform(&self, rx: &Received<'_>, packet: &v4::Packet) -> Handled<L::Ticket> {
        let (subnet_id, subnet) = match self.select_subnet(rx, packet, true) {
            Ok(s) => s,
            Err(why) => return Handled::ignored(why),
        };
        let (mut reply, boot) = self.answer(rx, packet, MessageType::Ack, subnet_id, subnet);
        let ciaddr = packet.ciaddr();
        reply.set_ciaddr(ciaddr);
        let destination = if let Some(relay) = packet.relay() {
            relay_addr(relay)
        } else if !ciaddr.is_unspecified() {
            Destination::Unicast(SocketAddr::V4(SocketAddrV4::new(ciaddr, CLIENT_PORT)))
        } else {
            Destination::Unicast(SocketAddr::V4(rx.source))
        };
        Handled {
            transmit: Some(Transmit {
                interface: rx.interface,
                source: IpAddr::V4(rx.local),
                destination,
                bytes: reply.to_vec(),
            }),
            ticket: None,
            probe: None,
            event: Event::Informed {
                mac: packet.mac(),
                ip: (!ciaddr.is_unspecified()).then_some(IpAddr::V4(ciaddr)),
                boot,
            },
        }
    }

    fn nak(
        &self,
        rx: &Received<'_>,
        packet: &v4::Packet,
        client: &ClientKey,
        ip: Option<Ipv4Addr>,
        reason: String,
    ) -> Handled<L::Ticket> {
        let mut reply = reply_to(packet, MessageType::Nak, self.server_id(rx));
        reply.set_ciaddr(Ipv4Addr::UNSPECIFIED);
        reply.set(56, reason.as_bytes());
        let destination = match packet.relay() {
            Some(relay) => {
                reply.set_flags(Flags::default().set_broadcast());
                relay_addr(relay)
            }
            None => Destination::Broadcast,
        };
        Handled {
            transmit: Some(Transmit {
                interface: rx.interface,
                source: IpAddr::V4(rx.local),
                destination,
                bytes: reply.to_vec(),
            }),
            ticket: None,
            probe: None,
            event: Event::Refused {
                client: client.clone(),
                ip: ip.map(IpAddr::V4),
                reason,
            },
        }
    }

    /// The common part of OFFER and ACK: header, server id, echoed options, network options
    /// and the boot answer.
    fn answer(
        &self,
        rx: &Received<'_>,
        packet: &v4::Packet,
        kind: MessageType,
        subnet_id: SubnetId,
        subnet: &Subnet,
    ) -> (Reply, Option<BootDecision>) {
        let server_id = self.server_id(rx);
        let mut reply = reply_to(packet, kind, server_id);
        let requested = packet.requested();
        if let Some(net) = self.networks.get(&subnet_id) {
            net.apply(&mut reply, &requested);
        }
        let client = BootClient::from_v4(packet);
        let booting = client.is_pxe_client()
            || client.is_http_client()
            || client.ipxe
            || !client.architectures.is_empty();
        if !booting {
            return (reply, None);
        }
        if let (Some(local), Some(mac)) = (&self.local_boot, client.mac)
            && local(mac)
        {
            let decision = BootDecision {
                choice: Err(crate::dhcp::NoBoot::LocalDisk),
                file: None,
            };
            return (reply, Some(decision));
        }
        let classification = self.config.boot.classify(client, subnet);
        let boot = build_boot_options(&classification, &self.config.boot, server_id.into());
        if let Some(b) = &boot {
            b.apply_v4(&mut reply, &requested);
        }
        (
            reply,
            Some(decision(classification, boot.map(|b| b.boot_file))),
        )
    }

    fn transmit(
        &self,
        rx: &Received<'_>,
        packet: &v4::Packet,
        reply: &Reply,
        kind: MessageType,
        yiaddr: Ipv4Addr,
    ) -> Transmit {
        Transmit {
            interface: rx.interface,
            source: IpAddr::V4(rx.local),
            destination: destination(packet, kind, yiaddr),
            bytes: reply.to_vec(),
        }
    }

    /// ProxyDHCP: boot information without an address, on port 67 (to a DISCOVER) and on
    /// port 4011 (to a REQUEST or INFORM).
    fn proxy(
        &self,
        rx: &Received<'_>,
        packet: &v4::Packet,
        kind: MessageType,
    ) -> Handled<L::Ticket> {
        let (answer_kind, port) = match (rx.port, kind) {
            (ServerPort::Dhcp, MessageType::Discover) => (MessageType::Offer, 67),
            (ServerPort::Pxe, MessageType::Request | MessageType::Inform) => {
                (MessageType::Ack, 4011)
            }
            (_, other) => {
                return Handled::ignored(Ignored::NotARequest(format!(
                    "{other:?} on the ProxyDHCP path"
                )));
            }
        };
        let client = BootClient::from_v4(packet);
        if !(client.is_pxe_client() || client.is_http_client()) {
            return Handled::ignored(Ignored::NotBooting);
        }
        // The subnet, when the topology knows it, may disable boot methods.
        let disabled = self
            .select_subnet(rx, packet, true)
            .map(|(_, s)| s.disabled_boot_architectures.clone())
            .unwrap_or_default();
        let local = matches!((&self.local_boot, client.mac), (Some(f), Some(mac)) if f(mac));
        let choice = if local {
            Err(crate::dhcp::NoBoot::LocalDisk)
        } else {
            self.config.boot.choose(&client, &disabled)
        };
        let classification = Classification { client, choice };
        let server_id = self.server_id(rx);
        let Some(boot) =
            build_proxy_boot_options(&classification, &self.config.boot, server_id.into())
        else {
            return Handled::event(Event::ProxyAnswered {
                mac: packet.mac(),
                port,
                boot: decision(classification, None),
            });
        };
        let mut reply = reply_to(packet, answer_kind, server_id);
        if let Some(uuid) = packet.option(code::CLIENT_UUID) {
            reply.set(code::CLIENT_UUID, uuid);
        }
        if answer_kind == MessageType::Ack {
            reply.set_ciaddr(packet.ciaddr());
        }
        boot.apply_v4(&mut reply, &packet.requested());
        let destination = match (rx.port, packet.relay()) {
            (ServerPort::Pxe, _) => Destination::Unicast(SocketAddr::V4(rx.source)),
            (ServerPort::Dhcp, Some(relay)) => relay_addr(relay),
            (ServerPort::Dhcp, None) if !packet.ciaddr().is_unspecified() => Destination::Unicast(
                SocketAddr::V4(SocketAddrV4::new(packet.ciaddr(), CLIENT_PORT)),
            ),
            (ServerPort::Dhcp, None) => Destination::Broadcast,
        };
        Handled {
            transmit: Some(Transmit {
                interface: rx.interface,
                source: IpAddr::V4(rx.local),
                destination,
                bytes: reply.to_vec(),
            }),
            ticket: None,
            probe: None,
            event: Event::ProxyAnswered {
                mac: packet.mac(),
                port,
                boot: decision(classification, Some(boot.boot_file)),
            },
        }
    }
}

/// The outcome of a change that sends nothing back (RELEASE, DECLINE).
fn silent<T>(result: Result<Option<T>, LeaseError>, event: impl FnOnce() -> Event) -> Handled<T> {
    match result {
        Ok(ticket) => Handled {
            ticket,
            ..Handled::event(event())
        },
        Err(e) => Handled::ignored(Ignored::Leases(e)),
    }
}

fn decision(classification: Classification, file: Option<String>) -> BootDecision {
    BootDecision {
        choice: classification.choice,
        file,
    }
}

/// The key a client's lease is filed under: its client identifier (option 61) if it sends
/// one, else its hardware address.
pub(crate) fn client_key(packet: &v4::Packet) -> ClientKey {
    if let Some(id) = packet.option(code::CLIENT_ID).filter(|id| !id.is_empty()) {
        return ClientKey::ClientId(id.to_vec());
    }
    match packet.mac() {
        Some(mac) => ClientKey::Mac(mac),
        None => {
            let mut id = vec![packet.htype().into()];
            id.extend_from_slice(packet.chaddr());
            ClientKey::ClientId(id)
        }
    }
}

fn option_addr(packet: &v4::Packet, code: u8) -> Option<Ipv4Addr> {
    packet
        .option(code)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map(Ipv4Addr::from)
}

/// RFC 2131 4.1: relay, then NAK broadcast, then ciaddr, then the broadcast flag, then the
/// client's hardware address.
fn destination(packet: &v4::Packet, kind: MessageType, yiaddr: Ipv4Addr) -> Destination {
    if let Some(relay) = packet.relay() {
        return relay_addr(relay);
    }
    if kind == MessageType::Nak {
        return Destination::Broadcast;
    }
    let ciaddr = packet.ciaddr();
    if !ciaddr.is_unspecified() {
        return Destination::Unicast(SocketAddr::V4(SocketAddrV4::new(ciaddr, CLIENT_PORT)));
    }
    if packet.flags().broadcast() {
        return Destination::Broadcast;
    }
    match packet.mac() {
        Some(mac) if !yiaddr.is_unspecified() => Destination::Hardware { ip: yiaddr, mac },
        _ => Destination::Broadcast,
    }
}
