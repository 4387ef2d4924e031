//! The DHCPv6 engine (RFC 8415): addresses from IA_NA, relays, rapid commit, Confirm,
//! Information-request and the boot-file URL of network-booting firmware (RFC 5970).
//!
//! What it does not do: temporary addresses (IA_TA) and prefix delegation (IA_PD) are answered
//! with NoAddrsAvail and NoPrefixAvail; a client gets one address, in its first IA_NA (a second
//! IA_NA gets NoAddrsAvail); Reconfigure, authentication and the Server Unicast option are not
//! implemented, so the adapter should only hand over messages the client sent to the
//! All_DHCP_Relay_Agents_and_Servers group or that a relay forwarded.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, IANA, IAPD, IATA, Message, MessageType, OptionCode,
    RelayMessage, Status, StatusCode,
};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::BinEncodable;
use maas_net::{ClientKey, Mac, Subnet, SubnetId, Timestamp, Topology};
use serde::{Deserialize, Serialize};

use super::{
    BootDecision, Bound, Destination, Event, Handled, Ignored, LeaseError, Leases, LocalBoot, Mode,
    SERVER_PORT_V6, ServerConfig, Transmit,
};
use crate::dhcp::options::code;
use crate::dhcp::{
    BootClient, Classification, ConfigError, NetworkOptions, build_boot_options, v6,
};

/// DHCPv6 option codes the engine reads or writes that [`code::v6`] does not name.
mod opt {
    /// DNS recursive name servers (RFC 3646).
    pub(super) const DNS_SERVERS: u16 = 23;
    /// Domain search list (RFC 3646).
    pub(super) const DOMAIN_SEARCH: u16 = 24;
    /// Interface-ID, echoed by the server in its Relay-reply.
    pub(super) const INTERFACE_ID: u16 = 18;
    /// Relay Source Port (RFC 8357): the relay listens on the port it sent from.
    pub(super) const RELAY_SOURCE_PORT: u16 = 135;
    /// Client FQDN (RFC 4704): the name the client goes by.
    pub(super) const CLIENT_FQDN: u16 = 39;
}

/// The server's DHCP unique identifier (RFC 8415 section 11), sent in every answer as the
/// server identifier (option 2).
///
/// Clients address Request, Renew, Release and Decline to the DUID of the server whose
/// Advertise they chose, so it must not change while their leases last: configure one (a
/// DUID-LL from one of the server's Ethernet addresses is the usual choice), or keep the one
/// [`Server6::duid`] reports and configure it from then on.
///
/// ```
/// use maas_pxe::dhcp::server::Duid;
///
/// let duid = Duid::LinkLayer { mac: "52:54:00:77:00:01".parse()? };
/// assert_eq!(duid.to_bytes(), [0, 3, 0, 1, 0x52, 0x54, 0, 0x77, 0, 1]);
/// let parsed: Duid = toml::from_str("type = \"link_layer\"\nmac = \"52:54:00:77:00:01\"")?;
/// assert_eq!(parsed, duid);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Duid {
    /// DUID-LLT (type 1): an Ethernet address and the time it was chosen.
    LinkLayerTime {
        /// The Ethernet address.
        mac: Mac,
        /// Seconds since midnight UTC, 1 January 2000, modulo 2^32.
        time: u32,
    },
    /// DUID-LL (type 3): an Ethernet address.
    LinkLayer {
        /// The Ethernet address.
        mac: Mac,
    },
    /// DUID-UUID (type 4, RFC 6355).
    Uuid {
        /// The UUID's 16 bytes.
        uuid: [u8; 16],
    },
}

impl Duid {
    /// The DUID as sent in option 2.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Hardware type 1 is Ethernet (RFC 826).
        match self {
            Self::LinkLayerTime { mac, time } => {
                let mut out = vec![0, 1, 0, 1];
                out.extend(time.to_be_bytes());
                out.extend(mac.octets());
                out
            }
            Self::LinkLayer { mac } => {
                let mut out = vec![0, 3, 0, 1];
                out.extend(mac.octets());
                out
            }
            Self::Uuid { uuid } => {
                let mut out = vec![0, 4];
                out.extend(uuid);
                out
            }
        }
    }

    /// The DUID-LL of the network interface `name`: its Ethernet address, read from
    /// `/sys/class/net/<name>/address` (Linux). A server that keeps this DUID across restarts
    /// lets its clients keep renewing with it.
    ///
    /// The error names the interface: [`io::ErrorKind::NotFound`] when there is no such
    /// interface, [`io::ErrorKind::InvalidInput`] for a name that is not one,
    /// [`io::ErrorKind::InvalidData`] when its address is not an Ethernet address.
    pub fn from_interface(name: &str) -> io::Result<Self> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not an interface name"),
            ));
        }
        let path = format!("/sys/class/net/{name}/address");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("interface {name}: {e}")))?;
        let mac = text.trim().parse::<Mac>().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("interface {name}: address {:?}: {e}", text.trim()),
            )
        })?;
        Ok(Self::LinkLayer { mac })
    }

    /// A DUID-UUID with a random (version 4) UUID: what a server without a configured DUID
    /// uses. Randomness comes from the standard library's per-process hash keys.
    pub fn random() -> Self {
        let mut uuid = [0u8; 16];
        for (i, half) in uuid.chunks_exact_mut(8).enumerate() {
            // Each `RandomState` has keys of its own; hashing the chunk index keeps the two
            // halves apart even if the keys were ever shared.
            half.copy_from_slice(&RandomState::new().hash_one(i).to_be_bytes());
        }
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        Self::Uuid { uuid }
    }
}

