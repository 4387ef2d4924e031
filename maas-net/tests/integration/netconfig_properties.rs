//! Properties of machines and their rendering on random inputs: a machine is either accepted
//! or refused without any change to the topology; an accepted one renders, every time the
//! same, documents shaped as netplan expects them (sections in order, references to defined
//! interfaces, addresses with prefixes, one default route per family in the main table).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use maas_net::netplan::{self, RenderOptions};
use maas_net::{
    BondMode, BondParams, BridgeParams, BridgeType, Interface, InterfaceKind, Link, LinkMode, Mac,
    Machine, StaticRoute, Subnet, SubnetId, Topology, Vlan, VlanId,
};
use proptest::prelude::*;
use yaml_rust2::{Yaml, YamlLoader};

use crate::{ip, net};

struct Base {
    topo: Topology,
    /// No VLAN, untagged, VID 10, VID 20.
    vlans: [Option<VlanId>; 4],
    /// The IPv4 subnet of each VLAN above, and the IPv6 subnet of the untagged VLAN.
    v4: [Option<SubnetId>; 4],
    v6: SubnetId,
}

fn base(dhcp_on: bool) -> Base {
    let mut topo = Topology::new();
    let fabric = Topology::DEFAULT_FABRIC;
    let untagged = topo.default_vlan(fabric).unwrap();
    topo.update_vlan(untagged, |v| v.dhcp_on = dhcp_on).unwrap();
    let v10 = topo.create_vlan(Vlan::new(fabric, 10)).unwrap();
    let v20 = topo
        .create_vlan(Vlan {
            mtu: 9000,
            ..Vlan::new(fabric, 20)
        })
        .unwrap();
    let subnet = |topo: &mut Topology, cidr: &str, gw: Option<&str>, vlan| {
        topo.create_subnet(Subnet {
            gateway_ip: gw.map(ip),
            dns_servers: gw.map(|_| ip("10.77.0.53")).into_iter().collect(),
            ..Subnet::new(net(cidr), vlan)
        })
        .unwrap()
    };
    let s0 = subnet(&mut topo, "10.77.0.0/24", Some("10.77.0.1"), untagged);
    let s10 = subnet(&mut topo, "10.77.10.0/24", Some("10.77.10.1"), v10);
    let s20 = subnet(&mut topo, "10.77.20.0/24", None, v20);
    let v6 = topo
        .create_subnet(Subnet {
            gateway_ip: Some(ip("fd77::1")),
            ..Subnet::new(net("fd77::/64"), untagged)
        })
        .unwrap();
    topo.create_static_route(StaticRoute {
        metric: 7,
        ..StaticRoute::new(s10, s20, ip("10.77.10.254"))
    })
    .unwrap();
    Base {
        topo,
        vlans: [None, Some(untagged), Some(v10), Some(v20)],
        v4: [None, Some(s0), Some(s10), Some(s20)],
        v6,
    }
}

/// One interface, described by choices that may or may not make a valid machine.
#[derive(Clone, Debug)]
struct Spec {
    kind: u8,
    parents: Vec<usize>,
    vlan: usize,
    link: u8,
    enabled: bool,
    mtu: Option<u32>,
    mode: u8,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![4 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
        prop::collection::vec(0usize..8, 0..3),
        prop_oneof![1 => Just(0usize), 4 => Just(1usize), 2 => Just(2usize), 1 => Just(3usize)],
        0u8..8,
        prop::bool::weighted(0.9),
        prop::option::weighted(0.2, prop_oneof![Just(1400u32), Just(1500), Just(9000)]),
        0u8..7,
    )
        .prop_map(|(kind, parents, vlan, link, enabled, mtu, mode)| Spec {
            kind,
            parents,
            vlan,
            link,
            enabled,
            mtu,
            mode,
        })
}

