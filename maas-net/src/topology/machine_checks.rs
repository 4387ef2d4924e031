//! The checks a machine passes: MAAS's rules on interfaces, parents and links, against the rest
//! of the topology and the other machines.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::ip::Family;
use crate::machine::check::{check_domain, check_hostname, check_interface_name};
use crate::model::{MAX_MTU, MIN_MTU, UNTAGGED_VID};
use crate::{
    AddressOracle, Error, Interface, InterfaceKind, IpRangeKind, Kind, Link, LinkMode, Machine,
    MachineId, SubnetId, VlanId,
};

use super::{Topology, not_found};

impl Topology {
    // ---- checks --------------------------------------------------------------------------

    /// Checks a machine as it would be stored under `id` (the stored version, if any, does not
    /// count against it).
    pub(crate) fn check_machine(
        &self,
        id: MachineId,
        m: &Machine,
        oracle: &dyn AddressOracle,
    ) -> Result<(), Error> {
        check_hostname(&m.hostname)?;
        check_domain(&m.domain)?;
        if self.hostnames.get(&m.hostname).is_some_and(|o| *o != id) {
            return Err(Error::HostnameInUse {
                hostname: m.hostname.clone(),
            });
        }
        let mut by_name: HashMap<&str, &Interface> = HashMap::with_capacity(m.interfaces.len());
        for iface in &m.interfaces {
            check_interface_name(&iface.name)?;
            if by_name.insert(&iface.name, iface).is_some() {
                return Err(Error::InterfaceNameInUse {
                    machine: m.hostname.clone(),
                    name: iface.name.clone(),
                });
            }
        }
        let unknown = |name: &str, role: String| Error::UnknownInterface {
            machine: m.hostname.clone(),
            name: name.to_owned(),
            role,
        };
        // Children of each interface, to find members of bonds and bridges.
        let mut children: HashMap<&str, Vec<&Interface>> = HashMap::new();
        for iface in &m.interfaces {
            for parent in &iface.parents {
                if !by_name.contains_key(parent.as_str()) {
                    return Err(unknown(parent, format!("a parent of {}", iface.name)));
                }
                children.entry(parent).or_default().push(iface);
            }
        }
        check_no_cycle(m, &by_name)?;
        let mut macs = BTreeMap::new();
        let mut vlan_children = BTreeMap::new();
        for iface in &m.interfaces {
            self.check_interface(id, m, iface, &by_name, &children, &mut macs)?;
            if let (InterfaceKind::Vlan, Some(parent), Some(vlan)) =
                (&iface.kind, iface.parents.first(), iface.vlan)
                && let Some(existing) = vlan_children.insert((parent, vlan), &iface.name)
            {
                return Err(Error::DuplicateVlanInterface {
                    interface: iface.name.clone(),
                    parent: parent.clone(),
                    vid: self.vlan(vlan).map_or(0, |v| v.vid),
                    existing: existing.clone(),
                });
            }
        }
        let mut seen_ips: HashMap<IpAddr, &str> = HashMap::new();
        for iface in &m.interfaces {
            if let Some(bond) = children
                .get(iface.name.as_str())
                .and_then(|c| c.iter().find(|c| matches!(c.kind, InterfaceKind::Bond(_))))
                && !iface.links.is_empty()
            {
                return Err(Error::LinkInBond {
                    interface: iface.name.clone(),
                    bond: bond.name.clone(),
                });
            }
            self.check_links(id, iface, oracle, &mut seen_ips)?;
        }
        if let Some(boot) = &m.boot_interface
            && !by_name.contains_key(boot.as_str())
        {
            return Err(unknown(boot, "boot_interface".to_owned()));
        }
        for (family, name) in [
            (Family::V4, &m.gateway_link_ipv4),
            (Family::V6, &m.gateway_link_ipv6),
        ] {
            if let Some(name) = name {
                self.check_gateway_link(m, family, name)?;
            }
        }
        Ok(())
    }