/// A DHCPv6 datagram as the adapter received it.
#[derive(Clone, Copy, Debug)]
pub struct Received6<'a> {
    /// The UDP payload.
    pub bytes: &'a [u8],
    /// Where it came from (a client's link-local address, or a relay).
    pub source: SocketAddrV6,
    /// The server's global (or unique local) address on the receiving interface: it selects
    /// the subnet of directly attached clients, is the source of the answer and, unless
    /// [`ServerConfig::server_id_v6`] is set, the server named in boot URLs.
    pub local: Ipv6Addr,
    /// The receiving interface, as the adapter numbers them (an interface index).
    pub interface: u32,
}

/// The DHCPv6 server engine: decode, decide, build; no I/O.
///
/// Call [`handle`](Self::handle) with each datagram received on port 547 and the wall-clock
/// time; send the [`Transmit`] it returns, after waiting for its ticket when there is one
/// (see [`Handled::ticket`]).
///
/// - Solicit gets an Advertise with one address of the subnet's dynamic ranges, held for
///   [`ServerConfig::offer_hold_secs`]; with a Rapid Commit option (and
///   [`ServerConfig::rapid_commit`]) it gets a Reply that leases it at once.
/// - Request, Renew and Rebind get a Reply that leases the address, with valid lifetime
///   [`ServerConfig::lease_secs`], preferred lifetime
///   [`ServerConfig::preferred_lifetime_secs`] (unset, the valid lifetime), T1 half and T2
///   four fifths of the preferred lifetime (RFC 8415 section 21.4). A Renew or Rebind of an
///   address that lapsed but is still free in a dynamic range leases it again.
/// - Release and Decline get a Reply with status Success; IAs whose addresses the client
///   does not hold carry NoBinding. Declined addresses are quarantined for
///   [`ServerConfig::decline_quarantine_secs`].
/// - Confirm gets Success when every address is on the client's link, NotOnLink otherwise.
/// - Information-request gets the configuration options only.
///
/// The client's link is the subnet of the innermost relay with a link-address (a lightweight
/// relay, RFC 6221, leaves it unspecified), else of [`Received6::local`]. Answers carry the
/// subnet's IPv6 DNS servers (option 23) and the domain search list (24, from
/// [`ServerConfig::domain_search`], else [`ServerConfig::domain`]) when the client's option
/// request option names them, or when it sends none. Network-booting clients (option 61, a
/// `PXEClient` or `HTTPClient` vendor class, iPXE) also get the boot-file URL (59) and its
/// parameters (60) when asked for 59, and vendor class `HTTPClient` when booting over HTTP.
///
/// In [`Mode::Proxy`] (addresses come from another server) only Information-request is
/// answered; in [`Mode::NonAuthoritative`] a Rebind the server cannot extend gets no answer.
///
/// ```
/// # #[cfg(feature = "ipam")] {
/// use std::sync::Mutex;
/// use maas_net::{IpRange, IpRangeKind, Subnet, Timestamp, Topology};
/// use maas_pxe::dhcp::server::{Duid, Event, Received6, Server6, ServerConfig};
/// use maas_pxe::dhcp::v6;
/// use maas_pxe::dhcproto::v6::{DhcpOption, IANA, Message, MessageType};
///
/// let mut topology = Topology::new();
/// let vlan = topology.default_vlan(topology.fabrics().next().unwrap().0).unwrap();
/// topology.update_vlan(vlan, |v| v.dhcp_on = true)?;
/// let subnet = topology.create_subnet(Subnet::new("fd77::/64".parse()?, vlan))?;
/// let range = IpRange::new(subnet, "fd77::1:0".parse()?, "fd77::1:ffff".parse()?, IpRangeKind::Dynamic);
/// topology.create_ip_range(range)?;
/// let leases = Mutex::new(maas_ipam::Ipam::new(topology.clone()));
/// let config = ServerConfig {
///     duid: Some(Duid::LinkLayer { mac: "52:54:00:77:00:01".parse()? }),
///     ..ServerConfig::default()
/// };
/// let server = Server6::new(config, topology, leases)?;
///
/// let mut solicit = Message::new_with_id(MessageType::Solicit, [1, 2, 3]);
/// solicit.opts_mut().insert(DhcpOption::ClientId(vec![0, 3, 0, 1, 0x52, 0x54, 0, 0x77, 2, 1]));
/// solicit.opts_mut().insert(DhcpOption::IANA(IANA { id: 1, t1: 0, t2: 0, opts: Default::default() }));
/// let bytes = v6::encode_message_to_vec(&solicit)?;
/// let rx = Received6 {
///     bytes: &bytes,
///     source: "[fe80::5054:ff:fe77:201%2]:546".parse()?,
///     local: "fd77::2".parse()?,
///     interface: 2,
/// };
/// let handled = server.handle(Timestamp(1_800_000_000), &rx);
/// assert_eq!(handled.event.ip(), Some("fd77::1:0".parse()?));
/// let advertise = v6::decode(&handled.transmit.unwrap().bytes)?;
/// assert_eq!(advertise.message().msg_type(), MessageType::Advertise);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server6<L: Leases> {
    config: ServerConfig,
    topology: Topology,
    leases: L,
    duid: Duid,
    duid_bytes: Vec<u8>,
    search: Vec<u8>,
    local_boot: Option<LocalBoot>,
}

