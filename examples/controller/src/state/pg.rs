//! The controller's tables in PostgreSQL, beside the address manager's ([`PgStore`]): written
//! in the same transaction as each batch of address changes, so that both become durable
//! together, and shared by every region that uses the database.
//!
//! Several regions on one database each keep their state in memory and learn the others'
//! changes:
//!
//! - every commit ends with `NOTIFY maas_changes, '<region> <what>'` (`a`: addresses, `r`:
//!   records); each region listens on its own connection and, when another region committed,
//!   reloads what changed: its address manager, its records, or both (at most every
//!   [`FOLLOW_EVERY`]);
//! - the database settles races that memory cannot see. An address held by another region is
//!   refused by the address store; a machine row carries a revision, and a write that did not
//!   start from the revision stored is refused (another region allocated, deployed or
//!   released it first). A refused batch fails every operation in it (the API answers 409),
//!   and the region reloads.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use maas_ipam::postgres::{Client, IsolationLevel, NoTls, Transaction};
use maas_ipam::{PgCommitHook, PgHookError, PgStore};
use maas_net::Mac;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::store::{Change, Records, Store};

/// The channel regions announce their commits on.
const CHANNEL: &str = "maas_changes";
/// Under this component the controller's migrations are recorded in `maas_schema`.
const COMPONENT: &str = "controller";
/// Taken while migrating ("maas-ctl" in ASCII): one process migrates at a time.
const MIGRATION_LOCK: i64 = 0x6d61_6173_2d63_746c;
/// The most machine events and audit entries read back (memory keeps as many).
const RECENT: i64 = 10_000;
/// How often, at most, a region reloads what other regions changed.
pub(crate) const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Every migration of the controller's tables, in order. Never edit one that has shipped.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "machines, discoveries, events, power, users, tokens, racks, audit, resources, zones",
        r"
