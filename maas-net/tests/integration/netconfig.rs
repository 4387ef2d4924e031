//! MAAS's rendering cases: what the version-2 and version-1 documents of each case in
//! `testdata/netconfig/` hold (read back with a YAML parser), and the exact text of the
//! simplest case.

use maas_net::netplan::{self, Format, RenderOptions};
use maas_net::{Interface, Link, Machine, Subnet, Topology, Vlan};
use yaml_rust2::{Yaml, YamlLoader};

#[path = "../../testdata/netconfig/cases.rs"]
mod cases;
use cases::CASES;

fn case(name: &str, source_routing: bool, commissioning: bool) -> &'static cases::Case {
    CASES
        .iter()
        .find(|c| {
            c.name == name && c.source_routing == source_routing && c.commissioning == commissioning
        })
        .unwrap()
}

/// The rendered document of a case, parsed, at `network`.
fn render(name: &str, format: Format, source_routing: bool, commissioning: bool) -> Yaml {
    let (topo, id, options) = case(name, source_routing, commissioning).load();
    let text = netplan::render(&topo, id, &options, format).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1, "{text}");
    docs.remove(0)["network"].clone()
}

fn v2(name: &str) -> Yaml {
    render(name, Format::V2, false, false)
}

fn v1(name: &str) -> Yaml {
    render(name, Format::V1, false, false)
}

fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("not a list: {y:?}"))
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect()
}

fn keys(y: &Yaml) -> Vec<String> {
    y.as_hash()
        .unwrap_or_else(|| panic!("not a map: {y:?}"))
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// The v1 config entry with this name.
fn entry<'a>(doc: &'a Yaml, name: &str) -> &'a Yaml {
    doc["config"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in {doc:?}"))
}

#[test]
fn single_interface_exact_text() {
    let (topo, id, options) = case("single", false, false).load();
    let v2 = netplan::render(&topo, id, &options, Format::V2).unwrap();
    assert_eq!(
        v2,
        "network:
  version: 2
  ethernets:
    eth0:
      match:
        macaddress: \"52:54:00:77:10:01\"
      set-name: eth0
      mtu: 1500
      addresses:
        - 10.77.10.5/24
      routes:
        - to: 0.0.0.0/0
          via: 10.77.10.1
      nameservers:
        addresses:
          - 10.77.10.53
        search:
          - lab
"
    );
    let v1 = netplan::render(&topo, id, &options, Format::V1).unwrap();
    assert_eq!(
        v1,
        "network:
  version: 1
  config:
    - type: physical
      name: eth0
      mac_address: \"52:54:00:77:10:01\"
      mtu: 1500
      subnets:
        - type: static
          address: 10.77.10.5/24
          gateway: 10.77.10.1
          dns_nameservers:
            - 10.77.10.53
          dns_search:
            - lab
    - type: nameserver
      address:
        - 10.77.10.53
      search:
        - lab
"
    );
}

#[test]
fn lacp_bond() {
    let doc = v2("bond_lacp");
    assert_eq!(keys(&doc), ["version", "ethernets", "bonds"]);
    let bond = &doc["bonds"]["bond0"];
    // Parents by name, the bond's MAC its first parent's, MTU the VLAN's.
    assert_eq!(strs(&bond["interfaces"]), ["eth0", "eth1"]);
    assert_eq!(bond["macaddress"].as_str(), Some("52:54:00:77:11:02"));
    assert_eq!(bond["mtu"].as_i64(), Some(9000));
    let p = &bond["parameters"];
    assert_eq!(p["mode"].as_str(), Some("802.3ad"));
    assert_eq!(p["lacp-rate"].as_str(), Some("slow"));
    assert_eq!(p["transmit-hash-policy"].as_str(), Some("layer3+4"));
    assert_eq!(p["mii-monitor-interval"].as_str(), Some("100"));
    assert_eq!(p["up-delay"].as_i64(), Some(200));
    assert_eq!(p["down-delay"].as_i64(), Some(200));
    assert!(p["gratuitous-arp"].is_badvalue(), "only for active-backup");
    assert_eq!(strs(&bond["addresses"]), ["10.77.11.5/24"]);
    // The members are up without addresses.
    for port in ["eth0", "eth1"] {
        let eth = &doc["ethernets"][port];
        assert_eq!(keys(eth), ["match", "set-name", "mtu"], "{port}");
        assert_eq!(eth["mtu"].as_i64(), Some(9000));
    }

    let doc = v1("bond_lacp");
    let bond = entry(&doc, "bond0");
    assert_eq!(bond["type"].as_str(), Some("bond"));
    assert_eq!(strs(&bond["bond_interfaces"]), ["eth0", "eth1"]);
    assert_eq!(bond["params"]["bond-lacp_rate"].as_str(), Some("slow"));
    assert!(bond["params"]["bond-num_grat_arp"].is_badvalue());
    assert_eq!(
        entry(&doc, "eth0")["subnets"][0]["type"].as_str(),
        Some("manual")
    );
}

