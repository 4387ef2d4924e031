//! The container that owns the network model and keeps it consistent.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::RangeEnds;
use crate::ip::{self, Family};
use crate::model::{MAX_MTU, MAX_VID, MIN_MTU, UNTAGGED_VID};
use crate::{
    Error, Fabric, FabricId, IpRange, IpRangeId, IpRangeKind, Kind, Space, SpaceId, StaticRoute,
    StaticRouteId, Subnet, SubnetId, Vlan, VlanId, Zone, ZoneId,
};

/// The network model: fabrics, VLANs, spaces, subnets, static routes, zones and IP ranges,
/// each under a stable id, always consistent.
///
/// Every change goes through a method that checks MAAS's rules and the references between
/// entities, and either applies the whole change or returns an [`Error`] and leaves the
/// topology as it was. Deleting follows MAAS: a VLAN's subnets move to its fabric's default
/// VLAN, a subnet takes its ranges and routes with it, a deleted space is cleared from its
/// VLANs, a deleted relay VLAN is cleared from the VLANs relaying to it; the default fabric,
/// every fabric's untagged VLAN and the default zone cannot be deleted, nor can a fabric that
/// still holds subnets.
///
/// A new topology holds the default fabric `fabric-0` (id 0) with its untagged VLAN (VID 0)
/// and the default zone `default` (id 0).
///
/// ```
/// use maas_net::{IpRange, IpRangeKind, Subnet, Topology, Vlan};
///
/// let mut topo = Topology::new();
/// let fabric = Topology::DEFAULT_FABRIC;
/// let vlan = topo.create_vlan(Vlan::new(fabric, 100))?;
/// let subnet = topo.create_subnet(Subnet::new("10.77.1.0/24".parse()?, vlan))?;
/// topo.create_ip_range(IpRange::new(
///     subnet,
///     "10.77.1.100".parse()?,
///     "10.77.1.199".parse()?,
///     IpRangeKind::Dynamic,
/// ))?;
///
/// let clash = topo.create_subnet(Subnet::new("10.77.0.0/16".parse()?, vlan)).unwrap_err();
/// assert_eq!(
///     clash.to_string(),
///     "Subnet 10.77.0.0/16 would overlap with existing subnets. It overlaps 10.77.1.0/24."
/// );
/// assert_eq!(topo.subnet_containing("10.77.1.7".parse()?), Some(subnet));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Topology {
    fabrics: BTreeMap<FabricId, Fabric>,
    vlans: BTreeMap<VlanId, Vlan>,
    spaces: BTreeMap<SpaceId, Space>,
    subnets: BTreeMap<SubnetId, Subnet>,
    routes: BTreeMap<StaticRouteId, StaticRoute>,
    zones: BTreeMap<ZoneId, Zone>,
    ranges: BTreeMap<IpRangeId, IpRange>,
    /// Next free id of each kind; never reused within one topology's life.
    next: NextIds,
    /// Subnets by (family, first address) -> (last address, id). Subnets never overlap, so the
    /// one entry at or before an address is the only candidate to contain it.
    subnet_index: BTreeMap<(Family, u128), (u128, SubnetId)>,
    /// (subnet, range) for every range, so a subnet's ranges are found without a scan.
    ranges_by_subnet: BTreeSet<(SubnetId, IpRangeId)>,
    /// (subnet, route) for every route, under both its source and its destination.
    routes_by_subnet: BTreeSet<(SubnetId, StaticRouteId)>,
    /// (subnet, kind, first address) -> (last address, range). Ranges of one kind in one subnet
    /// never overlap, so the entry at or before an address is the only candidate to hold it.
    range_starts: BTreeMap<(SubnetId, IpRangeKind, u128), (u128, IpRangeId)>,
}

#[derive(Clone, Debug, Default)]
struct NextIds {
    fabric: u32,
    vlan: u32,
    space: u32,
    subnet: u32,
    route: u32,
    zone: u32,
    range: u32,
}

/// What may not overlap a range being placed, for the error message.
#[derive(Clone, Copy)]
enum Blocker {
    Range(IpRangeId),
    Gateway,
    DnsServer,
    InUse,
}

impl Topology {
    /// The default fabric, `fabric-0`.
    pub const DEFAULT_FABRIC: FabricId = FabricId::new(0);
    /// The default zone, `default`.
    pub const DEFAULT_ZONE: ZoneId = ZoneId::new(0);
    /// The default zone's name.
    pub const DEFAULT_ZONE_NAME: &'static str = "default";

    /// A topology holding only the defaults: `fabric-0` with its untagged VLAN, and the zone
    /// `default`.
    pub fn new() -> Self {
        let mut topo = Self {
            fabrics: BTreeMap::new(),
            vlans: BTreeMap::new(),
            spaces: BTreeMap::new(),
            subnets: BTreeMap::new(),
            routes: BTreeMap::new(),
            zones: BTreeMap::new(),
            ranges: BTreeMap::new(),
            next: NextIds::default(),
            subnet_index: BTreeMap::new(),
            ranges_by_subnet: BTreeSet::new(),
            routes_by_subnet: BTreeSet::new(),
            range_starts: BTreeMap::new(),
        };
        topo.fabrics
            .insert(Self::DEFAULT_FABRIC, Fabric::new("fabric-0"));
        topo.vlans
            .insert(VlanId::new(0), untagged_vlan(Self::DEFAULT_FABRIC));
        topo.zones
            .insert(Self::DEFAULT_ZONE, Zone::new(Self::DEFAULT_ZONE_NAME));
        topo.next = NextIds {
            fabric: 1,
            vlan: 1,
            zone: 1,
            ..NextIds::default()
        };
        topo
    }