impl<L: Leases> std::fmt::Debug for Server6<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server6")
            .field("config", &self.config)
            .field("duid", &self.duid)
            .finish_non_exhaustive()
    }
}

/// A decoded client message with what the engine reads from it more than once.
struct Request<'p> {
    message: &'p Message,
    /// The relays it came through, outermost first.
    relays: Vec<&'p RelayMessage>,
    client_id: Option<&'p [u8]>,
    boot: BootClient,
    /// The option request option's codes, if it sent one.
    oro: Option<Vec<u16>>,
}

impl Request<'_> {
    fn wants(&self, code: u16) -> bool {
        self.oro.as_ref().is_none_or(|o| o.contains(&code))
    }

    fn client(&self) -> ClientKey {
        ClientKey::ClientId(self.client_id.unwrap_or_default().to_vec())
    }

    /// The host name in the client's FQDN option (39), to record with its lease.
    fn host_name(&self) -> Option<String> {
        raw_option(self.message.opts(), opt::CLIENT_FQDN)
            .and_then(|o| super::fqdn_host_name(o, false))
    }

    fn ia_nas(&self) -> impl Iterator<Item = &IANA> + '_ {
        self.message.opts().iter().filter_map(|o| match o {
            DhcpOption::IANA(ia) => Some(ia),
            _ => None,
        })
    }

    /// Every address in every IA_NA.
    fn addresses(&self) -> Vec<Ipv6Addr> {
        self.ia_nas()
            .flat_map(|ia| ia_addresses(&ia.opts))
            .collect()
    }

    /// The client's address, as far as the server can tell.
    fn client_addr(&self, rx: &Received6<'_>) -> Ipv6Addr {
        self.relays
            .last()
            .map_or(*rx.source.ip(), |r| r.peer_addr())
    }
}

/// The addresses in an IA's options.
fn ia_addresses(opts: &DhcpOptions) -> impl Iterator<Item = Ipv6Addr> + '_ {
    opts.iter().filter_map(|o| match o {
        DhcpOption::IAAddr(a) => Some(a.addr),
        _ => None,
    })
}

/// Lifetimes of one address and the T1/T2 of its IA.
#[derive(Clone, Copy)]
struct Lifetimes {
    valid: u32,
    preferred: u32,
    t1: u32,
    t2: u32,
}

impl Lifetimes {
    const ZERO: Self = Self {
        valid: 0,
        preferred: 0,
        t1: 0,
        t2: 0,
    };
}

/// How the server treats a message's server identifier (RFC 8415 section 16).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ServerIdRule {
    /// It must be there and be ours.
    Ours,
    /// It must not be there.
    Absent,
    /// If there, it must be ours.
    OursIfPresent,
}

impl<L: Leases> Server6<L> {
    /// A server answering for `topology`'s IPv6 subnets with leases from `leases`. Fails when
    /// the configuration's boot table or domain names are invalid. Without
    /// [`ServerConfig::duid`] the server makes up a [`Duid::random`] one, which
    /// [`duid`](Self::duid) reports.
    pub fn new(config: ServerConfig, topology: Topology, leases: L) -> Result<Self, ConfigError> {
        config.boot.validate()?;
        let mut names = NetworkOptions::default();
        if config.domain_search.is_empty() {
            names.set_search(config.domain.iter())?;
        } else {
            names.set_search(&config.domain_search)?;
        }
        let duid = config.duid.unwrap_or_else(Duid::random);
        Ok(Self {
            duid_bytes: duid.to_bytes(),
            duid,
            search: search_list(&names.domain_search),
            config,
            topology,
            leases,
            local_boot: None,
        })
    }

    /// Replaces the topology (subnets, VLANs, ranges) the server answers for.
    pub fn set_topology(&mut self, topology: Topology) {
        self.topology = topology;
    }

