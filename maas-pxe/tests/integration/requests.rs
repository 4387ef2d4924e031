//! Real client requests: decoded, read and classified.

use maas_net::ip::Family;
use maas_net::{BootArchitecture as A, Mac};
use maas_pxe::dhcp::{
    ArchSource, BootClient, BootConfig, MachineId, Ndi, NoBoot, UndiVersion, UserClass, VendorKind,
    v4, v6,
};
use maas_pxe::dhcproto::v4::{DhcpOption, MessageType, OptionCode};

use crate::testdata::{EDK2_PXE_PRL, MAC, UUID, load};
use crate::{client_v4, client_v6, subnet};

#[test]
fn edk2_pxe_discover() {
    let bytes = load("edk2-x64-pxe-discover.bin");
    let p = v4::decode(&bytes).unwrap();
    assert_eq!(p.message_type(), Some(MessageType::Discover));
    assert!(p.message().flags().broadcast());
    assert_eq!(p.mac(), Some(Mac::new(MAC)));
    assert_eq!(p.option(55), Some(&EDK2_PXE_PRL[..]));
    let opts = p.message().opts();
    assert_eq!(
        opts.get(OptionCode::MaxMessageSize),
        Some(&DhcpOption::MaxMessageSize(1472))
    );

    let c = BootClient::from_v4(&p);
    assert_eq!(c.family, Family::V4);
    assert_eq!(c.architectures, [7]);
    assert_eq!(c.arch_source, ArchSource::ClientArchitecture);
    assert!(c.is_pxe_client() && !c.is_http_client() && !c.ipxe);
    let vendor = c.vendor_class.as_ref().unwrap();
    assert_eq!(vendor.undi(), Some(UndiVersion { major: 3, minor: 0 }));
    assert_eq!(c.machine_id, Some(MachineId::new(UUID)));
    assert_eq!(
        c.machine_id.unwrap().to_string(),
        "4c4c4544-0037-3010-8052-b7c04f4e3532"
    );
    assert_eq!(
        c.ndi,
        Some(Ndi {
            interface_type: 1,
            major: 3,
            minor: 0
        })
    );
    let cl = BootConfig::default().classify(c, &subnet());
    assert_eq!(cl.choice, Ok(A::UefiAmd64Tftp));
}

#[test]
fn edk2_http_discover() {
    let p = v4::decode(&load("edk2-x64-http-discover.bin")).unwrap();
    // edk2 leaves one entry of its list unset: a 0 among the codes.
    assert_eq!(p.option(55).map(|l| l[24]), Some(0));
    let c = BootClient::from_v4(&p);
    assert_eq!(c.architectures, [16]);
    assert!(c.is_http_client() && !c.is_pxe_client());
    assert_eq!(
        c.vendor_class.as_ref().map(|v| v.kind()),
        Some(VendorKind::Http)
    );
    let cl = BootConfig::default().classify(c, &subnet());
    assert_eq!(cl.architecture(), Some(A::UefiAmd64Http));
    assert!(cl.is_http_client());
}

#[test]
fn ipxe_discover_in_both_user_class_forms() {
    for (name, form) in [
        ("ipxe-bios-discover.bin", UserClass::Raw(b"iPXE".to_vec())),
        (
            "ipxe-bios-discover-rfc3004.bin",
            UserClass::List(vec![b"iPXE".to_vec()]),
        ),
    ] {
        let p = v4::decode(&load(name)).unwrap();
        let c = BootClient::from_v4(&p);
        assert_eq!(c.user_class, Some(form), "{name}");
        assert!(c.ipxe, "{name}");
        assert_eq!(c.architectures, [0], "{name}");
        assert_eq!(
            c.ndi,
            Some(Ndi {
                interface_type: 1,
                major: 2,
                minor: 1
            })
        );
        let cl = BootConfig::default().classify(c, &subnet());
        assert_eq!(cl.architecture(), Some(A::Ipxe), "{name}");
    }
}