    // ---- reading -------------------------------------------------------------------------

    /// The fabric with this id.
    pub fn fabric(&self, id: FabricId) -> Option<&Fabric> {
        self.fabrics.get(&id)
    }

    /// All fabrics, by id.
    pub fn fabrics(&self) -> impl Iterator<Item = (FabricId, &Fabric)> + '_ {
        self.fabrics.iter().map(|(id, f)| (*id, f))
    }

    /// The fabric with this name.
    pub fn fabric_by_name(&self, name: &str) -> Option<FabricId> {
        self.fabrics
            .iter()
            .find(|(_, f)| f.name == name)
            .map(|(id, _)| *id)
    }

    /// The untagged default VLAN (VID 0) of a fabric.
    pub fn default_vlan(&self, fabric: FabricId) -> Option<VlanId> {
        self.vlan_by_vid(fabric, UNTAGGED_VID)
    }

    /// The VLAN with this id.
    pub fn vlan(&self, id: VlanId) -> Option<&Vlan> {
        self.vlans.get(&id)
    }

    /// All VLANs, by id.
    pub fn vlans(&self) -> impl Iterator<Item = (VlanId, &Vlan)> + '_ {
        self.vlans.iter().map(|(id, v)| (*id, v))
    }

    /// The VLANs of one fabric, by id.
    pub fn vlans_on(&self, fabric: FabricId) -> impl Iterator<Item = (VlanId, &Vlan)> + '_ {
        self.vlans().filter(move |(_, v)| v.fabric == fabric)
    }

    /// The VLAN with this VID on a fabric.
    pub fn vlan_by_vid(&self, fabric: FabricId, vid: u16) -> Option<VlanId> {
        self.vlans_on(fabric)
            .find(|(_, v)| v.vid == vid)
            .map(|(id, _)| id)
    }

    /// A VLAN described for people: `fabric-0 VID 100`.
    pub fn vlan_label(&self, id: VlanId) -> String {
        match self.vlans.get(&id) {
            Some(v) => {
                let fabric = self.fabrics.get(&v.fabric).map_or("?", |f| f.name.as_str());
                format!("{fabric} VID {}", v.vid)
            }
            None => format!("#{id}"),
        }
    }

    /// The space with this id.
    pub fn space(&self, id: SpaceId) -> Option<&Space> {
        self.spaces.get(&id)
    }

    /// All spaces, by id.
    pub fn spaces(&self) -> impl Iterator<Item = (SpaceId, &Space)> + '_ {
        self.spaces.iter().map(|(id, s)| (*id, s))
    }

    /// The space with this name.
    pub fn space_by_name(&self, name: &str) -> Option<SpaceId> {
        self.spaces
            .iter()
            .find(|(_, s)| s.name == name)
            .map(|(id, _)| *id)
    }

    /// The zone with this id.
    pub fn zone(&self, id: ZoneId) -> Option<&Zone> {
        self.zones.get(&id)
    }

    /// All zones, by id.
    pub fn zones(&self) -> impl Iterator<Item = (ZoneId, &Zone)> + '_ {
        self.zones.iter().map(|(id, z)| (*id, z))
    }

    /// The zone with this name.
    pub fn zone_by_name(&self, name: &str) -> Option<ZoneId> {
        self.zones
            .iter()
            .find(|(_, z)| z.name == name)
            .map(|(id, _)| *id)
    }

    /// The subnet with this id.
    pub fn subnet(&self, id: SubnetId) -> Option<&Subnet> {
        self.subnets.get(&id)
    }

    /// All subnets, by id.
    pub fn subnets(&self) -> impl Iterator<Item = (SubnetId, &Subnet)> + '_ {
        self.subnets.iter().map(|(id, s)| (*id, s))
    }

    /// The subnets on one VLAN, by id.
    pub fn subnets_on(&self, vlan: VlanId) -> impl Iterator<Item = (SubnetId, &Subnet)> + '_ {
        self.subnets().filter(move |(_, s)| s.vlan == vlan)
    }

    /// The subnet with exactly this network (host bits ignored).
    pub fn subnet_by_cidr(&self, cidr: IpNet) -> Option<SubnetId> {
        let cidr = cidr.trunc();
        self.overlapping_subnet(cidr)
            .filter(|id| self.subnets[id].cidr == cidr)
    }

    /// The subnet that contains an address, if any. Subnets never overlap, so there is at
    /// most one. Takes O(log n) in the number of subnets.
    pub fn subnet_containing(&self, ip: IpAddr) -> Option<SubnetId> {
        let (family, value) = ip::bits(ip);
        let (&(f, _), &(last, id)) = self.subnet_index.range(..=(family, value)).next_back()?;
        (f == family && value <= last).then_some(id)
    }

    /// A subnet that overlaps `cidr`, if any. Takes O(log n) in the number of subnets.
    pub fn overlapping_subnet(&self, cidr: IpNet) -> Option<SubnetId> {
        let family = Family::of_net(cidr);
        let (first, last) = ip::bounds(cidr);
        let (&(f, _), &(end, id)) = self.subnet_index.range(..=(family, last)).next_back()?;
        (f == family && end >= first).then_some(id)
    }

    /// The space a subnet belongs to: its VLAN's.
    pub fn subnet_space(&self, id: SubnetId) -> Option<SpaceId> {
        self.vlans.get(&self.subnets.get(&id)?.vlan)?.space
    }

    /// The fabric a subnet is on: its VLAN's.
    pub fn subnet_fabric(&self, id: SubnetId) -> Option<FabricId> {
        Some(self.vlans.get(&self.subnets.get(&id)?.vlan)?.fabric)
    }

    /// The IP range with this id.
    pub fn ip_range(&self, id: IpRangeId) -> Option<&IpRange> {
        self.ranges.get(&id)
    }

    /// All IP ranges, by id.
    pub fn ip_ranges(&self) -> impl Iterator<Item = (IpRangeId, &IpRange)> + '_ {
        self.ranges.iter().map(|(id, r)| (*id, r))
    }

    /// The IP ranges of one subnet, by id.
    pub fn ip_ranges_in(
        &self,
        subnet: SubnetId,
    ) -> impl Iterator<Item = (IpRangeId, &IpRange)> + '_ {
        self.ranges_by_subnet
            .range((subnet, IpRangeId::new(0))..=(subnet, IpRangeId::new(u32::MAX)))
            .map(|(_, id)| (*id, &self.ranges[id]))
    }

    /// The static route with this id.
    pub fn static_route(&self, id: StaticRouteId) -> Option<&StaticRoute> {
        self.routes.get(&id)
    }

    /// All static routes, by id.
    pub fn static_routes(&self) -> impl Iterator<Item = (StaticRouteId, &StaticRoute)> + '_ {
        self.routes.iter().map(|(id, r)| (*id, r))
    }

    /// The static routes that machines on `subnet` get, by id.
    pub fn static_routes_from(
        &self,
        subnet: SubnetId,
    ) -> impl Iterator<Item = (StaticRouteId, &StaticRoute)> + '_ {
        self.static_routes_touching(subnet)
            .filter(move |(_, r)| r.source == subnet)
    }

    /// The static routes from or to `subnet`, by id.
    fn static_routes_touching(
        &self,
        subnet: SubnetId,
    ) -> impl Iterator<Item = (StaticRouteId, &StaticRoute)> + '_ {
        self.routes_by_subnet
            .range((subnet, StaticRouteId::new(0))..=(subnet, StaticRouteId::new(u32::MAX)))
            .map(|(_, id)| (*id, &self.routes[id]))
    }

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
    /// still holds subnets.
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
        self.vlans.insert(id, vlan);
        Ok(())
    }

    /// Delete a VLAN. Its subnets move to the fabric's default VLAN and VLANs that relayed to
    /// it stop relaying. Refused for a fabric's default VLAN.
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

    // ---- spaces --------------------------------------------------------------------------

    /// Add a space. An empty name becomes `space-<id>`.
    pub fn create_space(&mut self, space: Space) -> Result<SpaceId, Error> {
        self.insert_space(None, space)
    }

    pub(crate) fn insert_space(
        &mut self,
        id: Option<SpaceId>,
        mut space: Space,
    ) -> Result<SpaceId, Error> {
        let id = id.unwrap_or(SpaceId::new(self.next.space));
        if self.spaces.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::Space,
                id: id.get(),
            });
        }
        if space.name.is_empty() {
            space.name = format!("space-{id}");
        }
        self.check_space(id, &space)?;
        self.spaces.insert(id, space);
        self.next.space = self.next.space.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change a space. An empty name becomes `space-<id>`.
    pub fn update_space(
        &mut self,
        id: SpaceId,
        change: impl FnOnce(&mut Space),
    ) -> Result<(), Error> {
        let mut space = self
            .spaces
            .get(&id)
            .ok_or(not_found(Kind::Space, id.get()))?
            .clone();
        change(&mut space);
        if space.name.is_empty() {
            space.name = format!("space-{id}");
        }
        self.check_space(id, &space)?;
        self.spaces.insert(id, space);
        Ok(())
    }

    /// Delete a space; its VLANs are left without one.
    pub fn delete_space(&mut self, id: SpaceId) -> Result<Space, Error> {
        let space = self
            .spaces
            .remove(&id)
            .ok_or(not_found(Kind::Space, id.get()))?;
        for vlan in self.vlans.values_mut().filter(|v| v.space == Some(id)) {
            vlan.space = None;
        }
        Ok(space)
    }

    fn check_space(&self, id: SpaceId, space: &Space) -> Result<(), Error> {
        check_name(Kind::Space, &space.name, id.get(), Some("space"))?;
        if self
            .spaces
            .iter()
            .any(|(o, s)| *o != id && s.name == space.name)
        {
            return Err(Error::NameInUse {
                kind: Kind::Space,
                name: space.name.clone(),
            });
        }
        Ok(())
    }

    // ---- zones ---------------------------------------------------------------------------

    /// Add a zone.
    pub fn create_zone(&mut self, zone: Zone) -> Result<ZoneId, Error> {
        self.insert_zone(None, zone)
    }

    pub(crate) fn insert_zone(&mut self, id: Option<ZoneId>, zone: Zone) -> Result<ZoneId, Error> {
        let id = id.unwrap_or(ZoneId::new(self.next.zone));
        if self.zones.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::Zone,
                id: id.get(),
            });
        }
        self.check_zone(id, &zone)?;
        self.zones.insert(id, zone);
        self.next.zone = self.next.zone.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change a zone. The default zone cannot be renamed.
    pub fn update_zone(&mut self, id: ZoneId, change: impl FnOnce(&mut Zone)) -> Result<(), Error> {
        let old = self.zones.get(&id).ok_or(not_found(Kind::Zone, id.get()))?;
        let mut zone = old.clone();
        change(&mut zone);
        if id == Self::DEFAULT_ZONE && zone.name != old.name {
            return Err(Error::DefaultZone {
                zone: old.name.clone(),
                action: "renamed",
            });
        }
        self.check_zone(id, &zone)?;
        self.zones.insert(id, zone);
        Ok(())
    }

    /// Delete a zone. Refused for the default zone.
    pub fn delete_zone(&mut self, id: ZoneId) -> Result<Zone, Error> {
        let zone = self.zones.get(&id).ok_or(not_found(Kind::Zone, id.get()))?;
        if id == Self::DEFAULT_ZONE {
            return Err(Error::DefaultZone {
                zone: zone.name.clone(),
                action: "deleted",
            });
        }
        Ok(self.zones.remove(&id).expect("checked above"))
    }

    fn check_zone(&self, id: ZoneId, zone: &Zone) -> Result<(), Error> {
        check_name(Kind::Zone, &zone.name, id.get(), None)?;
        if self
            .zones
            .iter()
            .any(|(o, z)| *o != id && z.name == zone.name)
        {
            return Err(Error::NameInUse {
                kind: Kind::Zone,
                name: zone.name.clone(),
            });
        }
        Ok(())
    }

    // ---- subnets -------------------------------------------------------------------------

    /// Add a subnet. Host bits of the CIDR are cleared; an empty name becomes the CIDR.
    pub fn create_subnet(&mut self, subnet: Subnet) -> Result<SubnetId, Error> {
        self.insert_subnet(None, subnet)
    }

    pub(crate) fn insert_subnet(
        &mut self,
        id: Option<SubnetId>,
        mut subnet: Subnet,
    ) -> Result<SubnetId, Error> {
        let id = id.unwrap_or(SubnetId::new(self.next.subnet));
        if self.subnets.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::Subnet,
                id: id.get(),
            });
        }
        normalise_subnet(&mut subnet);
        self.check_subnet(id, &subnet)?;
        self.index_subnet(id, subnet.cidr);
        self.subnets.insert(id, subnet);
        self.next.subnet = self.next.subnet.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change a subnet. The change is refused if one of the subnet's ranges or routes would no
    /// longer be valid (a range outside a smaller CIDR, a gateway moved into a dynamic range, a
    /// managed subnet made unmanaged while a dynamic range lies outside every reserved range).
    pub fn update_subnet(
        &mut self,
        id: SubnetId,
        change: impl FnOnce(&mut Subnet),
    ) -> Result<(), Error> {
        let old = self
            .subnets
            .get(&id)
            .ok_or(not_found(Kind::Subnet, id.get()))?;
        let old_cidr = old.cidr;
        let mut subnet = old.clone();
        change(&mut subnet);
        normalise_subnet(&mut subnet);
        // Take the subnet out of the index so it cannot be found overlapping itself.
        self.unindex_subnet(old_cidr);
        if let Err(e) = self.check_subnet(id, &subnet) {
            self.index_subnet(id, old_cidr);
            return Err(e);
        }
        self.index_subnet(id, subnet.cidr);
        self.subnets.insert(id, subnet);
        Ok(())
    }

    /// Delete a subnet with its IP ranges and the static routes from or to it.
    pub fn delete_subnet(&mut self, id: SubnetId) -> Result<Subnet, Error> {
        let subnet = self
            .subnets
            .remove(&id)
            .ok_or(not_found(Kind::Subnet, id.get()))?;
        self.unindex_subnet(subnet.cidr);
        let ranges: Vec<IpRangeId> = self.ip_ranges_in(id).map(|(r, _)| r).collect();
        for range in ranges {
            self.take_range(range);
        }
        let routes: Vec<StaticRouteId> = self.static_routes_touching(id).map(|(r, _)| r).collect();
        for route in routes {
            self.take_route(route);
        }
        Ok(subnet)
    }

    fn put_range(&mut self, id: IpRangeId, range: IpRange) {
        self.take_range(id);
        self.ranges_by_subnet.insert((range.subnet, id));
        let (start, end) = (ip::bits(range.start).1, ip::bits(range.end).1);
        self.range_starts
            .insert((range.subnet, range.kind, start), (end, id));
        self.ranges.insert(id, range);
    }

    fn take_range(&mut self, id: IpRangeId) -> Option<IpRange> {
        let range = self.ranges.remove(&id)?;
        self.ranges_by_subnet.remove(&(range.subnet, id));
        self.range_starts
            .remove(&(range.subnet, range.kind, ip::bits(range.start).1));
        Some(range)
    }

    /// The range of this kind in the subnet, other than `skip`, with the greatest start at or
    /// before `at`: the only one that can hold `at` or overlap an interval ending at `at`.
    fn range_before(
        &self,
        subnet: SubnetId,
        kind: IpRangeKind,
        at: u128,
        skip: Option<IpRangeId>,
    ) -> Option<(u128, u128)> {
        self.range_starts
            .range((subnet, kind, 0)..=(subnet, kind, at))
            .rev()
            .find(|(_, (_, rid))| Some(*rid) != skip)
            .map(|(&(_, _, start), &(end, _))| (start, end))
    }

    fn put_route(&mut self, id: StaticRouteId, route: StaticRoute) {
        self.take_route(id);
        self.routes_by_subnet.insert((route.source, id));
        self.routes_by_subnet.insert((route.destination, id));
        self.routes.insert(id, route);
    }

    fn take_route(&mut self, id: StaticRouteId) -> Option<StaticRoute> {
        let route = self.routes.remove(&id)?;
        self.routes_by_subnet.remove(&(route.source, id));
        self.routes_by_subnet.remove(&(route.destination, id));
        Some(route)
    }

    fn index_subnet(&mut self, id: SubnetId, cidr: IpNet) {
        let (first, last) = ip::bounds(cidr);
        self.subnet_index
            .insert((Family::of_net(cidr), first), (last, id));
    }

    fn unindex_subnet(&mut self, cidr: IpNet) {
        self.subnet_index
            .remove(&(Family::of_net(cidr), ip::bounds(cidr).0));
    }

    /// Checks a subnet as it would be stored under `id`; the subnet itself must not be in the
    /// index.
    fn check_subnet(&self, id: SubnetId, subnet: &Subnet) -> Result<(), Error> {
        let cidr = subnet.cidr;
        if cidr.prefix_len() == 0 {
            return Err(Error::PrefixZero { cidr });
        }
        if !self.vlans.contains_key(&subnet.vlan) {
            return Err(not_found(Kind::Vlan, subnet.vlan.get()));
        }
        if let Some(gateway) = subnet.gateway_ip {
            let link_local = Family::of_net(cidr) == Family::V6 && ip::is_ipv6_link_local(gateway);
            if !cidr.contains(&gateway) && !link_local {
                return Err(Error::GatewayOutsideSubnet { gateway, cidr });
            }
        }
        if let Some(other) = self.overlapping_subnet(cidr) {
            return Err(Error::SubnetOverlap {
                cidr,
                existing: self.subnets[&other].cidr,
            });
        }
        // What already hangs off the subnet must stay valid.
        let ranges: Vec<(IpRangeId, &IpRange)> = self.ip_ranges_in(id).collect();
        for (_, range) in ranges
            .iter()
            .filter(|(_, r)| r.kind == IpRangeKind::Dynamic)
        {
            let roles = subnet.gateway_ip.iter().map(|g| ("gateway", *g));
            for (role, ip) in roles.chain(subnet.dns_servers.iter().map(|d| ("DNS server", *d))) {
                if range.contains(ip) {
                    return Err(Error::InDynamicRange {
                        role,
                        ip,
                        start: range.start,
                        end: range.end,
                    });
                }
            }
        }
        for (range_id, range) in &ranges {
            self.check_range_in(Some(*range_id), range, subnet, &[], true)
                .map_err(|reason| Error::WouldInvalidate {
                    what: format!("{} range {}-{}", range.kind, range.start, range.end),
                    reason: Box::new(reason),
                })?;
        }
        for (_, route) in self.static_routes_touching(id) {
            let (source, destination) = if route.source == id {
                (subnet.cidr, self.subnets[&route.destination].cidr)
            } else {
                (self.subnets[&route.source].cidr, subnet.cidr)
            };
            check_route_shape(source, destination, route.gateway_ip).map_err(|reason| {
                Error::WouldInvalidate {
                    what: format!(
                        "static route from {source} to {destination} via {}",
                        route.gateway_ip
                    ),
                    reason: Box::new(reason),
                }
            })?;
        }
        Ok(())
    }

    // ---- IP ranges -----------------------------------------------------------------------

    /// Add an IP range, checked against the subnet and its other ranges, gateway and DNS
    /// servers. A crate that tracks assigned addresses uses
    /// [`create_ip_range_with`](Self::create_ip_range_with) so that dynamic ranges avoid them.
    pub fn create_ip_range(&mut self, range: IpRange) -> Result<IpRangeId, Error> {
        self.create_ip_range_with(range, &[])
    }

    /// Add an IP range, as [`create_ip_range`](Self::create_ip_range), treating `in_use` as
    /// assigned addresses that a dynamic range may not cover.
    pub fn create_ip_range_with(
        &mut self,
        range: IpRange,
        in_use: &[IpAddr],
    ) -> Result<IpRangeId, Error> {
        self.insert_ip_range(None, range, in_use)
    }

    pub(crate) fn insert_ip_range(
        &mut self,
        id: Option<IpRangeId>,
        range: IpRange,
        in_use: &[IpAddr],
    ) -> Result<IpRangeId, Error> {
        let id = id.unwrap_or(IpRangeId::new(self.next.range));
        if self.ranges.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::IpRange,
                id: id.get(),
            });
        }
        self.check_range(id, &range, in_use)?;
        self.put_range(id, range);
        self.next.range = self.next.range.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change an IP range.
    pub fn update_ip_range(
        &mut self,
        id: IpRangeId,
        change: impl FnOnce(&mut IpRange),
    ) -> Result<(), Error> {
        self.update_ip_range_with(id, change, &[])
    }

    /// Change an IP range, treating `in_use` as assigned addresses that a dynamic range may
    /// not cover.
    pub fn update_ip_range_with(
        &mut self,
        id: IpRangeId,
        change: impl FnOnce(&mut IpRange),
        in_use: &[IpAddr],
    ) -> Result<(), Error> {
        let mut range = self
            .ranges
            .get(&id)
            .ok_or(not_found(Kind::IpRange, id.get()))?
            .clone();
        change(&mut range);
        self.check_range(id, &range, in_use)?;
        self.put_range(id, range);
        Ok(())
    }

    /// Delete an IP range. In an unmanaged subnet a reserved range that still holds a dynamic
    /// range cannot be deleted.
    pub fn delete_ip_range(&mut self, id: IpRangeId) -> Result<IpRange, Error> {
        let range = self
            .ranges
            .get(&id)
            .ok_or(not_found(Kind::IpRange, id.get()))?;
        let subnet = &self.subnets[&range.subnet];
        if !subnet.managed && range.kind == IpRangeKind::Reserved {
            let held = self
                .ip_ranges_in(range.subnet)
                .find(|(_, r)| r.kind == IpRangeKind::Dynamic && range.contains(r.start));
            if let Some((_, dynamic)) = held {
                return Err(Error::WouldInvalidate {
                    what: format!("dynamic range {}-{}", dynamic.start, dynamic.end),
                    reason: Box::new(Error::DynamicOutsideReserved {
                        start: dynamic.start,
                        end: dynamic.end,
                    }),
                });
            }
        }
        Ok(self.take_range(id).expect("checked above"))
    }

    fn check_range(&self, id: IpRangeId, range: &IpRange, in_use: &[IpAddr]) -> Result<(), Error> {
        let subnet = self
            .subnets
            .get(&range.subnet)
            .ok_or(not_found(Kind::Subnet, range.subnet.get()))?;
        self.check_range_in(Some(id), range, subnet, in_use, false)?;
        // In an unmanaged subnet a reserved range that changes (bounds, kind or subnet) must
        // still hold every dynamic range it held.
        if let Some(old) = self.ranges.get(&id)
            && old.kind == IpRangeKind::Reserved
            && !self.subnets[&old.subnet].managed
        {
            let still_held = |d: &IpRange| {
                range.kind == IpRangeKind::Reserved
                    && range.subnet == old.subnet
                    && range.contains(d.start)
                    && range.contains(d.end)
            };
            let stranded = self.ip_ranges_in(old.subnet).find(|(other, d)| {
                *other != id
                    && d.kind == IpRangeKind::Dynamic
                    && old.contains(d.start)
                    && !still_held(d)
            });
            if let Some((_, dynamic)) = stranded {
                return Err(Error::WouldInvalidate {
                    what: format!("dynamic range {}-{}", dynamic.start, dynamic.end),
                    reason: Box::new(Error::DynamicOutsideReserved {
                        start: dynamic.start,
                        end: dynamic.end,
                    }),
                });
            }
        }
        Ok(())
    }

    /// Checks a range against a subnet (given separately so that a subnet change can be
    /// checked before it is stored) and the subnet's other ranges.
    ///
    /// `existing` says the range is already stored, so that "no room" cannot arise from the
    /// range itself: only whether it overlaps something matters.
    fn check_range_in(
        &self,
        id: Option<IpRangeId>,
        range: &IpRange,
        subnet: &Subnet,
        in_use: &[IpAddr],
        existing: bool,
    ) -> Result<(), Error> {
        check_range_shape(range, subnet.cidr)?;
        let (family, start) = ip::bits(range.start);
        let end = ip::bits(range.end).1;
        // The common case, in O(log n): nothing overlaps the range, so it is valid, and there is
        // room (the range itself). Only a refusal needs the full sweep below, which picks MAAS's
        // message ("no room" before "conflicts").
        let overlaps = |kind| {
            self.range_before(range.subnet, kind, end, id)
                .is_some_and(|(_, e)| e >= start)
        };
        let points_clear = || {
            subnet
                .gateway_ip
                .iter()
                .chain(&subnet.dns_servers)
                .chain(in_use)
                .all(|a| {
                    let (f, v) = ip::bits(*a);
                    f != family || v < start || v > end
                })
        };
        let fast_ok = match (subnet.managed, range.kind) {
            (true, IpRangeKind::Reserved) => {
                !overlaps(IpRangeKind::Dynamic) && !overlaps(IpRangeKind::Reserved)
            }
            (true, IpRangeKind::Dynamic) => {
                !overlaps(IpRangeKind::Dynamic)
                    && !overlaps(IpRangeKind::Reserved)
                    && points_clear()
            }
            (false, IpRangeKind::Reserved) => !overlaps(IpRangeKind::Reserved),
            (false, IpRangeKind::Dynamic) => {
                let held = self
                    .range_before(range.subnet, IpRangeKind::Reserved, start, id)
                    .is_some_and(|(_, e)| e >= end);
                held && !overlaps(IpRangeKind::Dynamic) && points_clear()
            }
        };
        if fast_ok {
            return Ok(());
        }
        let others = self
            .ip_ranges_in(range.subnet)
            .filter(|(rid, _)| Some(*rid) != id);
        let mut blockers: Vec<(u128, u128, Blocker)> = Vec::new();
        let mut reserved_within: Option<(u128, u128)> = None;
        let universe = if subnet.managed {
            for (rid, r) in others {
                blockers.push((ip::bits(r.start).1, ip::bits(r.end).1, Blocker::Range(rid)));
            }
            vec![ip::usable_bounds(subnet.cidr)]
        } else {
            // Unmanaged: dynamic ranges live inside reserved ones; reserved ranges may not
            // overlap each other.
            let mut reserved = Vec::new();
            for (rid, r) in others {
                let bounds = (ip::bits(r.start).1, ip::bits(r.end).1);
                match (range.kind, r.kind) {
                    (IpRangeKind::Dynamic, IpRangeKind::Reserved) => {
                        reserved.push(bounds);
                        if bounds.0 <= start && end <= bounds.1 {
                            reserved_within = Some(bounds);
                        }
                    }
                    (IpRangeKind::Reserved, IpRangeKind::Dynamic) => {}
                    _ => blockers.push((bounds.0, bounds.1, Blocker::Range(rid))),
                }
            }
            match range.kind {
                IpRangeKind::Dynamic => reserved,
                IpRangeKind::Reserved => vec![ip::usable_bounds(subnet.cidr)],
            }
        };
        if range.kind == IpRangeKind::Dynamic {
            let mut single = |ip: IpAddr, why: Blocker| {
                let (f, v) = ip::bits(ip);
                if f == family {
                    blockers.push((v, v, why));
                }
            };
            subnet
                .gateway_ip
                .into_iter()
                .for_each(|g| single(g, Blocker::Gateway));
            subnet
                .dns_servers
                .iter()
                .for_each(|d| single(*d, Blocker::DnsServer));
            in_use.iter().for_each(|a| single(*a, Blocker::InUse));
        }
        blockers.sort_unstable_by_key(|b| (b.0, b.1));
        if !existing && !has_room(&universe, &blockers) {
            return Err(Error::NoRoomForRange { kind: range.kind });
        }
        if range.kind == IpRangeKind::Dynamic && !subnet.managed && reserved_within.is_none() {
            return Err(Error::DynamicOutsideReserved {
                start: range.start,
                end: range.end,
            });
        }
        if let Some(&(lo, _, why)) = blockers
            .iter()
            .find(|(lo, hi, _)| *lo <= end && start <= *hi)
        {
            let with = match why {
                Blocker::Range(rid) => {
                    let r = &self.ranges[&rid];
                    format!("the {} range {}-{}", r.kind, r.start, r.end)
                }
                Blocker::Gateway => format!("the gateway {}", ip::from_bits(family, lo)),
                Blocker::DnsServer => format!("the DNS server {}", ip::from_bits(family, lo)),
                Blocker::InUse => format!("the assigned address {}", ip::from_bits(family, lo)),
            };
            return Err(Error::RangeConflict {
                kind: range.kind,
                start: range.start,
                end: range.end,
                with,
            });
        }
        Ok(())
    }

    // ---- static routes -------------------------------------------------------------------

    /// Add a static route.
    pub fn create_static_route(&mut self, route: StaticRoute) -> Result<StaticRouteId, Error> {
        self.insert_static_route(None, route)
    }

    pub(crate) fn insert_static_route(
        &mut self,
        id: Option<StaticRouteId>,
        route: StaticRoute,
    ) -> Result<StaticRouteId, Error> {
        let id = id.unwrap_or(StaticRouteId::new(self.next.route));
        if self.routes.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::StaticRoute,
                id: id.get(),
            });
        }
        self.check_route(id, &route)?;
        self.put_route(id, route);
        self.next.route = self.next.route.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change a static route.
    pub fn update_static_route(
        &mut self,
        id: StaticRouteId,
        change: impl FnOnce(&mut StaticRoute),
    ) -> Result<(), Error> {
        let mut route = self
            .routes
            .get(&id)
            .ok_or(not_found(Kind::StaticRoute, id.get()))?
            .clone();
        change(&mut route);
        self.check_route(id, &route)?;
        self.put_route(id, route);
        Ok(())
    }

    /// Delete a static route.
    pub fn delete_static_route(&mut self, id: StaticRouteId) -> Result<StaticRoute, Error> {
        self.take_route(id)
            .ok_or(not_found(Kind::StaticRoute, id.get()))
    }

    fn check_route(&self, id: StaticRouteId, route: &StaticRoute) -> Result<(), Error> {
        let source = self
            .subnets
            .get(&route.source)
            .ok_or(not_found(Kind::Subnet, route.source.get()))?;
        let destination = self
            .subnets
            .get(&route.destination)
            .ok_or(not_found(Kind::Subnet, route.destination.get()))?;
        if route.source == route.destination {
            return Err(Error::RouteToSelf {
                subnet: source.cidr,
            });
        }
        check_route_shape(source.cidr, destination.cidr, route.gateway_ip)?;
        let duplicate = self.static_routes_from(route.source).any(|(o, r)| {
            o != id
                && r.source == route.source
                && r.destination == route.destination
                && r.gateway_ip == route.gateway_ip
        });
        if duplicate {
            return Err(Error::RouteExists {
                from: source.cidr,
                to: destination.cidr,
                gateway: route.gateway_ip,
            });
        }
        Ok(())
    }

    // ---- loading -------------------------------------------------------------------------

    /// Gives a fabric's default VLAN another id. Only used while loading, before anything
    /// refers to VLANs.
    pub(crate) fn rekey_default_vlan(&mut self, fabric: FabricId, id: VlanId) -> Result<(), Error> {
        let current = self
            .default_vlan(fabric)
            .ok_or(not_found(Kind::Fabric, fabric.get()))?;
        if current == id {
            return Ok(());
        }
        if self.vlans.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::Vlan,
                id: id.get(),
            });
        }
        let vlan = self.vlans.remove(&current).expect("found above");
        self.vlans.insert(id, vlan);
        self.next.vlan = self.next.vlan.max(id.get().saturating_add(1));
        Ok(())
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