/// Builds a machine from the choices, bending most of them into shape (VLAN interfaces get
/// one parent, bonds bond unused physical interfaces on one VLAN, bridges bridge unused
/// interfaces) so that most machines pass; the gateway and boot choices stay free, so some do
/// not.
fn build(b: &Base, specs: &[Spec], gw: Option<usize>, boot: Option<usize>) -> Machine {
    let mut machine = Machine::new("prop");
    // Interfaces already a member of a bond or bridge.
    let mut used: BTreeSet<usize> = BTreeSet::new();
    for (i, s) in specs.iter().enumerate() {
        let candidates: Vec<usize> = s
            .parents
            .iter()
            .filter(|_| i > 0)
            .map(|p| p % i)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|p| !used.contains(p))
            .collect();
        let kinds: Vec<&InterfaceKind> = machine.interfaces.iter().map(|i| &i.kind).collect();
        let physical = |p: &usize| matches!(kinds[*p], InterfaceKind::Physical);
        let (kind, parents): (InterfaceKind, Vec<usize>) = match s.kind {
            1 => match candidates
                .iter()
                .find(|p| !matches!(kinds[**p], InterfaceKind::Vlan))
            {
                Some(p) => (InterfaceKind::Vlan, vec![*p]),
                None => (InterfaceKind::Physical, Vec::new()),
            },
            2 => {
                let members: Vec<usize> = candidates.iter().copied().filter(physical).collect();
                if members.is_empty() {
                    (InterfaceKind::Physical, Vec::new())
                } else {
                    let mode = BondMode::ALL[usize::from(s.mode) % BondMode::ALL.len()];
                    (InterfaceKind::Bond(BondParams::with_mode(mode)), members)
                }
            }
            3 => {
                let members: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|p| !matches!(kinds[*p], InterfaceKind::Bridge(_)))
                    .collect();
                if members.is_empty() {
                    (InterfaceKind::Physical, Vec::new())
                } else {
                    let params = BridgeParams {
                        kind: BridgeType::Standard,
                        stp: s.mode % 2 == 0,
                        fd: u32::from(s.mode),
                    };
                    (InterfaceKind::Bridge(params), members)
                }
            }
            _ => (InterfaceKind::Physical, Vec::new()),
        };
        // A VLAN interface sits on a tagged VLAN; anything else where it was put.
        let vlan_index = match kind {
            InterfaceKind::Vlan => 2 + s.vlan % 2,
            _ => s.vlan,
        };
        if let InterfaceKind::Bond(_) | InterfaceKind::Bridge(_) = kind {
            used.extend(&parents);
        }
        if let InterfaceKind::Bond(_) = kind {
            // Members join the bond's VLAN and give up their links.
            for p in &parents {
                let member = &mut machine.interfaces[*p];
                member.vlan = b.vlans[vlan_index];
                member.links.clear();
            }
        }
        let subnet = b.v4[vlan_index];
        let mut links: Vec<Link> = match s.link {
            1 | 6 => subnet.map(Link::sticky).into_iter().collect(),
            2 => subnet.map(Link::auto).into_iter().collect(),
            3 => vec![Link::dhcp(subnet)],
            4 => vec![Link::dhcp(None)],
            5 => vec![Link::link_up(subnet)],
            _ => Vec::new(),
        };
        if matches!(s.link, 6 | 7) && vlan_index == 1 {
            links.push(Link::sticky(b.v6));
        }
        let physical = matches!(kind, InterfaceKind::Physical);
        let name = match kind {
            InterfaceKind::Vlan => format!("vlan{i}"),
            InterfaceKind::Bond(_) => format!("bond{i}"),
            InterfaceKind::Bridge(_) => format!("br{i}"),
            _ => format!("eth{i}"),
        };
        let parents = parents
            .iter()
            .map(|p| machine.interfaces[*p].name.clone())
            .collect();
        machine.interfaces.push(Interface {
            name,
            kind,
            mac: physical.then(|| Mac::new([0x52, 0x54, 0x00, 0x77, 0x01, i as u8])),
            vlan: b.vlans[vlan_index],
            parents,
            enabled: s.enabled,
            mtu: s.mtu,
            accept_ra: (s.mode == 3).then_some(true),
            links,
        });
    }
    let pick = |n: Option<usize>| {
        n.filter(|n| *n < machine.interfaces.len())
            .map(|n| machine.interfaces[n].name.clone())
    };
    machine.gateway_link_ipv4 = pick(gw);
    machine.boot_interface = pick(boot);
    machine
}