#[test]
fn active_backup_bond() {
    let doc = v2("bond_active_backup");
    let bond = &doc["bonds"]["bond0"];
    assert_eq!(bond["macaddress"].as_str(), Some("52:54:00:77:12:99"));
    let p = &bond["parameters"];
    assert_eq!(p["mode"].as_str(), Some("active-backup"));
    assert_eq!(p["gratuitous-arp"].as_i64(), Some(3));
    assert!(p["lacp-rate"].is_badvalue(), "only for 802.3ad");
    assert!(
        p["gratuitious-arp"].is_badvalue(),
        "netplan's current key only"
    );

    let doc = v1("bond_active_backup");
    let params = &entry(&doc, "bond0")["params"];
    assert_eq!(params["bond-num_grat_arp"].as_i64(), Some(3));
    assert!(params["bond-lacp_rate"].is_badvalue());
}

#[test]
fn bridge_over_bond() {
    let doc = v2("bridge_over_bond");
    assert_eq!(
        keys(&doc),
        ["version", "ethernets", "vlans", "bonds", "bridges"]
    );
    let br = &doc["bridges"]["br0"];
    assert_eq!(strs(&br["interfaces"]), ["bond0"]);
    assert_eq!(br["parameters"]["stp"].as_bool(), Some(true));
    assert_eq!(br["parameters"]["forward-delay"].as_i64(), Some(4));
    assert!(br["openvswitch"].is_badvalue());
    // The bridge takes its MAC from the bond, which takes its own from eth0.
    assert_eq!(br["macaddress"].as_str(), Some("52:54:00:77:13:01"));
    assert_eq!(strs(&br["addresses"]), ["10.77.13.5/24"]);
    assert_eq!(br["routes"][0]["via"].as_str(), Some("10.77.13.1"));
    let bond = &doc["bonds"]["bond0"];
    assert_eq!(bond["parameters"]["mode"].as_str(), Some("balance-xor"));
    assert!(bond["addresses"].is_badvalue());
    let vlan = &doc["vlans"]["bond0.30"];
    assert_eq!(vlan["id"].as_i64(), Some(30));
    assert_eq!(vlan["link"].as_str(), Some("bond0"));
    // Its subnet has no gateway: no default route there.
    assert!(vlan["routes"].is_badvalue());

    let doc = v1("bridge_over_bond");
    let ids: Vec<&str> = doc["config"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    // Parents first.
    assert_eq!(ids, ["eth0", "eth1", "bond0", "br0", "bond0.30"]);
    let br = entry(&doc, "br0");
    assert_eq!(br["params"]["bridge_stp"].as_str(), Some("on"));
    assert_eq!(br["params"]["bridge_fd"].as_i64(), Some(4));
    let vlan = entry(&doc, "bond0.30");
    assert_eq!(vlan["vlan_link"].as_str(), Some("bond0"));
    assert_eq!(vlan["vlan_id"].as_i64(), Some(30));
}

#[test]
fn static_routes_follow_their_source_subnet() {
    let doc = v2("routes");
    // eth0 is on the VLAN with DHCP: it carries the default route; eth1 only its static route.
    let eth0 = &doc["ethernets"]["eth0"]["routes"];
    assert_eq!(eth0[0]["to"].as_str(), Some("0.0.0.0/0"));
    assert_eq!(eth0[0]["via"].as_str(), Some("10.77.14.1"));
    assert_eq!(eth0[1]["to"].as_str(), Some("10.77.17.0/24"));
    assert_eq!(eth0[1]["via"].as_str(), Some("10.77.14.254"));
    assert_eq!(eth0[1]["metric"].as_i64(), Some(5));
    assert_eq!(eth0.as_vec().unwrap().len(), 2);
    let eth1 = &doc["ethernets"]["eth1"]["routes"];
    assert_eq!(eth1.as_vec().unwrap().len(), 1);
    assert_eq!(eth1[0]["to"].as_str(), Some("10.77.16.0/24"));
    assert_eq!(eth1[0]["metric"].as_i64(), Some(20));
    assert!(doc["ethernets"]["eth1"]["routing-policy"].is_badvalue());

    let doc = v1("routes");
    let subnet = &entry(&doc, "eth1")["subnets"][0];
    assert_eq!(
        subnet["routes"][0]["destination"].as_str(),
        Some("10.77.16.0/24")
    );
    assert_eq!(
        subnet["routes"][0]["gateway"].as_str(),
        Some("10.77.15.254")
    );
    assert!(subnet["gateway"].is_badvalue());
}

#[test]
fn source_routing_gives_secondary_gateways_a_table() {
    let doc = render("routes", Format::V2, true, false);
    let eth0 = &doc["ethernets"]["eth0"];
    assert!(
        eth0["routing-policy"].is_badvalue(),
        "the default stays in the main table"
    );
    let eth1 = &doc["ethernets"]["eth1"];
    let routes = eth1["routes"].as_vec().unwrap();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0]["to"].as_str(), Some("0.0.0.0/0"));
    assert_eq!(routes[0]["via"].as_str(), Some("10.77.15.1"));
    assert_eq!(routes[0]["table"].as_i64(), Some(1));
    assert_eq!(routes[1]["to"].as_str(), Some("10.77.16.0/24"));
    assert_eq!(routes[1]["table"].as_i64(), Some(1));
    let rules = eth1["routing-policy"].as_vec().unwrap();
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0]["from"].as_str(), Some("10.77.15.0/24"));
    assert_eq!(rules[0]["table"].as_i64(), Some(1));
    assert_eq!(rules[0]["priority"].as_i64(), Some(1000));
    assert_eq!(rules[1]["to"].as_str(), Some("10.77.15.0/24"));
    assert_eq!(rules[1]["table"].as_i64(), Some(254));
    assert_eq!(rules[2]["from"].as_str(), Some("0.0.0.0/0"));
    assert_eq!(rules[2]["to"].as_str(), Some("10.77.16.0/24"));
    assert_eq!(rules[2]["priority"].as_i64(), Some(1000));
}