    /// Tells the server which clients boot from their local disk (see [`LocalBoot`]).
    pub fn set_local_boot(&mut self, local_boot: LocalBoot) {
        self.local_boot = Some(local_boot);
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

    /// The server's DUID: the configured one, or the one it made up.
    pub fn duid(&self) -> &Duid {
        &self.duid
    }

    /// Answers one datagram received at time `now`.
    pub fn handle(&self, now: Timestamp, rx: &Received6<'_>) -> Handled<L::Ticket> {
        let packet = match v6::decode(rx.bytes) {
            Ok(p) => p,
            Err(e) => return Handled::ignored(Ignored::Malformed(e.to_string())),
        };
        let relays = packet.relays();
        if let Some(relay) = relays
            .iter()
            .find(|r| r.msg_type() != MessageType::RelayForw)
        {
            return Handled::ignored(Ignored::NotARequest(format!("{:?}", relay.msg_type())));
        }
        let message = packet.message();
        let kind = message.msg_type();
        let rule = match kind {
            MessageType::Solicit | MessageType::Confirm | MessageType::Rebind => {
                ServerIdRule::Absent
            }
            MessageType::Request
            | MessageType::Renew
            | MessageType::Release
            | MessageType::Decline => ServerIdRule::Ours,
            MessageType::InformationRequest => ServerIdRule::OursIfPresent,
            other => return Handled::ignored(Ignored::NotARequest(format!("{other:?}"))),
        };
        let client_id = match message.opts().get(OptionCode::ClientId) {
            Some(DhcpOption::ClientId(id)) => Some(id.as_slice()),
            _ => None,
        };
        if let Err(why) = self.validate(message, kind, rule, client_id.is_some()) {
            return Handled::ignored(why);
        }
        if self.config.mode == Mode::Proxy && kind != MessageType::InformationRequest {
            return Handled::ignored(Ignored::NotAuthoritative(format!(
                "a {kind:?} in ProxyDHCP mode, where addresses come from another server"
            )));
        }
        let oro = match message.opts().get(OptionCode::ORO) {
            Some(DhcpOption::ORO(oro)) => Some(oro.opts.iter().map(|&c| u16::from(c)).collect()),
            _ => None,
        };
        let req = Request {
            message,
            relays,
            client_id,
            boot: BootClient::from_v6(message),
            oro,
        };
        let (subnet_id, subnet) = match self.select_subnet(rx, &req.relays) {
            Ok(s) => s,
            Err(why) => return Handled::ignored(why),
        };
        let link = Link {
            rx,
            id: subnet_id,
            subnet,
        };
        match kind {
            MessageType::Solicit => self.solicit(now, &link, &req),
            MessageType::Request => self.commit(now, &link, &req, false),
            MessageType::Renew => self.extend(now, &link, &req, false),
            MessageType::Rebind => self.extend(now, &link, &req, true),
            MessageType::Release => self.release(&link, &req),
            MessageType::Decline => self.decline(now, &link, &req),
            MessageType::Confirm => self.confirm(&link, &req),
            _ => self.inform(&link, &req),
        }
    }

    /// RFC 8415 section 16: the options each kind of message must and must not carry.
    fn validate(
        &self,
        message: &Message,
        kind: MessageType,
        rule: ServerIdRule,
        has_client_id: bool,
    ) -> Result<(), Ignored> {
        let server_id = match message.opts().get(OptionCode::ServerId) {
            Some(DhcpOption::ServerId(id)) => Some(id.as_slice()),
            _ => None,
        };
        match (rule, server_id) {
            (ServerIdRule::Ours | ServerIdRule::OursIfPresent, Some(id))
                if id != self.duid_bytes.as_slice() =>
            {
                return Err(Ignored::OtherServerDuid(hex(id)));
            }
            (ServerIdRule::Ours, None) => {
                return Err(Ignored::Incomplete(
                    "the message carries no server identifier",
                ));
            }
            (ServerIdRule::Absent, Some(_)) => {
                return Err(Ignored::Malformed(format!(
                    "a {kind:?} may not carry a server identifier (RFC 8415 section 16)"
                )));
            }
            _ => {}
        }
        if kind == MessageType::InformationRequest {
            let has_ia = message.opts().iter().any(|o| {
                matches!(
                    o,
                    DhcpOption::IANA(_) | DhcpOption::IATA(_) | DhcpOption::IAPD(_)
                )
            });
            if has_ia {
                return Err(Ignored::Malformed(
                    "an Information-request may not carry an IA option (RFC 8415 section 16.12)"
                        .into(),
                ));
            }
        } else if !has_client_id {
            return Err(Ignored::Incomplete(
                "the message carries no client identifier",
            ));
        }
        Ok(())
    }

    /// The client's link: the innermost relay's link-address that is set, else the receiving
    /// interface's address.
    fn select_subnet<'s>(
        &'s self,
        rx: &Received6<'_>,
        relays: &[&RelayMessage],
    ) -> Result<(SubnetId, &'s Subnet), Ignored> {
        let key = relays
            .iter()
            .rev()
            .map(|r| r.link_addr())
            .find(|a| !a.is_unspecified())
            .unwrap_or(rx.local);
        super::served_subnet(&self.topology, IpAddr::V6(key))
    }

    fn solicit(
        &self,
        now: Timestamp,
        link: &Link<'_, '_>,
        req: &Request<'_>,
    ) -> Handled<L::Ticket> {
        let rapid = req.message.opts().get(OptionCode::RapidCommit).is_some();
        if rapid && self.config.rapid_commit {
            return self.commit(now, link, req, true);
        }
        let client = req.client();
        let mut reply = self.reply(req, MessageType::Advertise);
        let mut offered = None;
        let mut refusal = None;
        for ia in req.ia_nas() {
            if offered.is_some() || refusal.is_some() {
                push(&mut reply, no_address(ia, "one address per client"));
                continue;
            }
            match self
                .leases
                .offer(link.id, &client, now, self.config.offer_hold_secs)
            {
                Ok(IpAddr::V6(ip)) => {
                    let times = self.lifetimes(self.config.lease_secs);
                    push(&mut reply, with_address(ia, ip, times));
                    offered = Some(ip);
                }
                Ok(IpAddr::V4(ip)) => return wrong_family(ip.into()),
                Err(e @ LeaseError::Storage { .. }) => return Handled::ignored(Ignored::Leases(e)),
                Err(e) => {
                    push(&mut reply, no_address(ia, &e.to_string()));
                    refusal = Some(e.to_string());
                }
            }
        }
        unsupported_ias(req, &mut reply);
        let boot = self.configure(&mut reply, link, req);
        let event = match offered {
            Some(ip) => Event::Offered {
                client,
                mac: req.boot.mac,
                ip: IpAddr::V6(ip),
                boot,
            },
            None => Event::Refused {
                client,
                ip: None,
                reason: refusal.unwrap_or_else(|| "the Solicit asks for no address (IA_NA)".into()),
            },
        };
        self.send(link, req, &reply, None, event)
    }

