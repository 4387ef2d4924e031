//! Benchmarks of the DHCP server engine on in-memory maas-ipam leases: a whole DHCPv4
//! exchange (DISCOVER -> OFFER, REQUEST -> ACK) for a PXE client, with decoding,
//! classification, lease choice, reply building and encoding; and a DHCPv6 Solicit ->
//! Advertise for a UEFI PXE client. The `fresh` benches run a whole exchange for a new
//! client each time, as perfdhcp does, against a lease table that grows to 50,000 clients
//! (a fresh server for each 50,000).
//!
//! Run with `cargo bench -p maas-pxe --features ipam --bench server`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dhcproto::v6::{DhcpOption, DhcpOptions, IANA, Message, MessageType};
use dhcproto::{Decodable, Encodable};
use maas_ipam::Ipam;
use maas_net::{IpRange, IpRangeKind, Subnet, Timestamp, Topology};
use maas_pxe::dhcp::server::{Received, Received6, Server4, Server6, ServerConfig, ServerPort};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
const NOW: Timestamp = Timestamp(1_800_000_000);
/// Distinct clients cycled through, so the lease table holds this many clients.
const CLIENTS: u32 = 50_000;

fn topology() -> Topology {
    let mut t = Topology::new();
    let fabric = t.fabrics().next().expect("the default fabric").0;
    let vlan = t.default_vlan(fabric).expect("its VLAN");
    t.update_vlan(vlan, |v| v.dhcp_on = true).expect("DHCP on");
    let s4 = t
        .create_subnet(Subnet {
            gateway_ip: Some(IpAddr::V4(SERVER)),
            dns_servers: vec![IpAddr::V4(SERVER)],
            ..Subnet::new("10.77.0.0/16".parse().expect("a CIDR"), vlan)
        })
        .expect("a subnet");
    t.create_ip_range(IpRange::new(
        s4,
        "10.77.16.0".parse().expect("an address"),
        "10.77.255.254".parse().expect("an address"),
        IpRangeKind::Dynamic,
    ))
    .expect("a range");
    let s6 = t
        .create_subnet(Subnet::new("fd77::/64".parse().expect("a CIDR"), vlan))
        .expect("a subnet");
    t.create_ip_range(IpRange::new(
        s6,
        "fd77::1:0".parse().expect("an address"),
        "fd77::1:ffff".parse().expect("an address"),
        IpRangeKind::Dynamic,
    ))
    .expect("a range");
    t
}

/// An x86-64 UEFI PXE request (option 93 = 7, vendor class PXEClient) from client `n`.
fn request(kind: u8, n: u32, requested: Option<Ipv4Addr>) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&n.to_be_bytes());
    b[28..34].copy_from_slice(&[
        0x52,
        0x54,
        0,
        n.to_be_bytes()[1],
        n.to_be_bytes()[2],
        n.to_be_bytes()[3],
    ]);
    b.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
    b.extend_from_slice(&[93, 2, 0, 7]);
    b.extend_from_slice(&[55, 8, 1, 3, 6, 15, 43, 60, 66, 67]);
    b.extend_from_slice(&[60, 32]);
    b.extend_from_slice(b"PXEClient:Arch:00007:UNDI:003000");
    if let Some(ip) = requested {
        b.extend_from_slice(&[50, 4]);
        b.extend_from_slice(&ip.octets());
        b.extend_from_slice(&[54, 4]);
        b.extend_from_slice(&SERVER.octets());
    }
    b.push(255);
    b
}

fn rx(bytes: &[u8]) -> Received<'_> {
    Received {
        bytes,
        source: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
        local: SERVER,
        interface: 1,
        port: ServerPort::Dhcp,
    }
}

fn bench_v4(c: &mut Criterion) {
    let t = topology();
    let server = Server4::new(ServerConfig::default(), t.clone(), Mutex::new(Ipam::new(t)))
        .expect("a valid configuration");
    let discovers: Vec<Vec<u8>> = (0..CLIENTS).map(|n| request(1, n, None)).collect();
    // Prime every client once, so each exchange measured is a client coming back, with its
    // REQUEST built in advance.
    let requests: Vec<Vec<u8>> = discovers
        .iter()
        .enumerate()
        .map(|(n, d)| {
            let offer = server.handle(NOW, &rx(d));
            let bytes = offer.transmit.expect("an offer").bytes;
            let yiaddr = Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]);
            request(3, n as u32, Some(yiaddr))
        })
        .collect();
    let mut group = c.benchmark_group("server4");
    let mut i = 0usize;
    group.bench_function("discover_offer_request_ack_pxe", |b| {
        b.iter(|| {
            let n = i % discovers.len();
            i += 1;
            let offer = server.handle(NOW, &rx(&discovers[n]));
            let ack = server.handle(NOW, &rx(&requests[n]));
            black_box((offer.transmit, ack.transmit))
        })
    });
    let mut i = 0usize;
    group.bench_function("discover_offer_pxe", |b| {
        b.iter(|| {
            let n = i % discovers.len();
            i += 1;
            black_box(server.handle(NOW, &rx(&discovers[n])).transmit)
        })
    });
    group.finish();
}

