//! The PostgreSQL store: see [`PgStore`].

mod rows;
mod schema;
mod url;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, IsolationLevel, NoTls, Statement};

use self::rows::Rows;
use self::url::redact;
use crate::store::record_key;
use crate::{Change, ClientKey, Record, Snapshot, Store};

/// How many times a batch is tried when PostgreSQL aborts it for a conflict with another
/// transaction (serialization failure or deadlock) before [`Store::commit`] gives up.
const COMMIT_ATTEMPTS: u32 = 5;

/// Why the PostgreSQL store failed. Every message names the database, never its password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgStoreError {
    /// The URL is not a PostgreSQL connection string.
    #[error("invalid PostgreSQL URL {target}: {source}")]
    Url {
        /// The URL, password masked.
        target: String,
        /// What the parser reported.
        #[source]
        source: postgres::Error,
    },
    /// The server could not be reached or refused the connection (no server on that socket,
    /// authentication failed, no such database).
    #[error("cannot connect to the address store {target}: {source}")]
    Connect {
        /// The URL, password masked.
        target: String,
        /// What the client reported.
        #[source]
        source: postgres::Error,
    },
    /// The database holds a newer schema than this build knows: it was migrated by a newer
    /// release, and an older one must not write to it.
    #[error(
        "address store {target} has schema version {found}; this build knows versions up to {supported}"
    )]
    SchemaTooNew {
        /// The database.
        target: String,
        /// The version in the database.
        found: i32,
        /// The newest version this build knows.
        supported: i32,
    },
    /// A migration failed; it was rolled back, and the schema stays at the version before it.
    #[error("address store {target}: migration to schema version {version} failed: {source}")]
    Migrate {
        /// The database.
        target: String,
        /// The version the failed migration would have reached.
        version: i32,
        /// What the server reported.
        #[source]
        source: postgres::Error,
    },
    /// A database operation failed (lost connection, a constraint the database enforces, such
    /// as one address held twice, full disk).
    #[error("address store {target}: cannot {action}: {source}")]
    Database {
        /// The database.
        target: String,
        /// What was being done, e.g. "commit a batch".
        action: &'static str,
        /// What the client or the server reported.
        #[source]
        source: postgres::Error,
    },
    /// The batch would have replaced the record of an address held by someone else (another
    /// region's lease or allocation): the database refused it, and none of the batch is
    /// stored. See [`PgStore`] for the rule.
    #[error(
        "address store {target}: {ip} is held by another holder in the database; the batch was refused"
    )]
    Conflict {
        /// The database.
        target: String,
        /// The address (the first refused one, when there are several).
        ip: IpAddr,
    },
    /// A batch kept conflicting with other transactions and was given up.
    #[error(
        "address store {target}: a batch conflicted with other writers {attempts} times: {source}"
    )]
    Contention {
        /// The database.
        target: String,
        /// How many times the batch was tried.
        attempts: u32,
        /// The last conflict.
        #[source]
        source: postgres::Error,
    },
    /// The application's part of the batch ([`PgCommitHook`]) was refused: what it would have
    /// written conflicts with what another controller stored. None of the batch is stored.
    #[error("address store {target}: the batch was refused: {reason}")]
    Refused {
        /// The database.
        target: String,
        /// The hook's reason.
        reason: String,
    },
    /// A record or client key could not be encoded or decoded.
    #[error("address store {target}: cannot {action} {what}: {source}")]
    Codec {
        /// The database.
        target: String,
        /// "encode" or "decode".
        action: &'static str,
        /// What, e.g. "the record of 10.0.0.5".
        what: String,
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
    /// The topology document could not be encoded or decoded.
    #[error("address store {target}: cannot {action} the topology document: {source}")]
    Topology {
        /// The database.
        target: String,
        /// "encode" or "decode".
        action: &'static str,
        /// What the JSON codec reported.
        #[source]
        source: serde_json::Error,
    },
    /// A row holds something this store never writes.
    #[error("address store {target} is inconsistent: {detail}")]
    Corrupt {
        /// The database.
        target: String,
        /// What is wrong.
        detail: String,
    },
}