    /// Request, or Solicit with rapid commit: binds the address of the first IA_NA.
    fn commit(
        &self,
        now: Timestamp,
        link: &Link<'_, '_>,
        req: &Request<'_>,
        rapid: bool,
    ) -> Handled<L::Ticket> {
        let client = req.client();
        let mut reply = self.reply(req, MessageType::Reply);
        let mut bound: Option<Bound<L::Ticket>> = None;
        let mut refusal: Option<(Option<Ipv6Addr>, String)> = None;
        for ia in req.ia_nas() {
            if bound.is_some() {
                push(&mut reply, no_address(ia, "one address per client"));
                continue;
            }
            let hint = ia_addresses(&ia.opts).next();
            if let Some(ip) = hint.filter(|ip| !rapid && !link.on_link(*ip)) {
                let reason = format!("{ip} is not on the client's link {}", link.subnet.cidr);
                push(&mut reply, ia_status(ia, Status::NotOnLink, &reason));
                refusal = Some((Some(ip), reason));
                continue;
            }
            let hint = hint.filter(|ip| link.on_link(*ip));
            match self.assign(now, link, &client, req.host_name().as_deref(), hint) {
                Ok(b) => {
                    let IpAddr::V6(ip) = b.ip else {
                        return wrong_family(b.ip);
                    };
                    let times = self.lifetimes(self.granted(now, &b));
                    push(&mut reply, with_address(ia, ip, times));
                    bound = Some(b);
                }
                Err(e @ LeaseError::Storage { .. }) => return Handled::ignored(Ignored::Leases(e)),
                Err(e) => {
                    push(&mut reply, no_address(ia, &e.to_string()));
                    refusal = Some((hint, e.to_string()));
                }
            }
        }
        unsupported_ias(req, &mut reply);
        if rapid {
            reply.opts_mut().insert(DhcpOption::RapidCommit);
        }
        let boot = self.configure(&mut reply, link, req);
        let (ticket, event) = match (bound, refusal) {
            (Some(b), _) => (
                b.ticket,
                Event::Leased {
                    client,
                    mac: req.boot.mac,
                    ip: b.ip,
                    expires: b.expires,
                    rapid_commit: rapid,
                    boot,
                },
            ),
            (None, refusal) => {
                let (ip, reason) = refusal.unwrap_or_else(|| {
                    (
                        None,
                        format!(
                            "the {:?} asks for no address (IA_NA)",
                            req.message.msg_type()
                        ),
                    )
                });
                (
                    None,
                    Event::Refused {
                        client,
                        ip: ip.map(IpAddr::V6),
                        reason,
                    },
                )
            }
        };
        self.send(link, req, &reply, ticket, event)
    }

    /// Leases the client's address: `hint` if the store agrees, else the client's own offer or
    /// lease, or a free one.
    fn assign(
        &self,
        now: Timestamp,
        link: &Link<'_, '_>,
        client: &ClientKey,
        host_name: Option<&str>,
        hint: Option<Ipv6Addr>,
    ) -> Result<Bound<L::Ticket>, LeaseError> {
        let lease = self.config.lease_secs;
        if let Some(ip) = hint {
            match self
                .leases
                .bind(IpAddr::V6(ip), client, host_name, now, lease)
            {
                Err(LeaseError::Unavailable { .. } | LeaseError::NotHolder { .. }) => {}
                other => return other,
            }
        }
        let ip = self
            .leases
            .offer(link.id, client, now, self.config.offer_hold_secs)?;
        self.leases.bind(ip, client, host_name, now, lease)
    }

    /// Renew and Rebind: extends the lease of the address in the client's IA_NA.
    fn extend(
        &self,
        now: Timestamp,
        link: &Link<'_, '_>,
        req: &Request<'_>,
        rebind: bool,
    ) -> Handled<L::Ticket> {
        let client = req.client();
        let host_name = req.host_name();
        let mut reply = self.reply(req, MessageType::Reply);
        let mut bound: Option<Bound<L::Ticket>> = None;
        let mut refusal: Option<(Option<Ipv6Addr>, String)> = None;
        for ia in req.ia_nas() {
            let mut opts = DhcpOptions::new();
            let mut times = None;
            let mut zeroed = false;
            for ip in ia_addresses(&ia.opts) {
                if !link.on_link(ip) {
                    // Not for this link: the client must stop using it.
                    opts.insert(address(ip, Lifetimes::ZERO));
                    zeroed = true;
                    refusal.get_or_insert_with(|| {
                        (
                            Some(ip),
                            format!("{ip} is not on the client's link {}", link.subnet.cidr),
                        )
                    });
                    continue;
                }
                let result = if bound.is_some() {
                    Err(format!("{client} holds another address already"))
                } else {
                    match self.leases.bind(
                        IpAddr::V6(ip),
                        &client,
                        host_name.as_deref(),
                        now,
                        self.config.lease_secs,
                    ) {
                        Ok(b) => Ok(b),
                        Err(e @ LeaseError::Storage { .. }) => {
                            return Handled::ignored(Ignored::Leases(e));
                        }
                        Err(e) => Err(e.to_string()),
                    }
                };
                match result {
                    Ok(b) => {
                        let t = self.lifetimes(self.granted(now, &b));
                        opts.insert(address(ip, t));
                        times = Some(t);
                        bound = Some(b);
                    }
                    Err(reason) => {
                        if rebind {
                            opts.insert(address(ip, Lifetimes::ZERO));
                            zeroed = true;
                        }
                        refusal.get_or_insert((Some(ip), reason));
                    }
                }
            }
            if times.is_none() && !zeroed {
                let reason = "no binding for this IA";
                push(&mut reply, ia_status(ia, Status::NoBinding, reason));
                refusal.get_or_insert((None, reason.into()));
                continue;
            }
            let t = times.unwrap_or(Lifetimes::ZERO);
            push(
                &mut reply,
                DhcpOption::IANA(IANA {
                    id: ia.id,
                    t1: t.t1,
                    t2: t.t2,
                    opts,
                }),
            );
        }
        if rebind && bound.is_none() && self.config.mode == Mode::NonAuthoritative {
            let reason = refusal.map_or_else(|| "a Rebind without addresses".into(), |r| r.1);
            return Handled::ignored(Ignored::NotAuthoritative(reason));
        }
        unsupported_ias(req, &mut reply);
        let boot = self.configure(&mut reply, link, req);
        let (ticket, event) = match bound {
            Some(b) => (
                b.ticket,
                Event::Leased {
                    client,
                    mac: req.boot.mac,
                    ip: b.ip,
                    expires: b.expires,
                    rapid_commit: false,
                    boot,
                },
            ),
            None => {
                let (ip, reason) =
                    refusal.unwrap_or_else(|| (None, "the message asks for no address".into()));
                (
                    None,
                    Event::Refused {
                        client,
                        ip: ip.map(IpAddr::V6),
                        reason,
                    },
                )
            }
        };
        self.send(link, req, &reply, ticket, event)
    }

