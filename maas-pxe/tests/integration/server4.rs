//! The DHCPv4 server engine on maas-ipam leases: the harness, RFC 2131 states, shared links,
//! release, quarantine, INFORM and rapid commit (relays, boot files, ProxyDHCP, probes and
//! durability tickets are in `server4_boot`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Mutex;

use maas_ipam::Ipam;
use maas_net::{ClientKey, IpRange, IpRangeKind, Mac, Subnet, Timestamp, Topology, Vlan};
use maas_pxe::dhcp::server::{
    Destination, Event, Handled, Ignored, LeaseError, Leases, LoadBalance, Mode, Received, Server4,
    ServerConfig, ServerPort, Share,
};
use maas_pxe::dhcp::v4;
use maas_pxe::dhcproto::v4::MessageType;

pub(crate) const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub(crate) const NOW: Timestamp = Timestamp(1_800_000_000);

pub(crate) fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Subnet 10.77.0.0/24 on the default VLAN (DHCP on, pool .100-.109), 10.77.5.0/24 on VLAN
/// 5 relayed to it (pool .50-.59), and 10.77.9.0/24 on VLAN 9 with DHCP off.
pub(crate) fn topology() -> Topology {
    let mut t = Topology::new();
    let fabric = t.fabrics().next().unwrap().0;
    let vlan = t.default_vlan(fabric).unwrap();
    t.update_vlan(vlan, |v| v.dhcp_on = true).unwrap();
    let s0 = t
        .create_subnet(Subnet {
            gateway_ip: Some(IpAddr::V4(SERVER)),
            dns_servers: vec!["10.77.0.2".parse().unwrap()],
            ..Subnet::new("10.77.0.0/24".parse().unwrap(), vlan)
        })
        .unwrap();
    t.create_ip_range(IpRange::new(
        s0,
        "10.77.0.100".parse().unwrap(),
        "10.77.0.109".parse().unwrap(),
        IpRangeKind::Dynamic,
    ))
    .unwrap();
    let relayed = t
        .create_vlan(Vlan {
            relay_vlan: Some(vlan),
            ..Vlan::new(fabric, 5)
        })
        .unwrap();
    let s5 = t
        .create_subnet(Subnet {
            gateway_ip: Some("10.77.5.1".parse().unwrap()),
            ..Subnet::new("10.77.5.0/24".parse().unwrap(), relayed)
        })
        .unwrap();
    t.create_ip_range(IpRange::new(
        s5,
        "10.77.5.50".parse().unwrap(),
        "10.77.5.59".parse().unwrap(),
        IpRangeKind::Dynamic,
    ))
    .unwrap();
    let off = t.create_vlan(Vlan::new(fabric, 9)).unwrap();
    t.create_subnet(Subnet::new("10.77.9.0/24".parse().unwrap(), off))
        .unwrap();
    t
}

pub(crate) fn server_with(config: ServerConfig) -> Server4<Mutex<Ipam>> {
    let t = topology();
    Server4::new(config, t.clone(), Mutex::new(Ipam::new(t))).unwrap()
}

pub(crate) fn server() -> Server4<Mutex<Ipam>> {
    server_with(ServerConfig::default())
}

/// A raw DHCPv4 request.
#[derive(Clone)]
pub(crate) struct Req {
    kind: u8,
    mac: [u8; 6],
    ciaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    broadcast: bool,
    secs: u16,
    options: Vec<(u8, Vec<u8>)>,
}

impl Req {
    pub(crate) fn new(kind: MessageType, last: u8) -> Self {
        Self {
            kind: kind.into(),
            mac: [0x52, 0x54, 0, 0x77, 0, last],
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            broadcast: false,
            secs: 0,
            options: Vec::new(),
        }
    }

    pub(crate) fn secs(mut self, secs: u16) -> Self {
        self.secs = secs;
        self
    }

    pub(crate) fn opt(mut self, code: u8, value: &[u8]) -> Self {
        self.options.push((code, value.to_vec()));
        self
    }

    pub(crate) fn requested(self, addr: Ipv4Addr) -> Self {
        self.opt(50, &addr.octets())
    }

    pub(crate) fn server_id(self, addr: Ipv4Addr) -> Self {
        self.opt(54, &addr.octets())
    }

    pub(crate) fn ciaddr(mut self, addr: Ipv4Addr) -> Self {
        self.ciaddr = addr;
        self
    }

