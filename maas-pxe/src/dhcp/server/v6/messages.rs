//! The answer to each kind of client message: Solicit, Request, Renew and Rebind, Release and
//! Decline, Confirm and Information-request.

use std::net::{IpAddr, Ipv6Addr};

use dhcproto::v6::{DhcpOption, DhcpOptions, IANA, MessageType, OptionCode, Status};
use maas_net::{ClientKey, Timestamp};

use super::reply::{address, ia_status, no_address, push, status, unsupported_ias, with_address};
use super::{Lifetimes, Link, Request, Server6, ia_addresses};
use crate::dhcp::server::{Bound, Event, Handled, Ignored, LeaseError, Leases, Mode};

impl<L: Leases> Server6<L> {
    pub(super) fn solicit(
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
    pub(super) fn commit(
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
    pub(super) fn extend(
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

    pub(super) fn release(&self, link: &Link<'_, '_>, req: &Request<'_>) -> Handled<L::Ticket> {
        self.give_back(link, req, |ip, client| self.leases.release(ip, client))
    }

    pub(super) fn decline(
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
    pub(super) fn confirm(&self, link: &Link<'_, '_>, req: &Request<'_>) -> Handled<L::Ticket> {
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

    pub(super) fn inform(&self, link: &Link<'_, '_>, req: &Request<'_>) -> Handled<L::Ticket> {
        let mut reply = self.reply(req, MessageType::Reply);
        let boot = self.configure(&mut reply, link, req);
        let event = Event::Informed {
            mac: req.boot.mac,
            ip: Some(IpAddr::V6(req.client_addr(link.rx))),
            boot,
        };
        self.send(link, req, &reply, None, event)
    }
}

fn wrong_family<T>(ip: IpAddr) -> Handled<T> {
    Handled::ignored(Ignored::Leases(LeaseError::Storage {
        message: format!("the lease store offered {ip} to a DHCPv6 client"),
    }))
}