    fn release(&self, link: &Link<'_, '_>, req: &Request<'_>) -> Handled<L::Ticket> {
        self.give_back(link, req, |ip, client| self.leases.release(ip, client))
    }

    fn decline(
        &self,
        now: Timestamp,
        link: &Link<'_, '_>,
        req: &Request<'_>,
    ) -> Handled<L::Ticket> {
        let quarantine = self.config.decline_quarantine_secs;
        self.give_back(link, req, |ip, client| {
            self.leases.decline(ip, client, now, quarantine)
        })
    }

    /// Release and Decline: `op` on every address of every IA_NA; IAs with an address the
    /// client does not hold get NoBinding (RFC 8415 sections 18.3.7 and 18.3.8).
    fn give_back(
        &self,
        link: &Link<'_, '_>,
        req: &Request<'_>,
        op: impl Fn(IpAddr, &ClientKey) -> Result<Option<L::Ticket>, LeaseError>,
    ) -> Handled<L::Ticket> {
        let declining = req.message.msg_type() == MessageType::Decline;
        let client = req.client();
        let mut reply = self.reply(req, MessageType::Reply);
        let mut done = None;
        let mut refusal = None;
        let mut ticket = None;
        for ia in req.ia_nas() {
            let mut unbound = false;
            for ip in ia_addresses(&ia.opts) {
                match op(IpAddr::V6(ip), &client) {
                    Ok(t) => {
                        done.get_or_insert(ip);
                        // A later ticket covers the changes of earlier ones.
                        ticket = t.or(ticket);
                    }
                    Err(e @ LeaseError::Storage { .. }) => {
                        return Handled::ignored(Ignored::Leases(e));
                    }
                    Err(e) => {
                        unbound = true;
                        refusal.get_or_insert((ip, e.to_string()));
                    }
                }
            }
            if unbound {
                push(
                    &mut reply,
                    ia_status(ia, Status::NoBinding, "the client holds no such address"),
                );
            }
        }
        let text = if declining { "declined" } else { "released" };
        reply.opts_mut().insert(status(Status::Success, text));
        let event = match (done, refusal) {
            (Some(ip), _) if declining => Event::Declined {
                client,
                ip: IpAddr::V6(ip),
            },
            (Some(ip), _) => Event::Released {
                client,
                ip: IpAddr::V6(ip),
            },
            (None, refusal) => Event::Refused {
                client,
                ip: refusal.as_ref().map(|r| IpAddr::V6(r.0)),
                reason: refusal.map_or_else(|| "the message names no address".into(), |r| r.1),
            },
        };
        self.send(link, req, &reply, ticket, event)
    }

    /// Whether the client's addresses are on its link (RFC 8415 section 18.3.3).
    fn confirm(&self, link: &Link<'_, '_>, req: &Request<'_>) -> Handled<L::Ticket> {
        let mut addresses = req.addresses();
        addresses.extend(req.message.opts().iter().flat_map(|o| match o {
            DhcpOption::IATA(ta) => ia_addresses(&ta.opts).collect(),
            _ => Vec::new(),
        }));
        if addresses.is_empty() {
            // The RFC has the server stay silent.
            return Handled::ignored(Ignored::Incomplete("the Confirm names no address"));
        }
        let on_link = addresses.iter().all(|a| link.on_link(*a));
        let mut reply = self.reply(req, MessageType::Reply);
        reply.opts_mut().insert(if on_link {
            status(Status::Success, "all addresses are on link")
        } else {
            status(Status::NotOnLink, "an address is not on link")
        });
        let client = req.client();
        self.send(
            link,
            req,
            &reply,
            None,
            Event::Confirmed { client, on_link },
        )
    }

    fn inform(&self, link: &Link<'_, '_>, req: &Request<'_>) -> Handled<L::Ticket> {
        let mut reply = self.reply(req, MessageType::Reply);
        let boot = self.configure(&mut reply, link, req);
        let event = Event::Informed {
            mac: req.boot.mac,
            ip: Some(IpAddr::V6(req.client_addr(link.rx))),
            boot,
        };
        self.send(link, req, &reply, None, event)
    }

