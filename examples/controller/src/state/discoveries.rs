//! Discoveries beyond recording them: which are unknown (their MAC or address belongs to no
//! machine, device or controller interface), clearing them, and turning one into a device or
//! into an interface of a machine or device in one call.

use std::collections::BTreeSet;
use std::net::IpAddr;

use maas_ipam::{AddressKind, LeaseState, Ticket};
use maas_net::doc::{InterfaceDoc, InterfaceType, LinkDoc, VlanRef};
use maas_net::{LinkMode, Mac, Timestamp};
use serde::Deserialize;

use super::devices::{Device, IpAssignment, NewDevice, NewInterface};
use super::records::Discovery;
use super::store::Change;
use super::{Memory, State, StateError};

/// Which discoveries `GET /api/v1/discoveries?unknown=...` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Unknown {
    /// Their MAC is on no machine, device or controller interface.
    Mac,
    /// Their address is held by no machine, device, controller, nor leased to a known MAC.
    Ip,
    /// Both.
    Both,
}

impl std::str::FromStr for Unknown {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mac" => Ok(Self::Mac),
            "ip" => Ok(Self::Ip),
            "both" => Ok(Self::Both),
            other => Err(format!("unknown={other:?}: use mac, ip or both")),
        }
    }
}

/// What `POST /api/v1/discoveries/clear` removes (admin).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Clear {
    /// Everything: the neighbours and their names.
    #[serde(default)]
    pub(crate) all: bool,
    /// The neighbours (the discoveries, and the addresses only seen on the wire).
    #[serde(default)]
    pub(crate) neighbours: bool,
    /// The host names learnt from mDNS (or reverse DNS); the neighbours stay.
    #[serde(default)]
    pub(crate) mdns: bool,
}

/// What a conversion makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConvertAs {
    /// A new device.
    Device,
    /// A new interface of an existing machine or device.
    Interface,
}

/// `POST /api/v1/discoveries/convert`: the discovery (`ip`, `mac`) and what to make of it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Convert {
    /// The discovery's address.
    pub(crate) ip: IpAddr,
    /// The discovery's MAC.
    pub(crate) mac: Mac,
    /// A device, or an interface of `target`.
    #[serde(rename = "as")]
    pub(crate) kind: ConvertAs,
    /// The new device's host name (default: the discovery's, else one made from the MAC).
    #[serde(default)]
    pub(crate) hostname: Option<String>,
    /// The new device's domain (default `maas`).
    #[serde(default)]
    pub(crate) domain: Option<String>,
    /// The new device's zone (default `default`).
    #[serde(default)]
    pub(crate) zone: Option<String>,
    /// `static` (the discovered address, or the next free one of `subnet`), `dynamic`, or
    /// `external` (the discovered address, recorded as USER_RESERVED).
    pub(crate) ip_assignment: IpAssignment,
    /// With `static`: take the next free address of this subnet (CIDR or id) instead.
    #[serde(default)]
    pub(crate) subnet: Option<String>,
    /// The new device's parent: a machine's MAC or a device's name.
    #[serde(default)]
    pub(crate) parent: Option<String>,
    /// With `as: interface`: the machine (by MAC) or device (by name) that gets it.
    #[serde(default)]
    pub(crate) target: Option<String>,
    /// The interface's name (default: the first free `ethN`).
    #[serde(default)]
    pub(crate) interface: Option<String>,
}

/// What a conversion made.
#[derive(Clone, Debug)]
pub(crate) enum Converted {
    /// A device (new, or one that got the interface).
    Device(Device),
    /// A machine that got the interface.
    Machine(Box<super::Machine>),
}

/// The controller's own interfaces (not stored: learnt at start, and from racks' reports).
#[derive(Clone, Debug, Default)]
pub(super) struct Own {
    pub(super) macs: BTreeSet<Mac>,
    pub(super) ips: BTreeSet<IpAddr>,
}

impl Memory {
    /// Whether `mac` belongs to a machine, a device or the controller.
    fn mac_known(&self, mac: Mac) -> bool {
        self.own.macs.contains(&mac) || self.mac_owner(mac).is_some()
    }