#[test]
fn explicit_gateway_link_and_per_subnet_dns() {
    let doc = render("gateway_link_dns", Format::V2, false, false);
    let eth0 = &doc["ethernets"]["eth0"];
    let eth1 = &doc["ethernets"]["eth1"];
    assert!(eth0["routes"].is_badvalue(), "{eth0:?}");
    assert_eq!(eth1["routes"][0]["via"].as_str(), Some("10.77.50.1"));
    // eth0's subnet allows DNS: the controller's addresses of its family first (only those
    // that are reachable: the subnet has a gateway, so both IPv4 ones), then its own.
    assert_eq!(
        strs(&eth0["nameservers"]["addresses"]),
        ["10.77.18.2", "10.77.50.2", "10.77.18.53"]
    );
    assert_eq!(strs(&eth0["nameservers"]["search"]), ["example"]);
    // eth1's refuses it: only its own servers, no search list.
    assert_eq!(
        strs(&eth1["nameservers"]["addresses"]),
        ["10.77.50.53", "10.77.50.54"]
    );
    assert!(eth1["nameservers"]["search"].is_badvalue());

    // Version 1: the machine's servers are the gateway subnet's, as it refuses DNS.
    let doc = render("gateway_link_dns", Format::V1, false, false);
    let last = doc["config"].as_vec().unwrap().last().unwrap().clone();
    assert_eq!(last["type"].as_str(), Some("nameserver"));
    assert_eq!(strs(&last["address"]), ["10.77.50.53", "10.77.50.54"]);
    assert_eq!(
        entry(&doc, "eth1")["subnets"][0]["gateway"].as_str(),
        Some("10.77.50.1")
    );
}

