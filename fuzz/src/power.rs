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