/// The address store in PostgreSQL, for controllers that keep their state in a database
/// server rather than a local file (feature `postgres`).
///
/// It uses the synchronous [`postgres`] client, not `tokio-postgres`: [`Store`] is a blocking
/// trait run on [`Durable`](crate::Durable)'s own writer thread, and the synchronous client is
/// exactly `tokio-postgres` driven by a private current-thread runtime on the calling thread,
/// so using `tokio-postgres` directly would mean writing that runtime by hand. For the same
/// reason, do not call [`connect`](Self::connect), [`load`](Store::load) or
/// [`commit`](Store::commit) from inside an async task: under tokio, use `spawn_blocking`.
///
/// [`connect`](Self::connect) migrates the schema (each step in its own transaction, under an
/// advisory lock, recorded in `maas_schema`) and refuses a database migrated by a newer build.
/// Each [`commit`](Store::commit) is one `SERIALIZABLE` transaction, retried a few times when
/// PostgreSQL aborts it for a conflict with another writer; the session runs with
/// `synchronous_commit = on`, so a commit returns once PostgreSQL has flushed it to its WAL.
/// A batch becomes at most five statements whatever its size: the last change of each key
/// wins (the batch is atomic, so nothing sees the steps between), and the rows go in as arrays.
///
/// Tables (schema version [`PgStore::SCHEMA_VERSION`]):
///
/// | table           | key                       | columns                                              |
/// |-----------------|---------------------------|------------------------------------------------------|
/// | `ipam_records`  | (`ip inet`, `discovered`) | `subnet`, `kind`, `mac macaddr`, `owner`, `lease_client`, `lease_state`, `lease_expires`, `created`, `updated` (`timestamptz`), `record` (the [`Record`], postcard), `prior` (see the rule below) |
/// | `ipam_bindings` | `client` (postcard)       | `client_text`, `ip inet`                             |
/// | `ipam_topology` | `id` = 1                  | `doc jsonb`, `updated`                               |
/// | `maas_schema`   | (`component`, `version`)  | `description`, `applied`                             |
///
/// `ipam_bindings` holds only the bindings no record implies (see [`Change::PutBinding`]).
///
/// `record` is what [`load`](Store::load) reads; the other columns are there for queries and
/// for the constraints. The primary key of `ipam_records`, with a check that every `ip` is a
/// host address (`inet` equality includes the netmask), makes the database itself refuse a
/// second record holding an address.
///
/// # Several controllers on one database
///
/// Each controller (region) runs its own engine and [`Durable`](crate::Durable) on the same
/// database, and an engine knows only what it loaded and what it did since: two regions can
/// hand out one address. The database is the backstop. A record write for an address whose
/// stored record (same key) it may not replace fails the whole batch with
/// [`PgStoreError::Conflict`]. The *holder* of a record is the lease's client for a DHCP
/// record, else the interface's MAC, else the owner, else the kind; a client keyed by its MAC
/// and an interface with that MAC are the same holder. A write replaces the stored record when:
///
/// - it is a `DISCOVERED` record (its own key, an observation: the last one seen wins);
/// - the holders are the same, and the stored record is the version this store last read or
///   wrote for that key (it changes what it knows: a STICKY or AUTO record updated by its
///   machine, a machine's DHCP lease made STICKY or AUTO), or both are DHCP leases of the same
///   client (a client renewing or re-binding through another region, an offer becoming a
///   lease, a lease batch applied again after a lost connection);
/// - the stored record's lease (bound, offered or declined) had expired when the new record
///   was made (its `updated` time), so that an expired lease its region has not removed does
///   not block the address for ever. This compares the writer's clock with the one that set
///   the expiry: regions' clocks should agree to well within a lease time.
///
/// Anything else is a takeover, or another region's change this store has not seen: two
/// regions reserving the next free address at once, even for the same owner and with the same
/// content, get one reservation and one refusal; the refused region reloads and its caller
/// may try again. (So does a batch of reservations applied again after the connection was
/// lost while its first try was committing: it finds its own rows, which it has not seen.)
///
/// A removal deletes only the version of the record this store last read or wrote (kept in
/// memory, one encoded record per key): a region removing its own stale record never deletes
/// what another region stored since, and a removal of something already gone is a no-op. A
/// batch that removes an address and then puts it for another holder deletes the known version
/// first, so the put is an insert: the reduction to the last change per key does not turn it
/// into a refused takeover. An expired lease its region has removed is gone, and anyone may
/// take the address.
///
/// [`Durable`](crate::Durable) treats a conflict as a refusal ([`Store::is_refusal`]): the
/// batch's operations get [`DurableError::Refused`](crate::DurableError::Refused), never an
/// acknowledgement, and the manager reloads its state from the database and goes on.
///
/// ```no_run
/// use maas_ipam::{Durable, PgStore};
///
/// let store = PgStore::connect("postgresql://maas@/maas?host=/run/postgresql")?;
/// let ipam = Durable::open(store)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PgStore {
    client: Client,
    target: String,
    statements: Statements,
    /// How to connect again after the connection is lost; `None` for a connection the
    /// application gave.
    config: Option<Config>,
    /// The stored form of each record this store last read or wrote, by key: what a removal
    /// may delete (see [`schema::REMOVE_RECORDS`]).
    versions: HashMap<(IpAddr, bool), Vec<u8>>,
    /// The application's tables, written in each commit's transaction.
    hook: Option<Box<dyn PgCommitHook>>,
}

