//! Devices: nodes the controller does not deploy (switches, PDUs, appliances, containers),
//! each with a host name in a domain, a zone, an optional parent (a machine or another
//! device) and interfaces whose addresses follow their IP assignment:
//!
//! - `static`: an address held in the address manager as STICKY (the one given, or the next
//!   free one of the subnet given);
//! - `external`: an address outside the controller's management, held as USER_RESERVED so
//!   nothing else is given it (it must lie outside the dynamic ranges; it may lie in a
//!   reserved range);
//! - `dynamic`: nothing held; the device gets its address by DHCP, and the lease recorded for
//!   its MAC is shown as its address.
//!
//! Host names are unique across machines and devices, and so are MACs. Deleting a device or
//! one of its interfaces frees what it held, in the same commit as the record.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use maas_ipam::{AddressKind, AssignOptions, AutoRequest, Ipam, LeaseState, Requested, Ticket};
use maas_net::{Mac, SubnetId, Timestamp};
use serde::{Deserialize, Serialize};

use super::allocation::Actor;
use super::records::DEFAULT_ZONE;
use super::store::Change;
use super::{Memory, State, StateError};
use crate::config::valid_hostname;

/// How an interface of a device gets its address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum IpAssignment {
    /// A fixed address the controller holds for it (STICKY).
    Static,
    /// DHCP: the lease recorded for its MAC.
    #[default]
    Dynamic,
    /// An address managed elsewhere, recorded so it is not handed out (USER_RESERVED).
    External,
}

impl IpAssignment {
    /// Whether an address of this kind is held in the address manager.
    const fn holds(self) -> bool {
        matches!(self, Self::Static | Self::External)
    }
}

/// What a device hangs under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Parent {
    /// A machine, by its MAC.
    Machine(Mac),
    /// Another device, by its name.
    Device(String),
}

/// One address of a device's interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceLink {
    /// How the address is given.
    pub(crate) mode: IpAssignment,
    /// The subnet the address lies in (for `dynamic`, the one last seen, if any).
    #[serde(default)]
    pub(crate) subnet: Option<IpNet>,
    /// `static` and `external`: the address held; `dynamic`: the address last seen on the
    /// wire, if known (not held).
    #[serde(default)]
    pub(crate) ip: Option<IpAddr>,
}

/// A device's network interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceInterface {
    /// `eth0`, ...
    pub(crate) name: String,
    pub(crate) mac: Mac,
    pub(crate) links: Vec<DeviceLink>,
}

/// A device, as the devices table keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Device {
    /// Its host name, unique across machines and devices.
    pub(crate) name: String,
    /// The DNS domain its name lives in.
    pub(crate) domain: String,
    pub(crate) zone: String,
    #[serde(default)]
    pub(crate) parent: Option<Parent>,
    #[serde(default)]
    pub(crate) description: String,
    /// The user who made it.
    #[serde(default)]
    pub(crate) owner: Option<String>,
    pub(crate) interfaces: Vec<DeviceInterface>,
    pub(crate) created: Timestamp,
}

/// The domain a device is in unless another is given.
pub(crate) const DEFAULT_DOMAIN: &str = "maas";

/// A new interface: `POST /api/v1/devices/{name}/interfaces`, or one of a new device's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewInterface {
    /// Its name (default: the first free `ethN`).
    #[serde(default)]
    pub(crate) name: Option<String>,
    pub(crate) mac: Mac,
    /// How it gets its address (default `dynamic`).
    #[serde(default)]
    pub(crate) ip_assignment: IpAssignment,
    /// `static`: this address (else the next free one of `subnet`); `external`: required;
    /// `dynamic`: the address last seen, if any (not held).
    #[serde(default)]
    pub(crate) ip: Option<IpAddr>,
    /// A subnet by CIDR or id: for `static` without `ip`, where to take the next free address.
    #[serde(default)]
    pub(crate) subnet: Option<String>,
}

