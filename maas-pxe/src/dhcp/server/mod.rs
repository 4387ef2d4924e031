//! The DHCP server engine, sans-IO.
//!
//! [`Server4`] (DHCPv4, with ProxyDHCP) and [`Server6`] (DHCPv6) take a received datagram
//! with what the socket knew about it ([`Received`] / [`Received6`]) and the current time,
//! and give back what to send and where ([`Handled`]), plus an [`Event`] saying what was
//! decided, for logs. They own no socket and read no clock; leases come through the
//! [`Leases`] trait. Both take `&self`: an adapter can call them from every core at once.
//!
//! A reply that acknowledges a lease carries the lease store's ticket
//! ([`Handled::ticket`]); send it only once [`Leases::wait`] on the ticket returns `Ok`, so
//! no client is told it has an address the store could still forget.

#[cfg(feature = "tokio")]
mod adapter;
mod balance;
#[cfg(feature = "ipam")]
mod ipam;
mod leases;
mod v4;
mod v6;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use maas_net::{BootArchitecture, ClientKey, Mac, Timestamp};
use serde::{Deserialize, Serialize};

#[cfg(feature = "tokio")]
pub use adapter::{
    Interface, InterfaceConfig, Report, ServiceConfig, ServiceError, ServiceHandle, serve4, serve6,
};
pub use balance::{DEFAULT_MAX_SECS, LoadBalance, Share, bucket};
pub use leases::{Bound, LeaseError, Leases};
pub use v4::{ConflictProbe, Received, Server4, ServerPort};
pub use v6::{Duid, Received6, Server6};

use super::{BootConfig, NoBoot};

/// The server's role on its networks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mode {
    /// The only DHCP server of its subnets: it NAKs requests for addresses that are wrong for
    /// the client's network or not the client's (ISC `authoritative`, Kea's default).
    #[default]
    Authoritative,
    /// One server among others: requests it cannot satisfy get no answer at all, so another
    /// server may answer them.
    NonAuthoritative,
    /// ProxyDHCP (PXE 2.1): another server hands out addresses; this one answers PXE and HTTP
    /// boot clients with boot information only, on port 67 and on port 4011.
    Proxy,
}

/// How the server answers; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Authoritative, non-authoritative or ProxyDHCP.
    pub mode: Mode,
    /// Lease time in seconds (option 51; DHCPv6 valid lifetime).
    pub lease_secs: u32,
    /// How long an offered address is held for the client's REQUEST.
    pub offer_hold_secs: u32,
    /// How long a declined address stays out of use.
    pub decline_quarantine_secs: u32,
    /// Answer a DISCOVER carrying option 80 (rapid commit) with an ACK at once.
    pub rapid_commit: bool,
    /// Probe an address (ping or ARP, by the adapter) before offering it.
    pub conflict_check: bool,
    /// The server identifier (option 54) and boot server; by default the address of the
    /// interface the request arrived on.
    pub server_id: Option<Ipv4Addr>,
    /// The DHCPv6 server's own address for boot URLs, by default the receiving address.
    pub server_id_v6: Option<Ipv6Addr>,
    /// The DHCPv6 server identifier (option 2); unset, the server makes up a random one when
    /// it starts (see [`Duid`]).
    pub duid: Option<Duid>,
    /// The DHCPv6 preferred lifetime in seconds; unset, the valid lifetime (`lease_secs`).
    pub preferred_lifetime_secs: Option<u32>,
    /// Option 15.
    pub domain: Option<String>,
    /// Option 119.
    pub domain_search: Vec<String>,
    /// The boot method table and boot servers.
    pub boot: BootConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Authoritative,
            lease_secs: 3600,
            offer_hold_secs: 60,
            decline_quarantine_secs: 86_400,
            rapid_commit: true,
            conflict_check: false,
            server_id: None,
            server_id_v6: None,
            duid: None,
            preferred_lifetime_secs: None,
            domain: None,
            domain_search: Vec::new(),
            boot: BootConfig::default(),
        }
    }
}

