//! ProxyDHCP (PXE 2.1): boot information for PXE and HTTP boot clients whose addresses come
//! from another server.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};

use dhcproto::v4::MessageType;

use super::reply::decision;
use super::{Received, Server4, ServerPort};
use crate::dhcp::options::code;
use crate::dhcp::server::{
    CLIENT_PORT, Destination, Event, Handled, Ignored, Leases, Transmit, relay_addr,
};
use crate::dhcp::{BootClient, Classification, build_proxy_boot_options, reply_to, v4};

impl<L: Leases> Server4<L> {
    /// ProxyDHCP: boot information without an address, on port 67 (to a DISCOVER) and on
    /// port 4011 (to a REQUEST or INFORM).
    pub(super) fn proxy(
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
