//! The properties the `maas-pxe` fuzz targets check.
//!
//! Each function takes the raw input bytes and panics when a documented property of the DHCP
//! layer does not hold for them; inputs the decoders refuse are fine. The fuzz targets in
//! `fuzz_targets/` call these, and the `fuzz_corpus` module of `maas-pxe/tests/integration`
//! includes this file to replay the committed corpora under `cargo test`.
//!
//! `check_pxe_classify_reply` reads two bytes of setup before the datagram: bits 0-10 disable
//! the boot methods of `BootArchitecture::ALL` with those indexes on the subnet, bit 13 drops
//! the fallback methods, bit 14 asks for a ProxyDHCP answer, and bit 15 makes the datagram a
//! DHCPv6 one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use maas_net::{BootArchitecture, Subnet, VlanId};
use maas_pxe::dhcp::{
    ArchSource, BootClient, BootConfig, Classification, LeaseTimes, NetworkOptions, NoBoot,
    ReplyOptions, build_boot_options, build_proxy_boot_options, reply_to, v4, v6,
};
use maas_pxe::dhcproto::v4::{Message, MessageType};
use maas_pxe::dhcproto::v6 as dv6;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);

/// A DHCPv4 datagram decodes strictly or not at all; a decoded message encodes, and decoding
/// that gives the same message back; the raw view and the typed view agree on the header.
pub fn check_dhcp4_decode(data: &[u8]) {
    let Ok(packet) = v4::decode(data) else {
        return;
    };
    let message = packet.message();
    assert_eq!(packet.xid(), message.xid());
    assert_eq!(packet.chaddr(), message.chaddr());
    assert_eq!(packet.file(), message.fname());
    assert_eq!(packet.sname(), message.sname());
    assert_eq!(packet.message_type(), message.opts().msg_type());
    let bytes = v4::encode_to_vec(message).expect("a decoded message encodes");
    let again = v4::decode(&bytes).expect("the encoding of a decoded message decodes");
    assert_eq!(again.message(), message, "decode, encode, decode");
    assert_eq!(packet.clone().into_message(), *message);
}

/// A DHCPv6 datagram decodes strictly or not at all; a decoded message (relayed or not)
/// encodes, and decoding that gives the same message back.
pub fn check_dhcp6_decode(data: &[u8]) {
    let Ok(packet) = v6::decode(data) else {
        return;
    };
    let bytes = v6::encode_to_vec(&packet).expect("a decoded message encodes");
    let again = v6::decode(&bytes).expect("the encoding of a decoded message decodes");
    assert_eq!(again, packet, "decode, encode, decode");
    let _ = BootClient::from_v6(packet.message());
}

/// Classifying any decodable request and building its answer never panics; the choice obeys
/// the table, the subnet and the iPXE rules; the answer encodes and decodes.
pub fn check_pxe_classify_reply(data: &[u8]) {
    let [b0, b1, datagram @ ..] = data else {
        return;
    };
    let setup = u16::from_le_bytes([*b0, *b1]);
    let disabled: Vec<BootArchitecture> = BootArchitecture::ALL
        .into_iter()
        .enumerate()
        .filter(|(i, _)| setup & (1 << i) != 0)
        .map(|(_, a)| a)
        .collect();
    let mut config = BootConfig::default();
    if setup & (1 << 13) != 0 {
        config.fallback = None;
        config.fallback_v6 = None;
    }
    let proxy = setup & (1 << 14) != 0;
    let subnet = Subnet {
        gateway_ip: Some(IpAddr::V4(SERVER)),
        dns_servers: vec![IpAddr::V4(SERVER)],
        disabled_boot_architectures: disabled.clone(),
        ..Subnet::new("10.77.0.0/24".parse().expect("a CIDR"), VlanId::new(0))
    };
    if setup & (1 << 15) != 0 {
        reply_v6(&config, &subnet, datagram);
    } else {
        reply_v4(&config, &subnet, datagram, proxy);
    }
}

