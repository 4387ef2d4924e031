//! The DHCPv6 server engine: exhaustion, malformed and misplaced messages, unsupported IAs,
//! off-link requests, decline, proxy mode and durable replies (harness in `server6`).

use std::net::IpAddr;

use maas_ipam::{Durable, MemoryStore};
use maas_net::ClientKey;
use maas_pxe::dhcp::server::{Event, Ignored, Mode, Received6, Server6, ServerConfig};
use maas_pxe::dhcp::v6;
use maas_pxe::dhcproto::v6::{
    DhcpOption, DhcpOptions, IANA, IAPD, IATA, MessageType, OptionCode, Status,
};

use crate::server6::*;

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
            client: ClientKey::client_id(duid(1)),
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
