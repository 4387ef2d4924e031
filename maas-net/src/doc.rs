//! The document form of a topology: what TOML and JSON files hold.
//!
//! Entities refer to each other by the names people use, not by ids: a VLAN names its fabric,
//! a subnet its fabric and VID, a range and a route their subnets by CIDR, a machine's
//! interface its VLAN by fabric and VID and its links their subnets by CIDR. Ids are written on
//! output and optional on input, so a hand-written file needs none and a saved topology keeps
//! its ids when read back.
//!
//! Loading applies every entry through the same checks as the [`Topology`] methods and reports
//! every problem at once ([`LoadError`]), never a half-loaded topology.
//!
//! ```
//! use maas_net::Topology;
//!
//! let topo: Topology = toml::from_str(r#"
//!     [[fabrics]]
//!     name = "fabric-0"
//!
//!     [[vlans]]
//!     fabric = "fabric-0"
//!     vid = 0
//!     dhcp_on = true
//!
//!     [[subnets]]
//!     cidr = "10.77.1.0/24"
//!     fabric = "fabric-0"
//!     vid = 0
//!     gateway_ip = "10.77.1.1"
//!
//!     [[ip_ranges]]
//!     subnet = "10.77.1.0/24"
//!     kind = "dynamic"
//!     start = "10.77.1.100"
//!     end = "10.77.1.199"
//! "#)?;
//! assert_eq!(topo.subnets().count(), 1);
//! let again: Topology = toml::from_str(&toml::to_string(&topo)?)?;
//! assert_eq!(again, topo);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod machines;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use machines::{InterfaceDoc, InterfaceType, LinkDoc, MachineDoc, ParamsDoc};

use crate::model::{DEFAULT_MTU, MAX_MTU, MAX_VID, MIN_MTU, UNTAGGED_VID};
use crate::{
    BootArchitecture, Error, Fabric, FabricId, IpRange, IpRangeId, IpRangeKind, Kind, MachineId,
    RdnsMode, Space, SpaceId, StaticRoute, StaticRouteId, Subnet, SubnetId, Topology, Vlan, VlanId,
    Zone, ZoneId,
};

/// A whole topology as a document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyDoc {
    /// Availability zones. The zone `default` always exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneDoc>,
    /// Spaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spaces: Vec<SpaceDoc>,
    /// Fabrics. `fabric-0` always exists; each fabric gets its untagged VLAN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fabrics: Vec<FabricDoc>,
    /// VLANs. An entry with VID 0 describes its fabric's untagged VLAN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<VlanDoc>,
    /// Subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<SubnetDoc>,
    /// IP ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_ranges: Vec<IpRangeDoc>,
    /// Static routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_routes: Vec<StaticRouteDoc>,
    /// Machines, with their interfaces and links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<MachineDoc>,
}

/// A zone in a document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneDoc {
    /// Id; assigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A space in a document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceDoc {
    /// Id; assigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A fabric in a document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricDoc {
    /// Id; assigned when absent (a name `fabric-N` asks for id N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Optional class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_type: Option<String>,
}

/// A VLAN named by its fabric and VID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanRef {
    /// The fabric's name.
    pub fabric: String,
    /// The VID.
    pub vid: i64,
}

/// A VLAN in a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanDoc {
    /// Id; assigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// The fabric's name.
    pub fabric: String,
    /// VID, 0 to 4094.
    pub vid: i64,
    /// Optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// MTU, default 1500.
    #[serde(default = "default_mtu")]
    pub mtu: i64,
    /// Whether DHCP is served.
    #[serde(default)]
    pub dhcp_on: bool,
    /// The VLAN whose DHCP server answers for this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_vlan: Option<VlanRef>,
    /// The space's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
}

