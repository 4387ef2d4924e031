//! The answer to each kind of client message: DISCOVER (with its conflict probe), REQUEST in
//! its RFC 2131 states, DECLINE, RELEASE and INFORM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use dhcproto::v4::MessageType;
use maas_net::{ClientKey, Subnet, SubnetId, Timestamp};

use super::{
    CLIENT_FQDN, ConflictProbe, HOST_NAME, PendingOffer, RAPID_COMMIT, REQUESTED_IP, Received,
    RequestState, Server4, client_key,
};
use crate::dhcp::options::code;
use crate::dhcp::server::{
    CLIENT_PORT, Destination, Event, Handled, Ignored, LeaseError, Leases, Mode, Transmit, bucket,
    fqdn_host_name, relay_addr,
};
use crate::dhcp::{LeaseTimes, v4};

impl<L: Leases> Server4<L> {
    pub(super) fn discover(
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
            return Handled::ignored(Ignored::OtherShare(bucket(&client)));
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
    pub(super) fn offer_or_commit(
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
            .and_then(|o| fqdn_host_name(o, true));
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

    pub(super) fn request(
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

    pub(super) fn decline(
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

    pub(super) fn release(&self, rx: &Received<'_>, packet: &v4::Packet) -> Handled<L::Ticket> {
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

    pub(super) fn inform(&self, rx: &Received<'_>, packet: &v4::Packet) -> Handled<L::Ticket> {
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

fn option_addr(packet: &v4::Packet, code: u8) -> Option<Ipv4Addr> {
    packet
        .option(code)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map(Ipv4Addr::from)
}