    /// The reply's header and identifiers.
    fn reply(&self, req: &Request<'_>, kind: MessageType) -> Message {
        let mut reply = Message::new_with_id(kind, req.message.xid());
        let opts = reply.opts_mut();
        opts.insert(DhcpOption::ServerId(self.duid_bytes.clone()));
        if let Some(id) = req.client_id {
            opts.insert(DhcpOption::ClientId(id.to_vec()));
        }
        reply
    }

    /// Adds the configuration the client asked for: DNS servers, search list and, for booting
    /// clients, the boot answer.
    fn configure(
        &self,
        reply: &mut Message,
        link: &Link<'_, '_>,
        req: &Request<'_>,
    ) -> Option<BootDecision> {
        let dns: Vec<Ipv6Addr> = link
            .subnet
            .dns_servers
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })
            .collect();
        if req.wants(opt::DNS_SERVERS) && !dns.is_empty() {
            reply.opts_mut().insert(DhcpOption::DomainNameServers(dns));
        }
        if req.wants(opt::DOMAIN_SEARCH) && !self.search.is_empty() {
            reply
                .opts_mut()
                .insert(raw(opt::DOMAIN_SEARCH, self.search.clone()));
        }
        let client = &req.boot;
        let booting = client.is_pxe_client()
            || client.is_http_client()
            || client.ipxe
            || !client.architectures.is_empty();
        if !booting {
            return None;
        }
        if let (Some(local), Some(mac)) = (&self.local_boot, client.mac)
            && local(mac)
        {
            return Some(BootDecision {
                choice: Err(crate::dhcp::NoBoot::LocalDisk),
                file: None,
            });
        }
        let classification = self.config.boot.classify(client.clone(), link.subnet);
        let server = self.config.server_id_v6.unwrap_or(link.rx.local);
        let Some(boot) = build_boot_options(&classification, &self.config.boot, IpAddr::V6(server))
        else {
            return Some(decision(classification, None));
        };
        let url_wanted = req.wants(code::v6::BOOT_FILE_URL);
        for option in boot.v6_options() {
            let option_code = u16::from(OptionCode::from(&option));
            let wanted = match option_code {
                code::v6::BOOT_FILE_URL => url_wanted,
                // The parameters belong to the URL.
                code::v6::BOOT_FILE_PARAM => url_wanted || req.wants(option_code),
                _ => true,
            };
            if wanted {
                reply.opts_mut().insert(option);
            }
        }
        let file = url_wanted.then(|| boot.boot_file_url());
        Some(decision(classification, file))
    }

    /// Valid, preferred, T1 and T2 for an address leased for `valid` seconds.
    fn lifetimes(&self, valid: u32) -> Lifetimes {
        let preferred = self
            .config
            .preferred_lifetime_secs
            .map_or(valid, |p| p.min(valid));
        let (t1, t2) = if preferred == u32::MAX {
            (u32::MAX, u32::MAX)
        } else {
            let t2 = u64::from(preferred) * 4 / 5;
            (preferred / 2, u32::try_from(t2).unwrap_or(u32::MAX))
        };
        Lifetimes {
            valid,
            preferred,
            t1,
            t2,
        }
    }

    /// The valid lifetime of a lease the store granted: what is left of it.
    fn granted(&self, now: Timestamp, bound: &Bound<L::Ticket>) -> u32 {
        if self.config.lease_secs == u32::MAX {
            return u32::MAX;
        }
        let remaining = bound.expires.0.saturating_sub(now.0);
        u32::try_from(remaining).unwrap_or(u32::MAX - 1)
    }

    /// Encodes the reply, wraps it in a Relay-reply for every relay it came through and
    /// addresses it.
    fn send(
        &self,
        link: &Link<'_, '_>,
        req: &Request<'_>,
        reply: &Message,
        ticket: Option<L::Ticket>,
        event: Event,
    ) -> Handled<L::Ticket> {
        let rx = link.rx;
        let mut bytes = Vec::with_capacity(256);
        if let Err(e) = v6::encode_message(reply, &mut bytes) {
            return Handled::ignored(Ignored::Unencodable(e.to_string()));
        }
        for relay in req.relays.iter().rev() {
            bytes = match relay_reply(relay, &bytes) {
                Ok(b) => b,
                Err(e) => return Handled::ignored(Ignored::Unencodable(e)),
            };
        }
        let destination = match req.relays.first() {
            None => Destination::Unicast(SocketAddr::V6(rx.source)),
            Some(outer) => {
                // RFC 8357: a relay that sent from another port says so and listens there.
                let port = if raw_option(outer.opts(), opt::RELAY_SOURCE_PORT).is_some() {
                    rx.source.port()
                } else {
                    SERVER_PORT_V6
                };
                let mut to = rx.source;
                to.set_port(port);
                Destination::Relay(SocketAddr::V6(to))
            }
        };
        Handled {
            transmit: Some(Transmit {
                interface: rx.interface,
                source: IpAddr::V6(rx.local),
                destination,
                bytes,
            }),
            ticket,
            probe: None,
            event,
        }
    }
}

/// The client's link as the server selected it.
struct Link<'r, 's> {
    rx: &'r Received6<'r>,
    id: SubnetId,
    subnet: &'s Subnet,
}

impl Link<'_, '_> {
    fn on_link(&self, ip: Ipv6Addr) -> bool {
        self.subnet.cidr.contains(&IpAddr::V6(ip))
    }
}

fn decision(classification: Classification, file: Option<String>) -> BootDecision {
    BootDecision {
        choice: classification.choice,
        file,
    }
}

