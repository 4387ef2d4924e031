//! Benchmarks of the allocation engine as the number of used addresses grows: AUTO allocation
//! (with and without excluded addresses), `next_addresses`, assignment by address, a DHCP
//! offer/request/release cycle and subnet statistics, in an IPv4 /8 with 10,000 ranges and in
//! an IPv6 /64.
//!
//! Next to them, `naive_allocate` times an in-bench baseline that is not part of maas-ipam: it
//! keeps the used addresses in an ordered set and, on every call, walks them together with the
//! ranges to find the smallest free block, as an allocator without a free-block index must. It
//! returns the same address as the engine.
//!
//! Run with `cargo bench -p maas-ipam --bench alloc`; `-- --test` runs every bench once.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use maas_ipam::{AddressKind, AssignOptions, AutoRequest, ClientKey, Ipam, Record, Requested};
use maas_ipam::{Snapshot, Timestamp};
use maas_net::ip::{self, Family};
use maas_net::{IpRange, IpRangeKind, Mac, Subnet, SubnetId, Topology};

/// Used addresses in the IPv4 /8.
const V4_SIZES: [u64; 4] = [0, 1_000, 100_000, 1_000_000];
/// Used addresses in the IPv6 /64.
const V6_SIZES: [u64; 2] = [0, 100_000];
/// Ranges in the IPv4 /8: one large dynamic range and 9,999 small ones.
const V4_RANGES: u32 = 10_000;
/// Addresses in each small range.
const SMALL_RANGE_LEN: u32 = 100;
/// Operations per timed batch; the batch is undone outside the timed region, so the engine
/// stays within one batch of its starting state.
const BATCH: usize = 64;

const NOW: Timestamp = Timestamp(1_700_000_000);

/// One subnet, its model and the addresses its used records take.
struct Layout {
    topo: Topology,
    subnet: SubnetId,
    family: Family,
    /// Where AUTO may allocate before any record: sorted, disjoint.
    universe: Vec<(u128, u128)>,
    /// Usable addresses AUTO may not take (ranges, gateway, DNS, the IPv6 low block).
    blocked: Vec<(u128, u128)>,
    usable: (u128, u128),
}

/// 10.0.0.0/8 with gateway .1, DNS .2, a dynamic range 10.0.1.0-10.0.255.255 and 9,999 ranges
/// of 100 addresses spread evenly over the rest, dynamic and reserved in turn.
fn v4_layout() -> Layout {
    let mut topo = Topology::new();
    let vlan = topo
        .default_vlan(Topology::DEFAULT_FABRIC)
        .expect("the default fabric has its untagged VLAN");
    let cidr: ipnet::IpNet = "10.0.0.0/8".parse().expect("a valid CIDR");
    let base: u32 = 0x0a00_0000;
    let at = |offset: u32| IpAddr::from(std::net::Ipv4Addr::from_bits(base + offset));
    let subnet = topo
        .create_subnet(Subnet {
            gateway_ip: Some(at(1)),
            dns_servers: vec![at(2)],
            ..Subnet::new(cidr, vlan)
        })
        .expect("an empty topology");
    let mut ranges = vec![(0x100, 0xffff, IpRangeKind::Dynamic)];
    let first = 0x1_0000;
    let spacing = ((1 << 24) - first) / (V4_RANGES - 1);
    for i in 0..V4_RANGES - 1 {
        let start = first + i * spacing;
        let kind = if i % 2 == 0 {
            IpRangeKind::Reserved
        } else {
            IpRangeKind::Dynamic
        };
        ranges.push((start, start + SMALL_RANGE_LEN - 1, kind));
    }
    for &(start, end, kind) in &ranges {
        topo.create_ip_range(IpRange::new(subnet, at(start), at(end), kind))
            .expect("the ranges are disjoint");
    }
    let mut blocked: Vec<(u128, u128)> = vec![(1, 1), (2, 2)];
    blocked.extend(
        ranges
            .iter()
            .map(|&(s, e, _)| (u128::from(s), u128::from(e))),
    );
    layout(topo, subnet, cidr, blocked)
}

