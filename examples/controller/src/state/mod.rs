//! What the controller keeps across restarts, in one durable store: the address manager's
//! records (maas-ipam, group-committed) and, in the same redb file and the same
//! transactions, the machines, discoveries, power states and machine events.
//!
//! Reads come from memory. A change is applied in memory, staged with the store, and made
//! durable by the address manager's next commit ([`Durable::sync`]); callers acknowledge it
//! (an API answer, a log line) only once its [`Ticket`] is durable. Nothing writes to disk
//! on an async worker: the address manager's writer thread does every write.

mod allocation;
pub(crate) mod auth;
mod backend;
pub(crate) mod deploy;
mod devices;
mod discoveries;
mod domains;
mod lifecycle;
mod network;
pub(crate) mod notify;
mod pg;
mod records;
pub(crate) mod resources;
mod store;
mod zones;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use maas_ipam::{Durable, Ticket};
use maas_net::{Mac, Timestamp, Topology};

pub(crate) use allocation::{Actor, Constraints, MachineFilter};
use backend::RecordStore;
pub(crate) use backend::{Backend, StoreAt, copy};
pub(crate) use devices::{Device, DeviceUpdate, IpAssignment, NewDevice, NewInterface, Parent};
pub(crate) use discoveries::{Clear, Convert, Converted, Unknown};
pub(crate) use lifecycle::Outcome;
pub use pg::PgRecordsError;
pub(crate) use records::{
    BootSeen, DEFAULT_DOMAIN, Discovery, DiskSeen, Dmi, Domain, Hardware, Machine, MachineEvent,
    NicSeen, Origin, PowerSeen, Status, Zone,
};
use store::Change;
pub use store::RecordsError;
pub(crate) use zones::TagChange;

use crate::config::{MachineConfig, valid_hostname};

/// The most machine events kept in memory for the API (the store keeps them all).
const EVENTS_IN_MEMORY: usize = 10_000;