/// Why a [`PgCommitHook`] could not write its part of a batch.
#[derive(Debug)]
#[non_exhaustive]
pub enum PgHookError {
    /// A statement failed; a serialization failure or deadlock makes the store try the whole
    /// batch again, and a lost connection makes it connect again first.
    Database(postgres::Error),
    /// The hook refuses the batch (what it would write conflicts with what is stored): the
    /// store rolls the batch back and reports [`PgStoreError::Refused`], a refusal in the
    /// sense of [`Store::is_refusal`].
    Refused(String),
}

impl From<postgres::Error> for PgHookError {
    fn from(e: postgres::Error) -> Self {
        Self::Database(e)
    }
}

/// An application's own tables, written in the same transaction as each batch of address
/// changes ([`PgStore::on_commit`]), so that both become durable together or not at all.
///
/// A batch may be tried more than once (after a serialization failure or a lost connection):
/// [`write`](Self::write) must write the same thing each time until
/// [`finished`](Self::finished) says how the batch ended.
pub trait PgCommitHook: Send + 'static {
    /// Whether the hook has something to write, so that a commit runs even when the address
    /// batch is empty.
    fn pending(&mut self) -> bool;

    /// Writes the hook's part of the batch into `txn`; `addresses` says whether the batch
    /// changes address records, bindings or the topology too.
    fn write(
        &mut self,
        txn: &mut postgres::Transaction<'_>,
        addresses: bool,
    ) -> Result<(), PgHookError>;

    /// The batch was committed (`true`) or abandoned (`false`: refused, given up, failed).
    fn finished(&mut self, committed: bool);

    /// The store was read back ([`Store::load`]): at start, on
    /// [`Durable::refresh`](crate::Durable::refresh), and after a refused batch, when
    /// [`Durable`](crate::Durable) fails every operation queued so far. What the hook holds
    /// staged belongs to those operations (when it is staged with
    /// [`Durable::sync_with`](crate::Durable::sync_with)): drop it. The default does nothing.
    fn loaded(&mut self) {}
}

