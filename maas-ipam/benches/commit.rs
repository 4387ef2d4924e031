//! Durable lease commits per second: DHCP leases (offer then request) made durable through
//! [`Durable`] on a [`RedbStore`] in a temporary directory, with group commit.
//!
//! - `durable_lease/pipelined/W`: one thread keeps up to W tickets in flight ([`Durable::submit`]
//!   then [`Durable::wait`] on the oldest), as a DHCP server sending each ACK when its ticket is
//!   durable does. W = 1 is one disk sync per lease.
//! - `durable_lease/threads/N`: N threads each calling [`Durable::apply`] in a loop.
//! - `durable_lease/memory_pipelined/1024`: the same as pipelined/1024 on a [`MemoryStore`]:
//!   the cost of the engine, the lock and the queue without a disk.
//! - `redb_commit/batch/B`: [`RedbStore::commit`] of one batch of B new records, for context:
//!   what a single durable write transaction costs.
//!
//! Run with `cargo bench -p maas-ipam --bench commit`; `-- --test` runs every bench once. The
//! store goes in the system's temporary directory, or in `MAAS_IPAM_BENCH_DIR` if set (put it
//! on the disk you want to measure: a tmpfs makes syncs free).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use maas_ipam::{
    AddressKind, Change, ClientKey, Durable, Ipam, Lease, LeaseState, MemoryStore, Record,
    RedbStore, Store, Timestamp,
};
use maas_net::{IpRange, IpRangeKind, Mac, Subnet, SubnetId, Topology};

/// The engine's clock, fixed: the leases never expire during a run.
const NOW: Timestamp = Timestamp(1_700_000_000);

/// A directory of its own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let base =
            std::env::var_os("MAAS_IPAM_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = base.join(format!(
            "maas-ipam-bench-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the bench directory");
        Self(dir)
    }

    fn store(&self) -> RedbStore {
        RedbStore::open(self.0.join("ipam.redb")).expect("open the store")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 10.0.0.0/8 with a dynamic range over nearly all of it: room for every lease of a run.
fn topology() -> (Topology, SubnetId) {
    let mut topo = Topology::new();
    let vlan = topo
        .default_vlan(Topology::DEFAULT_FABRIC)
        .expect("the default fabric has its untagged VLAN");
    let subnet = topo
        .create_subnet(Subnet {
            gateway_ip: Some("10.0.0.1".parse().expect("an address")),
            ..Subnet::new("10.0.0.0/8".parse().expect("a CIDR"), vlan)
        })
        .expect("an empty topology takes the subnet");
    topo.create_ip_range(IpRange::new(
        subnet,
        "10.0.1.0".parse().expect("an address"),
        "10.255.255.254".parse().expect("an address"),
        IpRangeKind::Dynamic,
    ))
    .expect("the range fits the subnet");
    (topo, subnet)
}

/// A durable manager on `store`, and a source of new client MACs.
struct Bench<S: Store> {
    ipam: Durable<S>,
    subnet: SubnetId,
    clients: AtomicU64,
}

impl<S: Store> Bench<S> {
    fn new(store: S) -> Self {
        let (topo, subnet) = topology();
        Self {
            ipam: Durable::with_topology(store, topo).expect("start the manager"),
            subnet,
            clients: AtomicU64::new(0),
        }
    }

    fn next_client(&self) -> Mac {
        let n = self.clients.fetch_add(1, Ordering::Relaxed);
        let [_, _, _, a, b, c, d, e] = n.to_be_bytes();
        Mac::from([0x02, a, b, c, d, e])
    }

    /// One lease: DHCPDISCOVER then DHCPREQUEST for a new client.
    fn lease(&self, ipam: &mut Ipam) -> Result<IpAddr, maas_ipam::Error> {
        let client = ClientKey::Mac(self.next_client());
        let ip = ipam.dhcp_offer(self.subnet, &client, NOW, 30)?;
        ipam.dhcp_request(ip, &client, NOW, 86_400)?;
        Ok(ip)
    }

    /// `iters` leases with up to `window` tickets in flight.
    fn pipelined(&self, window: usize, iters: u64) -> Duration {
        let start = Instant::now();
        let mut in_flight = VecDeque::with_capacity(window);
        for _ in 0..iters {
            let (_, ticket) = self.ipam.submit(|ipam| self.lease(ipam)).expect("lease");
            in_flight.push_back(ticket);
            if in_flight.len() >= window
                && let Some(oldest) = in_flight.pop_front()
            {
                self.ipam.wait(oldest).expect("commit");
            }
        }
        // Tickets become durable in order: the last one covers the rest.
        if let Some(&last) = in_flight.back() {
            self.ipam.wait(last).expect("commit");
        }
        start.elapsed()
    }

    /// `iters` leases from `threads` threads calling `apply`.
    fn threads(&self, threads: u64, iters: u64) -> Duration
    where
        S: Sync,
    {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..threads {
                let share = iters / threads + u64::from(t < iters % threads);
                scope.spawn(move || {
                    for _ in 0..share {
                        self.ipam.apply(|ipam| self.lease(ipam)).expect("lease");
                    }
                });
            }
        });
        start.elapsed()
    }
}

fn durable_lease(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_lease");
    group.throughput(Throughput::Elements(1));
    for window in [1usize, 64, 1024] {
        let dir = TempDir::new("pipelined");
        let bench = Bench::new(dir.store());
        group.bench_with_input(
            BenchmarkId::new("pipelined", window),
            &window,
            |b, &window| b.iter_custom(|iters| bench.pipelined(window, iters)),
        );
    }
    for threads in [1u64, 4, 16] {
        let dir = TempDir::new("threads");
        let bench = Bench::new(dir.store());
        group.bench_with_input(
            BenchmarkId::new("threads", threads),
            &threads,
            |b, &threads| b.iter_custom(|iters| bench.threads(threads, iters)),
        );
    }
    let bench = Bench::new(MemoryStore::new());
    group.bench_function(BenchmarkId::new("memory_pipelined", 1024), |b| {
        b.iter_custom(|iters| bench.pipelined(1024, iters));
    });
    group.finish();
}

/// A new DHCP record for the `n`th address of 10.0.0.0/8.
fn record(n: u32) -> Record {
    let client = ClientKey::Mac(Mac::from([0x02, 0, 0, 0, 0, 0]));
    Record {
        ip: IpAddr::from((0x0a00_0000 | (n & 0x00ff_ffff)).to_be_bytes()),
        subnet: SubnetId::new(0),
        kind: AddressKind::Dhcp,
        mac: Some(Mac::from([0x02, 0, 0, 0, 0, 0])),
        owner: None,
        lease: Some(Lease {
            client,
            state: LeaseState::Bound,
            expires: NOW.plus(86_400),
        }),
        created: NOW,
        updated: NOW,
    }
}

fn redb_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("redb_commit");
    for batch in [1u32, 1000] {
        let dir = TempDir::new("raw");
        let mut store = dir.store();
        let mut next = 0u32;
        group.throughput(Throughput::Elements(u64::from(batch)));
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let changes: Vec<Change> = (0..batch)
                        .map(|_| {
                            next = next.wrapping_add(1);
                            Change::PutRecord(record(next))
                        })
                        .collect();
                    let start = Instant::now();
                    store.commit(&changes).expect("commit");
                    timed += start.elapsed();
                }
                timed
            });
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = durable_lease, redb_commit
}
criterion_main!(benches);
