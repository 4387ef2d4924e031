//! Benchmarks of the DHCP server engine on in-memory maas-ipam leases: a whole DHCPv4
//! exchange (DISCOVER -> OFFER, REQUEST -> ACK) for a PXE client, with decoding,
//! classification, lease choice, reply building and encoding; and a DHCPv6 Solicit ->
//! Advertise for a UEFI PXE client.
//!
//! Run with `cargo bench -p maas-pxe --features ipam --bench server`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::sync::Mutex;

use criterion::{Criterion, criterion_group, criterion_main};
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

criterion_group!(benches, bench_v4, bench_v6);
criterion_main!(benches);
