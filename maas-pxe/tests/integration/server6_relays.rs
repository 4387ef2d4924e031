//! The DHCPv6 server engine: nested relays, server identifiers, Confirm,
//! Information-request and boot-file URLs (harness in `server6`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Mutex;

use maas_ipam::Ipam;
use maas_net::{ClientKey, Mac};
use maas_pxe::dhcp::server::{Destination, Duid, Event, Ignored, Server6, ServerConfig};
use maas_pxe::dhcp::v6;
use maas_pxe::dhcproto::v6::{DhcpOption, MessageType, OptionCode, Status, VendorClass};

use crate::server6::*;
use crate::testdata::load;

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
            client: ClientKey::client_id(duid(1)),
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
