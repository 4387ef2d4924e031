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

use super::auth::{AuditEntry, RackRecord, TokenRecord, User};
use super::devices::Device;
use super::records::{Discovery, Domain, Machine, MachineEvent, PowerSeen, Zone};
use super::resources::BootResource;
use crate::auth::token::TokenId;

const MACHINES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("ctl_machines");
const DISCOVERIES: TableDefinition<'_, (u16, &[u8]), &[u8]> =
    TableDefinition::new("ctl_discoveries");
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("ctl_events");
const POWER: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("ctl_power");
const USERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ctl_users");
const TOKENS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("ctl_tokens");
const RACKS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ctl_racks");
const MACHINE_TOKENS: TableDefinition<'_, &[u8], &[u8]> =
    TableDefinition::new("ctl_machine_tokens");
const AUDIT: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("ctl_audit");
const RESOURCES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ctl_boot_resources");
const ZONES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ctl_zones");
const DEVICES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ctl_devices");
const DOMAINS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ctl_domains");

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
    /// Insert or replace a user.
    PutUser(User),
    /// Remove a user.
    RemoveUser(String),
    /// Insert or replace a token's record (its hash).
    PutToken(TokenRecord),
    /// Remove a token: it stops working.
    RemoveToken(TokenId),
    /// Insert or replace a rack.
    PutRack(RackRecord),
    /// Remove a rack.
    RemoveRack(String),
    /// A machine's current credential (its text: boot configurations carry it).
    PutMachineToken(Mac, String),
    /// Forget a machine's credential.
    RemoveMachineToken(Mac),
    /// Add to the audit trail.
    AddAudit(AuditEntry),
    /// Insert or replace a boot resource.
    PutResource(Box<BootResource>),
    /// Insert or replace a zone.
    PutZone(Zone),
    /// Remove a zone.
    RemoveZone(String),
    /// Remove a discovery, by (VLAN, address).
    RemoveDiscovery(u16, IpAddr),
    /// Insert or replace a device.
    PutDevice(Box<Device>),
    /// Remove a device, by name.
    RemoveDevice(String),
    /// Insert or replace a DNS domain.
    PutDomain(Domain),
    /// Remove a DNS domain.
    RemoveDomain(String),
}

/// Everything the store holds besides the address records, as read back at start.
#[derive(Debug, Default)]
pub(crate) struct Records {
    pub(crate) machines: Vec<Machine>,
    pub(crate) discoveries: Vec<Discovery>,
    pub(crate) events: Vec<MachineEvent>,
    pub(crate) power: Vec<(Mac, PowerSeen)>,
    pub(crate) users: Vec<User>,
    pub(crate) tokens: Vec<TokenRecord>,
    pub(crate) racks: Vec<RackRecord>,
    pub(crate) machine_tokens: Vec<(Mac, String)>,
    pub(crate) audit: Vec<AuditEntry>,
    pub(crate) resources: Vec<BootResource>,
    pub(crate) zones: Vec<Zone>,
    pub(crate) devices: Vec<Device>,
    pub(crate) domains: Vec<Domain>,
}

