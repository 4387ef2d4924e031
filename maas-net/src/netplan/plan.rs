//! Works out a machine's network configuration by MAAS's rules (see the module docs).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::ip::Family;
use crate::model::DEFAULT_MTU;
use crate::{
    Error, Interface, InterfaceKind, Kind, LinkMode, Machine, MachineId, StaticRouteId, Subnet,
    SubnetId, Topology,
};

use super::{
    AddressPlan, BridgeParams, InterfacePlan, KindPlan, MAIN_TABLE, NetworkPlan, POLICY_PRIORITY,
    RenderOptions, RoutePlan, RulePlan,
};

/// The last routing table source routing may use; Linux keeps 253 to 255.
const LAST_TABLE: u32 = 252;

/// Works out what each interface of a machine gets. Fails only for an unknown machine or when
/// source routing needs more than 252 routing tables.
pub fn plan(
    topo: &Topology,
    machine: MachineId,
    options: &RenderOptions,
) -> Result<NetworkPlan, Error> {
    let m = topo.machine(machine).ok_or(Error::NotFound {
        kind: Kind::Machine,
        id: machine.get(),
    })?;
    Planner::new(topo, m, options).run()
}

/// A link that could carry a default route: (interface index, link index).
type LinkRef = (usize, usize);

/// MAAS's order of default-gateway candidates: no DHCP on the VLAN, interface type, link
/// mode, interface index, link index; lowest first.
type Rank = (bool, u8, u8, usize, usize);

struct Planner<'a> {
    topo: &'a Topology,
    m: &'a Machine,
    options: &'a RenderOptions,
    /// The machine's interfaces by name.
    by_name: HashMap<&'a str, usize>,
    /// The boot interface, configured by DHCP in the commissioning form.
    dhcp_boot: Option<usize>,
    /// The chosen default-gateway link of each family.
    default_v4: Option<LinkRef>,
    default_v6: Option<LinkRef>,
    /// Every candidate link (source routing gives the others a table).
    candidates: BTreeSet<LinkRef>,
    search: Vec<String>,
    next_table: u32,
}

impl<'a> Planner<'a> {
    fn new(topo: &'a Topology, m: &'a Machine, options: &'a RenderOptions) -> Self {
        let by_name = m
            .interfaces
            .iter()
            .enumerate()
            .map(|(i, iface)| (iface.name.as_str(), i))
            .collect::<HashMap<_, _>>();
        let dhcp_boot = options
            .commissioning
            .then(|| {
                m.boot_interface_name()
                    .and_then(|b| by_name.get(b).copied())
            })
            .flatten();
        let mut search = vec![m.domain.clone()];
        for domain in &options.search {
            if !search.contains(domain) {
                search.push(domain.clone());
            }
        }
        let mut planner = Self {
            topo,
            m,
            options,
            by_name,
            dhcp_boot,
            default_v4: None,
            default_v6: None,
            candidates: BTreeSet::new(),
            search,
            next_table: 1,
        };
        planner.choose_gateways();
        planner
    }

