//! The store suite: the same tests against every [`Store`]: [`MemoryStore`], `RedbStore`
//! (feature `redb`) and `PgStore` (feature `postgres`, on a throwaway PostgreSQL server).

#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
mod pg_conflicts;
#[cfg(feature = "postgres")]
pub(crate) mod pg_server;

use std::net::IpAddr;
use std::time::Duration;

use maas_ipam::{
    AddressKind, Change, ClientKey, Durable, Ipam, Lease, LeaseState, MemoryStore, Record,
    Snapshot, Store, Timestamp,
};
use maas_net::{IpRange, IpRangeKind, Mac, Subnet, SubnetId, Topology, TopologyDoc};

use crate::{NOW, ip};

/// Where a store keeps its state: a fresh one, and the same one opened again.
pub(crate) trait Backend {
    /// The store.
    type Store: Store;
    /// An empty store of its own.
    fn create(&mut self) -> Self::Store;
    /// What `store` held, opened again after `store` is dropped.
    fn reopen(&mut self, store: Self::Store) -> Self::Store;
}

/// Memory forgets everything on drop: "reopening" keeps the same store.
pub(crate) struct Memory;

impl Backend for Memory {
    type Store = MemoryStore;

    fn create(&mut self) -> MemoryStore {
        MemoryStore::new()
    }

    fn reopen(&mut self, store: MemoryStore) -> MemoryStore {
        store
    }
}

#[cfg(feature = "redb")]
pub(crate) struct Redb(std::path::PathBuf);

#[cfg(feature = "redb")]
impl Redb {
    pub(crate) fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("maas-ipam-suite-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }
}

#[cfg(feature = "redb")]
impl Drop for Redb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(feature = "redb")]
impl Backend for Redb {
    type Store = maas_ipam::RedbStore;

    fn create(&mut self) -> Self::Store {
        maas_ipam::RedbStore::open(self.0.join("ipam.redb")).unwrap()
    }

    fn reopen(&mut self, store: Self::Store) -> Self::Store {
        drop(store);
        self.create()
    }
}

/// The suite's tests for one backend, in a module of their own.
macro_rules! store_suite {
    ($backend:expr) => {
        #[test]
        fn every_change_round_trips() {
            if let Some(b) = $backend {
                super::every_change_round_trips(b);
            }
        }

        #[test]
        fn reopen_keeps_everything() {
            if let Some(b) = $backend {
                super::reopen_keeps_everything(b);
            }
        }

        #[test]
        fn matches_memory_store_over_many_batches() {
            if let Some(b) = $backend {
                super::matches_memory_store_over_many_batches(b);
            }
        }

        #[test]
        fn durable_state_survives_close_and_reopen() {
            if let Some(b) = $backend {
                super::durable_state_survives_close_and_reopen(b);
            }
        }

        #[test]
        fn durable_group_commit_loses_nothing() {
            if let Some(b) = $backend {
                super::durable_group_commit_loses_nothing(b);
            }
        }
    };
}

mod memory {
    store_suite!(Some(super::Memory));
}

#[cfg(feature = "redb")]
mod redb {
    store_suite!(Some(super::Redb::new()));
}

#[cfg(feature = "postgres")]
mod postgres {
    store_suite!(super::pg::Pg::new());
}

pub(crate) fn topology() -> (Topology, SubnetId) {
    let mut topo = Topology::new();
    let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
    let subnet = topo
        .create_subnet(Subnet {
            gateway_ip: Some(ip("10.77.0.1")),
            ..Subnet::new("10.77.0.0/16".parse().unwrap(), vlan)
        })
        .unwrap();
    topo.create_subnet(Subnet::new("fd77::/64".parse().unwrap(), vlan))
        .unwrap();
    topo.create_ip_range(IpRange::new(
        subnet,
        ip("10.77.1.0"),
        ip("10.77.200.255"),
        IpRangeKind::Dynamic,
    ))
    .unwrap();
    (topo, subnet)
}

fn topology_doc() -> TopologyDoc {
    topology().0.to_doc()
}

pub(crate) fn mac(n: u8) -> Mac {
    Mac::from([0x52, 0x54, 0, 0x77, 0, n])
}

