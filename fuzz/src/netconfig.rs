//! The property the `net_machines` fuzz target checks: a topology document with machines either
//! loads or is refused without panicking, and a loaded one renders every machine in both
//! forms, identically each time, as YAML that parses back with the interfaces in the sections
//! of their kinds. `maas-net/tests/integration/fuzz_corpus.rs` includes this file to replay the
//! corpus under `cargo test`.

use std::str;

use maas_net::netplan::{self, KindPlan, RenderOptions};
use maas_net::{Error, Topology};
use yaml_rust2::{Yaml, YamlLoader};

/// TOML text -> topology with machines -> both renderings, with and without source routing.
pub fn check_net_machines(data: &[u8]) {
    let Ok(s) = str::from_utf8(data) else {
        return;
    };
    let Ok(topo) = toml::from_str::<Topology>(s) else {
        return;
    };
    let text = toml::to_string(&topo).expect("a loaded topology serializes to TOML");
    match toml::from_str::<Topology>(&text) {
        Ok(back) => assert_eq!(back, topo, "the TOML round trip changed it:\n{text}"),
        Err(e) => panic!("the TOML of a loaded topology does not load: {e}\n{text}"),
    }
    let mut options = RenderOptions::default();
    options.dns_server("10.77.0.2".parse().expect("an address"));
    for source_routing in [false, true] {
        options.source_routing(source_routing);
        for (id, machine) in topo.machines() {
            let plan = match netplan::plan(&topo, id, &options) {
                Ok(plan) => plan,
                Err(Error::RoutingTablesExhausted) => continue,
                Err(e) => panic!(
                    "{}: a loaded machine does not render: {e}",
                    machine.hostname
                ),
            };
            let again = netplan::plan(&topo, id, &options).expect("rendered once");
            assert_eq!(
                plan, again,
                "{}: rendering is not deterministic",
                machine.hostname
            );
            let v2 = plan.to_v2();
            assert_eq!(v2, again.to_v2(), "{}: v2 text differs", machine.hostname);
            let v1 = plan.to_v1();
            assert_eq!(v1, again.to_v1(), "{}: v1 text differs", machine.hostname);
            let network = parse(&v2, 2);
            for iface in &plan.interfaces {
                let section = match iface.kind {
                    KindPlan::Physical { .. } => "ethernets",
                    KindPlan::Vlan { .. } => "vlans",
                    KindPlan::Bond { .. } => "bonds",
                    KindPlan::Bridge { .. } => "bridges",
                    _ => continue,
                };
                let entry = &network[section][iface.name.as_str()];
                assert!(
                    entry.as_hash().is_some(),
                    "{}: {} missing from {section}:\n{v2}",
                    machine.hostname,
                    iface.name
                );
                assert_eq!(
                    entry["mtu"].as_i64(),
                    Some(i64::from(iface.mtu)),
                    "{}: {}:\n{v2}",
                    machine.hostname,
                    iface.name
                );
            }
            let config = parse(&v1, 1);
            let entries = config["config"].as_vec().map_or(0, Vec::len);
            assert!(
                entries >= plan.interfaces.len(),
                "{}: v1 lists {entries} entries for {} interfaces:\n{v1}",
                machine.hostname,
                plan.interfaces.len()
            );
        }
    }
}

/// The `network` mapping of a rendered document, which must be one YAML document of this
/// version.
fn parse(text: &str, version: i64) -> Yaml {
    assert!(text.starts_with("network:\n"), "{text}");
    let docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert_eq!(docs.len(), 1, "{text}");
    let network = docs[0]["network"].clone();
    assert_eq!(network["version"].as_i64(), Some(version), "{text}");
    network
}
