//! What only the PostgreSQL store has: migrations, the constraints that refuse an address held
//! twice (see also `pg_conflicts`), load order, conflicts with other writers, and a property test against the memory
//! store.

use std::net::IpAddr;
use std::sync::Arc;

use maas_ipam::postgres::{Client, NoTls};
use maas_ipam::{
    AddressKind, Change, ClientKey, Lease, LeaseState, MemoryStore, PgStore, PgStoreError, Record,
    Store, Timestamp,
};
use maas_net::{Mac, SubnetId};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use super::pg_server::PgServer;
use super::{Backend, every_change, expected, record, sorted};
use crate::ip;

/// A fresh database on the shared server.
pub(crate) struct Pg {
    /// Held so that the server runs while the database is in use.
    _server: Arc<PgServer>,
    url: String,
}

impl Pg {
    /// `None` (after saying why) when no PostgreSQL server can be started here.
    pub(crate) fn new() -> Option<Self> {
        let server = PgServer::shared()?;
        let url = server.create_database();
        Some(Self {
            _server: server,
            url,
        })
    }

    fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).unwrap()
    }
}

impl Backend for Pg {
    type Store = PgStore;

    fn create(&mut self) -> PgStore {
        PgStore::connect(&self.url).unwrap()
    }

    fn reopen(&mut self, store: PgStore) -> PgStore {
        drop(store);
        self.create()
    }
}

#[test]
fn migrations_are_recorded_once_however_often_and_concurrently_one_connects() {
    let Some(pg) = Pg::new() else { return };
    // Several processes' worth of connections at once, on a new database.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| drop(PgStore::connect(&pg.url).unwrap()));
        }
    });
    drop(PgStore::connect(&pg.url).unwrap());
    let rows = pg
        .client()
        .query(
            "SELECT component, version, description, applied <= now()
             FROM maas_schema ORDER BY version",
            &[],
        )
        .unwrap();
    let versions: Vec<(String, i32, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(3)))
        .collect();
    let want: Vec<(String, i32, bool)> = (1..=PgStore::SCHEMA_VERSION)
        .map(|v| ("ipam".to_owned(), v, true))
        .collect();
    assert_eq!(versions, want);
    assert!(!rows[0].get::<_, String>(2).is_empty());
}

#[test]
fn a_newer_schema_is_refused_naming_both_versions() {
    let Some(pg) = Pg::new() else { return };
    drop(PgStore::connect(&pg.url).unwrap());
    let newer = PgStore::SCHEMA_VERSION + 7;
    pg.client()
        .execute(
            "INSERT INTO maas_schema (component, version, description) VALUES ('ipam', $1, 'future')",
            &[&newer],
        )
        .unwrap();
    let err = PgStore::connect(&pg.url).unwrap_err();
    assert!(
        matches!(err, PgStoreError::SchemaTooNew { found, supported, .. }
            if found == newer && supported == PgStore::SCHEMA_VERSION),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&format!("schema version {newer}")), "{text}");
    assert!(
        text.contains(&format!("up to {}", PgStore::SCHEMA_VERSION)),
        "{text}"
    );
    // Another component's versions are its own business.
    pg.client()
        .execute("DELETE FROM maas_schema WHERE version = $1", &[&newer])
        .unwrap();
    pg.client()
        .execute(
            "INSERT INTO maas_schema (component, version, description) VALUES ('other', $1, 'x')",
            &[&newer],
        )
        .unwrap();
    drop(PgStore::connect(&pg.url).unwrap());
}

