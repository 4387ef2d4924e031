//! maas-net's rendered network configuration against the real consumers: netplan (Debian's
//! `netplan.io`) and cloud-init.
//!
//! - netplan: every case's version-2 document goes into a scratch root's `etc/netplan`, and
//!   `netplan generate --root-dir` must accept it; the systemd-networkd files it writes
//!   (`run/systemd/network/*.network`, `*.netdev`) are parsed and compared with the plan the
//!   document was written from: addresses, DHCP, default and static routes with metrics and
//!   tables, policy rules, DNS servers and search domains, MTU, `accept-ra`, optional links,
//!   MAC matching, VLAN ids, bond and bridge parameters, and which interface is whose member.
//! - cloud-init: both forms of every case are loaded as cloud-init loads them (PyYAML
//!   `safe_load`, YAML 1.1) and parsed by the installed cloud-init's strict network-config
//!   parser (`network_state.parse_net_config_data(..., skip_broken=False)`), then rendered by
//!   its systemd-networkd renderer; the addresses and gateways it read are compared with the
//!   plan. Debian 12's cloud-init (22.4) has no network-config schema, so each document also
//!   goes through `cloud-init schema --schema-type network-config` of Debian 13's cloud-init
//!   (25.x), which scripts/setup.sh unpacks under `$MAAS_CLOUD_INIT_SCHEMA_ROOT`. That check
//!   runs as it does on a system without netplan's Python bindings: against cloud-init's own
//!   JSON schemas for version 1 and version 2 (with the bindings present, cloud-init hands
//!   version 2 to netplan's parser, which the netplan test above already exercises).
//!
//! Needs root (like every peer test) and the tools scripts/setup.sh installs; a test without
//! them prints why and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use maas_net::netplan::{self, InterfacePlan, KindPlan, NetworkPlan};
use maas_net::{BondMode, BridgeType};
use support::can_run;
use support::netns::{Scratch, run_bounded};

#[path = "../maas-net/testdata/netconfig/cases.rs"]
mod cases;

/// One section of a systemd unit-style file: its name and key=value lines in order.
type Section = (String, Vec<(String, String)>);

fn parse_unit(text: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.to_owned(), Vec::new()));
        } else if let (Some((key, value)), Some(last)) = (line.split_once('='), sections.last_mut())
        {
            last.1.push((key.to_owned(), value.to_owned()));
        }
    }
    sections
}

/// Every value of `key` in sections called `section`.
fn values(unit: &[Section], section: &str, key: &str) -> Vec<String> {
    unit.iter()
        .filter(|(name, _)| name == section)
        .flat_map(|(_, kv)| kv.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()))
        .collect()
}

fn value(unit: &[Section], section: &str, key: &str) -> Option<String> {
    values(unit, section, key).into_iter().next()
}

/// The sections called `name`, each as a map.
fn sections(unit: &[Section], name: &str) -> Vec<BTreeMap<String, String>> {
    unit.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, kv)| kv.iter().cloned().collect())
        .collect()
}

fn read_unit(dir: &Path, name: &str) -> Option<Vec<Section>> {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .map(|t| parse_unit(&t))
}

