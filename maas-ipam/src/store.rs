//! Persistence: the [`Store`] trait and the changes the engine asks it to make durable.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::IpAddr;

use maas_net::TopologyDoc;
use serde::{Deserialize, Serialize};

use crate::{AddressKind, ClientKey, Record};

/// One durable change. The engine emits them in order ([`Ipam::take_changes`](crate::Ipam::take_changes));
/// a store applies each batch atomically and in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Change {
    /// The network model was replaced by this one.
    Topology(TopologyDoc),
    /// Insert or replace the record for `record.ip` (the `DISCOVERED` record of an address is
    /// kept apart from its other record). A store shared by several controllers may refuse to
    /// replace a record held by someone else ([`Store::is_refusal`]).
    PutRecord(Record),
    /// Remove the record of `ip`; `discovered` says which of its two records.
    RemoveRecord {
        /// The address.
        ip: IpAddr,
        /// Whether the `DISCOVERED` record is meant.
        discovered: bool,
    },
    /// Remember the address a DHCP client last had, so that it gets it again while it is free.
    ///
    /// Only for a binding that no record implies: while a DHCP record offers or leases an
    /// address to a client (its lease is `OFFERED` or `BOUND`), the record says where the
    /// client is bound, and [`Ipam::from_snapshot`](crate::Ipam::from_snapshot) derives the
    /// binding from it. The engine emits this change when such a record goes (released,
    /// expired) while the client keeps its claim, and [`RemoveBinding`](Self::RemoveBinding)
    /// when the client moves to an address its record implies, so that a stored binding is
    /// never stale.
    PutBinding {
        /// The client.
        client: ClientKey,
        /// Its address.
        ip: IpAddr,
    },
    /// Forget the binding stored for a DHCP client (it declined the address, or its record
    /// now implies where it is bound).
    RemoveBinding {
        /// The client.
        client: ClientKey,
    },
}

/// Everything a store holds, as read back at start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The network model, if one was ever stored.
    pub topology: Option<TopologyDoc>,
    /// Every record, `DISCOVERED` ones included.
    pub records: Vec<Record>,
    /// The last address of DHCP clients, where no record implies it (see
    /// [`Change::PutBinding`]); a snapshot that lists implied ones too loads the same.
    pub bindings: Vec<(ClientKey, IpAddr)>,
}

impl Snapshot {
    /// Whether the store held nothing at all: no topology, no record, no binding.
    pub fn is_empty(&self) -> bool {
        self.topology.is_none() && self.records.is_empty() && self.bindings.is_empty()
    }
}

/// Where the address manager's state lives.
///
/// `commit` must apply the whole batch or none of it, in order, and must not return `Ok` until
/// the batch would survive a crash (process kill or power loss): callers acknowledge changes to
/// the outside world (a DHCPACK, an API response) only after it returns. Batches are as large as
/// the group-commit writer can gather, so a store should make one durable write per batch.
pub trait Store: Send + 'static {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads everything back.
    fn load(&mut self) -> Result<Snapshot, Self::Error>;

    /// Applies a batch of changes atomically and durably.
    fn commit(&mut self, changes: &[Change]) -> Result<(), Self::Error>;

    /// [`commit`](Self::commit), for a caller that is done with the batch afterwards: a store
    /// that keeps the changes (a journal's pending list) may move them out of `changes`
    /// instead of copying them. Whatever is left in `changes` is the caller's to drop. The
    /// default commits them by reference.
    fn commit_owned(&mut self, changes: &mut Vec<Change>) -> Result<(), Self::Error> {
        self.commit(changes)
    }

    /// Whether a [`commit`](Self::commit) error is a refusal: the store stored none of the
    /// batch, on purpose (a database shared by several controllers refusing an address held
    /// by another), and is otherwise healthy, so that what it holds is the state to go on
    /// from. [`Durable`](crate::Durable) then fails the batch's operations, reloads its
    /// address manager from the store and keeps going; after any other error it refuses
    /// changes until it is reopened. The default: no error is a refusal.
    fn is_refusal(error: &Self::Error) -> bool {
        let _ = error;
        false
    }
}

