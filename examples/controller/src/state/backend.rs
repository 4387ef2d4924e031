//! Where the state lives: the embedded redb file (the default, for one machine), or a
//! PostgreSQL database that several regions share.

use std::path::{Path, PathBuf};

use maas_ipam::{Change as IpamChange, PgStore, RedbStore, Snapshot, Store as IpamStore};

use super::StateError;
use super::pg::PgRecords;
use super::store::{Change, Records, RedbRecords, Store};

/// Where a region keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoreAt {
    /// `ipam.redb` in this directory.
    Embedded(PathBuf),
    /// A PostgreSQL database, by URL (which may hold a password: never shown).
    Postgres(String),
}

impl StoreAt {
    /// Where `config` says a region's state lives: `[database]`, else the embedded file in
    /// the state directory.
    pub(crate) fn of(config: &crate::config::Config) -> Result<Self, String> {
        Ok(match config.database_url()? {
            Some(url) => Self::Postgres(url),
            None => Self::embedded(&config.controller.state_dir),
        })
    }

    /// The embedded file in `dir`.
    pub(crate) fn embedded(dir: &Path) -> Self {
        Self::Embedded(dir.join("ipam.redb"))
    }
}

/// The address store of either kind.
pub(crate) enum Backend {
    /// The embedded file.
    Redb(Box<RedbStore>),
    /// PostgreSQL.
    Pg(Box<PgStore>),
}

/// An error of either address store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    /// The embedded file's.
    #[error(transparent)]
    Redb(#[from] maas_ipam::StoreError),
    /// PostgreSQL's.
    #[error(transparent)]
    Pg(#[from] maas_ipam::PgStoreError),
}

impl IpamStore for Backend {
    type Error = BackendError;

    fn load(&mut self) -> Result<Snapshot, BackendError> {
        Ok(match self {
            Self::Redb(s) => s.load()?,
            Self::Pg(s) => s.load()?,
        })
    }

    fn commit(&mut self, changes: &[IpamChange]) -> Result<(), BackendError> {
        match self {
            Self::Redb(s) => s.commit(changes)?,
            Self::Pg(s) => s.commit(changes)?,
        }
        Ok(())
    }

    fn commit_owned(&mut self, changes: &mut Vec<IpamChange>) -> Result<(), BackendError> {
        match self {
            Self::Redb(s) => s.commit_owned(changes)?,
            Self::Pg(s) => s.commit_owned(changes)?,
        }
        Ok(())
    }

    fn is_refusal(error: &BackendError) -> bool {
        match error {
            BackendError::Redb(e) => RedbStore::is_refusal(e),
            BackendError::Pg(e) => PgStore::is_refusal(e),
        }
    }
}

/// The controller's tables of either kind.
pub(crate) enum RecordStore {
    /// In the embedded file.
    Redb(RedbRecords),
    /// In PostgreSQL.
    Pg(Box<PgRecords>),
}

impl RecordStore {
    /// Opens both stores at `at`.
    pub(crate) fn open(at: &StoreAt) -> Result<(Backend, Self), StateError> {
        match at {
            StoreAt::Embedded(path) => {
                let mut store = RedbStore::open(path)?;
                let records = RedbRecords::attach(&mut store)?;
                Ok((Backend::Redb(Box::new(store)), Self::Redb(records)))
            }
            StoreAt::Postgres(url) => {
                let (store, records) = PgRecords::connect(url)?;
                Ok((Backend::Pg(Box::new(store)), Self::Pg(Box::new(records))))
            }
        }
    }

    /// Every record, all events and audit entries included.
    fn everything(&self) -> Result<Records, StateError> {
        Ok(match self {
            Self::Redb(r) => r.load()?,
            Self::Pg(r) => {
                // What `connect` read holds only the recent events: read them all.
                let _ = r.load()?;
                r.read_everything()?
            }
        })
    }

    /// Reads every record back (once, at start).
    pub(crate) fn load(&self) -> Result<Records, StateError> {
        Ok(match self {
            Self::Redb(r) => r.load()?,
            Self::Pg(r) => r.load()?,
        })
    }

    /// Queues changes for the next commit.
    pub(crate) fn stage(&self, changes: Vec<Change>) {
        match self {
            Self::Redb(r) => r.stage(changes),
            Self::Pg(r) => r.stage(changes),
        }
    }
}

/// What [`copy`] copied.
#[derive(Debug)]
pub(crate) struct Copied {
    /// Address records.
    pub(crate) addresses: usize,
    /// Client bindings.
    pub(crate) bindings: usize,
    /// The controller's records, by kind.
    pub(crate) records: Vec<(&'static str, usize)>,
}

/// Copies the whole state at `from` into the empty store at `to`, in one transaction: the
/// network model, every address record and binding, and every controller record. Neither
/// may be in use by a running controller; a store at `to` that holds anything is refused.
pub(crate) fn copy(from: &StoreAt, to: &StoreAt) -> Result<Copied, StateError> {
    let failed = |what: &str, e: BackendError| StateError::Invalid(format!("{what}: {e}"));
    let (mut source, source_records) = RecordStore::open(from)?;
    let snapshot = source.load().map_err(|e| failed("reading the source", e))?;
    let records = source_records.everything()?;
    drop(source_records);
    drop(source);
    let (mut target, target_records) = RecordStore::open(to)?;
    let there = target.load().map_err(|e| failed("reading the target", e))?;
    if !there.is_empty() || !target_records.load()?.is_empty() {
        return Err(StateError::Conflict(
            "the target store is not empty: copy only into a new database or directory".into(),
        ));
    }
    let copied = Copied {
        addresses: snapshot.records.len(),
        bindings: snapshot.bindings.len(),
        records: records.counts(),
    };
    let mut changes = Vec::with_capacity(1 + snapshot.records.len() + snapshot.bindings.len());
    changes.extend(snapshot.topology.map(IpamChange::Topology));
    changes.extend(snapshot.records.into_iter().map(IpamChange::PutRecord));
    changes.extend(
        snapshot
            .bindings
            .into_iter()
            .map(|(client, ip)| IpamChange::PutBinding { client, ip }),
    );
    target_records.stage(records.into_changes());
    target
        .commit(&changes)
        .map_err(|e| failed("writing the target", e))?;
    Ok(copied)
}
