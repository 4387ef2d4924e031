//! The document form of machines: `[[machines]]` with their interfaces and links, referring to
//! VLANs by fabric name and VID and to subnets by CIDR.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::{MAX_MTU, MIN_MTU};
use crate::{
    BondParams, BridgeParams, DEFAULT_DOMAIN, Error, Interface, InterfaceKind, Link, LinkMode, Mac,
    Machine, Topology,
};

use super::VlanRef;

/// A machine in a document.
///
/// ```toml
/// [[machines]]
/// hostname = "node1"
/// domain = "maas"                 # default "maas"
/// boot_interface = "eth0"         # default: the first physical interface
/// gateway_link_ipv4 = "eth0"      # optional
///
/// [[machines.interfaces]]
/// name = "eth0"
/// type = "physical"               # physical | vlan | bond | bridge
/// mac = "52:54:00:77:00:01"
/// vlan = { fabric = "fabric-0", vid = 0 }   # absent: on no VLAN
/// params = { mtu = 1500 }         # MAAS's parameter names
/// links = [{ mode = "static", subnet = "10.77.0.0/24", ip = "10.77.0.4" }]
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineDoc {
    /// Id; assigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Host name.
    pub hostname: String,
    /// DNS domain, default `maas`.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// The boot interface's name; the first physical interface when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_interface: Option<String>,
    /// The interface whose IPv4 link carries the default route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_link_ipv4: Option<String>,
    /// The interface whose IPv6 link carries the default route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_link_ipv6: Option<String>,
    /// Interfaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceDoc>,
}

/// The type of an interface in a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceType {
    /// A network card.
    Physical,
    /// A VLAN interface.
    Vlan,
    /// A bond.
    Bond,
    /// A bridge.
    Bridge,
}

/// An interface in a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceDoc {
    /// Name.
    pub name: String,
    /// `physical`, `vlan`, `bond` or `bridge`.
    #[serde(rename = "type")]
    pub kind: InterfaceType,
    /// MAC address: required for physical interfaces, optional for bonds and bridges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    /// The VLAN, by fabric name and VID; absent for a disconnected interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<VlanRef>,
    /// Parents, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// Enabled (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Parameters, by MAAS's names.
    #[serde(default, skip_serializing_if = "ParamsDoc::is_empty")]
    pub params: ParamsDoc,
    /// Links to subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkDoc>,
}

/// An interface's parameters, by the names MAAS uses (`bond_mode`, `bridge_stp`, `accept-ra`).
/// Values are checked on loading, with MAAS's messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamsDoc {
    /// MTU, 552 to 65535; the VLAN's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i64>,
    /// Accept IPv6 router advertisements.
    #[serde(
        default,
        rename = "accept-ra",
        alias = "accept_ra",
        skip_serializing_if = "Option::is_none"
    )]
    pub accept_ra: Option<bool>,
    /// Bond mode (`balance-rr`, `active-backup`, `balance-xor`, `broadcast`, `802.3ad`,
    /// `balance-tlb`, `balance-alb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_mode: Option<String>,
    /// Bond link monitoring interval (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_miimon: Option<i64>,
    /// Bond down delay (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_downdelay: Option<i64>,
    /// Bond up delay (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_updelay: Option<i64>,
    /// LACP rate (`fast`, `slow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_lacp_rate: Option<String>,
    /// Transmit hash policy (`layer2`, `layer2+3`, `layer3+4`, `encap2+3`, `encap3+4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_xmit_hash_policy: Option<String>,
    /// Gratuitous ARPs after failover, 0 to 255.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_num_grat_arp: Option<i64>,
    /// Bridge type (`standard`, `ovs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_type: Option<String>,
    /// Spanning tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_stp: Option<bool>,
    /// Bridge forward delay (s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_fd: Option<i64>,
}

impl ParamsDoc {
    /// Whether no parameter is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A link in a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDoc {
    /// `auto`, `static`, `dhcp` or `link_up`.
    pub mode: LinkMode,
    /// The subnet's CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<IpNet>,
    /// The address (static links; assigned auto links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
}

fn default_domain() -> String {
    DEFAULT_DOMAIN.to_owned()
}

fn yes() -> bool {
    true
}

impl Topology {
    /// A machine value as a document entry (without an id), naming VLANs and subnets as this
    /// topology does. The inverse of [`machine_from_doc`](Self::machine_from_doc).
    pub fn doc_of_machine(&self, m: &Machine) -> MachineDoc {
        MachineDoc {
            id: None,
            ..self.machine_doc(crate::MachineId::new(0), m)
        }
    }

