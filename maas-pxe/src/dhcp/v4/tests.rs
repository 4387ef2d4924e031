//! Decoding, encoding and round-trip tests of the DHCPv4 wire format.

use dhcproto::v4::{DhcpOption, UnknownOption};

use super::rules::raw;
use super::*;

/// A BOOTREQUEST header with magic cookie, then `options` as given.
fn packet(options: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[28..34].copy_from_slice(&[0x52, 0x54, 0, 0x77, 0, 0x10]);
    b[236..240].copy_from_slice(&MAGIC);
    b.extend_from_slice(options);
    b
}

fn err(options: &[u8]) -> String {
    decode(&packet(options)).unwrap_err().to_string()
}

#[test]
fn header_checks() {
    assert_eq!(
        decode(&[0; 239]).unwrap_err(),
        DecodeError::Truncated {
            len: 239,
            need: 240
        }
    );
    let mut b = packet(&[255]);
    b[236] = 0;
    assert!(matches!(decode(&b), Err(DecodeError::Magic { .. })));
    let mut b = packet(&[255]);
    b[2] = 17;
    assert_eq!(
        decode(&b).unwrap_err(),
        DecodeError::HardwareLength { hlen: 17 }
    );
}

#[test]
fn framing_errors_are_errors() {
    assert_eq!(
        err(&[53, 1, 1, 12, 5, b'a']),
        "DHCPv4 option 12 at byte 3 of the options field claims 5 bytes but only 1 remain"
    );
    assert_eq!(
        err(&[53, 1, 1, 12]),
        "DHCPv4 option 12 at byte 3 of the options field has no length byte"
    );
    assert_eq!(
        err(&[53, 1, 1]),
        "the options field holds options but no end option (255) after them"
    );
    // Nothing but padding, or nothing at all: no options, no error.
    assert!(decode(&packet(&[])).unwrap().message().opts().is_empty());
    assert!(
        decode(&packet(&[0, 0, 0]))
            .unwrap()
            .message()
            .opts()
            .is_empty()
    );
    // Anything after the end option is padding.
    let p = decode(&packet(&[53, 1, 1, 255, 12, 200, 1])).unwrap();
    assert_eq!(p.message_type(), Some(MessageType::Discover));
    assert_eq!(p.options().count(), 1);
}

#[test]
fn value_errors_are_errors() {
    assert_eq!(
        err(&[51, 2, 0, 1, 255]),
        "DHCPv4 option 51 (IP address lease time): length 2 where exactly 4 bytes is required"
    );
    assert_eq!(
        err(&[94, 2, 1, 3, 255]),
        "DHCPv4 option 94 (client network interface identifier): length 2 where exactly 3 \
         bytes is required"
    );
    assert_eq!(
        err(&[80, 1, 0, 255]),
        "DHCPv4 option 80 (rapid commit): length 1 where exactly 0 bytes is required"
    );
    assert_eq!(
        err(&[19, 1, 2, 255]),
        "DHCPv4 option 19 (no short name): boolean value 2 is neither 0 nor 1"
    );
    assert!(err(&[3, 6, 10, 0, 0, 1, 10, 0, 255]).contains("a multiple of 4 bytes"));
    assert!(err(&[12, 2, 0xff, 0xfe, 255]).starts_with("DHCPv4 option 12 (host name): "));
    assert!(err(&[12, 0, 255]).contains("length 0 where at least 1 bytes is required"));
    assert!(err(&[93, 3, 0, 7, 0, 255]).contains("option 93"));
    assert!(
        err(&[
            60, 16, b'P', b'X', b'E', b'C', b'l', b'i', b'e', b'n', b't', b':', b'A', b'r', b'c',
            b'h', b':', b'7', 255
        ])
        .contains("five decimal digits")
    );
    assert!(err(&[121, 5, 33, 0, 0, 0, 0, 255]).contains("prefix length 33"));
    assert!(err(&[121, 6, 24, 10, 0, 1, 1, 1, 255]).contains("needs 8 bytes"));
    assert!(err(&[119, 3, 5, b'a', 0, 255]).contains("the domain name at byte 0"));
    assert!(err(&[82, 4, 1, 5, 0, 0, 255]).contains("relay sub-option 1 at byte 0 claims 5"));
    assert!(err(&[82, 6, 1, 1, 0, 1, 1, 0, 255]).contains("relay sub-option 1 appears twice"));
    assert!(err(&[82, 4, 5, 2, 0, 0, 255]).contains("relay sub-option 5: length 2"));
    assert!(err(&[175, 2, 0x13, 4, 255]).contains("sub-option 19 at byte 0 claims 4"));
    assert!(
        err(&[
            97, 17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255
        ])
        .contains("identifier type 1")
    );
}