fn names_in(y: &Yaml) -> BTreeSet<String> {
    y.as_hash()
        .map(|h| {
            h.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The shape netplan expects of a version-2 document.
fn check_v2_shape(text: &str, source_routing: bool) -> Result<(), TestCaseError> {
    prop_assert!(text.starts_with("network:\n  version: 2\n"), "{}", text);
    let docs = YamlLoader::load_from_str(text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(docs.len(), 1);
    let network = &docs[0]["network"];
    let sections: Vec<String> = network
        .as_hash()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let order = ["version", "ethernets", "vlans", "bonds", "bridges"];
    let positions: Vec<usize> = sections
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap_or(99))
        .collect();
    prop_assert!(positions.windows(2).all(|w| w[0] < w[1]), "{:?}", sections);
    let mut defined = BTreeSet::new();
    for s in &order[1..] {
        defined.extend(names_in(&network[*s]));
    }
    let mut defaults = [0usize; 2];
    for section in &order[1..] {
        let Some(entries) = network[*section].as_hash() else {
            continue;
        };
        for (key, entry) in entries {
            let key = key.as_str().unwrap();
            prop_assert!(entry["mtu"].as_i64().is_some(), "{} has no MTU", key);
            match *section {
                "ethernets" => {
                    prop_assert_eq!(entry["set-name"].as_str(), Some(key));
                    prop_assert!(entry["match"]["macaddress"].as_str().is_some());
                }
                "vlans" => {
                    let link = entry["link"].as_str().unwrap();
                    prop_assert!(defined.contains(link), "{} links to {}", key, link);
                    prop_assert!(
                        entry["id"]
                            .as_i64()
                            .is_some_and(|id| (1..=4094).contains(&id))
                    );
                }
                _ => {
                    for member in entry["interfaces"].as_vec().unwrap() {
                        let member = member.as_str().unwrap();
                        prop_assert!(defined.contains(member), "{} has {}", key, member);
                    }
                }
            }
            if let Some(addresses) = entry["addresses"].as_vec() {
                for a in addresses {
                    let a: IpNet = a.as_str().unwrap().parse().unwrap();
                    prop_assert!(a.prefix_len() > 0);
                }
            }
            for route in entry["routes"].as_vec().into_iter().flatten() {
                let to: IpNet = route["to"].as_str().unwrap().parse().unwrap();
                let _: IpAddr = route["via"].as_str().unwrap().parse().unwrap();
                let main = route["table"].is_badvalue();
                prop_assert!(main || source_routing, "a table without source routing");
                if to.prefix_len() == 0 && main {
                    defaults[usize::from(matches!(to, IpNet::V6(_)))] += 1;
                }
            }
            prop_assert!(source_routing || entry["routing-policy"].is_badvalue());
        }
    }
    prop_assert!(
        defaults[0] <= 1 && defaults[1] <= 1,
        "defaults {:?}",
        defaults
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn machines_are_accepted_whole_or_refused_without_change(
        specs in prop::collection::vec(spec(), 1..9),
        gw in prop::option::of(0usize..9),
        boot in prop::option::of(0usize..9),
        dhcp_on in any::<bool>(),
        change in 0usize..9,
    ) {
        let b = base(dhcp_on);
        let mut topo = b.topo.clone();
        let machine = build(&b, &specs, gw, boot);
        let before = topo.clone();
        let Ok(id) = topo.create_machine(machine) else {
            prop_assert_eq!(&topo, &before, "a refused machine changed the topology");
            return Ok(());
        };
        let before = topo.clone();
        if topo.assign_auto_addresses(id, &maas_net::NoOracle).is_err() {
            prop_assert_eq!(&topo, &before);
        }
        for source_routing in [false, true] {
            for commissioning in [false, true] {
                let mut options = RenderOptions::default();
                options
                    .source_routing(source_routing)
                    .commissioning(commissioning)
                    .dns_server(ip("10.77.0.2"));
                let plan = netplan::plan(&topo, id, &options).unwrap();
                let v2 = plan.to_v2();
                prop_assert_eq!(&netplan::plan(&topo, id, &options).unwrap().to_v2(), &v2);
                check_v2_shape(&v2, source_routing)?;
                let v1 = plan.to_v1();
                let docs = YamlLoader::load_from_str(&v1).unwrap();
                prop_assert_eq!(docs[0]["network"]["version"].as_i64(), Some(1));
            }
        }
        // A change to another interface's address: applied whole, or refused with nothing
        // changed.
        let before = topo.clone();
        let target = change % specs.len();
        let taken = topo
            .machine(id)
            .unwrap()
            .addresses()
            .map(|(_, ip)| ip)
            .next();
        let result = topo.update_machine(id, |m| {
            let iface = &mut m.interfaces[target];
            iface.links = vec![Link {
                mode: LinkMode::Static,
                subnet: b.v4[1],
                ip: taken.or(Some(ip("10.77.0.150"))),
            }];
            iface.vlan = b.vlans[1];
        });
        if result.is_err() {
            prop_assert_eq!(&topo, &before, "a refused change changed the topology");
        }
    }
}