/// A subnet in a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetDoc {
    /// Id; assigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// The network.
    pub cidr: IpNet,
    /// Name; the CIDR when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The fabric's name; the default fabric when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fabric: Option<String>,
    /// The VLAN's VID on that fabric; 0 when absent.
    #[serde(default)]
    pub vid: i64,
    /// Default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_ip: Option<IpAddr>,
    /// DNS servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<IpAddr>,
    /// Managed (default true).
    #[serde(default = "yes")]
    pub managed: bool,
    /// DNS allowed (default true).
    #[serde(default = "yes")]
    pub allow_dns: bool,
    /// Proxy allowed (default true).
    #[serde(default = "yes")]
    pub allow_proxy: bool,
    /// Active discovery (default false).
    #[serde(default)]
    pub active_discovery: bool,
    /// Reverse DNS mode (default enabled).
    #[serde(default)]
    pub rdns_mode: RdnsMode,
    /// Disabled boot methods, by MAAS name or option-93 code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_boot_architectures: Vec<String>,
}

/// An IP range in a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRangeDoc {
    /// Id; assigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// The subnet's CIDR.
    pub subnet: IpNet,
    /// `dynamic` or `reserved` (MAAS calls this field `type`, which is accepted too).
    #[serde(alias = "type")]
    pub kind: IpRangeKind,
    /// First address.
    pub start: IpAddr,
    /// Last address.
    pub end: IpAddr,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// A static route in a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRouteDoc {
    /// Id; assigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// The source subnet's CIDR.
    pub source: IpNet,
    /// The destination subnet's CIDR.
    pub destination: IpNet,
    /// The next hop.
    pub gateway_ip: IpAddr,
    /// Metric (default 0).
    #[serde(default)]
    pub metric: u32,
}

fn default_mtu() -> i64 {
    DEFAULT_MTU.into()
}

fn yes() -> bool {
    true
}

/// A topology document that could not be applied, with every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// Each problem with where it is.
    pub problems: Vec<Problem>,
}

/// One problem in a topology document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where, as `subnets[2] (10.77.1.0/24)`.
    pub location: String,
    /// What is wrong.
    pub error: Error,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "the topology has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.location, p.error)?;
        }
        Ok(())
    }
}

impl Topology {
    /// The topology as a document, entities in id order.
    pub fn to_doc(&self) -> TopologyDoc {
        let fabric_name =
            |id: FabricId| self.fabric(id).map(|f| f.name.clone()).unwrap_or_default();
        let vlan_ref = |id: VlanId| {
            let v = self.vlan(id).expect("references are kept valid");
            VlanRef {
                fabric: fabric_name(v.fabric),
                vid: v.vid.into(),
            }
        };
        let cidr = |id: SubnetId| self.subnet(id).expect("references are kept valid").cidr;
        TopologyDoc {
            zones: self
                .zones()
                .map(|(id, z)| ZoneDoc {
                    id: Some(id.get()),
                    name: z.name.clone(),
                    description: z.description.clone(),
                })
                .collect(),
            spaces: self
                .spaces()
                .map(|(id, s)| SpaceDoc {
                    id: Some(id.get()),
                    name: s.name.clone(),
                    description: s.description.clone(),
                })
                .collect(),
            fabrics: self
                .fabrics()
                .map(|(id, f)| FabricDoc {
                    id: Some(id.get()),
                    name: f.name.clone(),
                    description: f.description.clone(),
                    class_type: f.class_type.clone(),
                })
                .collect(),
            vlans: self
                .vlans()
                .map(|(id, v)| VlanDoc {
                    id: Some(id.get()),
                    fabric: fabric_name(v.fabric),
                    vid: v.vid.into(),
                    name: v.name.clone(),
                    description: v.description.clone(),
                    mtu: v.mtu.into(),
                    dhcp_on: v.dhcp_on,
                    relay_vlan: v.relay_vlan.map(vlan_ref),
                    space: v.space.and_then(|s| self.space(s)).map(|s| s.name.clone()),
                })
                .collect(),
            subnets: self
                .subnets()
                .map(|(id, s)| {
                    let vlan = self.vlan(s.vlan).expect("references are kept valid");
                    SubnetDoc {
                        id: Some(id.get()),
                        cidr: s.cidr,
                        name: Some(s.name.clone()),
                        description: s.description.clone(),
                        fabric: Some(fabric_name(vlan.fabric)),
                        vid: vlan.vid.into(),
                        gateway_ip: s.gateway_ip,
                        dns_servers: s.dns_servers.clone(),
                        managed: s.managed,
                        allow_dns: s.allow_dns,
                        allow_proxy: s.allow_proxy,
                        active_discovery: s.active_discovery,
                        rdns_mode: s.rdns_mode,
                        disabled_boot_architectures: s
                            .disabled_boot_architectures
                            .iter()
                            .map(|a| a.name().to_owned())
                            .collect(),
                    }
                })
                .collect(),
            ip_ranges: self
                .ip_ranges()
                .map(|(id, r)| IpRangeDoc {
                    id: Some(id.get()),
                    subnet: cidr(r.subnet),
                    kind: r.kind,
                    start: r.start,
                    end: r.end,
                    comment: r.comment.clone(),
                })
                .collect(),
            static_routes: self
                .static_routes()
                .map(|(id, r)| StaticRouteDoc {
                    id: Some(id.get()),
                    source: cidr(r.source),
                    destination: cidr(r.destination),
                    gateway_ip: r.gateway_ip,
                    metric: r.metric,
                })
                .collect(),
            machines: self
                .machines()
                .map(|(id, m)| self.machine_doc(id, m))
                .collect(),
        }
    }

