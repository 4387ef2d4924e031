//! Benchmarks of the hot paths of `maas-net`: MAC parsing and display, subnet lookup by
//! address, subnet and IP range creation with their checks, and loading and saving a
//! topology.
//!
//! Run with `cargo bench -p maas-net --bench model`; `-- --test` runs every bench once.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net};
use maas_net::{IpRange, IpRangeKind, Mac, Subnet, SubnetId, Topology, VlanId};

/// The example topology shipped with the workspace.
const EXAMPLE_TOML: &str = include_str!("../../examples/topology.toml");

/// Topology sizes for the lookup benches.
const LOOKUP_SIZES: [u32; 3] = [10, 1_000, 10_000];
/// Topology sizes for the creation benches.
const CREATE_SIZES: [u32; 2] = [1_000, 10_000];
/// Entities created per timed batch in the creation benches; small next to every size above.
const CREATE_BATCH: u32 = 64;

/// The /24 with index `slot` in 10.0.0.0/8: 10.(slot / 256).(slot % 256).0/24.
fn slot_net(slot: u32) -> IpNet {
    assert!(slot < 1 << 16, "slot {slot} is outside 10.0.0.0/8");
    let addr = Ipv4Addr::from_bits(0x0a00_0000 | slot << 8);
    IpNet::V4(Ipv4Net::new(addr, 24).expect("24 is a valid prefix length"))
}

/// An address inside the /24 with index `slot`.
fn slot_addr(slot: u32, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from_bits(
        0x0a00_0000 | slot << 8 | u32::from(host),
    ))
}

/// The dynamic range .100-.199 of the subnet in `slot`.
fn dynamic_range(subnet: SubnetId, slot: u32) -> IpRange {
    IpRange::new(
        subnet,
        slot_addr(slot, 100),
        slot_addr(slot, 199),
        IpRangeKind::Dynamic,
    )
}

/// A topology with `n` IPv4 /24 subnets on the default VLAN, in the even slots 0, 2, 4, ...
/// so that every odd slot between them is free (a lookup miss, or room for one more). With
/// `ranges`, every subnet also holds a dynamic range .100-.199, as a PXE subnet does.
fn topology_with(n: u32, ranges: bool) -> (Topology, VlanId) {
    let mut topo = Topology::new();
    let vlan = topo
        .default_vlan(Topology::DEFAULT_FABRIC)
        .expect("the default fabric has its untagged VLAN");
    for i in 0..n {
        let slot = 2 * i;
        let subnet = topo
            .create_subnet(Subnet::new(slot_net(slot), vlan))
            .expect("even slots never overlap");
        if ranges {
            topo.create_ip_range(dynamic_range(subnet, slot))
                .expect("the subnet is empty");
        }
    }
    (topo, vlan)
}

/// The free odd slots, around the middle of a topology of `n`, that creation benches fill.
fn free_slots(n: u32) -> impl Iterator<Item = u32> {
    let first = 2 * (n / 2 - CREATE_BATCH) + 1;
    (0..CREATE_BATCH).map(move |k| first + 2 * k)
}

/// Times `create` over `iters` items taken in turn from `items`, a batch of at most
/// `items.len()` at a time; after each batch `undo` removes what was created, outside the
/// timed region, so the topology stays within one batch of its starting size.
fn time_creations<T: Clone, Id>(
    iters: u64,
    topo: &mut Topology,
    items: &[T],
    mut create: impl FnMut(&mut Topology, T) -> Id,
    mut undo: impl FnMut(&mut Topology, Id),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut created = Vec::with_capacity(items.len());
    let mut left = iters;
    while left > 0 {
        let batch = items.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let start = Instant::now();
        for item in &items[..batch] {
            created.push(create(topo, black_box(item.clone())));
        }
        total += start.elapsed();
        for id in created.drain(..) {
            undo(topo, id);
        }
        left -= batch as u64;
    }
    total
}

