//! The embedded store on redb: see [`RedbStore`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use maas_net::TopologyDoc;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::store::record_key;
use crate::{Change, ClientKey, Record, Snapshot, Store};

/// Records, keyed by (address octets, whether it is the `DISCOVERED` record).
const RECORDS: TableDefinition<'_, (&[u8], bool), &[u8]> = TableDefinition::new("records");
/// The last address of each DHCP client, keyed by the postcard encoding of its [`ClientKey`].
const BINDINGS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("bindings");
/// The format version and the topology.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// The `meta` key of the format version.
const META_FORMAT: &str = "format";
/// The `meta` key of the topology document.
const META_TOPOLOGY: &str = "topology";

/// Why the embedded store failed. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened or created (missing directory, permissions, held
    /// open by another process, not a redb file, damaged beyond repair).
    #[error("cannot open the address store {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: Box<redb::DatabaseError>,
    },
    /// A database operation failed (I/O error, full disk, damaged file).
    #[error("address store {}: cannot {action}: {source}", .path.display())]
    Database {
        /// The file.
        path: PathBuf,
        /// What was being done, e.g. "commit a write transaction".
        action: &'static str,
        /// What redb reported.
        #[source]
        source: Box<redb::Error>,
    },
    /// A record or client key could not be encoded.
    #[error("address store {}: cannot encode {what}: {source}", .path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// What was being encoded.
        what: &'static str,
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
    /// A stored record or client key could not be decoded.
    #[error("address store {}: cannot decode {what}: {source}", .path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What was being decoded, e.g. "the record of 10.0.0.5".
        what: String,
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
    /// The topology document could not be encoded or decoded.
    #[error("address store {}: cannot {action} the topology document: {source}", .path.display())]
    Topology {
        /// The file.
        path: PathBuf,
        /// "encode" or "decode".
        action: &'static str,
        /// What the JSON codec reported.
        #[source]
        source: serde_json::Error,
    },
    /// The file holds something this store never writes.
    #[error("address store {} is damaged: {detail}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file was written by a build with another storage format.
    #[error(
        "address store {} has format version {found}; this build reads version {supported}",
        .path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
}

/// The embedded crash-safe store: one [redb](https://crates.io/crates/redb) database file.
///
/// Why redb: it is pure Rust (no C toolchain, nothing to link, builds wherever the rest of the
/// workspace builds), it is a single file that an operator can copy or delete, and its write
/// transactions are ACID with crash-safe commits: a commit returns only after the data and the
/// checksummed commit slot that points at it are synced to disk, and a file opened after a
/// crash shows exactly the last commit that returned. That is the contract [`Store::commit`]
/// asks for, with one `fsync` per commit, which group commit then spreads over every change in
/// the batch.
///
/// Layout (format version [`RedbStore::FORMAT_VERSION`]):
///
/// | table      | key                                   | value                      |
/// |------------|---------------------------------------|----------------------------|
/// | `records`  | (address octets, is-`DISCOVERED`)     | the [`Record`], postcard   |
/// | `bindings` | the [`ClientKey`], postcard           | address octets (4 or 16)   |
/// | `meta`     | `"format"` / `"topology"`             | `u32` LE / JSON document   |
///
/// The topology is stored as JSON because its document form leaves out empty and default
/// fields, which a compact non-self-describing encoding cannot express.
///
/// ```no_run
/// use maas_ipam::{Durable, RedbStore};
///
/// let store = RedbStore::open("/var/lib/maas-ipam/ipam.redb")?;
/// let ipam = Durable::open(store)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    /// Scratch space for encoding, reused across changes.
    buf: Vec<u8>,
    /// Writes of the application's own tables, made in each commit's transaction.
    hook: Option<Box<CommitHook>>,
}

