//! The DHCPv6 engine (RFC 8415): addresses from IA_NA, relays, rapid commit, Confirm,
//! Information-request and the boot-file URL of network-booting firmware (RFC 5970).
//!
//! What it does not do: temporary addresses (IA_TA) and prefix delegation (IA_PD) are answered
//! with NoAddrsAvail and NoPrefixAvail; a client gets one address, in its first IA_NA (a second
//! IA_NA gets NoAddrsAvail); Reconfigure, authentication and the Server Unicast option are not
//! implemented, so the adapter should only hand over messages the client sent to the
//! All_DHCP_Relay_Agents_and_Servers group or that a relay forwarded.

mod duid;
mod messages;
mod reply;

use std::net::{IpAddr, Ipv6Addr, SocketAddrV6};

use dhcproto::v6::{DhcpOption, DhcpOptions, IANA, Message, MessageType, OptionCode, RelayMessage};
use maas_net::{ClientKey, Subnet, SubnetId, Timestamp, Topology};

pub use duid::Duid;

#[cfg(doc)]
use super::Transmit;
use super::{Handled, Ignored, Leases, LocalBoot, Mode, ServerConfig};
#[cfg(doc)]
use crate::dhcp::options::code;
use crate::dhcp::{BootClient, ConfigError, NetworkOptions, v6};
use reply::search_list;

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
        ClientKey::client_id(self.client_id.unwrap_or_default())
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

/// An option of a relay message, as raw bytes.
fn raw_option(opts: &DhcpOptions, code: u16) -> Option<&[u8]> {
    opts.iter().find_map(|o| match o {
        DhcpOption::Unknown(u) if u16::from(u.code()) == code => Some(u.data()),
        _ => None,
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
