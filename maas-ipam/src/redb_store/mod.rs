//! The embedded store on redb: see [`RedbStore`].

use std::path::{Path, PathBuf};

use maas_net::TopologyDoc;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::store::{Superseded, record_key};
use crate::{Change, ClientKey, Record, Snapshot, Store};

mod journal;
mod keys;
#[cfg(test)]
mod tests;

use journal::{AppendError, Journal};
pub use journal::{JournalError, JournalReplay, read_journal};
use keys::{Octets, decode_version, octets_to_ip, random_id};

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
/// The `meta` key of the checkpoint: the number of the last journal entry the tables hold.
const META_JOURNAL: &str = "journal";
/// The `meta` key of the journal id, drawn at random when the file is created.
const META_JOURNAL_ID: &str = "journal-id";

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
    /// The journal could not be created, read, written or synced.
    #[error("address store journal {}: cannot {action}: {source}", .path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What was being done, e.g. "sync an entry".
        action: &'static str,
        /// What the system reported.
        #[source]
        source: std::io::Error,
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

/// The embedded crash-safe store: one [redb](https://crates.io/crates/redb) database file and
/// a journal beside it.
///
/// Why redb: it is pure Rust (no C toolchain, nothing to link, builds wherever the rest of the
/// workspace builds), it is a single file that an operator can copy or delete, and its write
/// transactions are ACID with crash-safe commits: a commit returns only after the data and the
/// checksummed commit slot that points at it are synced to disk, and a file opened after a
/// crash shows exactly the last commit that returned.
///
/// Why a journal: a redb commit rewrites every B-tree page on the path to each changed key
/// (about a dozen scattered page writes for a lease and its binding) before its sync, and a
/// DHCP server commits a batch every millisecond or so. The journal (the database's file name
/// with `-journal` appended, [`DEFAULT_JOURNAL_BYTES`](Self::DEFAULT_JOURNAL_BYTES) by default)
/// takes each batch as one checksummed entry appended to a preallocated file and one data
/// sync, which is what [`Store::commit`] asks for: the batch survives a crash once the call
/// returns. When the journal is full, or when the application's own tables have something to
/// write ([`on_commit`](Self::on_commit)), or the batch changes the topology or is large
/// ([`DIRECT_BATCH`](Self::DIRECT_BATCH) changes or more), the store writes
/// everything journaled since the last checkpoint into the tables in one write transaction (a
/// *checkpoint*, where each address is written once however often it changed) and starts the
/// journal over. Opening a store replays what the journal holds after the checkpoint, so the
/// two files together always show exactly the last commit that returned. Keep them together:
/// copy or delete both. [`open_with_journal`](Self::open_with_journal) sets the journal's size;
/// size 0 commits every batch to the tables as its own write transaction.
///
/// Layout (format version [`RedbStore::FORMAT_VERSION`]):
///
/// | table      | key                                   | value                      |
/// |------------|---------------------------------------|----------------------------|
/// | `records`  | (address octets, is-`DISCOVERED`)     | the [`Record`], postcard   |
/// | `bindings` | the [`ClientKey`], postcard           | address octets (4 or 16)   |
/// | `meta`     | `"format"`                            | `u32` LE                   |
/// | `meta`     | `"topology"`                          | JSON document              |
/// | `meta`     | `"journal"` / `"journal-id"`          | `u64` LE                   |
///
/// `bindings` holds only the bindings no record implies (see [`Change::PutBinding`]): a client
/// whose offer or lease is in `records` has no row there.
///
/// The topology is stored as JSON because its document form leaves out empty and default
/// fields, which a compact non-self-describing encoding cannot express. `"journal"` is the
/// number of the last journal entry the tables hold, `"journal-id"` a random number drawn when
/// the file was created. A journal entry is a length, a CRC-32 (of the journal id, the
/// sequence number and the changes), a sequence number and the batch's changes in postcard,
/// so a journal left beside another database is not replayed into it.
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
    /// Writes of the application's own tables, made in the write transactions.
    hook: Option<Hook>,
    /// Where batches go between checkpoints; `None` with a journal of size 0.
    journal: Option<Journal>,
    /// The batches journaled since the last checkpoint, in order.
    pending: Vec<Change>,
    /// Finds the changes a checkpoint (or a batch written to the tables) need not write.
    superseded: Superseded,
    /// The same for each journaled batch: a table of its own, as a table is cleared in time
    /// proportional to its capacity, which a checkpoint's makes large.
    batch_superseded: Superseded,
    /// Their flags.
    skip: Vec<bool>,
}