/// fd00:77::/64 with gateway ::1 and a dynamic range fd00:77::1:0:0:0-fd00:77::1:0:ffff:ffff.
fn v6_layout() -> Layout {
    let mut topo = Topology::new();
    let vlan = topo
        .default_vlan(Topology::DEFAULT_FABRIC)
        .expect("the default fabric has its untagged VLAN");
    let cidr: ipnet::IpNet = "fd00:77::/64".parse().expect("a valid CIDR");
    let (first, _) = ip::bounds(cidr);
    let at = |offset: u128| ip::from_bits(Family::V6, first + offset);
    let subnet = topo
        .create_subnet(Subnet {
            gateway_ip: Some(at(1)),
            ..Subnet::new(cidr, vlan)
        })
        .expect("an empty topology");
    let (lo, hi) = (1 << 48, (1 << 48) + 0xffff_ffff);
    topo.create_ip_range(IpRange::new(subnet, at(lo), at(hi), IpRangeKind::Dynamic))
        .expect("the subnet is empty");
    // The engine keeps ::1 to ::ffff:ffff of a /64 out of AUTO, the gateway with them.
    let blocked = vec![(1, 0xffff_ffff), (lo, hi)];
    layout(topo, subnet, cidr, blocked)
}

fn layout(
    topo: Topology,
    subnet: SubnetId,
    cidr: ipnet::IpNet,
    blocked: Vec<(u128, u128)>,
) -> Layout {
    let (first, _) = ip::bounds(cidr);
    let mut blocked: Vec<(u128, u128)> = blocked
        .into_iter()
        .map(|(lo, hi)| (first + lo, first + hi))
        .collect();
    blocked.sort_unstable();
    let usable = ip::usable_bounds(cidr);
    let mut universe = Vec::new();
    let mut cursor = usable.0;
    for &(lo, hi) in &blocked {
        if lo > cursor {
            universe.push((cursor, lo - 1));
        }
        cursor = cursor.max(hi + 1);
    }
    if cursor <= usable.1 {
        universe.push((cursor, usable.1));
    }
    Layout {
        topo,
        subnet,
        family: Family::of_net(cidr),
        universe,
        blocked,
        usable,
    }
}

/// `n` addresses of the AUTO universe, evenly spaced, so that they cut its free space into
/// about `n` blocks of equal size.
fn spread(universe: &[(u128, u128)], n: u64) -> Vec<u128> {
    if n == 0 {
        return Vec::new();
    }
    let total: u128 = universe.iter().map(|&(lo, hi)| hi - lo + 1).sum();
    let stride = total / u128::from(n);
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut intervals = universe.iter();
    let mut current = intervals.next().copied();
    let mut skipped = 0; // addresses of the universe before `current`
    for i in 0..u128::from(n) {
        let index = i * stride + stride / 2;
        while let Some((lo, hi)) = current {
            if index < skipped + (hi - lo + 1) {
                break;
            }
            skipped += hi - lo + 1;
            current = intervals.next().copied();
        }
        let (lo, _) = current.expect("the index lies within the universe");
        out.push(lo + (index - skipped));
    }
    out
}

/// The in-bench baseline: used addresses in an ordered set, free blocks recomputed on every
/// call. Not maas-ipam.
struct Naive {
    usable: (u128, u128),
    blocked: Vec<(u128, u128)>,
    used: BTreeSet<u128>,
}

impl Naive {
    /// The first address of the smallest free block, lowest start among equals: walks every
    /// blocked interval and used address in order.
    fn choose(&self) -> Option<u128> {
        let mut best: Option<(u128, u128)> = None;
        let mut cursor = self.usable.0;
        let mut consider = |lo: u128, hi: u128| {
            if best.is_none_or(|(size, _)| hi - lo < size) {
                best = Some((hi - lo, lo));
            }
        };
        let mut blocked = self.blocked.iter().copied().peekable();
        let mut used = self.used.iter().map(|&a| (a, a)).peekable();
        loop {
            let next = match (blocked.peek(), used.peek()) {
                (Some(b), Some(u)) if b.0 <= u.0 => blocked.next(),
                (Some(_), Some(_)) | (None, Some(_)) => used.next(),
                (Some(_), None) => blocked.next(),
                (None, None) => None,
            };
            let Some((lo, hi)) = next else { break };
            if lo > cursor {
                consider(cursor, lo - 1);
            }
            cursor = cursor.max(hi.saturating_add(1));
        }
        if cursor <= self.usable.1 {
            consider(cursor, self.usable.1);
        }
        best.map(|(_, lo)| lo)
    }