/// The database is the backstop against an address handed out twice: whatever writes to it,
/// it keeps one held record per address, and a host address with another netmask is not a
/// way around that.
#[test]
fn the_database_refuses_an_address_held_twice() {
    let Some(pg) = Pg::new() else { return };
    let mut store = PgStore::connect(&pg.url).unwrap();
    store.commit(&every_change()).unwrap();
    let mut client = pg.client();
    let insert = |client: &mut Client, at: &str, discovered: bool, kind: &str| {
        client.execute(
            "INSERT INTO ipam_records (ip, discovered, subnet, kind, created, updated, record)
             VALUES ($1::text::inet, $2, 1, $3, now(), now(), '\\x00')",
            &[&at, &discovered, &kind],
        )
    };
    for (at, discovered, kind, constraint) in [
        ("10.77.1.5", false, "DHCP", "ipam_records_pkey"),
        ("10.77.1.5/24", false, "STICKY", "ipam_records_host_address"),
        ("fd77::6/64", false, "AUTO", "ipam_records_host_address"),
        ("10.77.3.3", true, "DHCP", "ipam_records_discovered_kind"),
    ] {
        let err = insert(&mut client, at, discovered, kind).unwrap_err();
        let db = err.as_db_error().unwrap();
        assert_eq!(db.constraint(), Some(constraint), "{at}: {db}");
    }
    // A DISCOVERED record beside a held one is allowed, as in the engine.
    insert(&mut client, "10.77.0.9", true, "DISCOVERED").unwrap();
    // What was refused changed nothing.
    client
        .execute(
            "DELETE FROM ipam_records WHERE ip = '10.77.0.9' AND discovered",
            &[],
        )
        .unwrap();
    assert_eq!(sorted(store.load().unwrap()), expected(&every_change()));
}

#[test]
fn query_columns_describe_the_records() {
    let Some(pg) = Pg::new() else { return };
    let mut store = PgStore::connect(&pg.url).unwrap();
    store.commit(&every_change()).unwrap();
    let row = pg
        .client()
        .query_one(
            "SELECT host(ip), subnet, kind, mac::text, owner, lease_client, lease_state,
                extract(epoch FROM lease_expires)::bigint, extract(epoch FROM created)::bigint
             FROM ipam_records WHERE ip = '10.77.1.5' AND NOT discovered",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "10.77.1.5");
    assert_eq!(row.get::<_, i64>(1), 1);
    assert_eq!(row.get::<_, String>(2), "DHCP");
    assert_eq!(row.get::<_, String>(3), "52:54:00:77:00:01");
    assert_eq!(row.get::<_, String>(4), "machine-1");
    assert_eq!(row.get::<_, String>(5), "52:54:00:77:00:07");
    assert_eq!(row.get::<_, String>(6), "bound");
    assert_eq!(row.get::<_, i64>(7), 1_700_003_600);
    assert_eq!(row.get::<_, i64>(8), 1_700_000_000);
    let topology: String = pg
        .client()
        .query_one("SELECT jsonb_typeof(doc) FROM ipam_topology", &[])
        .unwrap()
        .get(0);
    assert_eq!(topology, "object");
}

/// A batch that meets another transaction's uncommitted write to the same row waits for it,
/// is aborted by PostgreSQL when that commits, and is tried again: the store's state wins.
#[test]
fn a_batch_aborted_by_a_concurrent_writer_is_retried() {
    let Some(pg) = Pg::new() else { return };
    let mut store = PgStore::connect(&pg.url).unwrap();
    let held = record("10.77.1.5", AddressKind::Sticky, None);
    store.commit(&[Change::PutRecord(held.clone())]).unwrap();
    let mut other = pg.client();
    let mut txn = other.transaction().unwrap();
    txn.execute("UPDATE ipam_records SET owner = 'other'", &[])
        .unwrap();
    let replaced = Record {
        owner: Some("machine-2".to_owned()),
        ..held
    };
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| store.commit(&[Change::PutRecord(replaced.clone())]));
        // Whether the batch reaches the row lock before this commit or after, it ends stored.
        std::thread::sleep(std::time::Duration::from_millis(200));
        txn.commit().unwrap();
        writer.join().unwrap().unwrap();
    });
    assert_eq!(store.load().unwrap().records, vec![replaced]);
}

/// Ends every other session of the database, as a server restart or a failover would.
fn terminate_other_sessions(client: &mut Client) {
    client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
}