/// What [`RedbStore::on_commit`] runs in each write transaction.
pub type CommitHook = dyn FnMut(&WriteTransaction) -> Result<(), redb::Error> + Send + Sync;

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// The storage format this build reads and writes.
    pub const FORMAT_VERSION: u32 = 1;

    /// Opens the store in `path`, creating the file if it does not exist (its directory must).
    ///
    /// A file left by a crash is recovered to its last commit. The file is locked: a second
    /// open, by this process or another, fails until the first store is dropped.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let store = Self {
            db,
            path,
            buf: Vec::new(),
            hook: None,
        };
        store.init()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database, for an application that keeps tables of its own in the same file (read
    /// them here; write them through [`on_commit`](Self::on_commit)). The tables this store
    /// uses are `records`, `bindings` and `meta`.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs `hook` in every write transaction, after the address changes and before the
    /// commit, so the application's own records become durable atomically with them. An error
    /// from the hook aborts the transaction: none of the batch is stored. With a hook, a
    /// commit with no address change still commits (see
    /// [`Durable::sync`](crate::Durable::sync)).
    pub fn on_commit(
        &mut self,
        hook: impl FnMut(&WriteTransaction) -> Result<(), redb::Error> + Send + Sync + 'static,
    ) {
        self.hook = Some(Box::new(hook));
    }

    /// Creates the tables of a new file and checks the format version of an existing one.
    fn init(&self) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            self.open_table(&txn, RECORDS, "open the records table")?;
            self.open_table(&txn, BINDINGS, "open the bindings table")?;
            let mut meta = self.open_table(&txn, META, "open the meta table")?;
            let found = meta
                .get(META_FORMAT)
                .map_err(|e| self.db_error("read the format version", e))?
                .map(|v| decode_version(v.value()));
            match found {
                Some(Some(v)) if v == Self::FORMAT_VERSION => {}
                Some(Some(found)) => {
                    return Err(StoreError::UnsupportedVersion {
                        path: self.path.clone(),
                        found,
                        supported: Self::FORMAT_VERSION,
                    });
                }
                Some(None) => return Err(self.corrupt("the format version is not 4 bytes")),
                None => {
                    meta.insert(META_FORMAT, &Self::FORMAT_VERSION.to_le_bytes()[..])
                        .map_err(|e| self.db_error("write the format version", e))?;
                }
            }
        }
        txn.commit()
            .map_err(|e| self.db_error("commit a write transaction", e))
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        self.db
            .begin_write()
            .map_err(|e| self.db_error("begin a write transaction", e))
    }

    fn open_table<'txn, K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        txn: &'txn WriteTransaction,
        table: TableDefinition<'_, K, V>,
        action: &'static str,
    ) -> Result<redb::Table<'txn, K, V>, StoreError> {
        txn.open_table(table).map_err(|e| self.db_error(action, e))
    }

    fn db_error(&self, action: &'static str, source: impl Into<redb::Error>) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            action,
            source: Box::new(source.into()),
        }
    }

    fn corrupt(&self, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    /// Writes `changes` into the tables of `txn`.
    fn write(&mut self, txn: &WriteTransaction, changes: &[Change]) -> Result<(), StoreError> {
        let mut records = self.open_table(txn, RECORDS, "open the records table")?;
        let mut bindings = self.open_table(txn, BINDINGS, "open the bindings table")?;
        let mut meta = self.open_table(txn, META, "open the meta table")?;
        let mut buf = std::mem::take(&mut self.buf);
        // Each insert copies B-tree pages: a key written twice in one batch is written once.
        let skip = crate::store::superseded(changes);
        let result = changes.iter().zip(skip).try_for_each(|(change, skip)| {
            if skip {
                return Ok(());
            }
            buf.clear();
            match change {
                Change::Topology(doc) => {
                    serde_json::to_writer(&mut buf, doc).map_err(|source| {
                        StoreError::Topology {
                            path: self.path.clone(),
                            action: "encode",
                            source,
                        }
                    })?;
                    meta.insert(META_TOPOLOGY, buf.as_slice())
                        .map_err(|e| self.db_error("store the topology", e))?;
                }
                Change::PutRecord(record) => {
                    buf = postcard::to_extend(record, std::mem::take(&mut buf))
                        .map_err(|source| self.encode_error("a record", source))?;
                    let (ip, discovered) = record_key(record);
                    let octets = Octets::of(ip);
                    records
                        .insert((octets.as_slice(), discovered), buf.as_slice())
                        .map_err(|e| self.db_error("store a record", e))?;
                }
                Change::RemoveRecord { ip, discovered } => {
                    let octets = Octets::of(*ip);
                    records
                        .remove((octets.as_slice(), *discovered))
                        .map_err(|e| self.db_error("remove a record", e))?;
                }
                Change::PutBinding { client, ip } => {
                    buf = postcard::to_extend(client, std::mem::take(&mut buf))
                        .map_err(|source| self.encode_error("a client key", source))?;
                    let octets = Octets::of(*ip);
                    bindings
                        .insert(buf.as_slice(), octets.as_slice())
                        .map_err(|e| self.db_error("store a client binding", e))?;
                }
                Change::RemoveBinding { client } => {
                    buf = postcard::to_extend(client, std::mem::take(&mut buf))
                        .map_err(|source| self.encode_error("a client key", source))?;
                    bindings
                        .remove(buf.as_slice())
                        .map_err(|e| self.db_error("remove a client binding", e))?;
                }
            }
            Ok(())
        });
        self.buf = buf;
        result
    }

    fn encode_error(&self, what: &'static str, source: postcard::Error) -> StoreError {
        StoreError::Encode {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn decode_error(&self, what: String, source: postcard::Error) -> StoreError {
        StoreError::Decode {
            path: self.path.clone(),
            what,
            source,
        }
    }
}

impl Store for RedbStore {
    type Error = StoreError;

    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| self.db_error("begin a read transaction", e))?;
        let mut snapshot = Snapshot::default();

        let meta = txn
            .open_table(META)
            .map_err(|e| self.db_error("open the meta table", e))?;
        if let Some(doc) = meta
            .get(META_TOPOLOGY)
            .map_err(|e| self.db_error("read the topology", e))?
        {
            let doc: TopologyDoc =
                serde_json::from_slice(doc.value()).map_err(|source| StoreError::Topology {
                    path: self.path.clone(),
                    action: "decode",
                    source,
                })?;
            snapshot.topology = Some(doc);
        }

        let records = txn
            .open_table(RECORDS)
            .map_err(|e| self.db_error("open the records table", e))?;
        let entries = records
            .iter()
            .map_err(|e| self.db_error("read the records", e))?;
        for entry in entries {
            let (key, value) = entry.map_err(|e| self.db_error("read a record", e))?;
            let (octets, discovered) = key.value();
            let ip = octets_to_ip(octets).ok_or_else(|| {
                self.corrupt(format!(
                    "a record key holds {} address octets",
                    octets.len()
                ))
            })?;
            let record: Record = postcard::from_bytes(value.value())
                .map_err(|source| self.decode_error(format!("the record of {ip}"), source))?;
            if record_key(&record) != (ip, discovered) {
                return Err(self.corrupt(format!(
                    "the record filed under {ip} (discovered: {discovered}) is for {} ({})",
                    record.ip, record.kind
                )));
            }
            snapshot.records.push(record);
        }

        let bindings = txn
            .open_table(BINDINGS)
            .map_err(|e| self.db_error("open the bindings table", e))?;
        let entries = bindings
            .iter()
            .map_err(|e| self.db_error("read the client bindings", e))?;
        for entry in entries {
            let (key, value) = entry.map_err(|e| self.db_error("read a client binding", e))?;
            let client: ClientKey = postcard::from_bytes(key.value())
                .map_err(|source| self.decode_error("a client key".to_owned(), source))?;
            let octets = value.value();
            let ip = octets_to_ip(octets).ok_or_else(|| {
                self.corrupt(format!(
                    "the binding of {client} holds {} address octets",
                    octets.len()
                ))
            })?;
            snapshot.bindings.push((client, ip));
        }
        Ok(snapshot)
    }

    /// One write transaction per batch, committed with redb's default immediate durability
    /// (synced before this returns). On any error the transaction is dropped, which aborts it:
    /// none of the batch is stored.
    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() && self.hook.is_none() {
            return Ok(());
        }
        let txn = self.begin_write()?;
        self.write(&txn, changes)?;
        if let Some(hook) = self.hook.as_mut() {
            hook(&txn).map_err(|e| StoreError::Database {
                path: self.path.clone(),
                action: "write the application's records",
                source: Box::new(e),
            })?;
        }
        txn.commit()
            .map_err(|e| self.db_error("commit a write transaction", e))
    }
}

