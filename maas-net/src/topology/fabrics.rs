//! Fabrics and their VLANs.

use crate::model::{MAX_MTU, MAX_VID, MIN_MTU, UNTAGGED_VID};
use ipnet::IpNet;

use crate::{Error, Fabric, FabricId, Kind, Vlan, VlanId};

use super::{Topology, UNTAGGED_NAME, check_name, not_found, untagged_vlan};

impl Topology {
    // ---- fabrics -------------------------------------------------------------------------

    /// Add a fabric, with its untagged default VLAN. An empty name becomes `fabric-<id>`.
    pub fn create_fabric(&mut self, fabric: Fabric) -> Result<FabricId, Error> {
        self.insert_fabric(None, None, fabric)
    }

    pub(crate) fn insert_fabric(
        &mut self,
        id: Option<FabricId>,
        default_vlan: Option<VlanId>,
        mut fabric: Fabric,
    ) -> Result<FabricId, Error> {
        let id = id.unwrap_or(FabricId::new(self.next.fabric));
        let vlan_id = default_vlan.unwrap_or(VlanId::new(self.next.vlan));
        if self.fabrics.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::Fabric,
                id: id.get(),
            });
        }
        if self.vlans.contains_key(&vlan_id) {
            return Err(Error::IdInUse {
                kind: Kind::Vlan,
                id: vlan_id.get(),
            });
        }
        if fabric.name.is_empty() {
            fabric.name = format!("fabric-{id}");
        }
        self.check_fabric(id, &fabric)?;
        self.fabrics.insert(id, fabric);
        self.vlans.insert(vlan_id, untagged_vlan(id));
        self.next.fabric = self.next.fabric.max(id.get().saturating_add(1));
        self.next.vlan = self.next.vlan.max(vlan_id.get().saturating_add(1));
        Ok(id)
    }

    /// Change a fabric. An empty name becomes `fabric-<id>`.
    pub fn update_fabric(
        &mut self,
        id: FabricId,
        change: impl FnOnce(&mut Fabric),
    ) -> Result<(), Error> {
        let mut fabric = self
            .fabrics
            .get(&id)
            .ok_or(not_found(Kind::Fabric, id.get()))?
            .clone();
        change(&mut fabric);
        if fabric.name.is_empty() {
            fabric.name = format!("fabric-{id}");
        }
        self.check_fabric(id, &fabric)?;
        self.fabrics.insert(id, fabric);
        Ok(())
    }

    /// Delete a fabric and its VLANs. Refused for the default fabric and for a fabric that
    /// still holds subnets or machines' interfaces.
    pub fn delete_fabric(&mut self, id: FabricId) -> Result<Fabric, Error> {
        let fabric = self
            .fabrics
            .get(&id)
            .ok_or(not_found(Kind::Fabric, id.get()))?;
        if id == Self::DEFAULT_FABRIC {
            return Err(Error::DefaultFabric {
                fabric: fabric.name.clone(),
            });
        }
        let vlans: Vec<VlanId> = self.vlans_on(id).map(|(v, _)| v).collect();
        let mut subnets: Vec<IpNet> = self
            .subnets
            .values()
            .filter(|s| vlans.contains(&s.vlan))
            .map(|s| s.cidr)
            .collect();
        if !subnets.is_empty() {
            subnets.sort();
            return Err(Error::FabricHasSubnets {
                fabric: fabric.name.clone(),
                subnets,
            });
        }
        let mut interfaces = self.interfaces_on(&vlans);
        if !interfaces.is_empty() {
            interfaces.sort();
            return Err(Error::FabricHasInterfaces {
                fabric: fabric.name.clone(),
                interfaces,
            });
        }
        for vlan in &vlans {
            self.vlans.remove(vlan);
            self.clear_relays_to(*vlan);
        }
        Ok(self.fabrics.remove(&id).expect("checked above"))
    }

    fn check_fabric(&self, id: FabricId, fabric: &Fabric) -> Result<(), Error> {
        check_name(Kind::Fabric, &fabric.name, id.get(), Some("fabric"))?;
        if self
            .fabrics
            .iter()
            .any(|(other, f)| *other != id && f.name == fabric.name)
        {
            return Err(Error::NameInUse {
                kind: Kind::Fabric,
                name: fabric.name.clone(),
            });
        }
        Ok(())
    }

    // ---- VLANs ---------------------------------------------------------------------------

    /// Add a VLAN to a fabric. Setting `dhcp_on` clears `relay_vlan`.
    pub fn create_vlan(&mut self, vlan: Vlan) -> Result<VlanId, Error> {
        self.insert_vlan(None, vlan)
    }

    pub(crate) fn insert_vlan(
        &mut self,
        id: Option<VlanId>,
        mut vlan: Vlan,
    ) -> Result<VlanId, Error> {
        let id = id.unwrap_or(VlanId::new(self.next.vlan));
        if self.vlans.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::Vlan,
                id: id.get(),
            });
        }
        if vlan.dhcp_on {
            vlan.relay_vlan = None;
        }
        self.check_vlan(id, &vlan, None)?;
        self.vlans.insert(id, vlan);
        self.next.vlan = self.next.vlan.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change a VLAN. Setting `dhcp_on` clears `relay_vlan`; the default VLAN keeps VID 0 and
    /// its fabric.
    pub fn update_vlan(&mut self, id: VlanId, change: impl FnOnce(&mut Vlan)) -> Result<(), Error> {
        let old = self.vlans.get(&id).ok_or(not_found(Kind::Vlan, id.get()))?;
        let mut vlan = old.clone();
        change(&mut vlan);
        if vlan.dhcp_on {
            vlan.relay_vlan = None;
        }
        if vlan.vid == UNTAGGED_VID && vlan.name.is_none() {
            vlan.name = Some(UNTAGGED_NAME.to_owned());
        }
        self.check_vlan(id, &vlan, Some(old))?;
        // Machines on the VLAN must still pass with it changed (a VLAN interface on it stays
        // on its parent's fabric).
        let affected = self.machines_touching(Some(id), None);
        let old = self.vlans.insert(id, vlan).expect("checked above");
        if let Err(e) = self.recheck_machines(&affected) {
            self.vlans.insert(id, old);
            return Err(e);
        }
        Ok(())
    }

    /// Delete a VLAN. Its subnets move to the fabric's default VLAN and VLANs that relayed to
    /// it stop relaying. Machines' VLAN interfaces on it are deleted (with the bonds and bridges
    /// left without parents) and their other interfaces move to the default VLAN, as in MAAS.
    /// Refused for a fabric's default VLAN.
    pub fn delete_vlan(&mut self, id: VlanId) -> Result<Vlan, Error> {
        let vlan = self.vlans.get(&id).ok_or(not_found(Kind::Vlan, id.get()))?;
        let fabric = vlan.fabric;
        if vlan.vid == UNTAGGED_VID {
            return Err(Error::DefaultVlan {
                fabric: self.fabric_name(fabric),
            });
        }
        let default = self
            .default_vlan(fabric)
            .expect("every fabric keeps its default VLAN");
        for subnet in self.subnets.values_mut().filter(|s| s.vlan == id) {
            subnet.vlan = default;
        }
        self.detach_vlan(id, default);
        self.clear_relays_to(id);
        Ok(self.vlans.remove(&id).expect("checked above"))
    }

    fn check_vlan(&self, id: VlanId, vlan: &Vlan, old: Option<&Vlan>) -> Result<(), Error> {
        let fabric = self
            .fabrics
            .get(&vlan.fabric)
            .ok_or(not_found(Kind::Fabric, vlan.fabric.get()))?;
        if vlan.vid > MAX_VID {
            return Err(Error::InvalidVid {
                vid: vlan.vid.into(),
            });
        }
        if !(MIN_MTU..=MAX_MTU).contains(&vlan.mtu) {
            return Err(Error::InvalidMtu {
                mtu: vlan.mtu.into(),
            });
        }
        if let Some(name) = &vlan.name
            && name.chars().count() > 256
        {
            return Err(Error::InvalidName {
                kind: Kind::Vlan,
                name: name.clone(),
            });
        }
        if let Some(old) = old.filter(|o| o.vid == UNTAGGED_VID)
            && (vlan.vid != UNTAGGED_VID || vlan.fabric != old.fabric)
        {
            return Err(Error::DefaultVlanFixed {
                fabric: self.fabric_name(old.fabric),
            });
        }
        if self
            .vlans
            .iter()
            .any(|(o, v)| *o != id && v.fabric == vlan.fabric && v.vid == vlan.vid)
        {
            return Err(Error::VidInUse {
                fabric: fabric.name.clone(),
                vid: vlan.vid,
            });
        }
        if let Some(space) = vlan.space
            && !self.spaces.contains_key(&space)
        {
            return Err(not_found(Kind::Space, space.get()));
        }
        if let Some(target) = vlan.relay_vlan {
            let label = || format!("{} VID {}", fabric.name, vlan.vid);
            if target == id {
                return Err(Error::RelayToSelf { vlan: label() });
            }
            let target_vlan = self
                .vlans
                .get(&target)
                .ok_or(not_found(Kind::Vlan, target.get()))?;
            if let Some(onward) = target_vlan.relay_vlan {
                return Err(Error::RelayToRelay {
                    vlan: label(),
                    target: self.vlan_label(target),
                    onward: self.vlan_label(onward),
                });
            }
            if let Some((source, _)) = self.vlans.iter().find(|(_, v)| v.relay_vlan == Some(id)) {
                return Err(Error::RelayTargetRelays {
                    vlan: label(),
                    relayed_by: self.vlan_label(*source),
                });
            }
        }
        Ok(())
    }

    fn clear_relays_to(&mut self, id: VlanId) {
        for vlan in self.vlans.values_mut().filter(|v| v.relay_vlan == Some(id)) {
            vlan.relay_vlan = None;
        }
    }

    fn fabric_name(&self, id: FabricId) -> String {
        self.fabrics
            .get(&id)
            .map_or_else(|| format!("#{id}"), |f| f.name.clone())
    }
}
