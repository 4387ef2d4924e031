//! Tests of the neighbour table: bindings, moves, flip-flops, conflicts from claims and
//! bindings, VLANs, NDP, mDNS names, eviction and the events' serialised form.

#![allow(clippy::unwrap_used)]
use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::wire::{Arp, Mdns, Ndp};

const A: Mac = Mac::new([2, 0, 0, 0, 0, 0xa]);
const B: Mac = Mac::new([2, 0, 0, 0, 0, 0xb]);
const IP: Ipv4Addr = Ipv4Addr::new(10, 77, 130, 5);

struct Clock {
    t0: Instant,
    secs: u64,
}

impl Clock {
    fn now(&self) -> (Instant, Timestamp) {
        (
            self.t0 + Duration::from_secs(self.secs),
            Timestamp(1_000_000 + self.secs),
        )
    }
}

fn arp(op: ArpOp, mac: Mac, sender: Ipv4Addr, target: Ipv4Addr) -> Frame {
    Frame {
        source: mac,
        destination: Mac::BROADCAST,
        vid: 0,
        payload: Payload::Arp(Arp {
            operation: op,
            sender_mac: mac,
            sender_ip: sender,
            target_mac: Mac::ZERO,
            target_ip: target,
        }),
    }
}

fn request(mac: Mac, ip: Ipv4Addr) -> Frame {
    arp(ArpOp::Request, mac, ip, Ipv4Addr::new(10, 77, 130, 1))
}

fn kinds(o: &mut Observer) -> Vec<EventKind> {
    std::iter::from_fn(|| o.poll_event())
        .map(|e| e.event)
        .collect()
}

fn setup() -> (Observer, Clock) {
    (
        Observer::new(ObserverConfig::new("veth0")),
        Clock {
            t0: Instant::now(),
            secs: 0,
        },
    )
}

#[test]
fn new_then_refreshed_once_per_interval() {
    let (mut o, mut c) = setup();
    let (now, wall) = c.now();
    o.handle_frame(now, wall, &request(A, IP));
    let e = o.poll_event().unwrap();
    assert_eq!(e.event, EventKind::New);
    assert_eq!((e.ip, e.mac, e.vid), (IpAddr::V4(IP), A, 0));
    assert_eq!(e.interface, "veth0");
    for s in [1, 300, 599] {
        c.secs = s;
        let (now, wall) = c.now();
        o.handle_frame(now, wall, &request(A, IP));
    }
    assert!(kinds(&mut o).is_empty());
    c.secs = 600;
    let (now, wall) = c.now();
    o.handle_frame(now, wall, &request(A, IP));
    let e = o.poll_event().unwrap();
    assert_eq!(e.event, EventKind::Refreshed);
    assert_eq!(e.first_seen, Timestamp(1_000_000));
    assert_eq!(e.last_seen, Timestamp(1_000_600));
}

#[test]
fn gratuitous_moves_at_once_and_back_is_flip_flop() {
    let (mut o, mut c) = setup();
    let (now, wall) = c.now();
    o.handle_frame(now, wall, &request(A, IP));
    c.secs = 1;
    let (now, wall) = c.now();
    o.handle_frame(now, wall, &arp(ArpOp::Request, B, IP, IP));
    let events: Vec<Event> = std::iter::from_fn(|| o.poll_event()).collect();
    assert_eq!(events[1].event, EventKind::Moved);
    assert_eq!(events[1].mac, B);
    assert_eq!(events[1].previous_mac, Some(A));
    c.secs = 30;
    let (now, wall) = c.now();
    o.handle_frame(now, wall, &request(A, IP));
    let e = o.poll_event().unwrap();
    assert_eq!(e.event, EventKind::FlipFlop);
    assert_eq!((e.mac, e.previous_mac), (A, Some(B)));
}

#[test]
fn second_mac_within_window_conflicts_and_after_moves() {
    let (mut o, mut c) = setup();
    let (now, wall) = c.now();
    o.handle_frame(now, wall, &request(A, IP));
    c.secs = 2;
    let (now, wall) = c.now();
    o.handle_frame(now, wall, &request(B, IP));
    o.handle_frame(now, wall, &request(B, IP));
    assert_eq!(kinds(&mut o), [EventKind::New, EventKind::Conflict]);
    let held = o.get(0, IpAddr::V4(IP)).unwrap();
    assert_eq!(held.mac, A);
    assert_eq!(
        held.last_seen,
        Timestamp(1_000_000),
        "B's frames are not A's"
    );
    c.secs = 20;
    let (now, wall) = c.now();
    o.handle_frame(now, wall, &request(B, IP));
    assert_eq!(kinds(&mut o), [EventKind::Moved]);
}

#[test]
fn probes_are_claims() {
    let (mut o, mut c) = setup();
    let (now, wall) = c.now();
    o.handle_frame(
        now,
        wall,
        &arp(ArpOp::Request, A, Ipv4Addr::UNSPECIFIED, IP),
    );
    assert!(o.is_empty());
    assert!(kinds(&mut o).is_empty());
    // The same device then announces it: a binding, no conflict.
    c.secs = 1;
    let (now, wall) = c.now();
    o.handle_frame(now, wall, &arp(ArpOp::Request, A, IP, IP));
    assert_eq!(kinds(&mut o), [EventKind::New]);
    // Another device probes for the address in use.
    o.handle_frame(
        now,
        wall,
        &arp(ArpOp::Request, B, Ipv4Addr::UNSPECIFIED, IP),
    );
    let e = o.poll_event().unwrap();
    assert_eq!(e.event, EventKind::Conflict);
    assert_eq!((e.mac, e.previous_mac), (B, Some(A)));
}