#[test]
fn ipxe_is_recognised_by_its_features_alone() {
    // Without its user class, iPXE still announces HTTP and bzImage support in option 175.
    let mut msg = v4::decode(&load("ipxe-bios-discover.bin"))
        .unwrap()
        .into_message();
    msg.opts_mut().remove(OptionCode::UserClass);
    let p = v4::decode(&v4::encode_to_vec(&msg).unwrap()).unwrap();
    let c = BootClient::from_v4(&p);
    assert!(c.user_class.is_none() && c.ipxe);
    assert_eq!(
        BootConfig::default().classify(c, &subnet()).architecture(),
        Some(A::Ipxe)
    );
}

#[test]
fn udhcpc_requests() {
    let p = v4::decode(&load("udhcpc-arch-bios-discover.bin")).unwrap();
    assert_eq!(load("udhcpc-arch-bios-discover.bin").len(), 300);
    let c = BootClient::from_v4(&p);
    assert_eq!(c.architectures, [0]);
    assert!(!c.is_pxe_client());
    assert_eq!(
        c.vendor_class.as_ref().map(|v| v.kind()),
        Some(VendorKind::Other)
    );
    assert_eq!(
        BootConfig::default().classify(c, &subnet()).architecture(),
        Some(A::Pxe)
    );

    let p = v4::decode(&load("udhcpc-user-class-ipxe-discover.bin")).unwrap();
    let c = BootClient::from_v4(&p);
    assert_eq!(
        c.user_class,
        Some(UserClass::List(vec![b"iPXE".to_vec(), vec![]]))
    );
    assert!(c.ipxe);
    assert_eq!(
        BootConfig::default().classify(c, &subnet()).architecture(),
        Some(A::Ipxe)
    );

    let p = v4::decode(&load("udhcpc-pxe-vendor-class-discover.bin")).unwrap();
    let c = BootClient::from_v4(&p);
    assert_eq!(c.architectures, [0]);
    assert_eq!(c.arch_source, ArchSource::VendorClass);
    assert!(c.is_pxe_client());

    let p = v4::decode(&load("udhcpc-plain-discover.bin")).unwrap();
    let c = BootClient::from_v4(&p);
    assert_eq!(c.arch_source, ArchSource::None);
    assert!(c.architectures.is_empty());
    let config = BootConfig::default();
    assert_eq!(
        config.classify(c.clone(), &subnet()).architecture(),
        Some(A::Pxe),
        "MAAS's else"
    );
    let no_fallback = BootConfig {
        fallback: None,
        ..BootConfig::default()
    };
    assert_eq!(
        no_fallback.classify(c, &subnet()).choice,
        Err(NoBoot::NoArchitecture)
    );
}

#[test]
fn option_93_list_is_read_whole() {
    // A client preferring HTTP boot, then PXE.
    let mut msg = v4::decode(&load("edk2-x64-pxe-discover.bin"))
        .unwrap()
        .into_message();
    msg.opts_mut().remove(OptionCode::ClientSystemArchitecture);
    msg.opts_mut()
        .insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
            93.into(),
            vec![0, 16, 0, 7],
        )));
    let p = v4::decode(&v4::encode_to_vec(&msg).unwrap()).unwrap();
    let c = BootClient::from_v4(&p);
    assert_eq!(c.architectures, [16, 7]);
    let mut s = subnet();
    assert_eq!(
        BootConfig::default().classify(c.clone(), &s).architecture(),
        Some(A::UefiAmd64Http)
    );
    s.disabled_boot_architectures = vec![A::UefiAmd64Http];
    assert_eq!(
        BootConfig::default().classify(c, &s).architecture(),
        Some(A::UefiAmd64Tftp)
    );
}

#[test]
fn disabled_architectures_on_real_requests() {
    let mut s = subnet();
    s.disabled_boot_architectures = vec![A::UefiAmd64Tftp, A::Ipxe];
    let c = client_v4("edk2-x64-pxe-discover.bin");
    assert_eq!(
        BootConfig::default().classify(c, &s).choice,
        Err(NoBoot::Disabled {
            disabled: vec![A::UefiAmd64Tftp]
        })
    );
    // iPXE disabled: the iPXE client is answered by its architecture instead.
    let c = client_v4("ipxe-bios-discover.bin");
    assert_eq!(
        BootConfig::default().classify(c, &s).architecture(),
        Some(A::Pxe)
    );
}