/// The statements of a commit and of a load, prepared once per connection.
struct Statements {
    put_topology: Statement,
    put_records: Statement,
    remove_records: Statement,
    put_bindings: Statement,
    remove_bindings: Statement,
    load_topology: Statement,
    load_records: Statement,
    load_bindings: Statement,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// The schema version this build reads and writes.
    pub const SCHEMA_VERSION: i32 = schema::VERSION;

    /// Connects to `url` (`postgresql://user:password@host:port/database`, or
    /// `postgresql://user@/database?host=/run/postgresql` for a Unix socket; the key-value
    /// form `host=... dbname=...` works too), then migrates the schema as [`open`](Self::open)
    /// does. Connections are made without TLS: use a Unix socket or a trusted network.
    pub fn connect(url: &str) -> Result<Self, PgStoreError> {
        let target = redact(url);
        let config: Config = url.parse().map_err(|source| PgStoreError::Url {
            target: target.clone(),
            source,
        })?;
        let client = config
            .connect(NoTls)
            .map_err(|source| PgStoreError::Connect {
                target: target.clone(),
                source,
            })?;
        let (client, statements) = Self::session(client, &target)?;
        Ok(Self {
            client,
            target,
            statements,
            config: Some(config),
            versions: HashMap::new(),
            hook: None,
        })
    }

    /// Uses a connection the application made: migrates the schema (creating the tables in a
    /// new database), refusing a database whose schema is newer than this build's, and
    /// prepares the store's statements. The tables are created in the connection's
    /// `search_path`.
    ///
    /// Unlike a store made by [`connect`](Self::connect), one made here cannot connect again
    /// when its connection is lost: its next operations fail.
    pub fn open(client: Client) -> Result<Self, PgStoreError> {
        let target = "(connection given by the application)".to_owned();
        let (client, statements) = Self::session(client, &target)?;
        Ok(Self {
            client,
            target,
            statements,
            config: None,
            versions: HashMap::new(),
            hook: None,
        })
    }

    /// Readies a new connection: session settings, migrations, prepared statements.
    fn session(mut client: Client, target: &str) -> Result<(Client, Statements), PgStoreError> {
        client
            .batch_execute("SET synchronous_commit TO on")
            .map_err(|source| PgStoreError::Database {
                target: target.to_owned(),
                action: "turn synchronous commit on",
                source,
            })?;
        schema::migrate(&mut client, target)?;
        let mut prepare = |sql: &str| {
            client
                .prepare(sql)
                .map_err(|source| PgStoreError::Database {
                    target: target.to_owned(),
                    action: "prepare the store's statements",
                    source,
                })
        };
        let statements = Statements {
            put_topology: prepare(schema::PUT_TOPOLOGY)?,
            put_records: prepare(schema::PUT_RECORDS)?,
            remove_records: prepare(schema::REMOVE_RECORDS)?,
            put_bindings: prepare(schema::PUT_BINDINGS)?,
            remove_bindings: prepare(schema::REMOVE_BINDINGS)?,
            load_topology: prepare(schema::LOAD_TOPOLOGY)?,
            load_records: prepare(schema::LOAD_RECORDS)?,
            load_bindings: prepare(schema::LOAD_BINDINGS)?,
        };
        Ok((client, statements))
    }

    /// After `error`, connects again if the connection was lost and the store knows how;
    /// otherwise gives `error` back.
    fn reconnect_after(&mut self, error: PgStoreError) -> Result<(), PgStoreError> {
        // The client may learn that the server ended the session only after the error that
        // said so: ask it.
        let lost = |client: &mut Client| {
            client.is_closed() || client.is_valid(Duration::from_secs(5)).is_err()
        };
        let Some(config) = self.config.as_ref().filter(|_| lost(&mut self.client)) else {
            return Err(error);
        };
        let client = config
            .connect(NoTls)
            .map_err(|source| PgStoreError::Connect {
                target: self.target.clone(),
                source,
            })?;
        (self.client, self.statements) = Self::session(client, &self.target)?;
        Ok(())
    }