#[test]
fn ipv4_and_ipv6_defaults_on_different_interfaces() {
    let doc = v2("dual_stack");
    let eth0 = &doc["ethernets"]["eth0"]["routes"];
    let eth1 = &doc["ethernets"]["eth1"];
    assert_eq!(eth0.as_vec().unwrap().len(), 1);
    assert_eq!(eth0[0]["to"].as_str(), Some("0.0.0.0/0"));
    let routes = eth1["routes"].as_vec().unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["to"].as_str(), Some("::/0"));
    assert_eq!(routes[0]["via"].as_str(), Some("fd77:0:0:20::1"));
    assert_eq!(
        strs(&eth1["addresses"]),
        ["10.77.20.5/24", "fd77:0:0:20::5/64"]
    );
    assert_eq!(eth1["accept-ra"].as_bool(), Some(false));
    // eth1's IPv4 subnet has no gateway: only controller addresses inside it would do, and
    // there are none; its IPv6 subnet brings the controller's IPv6 address and its own server.
    assert_eq!(
        strs(&eth1["nameservers"]["addresses"]),
        ["fd77:0:0:20::2", "fd77:0:0:20::53"]
    );
    assert_eq!(
        strs(&doc["ethernets"]["eth0"]["nameservers"]["addresses"]),
        ["10.77.19.2"]
    );
    // Version 1: the machine's servers come from the IPv6 gateway's subnet, the IPv4 one
    // having none.
    let doc = v1("dual_stack");
    let last = doc["config"].as_vec().unwrap().last().unwrap().clone();
    assert_eq!(
        strs(&last["address"]),
        ["fd77:0:0:20::2", "fd77:0:0:20::53"]
    );
}

#[test]
fn disconnected_and_disabled_interfaces() {
    let doc = v2("disconnected");
    let eth = &doc["ethernets"];
    assert_eq!(keys(eth), ["eth0", "eth1"], "the disabled eth2 is left out");
    assert_eq!(eth["eth0"]["dhcp4"].as_bool(), Some(true));
    assert!(eth["eth0"]["dhcp6"].is_badvalue());
    assert!(eth["eth0"]["optional"].is_badvalue());
    assert_eq!(eth["eth1"]["optional"].as_bool(), Some(true));
    assert!(eth["eth1"]["addresses"].is_badvalue());

    let doc = v1("disconnected");
    assert_eq!(
        entry(&doc, "eth0")["subnets"][0]["type"].as_str(),
        Some("dhcp4")
    );
    assert_eq!(
        entry(&doc, "eth1")["subnets"][0]["type"].as_str(),
        Some("manual")
    );
    // Only DHCP and bare interfaces: no machine-wide name servers.
    assert!(
        doc["config"]
            .as_vec()
            .unwrap()
            .iter()
            .all(|e| e["type"].as_str() != Some("nameserver"))
    );
}