    pub(crate) fn giaddr(mut self, addr: Ipv4Addr) -> Self {
        self.giaddr = addr;
        self
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; 236];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[8..10].copy_from_slice(&self.secs.to_be_bytes());
        if self.broadcast {
            b[10] = 0x80;
        }
        b[12..16].copy_from_slice(&self.ciaddr.octets());
        b[24..28].copy_from_slice(&self.giaddr.octets());
        b[28..34].copy_from_slice(&self.mac);
        b.extend_from_slice(&[99, 130, 83, 99, 53, 1, self.kind]);
        for (code, value) in &self.options {
            b.push(*code);
            b.push(value.len() as u8);
            b.extend_from_slice(value);
        }
        b.push(255);
        b
    }
}

pub(crate) fn rx(bytes: &[u8]) -> Received<'_> {
    Received {
        bytes,
        source: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
        local: SERVER,
        interface: 7,
        port: ServerPort::Dhcp,
    }
}

pub(crate) fn send<L: Leases>(server: &Server4<L>, req: &Req) -> Handled<L::Ticket> {
    server.handle(NOW, &rx(&req.bytes()))
}

pub(crate) fn reply<T>(handled: &Handled<T>) -> v4::Packet {
    let t = handled.transmit.as_ref().unwrap_or_else(|| {
        panic!("no reply: {:?}", handled.event);
    });
    v4::decode(&t.bytes).unwrap()
}

pub(crate) fn mac(last: u8) -> Mac {
    Mac::new([0x52, 0x54, 0, 0x77, 0, last])
}

pub(crate) fn u32_opt(p: &v4::Packet, code: u8) -> Option<u32> {
    p.option(code)
        .map(|v| u32::from_be_bytes(v.try_into().unwrap()))
}

/// DISCOVER, OFFER, REQUEST, ACK for client `last`; returns the address.
pub(crate) fn lease<L: Leases>(server: &Server4<L>, last: u8) -> Ipv4Addr {
    let offer = reply(&send(server, &Req::new(MessageType::Discover, last)));
    let ack = reply(&send(
        server,
        &Req::new(MessageType::Request, last)
            .requested(offer.yiaddr())
            .server_id(SERVER),
    ));
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    ack.yiaddr()
}

#[test]
pub(crate) fn discover_offer_request_ack() {
    let server = server();
    let handled = send(
        &server,
        &Req::new(MessageType::Discover, 1).opt(55, &[1, 3, 6]),
    );
    let offer = reply(&handled);
    assert_eq!(offer.message_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), ip("10.77.0.100"));
    assert_eq!(offer.option(54), Some(&SERVER.octets()[..]));
    assert_eq!(offer.option(1), Some(&[255, 255, 255, 0][..]));
    assert_eq!(offer.option(3), Some(&SERVER.octets()[..]));
    assert_eq!(offer.option(6), Some(&[10, 77, 0, 2][..]));
    assert_eq!(u32_opt(&offer, 51), Some(3600));
    assert_eq!(u32_opt(&offer, 58), Some(1800));
    assert_eq!(u32_opt(&offer, 59), Some(3150));
    // No broadcast flag and no address yet: to the client's hardware address.
    let t = handled.transmit.as_ref().unwrap();
    assert_eq!(
        t.destination,
        Destination::Hardware {
            ip: ip("10.77.0.100"),
            mac: mac(1)
        }
    );
    assert_eq!((t.interface, t.source), (7, IpAddr::V4(SERVER)));
    assert!(
        matches!(handled.event, Event::Offered { ip, .. } if ip == IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100)))
    );

    let handled = send(
        &server,
        &Req::new(MessageType::Request, 1)
            .requested(ip("10.77.0.100"))
            .server_id(SERVER),
    );
    let ack = reply(&handled);
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), ip("10.77.0.100"));
    assert_eq!(u32_opt(&ack, 51), Some(3600));
    match &handled.event {
        Event::Leased {
            client,
            ip: leased,
            expires,
            rapid_commit,
            ..
        } => {
            assert_eq!(client, &ClientKey::Mac(mac(1)));
            assert_eq!(*leased, IpAddr::V4(ip("10.77.0.100")));
            assert_eq!(*expires, NOW.plus(3600));
            assert!(!rapid_commit);
        }
        other => panic!("{other:?}"),
    }
    // In memory: nothing to wait for.
    assert!(handled.ticket.is_none());
    let record = server
        .leases()
        .lock()
        .unwrap()
        .record("10.77.0.100".parse().unwrap())
        .cloned();
    assert!(record.unwrap().lease.is_some());
}