/// What systemd-networkd was told about one interface, against what the plan meant.
fn check_interface(label: &str, dir: &Path, plan: &NetworkPlan, iface: &InterfacePlan) {
    let at = format!("{label}: {}", iface.name);
    let network = read_unit(dir, &format!("10-netplan-{}.network", iface.name))
        .unwrap_or_else(|| panic!("{at}: no .network file"));

    let addresses: Vec<String> = iface
        .addresses
        .iter()
        .filter_map(|a| a.address)
        .map(|a| a.to_string())
        .collect();
    assert_eq!(
        values(&network, "Network", "Address"),
        addresses,
        "{at}: addresses"
    );

    let dhcp = match (iface.dhcp4, iface.dhcp6) {
        (true, true) => Some("yes"),
        (true, false) => Some("ipv4"),
        (false, true) => Some("ipv6"),
        (false, false) => None,
    };
    assert_eq!(
        value(&network, "Network", "DHCP").as_deref(),
        dhcp,
        "{at}: DHCP"
    );

    let want_routes: BTreeSet<BTreeMap<String, String>> = iface
        .routes
        .iter()
        .map(|r| {
            let mut m = BTreeMap::new();
            m.insert("Destination".to_owned(), r.to.to_string());
            m.insert("Gateway".to_owned(), r.via.to_string());
            if let Some(metric) = r.metric {
                m.insert("Metric".to_owned(), metric.to_string());
            }
            if let Some(table) = r.table {
                m.insert("Table".to_owned(), table.to_string());
            }
            m
        })
        .collect();
    let got_routes: BTreeSet<BTreeMap<String, String>> =
        sections(&network, "Route").into_iter().collect();
    assert_eq!(got_routes, want_routes, "{at}: routes");

    let want_rules: BTreeSet<BTreeMap<String, String>> = iface
        .routing_policy
        .iter()
        .map(|r| {
            let mut m = BTreeMap::new();
            m.insert("From".to_owned(), r.from.to_string());
            if let Some(to) = r.to {
                m.insert("To".to_owned(), to.to_string());
            }
            m.insert("Table".to_owned(), r.table.to_string());
            if let Some(priority) = r.priority {
                m.insert("Priority".to_owned(), priority.to_string());
            }
            m
        })
        .collect();
    let got_rules: BTreeSet<BTreeMap<String, String>> = sections(&network, "RoutingPolicyRule")
        .into_iter()
        .collect();
    assert_eq!(got_rules, want_rules, "{at}: policy rules");

    let dns: Vec<String> = iface.nameservers.iter().map(ToString::to_string).collect();
    assert_eq!(values(&network, "Network", "DNS"), dns, "{at}: DNS");
    let domains = (!iface.nameserver_search.is_empty()).then(|| iface.nameserver_search.join(" "));
    assert_eq!(
        value(&network, "Network", "Domains"),
        domains,
        "{at}: search"
    );

    let mtu = value(&network, "Link", "MTUBytes").or_else(|| {
        read_unit(dir, &format!("10-netplan-{}.netdev", iface.name))
            .and_then(|n| value(&n, "NetDev", "MTUBytes"))
    });
    assert_eq!(mtu, Some(iface.mtu.to_string()), "{at}: MTU");
    let accept_ra = iface
        .accept_ra
        .map(|a| if a { "yes" } else { "no" }.to_owned());
    assert_eq!(
        value(&network, "Network", "IPv6AcceptRA"),
        accept_ra,
        "{at}: accept-ra"
    );
    let optional = (iface.optional == Some(true)).then(|| "no".to_owned());
    assert_eq!(
        value(&network, "Link", "RequiredForOnline"),
        optional,
        "{at}: optional"
    );

    // Membership: the parents' files name this interface.
    let member = |parent: &str, key: &str| {
        let unit = read_unit(dir, &format!("10-netplan-{parent}.network"))
            .unwrap_or_else(|| panic!("{at}: no .network for parent {parent}"));
        assert!(
            values(&unit, "Network", key).contains(&iface.name),
            "{at}: {parent} has no {key}={}",
            iface.name
        );
    };
    match &iface.kind {
        KindPlan::Physical { mac } => {
            assert_eq!(
                value(&network, "Match", "PermanentMACAddress").or_else(|| value(
                    &network,
                    "Match",
                    "MACAddress"
                )),
                Some(mac.to_string()),
                "{at}: MAC match"
            );
        }
        KindPlan::Vlan { parent, vid } => {
            let netdev = read_unit(dir, &format!("10-netplan-{}.netdev", iface.name)).unwrap();
            assert_eq!(
                value(&netdev, "NetDev", "Kind").as_deref(),
                Some("vlan"),
                "{at}"
            );
            assert_eq!(
                value(&netdev, "VLAN", "Id"),
                Some(vid.to_string()),
                "{at}: VID"
            );
            member(parent, "VLAN");
        }
        KindPlan::Bond {
            mac,
            parents,
            params,
        } => {
            let netdev = read_unit(dir, &format!("10-netplan-{}.netdev", iface.name)).unwrap();
            assert_eq!(
                value(&netdev, "NetDev", "Kind").as_deref(),
                Some("bond"),
                "{at}"
            );
            assert_eq!(
                value(&netdev, "NetDev", "MACAddress"),
                mac.map(|m| m.to_string()),
                "{at}: MAC"
            );
            assert_eq!(
                value(&netdev, "Bond", "Mode").as_deref(),
                Some(params.mode.as_str()),
                "{at}: mode"
            );
            assert_eq!(
                value(&netdev, "Bond", "TransmitHashPolicy").as_deref(),
                Some(params.xmit_hash_policy.as_str()),
                "{at}: hash policy"
            );
            assert_eq!(
                value(&netdev, "Bond", "MIIMonitorSec"),
                Some(format!("{}ms", params.miimon)),
                "{at}: miimon"
            );
            let lacp =
                (params.mode == BondMode::Ieee8023ad).then(|| params.lacp_rate.as_str().to_owned());
            assert_eq!(
                value(&netdev, "Bond", "LACPTransmitRate"),
                lacp,
                "{at}: lacp"
            );
            let grat =
                (params.mode == BondMode::ActiveBackup).then(|| params.num_grat_arp.to_string());
            assert_eq!(
                value(&netdev, "Bond", "GratuitousARP"),
                grat,
                "{at}: grat ARP"
            );
            for parent in parents {
                member(parent, "Bond");
            }
        }
        KindPlan::Bridge {
            mac,
            parents,
            params,
        } => {
            let netdev = read_unit(dir, &format!("10-netplan-{}.netdev", iface.name)).unwrap();
            assert_eq!(
                value(&netdev, "NetDev", "Kind").as_deref(),
                Some("bridge"),
                "{at}"
            );
            assert_eq!(
                value(&netdev, "NetDev", "MACAddress"),
                mac.map(|m| m.to_string()),
                "{at}: MAC"
            );
            assert_eq!(
                value(&netdev, "Bridge", "STP"),
                Some(params.stp.to_string()),
                "{at}: STP"
            );
            assert_eq!(
                value(&netdev, "Bridge", "ForwardDelaySec"),
                Some(params.fd.to_string()),
                "{at}: forward delay"
            );
            assert_ne!(params.kind, BridgeType::Ovs, "no Open vSwitch here");
            for parent in parents {
                member(parent, "Bridge");
            }
        }
        _ => panic!("{at}: a kind this test does not know"),
    }
    let _ = plan;
}

