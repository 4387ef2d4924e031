//! Property tests: encoding then decoding gives every valid message back, and decoding any
//! bytes at all gives a message or an error, never a panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;
use maas_pxe::dhcp::{BootClient, BootConfig, VendorClass, v4, v6};
use maas_pxe::dhcproto::Name;
use maas_pxe::dhcproto::v4::relay::{RelayAgentInformation, RelayFlags, RelayInfo};
use maas_pxe::dhcproto::v4::{
    DhcpOption, Flags, HType, Message, Opcode, OptionCode, UnknownOption,
};
use maas_pxe::dhcproto::v6 as dv6;
use proptest::collection::vec;
use proptest::prelude::*;

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn ipv4s(max: usize) -> impl Strategy<Value = Vec<Ipv4Addr>> {
    vec(ipv4(), 1..max)
}

fn name() -> impl Strategy<Value = Name> {
    vec("[a-z0-9][a-z0-9-]{0,14}", 1..4)
        .prop_map(|labels| Name::from_ascii(format!("{}.", labels.join("."))).unwrap())
}

fn bytes(min: usize, max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), min..max)
}

/// A vendor class option 60 accepts: a PXE or HTTP class, or other bytes.
fn vendor_class() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (any::<bool>(), any::<u16>(), 0u16..1000, 0u16..1000).prop_map(
            |(http, arch, major, minor)| {
                let prefix = if http { "HTTPClient" } else { "PXEClient" };
                format!("{prefix}:Arch:{arch:05}:UNDI:{major:03}{minor:03}").into_bytes()
            }
        ),
        bytes(1, 60).prop_filter("a valid class", |b| VendorClass::parse(b).is_ok()),
    ]
}

fn relay() -> impl Strategy<Value = RelayAgentInformation> {
    let info = prop_oneof![
        bytes(0, 60).prop_map(RelayInfo::AgentCircuitId),
        bytes(0, 60).prop_map(RelayInfo::AgentRemoteId),
        bytes(0, 60).prop_map(RelayInfo::SubscriberId),
        ipv4().prop_map(RelayInfo::LinkSelection),
        ipv4().prop_map(RelayInfo::ServerIdentifierOverride),
        any::<u8>().prop_map(|f| RelayInfo::RelayAgentFlags(RelayFlags::new(f))),
    ];
    vec(info, 1..5).prop_map(|infos| {
        let mut r = RelayAgentInformation::default();
        for i in infos {
            r.insert(i);
        }
        r
    })
}

fn route() -> impl Strategy<Value = (Ipv4Net, Ipv4Addr)> {
    (ipv4(), 0u8..=32, ipv4())
        .prop_map(|(dest, prefix, gw)| (Ipv4Net::new(dest, prefix).unwrap().trunc(), gw))
}