#[test]
fn dhcpv6_solicits() {
    let bytes = load("edk2-x64-pxe-solicit6.bin");
    let p = v6::decode(&bytes).unwrap();
    assert_eq!(p.message().msg_type(), dhcproto::v6::MessageType::Solicit);
    // Re-encoded with the options in code order, it reads back the same.
    assert_eq!(v6::decode(&v6::encode_to_vec(&p).unwrap()).unwrap(), p);
    let c = client_v6("edk2-x64-pxe-solicit6.bin");
    assert_eq!(c.family, Family::V6);
    assert_eq!(c.architectures, [7]);
    assert!(c.is_pxe_client());
    assert_eq!(c.machine_id, Some(MachineId::new(UUID)));
    assert_eq!(c.ndi.map(Ndi::to_bytes), Some([1, 3, 0]));
    assert_eq!(c.mac, None, "a DUID-UUID names no MAC");
    assert_eq!(
        BootConfig::default().classify(c, &subnet()).architecture(),
        Some(A::UefiAmd64Tftp)
    );

    let c = client_v6("edk2-x64-http-solicit6.bin");
    assert!(c.is_http_client());
    assert_eq!(
        BootConfig::default().classify(c, &subnet()).architecture(),
        Some(A::UefiAmd64Http)
    );

    let c = client_v6("ipxe-solicit6.bin");
    assert!(c.ipxe);
    assert_eq!(c.mac, Some(Mac::new(MAC)));
    assert_eq!(c.user_class, Some(UserClass::List(vec![b"iPXE".to_vec()])));
    assert_eq!(
        BootConfig::default().classify(c, &subnet()).architecture(),
        Some(A::Ipxe)
    );
}

#[test]
fn relayed_solicit() {
    let inner = load("edk2-x64-http-solicit6.bin");
    let mut relay = vec![12, 1];
    relay.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    relay.extend_from_slice(&[
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0x77, 2, 0x30,
    ]);
    relay.extend_from_slice(&9u16.to_be_bytes());
    relay.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    relay.extend_from_slice(&inner);
    let p = v6::decode(&relay).unwrap();
    assert_eq!(p.relays().len(), 1);
    assert_eq!(p.relays()[0].hop_count(), 1);
    let c = BootClient::from_v6(p.message());
    assert!(c.is_http_client());
    assert_eq!(v6::encode_to_vec(&p).unwrap(), relay);
}

#[test]
fn every_real_request_round_trips() {
    for (name, _) in crate::testdata::FILES {
        let bytes = load(name);
        if name.ends_with("6.bin") {
            let p = v6::decode(&bytes).unwrap();
            assert_eq!(
                v6::decode(&v6::encode_to_vec(&p).unwrap()).unwrap(),
                p,
                "{name}"
            );
        } else {
            let p = v4::decode(&bytes).unwrap();
            let again = v4::decode(&v4::encode_to_vec(p.message()).unwrap()).unwrap();
            assert_eq!(again.message(), p.message(), "{name}");
        }
    }
}

#[test]
fn truncated_real_requests_are_errors() {
    for (name, _) in crate::testdata::FILES {
        let bytes = load(name);
        if name.ends_with("6.bin") {
            for cut in 0..bytes.len() {
                let short = &bytes[..cut];
                // Cutting exactly between options leaves a valid, shorter message.
                let between = v6_boundaries(&bytes).contains(&cut);
                assert_eq!(v6::decode(short).is_ok(), between, "{name} cut at {cut}");
            }
        } else {
            let end = bytes.iter().rposition(|&b| b == 255).unwrap();
            for cut in (0..v4::HEADER_LEN).chain(v4::HEADER_LEN + 1..=end) {
                assert!(v4::decode(&bytes[..cut]).is_err(), "{name} cut at {cut}");
            }
            // Cut right after the magic cookie: a message without options, which is legal.
            let bare = v4::decode(&bytes[..v4::HEADER_LEN]).unwrap();
            assert!(bare.message().opts().is_empty(), "{name}");
            assert!(v4::decode(&bytes[..=end]).is_ok(), "{name}");
        }
    }
}

/// The offsets where a DHCPv6 message's top-level options start or end.
fn v6_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut out = vec![4];
    let mut i = 4;
    while i + 4 <= bytes.len() {
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        i += 4 + len;
        out.push(i);
    }
    out
}