#[test]
pub(crate) fn broadcast_flag_and_client_identifier() {
    let server = server();
    let mut req = Req::new(MessageType::Discover, 1).opt(61, &[0xff, 1, 2, 3]);
    req.broadcast = true;
    let handled = send(&server, &req);
    assert_eq!(
        handled.transmit.as_ref().unwrap().destination,
        Destination::Broadcast
    );
    // Option 61 is the key, and it is echoed.
    assert_eq!(reply(&handled).option(61), Some(&[0xff, 1, 2, 3][..]));
    match handled.event {
        Event::Offered { client, .. } => {
            assert_eq!(client, ClientKey::client_id(vec![0xff, 1, 2, 3]))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
pub(crate) fn each_client_keeps_its_address() {
    let server = server();
    assert_eq!(lease(&server, 1), ip("10.77.0.100"));
    assert_eq!(lease(&server, 2), ip("10.77.0.101"));
    // A client that asks again gets its lease again.
    let again = reply(&send(&server, &Req::new(MessageType::Discover, 1)));
    assert_eq!(again.yiaddr(), ip("10.77.0.100"));
    assert_eq!(lease(&server, 1), ip("10.77.0.100"));
}

#[test]
pub(crate) fn request_for_another_server_is_ignored() {
    let server = server();
    let offer = reply(&send(&server, &Req::new(MessageType::Discover, 1)));
    let handled = send(
        &server,
        &Req::new(MessageType::Request, 1)
            .requested(offer.yiaddr())
            .server_id(ip("10.77.0.254")),
    );
    assert!(handled.transmit.is_none());
    assert_eq!(
        handled.event,
        Event::Ignored(Ignored::OtherServer("10.77.0.254".parse().unwrap()))
    );
}

#[test]
pub(crate) fn servers_sharing_a_link_answer_each_new_client_once_until_it_waited() {
    let servers: Vec<_> = (0..2)
        .map(|index| {
            let mut server = server();
            let vlan = server.topology().subnets().next().unwrap().1.vlan;
            let mut balance = LoadBalance::none();
            balance.shares.insert(vlan, Share::new(index, 2).unwrap());
            server.set_load_balance(balance);
            server
        })
        .collect();
    let mut answered = [0usize; 2];
    // (The pool has 10 addresses: each server holds an offer for each of the 8 clients.)
    for last in 1..=8 {
        let offers: Vec<usize> = (0..2)
            .filter(|&i| {
                let handled = send(&servers[i], &Req::new(MessageType::Discover, last));
                match handled.transmit {
                    Some(_) => true,
                    None => {
                        assert!(
                            matches!(handled.event, Event::Ignored(Ignored::OtherShare(_))),
                            "{:?}",
                            handled.event
                        );
                        false
                    }
                }
            })
            .collect();
        assert_eq!(offers.len(), 1, "client {last}: offers from {offers:?}");
        answered[offers[0]] += 1;
        // Still trying after 3 s: every server answers.
        for server in &servers {
            let offer = reply(&send(
                server,
                &Req::new(MessageType::Discover, last).secs(3),
            ));
            assert_eq!(offer.message_type(), Some(MessageType::Offer));
        }
    }
    assert!(answered.iter().all(|&n| n > 0), "{answered:?}");
    // A REQUEST is not split: the server it names answers it.
    let offer = reply(&send(
        &servers[0],
        &Req::new(MessageType::Discover, 1).secs(5),
    ));
    let ack = reply(&send(
        &servers[0],
        &Req::new(MessageType::Request, 1)
            .requested(offer.yiaddr())
            .server_id(SERVER),
    ));
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
}

#[test]
pub(crate) fn init_reboot() {
    let server = server();
    let first = lease(&server, 1);
    // INIT-REBOOT: no server id, option 50, no ciaddr.
    let ack = reply(&send(
        &server,
        &Req::new(MessageType::Request, 1).requested(first),
    ));
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), first);

    // Another client asking for it gets a NAK, broadcast.
    let handled = send(&server, &Req::new(MessageType::Request, 2).requested(first));
    let nak = reply(&handled);
    assert_eq!(nak.message_type(), Some(MessageType::Nak));
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(nak.option(51).is_none());
    assert_eq!(
        handled.transmit.as_ref().unwrap().destination,
        Destination::Broadcast
    );
    assert!(matches!(handled.event, Event::Refused { .. }));

    // An address from another network: NAK when authoritative.
    let wrong = Req::new(MessageType::Request, 3).requested(ip("192.0.2.10"));
    let nak = reply(&send(&server, &wrong));
    assert_eq!(nak.message_type(), Some(MessageType::Nak));
    let text = String::from_utf8(nak.option(56).unwrap().to_vec()).unwrap();
    assert!(
        text.contains("192.0.2.10 is not on the client's network 10.77.0.0/24"),
        "{text}"
    );

    // ... and silence when not.
    let quiet = server_with(ServerConfig {
        mode: Mode::NonAuthoritative,
        ..ServerConfig::default()
    });
    let handled = send(&quiet, &wrong);
    assert!(handled.transmit.is_none());
    assert!(matches!(
        handled.event,
        Event::Ignored(Ignored::NotAuthoritative(_))
    ));
    lease(&quiet, 1);
    let handled = send(&quiet, &Req::new(MessageType::Request, 2).requested(first));
    assert!(handled.transmit.is_none(), "{:?}", handled.event);

    // A client rebooting with an old address that is free gets it back.
    let ack = reply(&send(
        &server,
        &Req::new(MessageType::Request, 4).requested(ip("10.77.0.105")),
    ));
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), ip("10.77.0.105"));
}