/// Two topologies are equal when they hold the same entities under the same ids.
impl PartialEq for Topology {
    fn eq(&self, other: &Self) -> bool {
        self.fabrics == other.fabrics
            && self.vlans == other.vlans
            && self.spaces == other.spaces
            && self.subnets == other.subnets
            && self.routes == other.routes
            && self.zones == other.zones
            && self.ranges == other.ranges
    }
}

impl Eq for Topology {}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("fabrics", &self.fabrics)
            .field("vlans", &self.vlans)
            .field("spaces", &self.spaces)
            .field("subnets", &self.subnets)
            .field("static_routes", &self.routes)
            .field("zones", &self.zones)
            .field("ip_ranges", &self.ranges)
            .finish()
    }
}

/// The name of every fabric's untagged VLAN, unless it is given another.
const UNTAGGED_NAME: &str = "untagged";

fn untagged_vlan(fabric: FabricId) -> Vlan {
    Vlan {
        name: Some(UNTAGGED_NAME.to_owned()),
        ..Vlan::new(fabric, UNTAGGED_VID)
    }
}

const fn not_found(kind: Kind, id: u32) -> Error {
    Error::NotFound { kind, id }
}

fn normalise_subnet(subnet: &mut Subnet) {
    subnet.cidr = subnet.cidr.trunc();
    if subnet.name.is_empty() {
        subnet.name = subnet.cidr.to_string();
    }
    let mut seen = Vec::with_capacity(subnet.disabled_boot_architectures.len());
    subnet.disabled_boot_architectures.retain(|a| {
        let new = !seen.contains(a);
        seen.push(*a);
        new
    });
}