#[test]
fn netplan_generates_what_was_meant() {
    if !can_run("netplan_generates_what_was_meant", &["netplan"]) {
        return;
    }
    let started = Instant::now();
    for case in cases::CASES {
        let label = case.label();
        let (topo, id, options) = case.load();
        let plan = netplan::plan(&topo, id, &options).unwrap();
        let scratch = Scratch::new(&format!("netplan-{}", case.name));
        let conf = scratch.join("etc/netplan");
        std::fs::create_dir_all(&conf).unwrap();
        let file = conf.join("50-maas.yaml");
        std::fs::write(&file, plan.to_v2()).unwrap();
        // netplan warns about configuration files others can read.
        Command::new("chmod")
            .arg("600")
            .arg(&file)
            .status()
            .unwrap();
        let mut cmd = Command::new("netplan");
        cmd.arg("generate").arg("--root-dir").arg(scratch.join(""));
        let (lines, status) = run_bounded("netplan", cmd, Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "{label}: netplan generate refused the document:\n{}\n{}",
            lines.join("\n"),
            plan.to_v2()
        );
        assert!(
            !lines.iter().any(|l| l.contains("deprecated")),
            "{label}: netplan warned: {lines:?}"
        );
        let dir = scratch.join("run/systemd/network");
        for iface in &plan.interfaces {
            check_interface(&label, &dir, &plan, iface);
        }
        // Nothing more than the plan's interfaces was configured.
        let configured: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                Some(
                    name.strip_prefix("10-netplan-")?
                        .strip_suffix(".network")?
                        .to_owned(),
                )
            })
            .collect();
        let planned: BTreeSet<String> = plan.interfaces.iter().map(|i| i.name.clone()).collect();
        assert_eq!(configured, planned, "{label}: interfaces configured");
    }
    eprintln!(
        "netplan generate accepted {} documents in {:.1?}",
        cases::CASES.len(),
        started.elapsed()
    );
}

/// Loads a network-config file as cloud-init does, parses it with cloud-init's strict parser,
/// renders it for systemd-networkd, and prints what it read: `name address/prefix gateway`
/// per static subnet and `name dhcp` per DHCP subnet.
const CLOUD_INIT_CHECK: &str = r#"
import sys, tempfile, yaml
from cloudinit import util
from cloudinit.net import network_state, networkd
text = open(sys.argv[1]).read()
cfg = util.load_yaml(text)
assert cfg is not None, "cloud-init could not load the YAML"
net = cfg["network"]
for iface in net.get("config", []):
    if "mac_address" in iface:
        assert isinstance(iface["mac_address"], str), iface
for section in ("ethernets", "bonds", "bridges"):
    for name, iface in net.get(section, {}).items():
        mac = iface.get("match", {}).get("macaddress", iface.get("macaddress", ""))
        assert isinstance(mac, str), (name, mac)
state = network_state.parse_net_config_data(net, skip_broken=False)
networkd.Renderer({}).render_network_state(state, target=tempfile.mkdtemp())
for iface in state.iter_interfaces():
    for subnet in iface.get("subnets", []):
        if subnet["type"].startswith("static"):
            print(iface["name"], "%s/%s" % (subnet["address"], subnet["prefix"]),
                  subnet.get("gateway") or "-")
        elif subnet["type"].startswith("dhcp"):
            print(iface["name"], subnet["type"])
"#;