/// `POST /api/v1/devices`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDevice {
    /// The host name.
    pub(crate) name: String,
    /// Default `maas`.
    #[serde(default)]
    pub(crate) domain: Option<String>,
    /// Default `default`.
    #[serde(default)]
    pub(crate) zone: Option<String>,
    /// A machine's MAC or a device's name.
    #[serde(default)]
    pub(crate) parent: Option<String>,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) interfaces: Vec<NewInterface>,
}

/// `PUT /api/v1/devices/{name}`: what to change (absent fields stay).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceUpdate {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) domain: Option<String>,
    #[serde(default)]
    pub(crate) zone: Option<String>,
    /// A machine's MAC or a device's name; `""` removes the parent.
    #[serde(default)]
    pub(crate) parent: Option<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
}

/// Whether `name` is a DNS name: dot-separated labels of letters, digits and `-` (not at
/// either end), 1-63 each, at most 253 in all.
pub(crate) fn valid_domain(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty() && name.len() <= 253 && name.split('.').all(valid_hostname)
}

impl Memory {
    /// Who holds the host name `name` (a machine or a device), if anyone.
    fn name_taken(&self, name: &str) -> bool {
        self.machines.values().any(|m| m.hostname == name) || self.devices.contains_key(name)
    }

    /// What already has `mac`: a machine (its boot MAC or an interface) or a device.
    pub(super) fn mac_owner(&self, mac: Mac) -> Option<String> {
        for m in self.machines.values() {
            let on_machine = m.mac == mac
                || m.network
                    .as_ref()
                    .is_some_and(|d| d.interfaces.iter().any(|i| i.mac == Some(mac)))
                || m.hardware
                    .as_ref()
                    .is_some_and(|h| h.interfaces.iter().any(|n| n.mac == mac));
            if on_machine {
                return Some(format!("machine {}", m.hostname));
            }
        }
        self.device_with_mac(mac).map(|d| format!("device {d}"))
    }

    /// The device that has `mac` on one of its interfaces, if any.
    pub(super) fn device_with_mac(&self, mac: Mac) -> Option<String> {
        self.devices
            .values()
            .find(|d| d.interfaces.iter().any(|i| i.mac == mac))
            .map(|d| d.name.clone())
    }

    /// The parent `text` names: a machine's MAC, else a device's name.
    fn resolve_parent(&self, text: &str) -> Result<Parent, StateError> {
        if let Ok(mac) = text.replace('-', ":").parse::<Mac>()
            && self.machines.contains_key(&mac)
        {
            return Ok(Parent::Machine(mac));
        }
        if self.devices.contains_key(text) {
            return Ok(Parent::Device(text.to_owned()));
        }
        Err(StateError::Invalid(format!(
            "parent {text:?} is neither a machine's MAC nor a device's name"
        )))
    }

    /// The devices whose parent is `parent`.
    pub(super) fn children(&self, parent: &Parent) -> Vec<String> {
        self.devices
            .values()
            .filter(|d| d.parent.as_ref() == Some(parent))
            .map(|d| d.name.clone())
            .collect()
    }
}

/// Refuses a caller who is neither an admin nor the device's owner.
/// A copy of device `name`, if `actor` (when given) may change it.
fn device_for(memory: &Memory, name: &str, actor: Option<&Actor>) -> Result<Device, StateError> {
    let device = memory
        .devices
        .get(name)
        .cloned()
        .ok_or_else(|| StateError::NotFound(format!("device {name:?}")))?;
    if let Some(actor) = actor {
        check_owner(&device, actor)?;
    }
    Ok(device)
}

fn check_owner(device: &Device, actor: &Actor) -> Result<(), StateError> {
    if actor.admin || device.owner.as_deref() == Some(actor.name.as_str()) {
        Ok(())
    } else {
        Err(StateError::Forbidden(format!(
            "device {} belongs to {}: only its owner or an admin may change it",
            device.name,
            device.owner.as_deref().unwrap_or("nobody")
        )))
    }
}