/// A store from a URL connects again after losing its connection; one on a connection the
/// application gave reports the loss.
#[test]
fn a_lost_connection_is_made_again_when_the_store_has_the_url() {
    let Some(pg) = Pg::new() else { return };
    let mut store = PgStore::connect(&pg.url).unwrap();
    let changes = every_change();
    store.commit(&changes[..3]).unwrap();
    terminate_other_sessions(&mut pg.client());
    store.commit(&changes[3..]).unwrap();
    terminate_other_sessions(&mut pg.client());
    assert_eq!(sorted(store.load().unwrap()), expected(&changes));

    let mut given = PgStore::open(pg.client()).unwrap();
    assert_eq!(sorted(given.load().unwrap()), expected(&changes));
    terminate_other_sessions(&mut pg.client());
    let err = given.commit(&changes).unwrap_err();
    assert!(matches!(err, PgStoreError::Database { .. }), "{err:?}");
    assert!(given.load().is_err());
}

/// Records come back in address order (IPv4 before IPv6), each address's DISCOVERED record
/// after its other one, and bindings in client order: exactly as the memory store has them.
#[test]
fn load_order_is_the_memory_stores() {
    let Some(pg) = Pg::new() else { return };
    let mut store = PgStore::connect(&pg.url).unwrap();
    let mut changes = Vec::new();
    for at in [
        "::1",
        "10.77.0.200",
        "10.77.0.3",
        "fd77::5",
        "::ffff:10.0.0.1",
        "1.2.3.4",
    ] {
        changes.push(Change::PutRecord(record(at, AddressKind::Discovered, None)));
        changes.push(Change::PutRecord(record(at, AddressKind::Auto, None)));
        for client in [
            ClientKey::client_id(vec![9]),
            ClientKey::client_id(vec![1, 2, 3]),
            ClientKey::Mac(super::mac(at.len() as u8)),
        ] {
            changes.push(Change::PutBinding { client, ip: ip(at) });
        }
    }
    store.commit(&changes).unwrap();
    let mut memory = MemoryStore::new();
    memory.commit(&changes).unwrap();
    assert_eq!(store.load().unwrap(), memory.load().unwrap());
}

fn change(op: u8, host: u16, discovered: bool, n: u8, time: u64) -> Change {
    let at = if host.is_multiple_of(3) {
        IpAddr::from([0xfd77, 0, 0, 0, 0, 0, 0, host])
    } else {
        IpAddr::from([10, 77, (host >> 8) as u8, host as u8])
    };
    let client = if n.is_multiple_of(2) {
        ClientKey::Mac(Mac::from([2, 0, 0, 0, 0, n]))
    } else {
        ClientKey::client_id(vec![n; usize::from(n % 5)])
    };
    // One holder per address, as in one engine (the store refuses a record that changes it).
    let holder = if host.is_multiple_of(2) {
        ClientKey::Mac(Mac::from([2, 0, 0, 0, (host >> 8) as u8, host as u8]))
    } else {
        ClientKey::client_id(host.to_be_bytes())
    };
    match op % 5 {
        0 | 1 => Change::PutRecord(Record {
            ip: at,
            subnet: SubnetId::new(u32::from(host % 4)),
            kind: if discovered {
                AddressKind::Discovered
            } else {
                [AddressKind::Auto, AddressKind::Sticky, AddressKind::Dhcp][usize::from(op % 3)]
            },
            mac: op
                .is_multiple_of(2)
                .then(|| Mac::from([0x52, 0x54, 0, 0, 0, n])),
            owner: op.is_multiple_of(3).then(|| format!("owner-{n}")),
            lease: (!discovered).then(|| Lease {
                client: holder,
                state: [LeaseState::Offered, LeaseState::Bound, LeaseState::Declined]
                    [usize::from(n % 3)],
                expires: Timestamp(time),
            }),
            created: Timestamp(time / 2),
            updated: Timestamp(time),
        }),
        2 => Change::RemoveRecord { ip: at, discovered },
        3 => Change::PutBinding { client, ip: at },
        _ => Change::RemoveBinding { client },
    }
}

