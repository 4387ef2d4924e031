//! The store behind [`State`](super::State): the [`Store`] trait, and its embedded
//! implementation, [`RedbRecords`], which keeps the controller's tables in the address
//! manager's redb file and writes them in the same transactions as the address changes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use maas_ipam::RedbStore;
use maas_net::Mac;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::records::{Discovery, Machine, MachineEvent, PowerSeen};

const MACHINES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("ctl_machines");
const DISCOVERIES: TableDefinition<'_, (u16, &[u8]), &[u8]> =
    TableDefinition::new("ctl_discoveries");
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("ctl_events");
const POWER: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("ctl_power");

/// One durable change of the controller's records.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change {
    /// Insert or replace a machine.
    PutMachine(Box<Machine>),
    /// Remove a machine.
    RemoveMachine(Mac),
    /// Insert or replace a discovery, under its (VLAN, address).
    PutDiscovery(Box<Discovery>),
    /// Add to a machine's history.
    AddEvent(MachineEvent),
    /// A machine's power state changed.
    PutPower(Mac, PowerSeen),
    /// Forget a machine's power state.
    RemovePower(Mac),
}

/// Everything the store holds besides the address records, as read back at start.
#[derive(Debug, Default)]
pub(crate) struct Records {
    pub(crate) machines: Vec<Machine>,
    pub(crate) discoveries: Vec<Discovery>,
    pub(crate) events: Vec<MachineEvent>,
    pub(crate) power: Vec<(Mac, PowerSeen)>,
}

/// Where the controller's records live. Changes are staged, then made durable by the next
/// commit of the address manager they are attached to, in the same transaction as the
/// address changes queued with them: wait for [`maas_ipam::Durable::sync`]'s ticket before
/// acknowledging them. A shared SQL database implements the same two calls: `load` at start,
/// and `stage` writing into the transaction that commits the address changes.
pub(crate) trait Store: Send + Sync + 'static {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads every record back.
    fn load(&self) -> Result<Records, Self::Error>;

    /// Queues changes for the next commit.
    fn stage(&self, changes: Vec<Change>);
}

/// A problem reading or writing the controller's tables.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// The database refused an operation.
    #[error("{path}: cannot {action}: {source}")]
    Database {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A record could not be read back.
    #[error("{path}: a stored {what} is not readable: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What kind of record.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
}

/// The controller's tables in the address manager's redb file.
#[derive(Clone)]
pub(crate) struct RedbRecords {
    staged: Arc<Mutex<Vec<Change>>>,
    loaded: Arc<Mutex<Option<Records>>>,
}

impl RedbRecords {
    /// Reads the controller's tables of `store`'s file and makes every later commit of
    /// `store` write what is staged here.
    pub(crate) fn attach(store: &mut RedbStore) -> Result<Self, RecordsError> {
        let path = store.path().to_path_buf();
        let records = read_all(store.database(), &path)?;
        let staged: Arc<Mutex<Vec<Change>>> = Arc::default();
        let queue = Arc::clone(&staged);
        store.on_commit(move |txn| {
            let changes =
                std::mem::take(&mut *queue.lock().unwrap_or_else(PoisonError::into_inner));
            write(txn, &changes)
        });
        Ok(Self {
            staged,
            loaded: Arc::new(Mutex::new(Some(records))),
        })
    }
}

impl Store for RedbRecords {
    type Error = RecordsError;

    fn load(&self) -> Result<Records, RecordsError> {
        Ok(self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default())
    }

    fn stage(&self, changes: Vec<Change>) {
        self.staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(changes);
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, redb::Error> {
    // Typed records encode infallibly: no map with non-string keys, no failing Serialize.
    serde_json::to_vec(value).map_err(|e| redb::Error::Io(std::io::Error::other(e)))
}

/// Writes `changes` into the tables of `txn`.
fn write(txn: &WriteTransaction, changes: &[Change]) -> Result<(), redb::Error> {
    let mut machines = txn.open_table(MACHINES)?;
    let mut discoveries = txn.open_table(DISCOVERIES)?;
    let mut events = txn.open_table(EVENTS)?;
    let mut power = txn.open_table(POWER)?;
    let mut next_event = events.last()?.map_or(0, |(k, _)| k.value() + 1);
    for change in changes {
        match change {
            Change::PutMachine(m) => {
                let m = &**m;
                machines.insert(&m.mac.octets()[..], json(m)?.as_slice())?;
            }
            Change::RemoveMachine(mac) => {
                machines.remove(&mac.octets()[..])?;
            }
            Change::PutDiscovery(d) => {
                discoveries.insert((d.vid, octets(d.ip).as_slice()), json(d)?.as_slice())?;
            }
            Change::AddEvent(e) => {
                events.insert(next_event, json(e)?.as_slice())?;
                next_event += 1;
            }
            Change::PutPower(mac, seen) => {
                power.insert(&mac.octets()[..], json(seen)?.as_slice())?;
            }
            Change::RemovePower(mac) => {
                power.remove(&mac.octets()[..])?;
            }
        }
    }
    Ok(())
}

/// Reads every table (an absent table is empty: a file from before the controller kept
/// its records here).
fn read_all(db: &redb::Database, path: &Path) -> Result<Records, RecordsError> {
    let failed = |action: &'static str| {
        move |e: redb::Error| RecordsError::Database {
            path: path.to_path_buf(),
            action,
            source: Box::new(e),
        }
    };
    let txn = db
        .begin_read()
        .map_err(|e| failed("begin a read transaction")(e.into()))?;
    let mut records = Records {
        machines: read_table(&txn, MACHINES, path, "machine", failed("read the machines"))?,
        ..Records::default()
    };
    records.discoveries = read_table(
        &txn,
        DISCOVERIES,
        path,
        "discovery",
        failed("read the discoveries"),
    )?;
    records.events = read_table(
        &txn,
        EVENTS,
        path,
        "machine event",
        failed("read the events"),
    )?;
    match txn.open_table(POWER) {
        Ok(table) => {
            for entry in table
                .iter()
                .map_err(|e| failed("read the power states")(e.into()))?
            {
                let (key, value) = entry.map_err(|e| failed("read a power state")(e.into()))?;
                let Ok(bytes) = <[u8; 6]>::try_from(key.value()) else {
                    continue;
                };
                let seen: PowerSeen = decode(value.value(), path, "power state")?;
                records.power.push((Mac::from(bytes), seen));
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(failed("open the power states")(e.into())),
    }
    Ok(records)
}

fn read_table<K: redb::Key + 'static, T: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<'_, K, &'static [u8]>,
    path: &Path,
    what: &'static str,
    failed: impl Fn(redb::Error) -> RecordsError,
) -> Result<Vec<T>, RecordsError> {
    let table = match txn.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(failed(e.into())),
    };
    let mut out = Vec::new();
    for entry in table.iter().map_err(|e| failed(e.into()))? {
        let (_, value) = entry.map_err(|e| failed(e.into()))?;
        out.push(decode(value.value(), path, what)?);
    }
    Ok(out)
}

fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<T, RecordsError> {
    serde_json::from_slice(bytes).map_err(|source| RecordsError::Decode {
        path: path.to_path_buf(),
        what,
        source,
    })
}