/// A problem with the state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The state directory.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The address store could not be opened.
    #[error("the address store: {0}")]
    Open(#[from] maas_ipam::StoreError),
    /// The address manager refused or failed.
    #[error("the address store: {0}")]
    Ipam(#[from] maas_ipam::DurableError),
    /// The controller's tables.
    #[error("the controller's records: {0}")]
    Records(#[from] RecordsError),
    /// The controller's tables in PostgreSQL.
    #[error("the controller's records: {0}")]
    Database(#[from] PgRecordsError),
    /// The network model in the file cannot replace the stored one.
    #[error("the network model in the file cannot replace the stored one: {0}")]
    Topology(#[source] maas_ipam::DurableError),
    /// No such machine.
    #[error("machine {0} does not exist")]
    NoMachine(Mac),
    /// The machine exists already.
    #[error("machine {0} exists already")]
    Exists(Mac),
    /// A request the state cannot take, with the reason.
    #[error("{0}")]
    Invalid(String),
    /// No such user, token or rack.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The request conflicts with what is recorded, with the reason.
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this to this record (another user's machine), with the reason.
    #[error("{0}")]
    Forbidden(String),
    /// The system's random source failed (no credential could be made).
    #[error("the system's random source failed")]
    Random,
}

#[derive(Default)]
struct Memory {
    machines: BTreeMap<Mac, Machine>,
    discoveries: BTreeMap<(u16, IpAddr), Discovery>,
    events: std::collections::VecDeque<MachineEvent>,
    power: BTreeMap<Mac, PowerSeen>,
    access: auth::Access,
    resources: BTreeMap<String, resources::BootResource>,
    zones: BTreeMap<String, Zone>,
    devices: BTreeMap<String, Device>,
    /// The controller's own interfaces (never unknown discoveries).
    own: discoveries::Own,
    domains: BTreeMap<String, Domain>,
}

impl Memory {
    /// The machine `mac`, or the error that names it.
    fn machine(&self, mac: Mac) -> Result<&Machine, StateError> {
        self.machines.get(&mac).ok_or(StateError::NoMachine(mac))
    }

    /// The machine `mac`, to change, or the error that names it.
    fn machine_mut(&mut self, mac: Mac) -> Result<&mut Machine, StateError> {
        self.machines
            .get_mut(&mac)
            .ok_or(StateError::NoMachine(mac))
    }
}

/// The controller's state.
pub(crate) struct State {
    pub(crate) ipam: Arc<Durable<Backend>>,
    records: RecordStore,
    memory: Mutex<Memory>,
    /// The ticket of the latest enlistment: what a DHCP acknowledgement waits for besides its
    /// lease, so that a new machine's lease is never acknowledged before its enlistment.
    enlistments: Mutex<Option<Ticket>>,
    /// Announces each commit's kinds of change.
    pub(crate) changes: notify::Notifier,
}

impl State {
    /// Opens (or creates) the embedded state in `dir`: see [`open_at`](Self::open_at).
    pub(crate) fn open(
        dir: &Path,
        topology: &Topology,
        configured: &[MachineConfig],
    ) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::open_at(&StoreAt::embedded(dir), topology, configured)
    }

    /// Opens (or creates) the state at `at`, with `topology` as the network model and the
    /// configured machines merged in (the file wins for what it says; what was learnt since,
    /// such as addresses and boot information, is kept).
    pub(crate) fn open_at(
        at: &StoreAt,
        topology: &Topology,
        configured: &[MachineConfig],
    ) -> Result<Self, StateError> {
        let (store, records) = RecordStore::open(at)?;
        let durable = Durable::with_topology(store, topology.clone())?;
        // Group commit under load, as the dhcpd example does: while operations keep coming,
        // the writer gathers them for up to 3 ms per disk sync (an idle controller still
        // commits a lone change at once).
        durable.set_commit_delay(std::time::Duration::from_millis(3));
        // The file is the source of the network model: a changed model is applied, unless it
        // would leave recorded addresses outside every subnet.
        if durable.read(|ipam| ipam.topology().to_doc()) != topology.to_doc() {
            let wanted = topology.clone();
            durable
                .apply(|ipam| {
                    ipam.change_topology(|t| {
                        *t = wanted;
                        Ok(())
                    })
                })
                .map_err(StateError::Topology)?;
        }
        let mut loaded = records.load()?;
        let skip = loaded.events.len().saturating_sub(EVENTS_IN_MEMORY);
        let mut memory = Memory {
            machines: std::mem::take(&mut loaded.machines)
                .into_iter()
                .map(|m| (m.mac, m))
                .collect(),
            discoveries: std::mem::take(&mut loaded.discoveries)
                .into_iter()
                .map(|d| ((d.vid, d.ip), d))
                .collect(),
            events: std::mem::take(&mut loaded.events)
                .into_iter()
                .skip(skip)
                .collect(),
            power: std::mem::take(&mut loaded.power).into_iter().collect(),
            access: auth::Access::default(),
            resources: std::mem::take(&mut loaded.resources)
                .into_iter()
                .map(|r| (r.key(), r))
                .collect(),
            zones: std::mem::take(&mut loaded.zones)
                .into_iter()
                .map(|z| (z.name.clone(), z))
                .collect(),
            devices: std::mem::take(&mut loaded.devices)
                .into_iter()
                .map(|d| (d.name.clone(), d))
                .collect(),
            own: discoveries::Own::default(),
            domains: std::mem::take(&mut loaded.domains)
                .into_iter()
                .map(|d| (d.name.clone(), d))
                .collect(),
        };
        auth::load(&mut memory, &mut loaded);
        let mut changes = zones::merge(&mut memory, topology);
        changes.extend(domains::merge(&mut memory));
        for c in configured {
            let fresh = Machine::from_config(c);
            let is_new = !memory.machines.contains_key(&c.mac);
            let entry = memory
                .machines
                .entry(c.mac)
                .or_insert_with(|| fresh.clone());
            let before = entry.clone();
            entry.hostname = fresh.hostname;
            entry.architecture = fresh.architecture.or(entry.architecture.take());
            if c.zone.is_some() {
                entry.zone = fresh.zone;
            }
            entry.power = fresh.power;
            // A configured machine is known, hence Ready; one a user holds stays theirs.
            if !entry.status.is_owned() {
                entry.status = Status::Ready;
            }
            entry.origin = Origin::Config;
            if is_new || *entry != before {
                changes.push(Change::PutMachine(Box::new(entry.clone())));
            }
        }
        // Every machine has a credential for what it sends back once booted.
        let missing: Vec<Mac> = memory
            .machines
            .keys()
            .filter(|mac| !memory.access.machine_tokens.contains_key(mac))
            .copied()
            .collect();
        for mac in missing {
            let (token, change) = auth::new_machine_token(mac)?;
            memory.access.set_machine_token(mac, token);
            changes.push(change);
        }
        let state = Self {
            ipam: Arc::new(durable),
            records,
            memory: Mutex::new(memory),
            enlistments: Mutex::new(None),
            changes: notify::Notifier::default(),
        };
        if !changes.is_empty() {
            let ticket = state.commit(changes)?;
            state.ipam.wait(ticket)?;
        }
        Ok(state)
    }

    fn lock(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stages `changes` and asks for a commit: the ticket to wait for before acknowledging.
    fn commit(&self, changes: Vec<Change>) -> Result<Ticket, StateError> {
        // Staged under the address manager's lock with the ticket: a refused batch fails
        // this ticket exactly when it drops these changes.
        let kinds = changes.iter().fold(notify::Kinds::default(), |k, c| {
            k.with(notify::Kinds::of(c))
        });
        let ((), ticket) = self.ipam.sync_with(|| self.records.stage(changes))?;
        // Memory holds the changes already: a follower reading now sees them.
        self.changes.send(kinds);
        Ok(ticket)
    }

    /// Follows the other regions that share this state's database (nothing for the embedded
    /// store): their commits, and this region's refused batches, reload the address manager
    /// and the records, after which `changed` runs.
    pub(crate) fn follow(self: &Arc<Self>, changed: impl Fn() + Send + 'static) {
        if let RecordStore::Pg(pg) = &self.records {
            pg.follow(Arc::downgrade(self), move |state: &Self, want: pg::Want| {
                if want.addresses {
                    state.ipam.refresh();
                }
                if !want.records {
                    return true;
                }
                match state.reload_records() {
                    Ok(true) => {
                        changed();
                        true
                    }
                    Ok(false) => false,
                    Err(e) => {
                        tracing::warn!(event = "region_reload_failed", error = %e);
                        false
                    }
                }
            });
        }
    }

    /// Replaces the records in memory with the database's, unless changes of this region are
    /// on their way there (then `false`: try again shortly).
    fn reload_records(&self) -> Result<bool, StateError> {
        let RecordStore::Pg(pg) = &self.records else {
            return Ok(true);
        };
        let mut memory = self.lock();
        if pg.busy() {
            return Ok(false);
        }
        let mut loaded = pg.reload()?;
        memory.machines = std::mem::take(&mut loaded.machines)
            .into_iter()
            .map(|m| (m.mac, m))
            .collect();
        memory.discoveries = std::mem::take(&mut loaded.discoveries)
            .into_iter()
            .map(|d| ((d.vid, d.ip), d))
            .collect();
        memory.events = std::mem::take(&mut loaded.events).into_iter().collect();
        memory.power = std::mem::take(&mut loaded.power).into_iter().collect();
        memory.resources = std::mem::take(&mut loaded.resources)
            .into_iter()
            .map(|r| (r.key(), r))
            .collect();
        memory.zones = std::mem::take(&mut loaded.zones)
            .into_iter()
            .map(|z| (z.name.clone(), z))
            .collect();
        memory.devices = std::mem::take(&mut loaded.devices)
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        memory.domains = std::mem::take(&mut loaded.domains)
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        domains::merge(&mut memory);
        memory.access = auth::Access::default();
        auth::load(&mut memory, &mut loaded);
        Ok(true)
    }

    /// Waits, without blocking the executor, until `ticket` is durable.
    pub(crate) async fn durable(&self, ticket: Ticket) -> Result<(), StateError> {
        Ok(self.ipam.wait_async(ticket).await?)
    }

    /// Waits, blocking the thread, until `ticket` is durable (commands, not async workers).
    pub(crate) fn durable_blocking(&self, ticket: Ticket) -> Result<(), StateError> {
        Ok(self.ipam.wait(ticket)?)
    }

    /// Lets the store go: its writer commits what is queued, then stops. Blocks.
    pub(crate) fn close(&self) -> Result<(), StateError> {
        let ticket = self.ipam.sync()?;
        Ok(self.ipam.wait(ticket)?)
    }

    /// A machine's status, if it exists.
    pub(crate) fn status(&self, mac: Mac) -> Option<Status> {
        self.lock().machines.get(&mac).map(|m| m.status)
    }

    /// Every machine, by MAC.
    pub(crate) fn machines(&self) -> Vec<Machine> {
        self.lock().machines.values().cloned().collect()
    }

    /// One machine.
    pub(crate) fn machine(&self, mac: Mac) -> Option<Machine> {
        self.lock().machines.get(&mac).cloned()
    }

    /// Whether a machine has NIC `mac`.
    pub(crate) fn has_machine(&self, mac: Mac) -> bool {
        self.lock().machines.contains_key(&mac)
    }

    /// How many machines there are.
    pub(crate) fn machine_count(&self) -> usize {
        self.lock().machines.len()
    }

    /// Replaces every machine (a rack's copy of its region's list).
    pub(crate) fn replace_machines(
        &self,
        list: Vec<Machine>,
    ) -> Result<Option<Ticket>, StateError> {
        let mut memory = self.lock();
        let fresh: BTreeMap<Mac, Machine> = list.into_iter().map(|m| (m.mac, m)).collect();
        if memory.machines == fresh {
            return Ok(None);
        }
        let mut changes: Vec<Change> = memory
            .machines
            .keys()
            .filter(|mac| !fresh.contains_key(mac))
            .map(|mac| Change::RemoveMachine(*mac))
            .collect();
        changes.extend(
            fresh
                .values()
                .filter(|m| memory.machines.get(&m.mac) != Some(m))
                .cloned()
                .map(|m| Change::PutMachine(Box::new(m))),
        );
        memory.machines = fresh;
        let ticket = self.commit(changes)?;
        Ok(Some(ticket))
    }

    /// Adds a machine (API).
    pub(crate) fn create(
        &self,
        config: &MachineConfig,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        if let Some(name) = &config.hostname
            && !valid_hostname(name)
        {
            return Err(StateError::Invalid(format!(
                "hostname {name:?} is not a DNS label (letters, digits, '-', 1-63)"
            )));
        }
        let mut memory = self.lock();
        if let Some(zone) = &config.zone
            && !memory.zones.contains_key(zone)
        {
            return Err(StateError::Invalid(format!("zone {zone:?} does not exist")));
        }
        if memory.machines.contains_key(&config.mac) {
            return Err(StateError::Exists(config.mac));
        }
        let mut machine = Machine::from_config(config);
        machine.origin = Origin::Api;
        if let Some(device) = memory.device_with_mac(machine.mac) {
            return Err(StateError::Conflict(format!(
                "MAC {} belongs to device {device} already",
                machine.mac
            )));
        }
        if memory
            .machines
            .values()
            .any(|m| m.hostname == machine.hostname)
            || memory.devices.contains_key(&machine.hostname)
        {
            return Err(StateError::Invalid(format!(
                "hostname {:?} is taken",
                machine.hostname
            )));
        }
        let (token, token_change) = auth::new_machine_token(machine.mac)?;
        memory.machines.insert(machine.mac, machine.clone());
        memory.access.set_machine_token(machine.mac, token);
        let event = event(machine.mac, now, "created", None);
        push_event(&mut memory, event.clone());
        let ticket = self.commit(vec![
            Change::PutMachine(Box::new(machine.clone())),
            token_change,
            Change::AddEvent(event),
        ])?;
        Ok((machine, ticket))
    }

    /// Removes a machine (API).
    pub(crate) fn delete(&self, mac: Mac, now: Timestamp) -> Result<(Machine, Ticket), StateError> {
        let mut memory = self.lock();
        let children = memory.children(&Parent::Machine(mac));
        if !children.is_empty() {
            return Err(StateError::Conflict(format!(
                "machine {mac} is the parent of the devices {}: delete or move them first",
                children.join(", ")
            )));
        }
        let machine = memory
            .machines
            .remove(&mac)
            .ok_or(StateError::NoMachine(mac))?;
        memory.power.remove(&mac);
        memory.access.remove_machine_token(mac);
        let event = event(mac, now, "deleted", None);
        push_event(&mut memory, event.clone());
        let ticket = self.commit(vec![
            Change::RemoveMachine(mac),
            Change::RemovePower(mac),
            Change::RemoveMachineToken(mac),
            Change::AddEvent(event),
        ])?;
        Ok((machine, ticket))
    }

    /// Accepts an enlisted machine (`New` to `Ready`).
    pub(crate) fn accept(&self, mac: Mac, now: Timestamp) -> Result<(Machine, Ticket), StateError> {
        let mut memory = self.lock();
        let machine = memory.machine_mut(mac)?;
        let changed = machine.status != Status::Ready;
        machine.status = Status::Ready;
        let out = machine.clone();
        let event = event(mac, now, "accepted", None);
        push_event(&mut memory, event.clone());
        let mut changes = vec![
            Change::PutMachine(Box::new(out.clone())),
            Change::AddEvent(event),
        ];
        if changed {
            // A change of state revokes the credential handed out before it.
            let (token, change) = auth::new_machine_token(mac)?;
            memory.access.set_machine_token(mac, token);
            changes.push(change);
        }
        let ticket = self.commit(changes)?;
        Ok((out, ticket))
    }

    /// Records that `mac` was seen booting: a DHCP lease (`ip`, `boot`) or a request for one
    /// of its boot files. An unknown machine is enlisted as `New` when `may_enlist` allows,
    /// told how many machines are New already.
    /// Staged when something changed besides the time (the ticket), else `None`.
    pub(crate) fn seen_booting(
        &self,
        mac: Mac,
        ip: Option<IpAddr>,
        boot: Option<BootSeen>,
        now: Timestamp,
        commission_by: Option<Timestamp>,
        may_enlist: impl FnOnce(usize) -> bool,
    ) -> Result<Seen, StateError> {
        let mut memory = self.lock();
        let mut changes = Vec::new();
        let enlisted = !memory.machines.contains_key(&mac);
        if enlisted {
            let waiting = memory
                .machines
                .values()
                .filter(|m| m.status == Status::New)
                .count();
            if !may_enlist(waiting) {
                return Ok(Seen::Refused);
            }
            let (token, change) = auth::new_machine_token(mac)?;
            let mut fresh = Machine::enlisted(mac, now);
            if let Some(deadline) = commission_by {
                // Enlisted machines are commissioned at once when the settings say so.
                fresh.status = Status::Commissioning;
                fresh.commissioning_deadline = Some(deadline);
            }
            memory.machines.insert(mac, fresh);
            memory.access.set_machine_token(mac, token);
            changes.push(change);
            let e = event(mac, now, "enlisted", None);
            push_event(&mut memory, e.clone());
            changes.push(Change::AddEvent(e));
        }
        let Some(machine) = memory.machines.get_mut(&mac) else {
            return Err(StateError::NoMachine(mac));
        };
        machine.first_seen.get_or_insert(now);
        machine.last_seen = Some(now);
        let mut changed = enlisted;
        if ip.is_some() && machine.ip != ip {
            machine.ip = ip;
            changed = true;
        }
        if boot.is_some() && machine.boot != boot {
            machine.boot = boot;
            changed = true;
        }
        let machine = machine.clone();
        let ticket = if changed {
            changes.push(Change::PutMachine(Box::new(machine.clone())));
            Some(self.commit(changes)?)
        } else {
            None
        };
        if enlisted && let Some(ticket) = ticket {
            let mut latest = self
                .enlistments
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if latest.is_none_or(|t| t.seq() < ticket.seq()) {
                *latest = Some(ticket);
            }
        }
        Ok(Seen::Known {
            machine: Box::new(machine),
            enlisted,
            ticket,
        })
    }

    /// The ticket of the latest enlistment, if any.
    pub(crate) fn latest_enlistment(&self) -> Option<Ticket> {
        *self
            .enlistments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every discovery, by VLAN and address.
    #[cfg(test)]
    pub(crate) fn discoveries(&self) -> Vec<Discovery> {
        self.discoveries_filtered(None)
    }

    /// Records a discovery event: the neighbour table and a DISCOVERED address in the address
    /// manager, committed together.
    pub(crate) fn discovered(
        &self,
        event: &maas_discovery::Event,
        now: Timestamp,
    ) -> Result<(Discovery, Ticket), StateError> {
        let mut memory = self.lock();
        let key = (event.vid, event.ip);
        let previous = memory.discoveries.get(&key);
        let first_seen = previous
            .filter(|d| d.mac == event.mac)
            .map_or(event.first_seen, |d| d.first_seen.min(event.first_seen));
        let hostname = event
            .hostname
            .clone()
            .or_else(|| previous.and_then(|d| d.hostname.clone()));
        let kind = serde_json::to_value(event.event)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        // Staged before the address change, so both land in the address manager's commit.
        let subnet = self.ipam.read(|ipam| {
            ipam.topology()
                .subnets()
                .find(|(_, s)| s.cidr.contains(&event.ip))
                .map(|(_, s)| s.cidr.to_string())
        });
        let entry = Discovery {
            ip: event.ip,
            mac: event.mac,
            previous_mac: event.previous_mac,
            hostname,
            interface: event.interface.clone(),
            vid: event.vid,
            subnet,
            last_event: kind,
            first_seen,
            last_seen: event.last_seen,
        };
        memory.discoveries.insert(key, entry.clone());
        let ((), _) = self.ipam.submit(|ipam| {
            ipam.observe(event.ip, Some(event.mac), now);
            Ok(())
        })?;
        // The observation may change nothing in the address manager: this commit carries the
        // neighbour record, and its ticket covers both.
        let ticket = self.commit(vec![Change::PutDiscovery(Box::new(entry.clone()))])?;
        drop(memory);
        Ok((entry, ticket))
    }

    /// Records a machine's power state when it changed; the ticket when it did.
    pub(crate) fn saw_power(
        &self,
        mac: Mac,
        seen: PowerSeen,
    ) -> Result<Option<(Option<String>, Ticket)>, StateError> {
        let mut memory = self.lock();
        if !memory.machines.contains_key(&mac) {
            return Ok(None);
        }
        let before = memory.power.get(&mac).map(|p| p.state.clone());
        let changed = before.as_deref() != Some(seen.state.as_str())
            || memory.power.get(&mac).map(|p| &p.error) != Some(&seen.error);
        memory.power.insert(mac, seen.clone());
        if !changed {
            return Ok(None);
        }
        let ticket = self.commit(vec![Change::PutPower(mac, seen)])?;
        Ok(Some((before, ticket)))
    }

    /// A machine's power state as last seen.
    pub(crate) fn power(&self, mac: Mac) -> Option<PowerSeen> {
        self.lock().power.get(&mac).cloned()
    }

    /// Adds what a machine reported to its history.
    pub(crate) fn machine_reported(
        &self,
        mac: Mac,
        kind: &str,
        detail: Option<String>,
        now: Timestamp,
    ) -> Result<(MachineEvent, Ticket), StateError> {
        let mut memory = self.lock();
        if !memory.machines.contains_key(&mac) {
            return Err(StateError::NoMachine(mac));
        }
        let e = event(mac, now, kind, detail);
        push_event(&mut memory, e.clone());
        let ticket = self.commit(vec![Change::AddEvent(e.clone())])?;
        Ok((e, ticket))
    }

    /// A machine's history, oldest first (the most recent ones kept in memory).
    pub(crate) fn events(&self, mac: Mac) -> Vec<MachineEvent> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.mac == mac)
            .cloned()
            .collect()
    }
}

/// What [`State::seen_booting`] did.
pub(crate) enum Seen {
    /// The machine, as it is now.
    Known {
        machine: Box<Machine>,
        /// Whether it was enlisted just now.
        enlisted: bool,
        /// What to wait for before acknowledging the change, if anything changed.
        ticket: Option<Ticket>,
    },
    /// An unknown machine that the enlistment limits kept out.
    Refused,
}

fn event(mac: Mac, at: Timestamp, kind: &str, detail: Option<String>) -> MachineEvent {
    MachineEvent {
        mac,
        at,
        kind: kind.to_string(),
        detail,
    }
}

fn push_event(memory: &mut Memory, event: MachineEvent) {
    if memory.events.len() >= EVENTS_IN_MEMORY {
        memory.events.pop_front();
    }
    memory.events.push_back(event);
}