    /// Builds a topology from a document, checking every entry as the `create_*` methods do.
    /// All problems are reported together; nothing is returned unless every entry applied.
    pub fn from_doc(doc: &TopologyDoc) -> Result<Self, LoadError> {
        Loader::default().load(doc)
    }
}

#[derive(Default)]
struct Loader {
    topo: Topology,
    problems: Vec<Problem>,
}

impl Loader {
    fn note<T>(
        &mut self,
        location: impl FnOnce() -> String,
        result: Result<T, Error>,
    ) -> Option<T> {
        result
            .map_err(|error| {
                self.problems.push(Problem {
                    location: location(),
                    error,
                })
            })
            .ok()
    }

    fn load(mut self, doc: &TopologyDoc) -> Result<Topology, LoadError> {
        for (i, z) in doc.zones.iter().enumerate() {
            let zone = Zone {
                name: z.name.clone(),
                description: z.description.clone(),
            };
            let is_default = z.id == Some(Topology::DEFAULT_ZONE.get())
                || (z.id.is_none() && z.name == Topology::DEFAULT_ZONE_NAME);
            let result = if is_default {
                self.topo.update_zone(Topology::DEFAULT_ZONE, |d| *d = zone)
            } else {
                self.topo.insert_zone(z.id.map(ZoneId::new), zone).map(drop)
            };
            self.note(|| format!("zones[{i}] ({})", z.name), result);
        }
        for (i, s) in doc.spaces.iter().enumerate() {
            let space = Space {
                name: s.name.clone(),
                description: s.description.clone(),
            };
            let id =
                s.id.or_else(|| numbered(&s.name, "space"))
                    .map(SpaceId::new);
            let result = self.topo.insert_space(id, space);
            self.note(|| format!("spaces[{i}] ({})", s.name), result);
        }
        self.load_fabrics(doc);
        self.load_vlans(doc);
        self.load_subnets(doc);
        // Reserved ranges first: in an unmanaged subnet a dynamic range must lie inside one,
        // whatever the order of the ids.
        let reserved_first = doc
            .ip_ranges
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == IpRangeKind::Reserved)
            .chain(
                doc.ip_ranges
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.kind != IpRangeKind::Reserved),
            );
        for (i, r) in reserved_first {
            let location = || format!("ip_ranges[{i}] ({}-{})", r.start, r.end);
            let result = self.subnet_id(r.subnet).and_then(|subnet| {
                let range = IpRange {
                    subnet,
                    start: r.start,
                    end: r.end,
                    kind: r.kind,
                    comment: r.comment.clone(),
                };
                self.topo
                    .insert_ip_range(r.id.map(IpRangeId::new), range, &[])
            });
            self.note(location, result);
        }
        for (i, r) in doc.static_routes.iter().enumerate() {
            let location = || format!("static_routes[{i}] ({} to {})", r.source, r.destination);
            let result = self.subnet_id(r.source).and_then(|source| {
                let destination = self.subnet_id(r.destination)?;
                let route = StaticRoute {
                    source,
                    destination,
                    gateway_ip: r.gateway_ip,
                    metric: r.metric,
                };
                self.topo
                    .insert_static_route(r.id.map(StaticRouteId::new), route)
            });
            self.note(location, result);
        }
        for (i, m) in doc.machines.iter().enumerate() {
            let at = format!("machines[{i}] ({})", m.hostname);
            match machines::machine_from_doc(&self.topo, m) {
                Ok(machine) => {
                    let result = self.topo.insert_machine(
                        m.id.map(MachineId::new),
                        machine,
                        &crate::NoOracle,
                    );
                    self.note(|| at.clone(), result);
                }
                Err(problems) => {
                    for (location, error) in problems {
                        self.problems.push(Problem {
                            location: format!("{at} {location}"),
                            error,
                        });
                    }
                }
            }
        }
        if self.problems.is_empty() {
            Ok(self.topo)
        } else {
            Err(LoadError {
                problems: self.problems,
            })
        }
    }

    fn load_fabrics(&mut self, doc: &TopologyDoc) {
        // The id each fabric's untagged VLAN had when saved, so that it keeps it.
        let untagged_ids: HashMap<&str, u32> = doc
            .vlans
            .iter()
            .filter(|v| v.vid == i64::from(UNTAGGED_VID))
            .filter_map(|v| Some((v.fabric.as_str(), v.id?)))
            .collect();
        for (i, f) in doc.fabrics.iter().enumerate() {
            let location = || format!("fabrics[{i}] ({})", f.name);
            let fabric = Fabric {
                name: f.name.clone(),
                description: f.description.clone(),
                class_type: f.class_type.clone(),
            };
            let id =
                f.id.or_else(|| numbered(&f.name, "fabric"))
                    .map(FabricId::new);
            let untagged = untagged_ids.get(f.name.as_str()).copied().map(VlanId::new);
            let result = if id == Some(Topology::DEFAULT_FABRIC) {
                self.topo
                    .update_fabric(Topology::DEFAULT_FABRIC, |d| *d = fabric)
                    .and_then(|()| match untagged {
                        Some(vlan) => self.topo.rekey_default_vlan(Topology::DEFAULT_FABRIC, vlan),
                        None => Ok(()),
                    })
            } else {
                self.topo.insert_fabric(id, untagged, fabric).map(drop)
            };
            self.note(location, result);
        }
    }

    fn load_vlans(&mut self, doc: &TopologyDoc) {
        let mut ids = Vec::with_capacity(doc.vlans.len());
        for (i, v) in doc.vlans.iter().enumerate() {
            let location = || format!("vlans[{i}] ({} VID {})", v.fabric, v.vid);
            let result = (|| {
                let fabric = self.fabric_id(&v.fabric)?;
                let vid = vid(v.vid)?;
                let mtu = u32::try_from(v.mtu)
                    .ok()
                    .filter(|m| (MIN_MTU..=MAX_MTU).contains(m))
                    .ok_or(Error::InvalidMtu { mtu: v.mtu })?;
                let space =
                    match &v.space {
                        Some(name) => Some(self.topo.space_by_name(name).ok_or_else(|| {
                            Error::UnknownName {
                                kind: Kind::Space,
                                name: name.clone(),
                            }
                        })?),
                        None => None,
                    };
                let vlan = Vlan {
                    fabric,
                    vid,
                    name: v.name.clone(),
                    description: v.description.clone(),
                    mtu,
                    dhcp_on: v.dhcp_on,
                    relay_vlan: None,
                    space,
                };
                if vid == UNTAGGED_VID {
                    let id = self.topo.default_vlan(fabric).ok_or(Error::NotFound {
                        kind: Kind::Fabric,
                        id: fabric.get(),
                    })?;
                    if v.id.is_some_and(|want| want != id.get()) {
                        return Err(Error::IdInUse {
                            kind: Kind::Vlan,
                            id: id.get(),
                        });
                    }
                    // The untagged VLAN keeps its name unless the document gives one.
                    self.topo.update_vlan(id, |d| {
                        *d = Vlan {
                            name: vlan.name.clone().or(d.name.take()),
                            ..vlan
                        }
                    })?;
                    Ok(id)
                } else {
                    self.topo.insert_vlan(v.id.map(VlanId::new), vlan)
                }
            })();
            ids.push(self.note(location, result));
        }
        // Relays refer to other VLANs, so they are set once every VLAN exists.
        for (i, (v, id)) in doc.vlans.iter().zip(&ids).enumerate() {
            let (Some(target), Some(id)) = (&v.relay_vlan, id) else {
                continue;
            };
            let location = || format!("vlans[{i}] ({} VID {})", v.fabric, v.vid);
            let result = self
                .vlan_id(target)
                .and_then(|target| self.topo.update_vlan(*id, |d| d.relay_vlan = Some(target)));
            self.note(location, result);
        }
    }

    fn load_subnets(&mut self, doc: &TopologyDoc) {
        for (i, s) in doc.subnets.iter().enumerate() {
            let location = || format!("subnets[{i}] ({})", s.cidr);
            let result = (|| {
                let fabric = match &s.fabric {
                    Some(name) => VlanRef {
                        fabric: name.clone(),
                        vid: s.vid,
                    },
                    None => VlanRef {
                        fabric: self
                            .topo
                            .fabric(Topology::DEFAULT_FABRIC)
                            .map(|f| f.name.clone())
                            .unwrap_or_default(),
                        vid: s.vid,
                    },
                };
                let vlan = self.vlan_id(&fabric)?;
                let disabled = s
                    .disabled_boot_architectures
                    .iter()
                    .map(|a| a.parse::<BootArchitecture>())
                    .collect::<Result<Vec<_>, _>>()?;
                let subnet = Subnet {
                    name: s.name.clone().unwrap_or_default(),
                    description: s.description.clone(),
                    cidr: s.cidr,
                    vlan,
                    gateway_ip: s.gateway_ip,
                    dns_servers: s.dns_servers.clone(),
                    managed: s.managed,
                    allow_dns: s.allow_dns,
                    allow_proxy: s.allow_proxy,
                    active_discovery: s.active_discovery,
                    rdns_mode: s.rdns_mode,
                    disabled_boot_architectures: disabled,
                };
                self.topo.insert_subnet(s.id.map(SubnetId::new), subnet)
            })();
            self.note(location, result);
        }
    }

    fn fabric_id(&self, name: &str) -> Result<FabricId, Error> {
        self.topo
            .fabric_by_name(name)
            .ok_or_else(|| Error::UnknownName {
                kind: Kind::Fabric,
                name: name.to_owned(),
            })
    }

    fn vlan_id(&self, r: &VlanRef) -> Result<VlanId, Error> {
        resolve_vlan(&self.topo, r)
    }

    fn subnet_id(&self, cidr: IpNet) -> Result<SubnetId, Error> {
        resolve_subnet(&self.topo, cidr)
    }
}