fn bench_v6(c: &mut Criterion) {
    let t = topology();
    let server = Server6::new(ServerConfig::default(), t.clone(), Mutex::new(Ipam::new(t)))
        .expect("a valid configuration");
    let solicit = include_bytes!("../testdata/edk2-x64-pxe-solicit6.bin");
    let rx = Received6 {
        bytes: solicit,
        source: SocketAddrV6::new(
            "fe80::5054:ff:fe77:1".parse().expect("an address"),
            546,
            0,
            2,
        ),
        local: SERVER6,
        interface: 2,
    };
    c.bench_function("server6/solicit_advertise_pxe", |b| {
        b.iter(|| black_box(server.handle(NOW, &rx).transmit))
    });
}

/// A perfdhcp-like DHCPv6 client `n`: a DUID-LLT, one IA_NA.
fn duid(n: u32) -> Vec<u8> {
    let mut duid = vec![0, 1, 0, 1, 0x30, 0x39, 0x30, 0x39, 0x52, 0x54];
    duid.extend_from_slice(&n.to_be_bytes());
    duid
}

fn solicit6(n: u32) -> Vec<u8> {
    let mut msg = Message::new_with_id(MessageType::Solicit, [1, 2, 3]);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::ClientId(duid(n)));
    opts.insert(DhcpOption::ElapsedTime(0));
    opts.insert(DhcpOption::IANA(IANA {
        id: 1,
        t1: 0,
        t2: 0,
        opts: DhcpOptions::new(),
    }));
    msg.to_vec().expect("an encodable Solicit")
}

/// The Request that follows `advertise` for client `n`.
fn request6(n: u32, advertise: &[u8]) -> Vec<u8> {
    let advertise = Message::from_bytes(advertise).expect("a decodable Advertise");
    let mut msg = Message::new_with_id(MessageType::Request, [1, 2, 4]);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::ClientId(duid(n)));
    for option in advertise.opts().iter() {
        if matches!(option, DhcpOption::ServerId(_) | DhcpOption::IANA(_)) {
            opts.insert(option.clone());
        }
    }
    opts.insert(DhcpOption::ElapsedTime(0));
    msg.to_vec().expect("an encodable Request")
}

/// Runs `exchange` for `iters` new clients, a fresh server (from `fresh`) for each
/// [`CLIENTS`]; `exchange` returns the time its server spent (building the client's
/// datagrams is not counted).
fn fresh<S>(iters: u64, fresh: impl Fn() -> S, exchange: impl Fn(&S, u32) -> Duration) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let server = fresh();
        let n = left.min(u64::from(CLIENTS));
        for client in 0..n {
            total += exchange(&server, client as u32);
        }
        left -= n;
    }
    total
}

fn bench_fresh(c: &mut Criterion) {
    let t = topology();
    let mut group = c.benchmark_group("fresh");
    group.bench_function("server4/discover_offer_request_ack", |b| {
        b.iter_custom(|iters| {
            fresh(
                iters,
                || {
                    Server4::new(
                        ServerConfig::default(),
                        t.clone(),
                        Mutex::new(Ipam::new(t.clone())),
                    )
                    .expect("a valid configuration")
                },
                |server, n| {
                    let discover = request(1, n, None);
                    let start = Instant::now();
                    let offer = server.handle(NOW, &rx(&discover));
                    let mut spent = start.elapsed();
                    let bytes = offer.transmit.expect("an offer").bytes;
                    let yiaddr = Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]);
                    let req = request(3, n, Some(yiaddr));
                    let start = Instant::now();
                    let ack = server.handle(NOW, &rx(&req));
                    black_box(ack.transmit.expect("an ack"));
                    spent += start.elapsed();
                    spent
                },
            )
        })
    });
    group.bench_function("server6/solicit_advertise_request_reply", |b| {
        b.iter_custom(|iters| {
            fresh(
                iters,
                || {
                    Server6::new(
                        ServerConfig::default(),
                        t.clone(),
                        Mutex::new(Ipam::new(t.clone())),
                    )
                    .expect("a valid configuration")
                },
                |server, n| {
                    let source =
                        SocketAddrV6::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2), 546, 0, 2);
                    let solicit = solicit6(n);
                    let rx = |bytes| Received6 {
                        bytes,
                        source,
                        local: SERVER6,
                        interface: 2,
                    };
                    let start = Instant::now();
                    let advertise = server.handle(NOW, &rx(&solicit));
                    let mut spent = start.elapsed();
                    let advertise = advertise.transmit.expect("an Advertise").bytes;
                    let request = request6(n, &advertise);
                    let start = Instant::now();
                    let reply = server.handle(NOW, &rx(&request));
                    black_box(reply.transmit.expect("a Reply"));
                    spent += start.elapsed();
                    spent
                },
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_v4, bench_v6, bench_fresh);
criterion_main!(benches);
