//! Answers: what goes into an OFFER for each kind of client, and the parameter request list
//! rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use maas_net::BootArchitecture as A;
use maas_pxe::dhcp::{
    BootConfig, BootMethod, BootOptions, BootServers, LeaseTimes, MenuItem, MenuPrompt,
    NetworkOptions, PxeVendorOptions, RequestedOptions, build_boot_options,
    build_proxy_boot_options, reply_to, v4, v6,
};
use maas_pxe::dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode, UnknownOption};
use maas_pxe::dhcproto::v6 as dv6;

use crate::subnet;
use crate::testdata::load;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const YIADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

/// The OFFER this crate's pieces build for a testdata request, decoded back from its bytes.
fn offer_with(name: &str, config: &BootConfig, mtu: u32) -> (v4::Packet, Option<BootOptions>) {
    let request = v4::decode(&load(name)).unwrap();
    let requested = request.requested();
    let classification = config.classify(maas_pxe::dhcp::BootClient::from_v4(&request), &subnet());
    let mut offer = reply_to(&request, MessageType::Offer, SERVER);
    offer.set_yiaddr(YIADDR);
    LeaseTimes::new(600).apply(&mut offer);
    let mut net = NetworkOptions::for_subnet(&subnet(), mtu);
    net.set_domain("maas")
        .unwrap()
        .set_search(["maas"])
        .unwrap();
    net.apply(&mut offer, &requested);
    let boot = build_boot_options(&classification, config, IpAddr::V4(SERVER));
    if let Some(boot) = &boot {
        boot.apply_v4(&mut offer, &requested);
    }
    let decoded = offer.to_packet().unwrap();
    // The same builders filling a dhcproto message give the same options.
    let mut message = decoded.message().clone();
    message.opts_mut().clear();
    LeaseTimes::new(600).apply(&mut message);
    net.apply(&mut message, &requested);
    if let Some(boot) = &boot {
        boot.apply_v4(&mut message, &requested);
    }
    let typed = decoded.message().opts();
    for (code, opt) in message.opts().iter() {
        assert_eq!(typed.get(*code), Some(opt), "{name}: option {code:?}");
    }
    (decoded, boot)
}

fn offer(name: &str) -> v4::Packet {
    offer_with(name, &BootConfig::default(), 1500).0
}