/// The VLAN a reference names.
fn resolve_vlan(topo: &Topology, r: &VlanRef) -> Result<VlanId, Error> {
    let fabric = topo
        .fabric_by_name(&r.fabric)
        .ok_or_else(|| Error::UnknownName {
            kind: Kind::Fabric,
            name: r.fabric.clone(),
        })?;
    let vid = vid(r.vid)?;
    topo.vlan_by_vid(fabric, vid)
        .ok_or_else(|| Error::UnknownName {
            kind: Kind::Vlan,
            name: format!("{} VID {}", r.fabric, r.vid),
        })
}

/// The subnet with exactly this network.
fn resolve_subnet(topo: &Topology, cidr: IpNet) -> Result<SubnetId, Error> {
    topo.subnet_by_cidr(cidr).ok_or_else(|| Error::UnknownName {
        kind: Kind::Subnet,
        name: cidr.to_string(),
    })
}

fn vid(vid: i64) -> Result<u16, Error> {
    u16::try_from(vid)
        .ok()
        .filter(|v| *v <= MAX_VID)
        .ok_or(Error::InvalidVid { vid })
}

/// N for a name `prefix-N`.
fn numbered(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.strip_prefix('-')?.parse().ok()
}

impl Serialize for Topology {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_doc().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Topology {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let doc = TopologyDoc::deserialize(deserializer)?;
        Self::from_doc(&doc).map_err(serde::de::Error::custom)
    }
}
