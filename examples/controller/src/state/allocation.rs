//! Allocation with MAAS's semantics: a user takes the smallest Ready machine that meets
//! every constraint, and gives it back by releasing it. The choice and the change of status
//! happen under the state's one lock, so two allocations never take the same machine.

use std::collections::BTreeSet;

use maas_ipam::Ticket;
use maas_net::{FabricId, Mac, SubnetId, Timestamp, Topology, VlanId};
use serde::Deserialize;

use super::records::{Machine, Status};
use super::store::Change;
use super::{Memory, State, StateError, event, push_event};

/// What `POST /api/v1/machines/allocate` asks for, every field ANDed (MAAS's names).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Constraints {
    /// In this zone.
    #[serde(default)]
    pub(crate) zone: Option<String>,
    /// In none of these zones.
    #[serde(default)]
    pub(crate) not_in_zone: Vec<String>,
    /// This architecture: `amd64` takes any subarchitecture, `amd64/generic` only that one.
    #[serde(default)]
    pub(crate) arch: Option<String>,
    /// At least this many CPUs.
    #[serde(default)]
    pub(crate) cpu_count: Option<u32>,
    /// At least this much memory, in MiB.
    #[serde(default)]
    pub(crate) mem: Option<u64>,
    /// Every one of these tags.
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    /// None of these tags.
    #[serde(default)]
    pub(crate) not_tags: Vec<String>,
    /// This host name.
    #[serde(default)]
    pub(crate) hostname: Option<String>,
    /// An interface on each of these subnets: a CIDR, or an id (`3` or `id:3`).
    #[serde(default)]
    pub(crate) subnets: Vec<String>,
    /// An interface on each of these VLANs: an id (`5` or `id:5`), `vid:100` (that VID on
    /// any fabric), or a VLAN's name (`name:storage` or `storage`).
    #[serde(default)]
    pub(crate) vlans: Vec<String>,
    /// An interface on each of these fabrics: a name, or an id (`0` or `id:0`).
    #[serde(default)]
    pub(crate) fabrics: Vec<String>,
}

/// Who acts on a machine: a user's name, and whether they may act on other users' machines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Actor {
    /// The user's name.
    pub(crate) name: String,
    /// An admin acts on any machine; other users only on their own.
    pub(crate) admin: bool,
}

/// Which machines `GET /api/v1/machines` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MachineFilter {
    /// In this zone.
    pub(crate) zone: Option<String>,
    /// With this status.
    pub(crate) status: Option<Status>,
    /// With every one of these tags.
    pub(crate) tags: Vec<String>,
}

impl MachineFilter {
    fn matches(&self, m: &Machine) -> bool {
        self.zone.as_ref().is_none_or(|z| &m.zone == z)
            && self.status.is_none_or(|s| m.status == s)
            && self.tags.iter().all(|t| m.tags.contains(t))
    }
}

/// The network constraints resolved against the network model: each inner set is one
/// constraint, met by an interface on any of its members.
#[derive(Default)]
struct Networks {
    subnets: Vec<BTreeSet<SubnetId>>,
    vlans: Vec<BTreeSet<VlanId>>,
    fabrics: Vec<BTreeSet<FabricId>>,
}

/// `set`, or an error naming `spec` when nothing matched it.
fn nonempty<T>(set: BTreeSet<T>, kind: &str, spec: &str) -> Result<BTreeSet<T>, StateError> {
    if set.is_empty() {
        Err(StateError::Invalid(format!(
            "{kind} {spec:?} does not exist"
        )))
    } else {
        Ok(set)
    }
}

/// `N` or `id:N`.
fn id_of(spec: &str) -> Option<u32> {
    spec.strip_prefix("id:").unwrap_or(spec).parse().ok()
}

impl Networks {
    fn resolve(c: &Constraints, topology: &Topology) -> Result<Self, StateError> {
        let mut out = Self::default();
        for spec in &c.subnets {
            let found: BTreeSet<SubnetId> = match spec.parse::<ipnet::IpNet>() {
                Ok(cidr) => topology.subnet_by_cidr(cidr).into_iter().collect(),
                Err(_) => id_of(spec)
                    .map(SubnetId::new)
                    .filter(|id| topology.subnet(*id).is_some())
                    .into_iter()
                    .collect(),
            };
            out.subnets.push(nonempty(found, "subnet", spec)?);
        }
        for spec in &c.vlans {
            let found: BTreeSet<VlanId> = if let Some(vid) = spec.strip_prefix("vid:") {
                let vid: Option<u16> = vid.parse().ok();
                topology
                    .vlans()
                    .filter(|(_, v)| Some(v.vid) == vid)
                    .map(|(id, _)| id)
                    .collect()
            } else if let Some(id) = id_of(spec) {
                Some(VlanId::new(id))
                    .filter(|id| topology.vlan(*id).is_some())
                    .into_iter()
                    .collect()
            } else {
                let name = spec.strip_prefix("name:").unwrap_or(spec);
                topology
                    .vlans()
                    .filter(|(_, v)| v.name.as_deref() == Some(name))
                    .map(|(id, _)| id)
                    .collect()
            };
            out.vlans.push(nonempty(found, "VLAN", spec)?);
        }
        for spec in &c.fabrics {
            let found: BTreeSet<FabricId> = topology
                .fabric_by_name(spec)
                .or_else(|| {
                    id_of(spec)
                        .map(FabricId::new)
                        .filter(|id| topology.fabric(*id).is_some())
                })
                .into_iter()
                .collect();
            out.fabrics.push(nonempty(found, "fabric", spec)?);
        }
        Ok(out)
    }