#[test]
fn commissioning_form_uses_dhcp_on_the_boot_interface() {
    let deployed = render("commissioning", Format::V2, false, false);
    let eth0 = &deployed["ethernets"]["eth0"];
    assert_eq!(strs(&eth0["addresses"]), ["10.77.22.5/24"]);
    assert_eq!(eth0["routes"][0]["via"].as_str(), Some("10.77.22.1"));

    let doc = render("commissioning", Format::V2, false, true);
    let eth0 = &doc["ethernets"]["eth0"];
    assert_eq!(keys(eth0), ["match", "set-name", "mtu", "dhcp4"]);
    // The default route moves to the other interface.
    let eth1 = &doc["ethernets"]["eth1"];
    assert_eq!(strs(&eth1["addresses"]), ["10.77.60.5/24"]);
    assert_eq!(eth1["routes"][0]["via"].as_str(), Some("10.77.60.1"));
    let doc = render("commissioning", Format::V1, false, true);
    assert_eq!(
        entry(&doc, "eth0")["subnets"][0]["type"].as_str(),
        Some("dhcp4")
    );
}

#[test]
fn every_case_renders_both_forms() {
    for case in CASES {
        let (topo, id, options) = case.load();
        for format in [Format::V2, Format::V1] {
            let text = netplan::render(&topo, id, &options, format).unwrap();
            assert!(text.starts_with("network:\n"), "{}: {text}", case.label());
            let docs = YamlLoader::load_from_str(&text).unwrap();
            let version = docs[0]["network"]["version"].as_i64();
            let want = if format == Format::V2 { 2 } else { 1 };
            assert_eq!(version, Some(want), "{}", case.label());
        }
    }
}

/// The default-gateway order: VLANs with DHCP first; then bonds and bridges, the boot
/// interface, other physical interfaces, VLAN interfaces; then static before auto.
#[test]
fn gateway_order() {
    let mut topo = Topology::new();
    let fabric = Topology::DEFAULT_FABRIC;
    let untagged = topo.default_vlan(fabric).unwrap();
    let tagged = topo.create_vlan(Vlan::new(fabric, 7)).unwrap();
    let with_gw = |topo: &mut Topology, cidr: &str, gw: &str, vlan| {
        topo.create_subnet(Subnet {
            gateway_ip: Some(gw.parse().unwrap()),
            ..Subnet::new(cidr.parse().unwrap(), vlan)
        })
        .unwrap()
    };
    let a = with_gw(&mut topo, "10.77.40.0/24", "10.77.40.1", untagged);
    let b = with_gw(&mut topo, "10.77.41.0/24", "10.77.41.1", tagged);
    let mac = |n: u8| format!("52:54:00:77:40:{n:02x}").parse().unwrap();
    // Candidates, best last: each one removed in turn uncovers the next.
    let machine = Machine::new("order")
        .with_interface(
            Interface::physical("eth0", mac(1), Some(untagged)).with_link(Link::auto(a)),
        )
        .with_interface(
            Interface::physical("eth1", mac(2), Some(untagged))
                .with_link(Link::fixed(a, "10.77.40.11".parse().unwrap())),
        )
        .with_interface(Interface::vlan("eth1.7", "eth1", tagged).with_link(Link::sticky(b)));
    let id = topo.create_machine(machine).unwrap();
    let via = |topo: &Topology| -> Vec<(String, String)> {
        let plan = netplan::plan(topo, id, &RenderOptions::default()).unwrap();
        plan.interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(move |a| (i, a)))
            .filter_map(|(i, a)| Some((i.name.clone(), a.gateway?.to_string())))
            .collect()
    };
    // eth0 is the boot interface (the first physical one) and beats eth1 though auto.
    assert_eq!(via(&topo), [("eth0".into(), "10.77.40.1".into())]);
    // Named as boot interface, eth1 comes first, and static beats auto within it.
    topo.update_machine(id, |m| m.boot_interface = Some("eth1".into()))
        .unwrap();
    assert_eq!(via(&topo), [("eth1".into(), "10.77.40.1".into())]);
    // DHCP on the tagged VLAN puts the VLAN interface first.
    topo.update_vlan(tagged, |v| v.dhcp_on = true).unwrap();
    assert_eq!(via(&topo), [("eth1.7".into(), "10.77.41.1".into())]);
    // An explicit gateway link wins over all.
    topo.update_machine(id, |m| m.gateway_link_ipv4 = Some("eth0".into()))
        .unwrap();
    assert_eq!(via(&topo), [("eth0".into(), "10.77.40.1".into())]);
}