    /// The addresses of machines' and devices' records (`static` links, last leases, a
    /// device's addresses), and the controller's and its racks'.
    fn record_ips(&self) -> BTreeSet<IpAddr> {
        let mut ips: BTreeSet<IpAddr> = self.own.ips.clone();
        ips.extend(self.access.racks.values().filter_map(|r| r.address));
        for m in self.machines.values() {
            ips.extend(m.ip);
            if let Some(doc) = &m.network {
                ips.extend(
                    doc.interfaces
                        .iter()
                        .flat_map(|i| &i.links)
                        .filter_map(|l| l.ip),
                );
            }
        }
        for d in self.devices.values() {
            ips.extend(
                d.interfaces
                    .iter()
                    .flat_map(|i| &i.links)
                    .filter_map(|l| l.ip),
            );
        }
        ips
    }
}

impl State {
    /// Records the controller's own interface (its MAC and addresses): never unknown.
    pub(crate) fn own_interface(&self, mac: Option<Mac>, ips: &[IpAddr]) {
        let mut memory = self.lock();
        memory.own.macs.extend(mac);
        memory.own.ips.extend(ips.iter().copied());
    }

    /// Names the discovery of `mac` at (`vid`, `ip`) when it has no name yet (reverse DNS);
    /// the ticket when it changed.
    pub(crate) fn discovery_named(
        &self,
        vid: u16,
        ip: IpAddr,
        mac: Mac,
        name: &str,
    ) -> Result<Option<Ticket>, StateError> {
        let mut memory = self.lock();
        let Some(d) = memory.discoveries.get_mut(&(vid, ip)) else {
            return Ok(None);
        };
        if d.mac != mac || d.hostname.is_some() {
            return Ok(None);
        }
        d.hostname = Some(name.to_owned());
        let change = Change::PutDiscovery(Box::new(d.clone()));
        Ok(Some(self.commit(vec![change])?))
    }

    /// The discoveries, all or only the unknown ones.
    pub(crate) fn discoveries_filtered(&self, unknown: Option<Unknown>) -> Vec<Discovery> {
        let memory = self.lock();
        let Some(unknown) = unknown else {
            return memory.discoveries.values().cloned().collect();
        };
        let record_ips = memory.record_ips();
        // Addresses the address manager holds for a known MAC (or for no MAC: a reservation)
        // and leases bound to a known MAC.
        let held: BTreeSet<IpAddr> = self.ipam.read(|ipam| {
            ipam.records()
                .filter(|r| match r.kind {
                    AddressKind::Dhcp => {
                        r.lease
                            .as_ref()
                            .is_some_and(|l| l.state == LeaseState::Bound)
                            && r.mac.is_some_and(|m| memory.mac_known(m))
                    }
                    AddressKind::Discovered => false,
                    _ => r.mac.is_none_or(|m| memory.mac_known(m)),
                })
                .map(|r| r.ip)
                .collect()
        });
        let ip_unknown = |ip: &IpAddr| !record_ips.contains(ip) && !held.contains(ip);
        memory
            .discoveries
            .values()
            .filter(|d| {
                let mac = !memory.mac_known(d.mac);
                let ip = ip_unknown(&d.ip);
                match unknown {
                    Unknown::Mac => mac,
                    Unknown::Ip => ip,
                    Unknown::Both => mac && ip,
                }
            })
            .cloned()
            .collect()
    }

    /// Clears discoveries (`all` or `neighbours`: the records and the addresses only seen on
    /// the wire) or their host names (`mdns`), in one commit; how many changed.
    pub(crate) fn clear_discoveries(&self, what: Clear) -> Result<(usize, Ticket), StateError> {
        if !(what.all || what.neighbours || what.mdns) {
            return Err(StateError::Invalid(
                "say what to clear: all, neighbours or mdns".into(),
            ));
        }
        let mut memory = self.lock();
        let mut changes = Vec::new();
        let mut count = 0;
        if what.all || what.neighbours {
            let gone: Vec<Discovery> = std::mem::take(&mut memory.discoveries)
                .into_values()
                .collect();
            self.forget_seen(gone.iter().map(|d| (d.ip, d.mac)))?;
            count = gone.len();
            changes.extend(
                gone.into_iter()
                    .map(|d| Change::RemoveDiscovery(d.vid, d.ip)),
            );
        } else {
            for d in memory.discoveries.values_mut() {
                if d.hostname.take().is_some() {
                    count += 1;
                    changes.push(Change::PutDiscovery(Box::new(d.clone())));
                }
            }
        }
        let ticket = self.commit(changes)?;
        Ok((count, ticket))
    }