#[test]
fn rfc_3396_concatenation() {
    // Option 55 in two non-adjacent pieces, option 12 split across 255-byte pieces.
    let mut opts = vec![55, 2, 1, 3, 53, 1, 1, 55, 1, 6];
    let name = vec![b'h'; 300];
    opts.extend([12, 255]);
    opts.extend(&name[..255]);
    opts.extend([12, 45]);
    opts.extend(&name[255..]);
    opts.push(255);
    let p = decode(&packet(&opts)).unwrap();
    assert_eq!(p.option(55), Some(&[1, 3, 6][..]));
    assert_eq!(p.option(12).map(<[u8]>::len), Some(300));
    assert_eq!(
        p.message().opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("h".repeat(300)))
    );
    let codes: Vec<u8> = p.options().map(|(c, _)| c).collect();
    assert_eq!(codes, [55, 53, 12]);
    // A fixed-size option split in two is concatenated, then judged.
    assert!(err(&[51, 4, 0, 0, 1, 0, 51, 4, 0, 0, 1, 0, 255]).contains("length 8"));
}

#[test]
fn option_overload() {
    let mut b = packet(&[53, 1, 1, 52, 1, 3, 255]);
    // file: option 67 then end; sname: option 66 running to the end of the field.
    b[FILE.start..FILE.start + 8].copy_from_slice(&[67, 5, b'a', b'.', b'e', b'f', b'i', 255]);
    b[SNAME.start] = 66;
    b[SNAME.start + 1] = 62;
    b[SNAME.start + 2..SNAME.end].fill(b's');
    let p = decode(&b).unwrap();
    assert_eq!(p.option(67), Some(&b"a.efi"[..]));
    assert_eq!(p.option(66).map(<[u8]>::len), Some(62));
    assert_eq!(p.message().fname(), None);
    assert_eq!(p.message().sname(), None);
    assert!(!p.message().opts().contains(OptionCode::OptionOverload));
    let codes: Vec<u8> = p.options().map(|(c, _)| c).collect();
    assert_eq!(codes, [53, 52, 67, 66], "options, then file, then sname");

    // Without overload the same bytes are names.
    let mut plain = b.clone();
    plain[HEADER_LEN + 3..HEADER_LEN + 6].copy_from_slice(&[0, 0, 0]);
    let p = decode(&plain).unwrap();
    assert_eq!(
        p.message().fname().map(<[u8]>::len),
        Some(8),
        "up to the first NUL"
    );
    assert!(p.option(67).is_none());

    let mut bad = b.clone();
    bad[FILE.start + 1] = 200;
    assert_eq!(
        decode(&bad).unwrap_err().to_string(),
        "DHCPv4 option 67 at byte 0 of the file field (overloaded by option 52) claims 200 \
         bytes but only 126 remain"
    );
    let mut bad = b.clone();
    bad[HEADER_LEN + 5] = 4;
    assert_eq!(
        decode(&bad).unwrap_err(),
        DecodeError::Overload { value: 4 }
    );
    let mut bad = b.clone();
    bad[FILE.start..FILE.start + 4].copy_from_slice(&[52, 1, 1, 255]);
    assert_eq!(
        decode(&bad).unwrap_err(),
        DecodeError::MisplacedOverload { area: Area::File }
    );
}

