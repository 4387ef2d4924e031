//! The container that owns the network model and keeps it consistent.

mod fabrics;
mod machine_checks;
mod machines;
mod ranges;
mod spaces;
mod subnets;
mod zones;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::ip::{self, Family};
use crate::model::UNTAGGED_VID;
use crate::{
    Error, Fabric, FabricId, IpRange, IpRangeId, IpRangeKind, Kind, Mac, Machine, MachineId, Space,
    SpaceId, StaticRoute, StaticRouteId, Subnet, SubnetId, Vlan, VlanId, Zone, ZoneId,
};

/// The network model: fabrics, VLANs, spaces, subnets, static routes, zones, IP ranges and
/// machines (with their interfaces and links), each under a stable id, always consistent.
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
    machines: BTreeMap<MachineId, Machine>,
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
    /// Machines by host name.
    hostnames: BTreeMap<String, MachineId>,
    /// The machine holding each link address.
    machine_ips: BTreeMap<IpAddr, MachineId>,
    /// The machine holding each physical interface's MAC address.
    machine_macs: BTreeMap<Mac, MachineId>,
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
    machine: u32,
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
            machines: BTreeMap::new(),
            next: NextIds::default(),
            subnet_index: BTreeMap::new(),
            ranges_by_subnet: BTreeSet::new(),
            routes_by_subnet: BTreeSet::new(),
            range_starts: BTreeMap::new(),
            hostnames: BTreeMap::new(),
            machine_ips: BTreeMap::new(),
            machine_macs: BTreeMap::new(),
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
            && self.machines == other.machines
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
            .field("machines", &self.machines)
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