/// Options in dhcproto's typed form (or raw, for codes it does not know), each with a value
/// its option allows; several long enough to be split.
fn option() -> impl Strategy<Value = DhcpOption> {
    prop_oneof![
        ipv4().prop_map(DhcpOption::SubnetMask),
        ipv4s(80).prop_map(DhcpOption::Router),
        ipv4s(5).prop_map(DhcpOption::DomainNameServer),
        "\\PC{1,150}".prop_map(DhcpOption::Hostname),
        "[a-z.]{1,40}".prop_map(DhcpOption::DomainName),
        any::<u16>().prop_map(DhcpOption::InterfaceMtu),
        any::<u32>().prop_map(DhcpOption::AddressLeaseTime),
        any::<u32>().prop_map(DhcpOption::Renewal),
        any::<u16>().prop_map(DhcpOption::MaxMessageSize),
        any::<u8>().prop_map(|t| DhcpOption::MessageType(t.into())),
        ipv4().prop_map(DhcpOption::ServerIdentifier),
        bytes(1, 40).prop_map(|v| DhcpOption::ParameterRequestList(
            v.into_iter().map(OptionCode::from).collect()
        )),
        vendor_class().prop_map(DhcpOption::ClassIdentifier),
        bytes(2, 40).prop_map(DhcpOption::ClientIdentifier),
        any::<u16>().prop_map(|a| DhcpOption::ClientSystemArchitecture(a.into())),
        any::<(u8, u8, u8)>().prop_map(|(t, a, b)| DhcpOption::ClientNetworkInterface(t, a, b)),
        any::<[u8; 16]>().prop_map(|u| {
            let mut v = vec![0];
            v.extend(u);
            DhcpOption::ClientMachineIdentifier(v)
        }),
        bytes(1, 300).prop_map(DhcpOption::UserClass),
        bytes(1, 600).prop_map(DhcpOption::VendorExtensions),
        bytes(1, 200).prop_map(DhcpOption::BootfileName),
        bytes(1, 64).prop_map(DhcpOption::TFTPServerName),
        ipv4().prop_map(DhcpOption::TFTPServerAddress),
        vec(name(), 1..25).prop_map(DhcpOption::DomainSearch),
        relay().prop_map(DhcpOption::RelayAgentInformation),
        Just(DhcpOption::RapidCommit),
        any::<bool>().prop_map(DhcpOption::IpForwarding),
        vec(route(), 1..30).prop_map(DhcpOption::ClasslessStaticRoute),
        (224u8..=254, bytes(0, 400))
            .prop_map(|(c, d)| DhcpOption::Unknown(UnknownOption::new(c.into(), d))),
    ]
}

/// A C-string header field's content: no NUL.
fn c_field(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(vec(1u8..=255, 1..=max))
}

prop_compose! {
    fn message()(
        opcode in any::<u8>(),
        htype in any::<u8>(),
        chaddr in bytes(0, 17),
        hops in any::<u8>(),
        xid in any::<u32>(),
        secs in any::<u16>(),
        flags in any::<u16>(),
        addrs in any::<[[u8; 4]; 4]>(),
        sname in c_field(64),
        fname in c_field(128),
        opts in vec(option(), 0..12),
    ) -> Message {
        let [ci, yi, si, gi] = addrs.map(Ipv4Addr::from);
        let mut m = Message::new_with_id(xid, ci, yi, si, gi, &chaddr);
        m.set_opcode(Opcode::from(opcode))
            .set_htype(HType::from(htype))
            .set_hops(hops)
            .set_secs(secs)
            .set_flags(Flags::new(flags));
        if let Some(s) = sname {
            m.set_sname(&s);
        }
        if let Some(f) = fname {
            m.set_fname(&f);
        }
        for o in opts {
            m.opts_mut().insert(o);
        }
        m
    }
}

