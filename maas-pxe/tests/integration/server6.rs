//! The DHCPv6 server engine on maas-ipam leases: the harness, and the Solicit/Advertise/
//! Request/Reply exchange, renewals, release, lifetimes and rapid commit (relays and boot URLs
//! are in `server6_relays`, refusals and failures in `server6_refusals`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Mutex;

use maas_ipam::Ipam;
use maas_net::{ClientKey, IpRange, IpRangeKind, Mac, Subnet, Timestamp, Topology, Vlan};
use maas_pxe::dhcp::server::{
    Destination, Duid, Event, Handled, Leases, Received6, Server6, ServerConfig,
};
use maas_pxe::dhcp::v6;
use maas_pxe::dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, IANA, Message, MessageType, ORO, OptionCode, RelayMessage,
    Status,
};

pub(crate) const NOW: Timestamp = Timestamp(1_800_000_000);
/// The server's address on the clients' link.
pub(crate) const LOCAL: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
pub(crate) const SERVER_MAC: Mac = Mac::new([0x52, 0x54, 0, 0x77, 0, 1]);

pub(crate) fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// fd77::/64 on the default VLAN (DHCP on, pool fd77::1:0-fd77::1:ff, DNS fd77::2),
/// fd78::/64 on VLAN 5 relayed to it (pool fd78::1:0-fd78::1:ff) and fd79::/64 on VLAN 9
/// with DHCP off.
pub(crate) fn topology() -> Topology {
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

pub(crate) fn config() -> ServerConfig {
    ServerConfig {
        duid: Some(Duid::LinkLayer { mac: SERVER_MAC }),
        domain_search: vec!["maas".into(), "example.com".into()],
        ..ServerConfig::default()
    }
}

pub(crate) fn server_with(config: ServerConfig) -> Server6<Mutex<Ipam>> {
    let t = topology();
    Server6::new(config, t.clone(), Mutex::new(Ipam::new(t))).unwrap()
}

pub(crate) fn server() -> Server6<Mutex<Ipam>> {
    server_with(config())
}

pub(crate) fn server_duid() -> Vec<u8> {
    Duid::LinkLayer { mac: SERVER_MAC }.to_bytes()
}

/// A client's DUID-LL.
pub(crate) fn duid(last: u8) -> Vec<u8> {
    vec![0, 3, 0, 1, 0x52, 0x54, 0, 0x77, 2, last]
}

pub(crate) fn client_addr(last: u8) -> SocketAddrV6 {
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
pub(crate) fn msg(kind: MessageType, last: u8) -> Message {
    let mut m = Message::new_with_id(kind, [0x77, 0, last]);
    m.opts_mut().insert(DhcpOption::ClientId(duid(last)));
    m.opts_mut().insert(DhcpOption::ElapsedTime(0));
    m
}

pub(crate) fn with_ia(mut m: Message, addr: Option<Ipv6Addr>) -> Message {
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

pub(crate) fn with(mut m: Message, opt: DhcpOption) -> Message {
    m.opts_mut().insert(opt);
    m
}

pub(crate) fn oro(codes: &[u16]) -> DhcpOption {
    DhcpOption::ORO(ORO {
        opts: codes.iter().map(|&c| OptionCode::from(c)).collect(),
    })
}

pub(crate) fn ours(m: Message) -> Message {
    with(m, DhcpOption::ServerId(server_duid()))
}

pub(crate) fn send_bytes(
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

pub(crate) fn send_at<L: Leases>(
    server: &Server6<L>,
    m: &Message,
    now: Timestamp,
) -> Handled<L::Ticket> {
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

pub(crate) fn send<L: Leases>(server: &Server6<L>, m: &Message) -> Handled<L::Ticket> {
    send_at(server, m, NOW)
}

pub(crate) fn reply<T>(handled: &Handled<T>) -> Message {
    let transmit = handled.transmit.as_ref().expect("an answer");
    v6::decode(&transmit.bytes).unwrap().message().clone()
}

pub(crate) fn ia_na(m: &Message) -> &IANA {
    match m.opts().get(OptionCode::IANA) {
        Some(DhcpOption::IANA(ia)) => ia,
        other => panic!("no IA_NA: {other:?}"),
    }
}

pub(crate) fn addresses(ia: &IANA) -> Vec<(Ipv6Addr, u32, u32)> {
    ia.opts
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAAddr(a) => Some((a.addr, a.preferred_life, a.valid_life)),
            _ => None,
        })
        .collect()
}

pub(crate) fn status_in(opts: &DhcpOptions) -> Option<Status> {
    match opts.get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(s)) => Some(s.status),
        _ => None,
    }
}

pub(crate) fn raw(m: &Message, code: u16) -> Option<Vec<u8>> {
    m.opts().iter().find_map(|o| match o {
        DhcpOption::Unknown(u) if u16::from(u.code()) == code => Some(u.data().to_vec()),
        _ => None,
    })
}

pub(crate) fn search_list(m: &Message) -> Vec<String> {
    match m.opts().get(OptionCode::DomainSearchList) {
        Some(DhcpOption::DomainSearchList(names)) => names.iter().map(|n| n.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// A Relay-forward around `inner`, with an Interface-ID when given.
pub(crate) fn relay_forward(
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

pub(crate) fn interface_id(relay: &RelayMessage) -> Option<Vec<u8>> {
    match relay.opts().get(OptionCode::InterfaceId) {
        Some(DhcpOption::InterfaceId(id)) => Some(id.clone()),
        _ => None,
    }
}

#[test]
pub(crate) fn solicit_request_renew_release() {
    let server = server();
    let client = ClientKey::client_id(duid(1));

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
pub(crate) fn preferred_lifetime_and_t1_t2() {
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
pub(crate) fn rapid_commit() {
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
