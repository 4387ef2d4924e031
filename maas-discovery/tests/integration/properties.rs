//! Invariants of the observer and the scan, over random input (proptest).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use maas_discovery::wire::{Arp, ArpOp, Frame, Payload};
use maas_discovery::{EventKind, Observer, ObserverConfig, Scan, ScanConfig};
use maas_net::{Mac, Timestamp};
use proptest::prelude::*;

/// One ARP packet: who (MAC index), for which address index, of which kind, after how many
/// seconds, on which VLAN.
#[derive(Debug, Clone)]
struct Step {
    mac: u8,
    ip: u8,
    kind: u8,
    wait: u16,
    vid: u16,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            0u8..4,
            0u8..6,
            0u8..4,
            0u16..700,
            prop_oneof![Just(0u16), Just(7u16)],
        )
            .prop_map(|(mac, ip, kind, wait, vid)| Step {
                mac,
                ip,
                kind,
                wait,
                vid,
            }),
        1..200,
    )
}

fn frame(s: &Step) -> Frame {
    let mac = Mac::new([2, 0, 0, 0, 0, s.mac + 1]);
    let ip = Ipv4Addr::new(10, 77, 140, s.ip + 1);
    let (sender, target, op) = match s.kind {
        0 => (ip, Ipv4Addr::new(10, 77, 140, 250), ArpOp::Request),
        1 => (ip, ip, ArpOp::Request),                    // gratuitous
        2 => (Ipv4Addr::UNSPECIFIED, ip, ArpOp::Request), // probe
        _ => (ip, Ipv4Addr::new(10, 77, 140, 250), ArpOp::Reply),
    };
    Frame {
        source: mac,
        destination: Mac::BROADCAST,
        vid: s.vid,
        payload: Payload::Arp(Arp {
            operation: op,
            sender_mac: mac,
            sender_ip: sender,
            target_mac: Mac::ZERO,
            target_ip: target,
        }),
    }
}

proptest! {
    /// The table never exceeds its capacity, and it agrees with the event stream: the MAC of
    /// an entry is the MAC of the last NEW, MOVED or FLIP_FLOP for its key, and every MOVED or
    /// FLIP_FLOP names the MAC the key had before. REFRESHED comes at most once per interval.
    #[test]
    fn table_agrees_with_events(steps in steps(), capacity in 1usize..8) {
        let mut config = ObserverConfig::new("p0");
        config.max_entries(capacity).refresh_interval_secs(600).conflict_window_secs(10);
        let mut o = Observer::new(config);
        let t0 = Instant::now();
        let mut secs = 0u64;
        let mut bound: HashMap<(u16, IpAddr), Mac> = HashMap::new();
        let mut refreshed: HashMap<(u16, IpAddr), u64> = HashMap::new();
        for s in &steps {
            secs += u64::from(s.wait);
            o.handle_frame(t0 + Duration::from_secs(secs), Timestamp(secs), &frame(s));
            prop_assert!(o.len() <= capacity);
            while let Some(e) = o.poll_event() {
                let key = (e.vid, e.ip);
                match e.event {
                    EventKind::New => { bound.insert(key, e.mac); }
                    EventKind::Moved | EventKind::FlipFlop => {
                        if let Some(before) = bound.get(&key) {
                            prop_assert_eq!(Some(*before), e.previous_mac);
                        }
                        bound.insert(key, e.mac);
                    }
                    EventKind::Refreshed => {
                        if let Some(last) = refreshed.insert(key, secs) {
                            prop_assert!(secs - last >= 600);
                        }
                        prop_assert_eq!(bound.get(&key), Some(&e.mac));
                    }
                    EventKind::Conflict => prop_assert_ne!(Some(e.mac), e.previous_mac),
                    EventKind::Hostname => prop_assert!(false, "no mDNS here"),
                }
            }
            for n in o.neighbours() {
                prop_assert_eq!(bound.get(&(n.vid, n.ip)), Some(&n.mac));
                prop_assert!(n.first_seen <= n.last_seen);
            }
        }
    }

    /// Probes alone never bind an address.
    #[test]
    fn probes_never_bind(steps in steps()) {
        let mut o = Observer::new(ObserverConfig::new("p0"));
        let t0 = Instant::now();
        let mut secs = 0;
        for mut s in steps {
            s.kind = 2;
            secs += u64::from(s.wait);
            o.handle_frame(t0 + Duration::from_secs(secs), Timestamp(secs), &frame(&s));
            prop_assert!(o.is_empty());
            while let Some(e) = o.poll_event() {
                prop_assert_eq!(e.event, EventKind::Conflict);
            }
        }
    }

    /// A scan sends each silent address `attempts` times and no more, never faster than its
    /// rate (over any second, at most rate + 1 probes), however late its caller comes back,
    /// and ends.
    #[test]
    fn scan_is_paced_and_bounded(
        prefix in 26u8..=30,
        rate in 1u32..500,
        attempts in 1u8..4,
        lateness in prop::collection::vec(0u64..30_000, 1..64),
    ) {
        let mut config = ScanConfig::new(Mac::new([2, 0, 0, 0, 0, 1]));
        config.rate(rate).attempts(attempts);
        let net: ipnet::IpNet = format!("10.77.141.0/{prefix}").parse().unwrap();
        let mut scan = Scan::subnet(config, net).unwrap();
        let targets = scan.len() as u64;
        let t0 = Instant::now();
        let mut now = t0;
        let mut sends = Vec::new();
        for i in 0.. {
            while scan.poll_transmit(now).is_some() {
                sends.push(now);
            }
            if scan.is_done(now) {
                break;
            }
            prop_assert!(i < 100_000, "the scan does not end");
            let next = scan.poll_timeout().unwrap();
            now = next.max(now) + Duration::from_micros(lateness[i % lateness.len()]);
        }
        prop_assert_eq!(scan.sent(), targets * u64::from(attempts));
        for (i, at) in sends.iter().enumerate() {
            let within = sends[i..].iter().take_while(|t| **t < *at + Duration::from_secs(1)).count();
            prop_assert!(within as u64 <= u64::from(rate) + 1, "{} in a second at rate {}", within, rate);
        }
    }
}