/// An address's octets, 4 or 16 of them, without allocating.
struct Octets {
    bytes: [u8; 16],
    len: usize,
}

impl Octets {
    fn of(ip: IpAddr) -> Self {
        let mut bytes = [0; 16];
        match ip {
            IpAddr::V4(v4) => {
                bytes[..4].copy_from_slice(&v4.octets());
                Self { bytes, len: 4 }
            }
            IpAddr::V6(v6) => Self {
                bytes: v6.octets(),
                len: 16,
            },
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The address whose octets these are: 4 for IPv4, 16 for IPv6.
fn octets_to_ip(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(octets) {
        Some(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        None
    }
}

/// The format version stored in `meta`, if it is 4 bytes.
fn decode_version(bytes: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(bytes).ok().map(u32::from_le_bytes)
}

/// Round trips, reopening and agreement with the memory store are in the store suite that
/// every store runs (`tests/integration/store`); these are the tests of what only this store
/// has.
#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A directory of its own under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = std::env::temp_dir().join(format!(
                "maas-ipam-{tag}-{}-{n}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir(&dir).expect("create a temporary directory");
            Self(dir)
        }

        fn file(&self) -> PathBuf {
            self.0.join("ipam.redb")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn second_open_is_refused_with_the_path() {
        let dir = TempDir::new("locked");
        let _first = RedbStore::open(dir.file()).unwrap();
        let err = RedbStore::open(dir.file()).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&dir.file().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn open_fails_in_a_missing_directory() {
        let dir = TempDir::new("missing");
        let err = RedbStore::open(dir.0.join("nowhere").join("ipam.redb")).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("nowhere"), "{err}");
    }

    #[test]
    fn another_format_version_is_refused() {
        let dir = TempDir::new("version");
        drop(RedbStore::open(dir.file()).unwrap());
        {
            let db = Database::create(dir.file()).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_FORMAT, &99u32.to_le_bytes()[..])
                .unwrap();
            txn.commit().unwrap();
        }
        let err = RedbStore::open(dir.file()).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::UnsupportedVersion {
                    found: 99,
                    supported: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn damaged_entries_are_reported_not_panicked_on() {
        let dir = TempDir::new("damaged");
        drop(RedbStore::open(dir.file()).unwrap());
        {
            let db = Database::create(dir.file()).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(RECORDS)
                .unwrap()
                .insert((&[1u8, 2, 3][..], false), &[0xffu8, 0xff][..])
                .unwrap();
            txn.commit().unwrap();
        }
        let err = RedbStore::open(dir.file()).unwrap().load().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");

        let dir = TempDir::new("undecodable");
        drop(RedbStore::open(dir.file()).unwrap());
        {
            let db = Database::create(dir.file()).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(RECORDS)
                .unwrap()
                .insert((&[10u8, 77, 1, 5][..], false), &[0xffu8, 0xff][..])
                .unwrap();
            txn.commit().unwrap();
        }
        let err = RedbStore::open(dir.file()).unwrap().load().unwrap_err();
        assert!(matches!(err, StoreError::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("10.77.1.5"), "{err}");
    }

    /// The application's own table is written in the address manager's transactions: a
    /// record queued before `sync` is durable once its ticket is, with no address change, and
    /// reads back after a reopen beside the address records.
    #[test]
    fn an_applications_records_commit_with_the_addresses() {
        const APP: TableDefinition<'_, &str, &str> = TableDefinition::new("app");
        let dir = TempDir::new("hook");
        let queue: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> =
            std::sync::Arc::default();
        {
            let mut store = RedbStore::open(dir.file()).expect("open");
            let pending = std::sync::Arc::clone(&queue);
            store.on_commit(move |txn| {
                let mut table = txn.open_table(APP)?;
                for (k, v) in pending.lock().expect("lock").drain(..) {
                    table.insert(k.as_str(), v.as_str())?;
                }
                Ok(())
            });
            let durable = crate::Durable::open(store).expect("durable");
            queue
                .lock()
                .expect("lock")
                .push(("machine".into(), "52:54:00:77:00:01".into()));
            let ticket = durable.sync().expect("sync");
            durable.wait(ticket).expect("durable");
            assert!(queue.lock().expect("lock").is_empty());
            drop(durable);
        }
        let store = RedbStore::open(dir.file()).expect("reopen");
        let txn = store.database().begin_read().expect("read");
        let table = txn.open_table(APP).expect("table");
        assert_eq!(
            table
                .get("machine")
                .expect("get")
                .map(|v| v.value().to_string()),
            Some("52:54:00:77:00:01".to_string())
        );
    }
}
