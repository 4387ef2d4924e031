//! Topology documents: the shipped example, round trips, and how bad documents are refused.

use maas_net::{Error, IpRangeKind, Kind, Topology, TopologyDoc};

use crate::{ip, net};

const EXAMPLE: &str = include_str!("../../../examples/topology.toml");

#[test]
fn the_shipped_example_loads() {
    let topo: Topology = toml::from_str(EXAMPLE).unwrap();
    assert_eq!(topo.zones().count(), 2);
    assert_eq!(topo.fabrics().count(), 2);
    assert_eq!(topo.vlans().count(), 4);
    assert_eq!(topo.subnets().count(), 4);
    assert_eq!(topo.ip_ranges().count(), 4);
    assert_eq!(topo.static_routes().count(), 1);

    let fabric0 = topo.fabric_by_name("fabric-0").unwrap();
    let storage = topo.fabric_by_name("storage-net").unwrap();
    let pxe_vlan = topo.default_vlan(fabric0).unwrap();
    let bmc_vlan = topo.vlan_by_vid(fabric0, 100).unwrap();
    assert!(topo.vlan(pxe_vlan).unwrap().dhcp_on);
    assert_eq!(topo.vlan(bmc_vlan).unwrap().relay_vlan, Some(pxe_vlan));
    assert_eq!(
        topo.vlan(topo.default_vlan(storage).unwrap()).unwrap().mtu,
        9000
    );
    assert!(topo.vlan_by_vid(storage, 200).is_some());

    let pxe = topo.subnet_by_cidr(net("10.77.1.0/24")).unwrap();
    let bmc = topo.subnet_by_cidr(net("10.77.100.0/24")).unwrap();
    let v6 = topo.subnet_by_cidr(net("fd77:0:0:1::/64")).unwrap();
    assert!(topo.subnet(pxe).unwrap().managed);
    assert!(!topo.subnet(bmc).unwrap().managed);
    assert_eq!(topo.subnet(v6).unwrap().gateway_ip, Some(ip("fe80::1")));
    assert_eq!(topo.subnet_space(pxe), topo.space_by_name("provisioning"));
    assert_eq!(
        topo.subnet(pxe)
            .unwrap()
            .disabled_boot_architectures
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>(),
        ["s390x", "open-firmware_ppc64el"]
    );
    let mut kinds: Vec<IpRangeKind> = topo.ip_ranges_in(pxe).map(|(_, r)| r.kind).collect();
    kinds.sort();
    assert_eq!(kinds, [IpRangeKind::Dynamic, IpRangeKind::Reserved]);
    assert_eq!(
        topo.zone(Topology::DEFAULT_ZONE).unwrap().description,
        "Rack A"
    );
    assert!(topo.zone_by_name("rack-b").is_some());
}

#[test]
fn toml_and_json_round_trip_unchanged() {
    let topo: Topology = toml::from_str(EXAMPLE).unwrap();

    let text = toml::to_string(&topo).unwrap();
    let back: Topology = toml::from_str(&text).unwrap();
    assert_eq!(back, topo);
    assert_eq!(
        toml::to_string(&back).unwrap(),
        text,
        "a saved topology saves the same again"
    );

    let json = serde_json::to_string_pretty(&topo).unwrap();
    let back: Topology = serde_json::from_str(&json).unwrap();
    assert_eq!(back, topo);
    assert_eq!(serde_json::to_string_pretty(&back).unwrap(), json);

    // Across formats too.
    let via_json: Topology = serde_json::from_str(&serde_json::to_string(&topo).unwrap()).unwrap();
    assert_eq!(toml::to_string(&via_json).unwrap(), text);
}

#[test]
fn ids_survive_a_round_trip_even_with_gaps() {
    let mut topo: Topology = toml::from_str(EXAMPLE).unwrap();
    // Make gaps in every id sequence.
    let bmc = topo.subnet_by_cidr(net("10.77.100.0/24")).unwrap();
    topo.delete_subnet(bmc).unwrap();
    let vlan = topo.vlan_by_vid(Topology::DEFAULT_FABRIC, 100).unwrap();
    topo.delete_vlan(vlan).unwrap();
    let space = topo.space_by_name("provisioning").unwrap();
    topo.delete_space(space).unwrap();
    let back: Topology = toml::from_str(&toml::to_string(&topo).unwrap()).unwrap();
    assert_eq!(back, topo);
    assert!(back.subnet(bmc).is_none());
}

#[test]
fn a_hand_written_document_needs_no_ids_and_little_else() {
    let topo: Topology = toml::from_str(
        r#"
        [[subnets]]
        cidr = "10.77.7.0/24"
        "#,
    )
    .unwrap();
    let (id, s) = topo.subnets().next().unwrap();
    assert_eq!(s.vlan, topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap());
    assert!(s.managed && s.allow_dns && s.allow_proxy && !s.active_discovery);
    assert_eq!(topo.subnet_containing(ip("10.77.7.9")), Some(id));
}

