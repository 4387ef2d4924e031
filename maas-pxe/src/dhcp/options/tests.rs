//! Parse, encode and round-trip tests of the boot option values.

use std::net::Ipv4Addr;

use super::*;

#[test]
fn requested_options() {
    let r = RequestedOptions::from_list(&[0, 1, 63, 64, 255]);
    for c in [0, 1, 63, 64, 255] {
        assert!(r.contains(c) && r.wants(c), "{c}");
    }
    for c in [2, 62, 65, 128, 254] {
        assert!(!r.contains(c) && !r.wants(c), "{c}");
    }
    assert!(r.has_list());
    assert!(!RequestedOptions::ALL.contains(1) && RequestedOptions::ALL.wants(1));
    assert!(RequestedOptions::from_list(&[]).has_list());
    assert!(!RequestedOptions::from_list(&[]).wants(1));
}

#[test]
fn architectures_whole_list() {
    assert_eq!(parse_architectures(&[0, 0]).unwrap(), [0]);
    assert_eq!(
        parse_architectures(&[0, 16, 0, 7, 0, 0]).unwrap(),
        [16, 7, 0]
    );
    for bad in [&[][..], &[7], &[0, 7, 0]] {
        let err = parse_architectures(bad).unwrap_err();
        assert!(matches!(err, OptionError::Length { .. }), "{bad:?}");
    }
}

#[test]
fn ndi() {
    let n = Ndi::parse(&[1, 3, 0]).unwrap();
    assert!(n.is_undi());
    assert_eq!(n.to_string(), "type 1 version 3.0");
    assert_eq!(n.to_bytes(), [1, 3, 0]);
    assert!(Ndi::parse(&[1, 3]).is_err() && Ndi::parse(&[1, 3, 0, 0]).is_err());
}

#[test]
fn machine_id() {
    let mut v = vec![0];
    v.extend([0xab; 16]);
    let id = MachineId::parse(&v).unwrap();
    assert_eq!(id.to_option().to_vec(), v);
    assert!(!id.is_nil() && MachineId::new([0; 16]).is_nil());
    v[0] = 1;
    assert_eq!(
        MachineId::parse(&v).unwrap_err().to_string(),
        "identifier type 1 where 0 (UUID) is the only type defined"
    );
    let mut duid = vec![0, 4];
    duid.extend([0xab; 16]);
    assert_eq!(MachineId::from_duid(&duid), Some(id));
    assert_eq!(MachineId::from_duid(&duid[..17]), None);
    assert_eq!(MachineId::from_duid(&[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]), None);
}

#[test]
fn vendor_classes() {
    let v = VendorClass::parse(b"PXEClient:Arch:00000:UNDI:002001").unwrap();
    assert_eq!(v.kind(), VendorKind::Pxe);
    assert_eq!(v.architecture(), Some(0));
    assert_eq!(v.undi(), Some(UndiVersion { major: 2, minor: 1 }));
    let v = VendorClass::parse(b"PXEClient").unwrap();
    assert_eq!(
        (v.kind(), v.architecture(), v.undi()),
        (VendorKind::Pxe, None, None)
    );
    let v = VendorClass::parse(b"PXEClient:Arch:00011").unwrap();
    assert_eq!((v.architecture(), v.undi()), (Some(11), None));
    let v = VendorClass::parse(b"HTTPClient:Arch:00019:UNDI:003000\0").unwrap();
    assert_eq!((v.kind(), v.architecture()), (VendorKind::Http, Some(19)));
    assert_eq!(v.to_string(), "HTTPClient:Arch:00019:UNDI:003000");
    assert_eq!(v.as_bytes().last(), Some(&0));
    for other in [
        &b"MSFT 5.0"[..],
        b"pxeclient",
        b"dhcpcd-9.4.1:Linux",
        b"\xff\xfe",
    ] {
        let v = VendorClass::parse(other).unwrap();
        assert_eq!((v.kind(), v.architecture()), (VendorKind::Other, None));
    }
    for bad in [
        &b"PXEClient:Arch:7"[..],
        b"PXEClient:Arch:0000x",
        b"PXEClient:Arch:99999",
        b"PXEClient:Arch:00007:UNDI:0030",
        b"PXEClient:Arch:00007:UNDI:00300a",
        b"PXEClient:Arch:00007:UNDI:003000x",
        b"PXEClient:Arch:00007:",
        b"PXEClientX",
        b"HTTPClient:",
    ] {
        let err = VendorClass::parse(bad).unwrap_err();
        assert!(err.to_string().contains("expected"), "{bad:?}: {err}");
    }
    assert_eq!(
        VendorClass::parse(b"PXEClient:Arch:99999")
            .unwrap_err()
            .to_string(),
        "vendor class \"PXEClient:Arch:99999\": the architecture is larger than 65535; \
         expected PXEClient:Arch:NNNNN:UNDI:yyyzzz"
    );
    assert!(VendorClass::parse(b"").is_err());
}