fn check_name(name: &str) -> Result<(), StateError> {
    if valid_hostname(name) {
        Ok(())
    } else {
        Err(StateError::Invalid(format!(
            "name {name:?} is not a DNS label (letters, digits, '-', 1-63)"
        )))
    }
}

/// `domain` as the domains table names it (lower case), if it is a DNS name that exists.
fn check_domain(memory: &Memory, domain: &str) -> Result<String, StateError> {
    if !valid_domain(domain) {
        return Err(StateError::Invalid(format!(
            "domain {domain:?} is not a DNS name (labels of letters, digits and '-')"
        )));
    }
    let domain = domain.to_ascii_lowercase();
    if !memory.domains.contains_key(&domain) {
        return Err(StateError::Invalid(format!(
            "domain {domain:?} does not exist (see GET /api/v1/domains)"
        )));
    }
    Ok(domain)
}

/// The subnet `text` names (a CIDR or an id).
pub(super) fn find_subnet(ipam: &Ipam, text: &str) -> Result<(SubnetId, IpNet), StateError> {
    let topo = ipam.topology();
    let found = if let Ok(id) = text.trim_start_matches("id:").parse::<u32>() {
        let id = SubnetId::from(id);
        topo.subnet(id).map(|s| (id, s.cidr))
    } else if let Ok(cidr) = text.parse::<IpNet>() {
        topo.subnets()
            .find(|(_, s)| s.cidr.trunc() == cidr.trunc())
            .map(|(id, s)| (id, s.cidr))
    } else {
        None
    };
    found.ok_or_else(|| StateError::Invalid(format!("subnet {text:?} does not exist")))
}

/// Holds the address of one new interface in the address manager; the link to record.
fn hold(
    ipam: &mut Ipam,
    new: &NewInterface,
    owner: &str,
    now: Timestamp,
) -> Result<DeviceLink, StateError> {
    let options = AssignOptions {
        mac: Some(new.mac),
        owner: Some(owner.to_owned()),
        // An address managed elsewhere may lie in a reserved range (kept for such things);
        // a static one the controller gives stays out of them.
        allow_reserved: new.ip_assignment == IpAssignment::External,
    };
    let subnet_of = |ipam: &Ipam, ip: IpAddr| {
        ipam.topology()
            .subnet_containing(ip)
            .and_then(|id| ipam.topology().subnet(id))
            .map(|s| s.cidr)
    };
    let given_subnet = new
        .subnet
        .as_deref()
        .map(|s| find_subnet(ipam, s))
        .transpose()?;
    if let (Some(ip), Some((_, cidr))) = (new.ip, given_subnet)
        && !cidr.contains(&ip)
    {
        return Err(StateError::Invalid(format!("{ip} is not in subnet {cidr}")));
    }
    let refused = |e: maas_ipam::Error| StateError::Conflict(e.to_string());
    match new.ip_assignment {
        IpAssignment::Dynamic => Ok(DeviceLink {
            mode: IpAssignment::Dynamic,
            subnet: new
                .ip
                .and_then(|ip| subnet_of(ipam, ip))
                .or(given_subnet.map(|(_, c)| c)),
            ip: new.ip,
        }),
        IpAssignment::External => {
            let ip = new
                .ip
                .ok_or_else(|| StateError::Invalid("an external address needs its ip".into()))?;
            ipam.assign(ip, Requested::UserReserved, &options, now)
                .map_err(refused)?;
            Ok(DeviceLink {
                mode: IpAssignment::External,
                subnet: subnet_of(ipam, ip),
                ip: Some(ip),
            })
        }
        IpAssignment::Static => {
            let ip = match (new.ip, given_subnet) {
                (Some(ip), _) => ip,
                (None, Some((id, _))) => {
                    let request = AutoRequest::new().mac(new.mac);
                    let ips = ipam.next_addresses(id, &request).map_err(refused)?;
                    *ips.first().ok_or_else(|| {
                        StateError::Conflict(format!("no free address in subnet {id}"))
                    })?
                }
                (None, None) => {
                    return Err(StateError::Invalid(
                        "a static address needs its ip or the subnet to take the next free one from"
                            .into(),
                    ));
                }
            };
            ipam.assign(ip, Requested::Sticky, &options, now)
                .map_err(refused)?;
            Ok(DeviceLink {
                mode: IpAssignment::Static,
                subnet: subnet_of(ipam, ip),
                ip: Some(ip),
            })
        }
    }
}