    /// Writes `hook`'s tables in every commit's transaction (replacing any hook set before).
    /// A commit then runs whenever the hook has something pending, even with no address
    /// change; the store's reads ([`load`](Store::load)) do not read the hook's tables.
    pub fn on_commit(&mut self, hook: impl PgCommitHook) {
        self.hook = Some(Box::new(hook));
    }

    /// What the store is connected to: the URL with its password masked.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The connection, for an application that reads its own tables in the same database.
    /// Leave the session's settings as they are (`synchronous_commit` is on).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn db_error(&self, action: &'static str) -> impl FnOnce(postgres::Error) -> PgStoreError {
        let target = self.target.clone();
        move |source| PgStoreError::Database {
            target,
            action,
            source,
        }
    }

    fn corrupt(&self, detail: String) -> PgStoreError {
        PgStoreError::Corrupt {
            target: self.target.clone(),
            detail,
        }
    }

    fn codec_error(
        &self,
        action: &'static str,
        what: String,
        source: postcard::Error,
    ) -> PgStoreError {
        PgStoreError::Codec {
            target: self.target.clone(),
            action,
            what,
            source,
        }
    }

    /// One try at a batch: one transaction, at most five statements.
    fn try_commit(&mut self, rows: &Rows) -> Result<(), PgStoreError> {
        let target = &self.target;
        let db = |action: &'static str| {
            move |source| PgStoreError::Database {
                target: target.clone(),
                action,
                source,
            }
        };
        let s = &self.statements;
        let mut txn = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .start()
            .map_err(db("begin a transaction"))?;
        if let Some(doc) = &rows.topology {
            txn.execute(&s.put_topology, &[doc])
                .map_err(db("store the topology"))?;
        }
        if !rows.removed.ips.is_empty() {
            let r = &rows.removed;
            txn.execute(&s.remove_records, &[&r.ips, &r.discovered, &r.versions])
                .map_err(db("remove records"))?;
        }
        if !rows.put.ips.is_empty() {
            let p = &rows.put;
            let stored = txn
                .query(
                    &s.put_records,
                    &[
                        &p.ips,
                        &p.discovered,
                        &p.subnets,
                        &p.kinds,
                        &p.macs,
                        &p.owners,
                        &p.lease_clients,
                        &p.lease_states,
                        &p.lease_expires,
                        &p.created,
                        &p.updated,
                        &p.records,
                        &p.priors,
                    ],
                )
                .map_err(db("store records"))?;
            if stored.len() < p.ips.len() {
                // Dropping the transaction rolls the whole batch back.
                let kept = stored
                    .iter()
                    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                    .collect::<Result<HashSet<(IpAddr, bool)>, postgres::Error>>()
                    .map_err(db("store records"))?;
                let refused = p.ips.iter().zip(&p.discovered);
                let ip = refused
                    .map(|(ip, d)| (*ip, *d))
                    .find(|key| !kept.contains(key))
                    .map_or(p.ips[0], |(ip, _)| ip);
                return Err(PgStoreError::Conflict {
                    target: self.target.clone(),
                    ip,
                });
            }
        }
        if !rows.unbound.is_empty() {
            txn.execute(&s.remove_bindings, &[&rows.unbound])
                .map_err(db("remove client bindings"))?;
        }
        if !rows.bound.clients.is_empty() {
            let b = &rows.bound;
            txn.execute(&s.put_bindings, &[&b.clients, &b.texts, &b.ips])
                .map_err(db("store client bindings"))?;
        }
        if let Some(hook) = self.hook.as_mut() {
            let addresses = rows.topology.is_some()
                || !rows.removed.ips.is_empty()
                || !rows.put.ips.is_empty()
                || !rows.unbound.is_empty()
                || !rows.bound.clients.is_empty();
            match hook.write(&mut txn, addresses) {
                Ok(()) => {}
                Err(PgHookError::Database(source)) => {
                    return Err(db("write the application's tables")(source));
                }
                Err(PgHookError::Refused(reason)) => {
                    return Err(PgStoreError::Refused {
                        target: self.target.clone(),
                        reason,
                    });
                }
            }
        }
        txn.commit().map_err(db("commit a batch"))
    }
}