fn mac(c: &mut Criterion) {
    let mut group = c.benchmark_group("mac");
    for (spelling, text) in [
        ("colon", "52:54:00:ab:cd:ef"),
        ("dash", "52-54-00-AB-CD-EF"),
        ("dotted", "5254.00ab.cdef"),
        ("bare", "525400abcdef"),
    ] {
        group.bench_with_input(BenchmarkId::new("parse", spelling), text, |b, text| {
            b.iter(|| Mac::parse(black_box(text)).expect("a valid MAC address"));
        });
    }
    let mac = Mac::new([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
    group.bench_function("display", |b| b.iter(|| black_box(mac).to_string()));
    group.finish();
}

fn subnet_containing(c: &mut Criterion) {
    let mut group = c.benchmark_group("topology/subnet_containing");
    for n in LOOKUP_SIZES {
        let (topo, _) = topology_with(n, false);
        // The middle subnet, and the free slot just after it.
        let middle = 2 * (n / 2);
        let hit = slot_addr(middle, 77);
        let miss = slot_addr(middle + 1, 77);
        assert!(topo.subnet_containing(hit).is_some());
        assert_eq!(topo.subnet_containing(miss), None);

        group.bench_with_input(BenchmarkId::new("hit", n), &hit, |b, &ip| {
            b.iter(|| topo.subnet_containing(black_box(ip)));
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &miss, |b, &ip| {
            b.iter(|| topo.subnet_containing(black_box(ip)));
        });
    }
    group.finish();
}

fn create_subnet(c: &mut Criterion) {
    let mut group = c.benchmark_group("topology/create_subnet");
    for n in CREATE_SIZES {
        // A new subnet in a free slot; the existing subnets bare, or each with a range.
        for (name, ranges) in [("new", false), ("new_with_ranges", true)] {
            let (mut topo, vlan) = topology_with(n, ranges);
            let fresh: Vec<Subnet> = free_slots(n)
                .map(|slot| Subnet::new(slot_net(slot), vlan))
                .collect();
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter_custom(|iters| {
                    time_creations(
                        iters,
                        &mut topo,
                        &fresh,
                        |topo, subnet| topo.create_subnet(subnet).expect("the slot is free"),
                        |topo, id| {
                            topo.delete_subnet(id).expect("just created");
                        },
                    )
                });
            });
        }

        // A subnet that overlaps an existing one: refused, the topology unchanged.
        let (mut topo, vlan) = topology_with(n, false);
        let clash = Subnet::new(slot_net(2 * (n / 2)), vlan);
        group.bench_function(BenchmarkId::new("overlap", n), |b| {
            b.iter(|| {
                topo.create_subnet(black_box(clash.clone()))
                    .expect_err("the slot is taken")
            });
        });
    }
    group.finish();
}

fn create_ip_range(c: &mut Criterion) {
    let mut group = c.benchmark_group("topology/create_ip_range");
    for n in CREATE_SIZES {
        // n subnets with a range each, plus empty subnets in free slots to put new ranges in.
        let (mut topo, vlan) = topology_with(n, true);
        let fresh: Vec<IpRange> = free_slots(n)
            .map(|slot| {
                let subnet = topo
                    .create_subnet(Subnet::new(slot_net(slot), vlan))
                    .expect("the slot is free");
                dynamic_range(subnet, slot)
            })
            .collect();
        group.bench_function(BenchmarkId::new("new", n), |b| {
            b.iter_custom(|iters| {
                time_creations(
                    iters,
                    &mut topo,
                    &fresh,
                    |topo, range| topo.create_ip_range(range).expect("the subnet is empty"),
                    |topo, id| {
                        topo.delete_ip_range(id).expect("just created");
                    },
                )
            });
        });
    }
    group.finish();
}

fn serde(c: &mut Criterion) {
    let mut group = c.benchmark_group("topology");
    let topo: Topology = toml::from_str(EXAMPLE_TOML).expect("the example topology loads");
    let json = serde_json::to_string(&topo).expect("the example topology saves as JSON");

    group.bench_function("load_toml", |b| {
        b.iter(|| toml::from_str::<Topology>(black_box(EXAMPLE_TOML)).expect("loads"));
    });
    group.bench_function("save_toml", |b| {
        b.iter(|| toml::to_string(black_box(&topo)).expect("saves"));
    });
    group.bench_function("load_json", |b| {
        b.iter(|| serde_json::from_str::<Topology>(black_box(&json)).expect("loads"));
    });
    group.bench_function("save_json", |b| {
        b.iter(|| serde_json::to_string(black_box(&topo)).expect("saves"));
    });
    group.finish();
}

criterion_group!(
    benches,
    mac,
    subnet_containing,
    create_subnet,
    create_ip_range,
    serde
);
criterion_main!(benches);