/// Frees what an interface holds: its static and external addresses still recorded for its
/// MAC.
fn free(ipam: &mut Ipam, iface: &DeviceInterface) {
    for link in &iface.links {
        if let (true, Some(ip)) = (link.mode.holds(), link.ip)
            && ipam.record(ip).is_some_and(|r| {
                r.mac == Some(iface.mac)
                    && matches!(r.kind, AddressKind::Sticky | AddressKind::UserReserved)
            })
        {
            let _ = ipam.release(ip);
        }
    }
}

/// Holds the addresses of every new interface, or none of them.
fn hold_all(
    ipam: &mut Ipam,
    news: &[(String, NewInterface)],
    owner: &str,
    now: Timestamp,
) -> Result<Vec<DeviceInterface>, StateError> {
    let mut made: Vec<DeviceInterface> = Vec::new();
    for (name, new) in news {
        match hold(ipam, new, owner, now) {
            Ok(link) => made.push(DeviceInterface {
                name: name.clone(),
                mac: new.mac,
                links: vec![link],
            }),
            Err(e) => {
                for iface in &made {
                    free(ipam, iface);
                }
                return Err(e);
            }
        }
    }
    Ok(made)
}

/// Checks new interfaces' MACs (unique, unused) and names them.
fn name_interfaces(
    memory: &Memory,
    existing: &[DeviceInterface],
    news: Vec<NewInterface>,
) -> Result<Vec<(String, NewInterface)>, StateError> {
    let mut names: BTreeSet<String> = existing.iter().map(|i| i.name.clone()).collect();
    let mut macs = BTreeSet::new();
    let mut out = Vec::new();
    for new in news {
        if let Some(holder) = memory.mac_owner(new.mac) {
            return Err(StateError::Conflict(format!(
                "MAC {} belongs to {holder} already",
                new.mac
            )));
        }
        if !macs.insert(new.mac) {
            return Err(StateError::Invalid(format!(
                "MAC {} is given twice",
                new.mac
            )));
        }
        let name = match &new.name {
            Some(n) => {
                if n.is_empty() || n.len() > 15 || n.contains(['/', ' ', '\0']) {
                    return Err(StateError::Invalid(format!(
                        "interface name {n:?}: 1-15 characters, no '/' or space"
                    )));
                }
                n.clone()
            }
            None => (0..)
                .map(|n| format!("eth{n}"))
                .find(|n| !names.contains(n))
                .unwrap_or_default(),
        };
        if !names.insert(name.clone()) {
            return Err(StateError::Invalid(format!(
                "interface name {name:?} is used twice"
            )));
        }
        out.push((name, new));
    }
    Ok(out)
}

impl State {
    /// Every device, by name.
    pub(crate) fn devices(&self) -> Vec<Device> {
        self.lock().devices.values().cloned().collect()
    }

    /// One device.
    pub(crate) fn device(&self, name: &str) -> Option<Device> {
        self.lock().devices.get(name).cloned()
    }

    /// The address each interface of `device` has now: what it holds, or for a `dynamic`
    /// one, the bound lease of its MAC (else the address last seen).
    pub(crate) fn device_addresses(
        &self,
        device: &Device,
    ) -> Vec<(Mac, IpAssignment, Option<IpAddr>)> {
        self.ipam.read(|ipam| {
            let mut out = Vec::new();
            for iface in &device.interfaces {
                for link in &iface.links {
                    let ip = if link.mode == IpAssignment::Dynamic {
                        ipam.leases()
                            .filter(|r| r.mac == Some(iface.mac))
                            .filter(|r| {
                                r.lease
                                    .as_ref()
                                    .is_some_and(|l| l.state == LeaseState::Bound)
                            })
                            .map(|r| r.ip)
                            .next()
                            .or(link.ip)
                    } else {
                        link.ip
                    };
                    out.push((iface.mac, link.mode, ip));
                }
            }
            out
        })
    }

