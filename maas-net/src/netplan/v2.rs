//! netplan version 2 (cloud-init network-config version 2).

use crate::{BondMode, BridgeType};

use super::yaml::{Map, Node, document};
use super::{InterfacePlan, KindPlan, NetworkPlan};

impl NetworkPlan {
    /// The plan as a netplan version-2 document: `network:` with `version: 2` and the sections
    /// `ethernets`, `vlans`, `bonds`, `bridges` in that order (empty ones left out).
    pub fn to_v2(&self) -> String {
        let mut sections: [Map; 4] = Default::default();
        for iface in &self.interfaces {
            let section = match iface.kind {
                KindPlan::Physical { .. } => 0,
                KindPlan::Vlan { .. } => 1,
                KindPlan::Bond { .. } => 2,
                KindPlan::Bridge { .. } => 3,
            };
            sections[section].put(&iface.name, interface(iface));
        }
        let mut network = Map::new();
        network.put("version", 2u8);
        for (name, section) in ["ethernets", "vlans", "bonds", "bridges"]
            .into_iter()
            .zip(sections)
        {
            if !section.is_empty() {
                network.put(name, section);
            }
        }
        document(network)
    }
}

fn interface(iface: &InterfacePlan) -> Map {
    let mut map = Map::new();
    let mut parameters = None;
    match &iface.kind {
        KindPlan::Physical { mac } => {
            let mut matching = Map::new();
            matching.put("macaddress", mac.to_string());
            map.put("match", matching).put("set-name", &iface.name);
        }
        KindPlan::Vlan { parent, vid } => {
            map.put("id", *vid).put("link", parent);
        }
        KindPlan::Bond {
            mac,
            parents,
            params,
        } => {
            map.put("interfaces", Node::list(parents))
                .put_some("macaddress", mac.map(|m| m.to_string()));
            let mut p = Map::new();
            p.put("mode", params.mode.as_str());
            if params.mode == BondMode::Ieee8023ad {
                p.put("lacp-rate", params.lacp_rate.as_str());
            }
            // A string: cloud-init's version-2 schema types it so, and netplan takes either.
            p.put("mii-monitor-interval", params.miimon.to_string())
                .put("up-delay", params.updelay)
                .put("down-delay", params.downdelay)
                .put("transmit-hash-policy", params.xmit_hash_policy.as_str());
            if params.mode == BondMode::ActiveBackup {
                p.put("gratuitous-arp", params.num_grat_arp);
            }
            parameters = Some(p);
        }
        KindPlan::Bridge {
            mac,
            parents,
            params,
        } => {
            map.put("interfaces", Node::list(parents))
                .put_some("macaddress", mac.map(|m| m.to_string()));
            if params.kind == BridgeType::Ovs {
                map.put("openvswitch", Map::new());
            }
            let mut p = Map::new();
            p.put("forward-delay", params.fd).put("stp", params.stp);
            parameters = Some(p);
        }
    }
    map.put("mtu", iface.mtu)
        .put_some("parameters", parameters)
        .put_some("accept-ra", iface.accept_ra)
        .put_list(
            "addresses",
            iface.addresses.iter().filter_map(|a| a.address),
        );
    if iface.dhcp4 {
        map.put("dhcp4", true);
    }
    if iface.dhcp6 {
        map.put("dhcp6", true);
    }
    map.put_list(
        "routes",
        iface.routes.iter().map(|r| {
            let mut route = Map::new();
            route
                .put("to", r.to)
                .put("via", r.via)
                .put_some("metric", r.metric)
                .put_some("table", r.table);
            route
        }),
    );
    map.put_list(
        "routing-policy",
        iface.routing_policy.iter().map(|r| {
            let mut rule = Map::new();
            rule.put("from", r.from)
                .put_some("to", r.to)
                .put("table", r.table)
                .put_some("priority", r.priority);
            rule
        }),
    );
    if !iface.nameservers.is_empty() {
        let mut ns = Map::new();
        ns.put_list("addresses", &iface.nameservers)
            .put_list("search", &iface.nameserver_search);
        map.put("nameservers", ns);
    }
    map.put_some("optional", iface.optional);
    map
}