fn reply_v4(config: &BootConfig, subnet: &Subnet, datagram: &[u8], proxy: bool) {
    let Ok(request) = v4::decode(datagram) else {
        return;
    };
    let classification = config.classify(BootClient::from_v4(&request), subnet);
    check_choice(config, &subnet.disabled_boot_architectures, &classification);
    let boot = if proxy {
        build_proxy_boot_options(&classification, config, IpAddr::V4(SERVER))
    } else {
        build_boot_options(&classification, config, IpAddr::V4(SERVER))
    };
    assert_eq!(boot.is_some(), classification.architecture().is_some());

    let requested = request.requested();
    let mut net = NetworkOptions::for_subnet(subnet, 9000);
    net.set_domain("maas").expect("a valid domain");
    let fill = |reply: &mut dyn ReplyOptions| {
        if !proxy {
            LeaseTimes::new(600).apply(reply);
            net.apply(reply, &requested);
        }
        if let Some(boot) = &boot {
            boot.apply_v4(reply, &requested);
        }
    };
    let mut offer = reply_to(&request, MessageType::Offer, SERVER);
    fill(&mut offer);
    let sent = offer.to_packet().expect("our reply decodes");
    assert_eq!(sent.xid(), request.xid());
    assert_eq!(sent.chaddr(), request.chaddr());
    assert_eq!(sent.message_type(), Some(MessageType::Offer));
    assert_eq!(sent.option(54), Some(&SERVER.octets()[..]));
    assert_eq!(sent.option(82), request.option(82), "option 82 echoed");
    if let Some(boot) = &boot {
        let file = boot.boot_file.as_bytes();
        assert!(sent.file() == Some(file) || sent.option(67) == Some(file));
        assert_eq!(sent.siaddr(), SERVER);
    }

    // The same builders on a dhcproto message, through the dhcproto encoder.
    let mut message = Message::new_with_id(
        request.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        request.giaddr(),
        request.chaddr(),
    );
    fill(&mut message);
    let bytes = v4::encode_to_vec(&message).expect("a built message encodes");
    let back = v4::decode(&bytes).expect("a built message decodes");
    assert_eq!(back.message(), &message);
    for (code, value) in sent.options() {
        if !matches!(code, 53 | 54 | 61 | 82) {
            assert_eq!(back.option(code), Some(value), "option {code} differs");
        }
    }
}

fn reply_v6(config: &BootConfig, subnet: &Subnet, datagram: &[u8]) {
    let Ok(request) = v6::decode(datagram) else {
        return;
    };
    let message = request.message();
    let classification = config.classify(BootClient::from_v6(message), subnet);
    check_choice(config, &subnet.disabled_boot_architectures, &classification);
    let Some(boot) = build_boot_options(&classification, config, IpAddr::V6(SERVER6)) else {
        return;
    };
    assert_eq!(boot.next_server, None, "no IPv4 next server for DHCPv6");
    let mut advertise = dv6::Message::new_with_id(dv6::MessageType::Advertise, message.xid());
    for o in boot.v6_options() {
        advertise.opts_mut().insert(o);
    }
    let bytes = v6::encode_message_to_vec(&advertise).expect("an answer encodes");
    let back = v6::decode(&bytes).expect("an answer decodes");
    assert_eq!(back.message(), &advertise);
}

/// The rules of [`BootConfig::classify`].
fn check_choice(config: &BootConfig, disabled: &[BootArchitecture], c: &Classification) {
    let client = &c.client;
    let listed: Vec<BootArchitecture> = client
        .architectures
        .iter()
        .filter_map(|&code| BootArchitecture::from_arch_code(code))
        .collect();
    if client.arch_source == ArchSource::None {
        assert!(client.architectures.is_empty());
    }
    match &c.choice {
        Ok(arch) => {
            assert!(!disabled.contains(arch), "{arch} is disabled");
            let method = config
                .methods
                .get(arch)
                .expect("a chosen method is in the table");
            assert!(!(client.ipxe && method.loads_ipxe), "iPXE sent to iPXE");
            if *arch == BootArchitecture::Ipxe {
                assert!(client.ipxe, "only iPXE clients get the iPXE script");
            } else {
                let ipxe_served = config.methods.contains_key(&BootArchitecture::Ipxe)
                    && !disabled.contains(&BootArchitecture::Ipxe);
                assert!(
                    !(client.ipxe && ipxe_served),
                    "an iPXE client gets the script"
                );
            }
            // The first usable listed method wins.
            let first = listed.iter().find(|a| {
                config
                    .methods
                    .get(a)
                    .is_some_and(|m| !(client.ipxe && m.loads_ipxe))
                    && !disabled.contains(a)
            });
            if let Some(first) = first
                && *arch != BootArchitecture::Ipxe
            {
                assert_eq!(arch, first);
            }
        }
        Err(NoBoot::Disabled { disabled: off }) => {
            assert!(!off.is_empty() && off.iter().all(|a| disabled.contains(a)));
        }
        Err(NoBoot::NoArchitecture) => assert!(client.architectures.is_empty()),
        Err(NoBoot::Unsupported { codes }) => assert_eq!(codes, &client.architectures),
        Err(_) => {}
    }
}