pub(crate) fn record(at: &str, kind: AddressKind, client: Option<ClientKey>) -> Record {
    Record {
        ip: ip(at),
        subnet: SubnetId::new(1),
        kind,
        mac: Some(mac(1)),
        owner: Some("machine-1".to_owned()),
        lease: client.map(|client| Lease {
            client,
            state: LeaseState::Bound,
            expires: Timestamp(1_700_003_600),
        }),
        created: Timestamp(1_700_000_000),
        updated: Timestamp(1_700_000_001),
    }
}

/// A batch with every kind of change, IPv4 and IPv6, both client key kinds, and an address
/// with both a held and a DISCOVERED record.
pub(crate) fn every_change() -> Vec<Change> {
    let by_mac = ClientKey::Mac(mac(7));
    let by_id = ClientKey::client_id(vec![0, 1, 0xfe, 0xff]);
    vec![
        Change::Topology(topology_doc()),
        Change::PutRecord(record("10.77.1.5", AddressKind::Dhcp, Some(by_mac.clone()))),
        Change::PutRecord(record("10.77.1.5", AddressKind::Discovered, None)),
        Change::PutRecord(record("10.77.0.9", AddressKind::Sticky, None)),
        Change::PutRecord(record("10.77.0.10", AddressKind::Auto, None)),
        Change::PutRecord(record("fd77::5", AddressKind::Dhcp, Some(by_id.clone()))),
        Change::PutRecord(record("fd77::6", AddressKind::UserReserved, None)),
        Change::RemoveRecord {
            ip: ip("10.77.0.10"),
            discovered: false,
        },
        Change::PutBinding {
            client: by_mac,
            ip: ip("10.77.1.5"),
        },
        Change::PutBinding {
            client: by_id.clone(),
            ip: ip("fd77::5"),
        },
        Change::PutBinding {
            client: ClientKey::Mac(mac(8)),
            ip: ip("10.77.1.6"),
        },
        Change::RemoveBinding {
            client: ClientKey::Mac(mac(8)),
        },
        // Replacing a record keeps one.
        Change::PutRecord(record("fd77::5", AddressKind::Dhcp, Some(by_id))),
    ]
}

/// A snapshot in a canonical order, for stores whose order differs from the memory store's.
pub(crate) fn sorted(mut snapshot: Snapshot) -> Snapshot {
    snapshot
        .records
        .sort_by_key(|r| (r.ip, r.kind == AddressKind::Discovered));
    snapshot.bindings.sort();
    snapshot
}

pub(crate) fn expected(changes: &[Change]) -> Snapshot {
    let mut memory = MemoryStore::new();
    memory.commit(changes).unwrap();
    sorted(memory.load().unwrap())
}

fn every_change_round_trips(mut backend: impl Backend) {
    let mut store = backend.create();
    assert_eq!(store.load().unwrap(), Snapshot::default());
    let changes = every_change();
    store.commit(&changes).unwrap();
    let loaded = sorted(store.load().unwrap());
    assert_eq!(loaded, expected(&changes));
    assert_eq!(loaded.records.len(), 5);
    assert_eq!(loaded.bindings.len(), 2);
    assert!(loaded.topology.is_some());

    let mut applied = Snapshot::default();
    maas_ipam::apply(&mut applied, &changes);
    assert_eq!(sorted(applied), loaded);
}

fn reopen_keeps_everything(mut backend: impl Backend) {
    let changes = every_change();
    let mut store = backend.create();
    store.commit(&changes[..4]).unwrap();
    store.commit(&changes[4..]).unwrap();
    store.commit(&[]).unwrap();
    let mut store = backend.reopen(store);
    assert_eq!(sorted(store.load().unwrap()), expected(&changes));
    // And it goes on taking changes.
    let at = ip("10.77.1.5");
    store
        .commit(&[Change::RemoveRecord {
            ip: at,
            discovered: true,
        }])
        .unwrap();
    let mut store = backend.reopen(store);
    let loaded = store.load().unwrap();
    assert_eq!(loaded.records.iter().filter(|r| r.ip == at).count(), 1);
}