CREATE TABLE ctl_machines (
    mac  macaddr PRIMARY KEY,
    -- Starts at 1, one more per write: a write names the revision it started from.
    rev     bigint  NOT NULL CHECK (rev > 0),
    -- Which write made this revision (region and sequence): a batch tried again after a lost
    -- connection recognises its own.
    writer  text    NOT NULL,
    doc     jsonb   NOT NULL
);
CREATE TABLE ctl_discoveries (
    vid  integer NOT NULL,
    ip   inet    NOT NULL,
    doc  jsonb   NOT NULL,
    PRIMARY KEY (vid, ip)
);
CREATE TABLE ctl_events (
    id   bigserial PRIMARY KEY,
    mac  macaddr   NOT NULL,
    doc  jsonb     NOT NULL
);
CREATE INDEX ctl_events_mac ON ctl_events (mac, id);
CREATE TABLE ctl_power (mac macaddr PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_users (name text PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_tokens (id bytea PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_racks (name text PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_machine_tokens (mac macaddr PRIMARY KEY, token text NOT NULL);
CREATE TABLE ctl_audit (id bigserial PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_boot_resources (key text PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_zones (name text PRIMARY KEY, doc jsonb NOT NULL);
",
    ),
    (
        2,
        "devices",
        r"
CREATE TABLE ctl_devices (name text PRIMARY KEY, doc jsonb NOT NULL);
",
    ),
    (
        3,
        "domains",
        r"
CREATE TABLE ctl_domains (name text PRIMARY KEY, doc jsonb NOT NULL);
",
    ),
];

/// The schema version of the controller's tables this build knows.
const VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// A problem with the controller's tables in PostgreSQL. Messages name the database with its
/// password masked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgRecordsError {
    /// The address store (connection, migration, statements).
    #[error(transparent)]
    Store(#[from] maas_ipam::PgStoreError),
    /// A statement on the controller's tables failed.
    #[error("database {target}: cannot {action}: {source}")]
    Database {
        /// The database, password masked.
        target: String,
        /// What was being done.
        action: &'static str,
        /// The client's error.
        #[source]
        source: maas_ipam::postgres::Error,
    },
    /// The database's controller tables are newer than this build.
    #[error(
        "database {target}: the controller's tables have schema version {found}; this build knows versions up to {VERSION}"
    )]
    SchemaTooNew {
        /// The database.
        target: String,
        /// The version found.
        found: i32,
    },
    /// A stored record is not readable.
    #[error("database {target}: a stored {what} is not readable: {source}")]
    Decode {
        /// The database.
        target: String,
        /// What kind of record.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
}

/// What a region should read again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Want {
    /// The address records (another region's commit changed some).
    pub(crate) addresses: bool,
    /// The controller's records (another region's commit changed some, or a batch of this
    /// region was refused).
    pub(crate) records: bool,
}

impl Want {
    const BOTH: Self = Self {
        addresses: true,
        records: true,
    };

    fn any(self) -> bool {
        self.addresses || self.records
    }

    fn or(self, other: Self) -> Self {
        Self {
            addresses: self.addresses || other.addresses,
            records: self.records || other.records,
        }
    }

    /// The notification's text: what a commit changed (`a`: addresses, `r`: records).
    fn payload(self, origin: &str) -> String {
        let a = if self.addresses { "a" } else { "" };
        let r = if self.records { "r" } else { "" };
        format!("{origin} {a}{r}")
    }

    /// Reads a notification: who committed, and what changed.
    fn parse(payload: &str) -> (&str, Self) {
        let (origin, kinds) = payload.rsplit_once(' ').unwrap_or((payload, "ar"));
        let want = Self {
            addresses: kinds.contains('a'),
            records: kinds.contains('r'),
        };
        (origin, want)
    }
}

/// A change waiting for a commit, with the revision of the machine row it started from.
#[derive(Clone)]
struct Staged {
    change: Change,
    /// For a machine's change: the revision this region last saw (0: no row).
    rev: i64,
    /// For a machine's change: this write's name, unique across regions.
    writer: String,
}

/// What the hook (on the address store's writer thread) and the region share.
struct Shared {
    /// Staged, not yet taken by a commit.
    staged: Vec<Staged>,
    /// Taken by the commit in progress (written again if it is tried again).
    current: Vec<Staged>,
    /// The revision of each machine row as this region will have written it.
    revs: HashMap<Mac, i64>,
    /// This region's name on the change channel.
    origin: String,
    /// How many machine writes this region staged.
    writes: u64,
}

/// The controller's tables in PostgreSQL: see the module's documentation.
pub(crate) struct PgRecords {
    shared: Arc<Mutex<Shared>>,
    url: String,
    target: String,
    /// For reads after the start (reloads), made on first use and again after a failure.
    reader: Mutex<Option<Client>>,
    loaded: Mutex<Option<Records>>,
    /// Reload requests: other regions' commits, this region's refused batches.
    signal: Sender<Want>,
    signals: Mutex<Option<Receiver<Want>>>,
}

impl PgRecords {
    /// Connects the address store to `url`, migrates the controller's tables beside it, reads
    /// them, and makes every commit of the store write what is staged here.
    pub(crate) fn connect(url: &str) -> Result<(PgStore, Self), PgRecordsError> {
        let mut store = PgStore::connect(url)?;
        let target = store.target().to_owned();
        migrate(store.client(), &target)?;
        let (revs, records) = read_all(store.client(), &target, RECENT)?;
        let origin = region_name();
        let shared = Arc::new(Mutex::new(Shared {
            staged: Vec::new(),
            current: Vec::new(),
            revs,
            origin,
            writes: 0,
        }));
        let (signal, signals) = std::sync::mpsc::channel();
        store.on_commit(Hook {
            shared: Arc::clone(&shared),
            signal: signal.clone(),
        });
        Ok((
            store,
            Self {
                shared,
                url: url.to_owned(),
                target,
                reader: Mutex::new(None),
                loaded: Mutex::new(Some(records)),
                signal,
                signals: Mutex::new(Some(signals)),
            },
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether changes staged here are not yet committed (or refused): a reload now would
    /// read the database without them.
    pub(crate) fn busy(&self) -> bool {
        let shared = self.lock();
        !shared.staged.is_empty() || !shared.current.is_empty()
    }

    /// Reads every table again, and takes the machines' revisions from what it read.
    pub(crate) fn reload(&self) -> Result<Records, PgRecordsError> {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if reader.as_ref().is_none_or(Client::is_closed) {
            *reader = Some(Client::connect(&self.url, NoTls).map_err(|source| {
                PgRecordsError::Database {
                    target: self.target.clone(),
                    action: "connect for a reload",
                    source,
                }
            })?);
        }
        let Some(client) = reader.as_mut() else {
            unreachable!("connected above");
        };
        let read = read_all(client, &self.target, RECENT);
        if read.is_err() {
            *reader = None;
        }
        let (revs, records) = read?;
        self.lock().revs = revs;
        Ok(records)
    }

    /// Reads every record, all events and audit entries included (to copy the state).
    pub(crate) fn read_everything(&self) -> Result<Records, PgRecordsError> {
        let mut client =
            Client::connect(&self.url, NoTls).map_err(|source| PgRecordsError::Database {
                target: self.target.clone(),
                action: "connect",
                source,
            })?;
        Ok(read_all(&mut client, &self.target, i64::MAX)?.1)
    }

    /// Starts following the other regions: a thread listens on the change channel, and
    /// another calls `reload` (at most every [`FOLLOW_EVERY`]) after another region's commit
    /// or a refused batch of this one, until `alive` is gone. Only the first call starts them.
    pub(crate) fn follow<T: Send + Sync + 'static>(
        &self,
        alive: Weak<T>,
        reload: impl Fn(&T, Want) -> bool + Send + 'static,
    ) {
        let Some(signals) = self
            .signals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let url = self.url.clone();
        let origin = self.lock().origin.clone();
        let signal = self.signal.clone();
        let watched = alive.clone();
        let target = self.target.clone();
        std::thread::Builder::new()
            .name("region-listener".into())
            .spawn(move || listen(&url, &target, &origin, &signal, &watched))
            .ok();
        std::thread::Builder::new()
            .name("region-follower".into())
            .spawn(move || follow_loop(&signals, &alive, reload))
            .ok();
    }
}

/// Listens for other regions' commits until `alive` is gone; after a lost connection it
/// connects again (at most once a second) and asks for a reload, since it may have missed
/// some.
fn listen<T>(url: &str, target: &str, origin: &str, signal: &Sender<Want>, alive: &Weak<T>) {
    while alive.strong_count() > 0 {
        let mut client = match Client::connect(url, NoTls)
            .and_then(|mut c| c.batch_execute(&format!("LISTEN {CHANNEL}")).map(|()| c))
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(event = "region_listener_failed", database = target, error = %e);
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let _ = signal.send(Want::BOTH);
        while alive.strong_count() > 0 {
            let mut notes = client.notifications();
            let mut iter = notes.timeout_iter(Duration::from_secs(1));
            match fallible_iterator::FallibleIterator::next(&mut iter) {
                Ok(Some(note)) => {
                    let (from, want) = Want::parse(note.payload());
                    if from != origin && want.any() {
                        let _ = signal.send(want);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(event = "region_listener_lost", database = target, error = %e);
                    std::thread::sleep(Duration::from_secs(1));
                    break;
                }
            }
        }
    }
}

/// Calls `reload` with what the signals asked for, after each burst of them and at most every
/// [`FOLLOW_EVERY`], until `alive` is gone; a reload that could not run (changes in flight,
/// the database away) is tried again.
fn follow_loop<T>(signals: &Receiver<Want>, alive: &Weak<T>, reload: impl Fn(&T, Want) -> bool) {
    let mut wanted = Want::default();
    loop {
        let wait = if wanted.any() {
            FOLLOW_EVERY
        } else {
            Duration::from_secs(1)
        };
        match signals.recv_timeout(wait) {
            Ok(want) => {
                wanted = wanted.or(want);
                // Let the burst finish: one reload for many commits.
                let until = Instant::now() + FOLLOW_EVERY;
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    match signals.recv_timeout(left) {
                        Ok(want) => wanted = wanted.or(want),
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(state) = alive.upgrade() else {
            return;
        };
        if wanted.any() && reload(&state, wanted) {
            wanted = Want::default();
        }
    }
}

/// A name for this region on the change channel, unique among the regions of a database.
fn region_name() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{hex}", host.trim(), std::process::id())
}

impl Store for PgRecords {
    type Error = PgRecordsError;

    fn load(&self) -> Result<Records, PgRecordsError> {
        Ok(self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default())
    }

    fn stage(&self, changes: Vec<Change>) {
        let mut shared = self.lock();
        for change in changes {
            shared.writes += 1;
            let writer = format!("{}/{}", shared.origin, shared.writes);
            let rev = match &change {
                Change::PutMachine(m) => {
                    let rev = shared.revs.get(&m.mac).copied().unwrap_or(0);
                    shared.revs.insert(m.mac, rev + 1);
                    rev
                }
                Change::RemoveMachine(mac) => shared.revs.remove(mac).unwrap_or(0),
                _ => 0,
            };
            shared.staged.push(Staged {
                change,
                rev,
                writer,
            });
        }
    }
}

/// Writes the staged changes in the address store's transactions.
struct Hook {
    shared: Arc<Mutex<Shared>>,
    signal: Sender<Want>,
}

impl PgCommitHook for Hook {
    fn pending(&mut self) -> bool {
        let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        !shared.staged.is_empty() || !shared.current.is_empty()
    }

    fn write(&mut self, txn: &mut Transaction<'_>, addresses: bool) -> Result<(), PgHookError> {
        let (current, origin) = {
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            if shared.current.is_empty() {
                shared.current = std::mem::take(&mut shared.staged);
            }
            (shared.current.clone(), shared.origin.clone())
        };
        for staged in &current {
            write(txn, staged)?;
        }
        let changed = Want {
            addresses,
            records: !current.is_empty(),
        };
        if changed.any() {
            txn.execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &changed.payload(&origin)],
            )?;
        }
        Ok(())
    }

    fn finished(&mut self, committed: bool) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.current.clear();
        if !committed {
            // Memory holds what was refused, and the revisions assumed it: read back (the
            // address manager reloads itself).
            let _ = self.signal.send(Want {
                addresses: false,
                records: true,
            });
        }
    }

    fn loaded(&mut self) {
        // After a refusal every operation queued so far fails: what they staged must not
        // reach the database with a later batch.
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if !shared.staged.is_empty() {
            shared.staged.clear();
            let _ = self.signal.send(Want {
                addresses: false,
                records: true,
            });
        }
    }
}

fn json<T: Serialize>(value: &T) -> String {
    // Typed records encode infallibly: no map with non-string keys, no failing Serialize.
    serde_json::to_string(value).unwrap_or_default()
}

/// Writes one change.
fn write(txn: &mut Transaction<'_>, staged: &Staged) -> Result<(), PgHookError> {
    let upsert = |table: &str, key: &str, cast: &str| {
        format!(
            "INSERT INTO {table} ({key}, doc) VALUES ($1{cast}, $2::text::jsonb) \
             ON CONFLICT ({key}) DO UPDATE SET doc = EXCLUDED.doc"
        )
    };
    match &staged.change {
        Change::PutMachine(m) => {
            // From the revision this region saw; a batch tried again after a lost connection
            // finds its own write, which it may write again.
            let rows = txn.query(
                "INSERT INTO ctl_machines AS m (mac, rev, writer, doc)
                 VALUES ($1::text::macaddr, $2::bigint + 1, $4, $3::text::jsonb)
                 ON CONFLICT (mac) DO UPDATE
                     SET rev = EXCLUDED.rev, writer = EXCLUDED.writer, doc = EXCLUDED.doc
                 WHERE m.rev = $2::bigint OR (m.rev = EXCLUDED.rev AND m.writer = EXCLUDED.writer)
                 RETURNING rev",
                &[&m.mac.to_string(), &staged.rev, &json(&**m), &staged.writer],
            )?;
            if rows.is_empty() {
                return Err(PgHookError::Refused(format!(
                    "machine {} was changed by another region meanwhile; try again",
                    m.mac
                )));
            }
        }
        Change::RemoveMachine(mac) => {
            let row = txn.query_opt(
                "SELECT rev FROM ctl_machines WHERE mac = $1::text::macaddr FOR UPDATE",
                &[&mac.to_string()],
            )?;
            if let Some(row) = row {
                let rev: i64 = row.try_get(0)?;
                if rev != staged.rev {
                    return Err(PgHookError::Refused(format!(
                        "machine {mac} was changed by another region meanwhile; try again"
                    )));
                }
                txn.execute(
                    "DELETE FROM ctl_machines WHERE mac = $1::text::macaddr",
                    &[&mac.to_string()],
                )?;
            }
        }
        Change::PutDiscovery(d) => {
            txn.execute(
                "INSERT INTO ctl_discoveries (vid, ip, doc) VALUES ($1, $2, $3::text::jsonb)
                 ON CONFLICT (vid, ip) DO UPDATE SET doc = EXCLUDED.doc",
                &[&i32::from(d.vid), &d.ip, &json(&**d)],
            )?;
        }
        Change::AddEvent(e) => {
            txn.execute(
                "INSERT INTO ctl_events (mac, doc) VALUES ($1::text::macaddr, $2::text::jsonb)",
                &[&e.mac.to_string(), &json(e)],
            )?;
        }
        Change::PutPower(mac, seen) => {
            txn.execute(
                &upsert("ctl_power", "mac", "::text::macaddr"),
                &[&mac.to_string(), &json(seen)],
            )?;
        }
        Change::RemovePower(mac) => {
            txn.execute(
                "DELETE FROM ctl_power WHERE mac = $1::text::macaddr",
                &[&mac.to_string()],
            )?;
        }
        Change::PutUser(u) => {
            txn.execute(&upsert("ctl_users", "name", ""), &[&u.name, &json(u)])?;
        }
        Change::RemoveUser(name) => {
            txn.execute("DELETE FROM ctl_users WHERE name = $1", &[name])?;
        }
        Change::PutToken(t) => {
            txn.execute(&upsert("ctl_tokens", "id", ""), &[&&t.id.0[..], &json(t)])?;
        }
        Change::RemoveToken(id) => {
            txn.execute("DELETE FROM ctl_tokens WHERE id = $1", &[&&id.0[..]])?;
        }
        Change::PutRack(r) => {
            txn.execute(&upsert("ctl_racks", "name", ""), &[&r.name, &json(r)])?;
        }
        Change::RemoveRack(name) => {
            txn.execute("DELETE FROM ctl_racks WHERE name = $1", &[name])?;
        }
        Change::PutMachineToken(mac, text) => {
            txn.execute(
                "INSERT INTO ctl_machine_tokens (mac, token) VALUES ($1::text::macaddr, $2)
                 ON CONFLICT (mac) DO UPDATE SET token = EXCLUDED.token",
                &[&mac.to_string(), text],
            )?;
        }
        Change::RemoveMachineToken(mac) => {
            txn.execute(
                "DELETE FROM ctl_machine_tokens WHERE mac = $1::text::macaddr",
                &[&mac.to_string()],
            )?;
        }
        Change::AddAudit(entry) => {
            txn.execute(
                "INSERT INTO ctl_audit (doc) VALUES ($1::text::jsonb)",
                &[&json(entry)],
            )?;
        }
        Change::PutResource(r) => {
            txn.execute(
                &upsert("ctl_boot_resources", "key", ""),
                &[&r.key(), &json(&**r)],
            )?;
        }
        Change::PutZone(z) => {
            txn.execute(&upsert("ctl_zones", "name", ""), &[&z.name, &json(z)])?;
        }
        Change::RemoveZone(name) => {
            txn.execute("DELETE FROM ctl_zones WHERE name = $1", &[name])?;
        }
        Change::RemoveDiscovery(vid, ip) => {
            txn.execute(
                "DELETE FROM ctl_discoveries WHERE vid = $1 AND ip = $2",
                &[&i32::from(*vid), ip],
            )?;
        }
        Change::PutDevice(d) => {
            txn.execute(&upsert("ctl_devices", "name", ""), &[&d.name, &json(&**d)])?;
        }
        Change::RemoveDevice(name) => {
            txn.execute("DELETE FROM ctl_devices WHERE name = $1", &[name])?;
        }
        Change::PutDomain(d) => {
            txn.execute(&upsert("ctl_domains", "name", ""), &[&d.name, &json(d)])?;
        }
        Change::RemoveDomain(name) => {
            txn.execute("DELETE FROM ctl_domains WHERE name = $1", &[name])?;
        }
    }
    Ok(())
}

/// Brings the controller's tables to [`VERSION`], each migration in its own transaction
/// under an advisory lock; refuses tables newer than this build. The address store has made
/// `maas_schema` already.
fn migrate(client: &mut Client, target: &str) -> Result<(), PgRecordsError> {
    let db = |action: &'static str| {
        move |source| PgRecordsError::Database {
            target: target.to_owned(),
            action,
            source,
        }
    };
    for &(version, description, sql) in MIGRATIONS {
        let mut txn = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .map_err(db("begin a migration"))?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(db("take the migration lock"))?;
        let found: i32 = txn
            .query_one(
                "SELECT coalesce(max(version), 0) FROM maas_schema WHERE component = $1",
                &[&COMPONENT],
            )
            .and_then(|row| row.try_get(0))
            .map_err(db("read the controller's schema version"))?;
        if found > VERSION {
            return Err(PgRecordsError::SchemaTooNew {
                target: target.to_owned(),
                found,
            });
        }
        if found < version {
            txn.batch_execute(sql)
                .map_err(db("migrate the controller's tables"))?;
            txn.execute(
                "INSERT INTO maas_schema (component, version, description) VALUES ($1, $2, $3)",
                &[&COMPONENT, &version, &description],
            )
            .map_err(db("record a migration"))?;
        }
        txn.commit().map_err(db("end a migration"))?;
    }
    Ok(())
}

/// Reads every table in one consistent view: the machines' revisions and the records (the
/// most recent `recent` events and audit entries).
fn read_all(
    client: &mut Client,
    target: &str,
    recent: i64,
) -> Result<(HashMap<Mac, i64>, Records), PgRecordsError> {
    let db = |action: &'static str| {
        move |source| PgRecordsError::Database {
            target: target.to_owned(),
            action,
            source,
        }
    };
    let mut txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(db("begin a read"))?;
    // `limited`: the query takes the row limit as its parameter.
    let mut docs = |sql: &str, limited: bool, what: &'static str| {
        let rows = if limited {
            txn.query(sql, &[&recent])
        } else {
            txn.query(sql, &[])
        }
        .map_err(db(what))?;
        rows.iter()
            .map(|row| row.try_get::<_, String>(0).map_err(db(what)))
            .collect::<Result<Vec<String>, PgRecordsError>>()
    };
    let mut records = Records {
        discoveries: decode_all(
            &docs(
                "SELECT doc::text FROM ctl_discoveries ORDER BY vid, ip",
                false,
                "read the discoveries",
            )?,
            target,
            "discovery",
        )?,
        events: decode_all(
            &docs(
                "SELECT doc::text FROM (SELECT id, doc FROM ctl_events ORDER BY id DESC LIMIT $1) e
             ORDER BY id",
                true,
                "read the events",
            )?,
            target,
            "machine event",
        )?,
        users: decode_all(
            &docs("SELECT doc::text FROM ctl_users", false, "read the users")?,
            target,
            "user",
        )?,
        tokens: decode_all(
            &docs("SELECT doc::text FROM ctl_tokens", false, "read the tokens")?,
            target,
            "token",
        )?,
        racks: decode_all(
            &docs("SELECT doc::text FROM ctl_racks", false, "read the racks")?,
            target,
            "rack",
        )?,
        audit: decode_all(
            &docs(
                "SELECT doc::text FROM (SELECT id, doc FROM ctl_audit ORDER BY id DESC LIMIT $1) a
             ORDER BY id",
                true,
                "read the audit trail",
            )?,
            target,
            "audit entry",
        )?,
        resources: decode_all(
            &docs(
                "SELECT doc::text FROM ctl_boot_resources ORDER BY key",
                false,
                "read the boot resources",
            )?,
            target,
            "boot resource",
        )?,
        zones: decode_all(
            &docs(
                "SELECT doc::text FROM ctl_zones ORDER BY name",
                false,
                "read the zones",
            )?,
            target,
            "zone",
        )?,
        devices: decode_all(
            &docs(
                "SELECT doc::text FROM ctl_devices ORDER BY name",
                false,
                "read the devices",
            )?,
            target,
            "device",
        )?,
        domains: decode_all(
            &docs(
                "SELECT doc::text FROM ctl_domains ORDER BY name",
                false,
                "read the domains",
            )?,
            target,
            "domain",
        )?,
        ..Records::default()
    };
    let mut revs = HashMap::new();
    for row in txn
        .query("SELECT rev, doc::text FROM ctl_machines ORDER BY mac", &[])
        .map_err(db("read the machines"))?
    {
        let rev: i64 = row.try_get(0).map_err(db("read a machine"))?;
        let doc: String = row.try_get(1).map_err(db("read a machine"))?;
        let machine: super::Machine = decode(&doc, target, "machine")?;
        revs.insert(machine.mac, rev);
        records.machines.push(machine);
    }
    for row in txn
        .query("SELECT mac::text, doc::text FROM ctl_power", &[])
        .map_err(db("read the power states"))?
    {
        let mac: String = row.try_get(0).map_err(db("read a power state"))?;
        let doc: String = row.try_get(1).map_err(db("read a power state"))?;
        if let Ok(mac) = mac.parse::<Mac>() {
            records
                .power
                .push((mac, decode(&doc, target, "power state")?));
        }
    }
    for row in txn
        .query("SELECT mac::text, token FROM ctl_machine_tokens", &[])
        .map_err(db("read the machine credentials"))?
    {
        let mac: String = row.try_get(0).map_err(db("read a machine credential"))?;
        let token: String = row.try_get(1).map_err(db("read a machine credential"))?;
        if let Ok(mac) = mac.parse::<Mac>() {
            records.machine_tokens.push((mac, token));
        }
    }
    txn.commit().map_err(db("end a read"))?;
    Ok((revs, records))
}

fn decode_all<T: DeserializeOwned>(
    docs: &[String],
    target: &str,
    what: &'static str,
) -> Result<Vec<T>, PgRecordsError> {
    docs.iter().map(|d| decode(d, target, what)).collect()
}

fn decode<T: DeserializeOwned>(
    doc: &str,
    target: &str,
    what: &'static str,
) -> Result<T, PgRecordsError> {
    serde_json::from_str(doc).map_err(|source| PgRecordsError::Decode {
        target: target.to_owned(),
        what,
        source,
    })
}