    /// Whether `machine` has an interface on every network asked for. What is known of its
    /// networks is its boot interface's address (its last lease): its subnet, that subnet's
    /// VLAN and fabric.
    fn met_by(&self, machine: &Machine, topology: &Topology) -> bool {
        if self.subnets.is_empty() && self.vlans.is_empty() && self.fabrics.is_empty() {
            return true;
        }
        let Some(subnet) = machine.ip.and_then(|ip| topology.subnet_containing(ip)) else {
            return false;
        };
        let vlan = topology.subnet(subnet).map(|s| s.vlan);
        let fabric = topology.subnet_fabric(subnet);
        self.subnets.iter().all(|set| set.contains(&subnet))
            && self
                .vlans
                .iter()
                .all(|set| vlan.is_some_and(|v| set.contains(&v)))
            && self
                .fabrics
                .iter()
                .all(|set| fabric.is_some_and(|f| set.contains(&f)))
    }
}

/// A machine's architecture, `arch/subarch` (commissioning's `amd64` is `amd64/generic`).
fn architecture(m: &Machine) -> Option<String> {
    let arch = m
        .architecture
        .clone()
        .or_else(|| m.hardware.as_ref().map(|h| h.architecture.clone()))
        .filter(|a| !a.is_empty())?;
    Some(if arch.contains('/') {
        arch
    } else {
        format!("{arch}/generic")
    })
}

/// CPUs and memory in MiB, as commissioning found them (none before it).
fn size(m: &Machine) -> (u32, u64) {
    m.hardware
        .as_ref()
        .map_or((0, 0), |h| (h.cpu_count, h.memory_bytes / (1024 * 1024)))
}

impl Constraints {
    /// Whether `m` meets every constraint but the network ones.
    fn met_by(&self, m: &Machine) -> bool {
        let (cpus, mem) = size(m);
        self.zone.as_ref().is_none_or(|z| &m.zone == z)
            && !self.not_in_zone.contains(&m.zone)
            && self.arch.as_ref().is_none_or(|wanted| {
                architecture(m).is_some_and(|have| {
                    if wanted.contains('/') {
                        have == *wanted
                    } else {
                        have.split('/').next() == Some(wanted.as_str())
                    }
                })
            })
            && self.cpu_count.is_none_or(|n| cpus >= n)
            && self.mem.is_none_or(|n| mem >= n)
            && self.tags.iter().all(|t| m.tags.contains(t))
            && !self.not_tags.iter().any(|t| m.tags.contains(t))
            && self.hostname.as_ref().is_none_or(|h| &m.hostname == h)
    }

    /// The constraints for a person: `zone=a, cpu_count>=4`.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        let list = |v: &[String]| v.join(",");
        if let Some(z) = &self.zone {
            parts.push(format!("zone={z}"));
        }
        if !self.not_in_zone.is_empty() {
            parts.push(format!("not_in_zone={}", list(&self.not_in_zone)));
        }
        if let Some(a) = &self.arch {
            parts.push(format!("arch={a}"));
        }
        if let Some(n) = self.cpu_count {
            parts.push(format!("cpu_count>={n}"));
        }
        if let Some(n) = self.mem {
            parts.push(format!("mem>={n}MiB"));
        }
        for (name, v) in [
            ("tags", &self.tags),
            ("not_tags", &self.not_tags),
            ("subnets", &self.subnets),
            ("vlans", &self.vlans),
            ("fabrics", &self.fabrics),
        ] {
            if !v.is_empty() {
                parts.push(format!("{name}={}", list(v)));
            }
        }
        if let Some(h) = &self.hostname {
            parts.push(format!("hostname={h}"));
        }
        if parts.is_empty() {
            "no constraints".into()
        } else {
            parts.join(", ")
        }
    }
}

