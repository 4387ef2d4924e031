//! What the controller keeps across restarts: the address manager (durable, in the maas-ipam
//! redb store) and the machines (a JSON file replaced atomically on every change).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use maas_ipam::{Durable, RedbStore};
use maas_net::{Mac, Timestamp, Topology};
use serde::{Deserialize, Serialize};

use crate::config::{MachineConfig, valid_hostname};

/// A machine's life cycle, as far as this controller takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Seen booting, not known before (enlisted): waiting for someone to accept it.
    New,
    /// Known (configured or accepted): boots what the controller gives it.
    Ready,
}

/// Where a machine entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Origin {
    /// The configuration file.
    Config,
    /// Created through the API.
    Api,
    /// Seen booting (DHCP or an iPXE script request).
    Enlisted,
}

/// A machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) mac: Mac,
    pub(crate) hostname: String,
    pub(crate) architecture: Option<String>,
    pub(crate) zone: String,
    pub(crate) status: Status,
    pub(crate) origin: Origin,
    /// Power driver and parameters (`driver` plus MAAS's parameter names).
    pub(crate) power: Option<serde_json::Value>,
    /// Its address, from its last DHCP lease.
    pub(crate) ip: Option<IpAddr>,
    /// What its firmware told DHCP: the boot method chosen and the boot file.
    pub(crate) boot: Option<serde_json::Value>,
    pub(crate) first_seen: Option<Timestamp>,
    pub(crate) last_seen: Option<Timestamp>,
}

impl Machine {
    fn from_config(c: &MachineConfig) -> Self {
        Self {
            mac: c.mac,
            hostname: c
                .hostname
                .clone()
                .unwrap_or_else(|| default_hostname(c.mac)),
            architecture: c.architecture.clone(),
            zone: c.zone.clone().unwrap_or_else(|| "default".into()),
            status: Status::Ready,
            origin: Origin::Config,
            power: c.power.as_ref().and_then(|t| serde_json::to_value(t).ok()),
            ip: None,
            boot: None,
            first_seen: None,
            last_seen: None,
        }
    }
}

/// `node-` and the MAC's last three bytes: a stable name for an enlisted machine.
pub(crate) fn default_hostname(mac: Mac) -> String {
    let b = mac.octets();
    format!("node-{:02x}{:02x}{:02x}", b[3], b[4], b[5])
}

/// A neighbour seen on a watched interface (passively, or answering an active scan).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Discovery {
    pub(crate) ip: IpAddr,
    pub(crate) mac: Mac,
    /// The MAC before the last move, or the other claimant of a conflict.
    pub(crate) previous_mac: Option<Mac>,
    /// From mDNS.
    pub(crate) hostname: Option<String>,
    pub(crate) interface: String,
    pub(crate) vid: u16,
    /// The subnet the address lies in, if any.
    pub(crate) subnet: Option<String>,
    /// The last event about it (`NEW`, `REFRESHED`, `MOVED`, `FLIP_FLOP`, `CONFLICT`,
    /// `HOSTNAME`).
    pub(crate) last_event: String,
    pub(crate) first_seen: Timestamp,
    pub(crate) last_seen: Timestamp,
}

/// A problem with the state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("the address store: {0}")]
    Ipam(String),
    #[error("machine {0} does not exist")]
    NoMachine(Mac),
    #[error("machine {0} exists already")]
    Exists(Mac),
    #[error("{0}")]
    Invalid(String),
}

/// The controller's state.
pub(crate) struct State {
    pub(crate) ipam: Arc<Durable<RedbStore>>,
    machines: Mutex<BTreeMap<Mac, Machine>>,
    machines_path: PathBuf,
    discoveries: Mutex<BTreeMap<IpAddr, Discovery>>,
    discoveries_path: PathBuf,
}

