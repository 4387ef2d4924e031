//! The DHCPv4 server engine: relays, boot files, ProxyDHCP, conflict probes, exhaustion, bad
//! input and durability tickets (harness in `server4`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use maas_ipam::{Durable, MemoryStore};
use maas_pxe::dhcp::server::{
    Destination, Event, Ignored, LeaseError, Mode, Received, Server4, ServerConfig, ServerPort,
};
use maas_pxe::dhcp::v4;
use maas_pxe::dhcproto::v4::{DhcpOption, MessageType};

use crate::testdata::load;

use crate::server4::*;

#[test]
fn relay_selects_the_subnet_and_agent_info_is_echoed_last() {
    let server = server();
    let agent = [1, 4, b'p', b'o', b'r', b't', 2, 2, 0xab, 0xcd];
    let req = Req::new(MessageType::Discover, 1)
        .giaddr(ip("10.77.5.1"))
        .opt(82, &agent);
    let handled = send(&server, &req);
    let offer = reply(&handled);
    assert_eq!(offer.yiaddr(), ip("10.77.5.50"));
    assert_eq!(offer.giaddr(), ip("10.77.5.1"));
    assert_eq!(offer.option(3), Some(&[10, 77, 5, 1][..]));
    assert_eq!(offer.option(82), Some(&agent[..]));
    assert_eq!(offer.options().last().map(|(c, _)| c), Some(82));
    assert_eq!(
        handled.transmit.as_ref().unwrap().destination,
        Destination::Relay("10.77.5.1:67".parse().unwrap())
    );
    // A relay from a VLAN with DHCP off, or from nowhere known: no answer.
    let off = send(
        &server,
        &Req::new(MessageType::Discover, 2).giaddr(ip("10.77.9.1")),
    );
    assert_eq!(
        off.event,
        Event::Ignored(Ignored::DhcpOff("10.77.9.0/24".into()))
    );
    let unknown = send(
        &server,
        &Req::new(MessageType::Discover, 2).giaddr(ip("192.0.2.1")),
    );
    assert_eq!(
        unknown.event,
        Event::Ignored(Ignored::NoSubnet("192.0.2.1".parse().unwrap()))
    );
    // A relayed NAK has the broadcast flag set for the relay.
    let nak = reply(&send(
        &server,
        &Req::new(MessageType::Request, 3)
            .giaddr(ip("10.77.5.1"))
            .requested(ip("10.77.0.100")),
    ));
    assert_eq!(nak.message_type(), Some(MessageType::Nak));
    assert!(nak.flags().broadcast());
}

#[test]
fn pxe_clients_get_their_boot_file() {
    let server = server();
    let handled = server.handle(NOW, &rx(&load("edk2-x64-pxe-discover.bin")));
    let offer = reply(&handled);
    assert_eq!(offer.file(), Some(&b"bootx64.efi"[..]));
    assert_eq!(offer.siaddr(), SERVER);
    assert_eq!(offer.option(60), Some(&b"PXEClient"[..]));
    match &handled.event {
        Event::Offered {
            boot: Some(boot), ..
        } => {
            assert_eq!(boot.file.as_deref(), Some("bootx64.efi"));
            assert_eq!(boot.choice, Ok(maas_net::BootArchitecture::UefiAmd64Tftp));
        }
        other => panic!("{other:?}"),
    }
    // A client that is not booting gets no boot decision.
    let plain = server.handle(NOW, &rx(&load("udhcpc-plain-discover.bin")));
    assert!(matches!(plain.event, Event::Offered { boot: None, .. }));
}