    /// Clears the discoveries of `mac` at `ip` (on every VLAN); how many.
    pub(crate) fn clear_discovery(
        &self,
        mac: Mac,
        ip: IpAddr,
    ) -> Result<(usize, Ticket), StateError> {
        let mut memory = self.lock();
        let keys: Vec<(u16, IpAddr)> = memory
            .discoveries
            .iter()
            .filter(|(_, d)| d.mac == mac && d.ip == ip)
            .map(|(k, _)| *k)
            .collect();
        if keys.is_empty() {
            return Err(StateError::NotFound(format!(
                "a discovery of {mac} at {ip}"
            )));
        }
        for k in &keys {
            memory.discoveries.remove(k);
        }
        self.forget_seen([(ip, mac)].into_iter())?;
        let ticket = self.commit(
            keys.iter()
                .map(|(v, ip)| Change::RemoveDiscovery(*v, *ip))
                .collect(),
        )?;
        Ok((keys.len(), ticket))
    }

    /// Forgets the addresses only seen on the wire for these (address, MAC) pairs.
    fn forget_seen(&self, seen: impl Iterator<Item = (IpAddr, Mac)>) -> Result<(), StateError> {
        let seen: Vec<(IpAddr, Mac)> = seen.collect();
        let ((), _) = self
            .ipam
            .submit(|ipam| {
                for (ip, mac) in seen {
                    if ipam.discovered(ip).is_some_and(|r| r.mac == Some(mac)) {
                        ipam.forget(ip);
                    }
                }
                Ok(())
            })
            .map_err(StateError::Ipam)?;
        Ok(())
    }