fn text(p: &v4::Packet, code: u8) -> Option<String> {
    p.option(code)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn edk2_pxe_offer() {
    let o = offer("edk2-x64-pxe-discover.bin");
    let m = o.message();
    assert_eq!(m.opcode(), Opcode::BootReply);
    assert_eq!(o.message_type(), Some(MessageType::Offer));
    assert_eq!(m.yiaddr(), YIADDR);
    assert_eq!(m.siaddr(), SERVER);
    assert_eq!(m.fname(), Some(&b"bootx64.efi"[..]));
    assert!(
        m.flags().broadcast(),
        "the request's broadcast flag is kept"
    );
    assert_eq!(o.option(54), Some(&SERVER.octets()[..]));
    assert_eq!(o.option(51), Some(&600u32.to_be_bytes()[..]));
    assert_eq!(o.option(58), Some(&300u32.to_be_bytes()[..]));
    assert_eq!(o.option(59), Some(&525u32.to_be_bytes()[..]));
    assert_eq!(o.option(1), Some(&[255, 255, 255, 0][..]));
    assert_eq!(o.option(3), Some(&SERVER.octets()[..]));
    assert_eq!(
        o.option(6),
        Some(&[10, 77, 0, 2][..]),
        "IPv4 DNS servers only"
    );
    assert_eq!(text(&o, 15).as_deref(), Some("maas"));
    assert_eq!(text(&o, 60).as_deref(), Some("PXEClient"));
    assert_eq!(o.option(43), Some(&[6, 1, 8, 255][..]));
    assert_eq!(
        text(&o, 66).as_deref(),
        Some("10.77.0.1"),
        "edk2 asks for 66"
    );
    assert_eq!(
        text(&o, 67).as_deref(),
        Some("bootx64.efi"),
        "edk2 asks for 67"
    );
    for absent in [26, 119, 150, 209, 210, 211] {
        assert_eq!(o.option(absent), None, "option {absent}");
    }
    assert!(v4::encode_to_vec(o.message()).unwrap().len() <= 576);
}

#[test]
fn edk2_http_offer() {
    let o = offer("edk2-x64-http-discover.bin");
    let url = "http://10.77.0.1:5248/images/bootx64.efi";
    assert_eq!(o.file(), Some(url.as_bytes()));
    assert_eq!(text(&o, 67).as_deref(), Some(url));
    assert_eq!(text(&o, 60).as_deref(), Some("HTTPClient"));
    assert_eq!(o.option(43), None);
}

#[test]
fn ipxe_gets_the_script_with_next_server() {
    for name in [
        "ipxe-bios-discover.bin",
        "ipxe-bios-discover-rfc3004.bin",
        "udhcpc-user-class-ipxe-discover.bin",
    ] {
        let o = offer(name);
        assert_eq!(
            o.file(),
            Some(&b"http://10.77.0.1:5248/ipxe.cfg"[..]),
            "{name}"
        );
        assert_eq!(
            o.siaddr(),
            SERVER,
            "{name}: the script chains from ${{next-server}}"
        );
    }
}

#[test]
fn bios_pxe_gets_the_path_prefix_unasked() {
    let o = offer("udhcpc-arch-bios-discover.bin");
    assert_eq!(o.file(), Some(&b"lpxelinux.0"[..]));
    assert_eq!(text(&o, 210).as_deref(), Some("http://10.77.0.1:5248/"));
    // udhcpc did not ask for 66 or 67: the file travels in the header only.
    assert_eq!(o.option(66), None);
    assert_eq!(o.option(67), None);
    assert_eq!(o.option(60), None, "not a PXE client: no vendor class");
    assert_eq!(o.option(43), None);
    // ... nor for MTU or domain search; it did ask for 1, 3, 6 and 15.
    for code in [1, 3, 6, 15] {
        assert!(o.option(code).is_some(), "option {code}");
    }
}

#[test]
fn powernv_path_prefix_only_when_asked() {
    let config = BootConfig::default();
    let mut request = v4::decode(&load("udhcpc-arch-bios-discover.bin"))
        .unwrap()
        .into_message();
    request
        .opts_mut()
        .insert(DhcpOption::ClientSystemArchitecture(14.into()));
    let p = v4::decode(&v4::encode_to_vec(&request).unwrap()).unwrap();
    let cl = config.classify(maas_pxe::dhcp::BootClient::from_v4(&p), &subnet());
    assert_eq!(cl.architecture(), Some(A::Powernv));
    let boot = build_boot_options(&cl, &config, SERVER.into()).unwrap();
    let mut m = Message::default();
    boot.apply_v4(&mut m, &p.requested());
    assert_eq!(m.fname(), Some(&b"pxelinux.0"[..]));
    assert!(m.opts().get(OptionCode::Unknown(210)).is_none());
    boot.apply_v4(&mut m, &RequestedOptions::from_list(&[210]));
    assert_eq!(
        m.opts().get(OptionCode::Unknown(210)),
        Some(&DhcpOption::Unknown(UnknownOption::new(
            210.into(),
            b"ppc64el/".to_vec()
        )))
    );
}

#[test]
fn no_parameter_request_list_gets_everything() {
    let mut request = v4::decode(&load("udhcpc-arch-bios-discover.bin"))
        .unwrap()
        .into_message();
    request.opts_mut().remove(OptionCode::ParameterRequestList);
    let bytes = v4::encode_to_vec(&request).unwrap();
    let p = v4::decode(&bytes).unwrap();
    assert_eq!(p.requested(), RequestedOptions::ALL);
    let config = BootConfig::default();
    let cl = config.classify(maas_pxe::dhcp::BootClient::from_v4(&p), &subnet());
    let mut m = reply_to(&p, MessageType::Offer, SERVER);
    let mut net = NetworkOptions::for_subnet(&subnet(), 9000);
    net.set_search(["maas", "example.com"]).unwrap();
    net.apply(&mut m, &p.requested());
    build_boot_options(&cl, &config, SERVER.into())
        .unwrap()
        .apply_v4(&mut m, &p.requested());
    for code in [1, 3, 6, 26, 66, 67, 119, 150, 210] {
        assert!(m.get(code).is_some(), "option {code}");
    }
    assert_eq!(m.get(26), Some(&9000u16.to_be_bytes()[..]));
}

#[test]
fn mtu_only_when_not_1500() {
    let all = RequestedOptions::ALL;
    let mut m = Message::default();
    NetworkOptions::for_subnet(&subnet(), 1500).apply(&mut m, &all);
    assert!(!m.opts().contains(OptionCode::InterfaceMtu));
    NetworkOptions::for_subnet(&subnet(), 1450).apply(&mut m, &all);
    assert_eq!(
        m.opts().get(OptionCode::InterfaceMtu),
        Some(&DhcpOption::InterfaceMtu(1450))
    );
    // Asked for and not 1500, or not asked for.
    let mut m = Message::default();
    NetworkOptions::for_subnet(&subnet(), 9000).apply(&mut m, &RequestedOptions::from_list(&[1]));
    assert!(!m.opts().contains(OptionCode::InterfaceMtu));
}

#[test]
fn ipv6_subnet_gives_no_ipv4_options() {
    let s = maas_net::Subnet::new("fd77::/64".parse().unwrap(), maas_net::VlanId::new(0));
    let net = NetworkOptions::for_subnet(&s, 1500);
    assert_eq!(net, NetworkOptions::default());
}

#[test]
fn pxelinux_options() {
    let mut config = BootConfig::default();
    config.methods.insert(
        A::Pxe,
        BootMethod {
            config_file: Some("pxelinux.cfg/default".into()),
            reboot_time: Some(30),
            ..BootMethod::file("pxelinux.0").with_path_prefix("/tftpboot/", false)
        },
    );
    config.validate().unwrap();
    let (o, _) = offer_with("udhcpc-arch-bios-discover.bin", &config, 1500);
    assert_eq!(text(&o, 209).as_deref(), Some("pxelinux.cfg/default"));
    assert_eq!(o.option(211), Some(&30u32.to_be_bytes()[..]));
    assert_eq!(o.option(210), None, "not forced, not asked for");
}

#[test]
fn a_long_boot_file_goes_in_option_67() {
    let mut config = BootConfig::default();
    let long = format!(
        "http://{{server}}:5248/images/{}/bootx64.efi",
        "d".repeat(120)
    );
    config
        .methods
        .insert(A::UefiAmd64Http, BootMethod::file(long).http());
    let (o, boot) = offer_with("edk2-x64-http-discover.bin", &config, 1500);
    let boot = boot.unwrap();
    assert!(boot.boot_file.len() > 128);
    assert_eq!(o.file(), None);
    assert_eq!(o.option(67), Some(boot.boot_file.as_bytes()));
    let mut m = Message::default();
    boot.apply_v4(&mut m, &RequestedOptions::from_list(&[1]));
    assert!(
        m.opts().contains(OptionCode::BootfileName),
        "67 even unasked"
    );
}

#[test]
fn long_options_are_split_and_read_back() {
    let names: Vec<String> = (0..30)
        .map(|i| format!("rack{i:02}.zone-{i}.example.com"))
        .collect();
    let mut net = NetworkOptions::for_subnet(&subnet(), 1500);
    net.set_search(&names).unwrap();
    let request = v4::decode(&load("edk2-x64-pxe-discover.bin")).unwrap();
    let mut m = reply_to(&request, MessageType::Offer, SERVER);
    net.apply(&mut m, &RequestedOptions::ALL);
    let bytes = m.to_vec();
    let headers = count_option_headers(&bytes, 119);
    assert!(headers >= 2, "option 119 in {headers} pieces");
    let back = v4::decode(&bytes).unwrap();
    assert!(back.option(119).unwrap().len() > 255);
    assert_eq!(
        back.message().opts().get(OptionCode::DomainSearch),
        Some(&DhcpOption::DomainSearch(net.domain_search.clone()))
    );
    // The dhcproto encoder splits the same way.
    let again = v4::encode_to_vec(back.message()).unwrap();
    assert_eq!(count_option_headers(&again, 119), headers);
    assert_eq!(v4::decode(&again).unwrap().message(), back.message());

    let menu = PxeVendorOptions {
        discovery_control: Some(3),
        menu: (0..8)
            .map(|i| MenuItem {
                server_type: 0x8000 + i,
                description: format!("Boot entry number {i}"),
            })
            .collect(),
        boot_servers: vec![BootServers {
            server_type: 0x8000,
            addresses: vec![SERVER; 40],
        }],
        prompt: Some(MenuPrompt {
            timeout: 10,
            text: "Press F8 for the boot menu".into(),
        }),
        ..PxeVendorOptions::default()
    };
    let value = menu.encode().unwrap();
    assert!(value.len() > 255);
    let mut m = reply_to(&request, MessageType::Offer, SERVER);
    m.set(43, &value);
    let bytes = m.to_vec();
    assert_eq!(count_option_headers(&bytes, 43), 2);
    let back = v4::decode(&bytes).unwrap();
    assert_eq!(back.option(43), Some(&value[..]));
    assert_eq!(
        PxeVendorOptions::parse(back.option(43).unwrap()).unwrap(),
        menu
    );
}

/// How many times option `code` starts in the options field of an encoded message.
fn count_option_headers(bytes: &[u8], code: u8) -> usize {
    let mut i = v4::HEADER_LEN;
    let mut n = 0;
    while i < bytes.len() && bytes[i] != 255 {
        if bytes[i] == 0 {
            i += 1;
            continue;
        }
        n += usize::from(bytes[i] == code);
        i += 2 + usize::from(bytes[i + 1]);
    }
    n
}

#[test]
fn proxy_answers_carry_the_menu() {
    let config = BootConfig {
        proxy_vendor_options: PxeVendorOptions {
            discovery_control: Some(7),
            boot_servers: vec![BootServers {
                server_type: 0x8000,
                addresses: vec![SERVER],
            }],
            menu: vec![MenuItem {
                server_type: 0x8000,
                description: "MAAS".into(),
            }],
            prompt: Some(MenuPrompt {
                timeout: 0,
                text: "MAAS".into(),
            }),
            ..PxeVendorOptions::default()
        },
        ..BootConfig::default()
    };
    config.validate().unwrap();
    let request = v4::decode(&load("edk2-x64-pxe-discover.bin")).unwrap();
    let cl = config.classify(maas_pxe::dhcp::BootClient::from_v4(&request), &subnet());
    let boot = build_proxy_boot_options(&cl, &config, SERVER.into()).unwrap();
    let mut m = reply_to(&request, MessageType::Offer, SERVER);
    boot.apply_v4(&mut m, &request.requested());
    let p = m.to_packet().unwrap();
    assert_eq!(
        p.yiaddr(),
        Ipv4Addr::UNSPECIFIED,
        "a ProxyDHCP offer gives no address"
    );
    assert_eq!(text(&p, 60).as_deref(), Some("PXEClient"));
    assert_eq!(
        PxeVendorOptions::parse(p.option(43).unwrap()).unwrap(),
        config.proxy_vendor_options
    );
    assert_eq!(p.option(51), None);

    // Without proxy, the same client gets the plain answer.
    let direct = build_boot_options(&cl, &config, SERVER.into()).unwrap();
    assert_eq!(direct.vendor_options.as_deref(), Some(&[6, 1, 8, 255][..]));
}

#[test]
fn vendor_options_can_be_switched_off() {
    let config = BootConfig {
        pxe_vendor_options: PxeVendorOptions::default(),
        ..BootConfig::default()
    };
    let (o, _) = offer_with("edk2-x64-pxe-discover.bin", &config, 1500);
    assert_eq!(o.option(60), None);
    assert_eq!(o.option(43), None);
}

#[test]
fn tftp_server_override() {
    let config = BootConfig {
        tftp_server: Some(Ipv4Addr::new(10, 77, 0, 5)),
        tftp_server_name: Some("tftp.maas".into()),
        ..BootConfig::default()
    };
    let (o, _) = offer_with("edk2-x64-pxe-discover.bin", &config, 1500);
    assert_eq!(o.siaddr(), Ipv4Addr::new(10, 77, 0, 5));
    assert_eq!(text(&o, 66).as_deref(), Some("tftp.maas"));
    assert_eq!(
        o.option(54),
        Some(&SERVER.octets()[..]),
        "the server id stays ours"
    );
    let cl = config.classify(crate::client_v4("edk2-x64-pxe-discover.bin"), &subnet());
    let boot = build_boot_options(&cl, &config, SERVER.into()).unwrap();
    let mut m = Message::default();
    boot.apply_v4(&mut m, &RequestedOptions::from_list(&[150]));
    assert_eq!(
        m.opts().get(OptionCode::TFTPServerAddress),
        Some(&DhcpOption::TFTPServerAddress(Ipv4Addr::new(10, 77, 0, 5)))
    );
}

#[test]
fn reply_header_and_echoes() {
    let mut request = v4::decode(&load("udhcpc-plain-discover.bin"))
        .unwrap()
        .into_message();
    request.set_giaddr(Ipv4Addr::new(10, 77, 1, 1));
    request.set_ciaddr(Ipv4Addr::new(10, 77, 0, 50));
    let mut relay = dhcproto::v4::relay::RelayAgentInformation::default();
    relay.insert(dhcproto::v4::relay::RelayInfo::AgentCircuitId(
        b"eth7".to_vec(),
    ));
    request
        .opts_mut()
        .insert(DhcpOption::RelayAgentInformation(relay.clone()));
    let p = v4::decode(&v4::encode_to_vec(&request).unwrap()).unwrap();
    assert_eq!(p.relay(), Some(Ipv4Addr::new(10, 77, 1, 1)));

    let offer = reply_to(&p, MessageType::Offer, SERVER)
        .to_packet()
        .unwrap();
    assert_eq!(offer.opcode(), Opcode::BootReply);
    assert_eq!(offer.xid(), request.xid());
    assert_eq!(offer.giaddr(), Ipv4Addr::new(10, 77, 1, 1));
    assert_eq!(offer.chaddr(), request.chaddr());
    assert_eq!(offer.htype(), request.htype());
    assert_eq!(offer.hops(), 0);
    assert_eq!(offer.ciaddr(), Ipv4Addr::UNSPECIFIED);
    let opts = offer.message().opts();
    assert_eq!(
        opts.get(OptionCode::RelayAgentInformation),
        Some(&DhcpOption::RelayAgentInformation(relay))
    );
    assert_eq!(
        opts.get(OptionCode::ClientIdentifier),
        request.opts().get(OptionCode::ClientIdentifier)
    );
    assert_eq!(offer.option(82), p.option(82), "echoed byte for byte");
    let bytes = reply_to(&p, MessageType::Offer, SERVER).to_vec();
    let end = bytes.iter().rposition(|&b| b == 255).unwrap();
    assert_eq!(
        &bytes[end - 8..end],
        &[82, 6, 1, 4, b'e', b't', b'h', b'7'],
        "82 comes last"
    );
    let ack = reply_to(&p, MessageType::Ack, SERVER);
    assert_eq!(ack.ciaddr(), Ipv4Addr::new(10, 77, 0, 50));
}

#[test]
fn reply_values() {
    let mut r = maas_pxe::dhcp::Reply::new(7);
    r.set(12, b"first")
        .set(12, b"second")
        .set(0, b"x")
        .set(52, &[1])
        .set(255, &[]);
    assert_eq!(r.get(12), Some(&b"second"[..]));
    assert_eq!(
        r.options().count(),
        1,
        "codes 0, 52 and 255 are not options"
    );
    r.set_option(&DhcpOption::Router(vec![SERVER, YIADDR]))
        .unwrap();
    assert_eq!(r.get(3), Some(&[10, 77, 0, 1, 10, 77, 0, 100][..]));
    r.remove(12);
    assert_eq!(r.get(12), None);
    assert!(r.set_file(b"pxelinux.0") && !r.set_file(&[b'x'; 129]) && !r.set_file(b"a\0b"));
    assert_eq!(r.file(), Some(&b"pxelinux.0"[..]));
    assert!(r.set_sname(b"maas") && !r.set_sname(&[b's'; 65]));
    let p = r.to_packet().unwrap();
    assert_eq!(p.xid(), 7);
    assert_eq!(p.sname(), Some(&b"maas"[..]));
    assert_eq!(
        p.message().opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![SERVER, YIADDR]))
    );
    r.set(51, &[0, 1]);
    assert!(
        r.to_packet().is_err(),
        "a lease time of two bytes is refused on decode"
    );
}