impl Store for PgStore {
    type Error = PgStoreError;

    /// Reads everything in one read-only repeatable-read transaction (a consistent view even
    /// while other processes write): records in address order, each address's `DISCOVERED`
    /// record after its other one, and bindings in client order, as [`MemoryStore`] returns
    /// them.
    ///
    /// [`MemoryStore`]: crate::MemoryStore
    ///
    /// A store made by [`connect`](PgStore::connect) whose connection was lost connects again
    /// and reads once more.
    fn load(&mut self) -> Result<Snapshot, PgStoreError> {
        if let Some(hook) = self.hook.as_mut() {
            hook.loaded();
        }
        match self.try_load() {
            Err(e) => {
                self.reconnect_after(e)?;
                self.try_load()
            }
            loaded => loaded,
        }
    }

    /// Applies the batch in one `SERIALIZABLE` transaction; when PostgreSQL aborts it for a
    /// conflict with another transaction, tries again, up to five times in all with a short
    /// growing pause. Any other error aborts the transaction: none of the batch is stored.
    ///
    /// A store made by [`connect`](PgStore::connect) whose connection was lost connects again
    /// and applies the batch once more. If the lost transaction had committed, leases put again
    /// pass (the same client holds them) and removals find nothing to delete; other records
    /// put again find a version of theirs the store has not seen and the batch is refused
    /// ([`PgStoreError::Conflict`]): its operations fail although their rows are stored, and
    /// [`Durable`](crate::Durable) reloads them from the database.
    ///
    /// A batch that would replace a record held by someone else fails with
    /// [`PgStoreError::Conflict`] and is not tried again.
    fn commit(&mut self, changes: &[Change]) -> Result<(), PgStoreError> {
        let hooked = self.hook.as_mut().is_some_and(|h| h.pending());
        if changes.is_empty() && !hooked {
            return Ok(());
        }
        let result = self.commit_rows(changes);
        if let Some(hook) = self.hook.as_mut() {
            hook.finished(result.is_ok());
        }
        result
    }

    /// A [`Conflict`](PgStoreError::Conflict) (the database refused the batch's content), a
    /// [`Refused`](PgStoreError::Refused) one (the application's hook refused it) and a
    /// batch given up after repeated [`Contention`](PgStoreError::Contention) left the store
    /// healthy and the database unchanged by the batch.
    fn is_refusal(error: &PgStoreError) -> bool {
        matches!(
            error,
            PgStoreError::Conflict { .. }
                | PgStoreError::Refused { .. }
                | PgStoreError::Contention { .. }
        )
    }
}