fn matches_memory_store_over_many_batches(mut backend: impl Backend) {
    let mut store = backend.create();
    let mut memory = MemoryStore::new();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for _ in 0..20 {
        let batch: Vec<Change> = (0..next(50) + 1)
            .map(|_| {
                let host = next(40);
                let at: IpAddr = format!("10.77.1.{host}").parse().unwrap();
                let client = ClientKey::Mac(mac(u8::try_from(next(20)).unwrap()));
                // One holder per address, as in one engine: a store shared by several may
                // refuse a record that changes its holder (see the PostgreSQL tests).
                let holder = ClientKey::Mac(mac(u8::try_from(host).unwrap()));
                match next(4) {
                    0 => Change::PutRecord(Record {
                        ip: at,
                        ..record("10.77.1.1", AddressKind::Dhcp, Some(holder))
                    }),
                    1 => Change::RemoveRecord {
                        ip: at,
                        discovered: false,
                    },
                    2 => Change::PutBinding { client, ip: at },
                    _ => Change::RemoveBinding { client },
                }
            })
            .collect();
        store.commit(&batch).unwrap();
        memory.commit(&batch).unwrap();
    }
    assert_eq!(
        sorted(store.load().unwrap()),
        sorted(memory.load().unwrap())
    );
}

pub(crate) fn client(n: u32) -> ClientKey {
    let [a, b, c, d] = n.to_be_bytes();
    ClientKey::Mac(Mac::from([0x02, a, b, c, d, 0x01]))
}

pub(crate) fn lease(
    ipam: &mut Ipam,
    subnet: SubnetId,
    client: &ClientKey,
) -> Result<IpAddr, maas_ipam::Error> {
    let offered = ipam.dhcp_offer(subnet, client, NOW, 30)?;
    ipam.dhcp_request(offered, client, NOW, 3600)?;
    Ok(offered)
}

fn durable_state_survives_close_and_reopen(mut backend: impl Backend) {
    let (topo, subnet) = topology();
    let ipam = Durable::with_topology(backend.create(), topo).unwrap();
    let leased: Vec<(ClientKey, IpAddr)> = (0..10)
        .map(|n| {
            let c = client(n);
            let at = ipam.apply(|ipam| lease(ipam, subnet, &c)).unwrap();
            (c, at)
        })
        .collect();
    let store = backend.reopen(ipam.close().unwrap());

    // A seed topology does not replace a stored one.
    let ipam = Durable::with_topology(store, Topology::new()).unwrap();
    ipam.read(|ipam| {
        assert!(ipam.topology().subnet(subnet).is_some());
        for (c, at) in &leased {
            let lease = ipam.record(*at).unwrap().lease.as_ref().unwrap();
            assert_eq!(&lease.client, c);
            assert_eq!(lease.state, LeaseState::Bound);
        }
    });
    let fresh = ipam.apply(|ipam| lease(ipam, subnet, &client(99))).unwrap();
    assert!(leased.iter().all(|(_, at)| *at != fresh));
}

/// Four threads lease concurrently through one writer with a commit delay, so commits carry
/// many operations; every acknowledged lease is in the store after a reopen.
fn durable_group_commit_loses_nothing(mut backend: impl Backend) {
    let (topo, subnet) = topology();
    let ipam = Durable::with_topology(backend.create(), topo).unwrap();
    ipam.set_commit_delay(Duration::from_millis(2));
    let acked: Vec<(ClientKey, IpAddr)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4u32)
            .map(|t| {
                let ipam = &ipam;
                scope.spawn(move || {
                    let tickets: Vec<_> = (0..25)
                        .map(|n| {
                            let c = client(t * 1000 + n);
                            let (at, ticket) = ipam.submit(|ipam| lease(ipam, subnet, &c)).unwrap();
                            (c, at, ticket)
                        })
                        .collect();
                    tickets
                        .into_iter()
                        .map(|(c, at, ticket)| {
                            ipam.wait(ticket).unwrap();
                            (c, at)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut store = backend.reopen(ipam.close().unwrap());
    let loaded = store.load().unwrap();
    assert_eq!(loaded.records.len(), 100);
    // Each record implies its client's binding, as a manager loaded from the store shows.
    let mut reloaded = Ipam::from_snapshot(loaded.clone()).unwrap();
    for (c, at) in &acked {
        let record = loaded.records.iter().find(|r| r.ip == *at).unwrap();
        assert_eq!(record.lease.as_ref().map(|l| &l.client), Some(c));
        assert_eq!(reloaded.dhcp_offer(subnet, c, NOW, 30).unwrap(), *at);
    }
}
