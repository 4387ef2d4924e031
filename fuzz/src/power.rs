//! The properties the `maas-power` fuzz targets check.
//!
//! Each function takes the raw input bytes and panics when a documented property does not
//! hold; inputs the decoders refuse are fine. The fuzz targets in `fuzz_targets/` call these,
//! and `maas-power/tests/integration/fuzz_corpus.rs` includes this file to replay the
//! committed corpora under `cargo test`.
//!
//! `check_ipmi_session` reads one byte of setup before the datagram: bit 0 picks cipher suite
//! 17 over 3, bit 1 IPMI 1.5 over 2.0.

use maas_power::ipmi::crypto::SessionKeys;
use maas_power::ipmi::session::{Session, SessionConfig};
use maas_power::ipmi::wire::{self, Datagram};
use maas_power::params::{CipherSuite, IpmiVersion, Privilege};
use maas_power::redfish::model;

/// An RMCP datagram decodes or is refused; a decoded IPMI 1.5 datagram and an RMCP+ one
/// without trailer encode back to the same bytes; an IPMI response message decodes, encodes
/// and decodes again to the same value.
pub fn check_rmcp_decode(data: &[u8]) {
    match wire::parse(data) {
        Ok(Datagram::V15 {
            auth_type,
            seq,
            session_id,
            auth_code,
            message,
        }) => {
            let again = wire::emit_v15(auth_type, seq, session_id, auth_code.as_ref(), message);
            assert_eq!(wire::parse(&again).unwrap(), wire::parse(data).unwrap());
        }
        Ok(Datagram::V20 {
            payload_type,
            encrypted,
            authenticated,
            session_id,
            seq,
            payload,
            trailer,
            ..
        }) if trailer.is_empty() && data[5] & 0x3f == payload_type => {
            let again = wire::emit_v20_head(
                payload_type,
                encrypted,
                authenticated,
                session_id,
                seq,
                payload,
            );
            assert_eq!(&again[4..], &data[4..]);
        }
        _ => {}
    }
    if let Ok(r) = wire::parse_response(data) {
        assert_eq!(wire::parse_response(&wire::emit_response(&r)).unwrap(), r);
    }
}

/// A session in its first handshake phase takes any datagram as an answer without panicking;
/// the session keys decrypt any payload to a value or to `None`, and what they encrypt they
/// decrypt.
pub fn check_ipmi_session(data: &[u8]) {
    let Some((&setup, datagram)) = data.split_first() else {
        return;
    };
    let suite = if setup & 1 != 0 {
        CipherSuite::Suite17
    } else {
        CipherSuite::Suite3
    };
    let mut s = Session::with_random(
        SessionConfig {
            user: "admin".into(),
            password: "password".into(),
            kg: Default::default(),
            suite,
            privilege: Privilege::Operator,
            version: if setup & 2 != 0 {
                IpmiVersion::Lan15
            } else {
                IpmiVersion::Lan20
            },
            raise_privilege: true,
        },
        0x0102_0304,
        [7; 16],
    );
    let first = s.poll_transmit();
    assert!(first.is_some());
    if let Ok(true) = s.handle_datagram(datagram) {
        // The handshake moved on: there is a next datagram to send.
        assert!(s.poll_transmit().is_some());
    }
    let keys = SessionKeys::derive(suite, &[setup; 32]);
    if let Some(plain) = keys.decrypt(datagram) {
        assert!(plain.len() < datagram.len());
    }
    let sealed = keys.encrypt([setup; 16], datagram);
    assert_eq!(keys.decrypt(&sealed).as_deref(), Some(datagram));
}

/// Redfish JSON parses or is refused; a parsed system's mapped power state agrees with its
/// raw `PowerState`.
pub fn check_redfish_json(data: &[u8]) {
    let _ = model::parse_members(data);
    let _ = model::parse_error_message(data);
    if let Ok(s) = model::parse_system(data) {
        let expected = match s.power_text.as_deref() {
            Some("On") => maas_power::PowerState::On,
            Some("Off") => maas_power::PowerState::Off,
            _ => maas_power::PowerState::Unknown,
        };
        assert_eq!(s.power, expected);
        if let Some(t) = model::choose_reset_type(&s.reset_types, &["On", "ForceOn"]) {
            assert!(s.reset_types.is_empty() || s.reset_types.iter().any(|a| a == t));
        }
    }
}

/// The guard between `ipmi-rs` and a BMC judges any datagram without panicking, and what it
/// forwards to `ipmi-rs` has the form `ipmi-rs` needs at that stage not to panic: a pong with
/// its 16 data bytes, an Open Session Response with suite 3's algorithms, an exact
/// unauthenticated RAKP 4, an encrypted payload of an IV and whole AES blocks.
///
/// The setup byte picks the request `ipmi-rs` sent (ping, channel capabilities, Open
/// Session, RAKP 1, RAKP 3, an IPMI request).
pub fn check_ipmi_rs_guard(data: &[u8]) {
    use maas_power::ipmi::guard::{Expect, Guard, Verdict};
    use maas_power::ipmi::wire::payload;
    let Some((&setup, d)) = data.split_first() else {
        return;
    };
    let request = match setup % 6 {
        0 => vec![0x06, 0, 0xff, 0x06, 0, 0, 0x11, 0xbe, 0x80, 0xc8, 0, 0],
        1 => wire::emit_v15(
            0,
            0,
            0,
            None,
            &wire::emit_request(0x06, 0x38, 0, &[0x8e, 0x04]),
        ),
        2 => wire::emit_v20_head(payload::OPEN_SESSION_REQUEST, false, false, 0, 0, &[0; 32]),
        3 => wire::emit_v20_head(payload::RAKP1, false, false, 0, 0, &[0; 32]),
        4 => wire::emit_v20_head(payload::RAKP3, false, false, 0, 0, &[0; 28]),
        _ => wire::emit_v20_head(payload::IPMI, true, true, 1, 1, &[0; 32]),
    };
    let mut g = Guard::new();
    g.outbound(&request).unwrap();
    let expect = g.expect();
    if g.inbound(d) != Verdict::Forward {
        return;
    }
    let len_field = |d: &[u8]| usize::from(u16::from_le_bytes([d[14], d[15]]));
    match expect {
        Expect::Pong => assert!(d.len() >= 28 && d[11] == 0x10),
        Expect::OpenSession | Expect::Rakp2 | Expect::Rakp4 => {
            assert!(d.len() >= 16 && d[5] & 0xc0 == 0 && d.len() == 16 + len_field(d));
            if expect == Expect::OpenSession && d[17] == 0 {
                assert_eq!((d.len(), d[32], d[40], d[48]), (52, 1, 1, 1));
            }
        }
        Expect::InSession => {
            let n = len_field(d);
            assert!(d[5] & 0xc0 == 0xc0 && n >= 32 && n % 16 == 0 && d.len() >= 16 + n);
        }
        _ => {}
    }
}