/// MAAS's name rule `^[\w-]+$` (at most 256 characters), and the `fabric-N` / `space-N` names
/// kept for the entity whose id is N.
fn check_name(kind: Kind, name: &str, id: u32, reserved_prefix: Option<&str>) -> Result<(), Error> {
    let count = name.chars().count();
    let valid = (1..=256).contains(&count)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(Error::InvalidName {
            kind,
            name: name.chars().take(300).collect(),
        });
    }
    if let Some(prefix) = reserved_prefix {
        let number = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('-'));
        if let Some(number) = number {
            let numeric = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
            if numeric && number != id.to_string() {
                return Err(Error::ReservedName {
                    kind,
                    name: name.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// The checks on a range that need only the range and its subnet's CIDR, in MAAS's order.
fn check_range_shape(range: &IpRange, cidr: IpNet) -> Result<(), Error> {
    let (fs, start) = ip::bits(range.start);
    let (fe, end) = ip::bits(range.end);
    if fs != fe {
        return Err(Error::RangeFamilyMismatch);
    }
    if end < start {
        return Err(Error::RangeEndBeforeStart);
    }
    let outside = match (cidr.contains(&range.start), cidr.contains(&range.end)) {
        (true, true) => None,
        (false, false) => Some(RangeEnds::Both),
        (false, true) => Some(RangeEnds::Start),
        (true, false) => Some(RangeEnds::End),
    };
    if let Some(outside) = outside {
        return Err(Error::RangeOutsideSubnet { outside, cidr });
    }
    let (first, last) = ip::bounds(cidr);
    let (usable_first, usable_last) = ip::usable_bounds(cidr);
    if start == first && usable_first != first {
        return Err(Error::RangeIncludesNetwork);
    }
    if end == last && usable_last != last {
        return Err(Error::RangeIncludesBroadcast);
    }
    if fs == Family::V6 && range.kind == IpRangeKind::Dynamic && end - start < 255 {
        return Err(Error::Ipv6DynamicRangeTooSmall {
            size: end - start + 1,
        });
    }
    Ok(())
}

fn check_route_shape(source: IpNet, destination: IpNet, gateway: IpAddr) -> Result<(), Error> {
    if Family::of_net(source) != Family::of_net(destination) {
        return Err(Error::RouteFamilyMismatch {
            from: source,
            to: destination,
        });
    }
    if !source.contains(&gateway) {
        return Err(Error::RouteGatewayOutside {
            gateway,
            from: source,
        });
    }
    Ok(())
}

/// Whether some address of the universe (disjoint intervals) is not covered by the blockers
/// (sorted by start).
fn has_room(universe: &[(u128, u128)], blockers: &[(u128, u128, Blocker)]) -> bool {
    universe.iter().any(|&(lo, hi)| {
        // Walk the blockers in order, advancing the first uncovered address.
        let mut next = lo;
        for &(b_lo, b_hi, _) in blockers {
            if b_hi < next {
                continue;
            }
            if b_lo > next {
                break;
            }
            match b_hi.checked_add(1) {
                Some(n) => next = n,
                None => return false,
            }
            if next > hi {
                return false;
            }
        }
        next <= hi
    })
}