    fn subnet(&self, id: Option<SubnetId>) -> Option<&'a Subnet> {
        self.topo.subnet(id?)
    }

    fn configured(&self, index: usize) -> bool {
        self.m.is_enabled(&self.m.interfaces[index].name)
    }

    /// The candidates for the default routes, best first by MAAS's order, and the chosen
    /// link of each family (the machine's gateway link wins when it is usable).
    fn choose_gateways(&mut self) {
        let boot = self.m.boot_interface_name();
        let mut ranked: Vec<(Rank, Family)> = Vec::new();
        for (i, iface) in self.m.interfaces.iter().enumerate() {
            if !self.configured(i) || Some(i) == self.dhcp_boot {
                continue;
            }
            let type_rank = match iface.kind {
                InterfaceKind::Bond(_) | InterfaceKind::Bridge(_) => 1,
                InterfaceKind::Physical if Some(iface.name.as_str()) == boot => 2,
                InterfaceKind::Physical => 3,
                InterfaceKind::Vlan => 4,
            };
            for (l, link) in iface.links.iter().enumerate() {
                let Some(subnet) = self.subnet(link.subnet) else {
                    continue;
                };
                let mode_rank = match link.mode {
                    LinkMode::Static if link.ip.is_some() => 1,
                    LinkMode::Auto => 3,
                    _ => continue,
                };
                if subnet.gateway_ip.is_none() {
                    continue;
                }
                let dhcp_on = self.topo.vlan(subnet.vlan).is_some_and(|v| v.dhcp_on);
                ranked.push((
                    (!dhcp_on, type_rank, mode_rank, i, l),
                    Family::of_net(subnet.cidr),
                ));
                self.candidates.insert((i, l));
            }
        }
        ranked.sort();
        for family in [Family::V4, Family::V6] {
            let explicit = match family {
                Family::V4 => &self.m.gateway_link_ipv4,
                Family::V6 => &self.m.gateway_link_ipv6,
            };
            let chosen = explicit
                .as_deref()
                .and_then(|name| self.explicit_link(name, family))
                .or_else(|| {
                    ranked
                        .iter()
                        .find(|(_, f)| *f == family)
                        .map(|((.., i, l), _)| (*i, *l))
                });
            match family {
                Family::V4 => self.default_v4 = chosen,
                Family::V6 => self.default_v6 = chosen,
            }
        }
    }

    /// The link a gateway-link interface gives: its first candidate link of the family.
    fn explicit_link(&self, name: &str, family: Family) -> Option<LinkRef> {
        let i = *self.by_name.get(name)?;
        self.m.interfaces[i]
            .links
            .iter()
            .enumerate()
            .find(|(l, link)| {
                self.candidates.contains(&(i, *l))
                    && self
                        .subnet(link.subnet)
                        .is_some_and(|s| Family::of_net(s.cidr) == family)
            })
            .map(|(l, _)| (i, l))
    }

    /// Interfaces in rendering order: parents before children, otherwise as declared.
    fn order(&self) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.m.interfaces.len());
        let mut placed = vec![false; self.m.interfaces.len()];
        for start in 0..self.m.interfaces.len() {
            let mut stack = vec![(start, 0usize)];
            while let Some((i, next)) = stack.pop() {
                if placed[i] {
                    continue;
                }
                let parents = &self.m.interfaces[i].parents;
                match parents.get(next).and_then(|p| self.by_name.get(p.as_str())) {
                    Some(&p) if !placed[p] && stack.len() <= self.m.interfaces.len() => {
                        stack.push((i, next + 1));
                        stack.push((p, 0));
                    }
                    _ if next < parents.len() => stack.push((i, next + 1)),
                    _ => {
                        placed[i] = true;
                        order.push(i);
                    }
                }
            }
        }
        order
    }

    /// The MAC address: the interface's own, else its first parent's.
    fn effective_mac(&self, iface: &Interface, depth: usize) -> Option<crate::Mac> {
        if iface.mac.is_some() || depth > self.m.interfaces.len() {
            return iface.mac;
        }
        let parent = self.m.interface(iface.parents.first()?)?;
        self.effective_mac(parent, depth + 1)
    }

    /// The MTU: the interface's own, else its VLAN's, raised to its children's.
    fn mtu(&self, index: usize, depth: usize) -> u32 {
        let iface = &self.m.interfaces[index];
        let own = iface
            .mtu
            .or_else(|| iface.vlan.and_then(|v| self.topo.vlan(v)).map(|v| v.mtu))
            .unwrap_or(DEFAULT_MTU);
        if depth > self.m.interfaces.len() {
            return own;
        }
        self.m
            .interfaces
            .iter()
            .enumerate()
            .filter(|(_, c)| c.parents.contains(&iface.name))
            .map(|(c, _)| self.mtu(c, depth + 1))
            .fold(own, u32::max)
    }

    fn run(mut self) -> Result<NetworkPlan, Error> {
        let order = self.order();
        let mut interfaces = Vec::with_capacity(order.len());
        for i in order {
            if self.configured(i) {
                interfaces.push(self.interface(i)?);
            }
        }
        let dns_servers = self.default_dns(&interfaces);
        // Interfaces with addresses but no name servers get the machine's, unless one of
        // their subnets refuses DNS.
        if !dns_servers.is_empty() {
            for plan in &mut interfaces {
                let index = self.by_name[plan.name.as_str()];
                let all_allow = self.m.interfaces[index]
                    .links
                    .iter()
                    .filter_map(|l| self.subnet(l.subnet))
                    .all(|s| s.allow_dns);
                let has_address = plan.addresses.iter().any(|a| a.address.is_some());
                if plan.nameservers.is_empty() && has_address && all_allow {
                    plan.nameservers.clone_from(&dns_servers);
                    plan.nameserver_search.clone_from(&self.search);
                }
            }
        }
        Ok(NetworkPlan {
            interfaces,
            dns_servers,
            search: self.search,
        })
    }

    fn interface(&mut self, index: usize) -> Result<InterfacePlan, Error> {
        let iface: &'a Interface = &self.m.interfaces[index];
        let enabled_parents = || -> Vec<String> {
            let mut names: Vec<String> = iface
                .parents
                .iter()
                .filter(|p| self.m.is_enabled(p))
                .cloned()
                .collect();
            names.sort();
            names
        };
        let first_parent_mac = || self.effective_mac(iface, 0);
        let kind = match &iface.kind {
            InterfaceKind::Physical => KindPlan::Physical {
                mac: iface.mac.unwrap_or_default(),
            },
            InterfaceKind::Vlan => KindPlan::Vlan {
                parent: iface.parents.first().cloned().unwrap_or_default(),
                vid: iface
                    .vlan
                    .and_then(|v| self.topo.vlan(v))
                    .map_or(0, |v| v.vid),
            },
            InterfaceKind::Bond(params) => KindPlan::Bond {
                mac: iface.mac.or_else(first_parent_mac),
                parents: enabled_parents(),
                params: params.clone(),
            },
            InterfaceKind::Bridge(params) => KindPlan::Bridge {
                mac: iface.mac.or_else(first_parent_mac),
                parents: enabled_parents(),
                params: params.clone(),
            },
        };
        let ovs = matches!(
            iface.kind,
            InterfaceKind::Bridge(BridgeParams {
                kind: crate::BridgeType::Ovs,
                ..
            })
        );
        let mut plan = InterfacePlan {
            name: iface.name.clone(),
            kind,
            mtu: self.mtu(index, 0),
            accept_ra: iface.accept_ra,
            link_up: false,
            addresses: Vec::new(),
            dhcp4: false,
            dhcp6: false,
            routes: Vec::new(),
            routing_policy: Vec::new(),
            nameservers: Vec::new(),
            nameserver_search: Vec::new(),
            optional: match (iface.vlan, ovs) {
                (None, _) => Some(true),
                (Some(_), true) => Some(false),
                (Some(_), false) => None,
            },
        };
        self.dhcp(index, &mut plan);
        let addressed: Vec<usize> = if Some(index) == self.dhcp_boot {
            Vec::new()
        } else {
            (0..iface.links.len())
                .filter(|l| iface.links[*l].is_addressed() && iface.links[*l].subnet.is_some())
                .collect()
        };
        if addressed.is_empty() && !plan.dhcp4 && !plan.dhcp6 {
            plan.link_up = true;
            return Ok(plan);
        }
        let mut defaults = Vec::new();
        let mut main_routes: Vec<(StaticRouteId, RoutePlan)> = Vec::new();
        let mut search = false;
        for l in addressed {
            let link = &iface.links[l];
            let Some(subnet) = self.subnet(link.subnet) else {
                continue;
            };
            let family = Family::of_net(subnet.cidr);
            let routes: Vec<(StaticRouteId, RoutePlan)> = link
                .subnet
                .map(|s| self.topo.static_routes_from(s).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(id, r)| {
                    let to = self.topo.subnet(r.destination)?.cidr;
                    Some((
                        id,
                        RoutePlan {
                            to,
                            via: r.gateway_ip,
                            metric: Some(r.metric),
                            table: None,
                        },
                    ))
                })
                .collect();
            let is_default = match family {
                Family::V4 => self.default_v4 == Some((index, l)),
                Family::V6 => self.default_v6 == Some((index, l)),
            };
            let mut entry = AddressPlan {
                subnet: subnet.cidr,
                address: link
                    .ip
                    .and_then(|ip| IpNet::new(ip, subnet.cidr.prefix_len()).ok()),
                gateway: None,
                dns: Vec::new(),
                search: Vec::new(),
                routes: routes.iter().map(|(_, r)| r.clone()).collect(),
            };
            if is_default {
                entry.gateway = subnet.gateway_ip;
                if let Some(gw) = subnet.gateway_ip {
                    defaults.push(RoutePlan {
                        to: any(family),
                        via: gw,
                        metric: None,
                        table: None,
                    });
                }
                main_routes.extend(routes);
            } else if self.options.source_routing
                && self.candidates.contains(&(index, l))
                && let Some(gw) = subnet.gateway_ip
            {
                self.source_route(&mut plan, subnet.cidr, gw, &routes)?;
            } else {
                main_routes.extend(routes);
            }
            entry.dns = self.subnet_dns(subnet);
            if subnet.allow_dns {
                search = true;
                if !entry.dns.is_empty() {
                    entry.search.clone_from(&self.search);
                }
            }
            for ip in &entry.dns {
                if !plan.nameservers.contains(ip) {
                    plan.nameservers.push(*ip);
                }
            }
            plan.addresses.push(entry);
        }
        if search && !plan.nameservers.is_empty() {
            plan.nameserver_search.clone_from(&self.search);
        }
        main_routes.sort_by_key(|(id, _)| *id);
        main_routes.dedup_by_key(|(id, _)| *id);
        let mut routes = defaults;
        routes.extend(main_routes.into_iter().map(|(_, r)| r));
        routes.append(&mut plan.routes);
        plan.routes = routes;
        Ok(plan)
    }

    /// DHCP families: from DHCP links (both for a link without subnet), or, for the boot
    /// interface in the commissioning form, from every link's subnet (IPv4 when none).
    fn dhcp(&self, index: usize, plan: &mut InterfacePlan) {
        let iface = &self.m.interfaces[index];
        let commissioning = Some(index) == self.dhcp_boot;
        for link in &iface.links {
            if link.mode != LinkMode::Dhcp && !commissioning {
                continue;
            }
            match self.subnet(link.subnet).map(|s| Family::of_net(s.cidr)) {
                Some(Family::V4) => plan.dhcp4 = true,
                Some(Family::V6) => plan.dhcp6 = true,
                None if link.mode == LinkMode::Dhcp => {
                    plan.dhcp4 = true;
                    plan.dhcp6 = true;
                }
                None => {}
            }
        }
        if commissioning && !plan.dhcp4 && !plan.dhcp6 {
            plan.dhcp4 = true;
        }
    }

    /// Gives a secondary gateway its own routing table, as MAAS's source routing does.
    fn source_route(
        &mut self,
        plan: &mut InterfacePlan,
        subnet: IpNet,
        gateway: IpAddr,
        routes: &[(StaticRouteId, RoutePlan)],
    ) -> Result<(), Error> {
        let table = self.next_table;
        if table > LAST_TABLE {
            return Err(Error::RoutingTablesExhausted);
        }
        self.next_table += 1;
        let family = Family::of_net(subnet);
        plan.routes.push(RoutePlan {
            to: any(family),
            via: gateway,
            metric: None,
            table: Some(table),
        });
        plan.routing_policy.push(RulePlan {
            from: subnet,
            to: None,
            table,
            priority: Some(POLICY_PRIORITY),
        });
        plan.routing_policy.push(RulePlan {
            from: subnet,
            to: Some(subnet),
            table: MAIN_TABLE,
            priority: None,
        });
        for (_, route) in routes {
            plan.routing_policy.push(RulePlan {
                from: any(family),
                to: Some(route.to),
                table,
                priority: Some(POLICY_PRIORITY),
            });
            plan.routes.push(RoutePlan {
                table: Some(table),
                ..route.clone()
            });
        }
        Ok(())
    }

    /// The name servers a subnet brings: the controller's (when it allows DNS) then its own.
    fn subnet_dns(&self, subnet: &Subnet) -> Vec<IpAddr> {
        let family = Family::of_net(subnet.cidr);
        let mut dns: Vec<IpAddr> = Vec::new();
        if subnet.allow_dns {
            for ip in &self.options.dns_servers {
                let reachable = subnet.gateway_ip.is_some() || subnet.cidr.contains(ip);
                if Family::of(*ip) == family && reachable && !dns.contains(ip) {
                    dns.push(*ip);
                }
            }
        }
        for ip in &subnet.dns_servers {
            if !dns.contains(ip) {
                dns.push(*ip);
            }
        }
        dns
    }

    /// The machine's default name servers.
    fn default_dns(&self, interfaces: &[InterfacePlan]) -> Vec<IpAddr> {
        for (family, chosen) in [(Family::V4, self.default_v4), (Family::V6, self.default_v6)] {
            let Some((i, l)) = chosen else { continue };
            let Some(subnet) = self.subnet(self.m.interfaces[i].links[l].subnet) else {
                continue;
            };
            if subnet.dns_servers.is_empty() {
                continue;
            }
            if !subnet.allow_dns {
                return subnet.dns_servers.clone();
            }
            let mut dns: Vec<IpAddr> = self
                .options
                .dns_servers
                .iter()
                .copied()
                .filter(|ip| Family::of(*ip) == family)
                .collect();
            for ip in &subnet.dns_servers {
                if !dns.contains(ip) {
                    dns.push(*ip);
                }
            }
            return dns;
        }
        // Otherwise the controller's addresses: of the families with a default gateway, or
        // with none, of the families in use (IPv4 at least); never one on a subnet that
        // refuses DNS.
        let (v4, v6) = if self.default_v4.is_some() || self.default_v6.is_some() {
            (self.default_v4.is_some(), self.default_v6.is_some())
        } else {
            let has = |f: Family| {
                interfaces.iter().any(|p| {
                    p.addresses.iter().any(|a| Family::of_net(a.subnet) == f)
                        || (f == Family::V4 && p.dhcp4)
                        || (f == Family::V6 && p.dhcp6)
                })
            };
            let v6 = has(Family::V6);
            (has(Family::V4) || !v6, v6)
        };
        let mut dns = Vec::new();
        for ip in &self.options.dns_servers {
            let wanted = match Family::of(*ip) {
                Family::V4 => v4,
                Family::V6 => v6,
            };
            let refused = self
                .topo
                .subnet_containing(*ip)
                .and_then(|s| self.topo.subnet(s))
                .is_some_and(|s| !s.allow_dns);
            if wanted && !refused && !dns.contains(ip) {
                dns.push(*ip);
            }
        }
        dns
    }
}

/// The whole address space of a family, the destination of a default route.
fn any(family: Family) -> IpNet {
    match family {
        Family::V4 => IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        Family::V6 => IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
    .unwrap_or_default()
}