/// What a change of ownership of `machine` (made in memory already) stores: the machine and
/// the event. Its credential stays: an allocated or released machine boots nothing new (a
/// deployment hands it a fresh one as it starts).
fn owner_changed(
    memory: &mut Memory,
    machine: &Machine,
    now: Timestamp,
    kind: &str,
    detail: String,
) -> Vec<Change> {
    let e = event(machine.mac, now, kind, Some(detail));
    push_event(memory, e.clone());
    vec![
        Change::PutMachine(Box::new(machine.clone())),
        Change::AddEvent(e),
    ]
}

impl State {
    /// The machines `filter` lets through, by MAC.
    pub(crate) fn machines_matching(&self, filter: &MachineFilter) -> Vec<Machine> {
        self.lock()
            .machines
            .values()
            .filter(|m| filter.matches(m))
            .cloned()
            .collect()
    }

    /// Allocates to `owner` the smallest Ready machine meeting `constraints` (fewest CPUs,
    /// then least memory, then host name): it becomes Allocated, with its owner and an event.
    /// An unknown zone or network is refused (invalid), no match is a conflict.
    pub(crate) fn allocate(
        &self,
        constraints: &Constraints,
        owner: &str,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        let topology = self.ipam.read(|ipam| ipam.topology().clone());
        let networks = Networks::resolve(constraints, &topology)?;
        let mut memory = self.lock();
        let unknown: Vec<&str> = constraints
            .zone
            .iter()
            .chain(&constraints.not_in_zone)
            .filter(|z| !memory.zones.contains_key(*z))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(StateError::Invalid(format!(
                "no such zone: {}",
                unknown.join(", ")
            )));
        }
        let chosen = memory
            .machines
            .values()
            .filter(|m| m.status == Status::Ready)
            .filter(|m| constraints.met_by(m) && networks.met_by(m, &topology))
            .min_by(|a, b| {
                let (ka, kb) = (size(a), size(b));
                ka.cmp(&kb).then_with(|| a.hostname.cmp(&b.hostname))
            })
            .map(|m| m.mac)
            .ok_or_else(|| {
                StateError::Conflict(format!(
                    "no Ready machine matches the constraints ({})",
                    constraints.describe()
                ))
            })?;
        let machine = memory
            .machines
            .get_mut(&chosen)
            .ok_or(StateError::NoMachine(chosen))?;
        machine.status = Status::Allocated;
        machine.owner = Some(owner.into());
        let out = machine.clone();
        let changes = owner_changed(&mut memory, &out, now, "allocated", format!("to {owner}"));
        Ok((out, self.commit(changes)?))
    }

    /// Gives an allocated machine back: Ready, without owner. Only its owner or an admin may.
    pub(crate) fn release(
        &self,
        mac: Mac,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        let mut memory = self.lock();
        let machine = memory.machine_mut(mac)?;
        let status = machine.status;
        owner_may_act(machine, actor)?;
        match status {
            // Nothing ran on it: it is Ready at once.
            Status::Allocated => {}
            // A machine that ran something is powered off on its way back: it goes through
            // Releasing (`State::releasing`, `State::released`).
            Status::Deploying | Status::Deployed | Status::FailedDeployment => {
                return Err(StateError::Conflict(format!(
                    "machine {mac} is {}: it is released through Releasing",
                    status.as_str()
                )));
            }
            Status::Releasing => {
                return Err(StateError::Conflict(format!(
                    "machine {mac} is releasing already"
                )));
            }
            Status::New | Status::Commissioning | Status::FailedCommissioning | Status::Ready => {
                return Err(StateError::Conflict(format!(
                    "machine {mac} is {}, not allocated",
                    status.as_str()
                )));
            }
        }
        let previous = machine.owner.take();
        machine.status = Status::Ready;
        let out = machine.clone();
        let detail = format!(
            "by {} (was {})",
            actor.name,
            previous.as_deref().unwrap_or("nobody's")
        );
        let changes = owner_changed(&mut memory, &out, now, "released", detail);
        Ok((out, self.commit(changes)?))
    }
}

/// Whether `actor` may act on `machine` as its owner: an admin always; another user only on
/// a machine allocated to them (or to nobody).
fn owner_may_act(machine: &Machine, actor: &Actor) -> Result<(), StateError> {
    if machine.status.is_owned() && !actor.admin && machine.owner.as_deref() != Some(&actor.name) {
        return Err(StateError::Forbidden(format!(
            "machine {} is allocated to {}: only its owner or an admin may act on it",
            machine.mac,
            machine.owner.as_deref().unwrap_or("nobody")
        )));
    }
    Ok(())
}

impl State {
    /// Refuses `actor` on `mac` unless it is theirs (or they are an admin).
    pub(crate) fn check_owner(&self, mac: Mac, actor: &Actor) -> Result<(), StateError> {
        let memory = self.lock();
        let machine = memory.machine(mac)?;
        owner_may_act(machine, actor)
    }
}