#[test]
fn racing_probes_conflict() {
    let (mut o, c) = setup();
    let (now, wall) = c.now();
    o.handle_frame(
        now,
        wall,
        &arp(ArpOp::Request, A, Ipv4Addr::UNSPECIFIED, IP),
    );
    o.handle_frame(
        now,
        wall,
        &arp(ArpOp::Request, B, Ipv4Addr::UNSPECIFIED, IP),
    );
    assert_eq!(kinds(&mut o), [EventKind::Conflict]);
}

#[test]
fn vlans_are_separate() {
    let (mut o, c) = setup();
    let (now, wall) = c.now();
    o.handle_frame(now, wall, &request(A, IP));
    let mut tagged = request(B, IP);
    tagged.vid = 5;
    o.handle_frame(now, wall, &tagged);
    assert_eq!(kinds(&mut o), [EventKind::New, EventKind::New]);
    assert_eq!(o.get(5, IpAddr::V4(IP)).unwrap().mac, B);
}

#[test]
fn ndp_and_dad() {
    let (mut o, c) = setup();
    let (now, wall) = c.now();
    let v6: Ipv6Addr = "fd77:130::5".parse().unwrap();
    let na = Frame {
        source: A,
        destination: Mac::new([0x33, 0x33, 0, 0, 0, 1]),
        vid: 0,
        payload: Payload::Ndp(Ndp {
            kind: NdpKind::Advertisement {
                router: false,
                solicited: false,
                override_flag: true,
            },
            source_ip: v6,
            destination_ip: "ff02::1".parse().unwrap(),
            target: v6,
            link_layer: Some(A),
        }),
    };
    o.handle_frame(now, wall, &na);
    assert_eq!(kinds(&mut o), [EventKind::New]);
    let dad = Frame {
        source: B,
        destination: Mac::new([0x33, 0x33, 0xff, 0, 0, 5]),
        vid: 0,
        payload: Payload::Ndp(Ndp {
            kind: NdpKind::Solicitation,
            source_ip: Ipv6Addr::UNSPECIFIED,
            destination_ip: "ff02::1:ff00:5".parse().unwrap(),
            target: v6,
            link_layer: None,
        }),
    };
    o.handle_frame(now, wall, &dad);
    assert_eq!(kinds(&mut o), [EventKind::Conflict]);
}

#[test]
fn mdns_names_hosts() {
    let (mut o, c) = setup();
    let (now, wall) = c.now();
    let other = Ipv4Addr::new(10, 77, 130, 9);
    let frame = Frame {
        source: A,
        destination: Mac::new([1, 0, 0x5e, 0, 0, 0xfb]),
        vid: 0,
        payload: Payload::Mdns(Mdns {
            source_ip: IpAddr::V4(IP),
            records: vec![
                MdnsRecord::Address {
                    host: "node-a".into(),
                    ip: IpAddr::V4(IP),
                },
                MdnsRecord::Address {
                    host: "printer".into(),
                    ip: IpAddr::V4(other),
                },
            ],
        }),
    };
    o.handle_frame(now, wall, &frame);
    let events: Vec<Event> = std::iter::from_fn(|| o.poll_event()).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].event, EventKind::Hostname);
    assert_eq!(events[1].hostname.as_deref(), Some("node-a"));
    // The printer is named before it is seen: its name arrives with NEW.
    o.handle_frame(now, wall, &request(B, other));
    let events: Vec<Event> = std::iter::from_fn(|| o.poll_event()).collect();
    assert_eq!(events[0].event, EventKind::New);
    assert_eq!(events[1].event, EventKind::Hostname);
    assert_eq!(events[1].hostname.as_deref(), Some("printer"));
    // The same name again is not news.
    o.handle_frame(now, wall, &frame);
    assert!(kinds(&mut o).is_empty());
}

#[test]
fn stale_entries_are_evicted_and_capacity_holds() {
    let mut config = ObserverConfig::new("x");
    config.max_entries(100).entry_ttl_secs(60);
    let mut o = Observer::new(config);
    let t0 = Instant::now();
    for i in 0..1000u32 {
        let ip = Ipv4Addr::from(0x0a4d_8200 + i);
        o.handle_frame(
            t0 + Duration::from_millis(u64::from(i)),
            Timestamp(0),
            &request(A, ip),
        );
        assert!(o.len() <= 100);
    }
    assert!(o.stats().evicted >= 900);
    o.handle_timeout(t0 + Duration::from_secs(120));
    assert!(o.is_empty());
}

#[test]
fn events_serialise_with_the_documented_fields() {
    let (mut o, c) = setup();
    let (now, wall) = c.now();
    o.handle_frame(now, wall, &request(A, IP));
    let json = serde_json::to_value(o.poll_event().unwrap()).unwrap();
    for field in [
        "ip",
        "mac",
        "previous_mac",
        "vid",
        "hostname",
        "interface",
        "first_seen",
        "last_seen",
        "event",
    ] {
        assert!(json.get(field).is_some(), "{field} missing in {json}");
    }
    assert_eq!(json["event"], "NEW");
    assert_eq!(json["mac"], "02:00:00:00:00:0a");
}