    /// A document entry as a machine value, resolving its VLANs and subnets through this
    /// topology. Every problem is reported with where it is (relative to the machine), as
    /// the topology loader reports them. The machine's own rules (parents, MACs, addresses)
    /// are checked when it is created or updated in a topology, not here.
    pub fn machine_from_doc(&self, doc: &MachineDoc) -> Result<Machine, crate::LoadError> {
        machine_from_doc(self, doc).map_err(|problems| crate::LoadError {
            problems: problems
                .into_iter()
                .map(|(location, error)| crate::doc::Problem { location, error })
                .collect(),
        })
    }

    /// A machine as a document entry.
    pub(super) fn machine_doc(&self, id: crate::MachineId, m: &Machine) -> MachineDoc {
        MachineDoc {
            id: Some(id.get()),
            hostname: m.hostname.clone(),
            domain: m.domain.clone(),
            boot_interface: m.boot_interface.clone(),
            gateway_link_ipv4: m.gateway_link_ipv4.clone(),
            gateway_link_ipv6: m.gateway_link_ipv6.clone(),
            interfaces: m.interfaces.iter().map(|i| self.interface_doc(i)).collect(),
        }
    }

    fn interface_doc(&self, i: &Interface) -> InterfaceDoc {
        let mut params = ParamsDoc {
            mtu: i.mtu.map(i64::from),
            accept_ra: i.accept_ra,
            ..ParamsDoc::default()
        };
        let kind = match &i.kind {
            InterfaceKind::Physical => InterfaceType::Physical,
            InterfaceKind::Vlan => InterfaceType::Vlan,
            InterfaceKind::Bond(b) => {
                params.bond_mode = Some(b.mode.as_str().to_owned());
                params.bond_miimon = Some(b.miimon.into());
                params.bond_downdelay = Some(b.downdelay.into());
                params.bond_updelay = Some(b.updelay.into());
                params.bond_lacp_rate = Some(b.lacp_rate.as_str().to_owned());
                params.bond_xmit_hash_policy = Some(b.xmit_hash_policy.as_str().to_owned());
                params.bond_num_grat_arp = Some(b.num_grat_arp.into());
                InterfaceType::Bond
            }
            InterfaceKind::Bridge(b) => {
                params.bridge_type = Some(b.kind.as_str().to_owned());
                params.bridge_stp = Some(b.stp);
                params.bridge_fd = Some(b.fd.into());
                InterfaceType::Bridge
            }
        };
        InterfaceDoc {
            name: i.name.clone(),
            kind,
            mac: i.mac,
            vlan: i.vlan.and_then(|v| {
                let vlan = self.vlan(v)?;
                Some(VlanRef {
                    fabric: self.fabric(vlan.fabric)?.name.clone(),
                    vid: vlan.vid.into(),
                })
            }),
            parents: i.parents.clone(),
            enabled: i.enabled,
            params,
            links: i
                .links
                .iter()
                .map(|l| LinkDoc {
                    mode: l.mode,
                    subnet: l.subnet.and_then(|s| self.subnet(s)).map(|s| s.cidr),
                    ip: l.ip,
                })
                .collect(),
        }
    }
}