/// A store that keeps everything in memory: for tests, and for controllers that rebuild their
/// state from elsewhere at start. Nothing survives the process.
///
/// Records and bindings are kept in ordered maps, so a commit costs `O(k log n)` for `k`
/// changes in a store of `n` entries; [`load`](Store::load) returns records in address order.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    topology: Option<TopologyDoc>,
    records: BTreeMap<(IpAddr, bool), Record>,
    bindings: BTreeMap<ClientKey, IpAddr>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `snapshot`.
    pub fn from_snapshot(snapshot: Snapshot) -> Self {
        Self {
            topology: snapshot.topology,
            records: snapshot
                .records
                .into_iter()
                .map(|r| (record_key(&r), r))
                .collect(),
            bindings: snapshot.bindings.into_iter().collect(),
        }
    }

    /// What the store holds, without cloning: the topology, the records (in address order,
    /// each address's `DISCOVERED` record after its other one) and the bindings.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            topology: self.topology.clone(),
            records: self.records.values().cloned().collect(),
            bindings: self
                .bindings
                .iter()
                .map(|(c, ip)| (c.clone(), *ip))
                .collect(),
        }
    }
}

impl Store for MemoryStore {
    type Error = std::convert::Infallible;

    fn load(&mut self) -> Result<Snapshot, Self::Error> {
        Ok(self.snapshot())
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), Self::Error> {
        for change in changes {
            match change {
                Change::Topology(doc) => self.topology = Some(doc.clone()),
                Change::PutRecord(record) => {
                    self.records.insert(record_key(record), record.clone());
                }
                Change::RemoveRecord { ip, discovered } => {
                    self.records.remove(&(*ip, *discovered));
                }
                Change::PutBinding { client, ip } => {
                    self.bindings.insert(client.clone(), *ip);
                }
                Change::RemoveBinding { client } => {
                    self.bindings.remove(client);
                }
            }
        }
        Ok(())
    }
}

/// The key a store files a record under: its address, and whether it is the address's
/// `DISCOVERED` record.
pub(crate) fn record_key(record: &Record) -> (IpAddr, bool) {
    (record.ip, record.kind == AddressKind::Discovered)
}

/// Which of `changes` a later change of the same key makes pointless: a store that skips
/// them ends in the same state. A DHCP lease, for one, puts its address's record twice in one
/// batch (held by the offer, then leased); a store whose writes cost per key writes it once.
#[cfg(test)]
pub(crate) fn superseded(changes: &[Change]) -> Vec<bool> {
    let mut skip = Vec::new();
    Superseded::default().mark(changes, &mut skip);
    skip
}

/// Finds the changes a later change of the same key supersedes, keeping its table from one
/// call to the next: a store that asks at every batch and every checkpoint neither allocates
/// a table each time nor touches fresh memory for it.
#[cfg(any(test, feature = "redb"))]
#[derive(Default)]
pub(crate) struct Superseded {
    /// Indexes into the changes being marked, by their key.
    seen: hashbrown::HashTable<usize>,
    /// A fast hash, seeded per table (the keys come from clients, but nothing of the table's
    /// hashing is observable to them).
    hasher: foldhash::fast::RandomState,
}

#[cfg(any(test, feature = "redb"))]
impl std::fmt::Debug for Superseded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Superseded")
            .field("capacity", &self.seen.capacity())
            .finish_non_exhaustive()
    }
}

/// What a change writes: the topology, a record's slot, or a client's binding.
#[cfg(any(test, feature = "redb"))]
#[derive(PartialEq, Eq, Hash)]
enum Key<'a> {
    Topology,
    Record(IpAddr, bool),
    Binding(&'a ClientKey),
}

#[cfg(any(test, feature = "redb"))]
impl<'a> Key<'a> {
    fn of(change: &'a Change) -> Self {
        match change {
            Change::Topology(_) => Key::Topology,
            Change::PutRecord(record) => {
                let (ip, discovered) = record_key(record);
                Key::Record(ip, discovered)
            }
            Change::RemoveRecord { ip, discovered } => Key::Record(*ip, *discovered),
            Change::PutBinding { client, .. } | Change::RemoveBinding { client } => {
                Key::Binding(client)
            }
        }
    }
}