/// Where to send a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// To a relay agent (DHCPv4 `giaddr`, port 67; DHCPv6 relay, port 547).
    Relay(SocketAddr),
    /// To a client that has an address (its `ciaddr`, or where a request came from).
    Unicast(SocketAddr),
    /// To everyone on the receiving interface (255.255.255.255:68).
    Broadcast,
    /// To a client without an address yet, at its hardware address: the adapter either
    /// sends to `ip` without ARP (a neighbour entry or a raw frame) or broadcasts.
    Hardware {
        /// The address just given to the client.
        ip: Ipv4Addr,
        /// Its hardware address.
        mac: Mac,
    },
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The interface the request arrived on (as the adapter numbered it).
    pub interface: u32,
    /// The source address to send from.
    pub source: IpAddr,
    /// Where to.
    pub destination: Destination,
    /// The encoded reply.
    pub bytes: Vec<u8>,
}

/// What the server did with one datagram.
#[derive(Debug)]
#[must_use]
pub struct Handled<T> {
    /// The reply, if any.
    pub transmit: Option<Transmit>,
    /// When set, send `transmit` only once this ticket is durable (see [`Leases::wait`]).
    pub ticket: Option<T>,
    /// When set, the adapter probes this address and reports back with
    /// [`Server4::probe_result`] before anything is sent.
    pub probe: Option<ConflictProbe>,
    /// What was decided.
    pub event: Event,
}

impl<T> Handled<T> {
    pub(crate) fn event(event: Event) -> Self {
        Self {
            transmit: None,
            ticket: None,
            probe: None,
            event,
        }
    }

    pub(crate) fn ignored(reason: Ignored) -> Self {
        Self::event(Event::Ignored(reason))
    }
}

/// Which clients boot from their local disk instead of the network, by Ethernet address:
/// the server answers them with an address and no boot file (the decision says
/// [`NoBoot::LocalDisk`]), so their firmware moves on to its
/// next boot device. Asked only for clients that ask to boot.
pub type LocalBoot = std::sync::Arc<dyn Fn(Mac) -> bool + Send + Sync>;

/// The boot answer given to a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootDecision {
    /// The boot method, or why there is none.
    #[serde(serialize_with = "serialize_choice")]
    pub choice: Result<BootArchitecture, NoBoot>,
    /// The boot file or URL sent.
    pub file: Option<String>,
}

fn serialize_choice<S: serde::Serializer>(
    choice: &Result<BootArchitecture, NoBoot>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match choice {
        Ok(arch) => s.serialize_str(arch.name()),
        Err(why) => s.serialize_str(&format!("none: {why}")),
    }
}

/// What the server decided about one datagram: one line of its log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// An address was offered (DHCPv4 OFFER, DHCPv6 Advertise).
    Offered {
        /// The client.
        client: ClientKey,
        /// Its hardware address, when known.
        mac: Option<Mac>,
        /// The address.
        ip: IpAddr,
        /// The boot answer, for booting clients.
        boot: Option<BootDecision>,
    },
    /// A lease was granted or renewed (DHCPv4 ACK, DHCPv6 Reply).
    Leased {
        /// The client.
        client: ClientKey,
        /// Its hardware address, when known.
        mac: Option<Mac>,
        /// The address.
        ip: IpAddr,
        /// When the lease ends.
        expires: Timestamp,
        /// Whether it came straight from a DISCOVER/Solicit (rapid commit).
        rapid_commit: bool,
        /// The boot answer, for booting clients.
        boot: Option<BootDecision>,
    },
    /// A request was refused (DHCPv4 NAK, DHCPv6 status code).
    Refused {
        /// The client.
        client: ClientKey,
        /// The address it asked for, if any.
        ip: Option<IpAddr>,
        /// Why.
        reason: String,
    },
    /// A client gave its lease back.
    Released {
        /// The client.
        client: ClientKey,
        /// The address.
        ip: IpAddr,
    },
    /// A client declined its address (in use by someone else); it is quarantined.
    Declined {
        /// The client.
        client: ClientKey,
        /// The address.
        ip: IpAddr,
    },
    /// A client with its own address asked for configuration only (INFORM,
    /// Information-request).
    Informed {
        /// The client's hardware address, when known.
        mac: Option<Mac>,
        /// The client's address.
        ip: Option<IpAddr>,
        /// The boot answer, for booting clients.
        boot: Option<BootDecision>,
    },
    /// A ProxyDHCP boot answer (no address).
    ProxyAnswered {
        /// The client's hardware address.
        mac: Option<Mac>,
        /// The port it asked on (67 or 4011).
        port: u16,
        /// The boot answer.
        boot: BootDecision,
    },
    /// A DHCPv6 Confirm was answered.
    Confirmed {
        /// The client.
        client: ClientKey,
        /// Whether its addresses are on the link.
        on_link: bool,
    },
    /// An address about to be offered answered the conflict probe: it was quarantined and the
    /// client is offered another.
    Conflict {
        /// The address in use.
        ip: IpAddr,
    },
    /// Nothing was sent.
    Ignored(Ignored),
}