#[test]
fn clients_told_to_boot_locally_get_an_address_and_no_boot_file() {
    let discover = load("edk2-x64-pxe-discover.bin");
    let client = v4::decode(&discover).unwrap().mac().unwrap();
    let mut server = server();
    server.set_local_boot(std::sync::Arc::new(move |mac| mac == client));
    let handled = server.handle(NOW, &rx(&discover));
    let offer = reply(&handled);
    assert_ne!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(offer.file(), None);
    assert_eq!(offer.option(67), None);
    assert_eq!(offer.option(60), None);
    match &handled.event {
        Event::Offered {
            boot: Some(boot), ..
        } => {
            assert_eq!(boot.file, None);
            assert_eq!(boot.choice, Err(maas_pxe::dhcp::NoBoot::LocalDisk));
        }
        other => panic!("{other:?}"),
    }
    // Everyone else still boots from the network.
    let mut other = server_with(ServerConfig::default());
    other.set_local_boot(std::sync::Arc::new(|_| false));
    let offer = reply(&other.handle(NOW, &rx(&discover)));
    assert_eq!(offer.file(), Some(&b"bootx64.efi"[..]));
}

#[test]
fn proxy_dhcp_answers_boot_clients_only() {
    let server = server_with(ServerConfig {
        mode: Mode::Proxy,
        ..ServerConfig::default()
    });
    let discover = load("edk2-x64-pxe-discover.bin");
    let handled = server.handle(NOW, &rx(&discover));
    let offer = reply(&handled);
    assert_eq!(offer.message_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(offer.option(51).is_none());
    assert!(offer.option(1).is_none());
    assert_eq!(offer.option(60), Some(&b"PXEClient"[..]));
    assert!(offer.option(43).is_some());
    assert_eq!(offer.file(), Some(&b"bootx64.efi"[..]));
    assert_eq!(
        handled.transmit.as_ref().unwrap().destination,
        Destination::Broadcast
    );
    assert!(matches!(
        handled.event,
        Event::ProxyAnswered { port: 67, .. }
    ));
    // Nothing is leased.
    assert_eq!(server.leases().lock().unwrap().leases().count(), 0);

    let plain = server.handle(NOW, &rx(&load("udhcpc-plain-discover.bin")));
    assert_eq!(plain.event, Event::Ignored(Ignored::NotBooting));

    // Port 4011: the client's REQUEST, from its new address, answered to where it came from.
    let mut request = v4::decode(&discover).unwrap().into_message();
    request
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Request));
    request.set_ciaddr(ip("10.77.0.150"));
    let bytes = v4::encode_to_vec(&request).unwrap();
    let source = SocketAddrV4::new(ip("10.77.0.150"), 4011);
    let handled = server.handle(
        NOW,
        &Received {
            source,
            port: ServerPort::Pxe,
            ..rx(&bytes)
        },
    );
    let ack = reply(&handled);
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.file(), Some(&b"bootx64.efi"[..]));
    assert_eq!(
        handled.transmit.as_ref().unwrap().destination,
        Destination::Unicast(SocketAddr::V4(source))
    );
}

#[test]
fn conflict_probe_before_offering() {
    let server = server_with(ServerConfig {
        conflict_check: true,
        ..ServerConfig::default()
    });
    let handled = send(&server, &Req::new(MessageType::Discover, 1));
    assert!(handled.transmit.is_none());
    let probe = handled.probe.unwrap();
    assert_eq!((probe.ip, probe.interface), (ip("10.77.0.100"), 7));
    assert_eq!(server.pending_probes(), 1);

    // Someone answers at .100: it is quarantined and .101 is probed instead.
    let next = server.probe_result(probe, true, NOW);
    assert_eq!(
        next.event,
        Event::Conflict {
            ip: "10.77.0.100".parse().unwrap()
        }
    );
    assert!(next.transmit.is_none());
    let probe = next.probe.unwrap();
    assert_eq!(probe.ip, ip("10.77.0.101"));

    // Silence at .101: the OFFER goes out.
    let done = server.probe_result(probe, false, NOW);
    let offer = reply(&done);
    assert_eq!(offer.yiaddr(), ip("10.77.0.101"));
    assert_eq!(server.pending_probes(), 0);
    // A stale probe id is refused.
    assert!(server.probe_result(probe, false, NOW).transmit.is_none());
    // The quarantined address is not offered to anyone else.
    let other = send(&server, &Req::new(MessageType::Discover, 2));
    assert_eq!(other.probe.unwrap().ip, ip("10.77.0.102"));
}