fn v6_option() -> impl Strategy<Value = dv6::DhcpOption> {
    use dv6::DhcpOption as O;
    let status = (any::<u16>(), "\\PC{0,30}").prop_map(|(s, msg)| {
        O::StatusCode(dv6::StatusCode {
            status: s.into(),
            msg,
        })
    });
    let ia_addr = (
        any::<[u8; 16]>(),
        any::<u32>(),
        any::<u32>(),
        proptest::option::of(status.clone()),
    )
        .prop_map(|(a, p, v, st)| {
            O::IAAddr(dv6::IAAddr {
                addr: Ipv6Addr::from(a),
                preferred_life: p,
                valid_life: v,
                opts: st.into_iter().collect(),
            })
        });
    let ntp = prop_oneof![
        any::<[u8; 16]>()
            .prop_filter("unicast", |a| a[0] != 0xff)
            .prop_map(|a| dv6::NtpSuboption::ServerAddress(a.into())),
        any::<[u8; 15]>().prop_map(|a| {
            let mut b = [0xffu8; 16];
            b[1..].copy_from_slice(&a);
            dv6::NtpSuboption::MulticastAddress(b.into())
        }),
        name().prop_map(dv6::NtpSuboption::FQDN),
    ];
    prop_oneof![
        bytes(3, 131).prop_map(O::ClientId),
        bytes(3, 131).prop_map(O::ServerId),
        any::<u16>().prop_map(O::ElapsedTime),
        any::<u8>().prop_map(O::Preference),
        Just(O::RapidCommit),
        Just(O::ReconfAccept),
        vec(bytes(0, 20), 1..4).prop_map(|data| O::UserClass(dv6::UserClass { data })),
        (any::<u32>(), vec(vendor_class(), 1..3))
            .prop_map(|(num, data)| O::VendorClass(dv6::VendorClass { num, data })),
        vec(any::<u16>(), 1..5)
            .prop_map(|a| O::ClientArchType(a.into_iter().map(Into::into).collect())),
        vec(any::<u16>(), 0..8).prop_map(|c| O::ORO(dv6::ORO {
            opts: c.into_iter().map(Into::into).collect()
        })),
        vec(any::<[u8; 16]>(), 1..4)
            .prop_map(|a| O::DomainNameServers(a.into_iter().map(Into::into).collect())),
        vec(name(), 1..5).prop_map(O::DomainSearchList),
        any::<[u8; 16]>().prop_map(|a| O::ServerUnicast(a.into())),
        bytes(1, 30).prop_map(O::InterfaceId),
        status,
        vec(ntp, 1..4).prop_map(O::NtpServer),
        (any::<(u8, u8, u8, u64)>(), bytes(0, 20)).prop_map(
            |((proto, algo, rdm, replay_detection), info)| {
                O::Authentication(dv6::Authentication {
                    proto,
                    algo,
                    rdm,
                    replay_detection,
                    info,
                })
            }
        ),
        (any::<(u32, u32, u32)>(), vec(ia_addr, 0..3)).prop_map(|((id, t1, t2), addrs)| {
            O::IANA(dv6::IANA {
                id,
                t1,
                t2,
                opts: addrs.into_iter().collect(),
            })
        }),
        (100u16..=140, bytes(0, 80))
            .prop_map(|(c, d)| O::Unknown(dv6::UnknownOption::new(c.into(), d))),
    ]
}

prop_compose! {
    fn v6_message()(
        kind in any::<u8>().prop_filter("not a relay message", |t| !matches!(t, 12 | 13)),
        xid in any::<[u8; 3]>(),
        opts in vec(v6_option(), 0..10),
    ) -> dv6::Message {
        let mut m = dv6::Message::new_with_id(kind.into(), xid);
        for o in opts {
            m.opts_mut().insert(o);
        }
        m
    }
}

/// A DHCPv4 header with the magic cookie, then options made of arbitrary codes and lengths:
/// bytes that get past the header checks far more often than uniform noise.
fn v4_noise() -> impl Strategy<Value = Vec<u8>> {
    (
        bytes(236, 237),
        vec((any::<u8>(), bytes(0, 40), any::<bool>()), 0..20),
        bytes(0, 8),
    )
        .prop_map(|(mut b, opts, tail)| {
            b[2] %= 17;
            b.extend_from_slice(&v4::MAGIC);
            for (code, value, lie) in opts {
                b.push(code);
                let len = if lie {
                    value.len() as u8 ^ 1
                } else {
                    value.len() as u8
                };
                b.push(len);
                b.extend_from_slice(&value);
            }
            b.extend_from_slice(&tail);
            b
        })
}

fn v6_noise() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        bytes(3, 4),
        vec((0u16..70, bytes(0, 40), any::<bool>()), 0..12),
    )
        .prop_map(|(kind, xid, opts)| {
            let mut b = vec![kind % 14];
            b.extend_from_slice(&xid);
            if b[0] >= 12 {
                b.extend_from_slice(&[0; 30]);
            }
            for (code, value, lie) in opts {
                b.extend_from_slice(&code.to_be_bytes());
                let len = value.len() as u16 ^ u16::from(lie);
                b.extend_from_slice(&len.to_be_bytes());
                b.extend_from_slice(&value);
            }
            b
        })
}