    fn check_interface(
        &self,
        id: MachineId,
        m: &Machine,
        iface: &Interface,
        by_name: &HashMap<&str, &Interface>,
        children: &HashMap<&str, Vec<&Interface>>,
        macs: &mut BTreeMap<crate::Mac, String>,
    ) -> Result<(), Error> {
        let name = &iface.name;
        let rule = |rule: &'static str| Error::Parents {
            rule,
            interface: name.clone(),
        };
        let on_vlan = |rule: &'static str, vlan: Option<VlanId>| Error::InterfaceVlan {
            rule,
            interface: name.clone(),
            vlan: vlan.map_or_else(|| "no VLAN".to_owned(), |v| self.vlan_label(v)),
        };
        if let Some(vlan) = iface.vlan
            && !self.vlans.contains_key(&vlan)
        {
            return Err(not_found(Kind::Vlan, vlan.get()));
        }
        if let Some(mtu) = iface.mtu
            && !(MIN_MTU..=MAX_MTU).contains(&mtu)
        {
            return Err(Error::InvalidMtu { mtu: mtu.into() });
        }
        let parents: Vec<&Interface> = iface.parents.iter().map(|p| by_name[p.as_str()]).collect();
        let mut distinct = BTreeSet::new();
        if !iface.parents.iter().all(|p| distinct.insert(p)) {
            return Err(rule("An interface cannot list a parent twice."));
        }
        // Other children of a parent that keep it from joining this interface.
        let taken = |allow_vlan_children: bool| -> Vec<String> {
            let mut names: Vec<String> = parents
                .iter()
                .filter(|p| {
                    children.get(p.name.as_str()).is_some_and(|c| {
                        c.iter().any(|c| {
                            c.name != *name
                                && !(allow_vlan_children && matches!(c.kind, InterfaceKind::Vlan))
                        })
                    })
                })
                .map(|p| p.name.clone())
                .collect();
            names.sort();
            names
        };
        match &iface.kind {
            InterfaceKind::Physical => {
                if !parents.is_empty() {
                    return Err(rule("A physical interface cannot have parents."));
                }
                let mac = iface.mac.ok_or_else(|| Error::MacRequired {
                    interface: name.clone(),
                })?;
                if let Some(other) = macs.insert(mac, name.clone()) {
                    return Err(Error::MacInUse {
                        mac,
                        interface: name.clone(),
                        by: format!("{other} on {}", m.hostname),
                    });
                }
                if let Some(other) = self.machine_macs.get(&mac).filter(|o| **o != id) {
                    let holder = &self.machines[other];
                    let by = holder
                        .interfaces
                        .iter()
                        .find(|i| i.mac == Some(mac) && matches!(i.kind, InterfaceKind::Physical))
                        .map_or_else(String::new, |i| i.name.clone());
                    return Err(Error::MacInUse {
                        mac,
                        interface: name.clone(),
                        by: format!("{by} on {}", holder.hostname),
                    });
                }
            }
            InterfaceKind::Vlan => {
                let [parent] = parents.as_slice() else {
                    return Err(rule("A VLAN interface must have exactly one parent."));
                };
                if matches!(parent.kind, InterfaceKind::Vlan) {
                    return Err(rule(
                        "A VLAN interface can't have another VLAN interface as parent.",
                    ));
                }
                let in_bond = children
                    .get(parent.name.as_str())
                    .is_some_and(|c| c.iter().any(|c| matches!(c.kind, InterfaceKind::Bond(_))));
                if in_bond {
                    return Err(rule(
                        "A VLAN interface can't have a parent that is already in a bond.",
                    ));
                }
                let Some(vlan) = iface.vlan.and_then(|v| self.vlan(v)) else {
                    return Err(on_vlan(
                        "A VLAN interface must be connected to a tagged VLAN.",
                        None,
                    ));
                };
                if vlan.vid == UNTAGGED_VID {
                    return Err(on_vlan(
                        "A VLAN interface can only belong to a tagged VLAN.",
                        iface.vlan,
                    ));
                }
                let parent_fabric = parent.vlan.and_then(|v| self.vlan(v)).map(|v| v.fabric);
                if parent_fabric != Some(vlan.fabric) {
                    return Err(on_vlan(
                        "A VLAN interface can only belong to a tagged VLAN on the same fabric \
                         as its parent interface.",
                        iface.vlan,
                    ));
                }
            }
            InterfaceKind::Bond(_) => {
                if parents.is_empty() {
                    return Err(rule("A bond interface must have one or more parents."));
                }
                if parents
                    .iter()
                    .any(|p| !matches!(p.kind, InterfaceKind::Physical))
                {
                    return Err(rule("Only physical interfaces can be bonded."));
                }
                let in_use = taken(false);
                if !in_use.is_empty() {
                    return Err(Error::ParentsInUse {
                        interface: name.clone(),
                        parents: in_use,
                    });
                }
                if parents.iter().any(|p| p.vlan != iface.vlan) {
                    return Err(on_vlan(
                        "All parents must belong to the same VLAN.",
                        iface.vlan,
                    ));
                }
            }
            InterfaceKind::Bridge(_) => {
                if parents.is_empty() {
                    return Err(rule("A bridge interface must have at least one parent."));
                }
                if parents
                    .iter()
                    .any(|p| matches!(p.kind, InterfaceKind::Bridge(_)))
                {
                    return Err(rule(
                        "A bridge interface can't have another bridge interface as parent.",
                    ));
                }
                let in_use = taken(true);
                if !in_use.is_empty() {
                    return Err(Error::ParentsInUse {
                        interface: name.clone(),
                        parents: in_use,
                    });
                }
            }
        }
        Ok(())
    }

    fn check_links<'m>(
        &self,
        id: MachineId,
        iface: &'m Interface,
        oracle: &dyn AddressOracle,
        seen_ips: &mut HashMap<IpAddr, &'m str>,
    ) -> Result<(), Error> {
        let name = &iface.name;
        let link_error = |rule: &'static str, link: &Link| Error::Link {
            rule,
            interface: name.clone(),
            detail: self.describe_link(link),
        };
        let dhcp = iface
            .links
            .iter()
            .filter(|l| l.mode == LinkMode::Dhcp)
            .nth(1);
        if let Some(second) = dhcp {
            return Err(link_error("Interface is already set to DHCP.", second));
        }
        if iface.links.len() > 1
            && let Some(up) = iface.links.iter().find(|l| l.mode == LinkMode::LinkUp)
        {
            return Err(link_error(
                "Cannot configure interface to link up (with no IP address) while other links \
                 are already configured.",
                up,
            ));
        }
        for link in &iface.links {
            if link.subnet.is_none() && link.is_addressed() {
                return Err(link_error("subnet: This field is required.", link));
            }
            if link.ip.is_some() && !link.is_addressed() {
                return Err(link_error(
                    "ip_address: Only static and auto links have an IP address.",
                    link,
                ));
            }
            let Some(subnet_id) = link.subnet else {
                continue;
            };
            let subnet = self
                .subnets
                .get(&subnet_id)
                .ok_or(not_found(Kind::Subnet, subnet_id.get()))?;
            if iface.vlan != Some(subnet.vlan) {
                return Err(Error::SubnetNotOnVlan {
                    interface: name.clone(),
                    cidr: subnet.cidr,
                    subnet_vlan: self.vlan_label(subnet.vlan),
                    vlan: iface
                        .vlan
                        .map_or_else(|| "no VLAN".to_owned(), |v| self.vlan_label(v)),
                });
            }
            let Some(ip) = link.ip else {
                continue;
            };
            if !subnet.cidr.contains(&ip) {
                return Err(Error::IpOutsideSubnet {
                    interface: name.clone(),
                    ip,
                    cidr: subnet.cidr,
                });
            }
            if let Some((_, range)) = self
                .ip_ranges_in(subnet_id)
                .find(|(_, r)| r.kind == IpRangeKind::Dynamic && r.contains(ip))
            {
                return Err(Error::IpInDynamicRange {
                    interface: name.clone(),
                    ip,
                    start: range.start,
                    end: range.end,
                });
            }
            let in_use = |by: String| Error::IpInUse {
                interface: name.clone(),
                ip,
                by,
            };
            if let Some(other) = seen_ips.insert(ip, name) {
                return Err(in_use(other.to_owned()));
            }
            match self.machine_ips.get(&ip) {
                Some(holder) if *holder != id => {
                    let holder = &self.machines[holder];
                    let by = holder
                        .interfaces
                        .iter()
                        .find(|i| i.links.iter().any(|l| l.ip == Some(ip)))
                        .map_or_else(String::new, |i| i.name.clone());
                    return Err(in_use(format!("{by} on {}", holder.hostname)));
                }
                Some(_) => {}
                None if oracle.in_use(subnet_id, ip) => {
                    return Err(in_use("the address manager".to_owned()));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The default-gateway link of a family: the named interface's first static or auto link
    /// on a subnet of that family, whose subnet must have a gateway.
    pub(crate) fn check_gateway_link(
        &self,
        m: &Machine,
        family: Family,
        name: &str,
    ) -> Result<SubnetId, Error> {
        let number = match family {
            Family::V4 => 4,
            Family::V6 => 6,
        };
        let fail = |reason: String| Error::GatewayLink {
            family: number,
            interface: name.to_owned(),
            reason,
        };
        let iface = m
            .interface(name)
            .ok_or_else(|| fail(format!("Node {} has no such interface.", m.hostname)))?;
        let candidates: Vec<(SubnetId, IpNet, Option<IpAddr>)> = iface
            .links
            .iter()
            .filter(|l| l.is_addressed())
            .filter_map(|l| {
                let id = l.subnet?;
                let s = self.subnets.get(&id)?;
                (Family::of_net(s.cidr) == family).then_some((id, s.cidr, s.gateway_ip))
            })
            .collect();
        if let Some((id, ..)) = candidates.iter().find(|(_, _, gw)| gw.is_some()) {
            return Ok(*id);
        }
        match candidates.first() {
            Some((_, cidr, _)) => Err(fail(format!(
                "Cannot set as default gateway because subnet {cidr} doesn't provide a gateway \
                 IP address."
            ))),
            None => Err(fail(format!(
                "{name} has no static or auto IPv{number} link to carry the default gateway."
            ))),
        }
    }

    fn describe_link(&self, link: &Link) -> String {
        let subnet = link
            .subnet
            .and_then(|s| self.subnets.get(&s))
            .map_or_else(|| "no subnet".to_owned(), |s| s.cidr.to_string());
        match link.ip {
            Some(ip) => format!("{} link to {subnet} with {ip}", link.mode),
            None => format!("{} link to {subnet}", link.mode),
        }
    }
}

/// Parents must not lead back to the interface itself.
fn check_no_cycle(m: &Machine, by_name: &HashMap<&str, &Interface>) -> Result<(), Error> {
    // Depth-first with three colours: 0 unseen, 1 on the current path, 2 done.
    let mut colour: HashMap<&str, u8> = HashMap::with_capacity(m.interfaces.len());
    for iface in &m.interfaces {
        let mut stack: Vec<(&str, usize)> = vec![(iface.name.as_str(), 0)];
        while let Some((name, next)) = stack.pop() {
            if next == 0 {
                match colour.get(name) {
                    Some(2) => continue,
                    Some(1) => {
                        return Err(Error::ParentCycle {
                            interface: name.to_owned(),
                        });
                    }
                    _ => {
                        colour.insert(name, 1);
                    }
                }
            }
            let parents = &by_name[name].parents;
            if let Some(parent) = parents.get(next) {
                stack.push((name, next + 1));
                if colour.get(parent.as_str()) == Some(&1) {
                    return Err(Error::ParentCycle {
                        interface: parent.clone(),
                    });
                }
                stack.push((parent.as_str(), 0));
            } else {
                colour.insert(name, 2);
            }
        }
    }
    Ok(())
}