/// Random batches committed to PostgreSQL and to memory load back identical, order included,
/// after every batch and after a reopen. Each case has a database of its own on one server.
#[test]
fn random_batches_load_back_as_the_memory_store_has_them() {
    let Some(server) = PgServer::shared() else {
        return;
    };
    let batches = prop::collection::vec(
        prop::collection::vec(
            (
                0u8..10,
                0u16..600,
                any::<bool>(),
                0u8..12,
                prop_oneof![Just(u64::MAX), 0..u64::MAX],
            ),
            0..40,
        ),
        1..6,
    );
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&batches, |batches| {
            let mut pg = Pg {
                _server: Arc::clone(&server),
                url: server.create_database(),
            };
            let mut store = pg.create();
            let mut memory = MemoryStore::new();
            for batch in &batches {
                let changes: Vec<Change> = batch
                    .iter()
                    .map(|&(op, host, d, client, time)| change(op, host, d, client, time))
                    .collect();
                store.commit(&changes).unwrap();
                memory.commit(&changes).unwrap();
                prop_assert_eq!(store.load().unwrap(), memory.load().unwrap());
            }
            let mut store = pg.reopen(store);
            prop_assert_eq!(store.load().unwrap(), memory.load().unwrap());
            Ok(())
        })
        .unwrap();
}

/// A hook that writes one row per batch into a table of its own, and refuses when told.
struct Notes {
    next: Option<String>,
    refuse: bool,
    finished: Arc<std::sync::Mutex<Vec<bool>>>,
}

impl maas_ipam::PgCommitHook for Notes {
    fn pending(&mut self) -> bool {
        self.next.is_some()
    }

    fn write(
        &mut self,
        txn: &mut postgres::Transaction<'_>,
        _addresses: bool,
    ) -> Result<(), maas_ipam::PgHookError> {
        if self.refuse {
            return Err(maas_ipam::PgHookError::Refused("the notes say no".into()));
        }
        if let Some(note) = &self.next {
            txn.execute("INSERT INTO app_notes (note) VALUES ($1)", &[note])?;
        }
        Ok(())
    }

    fn finished(&mut self, committed: bool) {
        self.next = None;
        self.finished.lock().unwrap().push(committed);
    }
}

#[test]
fn an_applications_rows_commit_with_the_batch_or_not_at_all() {
    let Some(pg) = Pg::new() else { return };
    let mut client = pg.client();
    client
        .batch_execute("CREATE TABLE app_notes (note text NOT NULL)")
        .unwrap();
    let finished = Arc::default();
    let mut store = PgStore::connect(&pg.url).unwrap();
    store.on_commit(Notes {
        next: Some("alone".into()),
        refuse: false,
        finished: Arc::clone(&finished),
    });
    // Pending rows alone make a commit.
    store.commit(&[]).unwrap();
    let notes = |client: &mut Client| -> Vec<String> {
        client
            .query("SELECT note FROM app_notes ORDER BY note", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(notes(&mut client), ["alone"]);
    // Nothing pending, no address change: no transaction, no call.
    store.commit(&[]).unwrap();
    assert_eq!(*finished.lock().unwrap(), [true]);

    // A refusal by the hook rolls back the address changes of its batch and is a refusal.
    let mut refusing = PgStore::connect(&pg.url).unwrap();
    refusing.on_commit(Notes {
        next: Some("refused".into()),
        refuse: true,
        finished: Arc::clone(&finished),
    });
    let err = refusing.commit(&every_change()).unwrap_err();
    assert!(matches!(err, PgStoreError::Refused { .. }), "{err:?}");
    assert!(PgStore::is_refusal(&err));
    assert!(err.to_string().contains("the notes say no"), "{err}");
    assert!(store.load().unwrap().records.is_empty());
    assert_eq!(notes(&mut client), ["alone"]);
    assert_eq!(*finished.lock().unwrap(), [true, false]);
}
