//! Building and addressing the answer: the common part of OFFER and ACK, the NAK, and the
//! destination RFC 2131 gives each.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use dhcproto::v4::{Flags, MessageType};
use maas_net::{ClientKey, Subnet, SubnetId};

use super::{Received, Server4};
use crate::dhcp::server::{
    BootDecision, CLIENT_PORT, Destination, Event, Handled, Leases, Transmit, relay_addr,
};
use crate::dhcp::{BootClient, Classification, Reply, build_boot_options, reply_to, v4};

impl<L: Leases> Server4<L> {
    pub(super) fn nak(
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
    pub(super) fn answer(
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

    pub(super) fn transmit(
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
}

pub(super) fn decision(classification: Classification, file: Option<String>) -> BootDecision {
    BootDecision {
        choice: classification.choice,
        file,
    }
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