    /// Makes a device owned by `owner`, holding its interfaces' addresses, in one commit.
    pub(crate) fn create_device(
        &self,
        new: NewDevice,
        owner: &str,
        now: Timestamp,
    ) -> Result<(Device, Ticket), StateError> {
        let mut memory = self.lock();
        self.create_device_locked(&mut memory, new, owner, now)
    }

    /// [`create_device`](Self::create_device) under the caller's lock (a conversion checks
    /// its discovery under the same lock).
    pub(super) fn create_device_locked(
        &self,
        memory: &mut Memory,
        new: NewDevice,
        owner: &str,
        now: Timestamp,
    ) -> Result<(Device, Ticket), StateError> {
        check_name(&new.name)?;
        let domain = check_domain(memory, new.domain.as_deref().unwrap_or(DEFAULT_DOMAIN))?;
        let zone = new.zone.unwrap_or_else(|| DEFAULT_ZONE.into());
        if !memory.zones.contains_key(&zone) {
            return Err(StateError::Invalid(format!("zone {zone:?} does not exist")));
        }
        if memory.name_taken(&new.name) {
            return Err(StateError::Conflict(format!(
                "the host name {:?} is taken",
                new.name
            )));
        }
        let parent = new
            .parent
            .as_deref()
            .map(|p| memory.resolve_parent(p))
            .transpose()?;
        let named = name_interfaces(memory, &[], new.interfaces)?;
        let name = new.name.clone();
        let (held, _) = self
            .ipam
            .submit(|ipam| Ok(hold_all(ipam, &named, &name, now)))
            .map_err(StateError::Ipam)?;
        let device = Device {
            name: new.name,
            domain,
            zone,
            parent,
            description: new.description,
            owner: Some(owner.to_owned()),
            interfaces: held?,
            created: now,
        };
        memory.devices.insert(device.name.clone(), device.clone());
        // One commit covers the address holds (queued above) and the record.
        let ticket = self.commit(vec![Change::PutDevice(Box::new(device.clone()))])?;
        Ok((device, ticket))
    }

    /// Changes a device's name, domain, zone, parent or description (its owner or an admin).
    /// A renamed device's children follow it.
    pub(crate) fn update_device(
        &self,
        name: &str,
        update: DeviceUpdate,
        actor: &Actor,
    ) -> Result<(Device, Ticket), StateError> {
        let mut memory = self.lock();
        let mut device = device_for(&memory, name, Some(actor))?;
        let mut changes = Vec::new();
        if let Some(domain) = update.domain {
            device.domain = check_domain(&memory, &domain)?;
        }
        if let Some(zone) = update.zone {
            if !memory.zones.contains_key(&zone) {
                return Err(StateError::Invalid(format!("zone {zone:?} does not exist")));
            }
            device.zone = zone;
        }
        if let Some(description) = update.description {
            device.description = description;
        }
        if let Some(parent) = update.parent {
            device.parent = if parent.is_empty() {
                None
            } else {
                let parent = memory.resolve_parent(&parent)?;
                // No cycles: walking up from the new parent must not meet this device.
                let mut up = Some(parent.clone());
                let mut steps = 0;
                while let Some(Parent::Device(p)) = up {
                    if p == name || steps > memory.devices.len() {
                        return Err(StateError::Invalid(format!(
                            "device {name} cannot be its own ancestor"
                        )));
                    }
                    up = memory.devices.get(&p).and_then(|d| d.parent.clone());
                    steps += 1;
                }
                Some(parent)
            };
        }
        let renamed = update.name.filter(|n| n != name);
        if let Some(new_name) = &renamed {
            check_name(new_name)?;
            if memory.name_taken(new_name) {
                return Err(StateError::Conflict(format!(
                    "the host name {new_name:?} is taken"
                )));
            }
            device.name.clone_from(new_name);
            let old = Parent::Device(name.to_owned());
            for child in memory.children(&old) {
                if let Some(c) = memory.devices.get_mut(&child) {
                    c.parent = Some(Parent::Device(new_name.clone()));
                    changes.push(Change::PutDevice(Box::new(c.clone())));
                }
            }
            memory.devices.remove(name);
            changes.push(Change::RemoveDevice(name.to_owned()));
        }
        memory.devices.insert(device.name.clone(), device.clone());
        changes.push(Change::PutDevice(Box::new(device.clone())));
        let ticket = self.commit(changes)?;
        Ok((device, ticket))
    }