impl PgStore {
    /// [`Store::commit`]'s tries.
    fn commit_rows(&mut self, changes: &[Change]) -> Result<(), PgStoreError> {
        let rows = self.rows(changes)?;
        let mut attempt = 1;
        let mut reconnected = false;
        loop {
            match self.try_commit(&rows) {
                Ok(()) => {
                    self.remember(rows);
                    return Ok(());
                }
                Err(e @ (PgStoreError::Conflict { .. } | PgStoreError::Refused { .. })) => {
                    return Err(e);
                }
                Err(PgStoreError::Database { source, .. }) if is_conflict(&source) => {
                    if attempt == COMMIT_ATTEMPTS {
                        return Err(PgStoreError::Contention {
                            target: self.target.clone(),
                            attempts: attempt,
                            source,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(2 << attempt));
                    attempt += 1;
                }
                Err(e) if !reconnected => {
                    self.reconnect_after(e)?;
                    reconnected = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// After a commit: the versions of the records the batch wrote, and none of those it
    /// removed.
    fn remember(&mut self, rows: Rows) {
        for key in rows.removed.ips.into_iter().zip(rows.removed.discovered) {
            self.versions.remove(&key);
        }
        let keys = rows.put.ips.into_iter().zip(rows.put.discovered);
        self.versions.extend(keys.zip(rows.put.records));
    }

    fn try_load(&mut self) -> Result<Snapshot, PgStoreError> {
        let target = self.target.clone();
        let db = |action: &'static str| {
            let target = target.clone();
            move |source| PgStoreError::Database {
                target,
                action,
                source,
            }
        };
        let s = &self.statements;
        let mut txn = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(db("begin a read transaction"))?;
        let topology: Option<String> = txn
            .query_opt(&s.load_topology, &[])
            .map_err(db("read the topology"))?
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(db("read the topology"))?;
        let records = txn
            .query(&s.load_records, &[])
            .map_err(db("read the records"))?;
        let bindings = txn
            .query(&s.load_bindings, &[])
            .map_err(db("read the client bindings"))?;
        txn.commit().map_err(db("end a read transaction"))?;

        let mut snapshot = Snapshot {
            topology: topology
                .map(|doc| serde_json::from_str(&doc))
                .transpose()
                .map_err(|source| PgStoreError::Topology {
                    target: self.target.clone(),
                    action: "decode",
                    source,
                })?,
            records: Vec::with_capacity(records.len()),
            bindings: Vec::with_capacity(bindings.len()),
        };
        let mut versions = HashMap::with_capacity(records.len());
        for row in &records {
            let ip: IpAddr = row.try_get(0).map_err(self.db_error("read a record"))?;
            let discovered: bool = row.try_get(1).map_err(self.db_error("read a record"))?;
            let bytes: &[u8] = row.try_get(2).map_err(self.db_error("read a record"))?;
            let record: Record = postcard::from_bytes(bytes).map_err(|source| {
                self.codec_error("decode", format!("the record of {ip}"), source)
            })?;
            if record_key(&record) != (ip, discovered) {
                return Err(self.corrupt(format!(
                    "the row of {ip} (discovered: {discovered}) holds the record of {} ({})",
                    record.ip, record.kind
                )));
            }
            snapshot.records.push(record);
            versions.insert((ip, discovered), bytes.to_vec());
        }
        for row in &bindings {
            let key: &[u8] = row
                .try_get(0)
                .map_err(self.db_error("read a client binding"))?;
            let ip: IpAddr = row
                .try_get(1)
                .map_err(self.db_error("read a client binding"))?;
            let client: ClientKey = postcard::from_bytes(key)
                .map_err(|source| self.codec_error("decode", "a client key".to_owned(), source))?;
            snapshot.bindings.push((client, ip));
        }
        // The encoded keys order differently from the keys themselves.
        snapshot.bindings.sort_by(|a, b| a.0.cmp(&b.0));
        self.versions = versions;
        Ok(snapshot)
    }
}

/// Whether PostgreSQL aborted the transaction for a conflict with another one, so that trying
/// again may succeed.
fn is_conflict(error: &postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_reported_without_its_password() {
        let err = PgStore::connect("postgresql://maas:s3cret@/maas?port=notaport").unwrap_err();
        assert!(matches!(err, PgStoreError::Url { .. }), "{err:?}");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains("maas:***@"), "{text}");
        }
    }

    #[test]
    fn a_missing_server_is_reported_without_the_password() {
        let dir = std::env::temp_dir().join(format!("maas-ipam-nopg-{}", std::process::id()));
        let url = format!(
            "postgresql://maas:s3cret@/maas?host={}&port=1",
            dir.display()
        );
        let err = PgStore::connect(&url).unwrap_err();
        assert!(matches!(err, PgStoreError::Connect { .. }), "{err:?}");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("s3cret"), "{text}");
        }
        assert!(err.to_string().contains("cannot connect"), "{err}");
    }
}