/// Turns a document entry into a machine, resolving names through `topo`. Every problem is
/// reported, each with where it is (relative to the machine).
pub(super) fn machine_from_doc(
    topo: &Topology,
    doc: &MachineDoc,
) -> Result<Machine, Vec<(String, Error)>> {
    let mut problems = Vec::new();
    let mut interfaces = Vec::with_capacity(doc.interfaces.len());
    for (i, d) in doc.interfaces.iter().enumerate() {
        let at = format!("interfaces[{i}] ({})", d.name);
        match interface_from_doc(topo, d) {
            Ok(iface) => interfaces.push(iface),
            Err(errors) => problems.extend(errors.into_iter().map(|(w, e)| {
                let location = if w.is_empty() {
                    at.clone()
                } else {
                    format!("{at} {w}")
                };
                (location, e)
            })),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Machine {
        hostname: doc.hostname.clone(),
        domain: doc.domain.clone(),
        boot_interface: doc.boot_interface.clone(),
        gateway_link_ipv4: doc.gateway_link_ipv4.clone(),
        gateway_link_ipv6: doc.gateway_link_ipv6.clone(),
        interfaces,
    })
}

fn interface_from_doc(
    topo: &Topology,
    d: &InterfaceDoc,
) -> Result<Interface, Vec<(String, Error)>> {
    let mut problems: Vec<(String, Error)> = Vec::new();
    macro_rules! note {
        ($where:expr, $error:expr $(,)?) => {
            problems.push(($where, $error))
        };
    }
    let vlan = match &d.vlan {
        Some(r) => match super::resolve_vlan(topo, r) {
            Ok(v) => Some(v),
            Err(e) => {
                note!(String::new(), e);
                None
            }
        },
        None => None,
    };
    let p = &d.params;
    let param = |name: &'static str, message: String| Error::InvalidParam {
        param: name,
        message,
        interface: d.name.clone(),
    };
    let number = |name: &'static str, value: Option<i64>, default: u32, max: u32| {
        let Some(v) = value else { return Ok(default) };
        if v < 0 {
            return Err(param(
                name,
                "Ensure this value is greater than or equal to 0.".into(),
            ));
        }
        u32::try_from(v).ok().filter(|v| *v <= max).ok_or_else(|| {
            param(
                name,
                format!("Ensure this value is less than or equal to {max}."),
            )
        })
    };
    let mtu = match p.mtu {
        None => None,
        Some(m) => match u32::try_from(m)
            .ok()
            .filter(|m| (MIN_MTU..=MAX_MTU).contains(m))
        {
            Some(m) => Some(m),
            None => {
                note!(String::new(), Error::InvalidMtu { mtu: m });
                None
            }
        },
    };
    let bond_given = p.bond_mode.is_some()
        || p.bond_miimon.is_some()
        || p.bond_downdelay.is_some()
        || p.bond_updelay.is_some()
        || p.bond_lacp_rate.is_some()
        || p.bond_xmit_hash_policy.is_some()
        || p.bond_num_grat_arp.is_some();
    let bridge_given = p.bridge_type.is_some() || p.bridge_stp.is_some() || p.bridge_fd.is_some();
    let kind = match d.kind {
        InterfaceType::Physical => InterfaceKind::Physical,
        InterfaceType::Vlan => InterfaceKind::Vlan,
        InterfaceType::Bond => {
            let d = BondParams::default();
            let mode = choice(p.bond_mode.as_deref(), d.mode, &mut problems);
            let lacp_rate = choice(p.bond_lacp_rate.as_deref(), d.lacp_rate, &mut problems);
            let xmit_hash_policy = choice(
                p.bond_xmit_hash_policy.as_deref(),
                d.xmit_hash_policy,
                &mut problems,
            );
            let mut count = |name, value, default, max| {
                number(name, value, default, max).unwrap_or_else(|e| {
                    note!(String::new(), e);
                    default
                })
            };
            InterfaceKind::Bond(BondParams {
                mode,
                miimon: count("bond_miimon", p.bond_miimon, d.miimon, u32::MAX),
                downdelay: count("bond_downdelay", p.bond_downdelay, d.downdelay, u32::MAX),
                updelay: count("bond_updelay", p.bond_updelay, d.updelay, u32::MAX),
                lacp_rate,
                xmit_hash_policy,
                num_grat_arp: u8::try_from(count(
                    "bond_num_grat_arp",
                    p.bond_num_grat_arp,
                    d.num_grat_arp.into(),
                    255,
                ))
                .unwrap_or(u8::MAX),
            })
        }
        InterfaceType::Bridge => {
            let d = BridgeParams::default();
            let kind = choice(p.bridge_type.as_deref(), d.kind, &mut problems);
            let fd = number("bridge_fd", p.bridge_fd, d.fd, u32::MAX).unwrap_or_else(|e| {
                note!(String::new(), e);
                d.fd
            });
            InterfaceKind::Bridge(BridgeParams {
                kind,
                stp: p.bridge_stp.unwrap_or(d.stp),
                fd,
            })
        }
    };
    if bond_given && !matches!(kind, InterfaceKind::Bond(_)) {
        note!(
            String::new(),
            param(
                "bond_*",
                format!(
                    "Only bonds have bond parameters; this is a {} interface.",
                    kind.type_name()
                ),
            ),
        );
    }
    if bridge_given && !matches!(kind, InterfaceKind::Bridge(_)) {
        note!(
            String::new(),
            param(
                "bridge_*",
                format!(
                    "Only bridges have bridge parameters; this is a {} interface.",
                    kind.type_name()
                ),
            ),
        );
    }
    let mut links = Vec::with_capacity(d.links.len());
    for (l, link) in d.links.iter().enumerate() {
        let subnet = match link.subnet {
            Some(cidr) => match super::resolve_subnet(topo, cidr) {
                Ok(s) => Some(s),
                Err(e) => {
                    note!(format!("links[{l}]"), e);
                    continue;
                }
            },
            None => None,
        };
        links.push(Link {
            mode: link.mode,
            subnet,
            ip: link.ip,
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Interface {
        name: d.name.clone(),
        kind,
        mac: d.mac,
        vlan,
        parents: d.parents.clone(),
        enabled: d.enabled,
        mtu,
        accept_ra: p.accept_ra,
        links,
    })
}

/// A parameter among fixed choices: parsed, or the default with the problem noted.
fn choice<T: FromStr<Err = Error> + Copy>(
    value: Option<&str>,
    default: T,
    problems: &mut Vec<(String, Error)>,
) -> T {
    match value.map(str::parse::<T>) {
        None => default,
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            problems.push((String::new(), e));
            default
        }
    }
}