/// Runs cloud-init's `schema` command as it runs on a system without netplan's Python
/// bindings, so that version 2 is checked against cloud-init's own schema too.
///
/// With `--drop-route-tables` first, the `table` of every route is removed before the check:
/// cloud-init's own version-2 schema lacks it (source routing), while netplan's parser, which
/// cloud-init uses wherever netplan's bindings are installed, takes it and the netplan test
/// checks the tables netplan made of it.
const CLOUD_INIT_SCHEMA: &str = r#"
import sys, tempfile, yaml
from cloudinit.net import netplan
netplan.available = lambda target=None: False
from cloudinit.config import schema
args = sys.argv[1:]
if args[0] == "--drop-route-tables":
    args = args[1:]
    doc = yaml.safe_load(open(args[-1]))
    for section in doc["network"].values():
        if isinstance(section, dict):
            for iface in section.values():
                for route in iface.get("routes", []):
                    route.pop("table", None)
    out = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump(doc, out)
    out.close()
    args[-1] = out.name
sys.argv = ["cloud-init schema"] + args
sys.exit(schema.main())
"#;

/// Where scripts/setup.sh unpacked a cloud-init that has a network-config schema; under CI
/// its absence fails the test instead of skipping the check.
fn cloud_init_schema_root() -> Option<std::path::PathBuf> {
    let root = std::env::var_os("MAAS_CLOUD_INIT_SCHEMA_ROOT").map_or_else(
        || "/var/cache/maas-rs/cloud-init-schema".into(),
        std::path::PathBuf::from,
    );
    let present = root
        .join(
            "usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-network-config-v2.json",
        )
        .exists();
    assert!(
        present || std::env::var_os("CI").is_none(),
        "{} has no cloud-init network-config schema: scripts/setup.sh unpacks it",
        root.display()
    );
    present.then_some(root)
}

#[test]
fn cloud_init_accepts_network_config() {
    if !can_run(
        "cloud_init_accepts_network_config",
        &["cloud-init", "python3"],
    ) {
        return;
    }
    let started = Instant::now();
    let scratch = Scratch::new("cloud-init");
    let script = scratch.join("check.py");
    std::fs::write(&script, CLOUD_INIT_CHECK).unwrap();
    // cloud-init's own interpreter: the one its launcher names.
    let launcher = std::fs::read_to_string(support::which("cloud-init").unwrap()).unwrap();
    let python = launcher
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map_or("python3".to_owned(), |l| l.trim().to_owned());
    let schema = cloud_init_schema_root();
    let schema_check = scratch.join("schema.py");
    std::fs::write(&schema_check, CLOUD_INIT_SCHEMA).unwrap();
    for case in cases::CASES {
        let (topo, id, options) = case.load();
        let plan = netplan::plan(&topo, id, &options).unwrap();
        for (form, text) in [("v2", plan.to_v2()), ("v1", plan.to_v1())] {
            let label = format!("{} {form}", case.label());
            let file = scratch.join(&format!("{}-{form}.yaml", case.name));
            std::fs::write(&file, &text).unwrap();
            let out = Command::new(&python)
                .arg(&script)
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{label}: cloud-init refused it:\n{}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            let mut want = BTreeSet::new();
            for iface in &plan.interfaces {
                for a in &iface.addresses {
                    let Some(address) = a.address else { continue };
                    // cloud-init keeps version 2's default route as a route, not a gateway.
                    let gateway = match (form, a.gateway) {
                        ("v1", Some(gw)) => gw.to_string(),
                        _ => "-".to_owned(),
                    };
                    want.insert(format!("{} {address} {gateway}", iface.name));
                }
                match (iface.dhcp4, iface.dhcp6) {
                    (true, true) if form == "v1" => {
                        want.insert(format!("{} dhcp", iface.name));
                    }
                    (d4, d6) => {
                        if d4 {
                            want.insert(format!("{} dhcp4", iface.name));
                        }
                        if d6 {
                            want.insert(format!("{} dhcp6", iface.name));
                        }
                    }
                }
            }
            assert_eq!(got, want, "{label}: what cloud-init read");
            if let Some(root) = &schema {
                let mut check = Command::new(&python);
                check.arg(&schema_check);
                if form == "v2" && options.source_routing {
                    check.arg("--drop-route-tables");
                }
                let out = check
                    .args(["--schema-type", "network-config", "--config-file"])
                    .arg(&file)
                    .env("PYTHONPATH", root.join("usr/lib/python3/dist-packages"))
                    .output()
                    .unwrap();
                let said = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success() && said.contains("Valid schema"),
                    "{label}: cloud-init's network-config schema refused it:\n{said}{}\n{text}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    eprintln!(
        "cloud-init parsed {} documents in {:.1?} (network-config schema {})",
        cases::CASES.len() * 2,
        started.elapsed(),
        if schema.is_some() {
            "checked too"
        } else {
            "not checked: run scripts/setup.sh"
        }
    );
}