    /// Turns the discovery of `c.mac` at `c.ip` into a device, or into an interface of a
    /// device or a machine, in one commit; made by `owner` (a device's owner or an admin may
    /// add to it: `actor`).
    pub(crate) fn convert_discovery(
        &self,
        c: Convert,
        actor: &super::Actor,
        now: Timestamp,
    ) -> Result<(Converted, Ticket), StateError> {
        let mut memory = self.lock();
        let discovery = memory
            .discoveries
            .values()
            .find(|d| d.mac == c.mac && d.ip == c.ip)
            .cloned()
            .ok_or_else(|| StateError::NotFound(format!("a discovery of {} at {}", c.mac, c.ip)))?;
        let (ip, subnet) = match (c.ip_assignment, &c.subnet) {
            (IpAssignment::Static, Some(s)) => (None, Some(s.clone())),
            _ => (Some(discovery.ip), None),
        };
        let interface = NewInterface {
            name: c.interface.clone(),
            mac: c.mac,
            ip_assignment: c.ip_assignment,
            ip,
            subnet,
        };
        match c.kind {
            ConvertAs::Device => {
                if c.target.is_some() {
                    return Err(StateError::Invalid(
                        "target is for as=interface; a new device takes hostname and parent".into(),
                    ));
                }
                let name = c
                    .hostname
                    .clone()
                    .or_else(|| discovery.hostname.as_deref().map(host_label))
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| {
                        let b = c.mac.octets();
                        format!("device-{:02x}{:02x}{:02x}", b[3], b[4], b[5])
                    });
                let new = NewDevice {
                    name,
                    domain: c.domain.clone(),
                    zone: c.zone.clone(),
                    parent: c.parent.clone(),
                    description: String::new(),
                    interfaces: vec![interface],
                };
                let (device, ticket) =
                    self.create_device_locked(&mut memory, new, &actor.name, now)?;
                Ok((Converted::Device(device), ticket))
            }
            ConvertAs::Interface => {
                let target = c.target.clone().ok_or_else(|| {
                    StateError::Invalid(
                        "as=interface needs the target machine's MAC or device's name".into(),
                    )
                })?;
                if let Some(d) = memory.devices.get(&target) {
                    if !(actor.admin || d.owner.as_deref() == Some(actor.name.as_str())) {
                        return Err(StateError::Forbidden(format!(
                            "device {target} is not yours"
                        )));
                    }
                    let (device, ticket) = self.add_device_interface_locked(
                        &mut memory,
                        &target,
                        interface,
                        None,
                        now,
                    )?;
                    return Ok((Converted::Device(device), ticket));
                }
                let mac = target
                    .replace('-', ":")
                    .parse::<Mac>()
                    .ok()
                    .filter(|m| memory.machines.contains_key(m))
                    .ok_or_else(|| {
                        StateError::NotFound(format!("a machine or device {target:?}"))
                    })?;
                if !actor.admin {
                    return Err(StateError::Forbidden(
                        "only an admin adds interfaces to a machine from discoveries".into(),
                    ));
                }
                if let Some(holder) = memory.mac_owner(c.mac) {
                    return Err(StateError::Conflict(format!(
                        "MAC {} belongs to {holder} already",
                        c.mac
                    )));
                }
                drop(memory);
                self.discovery_to_machine(mac, &discovery, &c, now)
                    .map(|(m, t)| (Converted::Machine(Box::new(m)), t))
            }
        }
    }

    /// Adds the discovery's MAC to a machine's interfaces: a physical interface on the VLAN of
    /// the discovered address's subnet, with a `static` (held) or `dhcp` link.
    fn discovery_to_machine(
        &self,
        mac: Mac,
        discovery: &Discovery,
        c: &Convert,
        now: Timestamp,
    ) -> Result<(super::Machine, Ticket), StateError> {
        let mode = match c.ip_assignment {
            IpAssignment::Static => LinkMode::Static,
            IpAssignment::Dynamic => LinkMode::Dhcp,
            IpAssignment::External => {
                return Err(StateError::Invalid(
                    "a machine's interface is static or dynamic; external is for devices".into(),
                ));
            }
        };
        let mut doc = self.network(mac)?;
        let (cidr, vlan) = self.ipam.read(|ipam| {
            let topo = ipam.topology();
            let id = match &c.subnet {
                Some(s) => Some(super::devices::find_subnet(ipam, s)?.0),
                None => topo.subnet_containing(discovery.ip),
            };
            let wanted = id.and_then(|id| topo.subnet(id));
            let cidr = wanted.map(|s| s.cidr);
            let vlan = wanted.and_then(|s| {
                let v = topo.vlan(s.vlan)?;
                Some(VlanRef {
                    fabric: topo.fabric(v.fabric)?.name.clone(),
                    vid: v.vid.into(),
                })
            });
            Ok::<_, StateError>((cidr, vlan))
        })?;
        let Some(cidr) = cidr else {
            return Err(StateError::Invalid(format!(
                "{} lies in no subnet: name the subnet",
                discovery.ip
            )));
        };
        let taken: BTreeSet<&str> = doc.interfaces.iter().map(|i| i.name.as_str()).collect();
        let name = c.interface.clone().unwrap_or_else(|| {
            (0..)
                .map(|n| format!("eth{n}"))
                .find(|n| !taken.contains(n.as_str()))
                .unwrap_or_default()
        });
        let ip = (mode == LinkMode::Static && c.subnet.is_none()).then_some(discovery.ip);
        doc.interfaces.push(InterfaceDoc {
            name,
            kind: InterfaceType::Physical,
            mac: Some(c.mac),
            vlan,
            parents: Vec::new(),
            enabled: true,
            params: maas_net::doc::ParamsDoc::default(),
            links: vec![LinkDoc {
                mode,
                subnet: Some(cidr),
                ip,
            }],
        });
        self.set_network(mac, doc, now)
    }
}

/// The first label of a host name learnt on the wire (`printer.local` -> `printer`), made a
/// DNS label.
fn host_label(name: &str) -> String {
    name.split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(63)
        .collect()
}
