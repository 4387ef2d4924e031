//! Building the answer: its header and identifiers, the configuration and boot options, the
//! lifetimes and IA options of addresses, and the Relay-reply wrapping and destination.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, IANA, IAPD, IATA, Message, MessageType, OptionCode,
    RelayMessage, Status, StatusCode,
};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::BinEncodable;
use maas_net::Timestamp;

use super::{Lifetimes, Link, Request, Server6, opt, raw_option};
use crate::dhcp::options::code;
use crate::dhcp::server::{
    BootDecision, Bound, Destination, Event, Handled, Ignored, Leases, SERVER_PORT_V6, Transmit,
};
use crate::dhcp::{Classification, build_boot_options, v6};

impl<L: Leases> Server6<L> {
    /// The reply's header. Its identifiers (the client's and ours) are written by
    /// [`send`](Self::send) from where they are, not copied into the message.
    pub(super) fn reply(&self, req: &Request<'_>, kind: MessageType) -> Message {
        Message::new_with_id(kind, req.message.xid())
    }

    /// Adds the configuration the client asked for: DNS servers, search list and, for booting
    /// clients, the boot answer.
    pub(super) fn configure(
        &self,
        reply: &mut Message,
        link: &Link<'_, '_>,
        req: &Request<'_>,
    ) -> Option<BootDecision> {
        if req.wants(opt::DNS_SERVERS) {
            let dns: Vec<Ipv6Addr> = link
                .subnet
                .dns_servers
                .iter()
                .filter_map(|ip| match ip {
                    IpAddr::V6(a) => Some(*a),
                    IpAddr::V4(_) => None,
                })
                .collect();
            if !dns.is_empty() {
                reply.opts_mut().insert(DhcpOption::DomainNameServers(dns));
            }
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
    pub(super) fn lifetimes(&self, valid: u32) -> Lifetimes {
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
    pub(super) fn granted(&self, now: Timestamp, bound: &Bound<L::Ticket>) -> u32 {
        if self.config.lease_secs == u32::MAX {
            return u32::MAX;
        }
        let remaining = bound.expires.0.saturating_sub(now.0);
        u32::try_from(remaining).unwrap_or(u32::MAX - 1)
    }

    /// Encodes the reply, wraps it in a Relay-reply for every relay it came through and
    /// addresses it.
    pub(super) fn send(
        &self,
        link: &Link<'_, '_>,
        req: &Request<'_>,
        reply: &Message,
        ticket: Option<L::Ticket>,
        event: Event,
    ) -> Handled<L::Ticket> {
        let rx = link.rx;
        let mut bytes = Vec::with_capacity(256);
        if let Err(e) = v6::encode_reply(reply, req.client_id, &self.duid_bytes, &mut bytes) {
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

fn decision(classification: Classification, file: Option<String>) -> BootDecision {
    BootDecision {
        choice: classification.choice,
        file,
    }
}

pub(super) fn status(status: Status, msg: &str) -> DhcpOption {
    DhcpOption::StatusCode(StatusCode {
        status,
        msg: msg.into(),
    })
}

pub(super) fn address(addr: Ipv6Addr, t: Lifetimes) -> DhcpOption {
    DhcpOption::IAAddr(IAAddr {
        addr,
        preferred_life: t.preferred,
        valid_life: t.valid,
        opts: DhcpOptions::new(),
    })
}

/// The client's IA_NA with one address.
pub(super) fn with_address(ia: &IANA, ip: Ipv6Addr, t: Lifetimes) -> DhcpOption {
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
pub(super) fn ia_status(ia: &IANA, code: Status, msg: &str) -> DhcpOption {
    let mut opts = DhcpOptions::new();
    opts.insert(status(code, msg));
    DhcpOption::IANA(IANA {
        id: ia.id,
        t1: 0,
        t2: 0,
        opts,
    })
}

pub(super) fn no_address(ia: &IANA, msg: &str) -> DhcpOption {
    ia_status(ia, Status::NoAddrsAvail, msg)
}

/// IA_TA and IA_PD are not served: each gets its "none available" status.
pub(super) fn unsupported_ias(req: &Request<'_>, reply: &mut Message) {
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
pub(super) fn push(reply: &mut Message, option: DhcpOption) {
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

/// Option 24's value: each name in wire form, uncompressed as RFC 3646 requires.
pub(super) fn search_list(names: &[Name]) -> Vec<u8> {
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