/// What [`RedbStore::on_commit`] runs in a write transaction.
pub type CommitHook = dyn FnMut(&WriteTransaction) -> Result<(), redb::Error> + Send + Sync;

/// The application's hook: whether it has something to write, and the writing.
struct Hook {
    pending: Box<dyn Fn() -> bool + Send + Sync>,
    write: Box<CommitHook>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("journal", &self.journal)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// The storage format this build reads and writes. Versions 1 (no journal) and 2 (a
    /// binding row for every client, also where a record implies it) are read and upgraded on
    /// open; an older build refuses the upgraded file rather than miss what its journal holds
    /// or the bindings it would not derive from the records.
    pub const FORMAT_VERSION: u32 = 3;

    /// Batches of this many changes or more skip the journal: one write transaction of their
    /// own costs about what their share of a checkpoint would (a burst of leases, a large
    /// import), so they are written once, into the tables (with what the journal holds).
    pub const DIRECT_BATCH: usize = 512;

    /// The journal's size unless [`open_with_journal`](Self::open_with_journal) says
    /// otherwise: 4 MiB, some 25,000 DHCP leases between checkpoints.
    pub const DEFAULT_JOURNAL_BYTES: u64 = 4 << 20;

    /// Opens the store in `path`, creating the file if it does not exist (its directory must),
    /// with a journal of [`DEFAULT_JOURNAL_BYTES`](Self::DEFAULT_JOURNAL_BYTES).
    ///
    /// A file left by a crash is recovered to its last commit. The file is locked: a second
    /// open, by this process or another, fails until the first store is dropped.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_journal(path, Self::DEFAULT_JOURNAL_BYTES)
    }

    /// Like [`open`](Self::open), with a journal of `journal_bytes` (0: no journal, each
    /// batch is a write transaction of its own). Whatever the size, a journal left by an
    /// earlier run is replayed first.
    pub fn open_with_journal(
        path: impl AsRef<Path>,
        journal_bytes: u64,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let mut store = Self {
            db,
            path,
            buf: Vec::new(),
            hook: None,
            journal: None,
            pending: Vec::new(),
            superseded: Superseded::default(),
            batch_superseded: Superseded::default(),
            skip: Vec::new(),
        };
        let (id, checkpoint) = store.init()?;
        let checkpoint = store.recover(id, checkpoint)?;
        let journal_path = journal::path_for(&store.path);
        if journal_bytes > 0 {
            let journal = Journal::create(journal_path.clone(), journal_bytes, id, checkpoint)
                .map_err(|source| StoreError::Journal {
                    path: journal_path,
                    action: "create",
                    source,
                })?;
            store.journal = Some(journal);
        } else if let Err(source) = std::fs::remove_file(&journal_path)
            && source.kind() != std::io::ErrorKind::NotFound
        {
            return Err(StoreError::Journal {
                path: journal_path,
                action: "remove",
                source,
            });
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database, for an application that keeps tables of its own in the same file (read
    /// them here; write them through [`on_commit`](Self::on_commit)). The tables this store
    /// uses are `records`, `bindings` and `meta`; the first two hold the addresses as of the
    /// last checkpoint (the journal holds what came after: [`Store::load`] gives both).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs `write` in the write transactions, after the address changes and before the
    /// commit, so the application's own records become durable atomically with them. An error
    /// from `write` aborts the transaction: none of the batch is stored.
    ///
    /// `pending` says whether the application has something to write: a commit then goes to
    /// the tables (with everything journaled before it) instead of the journal. With a hook,
    /// a commit with no address change still commits when `pending` says so (see
    /// [`Durable::sync`](crate::Durable::sync)): stage the records, then ask for the commit.
    pub fn on_commit(
        &mut self,
        pending: impl Fn() -> bool + Send + Sync + 'static,
        write: impl FnMut(&WriteTransaction) -> Result<(), redb::Error> + Send + Sync + 'static,
    ) {
        self.hook = Some(Hook {
            pending: Box::new(pending),
            write: Box::new(write),
        });
    }

    /// Creates the tables of a new file, checks the format version of an existing one
    /// (upgrading version 1), and returns the journal id and the checkpoint.
    fn init(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.begin_write()?;
        let (id, checkpoint);
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
                Some(Some(1 | 2)) | None => {
                    meta.insert(META_FORMAT, &Self::FORMAT_VERSION.to_le_bytes()[..])
                        .map_err(|e| self.db_error("write the format version", e))?;
                }
                Some(Some(found)) => {
                    return Err(StoreError::UnsupportedVersion {
                        path: self.path.clone(),
                        found,
                        supported: Self::FORMAT_VERSION,
                    });
                }
                Some(None) => return Err(self.corrupt("the format version is not 4 bytes")),
            }
            checkpoint = self
                .meta_u64(&meta, META_JOURNAL, "the checkpoint")?
                .unwrap_or(0);
            id = match self.meta_u64(&meta, META_JOURNAL_ID, "the journal id")? {
                Some(id) => id,
                None => {
                    let id = random_id();
                    meta.insert(META_JOURNAL_ID, &id.to_le_bytes()[..])
                        .map_err(|e| self.db_error("write the journal id", e))?;
                    id
                }
            };
        }
        txn.commit()
            .map_err(|e| self.db_error("commit a write transaction", e))?;
        Ok((id, checkpoint))
    }

    /// A `u64` in `meta`, if there is one.
    fn meta_u64(
        &self,
        meta: &redb::Table<'_, &str, &[u8]>,
        key: &str,
        what: &str,
    ) -> Result<Option<u64>, StoreError> {
        let Some(value) = meta
            .get(key)
            .map_err(|e| self.db_error("read the meta table", e))?
        else {
            return Ok(None);
        };
        <[u8; 8]>::try_from(value.value())
            .map(|bytes| Some(u64::from_le_bytes(bytes)))
            .map_err(|_| self.corrupt(format!("{what} is not 8 bytes")))
    }

    /// Writes what the journal holds after `checkpoint` into the tables; returns the new
    /// checkpoint.
    fn recover(&mut self, id: u64, checkpoint: u64) -> Result<u64, StoreError> {
        let path = journal::path_for(&self.path);
        let bytes = journal::read(&path).map_err(|source| StoreError::Journal {
            path: path.clone(),
            action: "read",
            source,
        })?;
        let Some(bytes) = bytes else {
            return Ok(checkpoint);
        };
        let replay = read_journal(&bytes, id, checkpoint).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let Some(&(last, _)) = replay.batches.last() else {
            return Ok(checkpoint);
        };
        let changes: Vec<Change> = replay.batches.into_iter().flat_map(|(_, c)| c).collect();
        let txn = self.begin_write()?;
        self.write(&txn, &changes)?;
        self.put_checkpoint(&txn, last)?;
        txn.commit()
            .map_err(|e| self.db_error("commit a write transaction", e))?;
        Ok(last)
    }

    fn put_checkpoint(&self, txn: &WriteTransaction, seq: u64) -> Result<(), StoreError> {
        let mut meta = self.open_table(txn, META, "open the meta table")?;
        meta.insert(META_JOURNAL, &seq.to_le_bytes()[..])
            .map_err(|e| self.db_error("write the checkpoint", e))?;
        Ok(())
    }

    /// Writes everything journaled since the last checkpoint, then `changes`, into the tables
    /// in one write transaction with the application's records, and starts the journal over.
    /// On error nothing is stored and what was journaled stays pending.
    fn commit_tables(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        let pending = std::mem::take(&mut self.pending);
        let result = self.fill(&txn, &pending, changes);
        self.pending = pending;
        result?;
        txn.commit()
            .map_err(|e| self.db_error("commit a write transaction", e))?;
        self.pending.clear();
        if let Some(journal) = self.journal.as_mut() {
            journal.rewind();
        }
        Ok(())
    }

    fn fill(
        &mut self,
        txn: &WriteTransaction,
        pending: &[Change],
        changes: &[Change],
    ) -> Result<(), StoreError> {
        if !pending.is_empty() {
            self.write(txn, pending)?;
        }
        self.write(txn, changes)?;
        if let Some(journal) = &self.journal
            && !journal.is_empty()
        {
            self.put_checkpoint(txn, journal.last_seq())?;
        }
        if let Some(hook) = self.hook.as_mut() {
            (hook.write)(txn).map_err(|e| StoreError::Database {
                path: self.path.clone(),
                action: "write the application's records",
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    fn append(&mut self, changes: &[Change]) -> Result<(), AppendError> {
        match self.journal.as_mut() {
            Some(journal) => journal.append(changes),
            None => Err(AppendError::Full),
        }
    }

    /// Writes what the journal holds into the tables now, if it holds anything.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        if self.journal.as_ref().is_none_or(Journal::is_empty) {
            return Ok(());
        }
        self.commit_tables(&[])
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
        let mut skip = std::mem::take(&mut self.skip);
        self.superseded.mark(changes, &mut skip);
        let result = changes.iter().zip(&skip).try_for_each(|(change, &skip)| {
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
        self.skip = skip;
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

    /// Checkpoints (so that the tables hold everything), then reads the tables.
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        self.checkpoint()?;
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

    /// One journal entry per batch, synced before this returns; or, when the journal is
    /// full, the application has records to write or the topology changes, one write
    /// transaction with everything journaled before, committed with redb's immediate
    /// durability. On any error nothing of the batch is stored.
    ///
    /// A journaled batch leaves out the changes a later change of the same batch makes
    /// pointless (an offer's hold on an address its lease then replaces): replaying it ends
    /// in the same state, and the journal fills that much later.
    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if !self.journals(changes) {
            return self.commit_tables(changes);
        }
        // Journaled changes are kept for the next checkpoint: a copy either way.
        self.journal_batch(changes.to_vec())
    }

    fn commit_owned(&mut self, changes: &mut Vec<Change>) -> Result<(), StoreError> {
        if !self.journals(changes) {
            return self.commit_tables(changes);
        }
        // Kept for the next checkpoint without a copy.
        self.journal_batch(std::mem::take(changes))
    }
}

impl RedbStore {
    /// Whether `changes` belong in the journal: a store with a journal, a batch of address
    /// changes only (no topology), smaller than [`DIRECT_BATCH`](Self::DIRECT_BATCH), with no
    /// application records waiting. A batch this large shares B-tree pages in a transaction of
    /// its own as well as in a checkpoint: journaling it would write it twice.
    fn journals(&self, changes: &[Change]) -> bool {
        let hooked = self.hook.as_ref().is_some_and(|hook| (hook.pending)());
        if changes.is_empty() {
            // Durable at once, unless the application's records wait for a transaction.
            return !hooked;
        }
        self.journal.is_some()
            && !hooked
            && changes.len() < Self::DIRECT_BATCH
            && !changes.iter().any(|c| matches!(c, Change::Topology(_)))
    }

    /// Journals `batch` (which [`journals`](Self::journals) accepted) without the changes a
    /// later one of the batch supersedes, and keeps it for the next checkpoint; a batch larger
    /// than the whole journal goes to the tables instead.
    fn journal_batch(&mut self, mut batch: Vec<Change>) -> Result<(), StoreError> {
        self.batch_superseded.mark(&batch, &mut self.skip);
        if self.skip.contains(&true) {
            let mut skip = self.skip.iter();
            batch.retain(|_| !skip.next().copied().unwrap_or(false));
        }
        if self.commit_journaled(&batch)? {
            self.pending.append(&mut batch);
            return Ok(());
        }
        self.commit_tables(&batch)
    }

    /// Appends `changes` (which [`journals`](Self::journals) accepted) to the journal;
    /// `Ok(true)` when they are durable there (the caller adds them to the pending list),
    /// `Ok(false)` when they do not fit even in an empty journal and go to the tables.
    fn commit_journaled(&mut self, changes: &[Change]) -> Result<bool, StoreError> {
        if changes.is_empty() {
            return Ok(true);
        }
        let mut result = self.append(changes);
        if matches!(result, Err(AppendError::Full)) {
            // Start the journal over (if anything is in it) and try again.
            self.checkpoint()?;
            result = self.append(changes);
        }
        match result {
            Ok(()) => Ok(true),
            // Larger than the whole journal: into the tables.
            Err(AppendError::Full) => Ok(false),
            Err(AppendError::Encode(source)) => Err(self.encode_error("a journal entry", source)),
            Err(AppendError::Io(source)) => {
                let path = self
                    .journal
                    .as_ref()
                    .map_or_else(PathBuf::new, |j| j.path().to_path_buf());
                Err(StoreError::Journal {
                    path,
                    action: "write and sync an entry",
                    source,
                })
            }
        }
    }
}

impl Drop for RedbStore {
    /// Checkpoints, so that a store closed cleanly leaves nothing to replay. A failure leaves
    /// the journal to be replayed at the next open.
    fn drop(&mut self) {
        let _ = self.checkpoint();
    }
}