#[test]
fn user_classes() {
    assert_eq!(
        UserClass::parse(b"iPXE").unwrap(),
        UserClass::Raw(b"iPXE".to_vec())
    );
    assert_eq!(
        UserClass::parse(b"\x04iPXE\x03abc").unwrap(),
        UserClass::List(vec![b"iPXE".to_vec(), b"abc".to_vec()])
    );
    assert_eq!(
        UserClass::parse(b"\x04iPXE\x00").unwrap(),
        UserClass::List(vec![b"iPXE".to_vec(), vec![]])
    );
    // A length running past the end: one raw class.
    assert_eq!(
        UserClass::parse(b"\x05iPXE").unwrap(),
        UserClass::Raw(b"\x05iPXE".to_vec())
    );
    assert!(UserClass::parse(b"").is_err());
    let c = UserClass::parse(b"\x04iPXE\x03abc").unwrap();
    assert_eq!(c.classes().collect::<Vec<_>>(), [&b"iPXE"[..], b"abc"]);
    assert!(c.contains(b"abc") && !c.contains(b"ipxe"));
}

#[test]
fn ipxe_features() {
    // What iPXE sends: bus id, version and feature flags.
    let f = IpxeFeatures::parse(&[0x13, 1, 1, 0x24, 1, 1, 0xeb, 3, 1, 21, 0]).unwrap();
    assert!(f.is_ipxe() && f.has(0xeb) && !f.has(0x18));
    let f = IpxeFeatures::parse(&[0x13, 1, 1, 0, 0x18, 1, 1, 255, 9, 9]).unwrap();
    assert!(f.is_ipxe());
    assert!(!IpxeFeatures::parse(&[0x13, 1, 1]).unwrap().is_ipxe());
    assert!(!IpxeFeatures::parse(&[0x24, 1, 1]).unwrap().is_ipxe());
    let err = IpxeFeatures::parse(&[0x13, 5, 1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sub-option 19 at byte 0 claims 5 bytes but only 1 remain"
    );
    assert!(IpxeFeatures::parse(&[0x13]).is_err());
}

#[test]
fn pxe_vendor_options_round_trip() {
    let all = PxeVendorOptions {
        discovery_control: Some(7),
        boot_servers: vec![
            BootServers {
                server_type: 0x8000,
                addresses: vec![Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2)],
            },
            BootServers {
                server_type: 0,
                addresses: vec![],
            },
        ],
        menu: vec![
            MenuItem {
                server_type: 0x8000,
                description: "MAAS".into(),
            },
            MenuItem {
                server_type: 0,
                description: String::new(),
            },
        ],
        prompt: Some(MenuPrompt {
            timeout: 5,
            text: "Press F8".into(),
        }),
        boot_item: Some(BootItem {
            server_type: 0x8000,
            layer: 0,
        }),
        other: vec![RawSubOption {
            code: 1,
            data: vec![224, 1, 1, 1],
        }],
    };
    let bytes = all.encode().unwrap();
    assert_eq!(bytes.last(), Some(&255));
    assert_eq!(PxeVendorOptions::parse(&bytes).unwrap(), all);
    assert_eq!(
        PxeVendorOptions::boot_file_only().encode().unwrap(),
        [6, 1, 8, 255]
    );
    assert_eq!(PxeVendorOptions::default().encode().unwrap(), [255]);
    // A client's boot item request, without the end sub-option.
    let item = PxeVendorOptions::parse(&[71, 4, 0x80, 0, 0, 0]).unwrap();
    assert_eq!(
        item.boot_item,
        Some(BootItem {
            server_type: 0x8000,
            layer: 0
        })
    );
}

#[test]
fn pxe_vendor_options_refusals() {
    for (bad, why) in [
        (
            &[6, 2, 8, 8][..],
            "PXE sub-option 6: length 2 where exactly 1 bytes is required",
        ),
        (&[6, 1, 8, 6, 1, 8], "PXE sub-option 6 appears twice"),
        (
            &[8, 2, 0, 0],
            "PXE sub-option 8: 2 bytes left where a boot server entry",
        ),
        (
            &[8, 3, 0, 0, 1],
            "PXE sub-option 8: a boot server entry lists 1 addresses",
        ),
        (
            &[9, 3, 0, 0, 2],
            "PXE sub-option 9: a menu entry claims 2 bytes",
        ),
        (
            &[9, 4, 0, 0, 1, 0xff],
            "PXE sub-option 9: text \"\u{fffd}\" is not UTF-8",
        ),
        (&[10, 0], "PXE sub-option 10: length 0"),
        (&[71, 2, 0, 0], "PXE sub-option 71: length 2"),
        (&[6, 9, 8], "sub-option 6 at byte 0 claims 9 bytes"),
    ] {
        let err = PxeVendorOptions::parse(bad).unwrap_err().to_string();
        assert!(err.starts_with(why), "{bad:?}: {err}");
    }
    let long = PxeVendorOptions {
        menu: vec![MenuItem {
            server_type: 1,
            description: "x".repeat(300),
        }],
        ..PxeVendorOptions::default()
    };
    assert_eq!(
        long.encode().unwrap_err(),
        EncodeError::SubOptionTooLong { code: 9, len: 303 }
    );
}

#[test]
fn boot_file_params() {
    let v = encode_boot_file_params(&["root=/dev/ram0", ""]).unwrap();
    assert_eq!(&v[..2], &[0, 14]);
    assert_eq!(
        parse_boot_file_params(&v).unwrap(),
        [b"root=/dev/ram0".to_vec(), vec![]]
    );
    assert!(parse_boot_file_params(&[0]).is_err());
    assert!(parse_boot_file_params(&[0, 3, 1]).is_err());
    assert_eq!(parse_boot_file_params(&[]).unwrap(), Vec::<Vec<u8>>::new());
}