    fn allocate(&mut self) -> u128 {
        let a = self.choose().expect("a free address");
        self.used.insert(a);
        a
    }
}

/// The engine with `n` used addresses, and what the benches need around it.
struct Fixture {
    ipam: Ipam,
    subnet: SubnetId,
    naive: Naive,
    /// The three addresses the next allocation would take first.
    exclude: AutoRequest,
    /// Free addresses to assign by address.
    free: Vec<IpAddr>,
}

/// Records `n` AUTO addresses, spread over the universe, by loading them as a store would.
fn fixture(layout: &Layout, n: u64) -> Fixture {
    let used = spread(&layout.universe, n);
    let records: Vec<Record> = used
        .iter()
        .map(|&a| Record {
            ip: ip::from_bits(layout.family, a),
            subnet: layout.subnet,
            kind: AddressKind::Auto,
            mac: None,
            owner: None,
            lease: None,
            created: NOW,
            updated: NOW,
        })
        .collect();
    let ipam = Ipam::from_snapshot(Snapshot {
        topology: Some(layout.topo.to_doc()),
        records,
        bindings: Vec::new(),
    })
    .expect("the records lie in the subnet");
    let subnet = layout.subnet;
    let total: u128 = layout.universe.iter().map(|&(lo, hi)| hi - lo + 1).sum();
    let stats = ipam
        .statistics(subnet, false, false)
        .expect("a known subnet");
    assert_eq!(stats.num_available, total - u128::from(n));
    let naive = Naive {
        usable: layout.usable,
        blocked: layout.blocked.clone(),
        used: used.into_iter().collect(),
    };
    let next = ipam
        .next_addresses(subnet, &AutoRequest::new().count(3))
        .expect("free addresses");
    assert_eq!(
        naive.choose().map(|a| ip::from_bits(layout.family, a)),
        next.first().copied(),
        "the baseline picks what the engine picks"
    );
    let exclude = next
        .iter()
        .fold(AutoRequest::new(), |req, &ip| req.exclude(ip));
    // Free addresses in the largest blocks, away from the best-fit end.
    let free = ipam
        .next_addresses(subnet, &AutoRequest::new().count(4096))
        .expect("free addresses")
        .split_off(4096 - BATCH);
    Fixture {
        ipam,
        subnet,
        naive,
        exclude,
        free,
    }
}

/// Times `op` `iters` times, in batches of at most [`BATCH`]; after each batch `undo` gets
/// what the batch returned, outside the timed region.
fn time_batches<S, T>(
    iters: u64,
    state: &mut S,
    mut op: impl FnMut(&mut S, usize) -> T,
    mut undo: impl FnMut(&mut S, Vec<T>),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    let mut done = Vec::with_capacity(BATCH);
    while left > 0 {
        let batch = BATCH.min(usize::try_from(left).unwrap_or(BATCH));
        let start = Instant::now();
        for k in 0..batch {
            done.push(op(state, k));
        }
        total += start.elapsed();
        undo(state, std::mem::take(&mut done));
        left -= batch as u64;
    }
    total
}

/// Releases what a batch allocated, and drops the queued changes.
fn release_all(fx: &mut Fixture, batch: Vec<Vec<IpAddr>>) {
    for ip in batch.into_iter().flatten() {
        fx.ipam.release(ip).expect("just allocated");
    }
    fx.ipam.take_changes();
}