#[test]
fn exhaustion_is_reported() {
    let server = server();
    for last in 0..10 {
        lease(&server, last);
    }
    let handled = send(&server, &Req::new(MessageType::Discover, 200));
    assert!(handled.transmit.is_none());
    match handled.event {
        Event::Ignored(Ignored::Leases(e @ LeaseError::Exhausted { .. })) => assert_eq!(
            e.to_string(),
            "no free address is left in the dynamic ranges of 10.77.0.0/24"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_input_is_ignored_with_a_reason() {
    let server = server();
    let handled = server.handle(NOW, &rx(&[1, 2, 3]));
    assert!(matches!(
        handled.event,
        Event::Ignored(Ignored::Malformed(_))
    ));
    // A BOOTREPLY is not a request.
    let mut bytes = Req::new(MessageType::Discover, 1).bytes();
    bytes[0] = 2;
    let handled = server.handle(NOW, &rx(&bytes));
    assert!(matches!(
        handled.event,
        Event::Ignored(Ignored::NotARequest(_))
    ));
    // An OFFER sent to the server is not a request either.
    let handled = send(&server, &Req::new(MessageType::Offer, 1));
    assert!(matches!(
        handled.event,
        Event::Ignored(Ignored::NotARequest(_))
    ));
    // A REQUEST naming no address.
    let handled = send(&server, &Req::new(MessageType::Request, 1));
    assert!(matches!(
        handled.event,
        Event::Ignored(Ignored::Incomplete(_))
    ));
    // Received on an interface whose address is in no subnet.
    let bytes = Req::new(MessageType::Discover, 1).bytes();
    let handled = server.handle(
        NOW,
        &Received {
            local: ip("192.0.2.1"),
            ..rx(&bytes)
        },
    );
    assert!(matches!(
        handled.event,
        Event::Ignored(Ignored::NoSubnet(_))
    ));
}

#[test]
fn durable_acks_carry_a_ticket() {
    let t = topology();
    let durable = Durable::with_topology(MemoryStore::new(), t.clone()).unwrap();
    let server = Server4::new(ServerConfig::default(), t, durable).unwrap();
    let offer = reply(&send(&server, &Req::new(MessageType::Discover, 1)));
    let handled = send(
        &server,
        &Req::new(MessageType::Request, 1)
            .requested(offer.yiaddr())
            .server_id(SERVER),
    );
    let ticket = handled.ticket.expect("an ACK waits for its commit");
    server.leases().wait(ticket).unwrap();
    let leased = server
        .leases()
        .read(|ipam| ipam.leases().map(|r| r.ip).collect::<Vec<_>>());
    assert_eq!(leased, [IpAddr::V4(offer.yiaddr())]);
}

#[test]
fn the_client_host_name_is_recorded_with_its_lease() {
    let server = server();
    let named = |last: u8, code: u8, value: &[u8]| {
        let offer = reply(&send(&server, &Req::new(MessageType::Discover, last)));
        let ack = reply(&send(
            &server,
            &Req::new(MessageType::Request, last)
                .requested(offer.yiaddr())
                .server_id(SERVER)
                .opt(code, value),
        ));
        assert_eq!(ack.message_type(), Some(MessageType::Ack));
        let ipam = server.leases().lock().unwrap();
        let record = ipam.record(IpAddr::V4(ack.yiaddr())).unwrap();
        record.owner.clone()
    };
    // Option 12; option 81 in ASCII and, with the E flag, in wire form.
    assert_eq!(named(60, 12, b"node-60").as_deref(), Some("node-60"));
    assert_eq!(
        named(61, 81, b"\x00\x00\x00node-61.maas").as_deref(),
        Some("node-61.maas")
    );
    assert_eq!(
        named(62, 81, b"\x04\x00\x00\x07node-62\x00").as_deref(),
        Some("node-62")
    );
    // A malformed option 81 records no name and costs the client nothing.
    assert_eq!(named(63, 81, b"\x04\x00\x00\x09node").as_deref(), None);
}