/// Why a datagram got no answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Ignored {
    /// It does not decode.
    #[error("malformed: {0}")]
    Malformed(String),
    /// It is not a request a server answers (a reply, an unknown or missing message type,
    /// plain BOOTP).
    #[error("not a request this server answers: {0}")]
    NotARequest(String),
    /// No subnet of the topology serves the network it came from.
    #[error("no subnet serves {0}")]
    NoSubnet(IpAddr),
    /// DHCP is off on the subnet's VLAN.
    #[error("DHCP is off on the VLAN of {0}")]
    DhcpOff(String),
    /// A DISCOVER from a client of another server's share of the link ([`LoadBalance`]),
    /// which has not been trying long enough to be answered by every server.
    #[error("another server's share of the link (client bucket {0})")]
    OtherShare(u8),
    /// It is addressed to another server (its server identifier).
    #[error("addressed to server {0}")]
    OtherServer(IpAddr),
    /// It is addressed to another DHCPv6 server (its server identifier, in hex).
    #[error("addressed to the DHCPv6 server with DUID {0}")]
    OtherServerDuid(String),
    /// It asks for something this server may not refuse in non-authoritative mode.
    #[error("not authoritative for it: {0}")]
    NotAuthoritative(String),
    /// It lacks something its kind requires.
    #[error("incomplete request: {0}")]
    Incomplete(&'static str),
    /// In ProxyDHCP mode, a client that is not network-booting.
    #[error("not a PXE or HTTP-boot client")]
    NotBooting,
    /// The lease store could not serve it.
    #[error("{0}")]
    Leases(#[source] LeaseError),
    /// The answer could not be encoded (an option longer than its format allows).
    #[error("the answer cannot be encoded: {0}")]
    Unencodable(String),
}

impl Event {
    /// The event's name, as its `event` field serialises: `offered`, `leased`, `ignored`...
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Offered { .. } => "offered",
            Self::Leased { .. } => "leased",
            Self::Refused { .. } => "refused",
            Self::Released { .. } => "released",
            Self::Declined { .. } => "declined",
            Self::Informed { .. } => "informed",
            Self::ProxyAnswered { .. } => "proxy_answered",
            Self::Confirmed { .. } => "confirmed",
            Self::Conflict { .. } => "conflict",
            Self::Ignored(_) => "ignored",
        }
    }

    /// The address the event is about, if any.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Offered { ip, .. }
            | Self::Leased { ip, .. }
            | Self::Released { ip, .. }
            | Self::Declined { ip, .. }
            | Self::Conflict { ip } => Some(*ip),
            Self::Refused { ip, .. } | Self::Informed { ip, .. } => *ip,
            _ => None,
        }
    }
}

/// The DHCPv4 client port.
pub const CLIENT_PORT: u16 = 68;
/// The DHCPv4 server port.
pub const SERVER_PORT: u16 = 67;
/// The PXE boot-server port (ProxyDHCP requests).
pub const PXE_PORT: u16 = 4011;
/// The DHCPv6 client port.
pub const CLIENT_PORT_V6: u16 = 546;
/// The DHCPv6 server and relay port.
pub const SERVER_PORT_V6: u16 = 547;

/// The subnet containing `ip`, if DHCP is served there: on its VLAN, or on the VLAN its VLAN
/// relays to.
pub(crate) fn served_subnet(
    topology: &maas_net::Topology,
    ip: IpAddr,
) -> Result<(maas_net::SubnetId, &maas_net::Subnet), Ignored> {
    let id = topology
        .subnet_containing(ip)
        .ok_or(Ignored::NoSubnet(ip))?;
    let subnet = topology.subnet(id).ok_or(Ignored::NoSubnet(ip))?;
    let dhcp_on = topology.vlan(subnet.vlan).is_some_and(|v| {
        v.dhcp_on
            || v.relay_vlan
                .and_then(|r| topology.vlan(r))
                .is_some_and(|r| r.dhcp_on)
    });
    if !dhcp_on {
        return Err(Ignored::DhcpOff(subnet.cidr.to_string()));
    }
    Ok((id, subnet))
}