    /// Deletes a device (its owner or an admin) and frees what its interfaces held, in one
    /// commit. Refused while other devices have it as their parent.
    pub(crate) fn delete_device(
        &self,
        name: &str,
        actor: &Actor,
    ) -> Result<(Device, Ticket), StateError> {
        let mut memory = self.lock();
        let device = device_for(&memory, name, Some(actor))?;
        let children = memory.children(&Parent::Device(name.to_owned()));
        if !children.is_empty() {
            return Err(StateError::Conflict(format!(
                "device {name} is the parent of {}: delete or move them first",
                children.join(", ")
            )));
        }
        let ((), _) = self
            .ipam
            .submit(|ipam| {
                for iface in &device.interfaces {
                    free(ipam, iface);
                }
                Ok(())
            })
            .map_err(StateError::Ipam)?;
        memory.devices.remove(name);
        let ticket = self.commit(vec![Change::RemoveDevice(name.to_owned())])?;
        Ok((device, ticket))
    }

    /// Adds an interface to a device (its owner or an admin), holding its address.
    pub(crate) fn add_device_interface(
        &self,
        name: &str,
        new: NewInterface,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(Device, Ticket), StateError> {
        let mut memory = self.lock();
        self.add_device_interface_locked(&mut memory, name, new, Some(actor), now)
    }

    /// [`add_device_interface`](Self::add_device_interface) under the caller's lock; `actor`
    /// `None` skips the owner check (the caller checked).
    pub(super) fn add_device_interface_locked(
        &self,
        memory: &mut Memory,
        name: &str,
        new: NewInterface,
        actor: Option<&Actor>,
        now: Timestamp,
    ) -> Result<(Device, Ticket), StateError> {
        let mut device = device_for(memory, name, actor)?;
        let named = name_interfaces(memory, &device.interfaces, vec![new])?;
        let (held, _) = self
            .ipam
            .submit(|ipam| Ok(hold_all(ipam, &named, name, now)))
            .map_err(StateError::Ipam)?;
        device.interfaces.extend(held?);
        memory.devices.insert(device.name.clone(), device.clone());
        let ticket = self.commit(vec![Change::PutDevice(Box::new(device.clone()))])?;
        Ok((device, ticket))
    }

    /// Removes a device's interface (its owner or an admin) and frees what it held.
    pub(crate) fn remove_device_interface(
        &self,
        name: &str,
        mac: Mac,
        actor: &Actor,
    ) -> Result<(Device, Ticket), StateError> {
        let mut memory = self.lock();
        let mut device = device_for(&memory, name, Some(actor))?;
        let Some(at) = device.interfaces.iter().position(|i| i.mac == mac) else {
            return Err(StateError::NotFound(format!(
                "interface {mac} of device {name}"
            )));
        };
        let iface = device.interfaces.remove(at);
        let ((), _) = self
            .ipam
            .submit(|ipam| {
                free(ipam, &iface);
                Ok(())
            })
            .map_err(StateError::Ipam)?;
        memory.devices.insert(device.name.clone(), device.clone());
        let ticket = self.commit(vec![Change::PutDevice(Box::new(device.clone()))])?;
        Ok((device, ticket))
    }
}
