//! The DHCPv6 server engine on maas-ipam leases: the Solicit/Advertise/Request/Reply
//! exchange, renewals, release and decline, rapid commit, nested relays, server identifiers,
//! Confirm, Information-request, boot-file URLs and exhaustion.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Mutex;

use maas_ipam::{Durable, Ipam, MemoryStore};
use maas_net::{ClientKey, IpRange, IpRangeKind, Mac, Subnet, Timestamp, Topology, Vlan};
use maas_pxe::dhcp::server::{
    Destination, Duid, Event, Handled, Ignored, Leases, Mode, Received6, Server6, ServerConfig,
};
use maas_pxe::dhcp::v6;
use maas_pxe::dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, IANA, IAPD, IATA, Message, MessageType, ORO, OptionCode,
    RelayMessage, Status, VendorClass,
};

use crate::testdata::load;

const NOW: Timestamp = Timestamp(1_800_000_000);
/// The server's address on the clients' link.
const LOCAL: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
const SERVER_MAC: Mac = Mac::new([0x52, 0x54, 0, 0x77, 0, 1]);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// fd77::/64 on the default VLAN (DHCP on, pool fd77::1:0-fd77::1:ff, DNS fd77::2),
/// fd78::/64 on VLAN 5 relayed to it (pool fd78::1:0-fd78::1:ff) and fd79::/64 on VLAN 9
/// with DHCP off.
fn topology() -> Topology {
    let mut t = Topology::new();
    let fabric = t.fabrics().next().unwrap().0;
    let vlan = t.default_vlan(fabric).unwrap();
    t.update_vlan(vlan, |v| v.dhcp_on = true).unwrap();
    let s0 = t
        .create_subnet(Subnet {
            gateway_ip: Some(IpAddr::V6(LOCAL)),
            dns_servers: vec!["fd77::2".parse().unwrap(), "10.77.0.2".parse().unwrap()],
            ..Subnet::new("fd77::/64".parse().unwrap(), vlan)
        })
        .unwrap();
    t.create_ip_range(IpRange::new(
        s0,
        "fd77::1:0".parse().unwrap(),
        "fd77::1:ff".parse().unwrap(),
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
        .create_subnet(Subnet::new("fd78::/64".parse().unwrap(), relayed))
        .unwrap();
    t.create_ip_range(IpRange::new(
        s5,
        "fd78::1:0".parse().unwrap(),
        "fd78::1:ff".parse().unwrap(),
        IpRangeKind::Dynamic,
    ))
    .unwrap();
    let off = t.create_vlan(Vlan::new(fabric, 9)).unwrap();
    t.create_subnet(Subnet::new("fd79::/64".parse().unwrap(), off))
        .unwrap();
    t
}

fn config() -> ServerConfig {
    ServerConfig {
        duid: Some(Duid::LinkLayer { mac: SERVER_MAC }),
        domain_search: vec!["maas".into(), "example.com".into()],
        ..ServerConfig::default()
    }
}

fn server_with(config: ServerConfig) -> Server6<Mutex<Ipam>> {
    let t = topology();
    Server6::new(config, t.clone(), Mutex::new(Ipam::new(t))).unwrap()
}

fn server() -> Server6<Mutex<Ipam>> {
    server_with(config())
}

fn server_duid() -> Vec<u8> {
    Duid::LinkLayer { mac: SERVER_MAC }.to_bytes()
}

/// A client's DUID-LL.
fn duid(last: u8) -> Vec<u8> {
    vec![0, 3, 0, 1, 0x52, 0x54, 0, 0x77, 2, last]
}

fn client_addr(last: u8) -> SocketAddrV6 {
    SocketAddrV6::new(
        Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            0x5054,
            0xff,
            0xfe77,
            0x200 | u16::from(last),
        ),
        546,
        0,
        2,
    )
}

/// A client message of `kind` from client `last`, with its DUID and one IA_NA (id 1).
fn msg(kind: MessageType, last: u8) -> Message {
    let mut m = Message::new_with_id(kind, [0x77, 0, last]);
    m.opts_mut().insert(DhcpOption::ClientId(duid(last)));
    m.opts_mut().insert(DhcpOption::ElapsedTime(0));
    m
}

fn with_ia(mut m: Message, addr: Option<Ipv6Addr>) -> Message {
    let mut opts = DhcpOptions::new();
    if let Some(addr) = addr {
        opts.insert(DhcpOption::IAAddr(IAAddr {
            addr,
            preferred_life: 0,
            valid_life: 0,
            opts: DhcpOptions::new(),
        }));
    }
    m.opts_mut().insert(DhcpOption::IANA(IANA {
        id: 1,
        t1: 0,
        t2: 0,
        opts,
    }));
    m
}

fn with(mut m: Message, opt: DhcpOption) -> Message {
    m.opts_mut().insert(opt);
    m
}

fn oro(codes: &[u16]) -> DhcpOption {
    DhcpOption::ORO(ORO {
        opts: codes.iter().map(|&c| OptionCode::from(c)).collect(),
    })
}

fn ours(m: Message) -> Message {
    with(m, DhcpOption::ServerId(server_duid()))
}

fn send_bytes(
    server: &Server6<impl Leases>,
    bytes: &[u8],
    source: SocketAddrV6,
    now: Timestamp,
) -> Handled<impl Sized> {
    server.handle(
        now,
        &Received6 {
            bytes,
            source,
            local: LOCAL,
            interface: 2,
        },
    )
}

fn send_at<L: Leases>(server: &Server6<L>, m: &Message, now: Timestamp) -> Handled<L::Ticket> {
    let bytes = v6::encode_message_to_vec(m).unwrap();
    let last = m.xid()[2];
    server.handle(
        now,
        &Received6 {
            bytes: &bytes,
            source: client_addr(last),
            local: LOCAL,
            interface: 2,
        },
    )
}

fn send<L: Leases>(server: &Server6<L>, m: &Message) -> Handled<L::Ticket> {
    send_at(server, m, NOW)
}

fn reply<T>(handled: &Handled<T>) -> Message {
    let transmit = handled.transmit.as_ref().expect("an answer");
    v6::decode(&transmit.bytes).unwrap().message().clone()
}

fn ia_na(m: &Message) -> &IANA {
    match m.opts().get(OptionCode::IANA) {
        Some(DhcpOption::IANA(ia)) => ia,
        other => panic!("no IA_NA: {other:?}"),
    }
}

fn addresses(ia: &IANA) -> Vec<(Ipv6Addr, u32, u32)> {
    ia.opts
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAAddr(a) => Some((a.addr, a.preferred_life, a.valid_life)),
            _ => None,
        })
        .collect()
}