pub(crate) fn relay_addr(giaddr: Ipv4Addr) -> Destination {
    Destination::Relay(SocketAddr::V4(SocketAddrV4::new(giaddr, SERVER_PORT)))
}

/// The host name in a client FQDN option: DHCPv4 option 81 (RFC 4702: flags, two obsolete
/// RCODE bytes, then the name in ASCII or, with the E flag, DNS wire form) when `v4`, DHCPv6
/// option 39 (RFC 4704: flags, then the name in wire form, possibly partial) otherwise.
/// `None` for an empty or malformed name.
pub(crate) fn fqdn_host_name(option: &[u8], v4: bool) -> Option<String> {
    const ENCODED: u8 = 0x04;
    let (&flags, rest) = option.split_first()?;
    let name = if v4 { rest.get(2..)? } else { rest };
    let text = if v4 && flags & ENCODED == 0 {
        std::str::from_utf8(name).ok()?.to_string()
    } else {
        let mut labels = Vec::new();
        let mut at = 0;
        while let Some(&len) = name.get(at) {
            if len == 0 {
                break;
            }
            // A compression pointer or an over-long label: not a name a client may send.
            if len > 63 {
                return None;
            }
            let label = name.get(at + 1..at + 1 + usize::from(len))?;
            labels.push(std::str::from_utf8(label).ok()?);
            at += 1 + usize::from(len);
        }
        labels.join(".")
    };
    let text = text.trim_end_matches('.');
    (!text.is_empty() && text.chars().all(|c| c.is_ascii_graphic())).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::{Ignored, LeaseError, fqdn_host_name};

    #[test]
    fn fqdn_names_in_ascii_and_wire_form() {
        // DHCPv4, ASCII.
        assert_eq!(
            fqdn_host_name(b"\x00\x00\x00node1.maas.", true).as_deref(),
            Some("node1.maas")
        );
        // DHCPv4, E flag: wire form.
        assert_eq!(
            fqdn_host_name(b"\x04\x00\x00\x05node1\x04maas\x00", true).as_deref(),
            Some("node1.maas")
        );
        // DHCPv6: wire form, partial (no root label).
        assert_eq!(
            fqdn_host_name(b"\x01\x05node1", false).as_deref(),
            Some("node1")
        );
        // Truncated, compressed, empty or not text: none.
        for bad in [
            &b"\x04\x00\x00\x09node1"[..],
            b"\x04\x00\x00\xc0\x0c",
            b"\x00\x00\x00",
            b"",
            b"\x00\x00\x00a b",
        ] {
            assert_eq!(fqdn_host_name(bad, true), None, "{bad:?}");
        }
        assert_eq!(fqdn_host_name(b"\x00\x3fabc", false), None);
    }

    #[test]
    fn an_event_kind_is_its_serialised_name() {
        use super::Event;
        use maas_net::{ClientKey, Mac, Timestamp};
        let client = ClientKey::Mac(Mac::from([2, 0, 0, 0, 0, 1]));
        let ip = std::net::IpAddr::from([10, 77, 0, 5]);
        let events = [
            Event::Offered {
                client: client.clone(),
                mac: None,
                ip,
                boot: None,
            },
            Event::Leased {
                client: client.clone(),
                mac: None,
                ip,
                expires: Timestamp(0),
                rapid_commit: false,
                boot: None,
            },
            Event::Refused {
                client: client.clone(),
                ip: None,
                reason: "no".into(),
            },
            Event::Released {
                client: client.clone(),
                ip,
            },
            Event::Declined {
                client: client.clone(),
                ip,
            },
            Event::Informed {
                mac: None,
                ip: None,
                boot: None,
            },
            Event::Confirmed {
                client,
                on_link: true,
            },
            Event::Conflict { ip },
            Event::Ignored(Ignored::NoSubnet(ip)),
        ];
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["event"], event.kind(), "{event:?}");
        }
    }

    #[test]
    fn a_lease_failure_is_the_source_of_its_ignored_request() {
        let e = Ignored::Leases(LeaseError::Storage {
            message: "disk full".into(),
        });
        assert_eq!(e.to_string(), "the lease store failed: disk full");
        let source = std::error::Error::source(&e).expect("the lease error is kept");
        assert_eq!(source.to_string(), "the lease store failed: disk full");
    }
}
