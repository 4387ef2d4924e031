//! Machines, their interfaces and links, checked against MAAS's rules and the rest of the
//! topology.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::ip::{self, Family};
use crate::{
    AddressOracle, Error, InterfaceKind, IpRangeKind, Kind, LinkMode, Machine, MachineId, NoOracle,
    SubnetId, VlanId,
};

use super::{Topology, not_found};

/// How far the search for a free address walks past taken addresses before it gives up.
const FREE_SEARCH_BUDGET: u32 = 1 << 16;

impl Topology {
    // ---- reading -------------------------------------------------------------------------

    /// The machine with this id.
    pub fn machine(&self, id: MachineId) -> Option<&Machine> {
        self.machines.get(&id)
    }

    /// All machines, by id.
    pub fn machines(&self) -> impl Iterator<Item = (MachineId, &Machine)> + '_ {
        self.machines.iter().map(|(id, m)| (*id, m))
    }

    /// The machine with this host name.
    pub fn machine_by_hostname(&self, hostname: &str) -> Option<MachineId> {
        self.hostnames.get(hostname).copied()
    }

    /// The machine whose link holds `ip`, if any.
    pub fn machine_holding(&self, ip: IpAddr) -> Option<MachineId> {
        self.machine_ips.get(&ip).copied()
    }

    /// The addresses machines' links hold in a subnet, in order.
    pub fn machine_addresses_in(&self, subnet: SubnetId) -> Vec<IpAddr> {
        let Some(subnet) = self.subnets.get(&subnet) else {
            return Vec::new();
        };
        let (first, last) = (subnet.cidr.network(), subnet.cidr.broadcast());
        self.machine_ips
            .range(first..=last)
            .map(|(ip, _)| *ip)
            .collect()
    }

    // ---- changing ------------------------------------------------------------------------

    /// Add a machine. Every rule MAAS enforces on interfaces and links is checked (see
    /// [`create_machine_with`](Self::create_machine_with)); a `static` link without an address
    /// gets the subnet's next free one.
    pub fn create_machine(&mut self, machine: Machine) -> Result<MachineId, Error> {
        self.insert_machine(None, machine, &NoOracle)
    }

    /// Add a machine, treating the addresses `oracle` reports in use as taken.
    ///
    /// Checked: host name (a DNS label, unique) and domain; interface names (MAAS's
    /// `^[\w\-_.:]{1,15}$`, unique in the machine); a physical interface has a MAC address no
    /// other physical interface has and no parents; a VLAN interface has exactly one parent,
    /// not a VLAN interface nor a bond member, and a tagged VLAN on its parent's fabric, at most
    /// one per parent and VLAN; a bond bonds physical interfaces on its own VLAN; a bridge
    /// bridges no bridge; no interface is in two bonds or bridges; parents form no cycle; MTU
    /// 552 to 65535; a link's subnet is on its interface's VLAN; bond members have no links;
    /// one DHCP link per interface and `link_up` alone; a static address lies in its subnet,
    /// outside its dynamic ranges, and is free (not held by another link, nor by `oracle`); the
    /// boot interface and the default-gateway links name interfaces with a suitable link on a
    /// subnet that has a gateway.
    pub fn create_machine_with(
        &mut self,
        machine: Machine,
        oracle: &dyn AddressOracle,
    ) -> Result<MachineId, Error> {
        self.insert_machine(None, machine, oracle)
    }

    pub(crate) fn insert_machine(
        &mut self,
        id: Option<MachineId>,
        mut machine: Machine,
        oracle: &dyn AddressOracle,
    ) -> Result<MachineId, Error> {
        let id = id.unwrap_or(MachineId::new(self.next.machine));
        if self.machines.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::Machine,
                id: id.get(),
            });
        }
        self.check_machine(id, &machine, oracle)?;
        self.fill_addresses(id, &mut machine, LinkMode::Static, oracle)?;
        self.put_machine(id, machine);
        self.next.machine = self.next.machine.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change a machine; the whole machine is checked again, as on creation.
    pub fn update_machine(
        &mut self,
        id: MachineId,
        change: impl FnOnce(&mut Machine),
    ) -> Result<(), Error> {
        self.update_machine_with(id, change, &NoOracle)
    }

    /// Change a machine, treating the addresses `oracle` reports in use as taken. The oracle
    /// is asked only about addresses the machine does not already hold.
    pub fn update_machine_with(
        &mut self,
        id: MachineId,
        change: impl FnOnce(&mut Machine),
        oracle: &dyn AddressOracle,
    ) -> Result<(), Error> {
        let mut machine = self
            .machines
            .get(&id)
            .ok_or(not_found(Kind::Machine, id.get()))?
            .clone();
        change(&mut machine);
        self.check_machine(id, &machine, oracle)?;
        self.fill_addresses(id, &mut machine, LinkMode::Static, oracle)?;
        self.put_machine(id, machine);
        Ok(())
    }

    /// Give every `auto` link of a machine that has no address yet the next free address of
    /// its subnet, as MAAS does when a machine is deployed. Nothing changes on error.
    pub fn assign_auto_addresses(
        &mut self,
        id: MachineId,
        oracle: &dyn AddressOracle,
    ) -> Result<(), Error> {
        let mut machine = self
            .machines
            .get(&id)
            .ok_or(not_found(Kind::Machine, id.get()))?
            .clone();
        self.fill_addresses(id, &mut machine, LinkMode::Auto, oracle)?;
        self.put_machine(id, machine);
        Ok(())
    }

    /// Delete a machine, freeing its addresses.
    pub fn delete_machine(&mut self, id: MachineId) -> Result<Machine, Error> {
        self.take_machine(id)
            .ok_or(not_found(Kind::Machine, id.get()))
    }

    // ---- keeping machines consistent with the rest ---------------------------------------

    /// The interfaces connected to any of `vlans`, as `eth0 on node1`.
    pub(crate) fn interfaces_on(&self, vlans: &[VlanId]) -> Vec<String> {
        self.machines
            .values()
            .flat_map(|m| {
                m.interfaces
                    .iter()
                    .filter(|i| i.vlan.is_some_and(|v| vlans.contains(&v)))
                    .map(move |i| format!("{} on {}", i.name, m.hostname))
            })
            .collect()
    }

    /// The machines with an interface on `vlan` or a link to `subnet`.
    pub(crate) fn machines_touching(
        &self,
        vlan: Option<VlanId>,
        subnet: Option<SubnetId>,
    ) -> Vec<MachineId> {
        self.machines
            .iter()
            .filter(|(_, m)| {
                m.interfaces.iter().any(|i| {
                    (vlan.is_some() && i.vlan == vlan)
                        || (subnet.is_some() && i.links.iter().any(|l| l.subnet == subnet))
                })
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Checks the given machines again (after a change to what they refer to); the first
    /// that no longer passes is named in the error.
    pub(crate) fn recheck_machines(&self, ids: &[MachineId]) -> Result<(), Error> {
        for id in ids {
            if let Some(machine) = self.machines.get(id) {
                self.check_machine(*id, machine, &NoOracle)
                    .map_err(|reason| Error::WouldInvalidate {
                        what: format!("machine {}", machine.hostname),
                        reason: Box::new(reason),
                    })?;
            }
        }
        Ok(())
    }

    /// What MAAS does to interfaces when a VLAN is deleted: VLAN interfaces on it go (with
    /// bonds and bridges left without parents), the others move to the fabric's default VLAN
    /// as its subnets do.
    pub(crate) fn detach_vlan(&mut self, vlan: VlanId, default: VlanId) {
        for id in self.machines_touching(Some(vlan), None) {
            let Some(mut machine) = self.take_machine(id) else {
                continue;
            };
            let mut gone: BTreeSet<String> = machine
                .interfaces
                .iter()
                .filter(|i| i.vlan == Some(vlan) && matches!(i.kind, InterfaceKind::Vlan))
                .map(|i| i.name.clone())
                .collect();
            loop {
                machine.interfaces.retain(|i| !gone.contains(&i.name));
                let mut orphaned = false;
                for iface in &mut machine.interfaces {
                    let had = iface.parents.len();
                    iface.parents.retain(|p| !gone.contains(p));
                    if had > 0 && iface.parents.is_empty() {
                        gone.insert(iface.name.clone());
                        orphaned = true;
                    }
                }
                if !orphaned {
                    break;
                }
            }
            for iface in &mut machine.interfaces {
                if iface.vlan == Some(vlan) {
                    iface.vlan = Some(default);
                }
            }
            forget_interfaces(&mut machine, &gone);
            self.put_machine(id, machine);
        }
    }

    /// What MAAS does to links when a subnet is deleted: they go with it.
    pub(crate) fn unlink_subnet(&mut self, subnet: SubnetId) {
        for id in self.machines_touching(None, Some(subnet)) {
            let Some(mut machine) = self.take_machine(id) else {
                continue;
            };
            for iface in &mut machine.interfaces {
                iface.links.retain(|l| l.subnet != Some(subnet));
            }
            // A default-gateway link left without a suitable link is cleared.
            for family in [Family::V4, Family::V6] {
                let slot = match family {
                    Family::V4 => &machine.gateway_link_ipv4,
                    Family::V6 => &machine.gateway_link_ipv6,
                };
                let keep = slot
                    .as_ref()
                    .is_some_and(|name| self.check_gateway_link(&machine, family, name).is_ok());
                if !keep {
                    match family {
                        Family::V4 => machine.gateway_link_ipv4 = None,
                        Family::V6 => machine.gateway_link_ipv6 = None,
                    }
                }
            }
            self.put_machine(id, machine);
        }
    }

    // ---- storage -------------------------------------------------------------------------

    fn put_machine(&mut self, id: MachineId, machine: Machine) {
        self.take_machine(id);
        self.hostnames.insert(machine.hostname.clone(), id);
        for (_, ip) in machine.addresses() {
            self.machine_ips.insert(ip, id);
        }
        for iface in &machine.interfaces {
            if let (InterfaceKind::Physical, Some(mac)) = (&iface.kind, iface.mac) {
                self.machine_macs.insert(mac, id);
            }
        }
        self.machines.insert(id, machine);
    }

    fn take_machine(&mut self, id: MachineId) -> Option<Machine> {
        let machine = self.machines.remove(&id)?;
        self.hostnames.remove(&machine.hostname);
        for (_, ip) in machine.addresses() {
            self.machine_ips.remove(&ip);
        }
        for iface in &machine.interfaces {
            if let (InterfaceKind::Physical, Some(mac)) = (&iface.kind, iface.mac) {
                self.machine_macs.remove(&mac);
            }
        }
        Some(machine)
    }

    // ---- addresses -----------------------------------------------------------------------

    /// Gives every link of `mode` without an address the next free one of its subnet.
    fn fill_addresses(
        &self,
        id: MachineId,
        machine: &mut Machine,
        mode: LinkMode,
        oracle: &dyn AddressOracle,
    ) -> Result<(), Error> {
        let mut taken: BTreeSet<IpAddr> = machine.addresses().map(|(_, ip)| ip).collect();
        for iface in &mut machine.interfaces {
            for link in &mut iface.links {
                if link.mode != mode || link.ip.is_some() {
                    continue;
                }
                let Some(subnet) = link.subnet else {
                    continue;
                };
                let ip = self.next_free(id, subnet, &taken, oracle)?;
                taken.insert(ip);
                link.ip = Some(ip);
            }
        }
        Ok(())
    }

    /// The lowest free address of a subnet: usable (not the network address, nor the IPv4
    /// broadcast address), not the gateway, a DNS server or a static route's gateway; in a
    /// managed subnet outside every range (and, in an IPv6 /64, above `::ffff:ffff`), in an
    /// unmanaged one inside a reserved range; held by no other machine, not in `taken`, and
    /// not in use according to `oracle`.
    fn next_free(
        &self,
        id: MachineId,
        subnet_id: SubnetId,
        taken: &BTreeSet<IpAddr>,
        oracle: &dyn AddressOracle,
    ) -> Result<IpAddr, Error> {
        let subnet = self
            .subnets
            .get(&subnet_id)
            .ok_or(not_found(Kind::Subnet, subnet_id.get()))?;
        let family = Family::of_net(subnet.cidr);
        let (first, _) = ip::bounds(subnet.cidr);
        let (mut lo, hi) = ip::usable_bounds(subnet.cidr);
        if family == Family::V6 && subnet.cidr.prefix_len() == 64 && subnet.managed {
            lo = lo.max(first + (1 << 32));
        }
        let mut singles: BTreeSet<IpAddr> = subnet.dns_servers.iter().copied().collect();
        singles.extend(subnet.gateway_ip);
        singles.extend(
            self.static_routes_from(subnet_id)
                .map(|(_, r)| r.gateway_ip),
        );
        let mut ranges: Vec<(u128, u128, IpRangeKind)> = self
            .ip_ranges_in(subnet_id)
            .map(|(_, r)| (ip::bits(r.start).1, ip::bits(r.end).1, r.kind))
            .collect();
        ranges.sort_unstable();
        let windows: Vec<(u128, u128)> = if subnet.managed {
            vec![(lo, hi)]
        } else {
            ranges
                .iter()
                .filter(|r| r.2 == IpRangeKind::Reserved)
                .map(|r| (r.0.max(lo), r.1.min(hi)))
                .filter(|(a, b)| a <= b)
                .collect()
        };
        let mut budget = FREE_SEARCH_BUDGET;
        for (start, end) in windows {
            let mut cursor = start;
            while cursor <= end && budget > 0 {
                if subnet.managed
                    && let Some(range) = ranges.iter().find(|r| r.0 <= cursor && cursor <= r.1)
                {
                    match range.1.checked_add(1) {
                        Some(next) => cursor = next,
                        None => break,
                    }
                    continue;
                }
                let candidate = ip::from_bits(family, cursor);
                let busy = singles.contains(&candidate)
                    || taken.contains(&candidate)
                    || self.machine_ips.get(&candidate).is_some_and(|o| *o != id)
                    || oracle.in_use(subnet_id, candidate);
                if !busy {
                    return Ok(candidate);
                }
                budget -= 1;
                match cursor.checked_add(1) {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
        }
        Err(Error::SubnetExhausted { cidr: subnet.cidr })
    }
}

/// Clears the boot interface and default-gateway links that name removed interfaces.
fn forget_interfaces(machine: &mut Machine, gone: &BTreeSet<String>) {
    for slot in [
        &mut machine.boot_interface,
        &mut machine.gateway_link_ipv4,
        &mut machine.gateway_link_ipv6,
    ] {
        if slot.as_ref().is_some_and(|n| gone.contains(n)) {
            *slot = None;
        }
    }
}
