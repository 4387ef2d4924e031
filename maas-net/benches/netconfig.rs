//! Rendering a 16-interface machine's network configuration: working out the plan (gateway
//! choice, routes, name servers) and writing it as netplan version 2 and as version 1.
//!
//! The machine: two 802.3ad bonds of two ports each, a bridge over the first bond, eight VLAN
//! interfaces (four on each bond) with static addresses and static routes, and a spare port
//! on no VLAN; source routing on, so every secondary gateway gets a table.
//!
//! Run with `cargo bench -p maas-net --bench netconfig`; `-- --test` runs every bench once.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net};
use maas_net::netplan::{self, RenderOptions};
use maas_net::{
    BondMode, BondParams, BridgeParams, Interface, Link, Mac, Machine, MachineId, StaticRoute,
    Subnet, Topology, Vlan,
};

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn net24(c: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new(Ipv4Addr::new(10, 77, c, 0), 24).expect("a /24"))
}

/// A topology with eight tagged VLANs and their subnets, and the 16-interface machine.
fn machine16() -> (Topology, MachineId) {
    let mut topo = Topology::new();
    let fabric = Topology::DEFAULT_FABRIC;
    let untagged = topo.default_vlan(fabric).expect("the default VLAN");
    let pxe = topo
        .create_subnet(Subnet {
            gateway_ip: Some(v4(10, 77, 0, 1)),
            dns_servers: vec![v4(10, 77, 0, 53)],
            ..Subnet::new(net24(0), untagged)
        })
        .expect("the PXE subnet");
    let mac = |n: u8| Mac::new([0x52, 0x54, 0x00, 0x77, 0x16, n]);
    let mut machine = Machine::new("big");
    for n in 0..4u8 {
        machine = machine.with_interface(Interface::physical(
            format!("eth{n}"),
            mac(n),
            Some(untagged),
        ));
    }
    machine = machine
        .with_interface(Interface::bond(
            "bond0",
            ["eth0", "eth1"],
            Some(untagged),
            BondParams::with_mode(BondMode::Ieee8023ad),
        ))
        .with_interface(Interface::bond(
            "bond1",
            ["eth2", "eth3"],
            Some(untagged),
            BondParams::with_mode(BondMode::ActiveBackup),
        ))
        .with_interface(
            Interface::bridge("br0", ["bond0"], Some(untagged), BridgeParams::default())
                .with_link(Link::fixed(pxe, v4(10, 77, 0, 10))),
        );
    for n in 0..8u8 {
        let vid = 100 + u16::from(n);
        let vlan = topo.create_vlan(Vlan::new(fabric, vid)).expect("a VLAN");
        let subnet = topo
            .create_subnet(Subnet {
                gateway_ip: Some(v4(10, 77, 10 + n, 1)),
                dns_servers: vec![v4(10, 77, 10 + n, 53)],
                ..Subnet::new(net24(10 + n), vlan)
            })
            .expect("a subnet");
        let destination = topo
            .create_subnet(Subnet::new(net24(100 + n), untagged))
            .expect("a destination");
        topo.create_static_route(StaticRoute::new(
            subnet,
            destination,
            v4(10, 77, 10 + n, 254),
        ))
        .expect("a route");
        let parent = if n < 4 { "bond0" } else { "bond1" };
        machine = machine.with_interface(
            Interface::vlan(format!("{parent}.{vid}"), parent, vlan)
                .with_link(Link::fixed(subnet, v4(10, 77, 10 + n, 10))),
        );
    }
    machine = machine.with_interface(Interface::physical("eth4", mac(4), None));
    assert_eq!(machine.interfaces.len(), 16);
    let id = topo.create_machine(machine).expect("a valid machine");
    (topo, id)
}

fn render(c: &mut Criterion) {
    let (topo, id) = machine16();
    let mut options = RenderOptions::default();
    options.source_routing(true).dns_server(v4(10, 77, 0, 2));
    let mut group = c.benchmark_group("netconfig/16_interfaces");
    group.bench_function("plan", |b| {
        b.iter(|| netplan::plan(black_box(&topo), id, &options).expect("renders"));
    });
    group.bench_function("v2", |b| {
        b.iter(|| {
            netplan::plan(black_box(&topo), id, &options)
                .expect("renders")
                .to_v2()
        });
    });
    group.bench_function("v1", |b| {
        b.iter(|| {
            netplan::plan(black_box(&topo), id, &options)
                .expect("renders")
                .to_v1()
        });
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
