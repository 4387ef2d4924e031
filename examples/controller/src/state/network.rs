//! A machine's interfaces in the maas-net model: made from what commissioning found, changed
//! through the API, checked against the network model and the address manager, and rendered
//! as the network configuration of the deployed system.
//!
//! The controller keeps each machine's interfaces as a maas-net [`MachineDoc`] in the
//! machine's record (VLANs by fabric name and VID, subnets by CIDR, so a changed network
//! model never leaves a dangling id). Checking or rendering one builds the machine in a copy
//! of the network model, where maas-net applies MAAS's rules; addresses held in the address
//! manager by anything else count as taken there. A link's address is held in the address
//! manager as MAAS holds it: a `static` link's as STICKY from the moment it is set, an
//! `auto` link's as AUTO from deployment until release.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use maas_ipam::{AddressKind, AssignOptions, Ipam, Requested, Ticket};
use maas_net::doc::{InterfaceDoc, InterfaceType, LinkDoc, MachineDoc, VlanRef};
use maas_net::netplan::{self, Format, RenderOptions};
use maas_net::{LinkMode, Mac, MachineId, Timestamp, Topology};

use super::records::{Hardware, Machine, Status};
use super::store::Change;
use super::{State, StateError, event, push_event};

/// The interfaces a machine has before commissioning: its boot MAC, as `eth0`, on the VLAN of
/// the subnet its last lease came from, with `auto` links to that VLAN's subnets.
pub(crate) fn default_network(topo: &Topology, machine: &Machine) -> MachineDoc {
    let hardware = Hardware {
        interfaces: vec![super::records::NicSeen {
            name: "eth0".into(),
            mac: machine.mac,
            link: true,
            speed_mbps: None,
        }],
        ..Hardware::default()
    };
    commissioned_network(topo, machine, &hardware, None)
}

/// The interfaces a commissioning found, as MAAS sets them up: every network card a physical
/// interface (by the name and MAC the environment saw); the boot interface (the MAC the
/// machine booted from) on the VLAN its lease came from, with an `auto` link to each subnet
/// of that VLAN (IPv4 first); the others on no VLAN until someone connects them.
///
/// Re-commissioning keeps what was configured on the cards that are still there (VLAN, links,
/// parameters, and the VLAN interfaces, bonds and bridges over them), under the names the
/// environment saw now; if that no longer makes a valid machine, the found interfaces
/// replace it.
pub(crate) fn commissioned_network(
    topo: &Topology,
    machine: &Machine,
    hardware: &Hardware,
    previous: Option<&MachineDoc>,
) -> MachineDoc {
    let fresh = fresh_network(topo, machine, hardware);
    let Some(previous) = previous else {
        return fresh;
    };
    let merged = merge(previous, &fresh);
    if check(topo, &merged, machine.mac, None).is_ok() {
        merged
    } else {
        fresh
    }
}

fn fresh_network(topo: &Topology, machine: &Machine, hardware: &Hardware) -> MachineDoc {
    let boot_vlan = machine
        .ip
        .and_then(|ip| topo.subnet_containing(ip))
        .and_then(|s| topo.subnet(s))
        .map(|s| s.vlan);
    let mut interfaces = Vec::new();
    let mut names = BTreeSet::new();
    let mut nics = hardware.interfaces.clone();
    if !nics.iter().any(|n| n.mac == machine.mac) {
        // The agent did not list the card the machine booted from: keep it anyway.
        nics.insert(
            0,
            super::records::NicSeen {
                name: String::new(),
                mac: machine.mac,
                link: true,
                speed_mbps: None,
            },
        );
    }
    let mut boot_name = None;
    for nic in &nics {
        let mut name = nic.name.clone();
        if name.is_empty() || !names.insert(name.clone()) {
            name = (0..)
                .map(|n| format!("eth{n}"))
                .find(|n| !names.contains(n) && !nics.iter().any(|x| &x.name == n))
                .unwrap_or_default();
            names.insert(name.clone());
        }
        let is_boot = nic.mac == machine.mac;
        let vlan = if is_boot { boot_vlan } else { None };
        let mut links: Vec<LinkDoc> = Vec::new();
        if let Some(vlan) = vlan {
            let mut subnets: Vec<_> = topo.subnets_on(vlan).map(|(_, s)| s.cidr).collect();
            subnets.sort_by_key(|c| (c.addr().is_ipv6(), *c));
            links = subnets
                .into_iter()
                .map(|cidr| LinkDoc {
                    mode: LinkMode::Auto,
                    subnet: Some(cidr),
                    ip: None,
                })
                .collect();
        }
        if is_boot {
            boot_name = Some(name.clone());
        }
        interfaces.push(InterfaceDoc {
            name,
            kind: InterfaceType::Physical,
            mac: Some(nic.mac),
            vlan: vlan.and_then(|v| vlan_ref(topo, v)),
            parents: Vec::new(),
            enabled: true,
            params: maas_net::doc::ParamsDoc::default(),
            links,
        });
    }
    MachineDoc {
        id: None,
        hostname: machine.hostname.clone(),
        domain: maas_net::DEFAULT_DOMAIN.to_owned(),
        boot_interface: boot_name,
        gateway_link_ipv4: None,
        gateway_link_ipv6: None,
        interfaces,
    }
}

