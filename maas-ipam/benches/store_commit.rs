//! Commits per second of [`PgStore`] next to [`RedbStore`], in one run on one machine: batches
//! of 1 and of 64 new DHCP records, each batch one durable commit (fsync on for both).
//!
//! - `store_commit/redb/B`, `store_commit/postgres/B`: [`Store::commit`] of one batch of B
//!   records. Criterion's time is per commit; its throughput is records per second.
//! - `durable_lease/redb_pipelined/64`, `durable_lease/postgres_pipelined/64`: DHCP leases
//!   through [`Durable`] with up to 64 tickets in flight, so that group commit gathers them.
//!
//! PostgreSQL is a throwaway server (`initdb`, `pg_ctl`) on a Unix socket in the system's
//! temporary directory, which also holds the redb file (put `TMPDIR` on the disk you want to
//! measure: a tmpfs makes syncs free). Without PostgreSQL, only redb is measured. Run with
//! `cargo bench -p maas-ipam --features postgres --bench store_commit`.

#[allow(dead_code)]
mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::{NOW, TempDir, config, record, topology};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use maas_ipam::{Change, ClientKey, Durable, PgStore, RedbStore, Store};
use maas_net::{Mac, SubnetId};

#[path = "../tests/integration/store/pg_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod pg_server;

/// Times `iters` commits of `batch` new records each.
fn commits(store: &mut impl Store, next: &mut u32, batch: u32, iters: u64) -> Duration {
    let mut timed = Duration::ZERO;
    for _ in 0..iters {
        let changes: Vec<Change> = (0..batch)
            .map(|_| {
                *next = next.wrapping_add(1);
                Change::PutRecord(record(*next))
            })
            .collect();
        let start = Instant::now();
        store.commit(&changes).expect("commit");
        timed += start.elapsed();
    }
    timed
}

/// `iters` leases through `ipam` with up to 64 tickets in flight.
fn pipelined<S: Store>(
    ipam: &Durable<S>,
    subnet: SubnetId,
    next: &mut u64,
    iters: u64,
) -> Duration {
    let start = Instant::now();
    let mut in_flight = VecDeque::with_capacity(64);
    for _ in 0..iters {
        *next += 1;
        let [_, _, _, a, b, c, d, e] = next.to_be_bytes();
        let client = ClientKey::Mac(Mac::from([0x02, a, b, c, d, e]));
        let (_, ticket) = ipam
            .submit(|ipam| {
                let ip = ipam.dhcp_offer(subnet, &client, NOW, 30)?;
                ipam.dhcp_request(ip, &client, NOW, 86_400)
            })
            .expect("lease");
        in_flight.push_back(ticket);
        if in_flight.len() >= 64
            && let Some(oldest) = in_flight.pop_front()
        {
            ipam.wait(oldest).expect("commit");
        }
    }
    if let Some(&last) = in_flight.back() {
        ipam.wait(last).expect("commit");
    }
    start.elapsed()
}

fn stores(c: &mut Criterion) {
    let server = pg_server::PgServer::start();
    let dir = TempDir::new("redb");
    let mut group = c.benchmark_group("store_commit");
    for batch in [1u32, 64] {
        group.throughput(Throughput::Elements(u64::from(batch)));
        let mut redb = RedbStore::open(dir.0.join(format!("commit-{batch}.redb"))).expect("open");
        let mut next = 0;
        group.bench_with_input(BenchmarkId::new("redb", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| commits(&mut redb, &mut next, batch, iters));
        });
        if let Some(server) = &server {
            let mut pg = PgStore::connect(&server.create_database()).expect("connect");
            let mut next = 0;
            group.bench_with_input(BenchmarkId::new("postgres", batch), &batch, |b, &batch| {
                b.iter_custom(|iters| commits(&mut pg, &mut next, batch, iters));
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("durable_lease");
    group.throughput(Throughput::Elements(1));
    let (topo, subnet) = topology();
    let redb = RedbStore::open(dir.0.join("durable.redb")).expect("open");
    let ipam = Durable::with_topology(redb, topo.clone()).expect("start");
    let mut next = 0;
    group.bench_function(BenchmarkId::new("redb_pipelined", 64), |b| {
        b.iter_custom(|iters| pipelined(&ipam, subnet, &mut next, iters));
    });
    if let Some(server) = &server {
        let pg = PgStore::connect(&server.create_database()).expect("connect");
        let ipam = Durable::with_topology(pg, topo).expect("start");
        let mut next = 0;
        group.bench_function(BenchmarkId::new("postgres_pipelined", 64), |b| {
            b.iter_custom(|iters| pipelined(&ipam, subnet, &mut next, iters));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = stores
}
criterion_main!(benches);
