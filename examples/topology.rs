//! Loads a topology file, checks it against MAAS's rules and prints a summary.
//!
//! ```text
//! cargo run --release --example topology -- [FILE.toml|FILE.json]
//! ```
//!
//! Without an argument it reads `examples/topology.toml`. A file that breaks a rule is refused
//! with every problem listed, and the exit status is 1.

use std::process::ExitCode;

use maas_net::ip::{self, Family};
use maas_net::{IpRangeKind, Topology};

fn main() -> ExitCode {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/topology.toml").to_owned()
    });
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let parsed = if path.ends_with(".json") {
        serde_json::from_str::<Topology>(&text).map_err(|e| e.to_string())
    } else {
        toml::from_str::<Topology>(&text).map_err(|e| e.to_string())
    };
    match parsed {
        Ok(topo) => {
            print!("{}", summary(&topo));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn summary(topo: &Topology) -> String {
    let mut out = String::new();
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    out += &format!(
        "{}, {}, {}, {}, {}, {}\n",
        count(topo.zones().count(), "zone"),
        count(topo.spaces().count(), "space"),
        count(topo.fabrics().count(), "fabric"),
        count(topo.vlans().count(), "VLAN"),
        count(topo.subnets().count(), "subnet"),
        count(topo.ip_ranges().count(), "IP range"),
    );
    for (fabric_id, fabric) in topo.fabrics() {
        out += &format!("fabric {} (id {fabric_id})\n", fabric.name);
        for (vlan_id, vlan) in topo.vlans_on(fabric_id) {
            let space = vlan
                .space
                .and_then(|s| topo.space(s))
                .map_or("-", |s| s.name.as_str());
            let dhcp = match (vlan.dhcp_on, vlan.relay_vlan) {
                (true, _) => "dhcp on".to_owned(),
                (false, Some(relay)) => format!("dhcp relayed to {}", topo.vlan_label(relay)),
                (false, None) => "dhcp off".to_owned(),
            };
            out += &format!(
                "  vlan {} {} (id {vlan_id}): mtu {}, {dhcp}, space {space}\n",
                vlan.vid,
                vlan.name.as_deref().unwrap_or(""),
                vlan.mtu
            );
            for (subnet_id, subnet) in topo.subnets_on(vlan_id) {
                let (first, last) = ip::usable_bounds(subnet.cidr);
                let family = Family::of_net(subnet.cidr);
                let mut in_ranges = [0u128; 2];
                for (_, r) in topo.ip_ranges_in(subnet_id) {
                    in_ranges[usize::from(r.kind == IpRangeKind::Reserved)] += r.size();
                }
                out += &format!(
                    "    subnet {} (id {subnet_id}){}: usable {}-{} ({} addresses), gateway {}, \
                     dynamic {}, reserved {}\n",
                    subnet.cidr,
                    if subnet.managed { "" } else { " unmanaged" },
                    ip::from_bits(family, first),
                    ip::from_bits(family, last),
                    last - first + 1,
                    subnet.gateway_ip.map_or("-".to_owned(), |g| g.to_string()),
                    in_ranges[0],
                    in_ranges[1],
                );
                for (_, r) in topo.ip_ranges_in(subnet_id) {
                    out += &format!("      {} {}-{} {}\n", r.kind, r.start, r.end, r.comment);
                }
            }
        }
    }
    for (_, machine) in topo.machines() {
        out += &format!("machine {}.{}\n", machine.hostname, machine.domain);
        for iface in &machine.interfaces {
            let vlan = iface
                .vlan
                .map_or_else(|| "no VLAN".to_owned(), |v| topo.vlan_label(v));
            let addresses: Vec<String> = iface
                .links
                .iter()
                .map(|l| match l.ip {
                    Some(ip) => format!("{} {ip}", l.mode),
                    None => l.mode.to_string(),
                })
                .collect();
            out += &format!(
                "  {} {} on {vlan}: {}\n",
                iface.type_name(),
                iface.name,
                if addresses.is_empty() {
                    "no links".to_owned()
                } else {
                    addresses.join(", ")
                }
            );
        }
    }
    for (_, route) in topo.static_routes() {
        let cidr = |id| {
            topo.subnet(id)
                .map(|s| s.cidr.to_string())
                .unwrap_or_default()
        };
        out += &format!(
            "route {} -> {} via {} metric {}\n",
            cidr(route.source),
            cidr(route.destination),
            route.gateway_ip,
            route.metric
        );
    }
    out
}
