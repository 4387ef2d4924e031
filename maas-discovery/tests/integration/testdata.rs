//! Frames captured with tcpdump on a bridge while real peers talked (`testdata/peers.pcap`):
//! arping (request, -U, -A, -D), the kernel's NDP (DAD, unsolicited and solicited
//! advertisements, ping6), python-zeroconf publishing `node-b` and avahi-daemon announcing
//! `node-a`. Every frame decodes, and the observer learns the right things from them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use maas_discovery::wire::{MdnsRecord, Payload, parse_frame};
use maas_discovery::{EventKind, Observer, ObserverConfig};
use maas_net::{Mac, Timestamp};

const PCAP: &[u8] = include_bytes!("../../testdata/peers.pcap");

/// The frames of a little-endian, microsecond pcap file, with their capture times.
fn frames() -> Vec<(Duration, &'static [u8])> {
    assert_eq!(&PCAP[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "pcap magic");
    let mut out = Vec::new();
    let mut rest = &PCAP[24..];
    while rest.len() >= 16 {
        let word = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().unwrap());
        let at =
            Duration::from_secs(u64::from(word(0))) + Duration::from_micros(u64::from(word(4)));
        let len = word(8) as usize;
        out.push((at, &rest[16..16 + len]));
        rest = &rest[16 + len..];
    }
    out
}

fn mac(last: u8) -> Mac {
    Mac::new([0x52, 0x54, 0, 0x77, 0x9f, last])
}

#[test]
fn every_captured_frame_decodes() {
    let frames = frames();
    assert_eq!(frames.len(), 50);
    let mut arp = 0;
    let mut ndp = 0;
    let mut hosts = BTreeSet::new();
    for (_, data) in &frames {
        match parse_frame(data) {
            Ok(Some(frame)) => match frame.payload {
                Payload::Arp(_) => arp += 1,
                Payload::Ndp(_) => ndp += 1,
                Payload::Mdns(m) => {
                    for r in m.records {
                        if let MdnsRecord::Address { host, .. } = r {
                            hosts.insert(host);
                        }
                    }
                }
            },
            // Router solicitations, echo requests, mDNS queries: not discovery messages.
            Ok(None) => {}
            Err(e) => panic!("a real frame was refused: {e}"),
        }
    }
    assert_eq!(arp, 12);
    assert!(ndp >= 10, "{ndp}");
    assert_eq!(
        hosts,
        BTreeSet::from(["node-a".to_string(), "node-b".to_string()])
    );
}

#[test]
fn the_observer_learns_the_captured_lan() {
    let t0 = Instant::now();
    let mut observer = Observer::new(ObserverConfig::new("br0"));
    let mut events = Vec::new();
    for (at, data) in frames() {
        if let Ok(Some(frame)) = parse_frame(data) {
            observer.handle_frame(t0 + at, Timestamp(at.as_secs()), &frame);
        }
        events.extend(std::iter::from_fn(|| observer.poll_event()));
    }
    let find = |kind: EventKind, ip: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        events
            .iter()
            .find(|e| e.event == kind && e.ip == ip)
            .unwrap_or_else(|| panic!("no {kind:?} for {ip} in {events:#?}"))
    };
    assert_eq!(find(EventKind::New, "10.77.159.10").mac, mac(1));
    assert_eq!(find(EventKind::New, "10.77.159.11").mac, mac(2));
    assert_eq!(find(EventKind::New, "fd77:159::b").mac, mac(2));
    assert_eq!(find(EventKind::New, "fd77:159::a").mac, mac(1));
    assert_eq!(find(EventKind::New, "fe80::5054:ff:fe77:9f02").mac, mac(2));
    // arping -D from host 1 for host 2's address.
    let conflict = find(EventKind::Conflict, "10.77.159.11");
    assert_eq!(
        (conflict.mac, conflict.previous_mac),
        (mac(1), Some(mac(2)))
    );
    let named = find(EventKind::Hostname, "10.77.159.11");
    assert_eq!(named.hostname.as_deref(), Some("node-b"));
    let named = find(EventKind::Hostname, "10.77.159.10");
    assert_eq!(named.hostname.as_deref(), Some("node-a"));
    // Nothing moved on this LAN, and no probe became a binding.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.event, EventKind::Moved | EventKind::FlipFlop)),
        "{events:#?}"
    );
    assert!(observer.get(0, "0.0.0.0".parse().unwrap()).is_none());
}
