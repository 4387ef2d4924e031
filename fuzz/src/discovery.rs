//! The properties the `maas-discovery` fuzz targets check.
//!
//! Each function takes the raw input bytes and panics when a documented property does not
//! hold for them; inputs the decoders refuse are fine. The fuzz targets in `fuzz_targets/` call
//! these, and `maas-discovery/tests/integration/fuzz_corpus.rs` includes this file to replay the
//! committed corpora under `cargo test`.
//!
//! `check_discovery_observer` reads the input as a sequence of records: one byte of time step
//! (seconds), one byte of frame length, then that many bytes of frame.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use maas_discovery::wire::{Arp, Payload, parse_frame, parse_mdns};
use maas_discovery::{EventKind, Observer, ObserverConfig};
use maas_net::Timestamp;

/// A frame decodes or is refused, never panics; a decoded ARP packet encodes back to what
/// decodes to the same packet; a decoded frame survives a serde round trip.
pub fn check_discovery_frame(data: &[u8]) {
    let Ok(Some(frame)) = parse_frame(data) else {
        return;
    };
    if let Payload::Arp(arp) = &frame.payload {
        let again = parse_frame(&arp.emit_frame(frame.vid))
            .expect("an emitted ARP frame decodes")
            .expect("an emitted ARP frame is discovery traffic");
        assert_eq!(again.payload, Payload::Arp(*arp), "decode, emit, decode");
        assert_eq!(again.vid, frame.vid);
        assert_eq!(Arp::LEN, arp.emit().len());
    }
    let json = serde_json::to_string(&frame).expect("a frame serialises");
    let back: maas_discovery::Frame = serde_json::from_str(&json).expect("and deserialises");
    assert_eq!(back, frame, "serde round trip");
}

/// An mDNS payload decodes or is refused; host names never end in a dot or in `.local`.
pub fn check_discovery_mdns(data: &[u8]) {
    let Ok(Some(mdns)) = parse_mdns(IpAddr::V4(Ipv4Addr::new(10, 77, 130, 1)), data) else {
        return;
    };
    for record in &mdns.records {
        let json = serde_json::to_string(record).expect("a record serialises");
        assert!(!json.is_empty());
        if let maas_discovery::wire::MdnsRecord::Address { host, .. } = record {
            // A dot at the end, or before `local`, is only there escaped, inside a label.
            assert!(!host.ends_with('.') || host.ends_with("\\."), "{host:?}");
            assert!(
                !host.to_ascii_lowercase().ends_with(".local")
                    || host.ends_with("\\.local")
                    || host.to_ascii_lowercase().ends_with("\\.local"),
                "{host:?} keeps .local"
            );
        }
    }
}

/// Any sequence of frames keeps the table within its capacity, the event queue within its
/// bound, and gives events that name a MAC different from `previous_mac` when both are set.
pub fn check_discovery_observer(mut data: &[u8]) {
    let mut config = ObserverConfig::new("fuzz0");
    config
        .max_entries(16)
        .max_events(64)
        .conflict_window_secs(5)
        .refresh_interval_secs(20)
        .entry_ttl_secs(120);
    let mut observer = Observer::new(config);
    let t0 = Instant::now();
    let mut secs = 0u64;
    while let [step, len, rest @ ..] = data {
        let len = usize::from(*len).min(rest.len());
        let (frame, tail) = rest.split_at(len);
        data = tail;
        secs += u64::from(*step);
        let now = t0 + Duration::from_secs(secs);
        if *step == 255 {
            observer.handle_timeout(now);
        }
        if let Ok(Some(frame)) = parse_frame(frame) {
            observer.handle_frame(now, Timestamp(secs), &frame);
        }
        assert!(observer.len() <= 16, "table over capacity");
        let mut n = 0;
        while let Some(event) = observer.poll_event() {
            n += 1;
            assert!(n <= 64, "event queue over its bound");
            if let Some(previous) = event.previous_mac {
                assert_ne!(previous, event.mac, "{event:?}");
            }
            if matches!(event.event, EventKind::Moved | EventKind::FlipFlop) {
                assert!(event.previous_mac.is_some(), "{event:?}");
                let entry = observer.get(event.vid, event.ip);
                assert!(entry.is_none_or(|e| e.mac == event.mac), "{event:?}");
            }
            assert!(event.first_seen <= event.last_seen, "{event:?}");
        }
    }
}