fn vlan_ref(topo: &Topology, vlan: maas_net::VlanId) -> Option<VlanRef> {
    let v = topo.vlan(vlan)?;
    Some(VlanRef {
        fabric: topo.fabric(v.fabric)?.name.clone(),
        vid: v.vid.into(),
    })
}

/// `previous` with its physical interfaces matched to `fresh`'s by MAC: kept (renamed as the
/// environment names them now), dropped when gone, and the new ones added.
fn merge(previous: &MachineDoc, fresh: &MachineDoc) -> MachineDoc {
    let by_mac: BTreeMap<Mac, &InterfaceDoc> = fresh
        .interfaces
        .iter()
        .filter_map(|i| Some((i.mac?, i)))
        .collect();
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    let mut kept = BTreeSet::new();
    for iface in &previous.interfaces {
        if iface.kind != InterfaceType::Physical {
            continue;
        }
        let Some(now) = iface.mac.and_then(|m| by_mac.get(&m)) else {
            continue;
        };
        renamed.insert(iface.name.clone(), now.name.clone());
        kept.insert(now.name.clone());
        let mut links = iface.links.clone();
        for l in &mut links {
            if l.mode == LinkMode::Auto {
                l.ip = None;
            }
        }
        out.push(InterfaceDoc {
            name: now.name.clone(),
            links,
            ..iface.clone()
        });
    }
    for iface in &previous.interfaces {
        if iface.kind == InterfaceType::Physical {
            continue;
        }
        let parents: Option<Vec<String>> = iface
            .parents
            .iter()
            .map(|p| renamed.get(p).cloned())
            .collect();
        let Some(parents) = parents else { continue };
        renamed.insert(iface.name.clone(), iface.name.clone());
        out.push(InterfaceDoc {
            parents,
            ..iface.clone()
        });
    }
    out.extend(
        fresh
            .interfaces
            .iter()
            .filter(|i| !kept.contains(&i.name))
            .cloned(),
    );
    let rename = |n: &Option<String>| n.as_ref().and_then(|n| renamed.get(n).cloned());
    MachineDoc {
        id: None,
        hostname: fresh.hostname.clone(),
        domain: previous.domain.clone(),
        boot_interface: fresh.boot_interface.clone(),
        gateway_link_ipv4: rename(&previous.gateway_link_ipv4),
        gateway_link_ipv6: rename(&previous.gateway_link_ipv6),
        interfaces: out,
    }
}

