//! Durable lease commits per second: DHCP leases (offer then request) made durable through
//! [`Durable`] on a [`RedbStore`] in a temporary directory, with group commit.
//!
//! - `durable_lease/pipelined/W`: one thread keeps up to W tickets in flight ([`Durable::submit`]
//!   then [`Durable::wait`] on the oldest), as a DHCP server sending each ACK when its ticket is
//!   durable does. W = 1 is one disk sync per lease.
//! - `durable_lease/threads/N`: N threads each calling [`Durable::apply`] in a loop.
//! - `durable_lease/memory_pipelined/1024`: the same as pipelined/1024 on a [`MemoryStore`]:
//!   the cost of the engine, the lock and the queue without a disk.
//! - `redb_commit/journal/B` and `redb_commit/tables/B`: [`RedbStore::commit`] of one batch of
//!   B new records, for context: a journal entry (the default store) against a write
//!   transaction (a store without a journal).
//! - `redb_checkpoint/leases/10000`: writing 10,000 journaled leases into the tables at once.
//!
//! Run with `cargo bench -p maas-ipam --bench commit`; `-- --test` runs every bench once. The
//! store goes in the system's temporary directory, or in `MAAS_IPAM_BENCH_DIR` if set (put it
//! on the disk you want to measure: a tmpfs makes syncs free).

#[allow(dead_code)]
mod common;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{NOW, TempDir, config, record, topology};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use maas_ipam::{Change, ClientKey, Durable, Ipam, MemoryStore, RedbStore, Store};
use maas_net::{Mac, SubnetId};

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

fn redb_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("redb_commit");
    // `journal`: the default store, where a batch is one journal entry (an append and a data
    // sync); `tables`: a store without a journal, where a batch is a write transaction.
    for (name, journal) in [("journal", RedbStore::DEFAULT_JOURNAL_BYTES), ("tables", 0)] {
        for batch in [1u32, 1000] {
            let dir = TempDir::new("raw");
            let mut store =
                RedbStore::open_with_journal(dir.0.join("ipam.redb"), journal).expect("open");
            let mut next = 0u32;
            group.throughput(Throughput::Elements(u64::from(batch)));
            group.bench_with_input(BenchmarkId::new(name, batch), &batch, |b, &batch| {
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
    }
    group.finish();
}

/// A checkpoint: the records of N journaled leases (each put twice, as an offer and a lease
/// do) written into the tables in one write transaction. `leases` has clients that come in
/// the order of their keys (MACs counting up); `random_clients` has DHCPv6 DUIDs in no order,
/// as perfdhcp sends them. `random_clients_binding_rows` adds the binding row each lease had
/// before the bindings a record implies were left out (format 2), for comparison.
fn redb_checkpoint(c: &mut Criterion) {
    let mut group = c.benchmark_group("redb_checkpoint");
    let leases = 10_000u32;
    group.throughput(Throughput::Elements(u64::from(leases)));
    for (name, random, binding_rows) in [
        ("leases", false, false),
        ("random_clients", true, false),
        ("random_clients_binding_rows", true, true),
    ] {
        let dir = TempDir::new("checkpoint");
        let mut store =
            RedbStore::open_with_journal(dir.0.join("ipam.redb"), 64 << 20).expect("open");
        let mut next = 0u32;
        group.bench_function(BenchmarkId::new(name, leases), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    for _ in 0..leases / 8 {
                        let changes: Vec<Change> = (0..8)
                            .flat_map(|_| {
                                next = next.wrapping_add(1);
                                let client = if random {
                                    // A DUID-LLT whose link-layer part is scrambled.
                                    let h = next.wrapping_mul(0x9e37_79b9).to_be_bytes();
                                    let mut duid = vec![0, 1, 0, 1, 0x30, 0x39, 0x30, 0x39];
                                    duid.extend_from_slice(&[0x52, 0x54, h[0], h[1], h[2], h[3]]);
                                    ClientKey::client_id(duid)
                                } else {
                                    let [_, a, b, c] = next.to_be_bytes();
                                    ClientKey::Mac(Mac::from([0x02, 0, 0, a, b, c]))
                                };
                                let mut rec = record(next);
                                if let Some(lease) = rec.lease.as_mut() {
                                    lease.client = client.clone();
                                }
                                let ip = rec.ip;
                                let binding =
                                    binding_rows.then_some(Change::PutBinding { client, ip });
                                [Change::PutRecord(rec.clone()), Change::PutRecord(rec)]
                                    .into_iter()
                                    .chain(binding)
                            })
                            .collect();
                        store.commit(&changes).expect("commit");
                    }
                    let start = Instant::now();
                    store.checkpoint().expect("checkpoint");
                    timed += start.elapsed();
                }
                timed
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = durable_lease, redb_commit, redb_checkpoint
}
criterion_main!(benches);