#[test]
fn lossy_options_are_kept_raw() {
    let p = decode(&packet(&[37, 1, 64, 150, 8, 10, 0, 0, 1, 10, 0, 0, 2, 255])).unwrap();
    let opts = p.message().opts();
    assert_eq!(
        opts.get(OptionCode::Unknown(37)),
        Some(&DhcpOption::Unknown(UnknownOption::new(
            37.into(),
            vec![64]
        )))
    );
    assert!(matches!(
        opts.get(OptionCode::TFTPServerAddress),
        Some(DhcpOption::Unknown(_))
    ));
    let p = decode(&packet(&[150, 4, 10, 0, 0, 1, 255])).unwrap();
    assert_eq!(
        p.message().opts().get(OptionCode::TFTPServerAddress),
        Some(&DhcpOption::TFTPServerAddress(Ipv4Addr::new(10, 0, 0, 1)))
    );
    // ASCII FQDN (E flag clear) stays raw; wire form is typed.
    let p = decode(&packet(&[81, 7, 0, 0, 0, b'h', b'o', b's', b't', 255])).unwrap();
    assert!(matches!(
        p.message().opts().get(OptionCode::ClientFQDN),
        Some(DhcpOption::Unknown(_))
    ));
    let p = decode(&packet(&[
        81, 9, 4, 0, 0, 4, b'h', b'o', b's', b't', 0, 255,
    ]))
    .unwrap();
    assert!(matches!(
        p.message().opts().get(OptionCode::ClientFQDN),
        Some(DhcpOption::ClientFQDN(_))
    ));
}

#[test]
fn names_in_header_fields() {
    let mut b = packet(&[255]);
    b[FILE].fill(b'f');
    b[SNAME.start..SNAME.start + 3].copy_from_slice(b"tft");
    let p = decode(&b).unwrap();
    assert_eq!(
        p.message().fname().map(<[u8]>::len),
        Some(128),
        "no NUL: the whole field"
    );
    assert_eq!(p.message().sname(), Some(&b"tft"[..]));
    let again = decode(&encode_to_vec(p.message()).unwrap()).unwrap();
    assert_eq!(again.message(), p.message());
}

#[test]
fn encode_writes_end_padding_and_relay_last() {
    let mut msg = decode(&packet(&[53, 1, 1, 255])).unwrap().into_message();
    let mut relay = dhcproto::v4::relay::RelayAgentInformation::default();
    relay.insert(dhcproto::v4::relay::RelayInfo::AgentCircuitId(vec![7]));
    msg.opts_mut()
        .insert(DhcpOption::RelayAgentInformation(relay));
    msg.opts_mut()
        .insert(DhcpOption::Unknown(UnknownOption::new(200.into(), vec![])));
    let bytes = encode_to_vec(&msg).unwrap();
    assert_eq!(bytes.len(), MIN_LEN);
    assert_eq!(
        &bytes[HEADER_LEN..HEADER_LEN + 11],
        &[53, 1, 1, 200, 0, 82, 3, 1, 1, 7, 255]
    );
    assert_eq!(decode(&bytes).unwrap().message(), &msg);
    msg.opts_mut().insert(DhcpOption::OptionOverload(1));
    assert_eq!(encode_to_vec(&msg).unwrap_err(), EncodeError::Overload);
}

#[test]
fn typed_never_panics_on_bad_lengths() {
    let mut scratch = Vec::new();
    for code in 1..=254u8 {
        for len in [0usize, 1, 2, 3, 5, 17, 300] {
            let data = vec![7u8; len];
            let _ = typed(code, &data, &mut scratch);
        }
    }
    assert_eq!(typed(94, &[1], &mut scratch), raw(94, &[1]));
}

#[test]
fn accessors() {
    let p = decode(&packet(&[55, 3, 1, 3, 67, 255])).unwrap();
    assert_eq!(p.mac(), Some(Mac::new([0x52, 0x54, 0, 0x77, 0, 0x10])));
    assert!(p.requested().wants(67) && !p.requested().wants(66));
    assert_eq!(p.relay(), None);
    assert!(decode(&packet(&[255])).unwrap().requested().wants(66));
}