/// What the fuzz targets check, for inputs that decode.
fn decoded_v4_round_trips(bytes: &[u8]) {
    if let Ok(p) = v4::decode(bytes) {
        let again = v4::encode_to_vec(p.message()).expect("a decoded message encodes");
        assert_eq!(
            v4::decode(&again).expect("our encoding decodes").message(),
            p.message()
        );
        let config = BootConfig::default();
        let c = config.classify(BootClient::from_v4(&p), &crate::subnet());
        if let Some(boot) =
            maas_pxe::dhcp::build_boot_options(&c, &config, Ipv4Addr::new(10, 77, 0, 1).into())
        {
            let mut reply = maas_pxe::dhcp::reply_to(
                &p,
                dhcproto::v4::MessageType::Offer,
                Ipv4Addr::new(10, 77, 0, 1),
            );
            boot.apply_v4(&mut reply, &p.requested());
            let sent = reply.to_packet().expect("a reply decodes");
            assert_eq!(sent.xid(), p.xid());
        }
    }
}

fn decoded_v6_round_trips(bytes: &[u8]) {
    if let Ok(p) = v6::decode(bytes) {
        let again = v6::encode_to_vec(&p).expect("a decoded message encodes");
        assert_eq!(v6::decode(&again).expect("our encoding decodes"), p);
        let _ = BootClient::from_v6(p.message());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn v4_messages_round_trip(m in message()) {
        let bytes = v4::encode_to_vec(&m).unwrap();
        prop_assert!(bytes.len() >= v4::MIN_LEN);
        let back = v4::decode(&bytes).unwrap();
        prop_assert_eq!(back.message(), &m);
    }

    #[test]
    fn v6_messages_round_trip(m in v6_message()) {
        let bytes = v6::encode_message_to_vec(&m).unwrap();
        let back = v6::decode(&bytes).unwrap();
        prop_assert_eq!(back.message(), &m);
    }

    /// Where dhcproto writes an option right (not user or vendor classes, whose lengths 0.15
    /// gets wrong), our encoding is byte for byte its own: the IA options written without its
    /// intermediate buffers among them.
    #[test]
    fn v6_messages_encode_as_dhcproto_does(m in v6_message()) {
        use maas_pxe::dhcproto::Encodable;
        let classes = m.opts().iter().any(|o| {
            matches!(o, dv6::DhcpOption::UserClass(_) | dv6::DhcpOption::VendorClass(_))
        });
        prop_assume!(!classes);
        prop_assert_eq!(v6::encode_message_to_vec(&m).unwrap(), m.to_vec().unwrap());
    }

    #[test]
    fn v6_relays_round_trip(m in v6_message(), hops in 1usize..4) {
        let mut bytes = v6::encode_message_to_vec(&m).unwrap();
        for hop in 0..hops {
            let mut relay = vec![12, hop as u8];
            relay.extend_from_slice(&[0xfd; 32]);
            relay.extend_from_slice(&9u16.to_be_bytes());
            relay.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            relay.extend_from_slice(&bytes);
            bytes = relay;
        }
        let p = v6::decode(&bytes).unwrap();
        prop_assert_eq!(p.message(), &m);
        prop_assert_eq!(p.relays().len(), hops);
        prop_assert_eq!(v6::encode_to_vec(&p).unwrap(), bytes);
    }

    #[test]
    fn v4_any_bytes_decode_or_fail(b in bytes(0, 1500)) {
        decoded_v4_round_trips(&b);
    }

    #[test]
    fn v4_noisy_options_decode_or_fail(b in v4_noise()) {
        decoded_v4_round_trips(&b);
    }

    #[test]
    fn v6_any_bytes_decode_or_fail(b in bytes(0, 600)) {
        decoded_v6_round_trips(&b);
    }

    #[test]
    fn v6_noisy_options_decode_or_fail(b in v6_noise()) {
        decoded_v6_round_trips(&b);
    }

    #[test]
    fn mutated_real_requests_decode_or_fail(
        file in 0..crate::testdata::FILES.len(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let (name, build) = crate::testdata::FILES[file];
        let mut b = build();
        for (at, byte) in edits {
            let i = at.index(b.len());
            b[i] = byte;
        }
        if name.ends_with("6.bin") {
            decoded_v6_round_trips(&b);
        } else {
            decoded_v4_round_trips(&b);
        }
    }
}
