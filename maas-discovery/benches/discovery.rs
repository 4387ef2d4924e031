//! Frames parsed (and observed) per second: the hot path of passive discovery.
//!
//! `arp/parse+observe` is the figure the crate is held to: ARP frames from 1,024 hosts, each
//! decoded and passed through the neighbour table, on one core.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use maas_discovery::wire::{Arp, ArpOp, Ndp, parse_frame};
use maas_discovery::{Observer, ObserverConfig};
use maas_net::{Mac, Timestamp};

const HOSTS: u32 = 1024;

fn arp_frames() -> Vec<Vec<u8>> {
    (0..HOSTS)
        .map(|i| {
            let [_, _, b, c] = i.to_be_bytes();
            let arp = Arp {
                operation: ArpOp::Request,
                sender_mac: Mac::new([0x52, 0x54, 0, 0x77, b, c]),
                sender_ip: Ipv4Addr::from(0x0a4d_8000 + i),
                target_mac: Mac::ZERO,
                target_ip: Ipv4Addr::new(10, 77, 128, 1),
            };
            arp.emit_frame(0)
        })
        .collect()
}

/// The real mDNS response avahi-daemon sent for `node-a` (from the captured testdata).
fn mdns_frame() -> Vec<u8> {
    let pcap = include_bytes!("../testdata/peers.pcap");
    let mut rest = &pcap[24..];
    while rest.len() >= 16 {
        let len = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
        let frame = &rest[16..16 + len];
        if let Ok(Some(f)) = parse_frame(frame)
            && matches!(f.payload, maas_discovery::Payload::Mdns(_))
        {
            return frame.to_vec();
        }
        rest = &rest[16 + len..];
    }
    panic!("no mDNS response in the testdata");
}

fn bench(c: &mut Criterion) {
    let frames = arp_frames();
    let mut g = c.benchmark_group("arp");
    g.throughput(Throughput::Elements(u64::from(HOSTS)));
    g.bench_function("parse", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(parse_frame(black_box(f)).unwrap());
            }
        });
    });
    g.bench_function("parse+observe", |b| {
        let mut observer = Observer::new(ObserverConfig::new("eth0"));
        let t0 = Instant::now();
        let mut tick = 0u64;
        b.iter(|| {
            // Time moves a millisecond per batch: the table is refreshed, not re-created.
            tick += 1;
            let now = t0 + Duration::from_millis(tick);
            let wall = Timestamp(1_700_000_000 + tick / 1000);
            for f in &frames {
                let frame = parse_frame(black_box(f)).unwrap().unwrap();
                observer.handle_frame(now, wall, &frame);
            }
            while let Some(e) = observer.poll_event() {
                black_box(e);
            }
        });
    });
    g.finish();

    let mut g = c.benchmark_group("other");
    g.throughput(Throughput::Elements(1));
    let dad = Ndp::dad_frame(
        Mac::new([0x52, 0x54, 0, 0x77, 0, 1]),
        "fd77:130::1".parse().unwrap(),
        0,
    );
    g.bench_function("ndp_parse", |b| {
        b.iter(|| black_box(parse_frame(black_box(&dad)).unwrap()));
    });
    let mdns = mdns_frame();
    g.bench_function("mdns_parse", |b| {
        b.iter(|| black_box(parse_frame(black_box(&mdns)).unwrap()));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