/// Builds `doc` in a copy of `topo` with MAAS's rules; addresses `ipam` holds for anything
/// but `mac` count as taken. The copy and the machine's id there, or every problem.
fn check(
    topo: &Topology,
    doc: &MachineDoc,
    mac: Mac,
    ipam: Option<&Ipam>,
) -> Result<(Topology, MachineId), StateError> {
    let machine = topo.machine_from_doc(doc).map_err(|e| {
        StateError::Invalid(
            e.problems
                .iter()
                .map(|p| format!("{}: {}", p.location, p.error))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let mut copy = topo.clone();
    let taken = |_: maas_net::SubnetId, ip: IpAddr| {
        ipam.and_then(|i| i.record(ip))
            .is_some_and(|r| r.mac != Some(mac))
    };
    let id = copy
        .create_machine_with(machine, &taken)
        .map_err(|e| StateError::Invalid(e.to_string()))?;
    Ok((copy, id))
}

/// The addresses of a document's links of one mode.
fn addresses(doc: &MachineDoc, mode: LinkMode) -> BTreeSet<IpAddr> {
    doc.interfaces
        .iter()
        .flat_map(|i| &i.links)
        .filter(|l| l.mode == mode)
        .filter_map(|l| l.ip)
        .collect()
}

impl State {
    /// A machine's interfaces: as recorded, or (before commissioning) the default ones.
    pub(crate) fn network(&self, mac: Mac) -> Result<MachineDoc, StateError> {
        let machine = self.machine(mac).ok_or(StateError::NoMachine(mac))?;
        Ok(match machine.network {
            Some(doc) => doc,
            None => self
                .ipam
                .read(|ipam| default_network(ipam.topology(), &machine)),
        })
    }

    /// Replaces a machine's interfaces with `doc` (its host name is the machine's), checked by
    /// MAAS's rules against the network model and the addresses in use. `static` links get
    /// their addresses held as STICKY (the next free one when none is given); addresses of
    /// `static` links that are gone are freed. Refused while the machine is commissioning or
    /// deployed (or on its way there), as MAAS refuses it.
    pub(crate) fn set_network(
        &self,
        mac: Mac,
        mut doc: MachineDoc,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        let mut memory = self.lock();
        let machine = memory.machine(mac)?.clone();
        if !network_editable(machine.status) {
            return Err(StateError::Conflict(format!(
                "machine {mac} is {}: its interfaces can be changed when it is not \
                 commissioning or deployed",
                machine.status.as_str()
            )));
        }
        if let Some((mac, device)) = doc
            .interfaces
            .iter()
            .filter_map(|i| i.mac)
            .find_map(|m| memory.device_with_mac(m).map(|d| (m, d)))
        {
            return Err(StateError::Conflict(format!(
                "MAC {mac} belongs to device {device} already"
            )));
        }
        doc.id = None;
        doc.hostname.clone_from(&machine.hostname);
        for link in doc.interfaces.iter_mut().flat_map(|i| &mut i.links) {
            if link.mode != LinkMode::Static {
                // Only deployment gives an `auto` link its address.
                link.ip = None;
            }
        }
        let before = machine
            .network
            .as_ref()
            .map_or_else(BTreeSet::new, |d| addresses(d, LinkMode::Static));
        // Check and choose in one step on the address manager, so that nothing takes an
        // address between the check and the hold.
        let (checked, ticket) = self
            .ipam
            .submit(|ipam| {
                let filled = match check(ipam.topology(), &doc, mac, Some(ipam)) {
                    Ok((topo, id)) => match topo.machine(id) {
                        Some(m) => topo.doc_of_machine(m),
                        None => return Ok(Err(StateError::NoMachine(mac))),
                    },
                    Err(e) => return Ok(Err(e)),
                };
                let wanted = addresses(&filled, LinkMode::Static);
                let mut held = Vec::new();
                for ip in wanted.difference(&before) {
                    let options = AssignOptions {
                        mac: Some(mac),
                        owner: Some(machine.hostname.clone()),
                        ..AssignOptions::default()
                    };
                    match ipam.record(*ip) {
                        Some(r) if r.mac == Some(mac) && r.kind == AddressKind::Sticky => {}
                        _ => {
                            if let Err(e) = ipam.assign(*ip, Requested::Sticky, &options, now) {
                                for ip in held {
                                    let _ = ipam.release(ip);
                                }
                                return Ok(Err(StateError::Invalid(e.to_string())));
                            }
                            held.push(*ip);
                        }
                    }
                }
                for ip in before.difference(&wanted) {
                    if ipam.record(*ip).is_some_and(|r| r.mac == Some(mac)) {
                        let _ = ipam.release(*ip);
                    }
                }
                Ok(Ok(filled))
            })
            .map_err(StateError::Ipam)?;
        let filled = checked?;
        let entry = memory.machine_mut(mac)?;
        entry.network = Some(filled);
        let out = entry.clone();
        let e = event(mac, now, "interfaces_changed", None);
        push_event(&mut memory, e.clone());
        // One commit covers the address holds (queued above) and the record.
        let _ = ticket;
        let ticket = self.commit(vec![
            Change::PutMachine(Box::new(out.clone())),
            Change::AddEvent(e),
        ])?;
        Ok((out, ticket))
    }

    /// A machine's network configuration as the deployed system gets it, in either form.
    pub(crate) fn render_network(
        &self,
        mac: Mac,
        options: &RenderOptions,
        format: Format,
    ) -> Result<String, StateError> {
        let doc = self.network(mac)?;
        self.ipam.read(|ipam| {
            let (topo, id) = check(ipam.topology(), &doc, mac, Some(ipam))?;
            netplan::render(&topo, id, options, format)
                .map_err(|e| StateError::Invalid(e.to_string()))
        })
    }
}

/// Whether a machine in `status` may have its interfaces changed.
fn network_editable(status: Status) -> bool {
    !matches!(
        status,
        Status::Commissioning | Status::Deploying | Status::Deployed | Status::Releasing
    )
}