#[test]
fn disabled_means_no_boot_answer() {
    let mut s = subnet();
    s.disabled_boot_architectures = vec![A::UefiAmd64Http];
    let config = BootConfig::default();
    let cl = config.classify(crate::client_v4("edk2-x64-http-discover.bin"), &s);
    assert!(build_boot_options(&cl, &config, SERVER.into()).is_none());
}

#[test]
fn dhcpv6_boot_answers() {
    let server: Ipv6Addr = "fd77::1".parse().unwrap();
    let config = BootConfig::default();
    for (name, url, class) in [
        (
            "edk2-x64-http-solicit6.bin",
            "http://[fd77::1]:5248/images/bootx64.efi",
            "HTTPClient",
        ),
        (
            "edk2-x64-pxe-solicit6.bin",
            "tftp://[fd77::1]/bootx64.efi",
            "PXEClient",
        ),
        ("ipxe-solicit6.bin", "http://[fd77::1]:5248/ipxe.cfg", ""),
    ] {
        let request = v6::decode(&load(name)).unwrap();
        let cl = config.classify(
            maas_pxe::dhcp::BootClient::from_v6(request.message()),
            &subnet(),
        );
        let boot = build_boot_options(&cl, &config, server.into()).unwrap();
        assert_eq!(boot.boot_file_url(), url, "{name}");
        assert_eq!(boot.next_server, None, "{name}: no IPv4 TFTP server");
        let mut advertise =
            dv6::Message::new_with_id(dv6::MessageType::Advertise, request.message().xid());
        for o in boot.v6_options() {
            advertise.opts_mut().insert(o);
        }
        let bytes = v6::encode_message_to_vec(&advertise).unwrap();
        let back = v6::decode(&bytes).unwrap();
        assert_eq!(back.message(), &advertise, "{name}");
        let opts = back.message().opts();
        let url_opt = opts.iter().find_map(|o| match o {
            dv6::DhcpOption::Unknown(u) if u16::from(u.code()) == 59 => Some(u.data().to_vec()),
            _ => None,
        });
        assert_eq!(url_opt.as_deref(), Some(url.as_bytes()), "{name}");
        match opts.get(dv6::OptionCode::VendorClass) {
            Some(dv6::DhcpOption::VendorClass(vc)) => {
                assert_eq!(vc.num, 343);
                assert_eq!(vc.data, [class.as_bytes().to_vec()], "{name}");
            }
            None => assert!(class.is_empty(), "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn dhcpv6_boot_file_params() {
    let mut config = BootConfig::default();
    config.methods.insert(
        A::UefiAmd64Tftp,
        BootMethod {
            params: vec!["ip=dhcp".into(), "url=http://{server}/".into()],
            ..BootMethod::file("bootx64.efi")
        },
    );
    config.validate().unwrap();
    let cl = config.classify(crate::client_v6("edk2-x64-pxe-solicit6.bin"), &subnet());
    let boot =
        build_boot_options(&cl, &config, "fd77::1".parse::<Ipv6Addr>().unwrap().into()).unwrap();
    assert_eq!(boot.boot_file_params, ["ip=dhcp", "url=http://[fd77::1]/"]);
    let param = boot.v6_options().into_iter().find_map(|o| match o {
        dv6::DhcpOption::Unknown(u) if u16::from(u.code()) == 60 => Some(u.data().to_vec()),
        _ => None,
    });
    assert_eq!(
        maas_pxe::dhcp::parse_boot_file_params(&param.unwrap()).unwrap(),
        [b"ip=dhcp".to_vec(), b"url=http://[fd77::1]/".to_vec()]
    );
}