#[cfg(any(test, feature = "redb"))]
impl Superseded {
    /// A table this large (a checkpoint of a few million changes) is freed after use, not kept.
    const KEEP: usize = 1 << 20;

    /// Sets `skip` to one flag per change of `changes`: `true` for each change a later one of
    /// the same key supersedes.
    pub(crate) fn mark(&mut self, changes: &[Change], skip: &mut Vec<bool>) {
        use std::hash::BuildHasher;
        skip.clear();
        skip.resize(changes.len(), false);
        let hasher = &self.hasher;
        let hash = |i: &usize| hasher.hash_one(Key::of(&changes[*i]));
        // Empty already (cleared after the last use): no work.
        self.seen.clear();
        self.seen.reserve(changes.len(), hash);
        for (i, change) in changes.iter().enumerate().rev() {
            let key = Key::of(change);
            let entry = self.seen.entry(
                hasher.hash_one(&key),
                |j| Key::of(&changes[*j]) == key,
                hash,
            );
            match entry {
                hashbrown::hash_table::Entry::Occupied(_) => skip[i] = true,
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
        }
        // In time proportional to the capacity: a table used for small batches stays small.
        self.seen.clear();
        if self.seen.capacity() > Self::KEEP {
            self.seen = hashbrown::HashTable::new();
        }
    }
}

/// Applies changes to a snapshot, as every store must.
///
/// Costs `O(n + k)` for `k` changes to a snapshot of `n` entries (the snapshot is indexed once
/// per call, so pass a whole batch at a time). Records and bindings keep their order; new ones
/// are appended.
pub fn apply(snapshot: &mut Snapshot, changes: &[Change]) {
    let touches_records = changes
        .iter()
        .any(|c| matches!(c, Change::PutRecord(_) | Change::RemoveRecord { .. }));
    let touches_bindings = changes
        .iter()
        .any(|c| matches!(c, Change::PutBinding { .. } | Change::RemoveBinding { .. }));
    let mut records = Indexed::new(
        if touches_records {
            std::mem::take(&mut snapshot.records)
        } else {
            Vec::new()
        },
        record_key,
    );
    let mut bindings = Indexed::new(
        if touches_bindings {
            std::mem::take(&mut snapshot.bindings)
        } else {
            Vec::new()
        },
        |(client, _): &(ClientKey, IpAddr)| client.clone(),
    );
    for change in changes {
        match change {
            Change::Topology(doc) => snapshot.topology = Some(doc.clone()),
            Change::PutRecord(record) => records.put(record_key(record), record.clone()),
            Change::RemoveRecord { ip, discovered } => records.remove(&(*ip, *discovered)),
            Change::PutBinding { client, ip } => {
                bindings.put(client.clone(), (client.clone(), *ip))
            }
            Change::RemoveBinding { client } => bindings.remove(client),
        }
    }
    if touches_records {
        snapshot.records = records.into_vec();
    }
    if touches_bindings {
        snapshot.bindings = bindings.into_vec();
    }
}

/// A list with a hash index on a key, where removals leave holes until [`Indexed::into_vec`].
struct Indexed<K, T> {
    slots: Vec<Option<T>>,
    index: HashMap<K, usize>,
}

impl<K: Hash + Eq, T> Indexed<K, T> {
    fn new(items: Vec<T>, key: impl Fn(&T) -> K) -> Self {
        let index = items
            .iter()
            .enumerate()
            .map(|(i, item)| (key(item), i))
            .collect();
        Self {
            slots: items.into_iter().map(Some).collect(),
            index,
        }
    }

    fn put(&mut self, key: K, item: T) {
        match self.index.get(&key) {
            Some(&i) => self.slots[i] = Some(item),
            None => {
                self.index.insert(key, self.slots.len());
                self.slots.push(Some(item));
            }
        }
    }

    fn remove(&mut self, key: &K) {
        if let Some(i) = self.index.remove(key) {
            self.slots[i] = None;
        }
    }