/// Every engine bench on a fixture of `n` used addresses, built on first use.
fn engine_benches(group: &mut BenchmarkGroup<'_, WallTime>, layout: &Layout, n: u64) {
    let mut slot: Option<Fixture> = None;
    let fixture_of = |slot: &mut Option<Fixture>| {
        if slot.is_none() {
            *slot = Some(fixture(layout, n));
        }
    };

    group.bench_function(BenchmarkId::new("allocate", n), |b| {
        fixture_of(&mut slot);
        let fx = slot.as_mut().expect("built");
        let request = AutoRequest::new();
        b.iter_custom(|iters| {
            time_batches(
                iters,
                fx,
                |fx, _| {
                    fx.ipam
                        .allocate(fx.subnet, black_box(&request), NOW)
                        .expect("a free address")
                },
                release_all,
            )
        });
    });

    group.bench_function(BenchmarkId::new("allocate_exclude3", n), |b| {
        fixture_of(&mut slot);
        let fx = slot.as_mut().expect("built");
        let request = fx.exclude.clone();
        b.iter_custom(|iters| {
            time_batches(
                iters,
                fx,
                |fx, _| {
                    fx.ipam
                        .allocate(fx.subnet, black_box(&request), NOW)
                        .expect("a free address")
                },
                release_all,
            )
        });
    });

    group.bench_function(BenchmarkId::new("next_addresses", n), |b| {
        fixture_of(&mut slot);
        let fx = slot.as_ref().expect("built");
        let request = AutoRequest::new();
        b.iter(|| {
            fx.ipam
                .next_addresses(fx.subnet, black_box(&request))
                .expect("a free address")
        });
    });

    group.bench_function(BenchmarkId::new("assign", n), |b| {
        fixture_of(&mut slot);
        let fx = slot.as_mut().expect("built");
        let options = AssignOptions::default();
        b.iter_custom(|iters| {
            time_batches(
                iters,
                fx,
                |fx, k| {
                    let ip = fx.free[k];
                    fx.ipam
                        .assign(black_box(ip), Requested::UserReserved, &options, NOW)
                        .expect("a free address");
                    vec![ip]
                },
                release_all,
            )
        });
    });

    group.bench_function(BenchmarkId::new("dhcp_cycle", n), |b| {
        fixture_of(&mut slot);
        let fx = slot.as_mut().expect("built");
        let client = ClientKey::Mac(Mac::new([0x52, 0x54, 0x00, 0x77, 0x00, 0x01]));
        b.iter_custom(|iters| {
            time_batches(
                iters,
                fx,
                |fx, _| {
                    let ip = fx
                        .ipam
                        .dhcp_offer(fx.subnet, black_box(&client), NOW, 30)
                        .expect("a free address");
                    fx.ipam
                        .dhcp_request(ip, &client, NOW, 3600)
                        .expect("the client's offer");
                    fx.ipam
                        .dhcp_release(ip, &client)
                        .expect("the client's lease");
                },
                |fx, _| {
                    fx.ipam.take_changes();
                },
            )
        });
    });

    group.bench_function(BenchmarkId::new("statistics", n), |b| {
        fixture_of(&mut slot);
        let fx = slot.as_ref().expect("built");
        b.iter(|| {
            fx.ipam
                .statistics(black_box(fx.subnet), false, false)
                .expect("a known subnet")
        });
    });

    // The baseline costs milliseconds per call at the larger sizes: fewer samples.
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("naive_allocate", n), |b| {
        fixture_of(&mut slot);
        let fx = slot.as_mut().expect("built");
        b.iter_custom(|iters| {
            time_batches(
                iters,
                &mut fx.naive,
                |naive, _| naive.allocate(),
                |naive, batch| {
                    for a in batch {
                        naive.used.remove(&a);
                    }
                },
            )
        });
    });
    group.sample_size(100);
}

fn ipv4(c: &mut Criterion) {
    let layout = v4_layout();
    let mut group = c.benchmark_group("ipam_v4");
    for n in V4_SIZES {
        engine_benches(&mut group, &layout, n);
    }
    group.finish();
}

fn ipv6(c: &mut Criterion) {
    let layout = v6_layout();
    let mut group = c.benchmark_group("ipam_v6");
    for n in V6_SIZES {
        engine_benches(&mut group, &layout, n);
    }
    group.finish();
}

criterion_group!(benches, ipv4, ipv6);
criterion_main!(benches);