impl State {
    /// Opens (or creates) the state in `dir`, with `topology` as the network model and the
    /// configured machines merged in (the file wins for what it says; what was learnt since,
    /// such as addresses and boot information, is kept).
    pub(crate) fn open(
        dir: &Path,
        topology: &Topology,
        configured: &[MachineConfig],
    ) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
        let store_path = dir.join("ipam.redb");
        let store = RedbStore::open(&store_path).map_err(|e| StateError::Ipam(e.to_string()))?;
        let durable = Durable::with_topology(store, topology.clone())
            .map_err(|e| StateError::Ipam(e.to_string()))?;
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
                .map_err(|e| {
                    StateError::Ipam(format!(
                        "the network model in the file cannot replace the stored one: {e}"
                    ))
                })?;
        }
        let machines_path = dir.join("machines.json");
        let mut machines: BTreeMap<Mac, Machine> = match std::fs::read(&machines_path) {
            Ok(bytes) => serde_json::from_slice::<Vec<Machine>>(&bytes)
                .map_err(|e| StateError::Io {
                    path: machines_path.clone(),
                    message: format!("not a machines file: {e}"),
                })?
                .into_iter()
                .map(|m| (m.mac, m))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_error(&machines_path, &e)),
        };
        for c in configured {
            let fresh = Machine::from_config(c);
            let entry = machines.entry(c.mac).or_insert_with(|| fresh.clone());
            entry.hostname = fresh.hostname;
            entry.architecture = fresh.architecture.or(entry.architecture.take());
            entry.zone = fresh.zone;
            entry.power = fresh.power;
            entry.status = Status::Ready;
            entry.origin = Origin::Config;
        }
        let discoveries_path = dir.join("discoveries.json");
        let discoveries: BTreeMap<IpAddr, Discovery> = match std::fs::read(&discoveries_path) {
            Ok(bytes) => serde_json::from_slice::<Vec<Discovery>>(&bytes)
                .map_err(|e| StateError::Io {
                    path: discoveries_path.clone(),
                    message: format!("not a discoveries file: {e}"),
                })?
                .into_iter()
                .map(|d| (d.ip, d))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_error(&discoveries_path, &e)),
        };
        let state = Self {
            ipam: Arc::new(durable),
            machines: Mutex::new(machines),
            machines_path,
            discoveries: Mutex::new(discoveries),
            discoveries_path,
        };
        state.save(&state.lock())?;
        Ok(state)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Mac, Machine>> {
        self.machines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every machine, by MAC.
    pub(crate) fn machines(&self) -> Vec<Machine> {
        self.lock().values().cloned().collect()
    }

    pub(crate) fn machine(&self, mac: Mac) -> Option<Machine> {
        self.lock().get(&mac).cloned()
    }

    /// Replaces every machine (a rack's copy of its region's list).
    pub(crate) fn replace_machines(&self, list: Vec<Machine>) -> Result<(), StateError> {
        let mut machines = self.lock();
        let fresh: BTreeMap<Mac, Machine> = list.into_iter().map(|m| (m.mac, m)).collect();
        if *machines != fresh {
            *machines = fresh;
            self.save(&machines)?;
        }
        Ok(())
    }

    /// Adds a machine (API).
    pub(crate) fn create(
        &self,
        config: &MachineConfig,
        zones: &[String],
    ) -> Result<Machine, StateError> {
        if let Some(name) = &config.hostname
            && !valid_hostname(name)
        {
            return Err(StateError::Invalid(format!(
                "hostname {name:?} is not a DNS label (letters, digits, '-', 1-63)"
            )));
        }
        if let Some(zone) = &config.zone
            && !zones.contains(zone)
        {
            return Err(StateError::Invalid(format!("zone {zone:?} does not exist")));
        }
        let mut machines = self.lock();
        if machines.contains_key(&config.mac) {
            return Err(StateError::Exists(config.mac));
        }
        let mut machine = Machine::from_config(config);
        machine.origin = Origin::Api;
        if machines.values().any(|m| m.hostname == machine.hostname) {
            return Err(StateError::Invalid(format!(
                "hostname {:?} is taken",
                machine.hostname
            )));
        }
        machines.insert(machine.mac, machine.clone());
        self.save(&machines)?;
        Ok(machine)
    }

    /// Removes a machine (API).
    pub(crate) fn delete(&self, mac: Mac) -> Result<Machine, StateError> {
        let mut machines = self.lock();
        let machine = machines.remove(&mac).ok_or(StateError::NoMachine(mac))?;
        self.save(&machines)?;
        Ok(machine)
    }

    /// Accepts an enlisted machine (`New` to `Ready`).
    pub(crate) fn accept(&self, mac: Mac) -> Result<Machine, StateError> {
        let mut machines = self.lock();
        let machine = machines.get_mut(&mac).ok_or(StateError::NoMachine(mac))?;
        machine.status = Status::Ready;
        let out = machine.clone();
        self.save(&machines)?;
        Ok(out)
    }

    /// Records that `mac` was seen booting: a DHCP lease (`ip`, `boot`) or an iPXE script
    /// request. An unknown machine is enlisted as `New`. Saved when something changed
    /// besides the time.
    pub(crate) fn seen_booting(
        &self,
        mac: Mac,
        ip: Option<IpAddr>,
        boot: Option<serde_json::Value>,
        now: Timestamp,
    ) -> Result<Machine, StateError> {
        let mut machines = self.lock();
        let mut changed = false;
        let machine = machines.entry(mac).or_insert_with(|| {
            changed = true;
            Machine {
                mac,
                hostname: default_hostname(mac),
                architecture: None,
                zone: "default".into(),
                status: Status::New,
                origin: Origin::Enlisted,
                power: None,
                ip: None,
                boot: None,
                first_seen: Some(now),
                last_seen: None,
            }
        });
        machine.first_seen.get_or_insert(now);
        machine.last_seen = Some(now);
        if ip.is_some() && machine.ip != ip {
            machine.ip = ip;
            changed = true;
        }
        if boot.is_some() && machine.boot != boot {
            machine.boot = boot;
            changed = true;
        }
        let out = machine.clone();
        if changed {
            self.save(&machines)?;
        }
        Ok(out)
    }

    /// Every discovery, by address.
    pub(crate) fn discoveries(&self) -> Vec<Discovery> {
        self.discoveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Records a discovery event: the neighbour table (saved) and a DISCOVERED address in
    /// the address manager.
    pub(crate) fn discovered(
        &self,
        event: &maas_discovery::Event,
        now: Timestamp,
    ) -> Result<Discovery, StateError> {
        let subnet = self
            .ipam
            .apply(|ipam| Ok(ipam.observe(event.ip, Some(event.mac), now)))
            .map_err(|e| StateError::Ipam(e.to_string()))?;
        let subnet = subnet.and_then(|id| {
            self.ipam
                .read(|ipam| ipam.topology().subnet(id).map(|s| s.cidr.to_string()))
        });
        let kind = serde_json::to_value(event.event)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut all = self
            .discoveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first_seen = all
            .get(&event.ip)
            .filter(|d| d.mac == event.mac)
            .map_or(event.first_seen, |d| d.first_seen.min(event.first_seen));
        let hostname = event
            .hostname
            .clone()
            .or_else(|| all.get(&event.ip).and_then(|d| d.hostname.clone()));
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
        all.insert(entry.ip, entry.clone());
        let list: Vec<&Discovery> = all.values().collect();
        write_json(&self.discoveries_path, &list)?;
        Ok(entry)
    }

    /// Writes the machines file.
    fn save(&self, machines: &BTreeMap<Mac, Machine>) -> Result<(), StateError> {
        let list: Vec<&Machine> = machines.values().collect();
        write_json(&self.machines_path, &list)
    }
}

/// Writes `value` to `path` as JSON: a temporary file, synced, renamed over the old one, and
/// the directory synced, so a crash leaves the old file or the new one, never half.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| io_error(path, &e))
}

fn io_error(path: &Path, e: &std::io::Error) -> StateError {
    StateError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