impl Records {
    /// Whether there is no record at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.machines.is_empty()
            && self.discoveries.is_empty()
            && self.events.is_empty()
            && self.power.is_empty()
            && self.users.is_empty()
            && self.tokens.is_empty()
            && self.racks.is_empty()
            && self.machine_tokens.is_empty()
            && self.audit.is_empty()
            && self.resources.is_empty()
            && self.zones.is_empty()
            && self.devices.is_empty()
            && self.domains.is_empty()
    }

    /// How many records of each kind, for a summary.
    pub(crate) fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("machines", self.machines.len()),
            ("discoveries", self.discoveries.len()),
            ("events", self.events.len()),
            ("power states", self.power.len()),
            ("users", self.users.len()),
            ("tokens", self.tokens.len()),
            ("racks", self.racks.len()),
            ("machine credentials", self.machine_tokens.len()),
            ("audit entries", self.audit.len()),
            ("boot resources", self.resources.len()),
            ("zones", self.zones.len()),
            ("devices", self.devices.len()),
            ("domains", self.domains.len()),
        ]
    }

    /// The changes that write every record into an empty store, events and audit entries in
    /// their order.
    pub(crate) fn into_changes(self) -> Vec<Change> {
        let mut changes = Vec::new();
        changes.extend(self.zones.into_iter().map(Change::PutZone));
        changes.extend(self.domains.into_iter().map(Change::PutDomain));
        changes.extend(
            self.machines
                .into_iter()
                .map(|m| Change::PutMachine(Box::new(m))),
        );
        changes.extend(
            self.discoveries
                .into_iter()
                .map(|d| Change::PutDiscovery(Box::new(d))),
        );
        changes.extend(self.events.into_iter().map(Change::AddEvent));
        changes.extend(self.power.into_iter().map(|(m, p)| Change::PutPower(m, p)));
        changes.extend(self.users.into_iter().map(Change::PutUser));
        changes.extend(self.tokens.into_iter().map(Change::PutToken));
        changes.extend(self.racks.into_iter().map(Change::PutRack));
        changes.extend(
            self.machine_tokens
                .into_iter()
                .map(|(m, t)| Change::PutMachineToken(m, t)),
        );
        changes.extend(self.audit.into_iter().map(Change::AddAudit));
        changes.extend(
            self.resources
                .into_iter()
                .map(|r| Change::PutResource(Box::new(r))),
        );
        changes.extend(
            self.devices
                .into_iter()
                .map(|d| Change::PutDevice(Box::new(d))),
        );
        changes
    }
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
        let waiting = Arc::clone(&staged);
        store.on_commit(
            move || {
                !waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_empty()
            },
            move |txn| {
                let changes =
                    std::mem::take(&mut *queue.lock().unwrap_or_else(PoisonError::into_inner));
                write(txn, &changes)
            },
        );
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
    // Most commits are the address manager's alone (a burst of leases): opening fifteen
    // tables for nothing would cost each of them as much as its own writes.
    if changes.is_empty() {
        return Ok(());
    }
    let mut machines = txn.open_table(MACHINES)?;
    let mut discoveries = txn.open_table(DISCOVERIES)?;
    let mut events = txn.open_table(EVENTS)?;
    let mut power = txn.open_table(POWER)?;
    let mut users = txn.open_table(USERS)?;
    let mut tokens = txn.open_table(TOKENS)?;
    let mut racks = txn.open_table(RACKS)?;
    let mut machine_tokens = txn.open_table(MACHINE_TOKENS)?;
    let mut audit = txn.open_table(AUDIT)?;
    let mut resources = txn.open_table(RESOURCES)?;
    let mut zones = txn.open_table(ZONES)?;
    let mut devices = txn.open_table(DEVICES)?;
    let mut domains = txn.open_table(DOMAINS)?;
    let mut next_event = events.last()?.map_or(0, |(k, _)| k.value() + 1);
    let mut next_audit = audit.last()?.map_or(0, |(k, _)| k.value() + 1);
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
            Change::PutUser(u) => {
                users.insert(u.name.as_str(), json(u)?.as_slice())?;
            }
            Change::RemoveUser(name) => {
                users.remove(name.as_str())?;
            }
            Change::PutToken(t) => {
                tokens.insert(&t.id.0[..], json(t)?.as_slice())?;
            }
            Change::RemoveToken(id) => {
                tokens.remove(&id.0[..])?;
            }
            Change::PutRack(r) => {
                racks.insert(r.name.as_str(), json(r)?.as_slice())?;
            }
            Change::RemoveRack(name) => {
                racks.remove(name.as_str())?;
            }
            Change::PutMachineToken(mac, text) => {
                machine_tokens.insert(&mac.octets()[..], text.as_bytes())?;
            }
            Change::RemoveMachineToken(mac) => {
                machine_tokens.remove(&mac.octets()[..])?;
            }
            Change::AddAudit(entry) => {
                audit.insert(next_audit, json(entry)?.as_slice())?;
                next_audit += 1;
            }
            Change::PutResource(r) => {
                resources.insert(r.key().as_str(), json(&**r)?.as_slice())?;
            }
            Change::PutZone(z) => {
                zones.insert(z.name.as_str(), json(z)?.as_slice())?;
            }
            Change::RemoveZone(name) => {
                zones.remove(name.as_str())?;
            }
            Change::RemoveDiscovery(vid, ip) => {
                discoveries.remove((*vid, octets(*ip).as_slice()))?;
            }
            Change::PutDevice(d) => {
                devices.insert(d.name.as_str(), json(&**d)?.as_slice())?;
            }
            Change::RemoveDevice(name) => {
                devices.remove(name.as_str())?;
            }
            Change::PutDomain(d) => {
                domains.insert(d.name.as_str(), json(d)?.as_slice())?;
            }
            Change::RemoveDomain(name) => {
                domains.remove(name.as_str())?;
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
    records.resources = read_table(
        &txn,
        RESOURCES,
        path,
        "boot resource",
        failed("read the boot resources"),
    )?;
    records.zones = read_table(&txn, ZONES, path, "zone", failed("read the zones"))?;
    records.devices = read_table(&txn, DEVICES, path, "device", failed("read the devices"))?;
    records.domains = read_table(&txn, DOMAINS, path, "domain", failed("read the domains"))?;
    records.users = read_table(&txn, USERS, path, "user", failed("read the users"))?;
    records.tokens = read_table(&txn, TOKENS, path, "token", failed("read the tokens"))?;
    records.racks = read_table(&txn, RACKS, path, "rack", failed("read the racks"))?;
    records.audit = read_table(
        &txn,
        AUDIT,
        path,
        "audit entry",
        failed("read the audit trail"),
    )?;
    records.machine_tokens =
        read_mac_table(&txn, MACHINE_TOKENS, failed("read the machine credentials"))?
            .into_iter()
            .filter_map(|(mac, bytes)| String::from_utf8(bytes).ok().map(|t| (mac, t)))
            .collect();
    for (mac, bytes) in read_mac_table(&txn, POWER, failed("read the power states"))? {
        let seen: PowerSeen = decode(&bytes, path, "power state")?;
        records.power.push((mac, seen));
    }
    Ok(records)
}

/// A table keyed by MAC, as (MAC, value bytes); keys of another length are skipped.
fn read_mac_table(
    txn: &redb::ReadTransaction,
    table: TableDefinition<'_, &'static [u8], &'static [u8]>,
    failed: impl Fn(redb::Error) -> RecordsError,
) -> Result<Vec<(Mac, Vec<u8>)>, RecordsError> {
    let table = match txn.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(failed(e.into())),
    };
    let mut out = Vec::new();
    for entry in table.iter().map_err(|e| failed(e.into()))? {
        let (key, value) = entry.map_err(|e| failed(e.into()))?;
        if let Ok(bytes) = <[u8; 6]>::try_from(key.value()) {
            out.push((Mac::from(bytes), value.value().to_vec()));
        }
    }
    Ok(out)
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