fn status_in(opts: &DhcpOptions) -> Option<Status> {
    match opts.get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(s)) => Some(s.status),
        _ => None,
    }
}

fn raw(m: &Message, code: u16) -> Option<Vec<u8>> {
    m.opts().iter().find_map(|o| match o {
        DhcpOption::Unknown(u) if u16::from(u.code()) == code => Some(u.data().to_vec()),
        _ => None,
    })
}

fn search_list(m: &Message) -> Vec<String> {
    match m.opts().get(OptionCode::DomainSearchList) {
        Some(DhcpOption::DomainSearchList(names)) => names.iter().map(|n| n.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// A Relay-forward around `inner`, with an Interface-ID when given.
fn relay_forward(
    hop: u8,
    link: Ipv6Addr,
    peer: Ipv6Addr,
    interface_id: Option<&[u8]>,
    inner: &[u8],
) -> Vec<u8> {
    let mut out = vec![12, hop];
    out.extend(link.octets());
    out.extend(peer.octets());
    let mut put = |code: u16, value: &[u8]| {
        out.extend(code.to_be_bytes());
        out.extend((value.len() as u16).to_be_bytes());
        out.extend(value);
    };
    if let Some(id) = interface_id {
        put(18, id);
    }
    put(9, inner);
    out
}

fn interface_id(relay: &RelayMessage) -> Option<Vec<u8>> {
    match relay.opts().get(OptionCode::InterfaceId) {
        Some(DhcpOption::InterfaceId(id)) => Some(id.clone()),
        _ => None,
    }
}

#[test]
fn solicit_request_renew_release() {
    let server = server();
    let client = ClientKey::ClientId(duid(1));

    let solicit = with(with_ia(msg(MessageType::Solicit, 1), None), oro(&[23, 24]));
    let handled = send(&server, &solicit);
    assert_eq!(
        handled.transmit.as_ref().unwrap().destination,
        Destination::Unicast(SocketAddr::V6(client_addr(1)))
    );
    assert_eq!(handled.transmit.as_ref().unwrap().source, IpAddr::V6(LOCAL));
    assert_eq!(
        handled.event,
        Event::Offered {
            client: client.clone(),
            mac: Some(Mac::new([0x52, 0x54, 0, 0x77, 2, 1])),
            ip: IpAddr::V6(ip("fd77::1:0")),
            boot: None,
        }
    );
    let advertise = reply(&handled);
    assert_eq!(advertise.msg_type(), MessageType::Advertise);
    assert_eq!(advertise.xid(), [0x77, 0, 1]);
    assert_eq!(
        advertise.opts().get(OptionCode::ServerId),
        Some(&DhcpOption::ServerId(vec![
            0, 3, 0, 1, 0x52, 0x54, 0, 0x77, 0, 1
        ]))
    );
    assert_eq!(
        advertise.opts().get(OptionCode::ClientId),
        Some(&DhcpOption::ClientId(duid(1)))
    );
    let ia = ia_na(&advertise);
    assert_eq!((ia.id, ia.t1, ia.t2), (1, 1800, 2880));
    assert_eq!(addresses(ia), [(ip("fd77::1:0"), 3600, 3600)]);
    assert_eq!(status_in(&ia.opts), None);
    assert_eq!(
        advertise.opts().get(OptionCode::DomainNameServers),
        Some(&DhcpOption::DomainNameServers(vec![ip("fd77::2")]))
    );
    assert_eq!(search_list(&advertise), ["maas.", "example.com."]);
    assert_eq!(advertise.opts().get(OptionCode::RapidCommit), None);

    let request = ours(with_ia(msg(MessageType::Request, 1), Some(ip("fd77::1:0"))));
    let handled = send(&server, &request);
    assert!(handled.ticket.is_none(), "in memory: nothing to wait for");
    assert_eq!(
        handled.event,
        Event::Leased {
            client: client.clone(),
            mac: Some(Mac::new([0x52, 0x54, 0, 0x77, 2, 1])),
            ip: IpAddr::V6(ip("fd77::1:0")),
            expires: NOW.plus(3600),
            rapid_commit: false,
            boot: None,
        }
    );
    let r = reply(&handled);
    assert_eq!(r.msg_type(), MessageType::Reply);
    let ia = ia_na(&r);
    assert_eq!((ia.t1, ia.t2), (1800, 2880));
    assert_eq!(addresses(ia), [(ip("fd77::1:0"), 3600, 3600)]);
    // No ORO: everything the server has.
    assert!(r.opts().get(OptionCode::DomainNameServers).is_some());

    let later = NOW.plus(1800);
    let renew = ours(with_ia(msg(MessageType::Renew, 1), Some(ip("fd77::1:0"))));
    let handled = send_at(&server, &renew, later);
    assert!(matches!(handled.event, Event::Leased { expires, .. } if expires == later.plus(3600)));
    let ia = ia_na(&reply(&handled)).clone();
    assert_eq!(addresses(&ia), [(ip("fd77::1:0"), 3600, 3600)]);

    // Another client renewing that address has no binding for it.
    let stranger = ours(with_ia(msg(MessageType::Renew, 2), Some(ip("fd77::1:0"))));
    let handled = send_at(&server, &stranger, later);
    assert!(matches!(handled.event, Event::Refused { .. }));
    let ia = ia_na(&reply(&handled)).clone();
    assert!(addresses(&ia).is_empty());
    assert_eq!(status_in(&ia.opts), Some(Status::NoBinding));
    // ... nor can it release it.
    let release = ours(with_ia(msg(MessageType::Release, 2), Some(ip("fd77::1:0"))));
    let r = reply(&send(&server, &release));
    assert_eq!(status_in(r.opts()), Some(Status::Success));
    assert_eq!(status_in(&ia_na(&r).opts), Some(Status::NoBinding));

    let release = ours(with_ia(msg(MessageType::Release, 1), Some(ip("fd77::1:0"))));
    let handled = send(&server, &release);
    assert_eq!(
        handled.event,
        Event::Released {
            client,
            ip: IpAddr::V6(ip("fd77::1:0"))
        }
    );
    let r = reply(&handled);
    assert_eq!(r.msg_type(), MessageType::Reply);
    assert_eq!(status_in(r.opts()), Some(Status::Success));
    assert_eq!(r.opts().get(OptionCode::IANA), None);
    assert_eq!(server.leases().lock().unwrap().leases().count(), 0);
}

#[test]
fn preferred_lifetime_and_t1_t2() {
    let server = server_with(ServerConfig {
        lease_secs: 7200,
        preferred_lifetime_secs: Some(3000),
        ..config()
    });
    let r = reply(&send(
        &server,
        &with(
            with_ia(msg(MessageType::Solicit, 1), None),
            DhcpOption::RapidCommit,
        ),
    ));
    let ia = ia_na(&r);
    assert_eq!((ia.t1, ia.t2), (1500, 2400));
    assert_eq!(addresses(ia), [(ip("fd77::1:0"), 3000, 7200)]);
}

#[test]
fn rapid_commit() {
    let server = server();
    let solicit = with(
        with_ia(msg(MessageType::Solicit, 1), None),
        DhcpOption::RapidCommit,
    );
    let handled = send(&server, &solicit);
    assert!(matches!(
        handled.event,
        Event::Leased { rapid_commit: true, ip: leased, expires, .. }
            if leased == IpAddr::V6(ip("fd77::1:0")) && expires == NOW.plus(3600)
    ));
    let r = reply(&handled);
    assert_eq!(r.msg_type(), MessageType::Reply);
    assert_eq!(
        r.opts().get(OptionCode::RapidCommit),
        Some(&DhcpOption::RapidCommit)
    );
    assert_eq!(addresses(ia_na(&r)), [(ip("fd77::1:0"), 3600, 3600)]);

    let slow = server_with(ServerConfig {
        rapid_commit: false,
        ..config()
    });
    let r = reply(&send(&slow, &solicit));
    assert_eq!(r.msg_type(), MessageType::Advertise);
    assert_eq!(r.opts().get(OptionCode::RapidCommit), None);
}

#[test]
fn relayed_twice() {
    let server = server();
    let inner = v6::encode_message_to_vec(&with_ia(msg(MessageType::Solicit, 7), None)).unwrap();
    let client_ll = *client_addr(7).ip();
    let first = relay_forward(0, ip("fd78::1"), client_ll, Some(b"ge-0/0/5"), &inner);
    let second = relay_forward(1, ip("fd77::5"), ip("fe80::5"), Some(b"uplink"), &first);
    let relay_agent = SocketAddrV6::new(ip("fd77::5"), 547, 0, 0);
    let handled = send_bytes(&server, &second, relay_agent, NOW);
    let transmit = handled.transmit.as_ref().unwrap();
    assert_eq!(
        transmit.destination,
        Destination::Relay(SocketAddr::V6(relay_agent))
    );
    assert_eq!(handled.event.ip(), Some(IpAddr::V6(ip("fd78::1:0"))));

    let packet = v6::decode(&transmit.bytes).unwrap();
    let relays = packet.relays();
    assert_eq!(relays.len(), 2);
    let (outer, innermost) = (relays[0], relays[1]);
    assert_eq!(outer.msg_type(), MessageType::RelayRepl);
    assert_eq!(
        (outer.hop_count(), outer.link_addr(), outer.peer_addr()),
        (1, ip("fd77::5"), ip("fe80::5"))
    );
    assert_eq!(interface_id(outer).unwrap(), b"uplink");
    assert_eq!(innermost.msg_type(), MessageType::RelayRepl);
    assert_eq!(
        (
            innermost.hop_count(),
            innermost.link_addr(),
            innermost.peer_addr()
        ),
        (0, ip("fd78::1"), client_ll)
    );
    assert_eq!(interface_id(innermost).unwrap(), b"ge-0/0/5");
    let advertise = packet.message();
    assert_eq!(advertise.msg_type(), MessageType::Advertise);
    assert_eq!(addresses(ia_na(advertise)), [(ip("fd78::1:0"), 3600, 3600)]);
    // fd78::/64 has no DNS servers.
    assert_eq!(advertise.opts().get(OptionCode::DomainNameServers), None);

    // A lightweight relay (RFC 6221) leaves its link-address unspecified: the next relay's
    // names the link.
    let ldra = relay_forward(0, Ipv6Addr::UNSPECIFIED, client_ll, Some(b"port5"), &inner);
    let routed = relay_forward(1, ip("fd78::1"), ip("fe80::9"), None, &ldra);
    let handled = send_bytes(&server, &routed, relay_agent, NOW);
    assert_eq!(handled.event.ip(), Some(IpAddr::V6(ip("fd78::1:0"))));
    // Directly to the server on the client's own link: the receiving interface's subnet.
    let handled = send_bytes(&server, &ldra, relay_agent, NOW);
    assert_eq!(handled.event.ip(), Some(IpAddr::V6(ip("fd77::1:0"))));
    let transmit = handled.transmit.unwrap();
    let packet = v6::decode(&transmit.bytes).unwrap();
    assert_eq!(interface_id(packet.relays()[0]).unwrap(), b"port5");

    // A relay sending from another port gets the answer at 547, unless it says it listens
    // there (Relay Source Port, RFC 8357).
    let high = SocketAddrV6::new(ip("fd77::5"), 10547, 0, 0);
    let handled = send_bytes(&server, &first, high, NOW);
    assert_eq!(
        handled.transmit.unwrap().destination,
        Destination::Relay(SocketAddr::V6(relay_agent))
    );
    let mut sourced = first.clone();
    sourced.extend([0, 135, 0, 2, 0x29, 0x43]);
    let handled = send_bytes(&server, &sourced, high, NOW);
    assert_eq!(
        handled.transmit.unwrap().destination,
        Destination::Relay(SocketAddr::V6(high))
    );

    // A Relay-reply is not a request.
    let mut reply_bytes = first.clone();
    reply_bytes[0] = 13;
    assert!(matches!(
        send_bytes(&server, &reply_bytes, relay_agent, NOW).event,
        Event::Ignored(Ignored::NotARequest(_))
    ));
}

#[test]
fn server_identifiers() {
    let server = server();
    let other = vec![0, 3, 0, 1, 0x52, 0x54, 0, 0x77, 0, 9];
    for kind in [
        MessageType::Request,
        MessageType::Renew,
        MessageType::Release,
        MessageType::Decline,
        MessageType::InformationRequest,
    ] {
        let mut m = with(msg(kind, 1), DhcpOption::ServerId(other.clone()));
        if kind != MessageType::InformationRequest {
            m = with_ia(m, Some(ip("fd77::1:0")));
        }
        assert_eq!(
            send(&server, &m).event,
            Event::Ignored(Ignored::OtherServerDuid(
                "000300015254007700 09".replace(' ', "")
            )),
            "{kind:?}"
        );
    }
    for kind in [
        MessageType::Request,
        MessageType::Renew,
        MessageType::Release,
        MessageType::Decline,
    ] {
        assert!(
            matches!(
                send(&server, &with_ia(msg(kind, 1), Some(ip("fd77::1:0")))).event,
                Event::Ignored(Ignored::Incomplete(_))
            ),
            "{kind:?} without a server identifier"
        );
    }
    for kind in [
        MessageType::Solicit,
        MessageType::Rebind,
        MessageType::Confirm,
    ] {
        assert!(
            matches!(
                send(&server, &ours(with_ia(msg(kind, 1), Some(ip("fd77::1:0"))))).event,
                Event::Ignored(Ignored::Malformed(_))
            ),
            "{kind:?} with a server identifier"
        );
    }
    let mut anonymous = with_ia(msg(MessageType::Solicit, 1), None);
    anonymous.opts_mut().remove(OptionCode::ClientId);
    assert!(matches!(
        send(&server, &anonymous).event,
        Event::Ignored(Ignored::Incomplete(_))
    ));
    // Server messages are not requests.
    assert!(matches!(
        send(&server, &msg(MessageType::Advertise, 1)).event,
        Event::Ignored(Ignored::NotARequest(_))
    ));
}

#[test]
fn random_duid_is_reported() {
    let t = topology();
    let a = Server6::new(
        ServerConfig::default(),
        t.clone(),
        Mutex::new(Ipam::new(t.clone())),
    )
    .unwrap();
    let b = Server6::new(ServerConfig::default(), t.clone(), Mutex::new(Ipam::new(t))).unwrap();
    assert_ne!(a.duid(), b.duid());
    let Duid::Uuid { uuid } = *a.duid() else {
        panic!("a DUID-UUID")
    };
    assert_eq!(uuid[6] >> 4, 4, "a version 4 UUID");
    let r = reply(&send(&a, &with_ia(msg(MessageType::Solicit, 1), None)));
    assert_eq!(
        r.opts().get(OptionCode::ServerId),
        Some(&DhcpOption::ServerId(a.duid().to_bytes()))
    );
}

#[test]
fn confirm() {
    let server = server();
    let on = with_ia(msg(MessageType::Confirm, 1), Some(ip("fd77::1:42")));
    let handled = send(&server, &on);
    assert_eq!(
        handled.event,
        Event::Confirmed {
            client: ClientKey::ClientId(duid(1)),
            on_link: true
        }
    );
    let r = reply(&handled);
    assert_eq!(r.msg_type(), MessageType::Reply);
    assert_eq!(status_in(r.opts()), Some(Status::Success));

    let off = with_ia(msg(MessageType::Confirm, 1), Some(ip("fd99::42")));
    let handled = send(&server, &off);
    assert!(matches!(
        handled.event,
        Event::Confirmed { on_link: false, .. }
    ));
    assert_eq!(status_in(reply(&handled).opts()), Some(Status::NotOnLink));

    let empty = with_ia(msg(MessageType::Confirm, 1), None);
    assert!(matches!(
        send(&server, &empty).event,
        Event::Ignored(Ignored::Incomplete(_))
    ));
}

#[test]
fn information_request() {
    let server = server();
    let mut info = with(msg(MessageType::InformationRequest, 1), oro(&[23]));
    let handled = send(&server, &info);
    assert_eq!(
        handled.event,
        Event::Informed {
            mac: Some(Mac::new([0x52, 0x54, 0, 0x77, 2, 1])),
            ip: Some(IpAddr::V6(*client_addr(1).ip())),
            boot: None,
        }
    );
    let r = reply(&handled);
    assert_eq!(r.msg_type(), MessageType::Reply);
    assert_eq!(
        r.opts().get(OptionCode::DomainNameServers),
        Some(&DhcpOption::DomainNameServers(vec![ip("fd77::2")]))
    );
    assert!(search_list(&r).is_empty(), "not asked for");
    assert_eq!(r.opts().get(OptionCode::IANA), None);

    // Without a client identifier too, and with ours as server identifier.
    info.opts_mut().remove(OptionCode::ClientId);
    let r = reply(&send(&server, &ours(info.clone())));
    assert_eq!(r.opts().get(OptionCode::ClientId), None);

    let with_ia = with_ia(info, None);
    assert!(matches!(
        send(&server, &with_ia).event,
        Event::Ignored(Ignored::Malformed(_))
    ));
}

#[test]
fn uefi_pxe_gets_a_tftp_url() {
    let server = server();
    // edk2's Solicit: ORO 59 60 23 24, 61 = 7, PXEClient vendor class, a DUID-UUID.
    let bytes = load("edk2-x64-pxe-solicit6.bin");
    let source = client_addr(0x30);
    let handled = send_bytes(&server, &bytes, source, NOW);
    let Event::Offered {
        ip: offered, boot, ..
    } = &handled.event
    else {
        panic!("{:?}", handled.event)
    };
    assert_eq!(*offered, IpAddr::V6(ip("fd77::1:0")));
    let boot = boot.as_ref().unwrap();
    assert_eq!(boot.choice, Ok(maas_net::BootArchitecture::UefiAmd64Tftp));
    assert_eq!(boot.file.as_deref(), Some("tftp://[fd77::1]/bootx64.efi"));
    let advertise = reply(&handled);
    assert_eq!(
        raw(&advertise, 59).unwrap(),
        b"tftp://[fd77::1]/bootx64.efi"
    );
    assert_eq!(
        advertise.opts().get(OptionCode::VendorClass),
        Some(&DhcpOption::VendorClass(VendorClass {
            num: 343,
            data: vec![b"PXEClient".to_vec()]
        }))
    );
    assert!(
        advertise
            .opts()
            .get(OptionCode::DomainNameServers)
            .is_some()
    );

    // A client sending only option 61 = 7, with 59 in its ORO; the configured boot server.
    let server = server_with(ServerConfig {
        server_id_v6: Some(ip("fd77::10")),
        ..config()
    });
    let arch = with(
        with(with_ia(msg(MessageType::Solicit, 3), None), oro(&[59, 23])),
        DhcpOption::ClientArchType(vec![7.into()]),
    );
    let r = reply(&send(&server, &arch));
    assert_eq!(raw(&r, 59).unwrap(), b"tftp://[fd77::10]/bootx64.efi");
    // The same client not asking for 59 gets none.
    let quiet = with(
        with(with_ia(msg(MessageType::Solicit, 4), None), oro(&[23])),
        DhcpOption::ClientArchType(vec![7.into()]),
    );
    let handled = send(&server, &quiet);
    assert_eq!(raw(&reply(&handled), 59), None);
    assert!(matches!(&handled.event, Event::Offered { boot: Some(b), .. } if b.file.is_none()));
}

#[test]
fn uefi_http_gets_an_http_url_and_vendor_class() {
    let server = server();
    let bytes = load("edk2-x64-http-solicit6.bin");
    let handled = send_bytes(&server, &bytes, client_addr(0x31), NOW);
    let advertise = reply(&handled);
    assert_eq!(
        raw(&advertise, 59).unwrap(),
        b"http://[fd77::1]:5248/images/bootx64.efi"
    );
    assert_eq!(
        advertise.opts().get(OptionCode::VendorClass),
        Some(&DhcpOption::VendorClass(VendorClass {
            num: 343,
            data: vec![b"HTTPClient".to_vec()]
        }))
    );

    // A hand-built HTTP client (61 = 16) goes through Request with the same answer.
    let http = |kind| {
        with(
            with(msg(kind, 5), oro(&[59, 60])),
            DhcpOption::ClientArchType(vec![16.into()]),
        )
    };
    let r = reply(&send(&server, &with_ia(http(MessageType::Solicit), None)));
    let offered = addresses(ia_na(&r))[0].0;
    let handled = send(
        &server,
        &ours(with_ia(http(MessageType::Request), Some(offered))),
    );
    let Event::Leased {
        boot: Some(boot), ..
    } = &handled.event
    else {
        panic!("{:?}", handled.event)
    };
    assert_eq!(boot.choice, Ok(maas_net::BootArchitecture::UefiAmd64Http));
    assert_eq!(
        raw(&reply(&handled), 59).unwrap(),
        b"http://[fd77::1]:5248/images/bootx64.efi"
    );
}

#[test]
fn exhaustion_gives_no_addrs_avail() {
    let server = server();
    for n in 0..256u16 {
        let mut m = with_ia(msg(MessageType::Solicit, 0), None);
        let mut id = duid(0);
        id.extend(n.to_be_bytes());
        m.opts_mut().insert(DhcpOption::ClientId(id));
        assert!(
            matches!(send(&server, &m).event, Event::Offered { .. }),
            "{n}"
        );
    }
    let handled = send(&server, &with_ia(msg(MessageType::Solicit, 1), None));
    assert!(
        matches!(&handled.event, Event::Refused { ip: None, reason, .. } if reason.contains("fd77::/64"))
    );
    let advertise = reply(&handled);
    assert_eq!(advertise.msg_type(), MessageType::Advertise);
    let ia = ia_na(&advertise);
    assert!(addresses(ia).is_empty());
    assert_eq!(status_in(&ia.opts), Some(Status::NoAddrsAvail));

    let request = ours(with_ia(msg(MessageType::Request, 1), Some(ip("fd77::1:7"))));
    let handled = send(&server, &request);
    assert!(matches!(handled.event, Event::Refused { .. }));
    assert_eq!(
        status_in(&ia_na(&reply(&handled)).opts),
        Some(Status::NoAddrsAvail)
    );
}

#[test]
fn malformed_and_misplaced() {
    let server = server();
    let source = client_addr(1);
    for bytes in [&[1u8, 2][..], &[1, 0, 0, 1, 0, 1, 0, 9, 0]] {
        assert!(matches!(
            send_bytes(&server, bytes, source, NOW).event,
            Event::Ignored(Ignored::Malformed(_))
        ));
    }
    // No subnet for the receiving interface, and DHCP off on the subnet's VLAN.
    let bytes = v6::encode_message_to_vec(&with_ia(msg(MessageType::Solicit, 1), None)).unwrap();
    let rx = |local| Received6 {
        bytes: &bytes,
        source,
        local,
        interface: 2,
    };
    assert_eq!(
        server.handle(NOW, &rx(ip("fd99::1"))).event,
        Event::Ignored(Ignored::NoSubnet(IpAddr::V6(ip("fd99::1"))))
    );
    assert_eq!(
        server.handle(NOW, &rx(ip("fd79::1"))).event,
        Event::Ignored(Ignored::DhcpOff("fd79::/64".into()))
    );
}

#[test]
fn unsupported_ias_and_a_second_ia_na() {
    let server = server();
    let ia = |id| {
        DhcpOption::IANA(IANA {
            id,
            t1: 0,
            t2: 0,
            opts: DhcpOptions::new(),
        })
    };
    let mut m = msg(MessageType::Solicit, 1);
    // IA_NAs 7 then 2 on the wire: the first gets the address.
    let mut opts: Vec<DhcpOption> = m.opts().iter().cloned().collect();
    opts.extend([
        ia(7),
        ia(2),
        DhcpOption::IATA(IATA {
            id: 3,
            opts: DhcpOptions::new(),
        }),
        DhcpOption::IAPD(IAPD {
            id: 4,
            t1: 0,
            t2: 0,
            opts: DhcpOptions::new(),
        }),
    ]);
    opts.sort_by_key(|o| u16::from(OptionCode::from(o)));
    m.set_opts(DhcpOptions::from_iter(opts));
    let bytes = v6::encode_message_to_vec(&m).unwrap();
    assert_eq!(v6::decode(&bytes).unwrap().message(), &m);
    let r = reply(&send(&server, &m));
    let ias: Vec<&IANA> = r
        .opts()
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IANA(ia) => Some(ia),
            _ => None,
        })
        .collect();
    assert_eq!(ias.len(), 2);
    assert_eq!(ias[0].id, 7);
    assert_eq!(addresses(ias[0]), [(ip("fd77::1:0"), 3600, 3600)]);
    assert_eq!(ias[1].id, 2);
    assert_eq!(status_in(&ias[1].opts), Some(Status::NoAddrsAvail));
    match r.opts().get(OptionCode::IATA) {
        Some(DhcpOption::IATA(ta)) => {
            assert_eq!(ta.id, 3);
            assert_eq!(status_in(&ta.opts), Some(Status::NoAddrsAvail));
        }
        other => panic!("{other:?}"),
    }
    match r.opts().get(OptionCode::IAPD) {
        Some(DhcpOption::IAPD(pd)) => {
            assert_eq!(pd.id, 4);
            assert_eq!(status_in(&pd.opts), Some(Status::NoPrefixAvail));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn request_off_link_and_rebind() {
    let server = server();
    let request = ours(with_ia(msg(MessageType::Request, 1), Some(ip("fd99::5"))));
    let handled = send(&server, &request);
    assert!(matches!(handled.event, Event::Refused { .. }));
    assert_eq!(
        status_in(&ia_na(&reply(&handled)).opts),
        Some(Status::NotOnLink)
    );

    // A Request for an address outside the pool gets the client's own.
    let request = ours(with_ia(msg(MessageType::Request, 1), Some(ip("fd77::5"))));
    let r = reply(&send(&server, &request));
    assert_eq!(addresses(ia_na(&r)), [(ip("fd77::1:0"), 3600, 3600)]);

    // Rebind keeps the lease; an off-link address is given lifetimes of zero.
    let rebind = with_ia(msg(MessageType::Rebind, 1), Some(ip("fd77::1:0")));
    let handled = send_at(&server, &rebind, NOW.plus(3000));
    assert!(matches!(handled.event, Event::Leased { expires, .. } if expires == NOW.plus(6600)));
    let rebind = with_ia(msg(MessageType::Rebind, 2), Some(ip("fd99::5")));
    let handled = send(&server, &rebind);
    let ia = ia_na(&reply(&handled)).clone();
    assert_eq!(addresses(&ia), [(ip("fd99::5"), 0, 0)]);
    assert_eq!((ia.t1, ia.t2), (0, 0));
    // Someone else's address too.
    let rebind = with_ia(msg(MessageType::Rebind, 2), Some(ip("fd77::1:0")));
    let ia = ia_na(&reply(&send(&server, &rebind))).clone();
    assert_eq!(addresses(&ia), [(ip("fd77::1:0"), 0, 0)]);
    // A non-authoritative server stays silent.
    let rebind = with_ia(msg(MessageType::Rebind, 2), Some(ip("fd99::5")));
    let quiet = server_with(ServerConfig {
        mode: Mode::NonAuthoritative,
        ..config()
    });
    assert!(matches!(
        send(&quiet, &rebind).event,
        Event::Ignored(Ignored::NotAuthoritative(_))
    ));
}

#[test]
fn decline_quarantines() {
    let server = server();
    let r = reply(&send(
        &server,
        &with(
            with_ia(msg(MessageType::Solicit, 1), None),
            DhcpOption::RapidCommit,
        ),
    ));
    let leased = addresses(ia_na(&r))[0].0;
    let decline = ours(with_ia(msg(MessageType::Decline, 1), Some(leased)));
    let handled = send(&server, &decline);
    assert_eq!(
        handled.event,
        Event::Declined {
            client: ClientKey::ClientId(duid(1)),
            ip: IpAddr::V6(leased)
        }
    );
    assert_eq!(status_in(reply(&handled).opts()), Some(Status::Success));
    let other = reply(&send(&server, &with_ia(msg(MessageType::Solicit, 2), None)));
    assert_eq!(addresses(ia_na(&other))[0].0, ip("fd77::1:1"));
}

#[test]
fn proxy_mode_answers_information_requests_only() {
    let server = server_with(ServerConfig {
        mode: Mode::Proxy,
        ..config()
    });
    assert!(matches!(
        send(&server, &with_ia(msg(MessageType::Solicit, 1), None)).event,
        Event::Ignored(Ignored::NotAuthoritative(_))
    ));
    let info = with(
        msg(MessageType::InformationRequest, 1),
        DhcpOption::ClientArchType(vec![7.into()]),
    );
    let handled = send(&server, &info);
    assert!(matches!(
        &handled.event,
        Event::Informed { boot: Some(_), .. }
    ));
    assert_eq!(
        raw(&reply(&handled), 59).unwrap(),
        b"tftp://[fd77::1]/bootx64.efi"
    );
}

#[test]
fn durable_replies_carry_a_ticket() {
    let t = topology();
    let durable = Durable::with_topology(MemoryStore::new(), t.clone()).unwrap();
    let server = Server6::new(config(), t, durable).unwrap();
    let advertise = send(&server, &with_ia(msg(MessageType::Solicit, 1), None));
    assert!(
        advertise.ticket.is_none(),
        "an Advertise acknowledges nothing"
    );
    let offered = addresses(ia_na(&reply(&advertise)))[0].0;
    let handled = send(
        &server,
        &ours(with_ia(msg(MessageType::Request, 1), Some(offered))),
    );
    let ticket = handled.ticket.expect("a Reply waits for its commit");
    server.leases().wait(ticket).unwrap();
    let leased = server
        .leases()
        .read(|ipam| ipam.leases().map(|r| r.ip).collect::<Vec<_>>());
    assert_eq!(leased, [IpAddr::V6(offered)]);
}