#[test]
fn every_problem_is_listed_at_once() {
    let doc = r#"
        [[fabrics]]
        name = "bad name"

        [[vlans]]
        fabric = "fabric-0"
        vid = 5000

        [[vlans]]
        fabric = "fabric-0"
        vid = 10
        mtu = 100

        [[vlans]]
        fabric = "nowhere"
        vid = 11

        [[subnets]]
        cidr = "10.77.1.0/24"
        gateway_ip = "10.77.2.1"

        [[subnets]]
        cidr = "10.77.3.0/24"

        [[subnets]]
        cidr = "10.77.3.128/25"
        disabled_boot_architectures = ["windows"]

        [[subnets]]
        cidr = "10.77.3.0/25"

        [[ip_ranges]]
        subnet = "10.77.3.0/24"
        type = "dynamic"
        start = "10.77.3.0"
        end = "10.77.3.9"
    "#;
    let err = toml::from_str::<Topology>(doc).unwrap_err().to_string();
    for want in [
        "the topology has 8 problems:",
        "fabrics[0] (bad name): Invalid fabric name: \"bad name\".",
        "vlans[0] (fabric-0 VID 5000): VID must be between 0 and 4094. Got 5000.",
        "vlans[1] (fabric-0 VID 10): MTU must be between 552 and 65535. Got 100.",
        "vlans[2] (nowhere VID 11): There is no fabric named \"nowhere\".",
        "subnets[0] (10.77.1.0/24): Gateway IP must be within CIDR range. 10.77.2.1 is not in 10.77.1.0/24.",
        "subnets[2] (10.77.3.128/25): Unknown boot architecture windows",
        "subnets[3] (10.77.3.0/25): Subnet 10.77.3.0/25 would overlap with existing subnets. It overlaps 10.77.3.0/24.",
        "ip_ranges[0] (10.77.3.0-10.77.3.9): Reserved network address cannot be included in IP range.",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }

    // The same through the typed API.
    let doc: TopologyDoc = toml::from_str(doc).unwrap();
    let problems = Topology::from_doc(&doc).unwrap_err().problems;
    assert_eq!(problems.len(), 8);
    assert_eq!(
        problems[3].error,
        Error::UnknownName {
            kind: Kind::Fabric,
            name: "nowhere".into()
        }
    );
}

#[test]
fn references_and_ids_are_checked() {
    let refused = |doc: &str| toml::from_str::<Topology>(doc).unwrap_err().to_string();
    assert!(
        refused(
            r#"
        [[vlans]]
        fabric = "fabric-0"
        vid = 10
        relay_vlan = { fabric = "fabric-0", vid = 99 }
        "#
        )
        .contains("There is no VLAN named \"fabric-0 VID 99\".")
    );
    assert!(
        refused(
            r#"
        [[ip_ranges]]
        subnet = "10.77.9.0/24"
        kind = "reserved"
        start = "10.77.9.1"
        end = "10.77.9.2"
        "#
        )
        .contains("There is no subnet named \"10.77.9.0/24\".")
    );
    assert!(
        refused(
            r#"
        [[zones]]
        id = 4
        name = "a"
        [[zones]]
        id = 4
        name = "b"
        "#
        )
        .contains("zones[1] (b): Zone id 4 is used twice.")
    );
    assert!(
        refused(
            r#"
        [[fabrics]]
        id = 3
        name = "fabric-2"
        "#
        )
        .contains("Reserved fabric name: \"fabric-2\".")
    );
    assert!(
        refused(
            r#"
        [[vlans]]
        fabric = "fabric-0"
        vid = -1
        "#
        )
        .contains("VID must be between 0 and 4094. Got -1.")
    );
    // Typos are caught, not ignored.
    assert!(
        refused(
            r#"
        [[subnets]]
        cidr = "10.77.9.0/24"
        gatway_ip = "10.77.9.1"
        "#
        )
        .contains("unknown field `gatway_ip`")
    );
    assert!(
        refused(
            r#"
        [[subnets]]
        cidr = "10.77.9.0/33"
        "#
        )
        .contains("10.77.9.0/33")
    );
}

#[test]
fn a_fabric_named_fabric_n_takes_id_n() {
    let topo: Topology = toml::from_str(
        r#"
        [[fabrics]]
        name = "fabric-5"
        [[vlans]]
        fabric = "fabric-5"
        vid = 7
        "#,
    )
    .unwrap();
    let id = topo.fabric_by_name("fabric-5").unwrap();
    assert_eq!(id.get(), 5);
    assert!(topo.vlan_by_vid(id, 7).is_some());
    assert!(topo.default_vlan(id).is_some());
}

#[test]
fn a_dynamic_range_saved_before_its_reserved_range_loads_back() {
    // In an unmanaged subnet, move a dynamic range into a reserved range with a higher id:
    // the saved document lists the dynamic range first.
    let mut topo = Topology::new();
    let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
    let s = topo
        .create_subnet(maas_net::Subnet {
            managed: false,
            ..maas_net::Subnet::new(net("10.77.9.0/24"), vlan)
        })
        .unwrap();
    let range = |a: &str, b: &str, kind| maas_net::IpRange::new(s, ip(a), ip(b), kind);
    topo.create_ip_range(range("10.77.9.10", "10.77.9.20", IpRangeKind::Reserved))
        .unwrap();
    let dynamic = topo
        .create_ip_range(range("10.77.9.12", "10.77.9.15", IpRangeKind::Dynamic))
        .unwrap();
    topo.create_ip_range(range("10.77.9.100", "10.77.9.200", IpRangeKind::Reserved))
        .unwrap();
    topo.update_ip_range(dynamic, |r| {
        r.start = ip("10.77.9.120");
        r.end = ip("10.77.9.130");
    })
    .unwrap();
    let back: Topology = toml::from_str(&toml::to_string(&topo).unwrap()).unwrap();
    assert_eq!(back, topo);
    let back: Topology = serde_json::from_str(&serde_json::to_string(&topo).unwrap()).unwrap();
    assert_eq!(back, topo);
}

#[test]
fn the_untagged_vlan_keeps_a_name() {
    let mut topo = Topology::new();
    let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
    topo.update_vlan(vlan, |v| v.name = None).unwrap();
    assert_eq!(topo.vlan(vlan).unwrap().name.as_deref(), Some("untagged"));
    topo.update_vlan(vlan, |v| v.name = Some("pxe".into()))
        .unwrap();
    let back: Topology = toml::from_str(&toml::to_string(&topo).unwrap()).unwrap();
    assert_eq!(back, topo);
}
