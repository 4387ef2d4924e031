//! The version-1 network configuration of curtin and cloud-init.

use crate::BondMode;

use super::yaml::{Map, Node, document};
use super::{InterfacePlan, KindPlan, NetworkPlan};

impl NetworkPlan {
    /// The plan as a version-1 document: `network:` with `version: 1` and a `config` list of
    /// interfaces (parents first) with their `subnets`, then a `nameserver` entry with the
    /// machine's default name servers unless every interface is configured by DHCP or not at
    /// all. Parameters take the names and types of cloud-init's version-1 schema (kernel names
    /// after `bond-`, `bond-updelay` as a string, `bridge_stp` as `on`/`off`, `accept-ra` as a
    /// boolean), which its converters to netplan and networkd also read. Source
    /// routing has no version-1 form and is left out. Entries carry no `id` key (MAAS writes
    /// one for curtin): cloud-init's network-config schema refuses it.
    pub fn to_v1(&self) -> String {
        let mut config: Vec<Node> = self
            .interfaces
            .iter()
            .map(|i| interface(i).into())
            .collect();
        let dhcp_only = self
            .interfaces
            .iter()
            .all(|i| i.addresses.iter().all(|a| a.address.is_none()));
        if !self.dns_servers.is_empty() && !dhcp_only {
            let mut ns = Map::new();
            ns.put("type", "nameserver")
                .put("address", Node::list(&self.dns_servers))
                .put("search", Node::list(&self.search));
            config.push(ns.into());
        }
        let mut network = Map::new();
        network
            .put("version", 1u8)
            .put("config", Node::list(config));
        document(network)
    }
}

fn interface(iface: &InterfacePlan) -> Map {
    let mut map = Map::new();
    match &iface.kind {
        KindPlan::Physical { mac } => {
            map.put("type", "physical")
                .put("name", &iface.name)
                .put("mac_address", mac.to_string());
        }
        KindPlan::Vlan { parent, vid } => {
            map.put("type", "vlan")
                .put("name", &iface.name)
                .put("vlan_link", parent)
                .put("vlan_id", *vid);
        }
        KindPlan::Bond {
            mac,
            parents,
            params,
        } => {
            map.put("type", "bond")
                .put("name", &iface.name)
                .put_some("mac_address", mac.map(|m| m.to_string()))
                .put("bond_interfaces", Node::list(parents));
            let mut p = Map::new();
            p.put("bond-mode", params.mode.as_str())
                .put("bond-miimon", params.miimon)
                .put("bond-downdelay", params.downdelay)
                .put("bond-updelay", params.updelay.to_string());
            if params.mode == BondMode::ActiveBackup {
                p.put("bond-num_grat_arp", params.num_grat_arp);
            }
            if params.mode == BondMode::Ieee8023ad {
                p.put("bond-lacp_rate", params.lacp_rate.as_str());
            }
            p.put("bond-xmit_hash_policy", params.xmit_hash_policy.as_str());
            map.put("params", p);
        }
        KindPlan::Bridge {
            mac,
            parents,
            params,
        } => {
            // The schema has no `mac_address` or `mtu` for a bridge: the MAC goes in
            // `bridge_hw`, and the MTU follows the members (which carry it).
            map.put("type", "bridge")
                .put("name", &iface.name)
                .put("bridge_interfaces", Node::list(parents));
            let mut p = Map::new();
            p.put("bridge_stp", if params.stp { "on" } else { "off" })
                .put("bridge_fd", params.fd)
                .put_some("bridge_hw", mac.map(|m| m.to_string()));
            map.put("params", p);
        }
    }
    if !matches!(iface.kind, KindPlan::Bridge { .. }) {
        map.put("mtu", iface.mtu);
    }
    map.put_some("accept-ra", iface.accept_ra);
    let mut subnets: Vec<Node> = Vec::new();
    if iface.link_up {
        let mut manual = Map::new();
        manual.put("type", "manual");
        subnets.push(manual.into());
    }
    for a in &iface.addresses {
        let Some(address) = a.address else { continue };
        let mut s = Map::new();
        s.put("type", "static")
            .put("address", address)
            .put_some("gateway", a.gateway)
            .put_list("dns_nameservers", &a.dns)
            .put_list("dns_search", &a.search)
            .put_list(
                "routes",
                a.routes.iter().map(|r| {
                    let mut route = Map::new();
                    route
                        .put("destination", r.to)
                        .put("gateway", r.via)
                        .put_some("metric", r.metric);
                    route
                }),
            );
        subnets.push(s.into());
    }
    let dhcp = match (iface.dhcp4, iface.dhcp6) {
        (true, true) => Some("dhcp"),
        (true, false) => Some("dhcp4"),
        (false, true) => Some("dhcp6"),
        (false, false) => None,
    };
    if let Some(dhcp) = dhcp {
        let mut d = Map::new();
        d.put("type", dhcp);
        subnets.push(d.into());
    }
    map.put_list("subnets", subnets);
    map
}