#[test]
pub(crate) fn renewing_is_unicast_to_the_client() {
    let server = server();
    let addr = lease(&server, 1);
    let handled = send(&server, &Req::new(MessageType::Request, 1).ciaddr(addr));
    let ack = reply(&handled);
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!((ack.yiaddr(), ack.ciaddr()), (addr, addr));
    assert_eq!(
        handled.transmit.as_ref().unwrap().destination,
        Destination::Unicast(SocketAddr::V4(SocketAddrV4::new(addr, 68)))
    );
    // Renewing an address another client holds: NAK.
    let nak = reply(&send(
        &server,
        &Req::new(MessageType::Request, 2).ciaddr(addr),
    ));
    assert_eq!(nak.message_type(), Some(MessageType::Nak));
    // Renewing a free address of the pool (a lease the server forgot) is granted, as Kea does.
    let ack = reply(&send(
        &server,
        &Req::new(MessageType::Request, 3).ciaddr(ip("10.77.0.105")),
    ));
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
}

#[test]
pub(crate) fn release_frees_the_address() {
    let server = server();
    let addr = lease(&server, 1);
    let handled = send(
        &server,
        &Req::new(MessageType::Release, 1)
            .ciaddr(addr)
            .server_id(SERVER),
    );
    assert!(handled.transmit.is_none());
    assert_eq!(
        handled.event,
        Event::Released {
            client: ClientKey::Mac(mac(1)),
            ip: IpAddr::V4(addr)
        }
    );
    assert_eq!(lease(&server, 2), addr);
    // Releasing what one does not hold changes nothing.
    let handled = send(&server, &Req::new(MessageType::Release, 3).ciaddr(addr));
    assert!(matches!(
        handled.event,
        Event::Ignored(Ignored::Leases(LeaseError::NotHolder { .. }))
    ));
    assert_eq!(lease(&server, 2), addr);
}

#[test]
pub(crate) fn declined_addresses_are_quarantined() {
    let server = server();
    let addr = lease(&server, 1);
    let handled = send(
        &server,
        &Req::new(MessageType::Decline, 1)
            .requested(addr)
            .server_id(SERVER),
    );
    assert!(handled.transmit.is_none());
    assert!(matches!(handled.event, Event::Declined { .. }));
    // Nobody gets it during the quarantine, the decliner included.
    assert_eq!(lease(&server, 1), ip("10.77.0.101"));
    assert_eq!(lease(&server, 2), ip("10.77.0.102"));
    // After it, the address is free again.
    server.leases().expire(NOW.plus(86_401)).unwrap();
    let offer = server.handle(
        NOW.plus(86_402),
        &rx(&Req::new(MessageType::Discover, 3).bytes()),
    );
    assert_eq!(reply(&offer).yiaddr(), addr);
}

#[test]
pub(crate) fn inform_gets_options_without_a_lease() {
    let server = server();
    let client = ip("10.77.0.20");
    let handled = send(&server, &Req::new(MessageType::Inform, 1).ciaddr(client));
    let ack = reply(&handled);
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(ack.option(51).is_none());
    assert_eq!(ack.option(1), Some(&[255, 255, 255, 0][..]));
    assert_eq!(
        handled.transmit.as_ref().unwrap().destination,
        Destination::Unicast(SocketAddr::V4(SocketAddrV4::new(client, 68)))
    );
}

#[test]
pub(crate) fn rapid_commit() {
    let server = server();
    let handled = send(&server, &Req::new(MessageType::Discover, 1).opt(80, &[]));
    let ack = reply(&handled);
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.option(80), Some(&[][..]));
    assert!(matches!(
        handled.event,
        Event::Leased {
            rapid_commit: true,
            ..
        }
    ));
    // Off by configuration: a normal OFFER.
    let server = server_with(ServerConfig {
        rapid_commit: false,
        ..ServerConfig::default()
    });
    let offer = reply(&send(
        &server,
        &Req::new(MessageType::Discover, 1).opt(80, &[]),
    ));
    assert_eq!(offer.message_type(), Some(MessageType::Offer));
    assert!(offer.option(80).is_none());
}