fn wrong_family<T>(ip: IpAddr) -> Handled<T> {
    Handled::ignored(Ignored::Leases(LeaseError::Storage {
        message: format!("the lease store offered {ip} to a DHCPv6 client"),
    }))
}

fn status(status: Status, msg: &str) -> DhcpOption {
    DhcpOption::StatusCode(StatusCode {
        status,
        msg: msg.into(),
    })
}

fn address(addr: Ipv6Addr, t: Lifetimes) -> DhcpOption {
    DhcpOption::IAAddr(IAAddr {
        addr,
        preferred_life: t.preferred,
        valid_life: t.valid,
        opts: DhcpOptions::new(),
    })
}

/// The client's IA_NA with one address.
fn with_address(ia: &IANA, ip: Ipv6Addr, t: Lifetimes) -> DhcpOption {
    let mut opts = DhcpOptions::new();
    opts.insert(address(ip, t));
    DhcpOption::IANA(IANA {
        id: ia.id,
        t1: t.t1,
        t2: t.t2,
        opts,
    })
}

/// The client's IA_NA with no address and a status.
fn ia_status(ia: &IANA, code: Status, msg: &str) -> DhcpOption {
    let mut opts = DhcpOptions::new();
    opts.insert(status(code, msg));
    DhcpOption::IANA(IANA {
        id: ia.id,
        t1: 0,
        t2: 0,
        opts,
    })
}

fn no_address(ia: &IANA, msg: &str) -> DhcpOption {
    ia_status(ia, Status::NoAddrsAvail, msg)
}

/// IA_TA and IA_PD are not served: each gets its "none available" status.
fn unsupported_ias(req: &Request<'_>, reply: &mut Message) {
    let mut out = Vec::new();
    for option in req.message.opts().iter() {
        let mut opts = DhcpOptions::new();
        match option {
            DhcpOption::IATA(ta) => {
                opts.insert(status(
                    Status::NoAddrsAvail,
                    "temporary addresses are not served",
                ));
                out.push(DhcpOption::IATA(IATA { id: ta.id, opts }));
            }
            DhcpOption::IAPD(pd) => {
                opts.insert(status(Status::NoPrefixAvail, "prefixes are not delegated"));
                out.push(DhcpOption::IAPD(IAPD {
                    id: pd.id,
                    t1: 0,
                    t2: 0,
                    opts,
                }));
            }
            _ => {}
        }
    }
    for option in out {
        push(reply, option);
    }
}

/// Adds an option after those of the same code, so IAs are answered in the client's order
/// (dhcproto's `insert` puts an option before its equals).
fn push(reply: &mut Message, option: DhcpOption) {
    let code_of = |o: &DhcpOption| u16::from(OptionCode::from(o));
    let mut all: Vec<DhcpOption> = std::mem::take(reply.opts_mut()).into_iter().collect();
    let code = code_of(&option);
    let at = all.partition_point(|o| code_of(o) <= code);
    all.insert(at, option);
    // Sorted already, which dhcproto's sort leaves as it is.
    reply.set_opts(DhcpOptions::from_iter(all));
}

fn raw(code: u16, data: Vec<u8>) -> DhcpOption {
    DhcpOption::Unknown(dhcproto::v6::UnknownOption::new(code.into(), data))
}

/// An option of a relay message, as raw bytes.
fn raw_option(opts: &DhcpOptions, code: u16) -> Option<&[u8]> {
    opts.iter().find_map(|o| match o {
        DhcpOption::Unknown(u) if u16::from(u.code()) == code => Some(u.data()),
        _ => None,
    })
}

/// Option 24's value: each name in wire form, uncompressed as RFC 3646 requires.
fn search_list(names: &[Name]) -> Vec<u8> {
    names
        .iter()
        .filter_map(|n| n.to_bytes().ok())
        .flatten()
        .collect()
}

/// A Relay-reply around `inner` for the Relay-forward `relay` (RFC 8415 section 19.3):
/// hop count, link and peer addresses copied, Interface-ID echoed.
fn relay_reply(relay: &RelayMessage, inner: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(34 + 4 + inner.len() + 24);
    out.push(u8::from(MessageType::RelayRepl));
    out.push(relay.hop_count());
    out.extend(relay.link_addr().octets());
    out.extend(relay.peer_addr().octets());
    if let Some(DhcpOption::InterfaceId(id)) = relay.opts().get(OptionCode::InterfaceId) {
        put(&mut out, opt::INTERFACE_ID, id)?;
    }
    put(&mut out, code::v6::RELAY_MSG, inner)?;
    Ok(out)
}

fn put(out: &mut Vec<u8>, code: u16, value: &[u8]) -> Result<(), String> {
    let len = u16::try_from(value.len()).map_err(|_| {
        format!(
            "DHCPv6 option {code} would hold {} bytes, more than 65535",
            value.len()
        )
    })?;
    out.extend(code.to_be_bytes());
    out.extend(len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duid_of_an_interface() {
        // Loopback's address is all zeros, an Ethernet address all the same.
        if std::path::Path::new("/sys/class/net/lo/address").exists() {
            assert_eq!(
                Duid::from_interface("lo").ok(),
                Some(Duid::LinkLayer {
                    mac: Mac::new([0; 6])
                })
            );
        }
        let missing = Duid::from_interface("maas-nonexistent0").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(
            missing.to_string().contains("maas-nonexistent0"),
            "{missing}"
        );
        for bad in ["", "..", "lo/../lo"] {
            let e = Duid::from_interface(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {e}");
        }
    }
}