    fn into_vec(self) -> Vec<T> {
        self.slots.into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use maas_net::{Mac, SubnetId};
    use proptest::prelude::*;

    use super::*;
    use crate::{Lease, LeaseState, Timestamp};

    fn change(op: u8, host: u8, discovered: bool, client: u8) -> Change {
        let ip = IpAddr::from([10, 77, 0, host]);
        let client = ClientKey::Mac(Mac::from([2, 0, 0, 0, 0, client]));
        match op % 4 {
            0 => Change::PutRecord(Record {
                ip,
                subnet: SubnetId::new(1),
                kind: if discovered {
                    AddressKind::Discovered
                } else {
                    AddressKind::Dhcp
                },
                mac: None,
                owner: None,
                lease: (!discovered).then(|| Lease {
                    client,
                    state: LeaseState::Bound,
                    expires: Timestamp(u64::from(host)),
                }),
                created: Timestamp(0),
                updated: Timestamp(u64::from(op)),
            }),
            1 => Change::RemoveRecord { ip, discovered },
            2 => Change::PutBinding { client, ip },
            _ => Change::RemoveBinding { client },
        }
    }

    fn sorted(mut snapshot: Snapshot) -> Snapshot {
        snapshot.records.sort_by_key(record_key);
        snapshot.bindings.sort();
        snapshot
    }

    proptest! {
        /// `apply` on a snapshot and the memory store agree, however the changes are batched.
        #[test]
        fn apply_matches_memory_store(
            batches in prop::collection::vec(
                prop::collection::vec((0u8..8, 0u8..16, any::<bool>(), 0u8..8), 0..20),
                0..8,
            )
        ) {
            let mut snapshot = Snapshot::default();
            let mut single = Snapshot::default();
            let mut memory = MemoryStore::new();
            for batch in &batches {
                let changes: Vec<Change> =
                    batch.iter().map(|&(op, host, d, client)| change(op, host, d, client)).collect();
                apply(&mut snapshot, &changes);
                memory.commit(&changes).unwrap();
                // One change at a time gives what the whole batch gives.
                for change in &changes {
                    apply(&mut single, std::slice::from_ref(change));
                }
                prop_assert_eq!(sorted(snapshot.clone()), sorted(memory.load().unwrap()));
                prop_assert_eq!(sorted(snapshot.clone()), sorted(single.clone()));
            }
            let keys: std::collections::HashSet<_> = snapshot.records.iter().map(record_key).collect();
            prop_assert_eq!(keys.len(), snapshot.records.len());
            let again = MemoryStore::from_snapshot(snapshot.clone()).snapshot();
            prop_assert_eq!(sorted(again), sorted(snapshot));
        }
    }

    proptest! {
        /// Skipping the changes `superseded` names leaves a store as the whole batch does.
        #[test]
        fn superseded_changes_change_nothing(
            batch in prop::collection::vec((0u8..8, 0u8..6, any::<bool>(), 0u8..4), 0..40),
        ) {
            let changes: Vec<Change> =
                batch.iter().map(|&(op, host, d, client)| change(op, host, d, client)).collect();
            let skip = superseded(&changes);
            let kept: Vec<Change> = changes
                .iter()
                .zip(&skip)
                .filter(|(_, skip)| !**skip)
                .map(|(c, _)| c.clone())
                .collect();
            let (mut all, mut some) = (MemoryStore::new(), MemoryStore::new());
            all.commit(&changes).unwrap();
            some.commit(&kept).unwrap();
            prop_assert_eq!(sorted(all.snapshot()), sorted(some.snapshot()));
        }
    }

    #[test]
    fn a_lease_writes_its_address_once() {
        // Held by the offer, then leased: only the lease is written.
        let changes = [
            change(0, 1, false, 1),
            change(2, 1, false, 1),
            change(0, 1, false, 2),
        ];
        assert_eq!(superseded(&changes), [true, false, false]);
    }

    #[test]
    fn empty_snapshot_is_empty() {
        assert!(Snapshot::default().is_empty());
        let mut snapshot = Snapshot::default();
        apply(&mut snapshot, &[change(2, 1, false, 1)]);
        assert!(!snapshot.is_empty());
    }
}
