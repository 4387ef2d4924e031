//! Properties of the IPMI wire format and session cryptography, over random inputs.

use maas_power::ipmi::crypto::SessionKeys;
use maas_power::ipmi::wire::{self, Response};
use maas_power::params::CipherSuite;
use proptest::prelude::*;

proptest! {
    #[test]
    fn response_round_trip(netfn in 0u8..32, cmd: u8, seq in 0u8..64, cc: u8,
                           data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let r = Response { netfn: netfn | 1, cmd, rq_seq: seq, completion: cc, data };
        prop_assert_eq!(wire::parse_response(&wire::emit_response(&r)).unwrap(), r);
    }

    #[test]
    fn any_bytes_decode_or_fail_cleanly(data in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = wire::parse(&data);
        let _ = wire::parse_response(&data);
    }

    #[test]
    fn encryption_round_trips(sik in proptest::collection::vec(any::<u8>(), 20..33),
                              iv: [u8; 16],
                              msg in proptest::collection::vec(any::<u8>(), 0..200),
                              s17: bool) {
        let suite = if s17 { CipherSuite::Suite17 } else { CipherSuite::Suite3 };
        let keys = SessionKeys::derive(suite, &sik);
        let sealed = keys.encrypt(iv, &msg);
        prop_assert_eq!(sealed.len() % 16, 0);
        prop_assert_eq!(keys.decrypt(&sealed), Some(msg));
    }

    #[test]
    fn checksums_catch_single_byte_changes(data in proptest::collection::vec(any::<u8>(), 0..32),
                                           at: usize, flip in 1u8..=255) {
        let r = Response { netfn: 0x01, cmd: 0x01, rq_seq: 3, completion: 0, data };
        let mut bad = wire::emit_response(&r);
        let i = at % bad.len();
        bad[i] ^= flip;
        prop_assert!(wire::parse_response(&bad).is_err());
    }
}
