//! The rules MAAS enforces on machines, interfaces and links, with MAAS's messages, and how
//! machines follow changes to the rest of the topology.

use maas_net::{
    BondMode, BondParams, BridgeParams, Interface, IpRange, IpRangeKind, Link, LinkMode, Mac,
    Machine, MachineId, Subnet, SubnetId, Topology, Vlan, VlanId,
};

use crate::{ip, net};

fn mac(n: u8) -> Mac {
    Mac::new([0x52, 0x54, 0x00, 0x77, 0x00, n])
}

struct Net {
    topo: Topology,
    untagged: VlanId,
    tagged: VlanId,
    subnet: SubnetId,
    tagged_subnet: SubnetId,
}

/// fabric-0 untagged with 10.77.0.0/24 (gateway .1, dynamic .100-.199), VID 100 with
/// 10.77.100.0/24.
fn network() -> Net {
    let mut topo = Topology::new();
    let untagged = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
    let tagged = topo
        .create_vlan(Vlan::new(Topology::DEFAULT_FABRIC, 100))
        .unwrap();
    let subnet = topo
        .create_subnet(Subnet {
            gateway_ip: Some(ip("10.77.0.1")),
            dns_servers: vec![ip("10.77.0.2")],
            ..Subnet::new(net("10.77.0.0/24"), untagged)
        })
        .unwrap();
    topo.create_ip_range(IpRange::new(
        subnet,
        ip("10.77.0.100"),
        ip("10.77.0.199"),
        IpRangeKind::Dynamic,
    ))
    .unwrap();
    let tagged_subnet = topo
        .create_subnet(Subnet::new(net("10.77.100.0/24"), tagged))
        .unwrap();
    Net {
        topo,
        untagged,
        tagged,
        subnet,
        tagged_subnet,
    }
}

fn eth(name: &str, n: u8, vlan: VlanId) -> Interface {
    Interface::physical(name, mac(n), Some(vlan))
}

fn refused(topo: &mut Topology, machine: Machine) -> String {
    let before = topo.clone();
    let err = topo.create_machine(machine).unwrap_err();
    assert_eq!(*topo, before, "a refused machine changes nothing");
    err.to_string()
}

#[test]
fn static_links_get_the_next_free_address() {
    let Net {
        mut topo,
        untagged,
        subnet,
        ..
    } = network();
    let a = topo
        .create_machine(
            Machine::new("a")
                .with_interface(eth("eth0", 1, untagged).with_link(Link::sticky(subnet))),
        )
        .unwrap();
    let b = topo
        .create_machine(
            Machine::new("b")
                .with_interface(eth("eth0", 2, untagged).with_link(Link::sticky(subnet))),
        )
        .unwrap();
    let ip_of =
        |topo: &Topology, id: MachineId| topo.machine(id).unwrap().interfaces[0].links[0].ip;
    // .1 is the gateway, .2 a DNS server.
    assert_eq!(ip_of(&topo, a), Some(ip("10.77.0.3")));
    assert_eq!(ip_of(&topo, b), Some(ip("10.77.0.4")));
    assert_eq!(topo.machine_holding(ip("10.77.0.4")), Some(b));
    // Auto links wait for deployment, then skip what is taken.
    let c = topo
        .create_machine(
            Machine::new("c")
                .with_interface(eth("eth0", 3, untagged).with_link(Link::auto(subnet))),
        )
        .unwrap();
    assert_eq!(ip_of(&topo, c), None);
    let oracle = |_: SubnetId, ip: std::net::IpAddr| ip == crate::ip("10.77.0.5");
    topo.assign_auto_addresses(c, &oracle).unwrap();
    assert_eq!(ip_of(&topo, c), Some(ip("10.77.0.6")));
    // Deleting a machine frees its addresses.
    topo.delete_machine(a).unwrap();
    assert_eq!(topo.machine_holding(ip("10.77.0.3")), None);
}

#[test]
fn addresses_are_checked() {
    let Net {
        mut topo,
        untagged,
        subnet,
        ..
    } = network();
    let with = |n: u8, name: &str, addr: &str| {
        Machine::new(name)
            .with_interface(eth("eth0", n, untagged).with_link(Link::fixed(subnet, ip(addr))))
    };
    topo.create_machine(with(1, "a", "10.77.0.10")).unwrap();
    assert_eq!(
        refused(&mut topo, with(2, "b", "10.77.0.10")),
        "IP address is already in use. (10.77.0.10 on eth0 is held by eth0 on a)"
    );
    assert_eq!(
        refused(&mut topo, with(2, "b", "10.77.1.10")),
        "IP address is not in the given subnet '10.77.0.0/24'. (10.77.1.10 on eth0)"
    );
    assert_eq!(
        refused(&mut topo, with(2, "b", "10.77.0.150")),
        "IP address is inside a dynamic range 10.77.0.100 to 10.77.0.199. (10.77.0.150 on eth0)"
    );
    let oracle = |_: SubnetId, ip: std::net::IpAddr| ip == crate::ip("10.77.0.11");
    let err = topo
        .create_machine_with(with(2, "b", "10.77.0.11"), &oracle)
        .unwrap_err();
    assert!(
        err.to_string().contains("held by the address manager"),
        "{err}"
    );
    // A dynamic range may not swallow a machine's address.
    let err = topo
        .create_ip_range(IpRange::new(
            subnet,
            ip("10.77.0.5"),
            ip("10.77.0.20"),
            IpRangeKind::Dynamic,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("10.77.0.10"), "{err}");
}

#[test]
fn interface_rules_have_maas_messages() {
    let Net {
        mut topo,
        untagged,
        tagged,
        subnet,
        tagged_subnet,
    } = network();
    let m = |ifaces: Vec<Interface>| {
        ifaces
            .into_iter()
            .fold(Machine::new("node"), Machine::with_interface)
    };
    let cases: Vec<(Machine, &str)> = vec![
        (
            m(vec![eth("eth0", 1, untagged), eth("eth0", 2, untagged)]),
            "Node node already has an interface named 'eth0'.",
        ),
        (
            m(vec![eth("eth0", 1, untagged), eth("eth1", 1, untagged)]),
            "This MAC address is already in use by eth0 on node. (52:54:00:77:00:01 on eth1)",
        ),
        (
            m(vec![Interface {
                mac: None,
                ..eth("eth0", 1, untagged)
            }]),
            "mac_address: This field cannot be blank. eth0 is a physical interface.",
        ),
        (
            m(vec![Interface::vlan("eth0.100", "eth0", tagged)]),
            "Node node has no interface named 'eth0' (named as a parent of eth0.100).",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged),
                Interface::vlan("eth0.0", "eth0", untagged),
            ]),
            "A VLAN interface can only belong to a tagged VLAN. (eth0.0 on fabric-0 VID 0)",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged),
                Interface::vlan("a", "eth0", tagged),
                Interface::vlan("b", "eth0", tagged),
            ]),
            "A VLAN interface for VID 100 already exists on eth0: a. (b)",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged),
                Interface::vlan("a", "eth0", tagged),
                Interface::vlan("b", "a", tagged),
            ]),
            "A VLAN interface can't have another VLAN interface as parent. (b)",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged),
                eth("eth1", 2, tagged),
                Interface::bond(
                    "bond0",
                    ["eth0", "eth1"],
                    Some(untagged),
                    BondParams::default(),
                ),
            ]),
            "All parents must belong to the same VLAN. (bond0 on fabric-0 VID 0)",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged),
                Interface::bond("bond0", ["eth0"], Some(untagged), BondParams::default()),
                Interface::bond("bond1", ["bond0"], Some(untagged), BondParams::default()),
            ]),
            "Only physical interfaces can be bonded. (bond1)",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged),
                Interface::bond("bond0", ["eth0"], Some(untagged), BondParams::default()),
                Interface::bridge("br0", ["eth0"], Some(untagged), BridgeParams::default()),
            ]),
            "Interfaces already in-use: eth0. (bond0)",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged),
                Interface::bond("bond0", ["eth0"], Some(untagged), BondParams::default()),
                Interface::vlan("eth0.100", "eth0", tagged),
            ]),
            "Interfaces already in-use: eth0. (bond0)",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged),
                Interface::bridge("br0", ["eth0"], Some(untagged), BridgeParams::default()),
                Interface::bridge("br1", ["br0"], Some(untagged), BridgeParams::default()),
            ]),
            "A bridge interface can't have another bridge interface as parent. (br1)",
        ),
        (
            m(vec![
                Interface::bridge("br0", ["v"], Some(untagged), BridgeParams::default()),
                Interface::vlan("v", "br0", tagged),
            ]),
            "Interface br0 is its own ancestor through its parents.",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged).with_link(Link::fixed(tagged_subnet, ip("10.77.100.5"))),
            ]),
            "Select a valid choice. That choice is not one of the available choices. Subnet \
             10.77.100.0/24 is on fabric-0 VID 100, not on eth0's VLAN (fabric-0 VID 0).",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged),
                eth("eth1", 2, untagged).with_link(Link::sticky(subnet)),
                Interface::bond(
                    "bond0",
                    ["eth0", "eth1"],
                    Some(untagged),
                    BondParams::default(),
                ),
            ]),
            "Cannot link interface(eth1) when interface is in a bond(bond0).",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged)
                    .with_link(Link::dhcp(Some(subnet)))
                    .with_link(Link::dhcp(None)),
            ]),
            "Interface is already set to DHCP. (eth0: dhcp link to no subnet)",
        ),
        (
            m(vec![
                eth("eth0", 1, untagged)
                    .with_link(Link::sticky(subnet))
                    .with_link(Link::link_up(None)),
            ]),
            "Cannot configure interface to link up (with no IP address) while other links are \
             already configured. (eth0: link_up link to no subnet)",
        ),
        (
            m(vec![eth("eth0", 1, untagged).with_mtu(9999999)]),
            "MTU must be between 552 and 65535. Got 9999999.",
        ),
        (
            m(vec![eth("eth 0", 1, untagged)]),
            "The interface name must be 1 to 15 characters long and can only contain \
             alphanumeric characters, hyphens ('-'), underscores ('_'), periods ('.'), and \
             colons (':'). Got \"eth 0\".",
        ),
        (
            m(vec![eth("1_000", 1, untagged)]),
            "The interface name \"1_000\" would be read as a number or a boolean by YAML 1.1 \
             readers such as cloud-init; choose another.",
        ),
        (
            Machine {
                gateway_link_ipv4: Some("eth0".into()),
                ..m(vec![
                    eth("eth0", 1, tagged).with_link(Link::sticky(tagged_subnet)),
                ])
            },
            "Cannot set as default gateway because subnet 10.77.100.0/24 doesn't provide a \
             gateway IP address. (gateway_link_ipv4: eth0)",
        ),
        (
            Machine {
                boot_interface: Some("eth9".into()),
                ..m(vec![eth("eth0", 1, untagged)])
            },
            "Node node has no interface named 'eth9' (named as boot_interface).",
        ),
    ];
    for (machine, message) in cases {
        assert_eq!(refused(&mut topo, machine), message);
    }
    // MACs are unique across machines too.
    topo.create_machine(Machine::new("a").with_interface(eth("eth0", 1, untagged)))
        .unwrap();
    assert_eq!(
        refused(
            &mut topo,
            Machine::new("b").with_interface(eth("eth0", 1, untagged))
        ),
        "This MAC address is already in use by eth0 on a. (52:54:00:77:00:01 on eth0)"
    );
    assert_eq!(
        refused(&mut topo, Machine::new("a")),
        "Machine with hostname \"a\" already exists."
    );
}

#[test]
fn a_vlan_interface_stays_on_its_parents_fabric() {
    let Net {
        mut topo, untagged, ..
    } = network();
    let other = topo.create_fabric(maas_net::Fabric::new("other")).unwrap();
    let other_tagged = topo.create_vlan(Vlan::new(other, 200)).unwrap();
    let machine = Machine::new("n")
        .with_interface(eth("eth0", 1, untagged))
        .with_interface(Interface::vlan("eth0.200", "eth0", other_tagged));
    assert_eq!(
        refused(&mut topo, machine),
        "A VLAN interface can only belong to a tagged VLAN on the same fabric as its parent \
         interface. (eth0.200 on other VID 200)"
    );
}

#[test]
fn machines_follow_topology_changes() {
    let Net {
        mut topo,
        untagged,
        tagged,
        subnet,
        tagged_subnet,
    } = network();
    let id = topo
        .create_machine(Machine {
            gateway_link_ipv4: Some("eth0".into()),
            ..Machine::new("n")
                .with_interface(
                    eth("eth0", 1, untagged).with_link(Link::fixed(subnet, ip("10.77.0.9"))),
                )
                .with_interface(
                    Interface::vlan("eth0.100", "eth0", tagged)
                        .with_link(Link::fixed(tagged_subnet, ip("10.77.100.9"))),
                )
                .with_interface(Interface::bridge(
                    "br100",
                    ["eth0.100"],
                    Some(tagged),
                    BridgeParams::default(),
                ))
        })
        .unwrap();
    // A subnet may not move away from a machine's interface, nor lose the gateway a gateway
    // link uses.
    let before = topo.clone();
    let err = topo.update_subnet(subnet, |s| s.vlan = tagged).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("The change would make the machine n invalid: Select a valid choice."),
        "{err}"
    );
    let err = topo
        .update_subnet(subnet, |s| s.gateway_ip = None)
        .unwrap_err();
    assert!(
        err.to_string().contains("doesn't provide a gateway"),
        "{err}"
    );
    assert_eq!(topo, before);
    // Nor may a fabric with interfaces go.
    let other = topo.create_fabric(maas_net::Fabric::new("spare")).unwrap();
    topo.delete_fabric(other).unwrap();
    // Deleting the tagged VLAN deletes the VLAN interface and the bridge left without parents,
    // as MAAS does; the subnet moves to the untagged VLAN and its links went with the
    // interface.
    topo.delete_vlan(tagged).unwrap();
    let m = topo.machine(id).unwrap();
    let names: Vec<&str> = m.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth0"]);
    assert_eq!(topo.machine_holding(ip("10.77.100.9")), None);
    // Deleting a subnet takes its links and clears the gateway link it served.
    topo.delete_subnet(subnet).unwrap();
    let m = topo.machine(id).unwrap();
    assert!(m.interfaces[0].links.is_empty());
    assert_eq!(m.gateway_link_ipv4, None);
    assert_eq!(topo.machine_holding(ip("10.77.0.9")), None);
}

#[test]
fn a_fabric_with_interfaces_cannot_be_deleted() {
    let mut topo = Topology::new();
    let fabric = topo.create_fabric(maas_net::Fabric::new("f1")).unwrap();
    let vlan = topo.default_vlan(fabric).unwrap();
    topo.create_machine(Machine::new("n").with_interface(eth("eth0", 1, vlan)))
        .unwrap();
    assert_eq!(
        topo.delete_fabric(fabric).unwrap_err().to_string(),
        "Can't delete fabric f1; the following interfaces are still connected: eth0 on n."
    );
}

#[test]
fn bond_parameters_and_modes() {
    assert_eq!("802.3ad".parse::<BondMode>().unwrap(), BondMode::Ieee8023ad);
    assert_eq!(
        "lacp".parse::<BondMode>().unwrap_err().to_string(),
        "'lacp' is not a valid bond_mode.  It should be one of: 'balance-rr', 'active-backup', \
         'balance-xor', 'broadcast', '802.3ad', 'balance-tlb', 'balance-alb'."
    );
    let doc = r#"
        [[machines]]
        hostname = "n"
        [[machines.interfaces]]
        name = "eth0"
        type = "physical"
        mac = "52:54:00:77:00:01"
        params = { bond_mode = "active-backup", mtu = 100 }
        [[machines.interfaces]]
        name = "bond0"
        type = "bond"
        parents = ["eth0"]
        params = { bond_num_grat_arp = 300, bond_lacp_rate = "medium" }
        links = [{ mode = "static", subnet = "10.9.9.0/24" }]
    "#;
    let err = toml::from_str::<Topology>(doc).unwrap_err().to_string();
    for expected in [
        "machines[0] (n) interfaces[0] (eth0): MTU must be between 552 and 65535. Got 100.",
        "machines[0] (n) interfaces[0] (eth0): bond_*: Only bonds have bond parameters; this \
         is a physical interface. (eth0)",
        "machines[0] (n) interfaces[1] (bond0): bond_num_grat_arp: Ensure this value is less \
         than or equal to 255. (bond0)",
        "machines[0] (n) interfaces[1] (bond0) links[0]: There is no subnet named \
         \"10.9.9.0/24\".",
    ] {
        assert!(err.contains(expected), "{expected}\nnot in\n{err}");
    }
}

#[test]
fn machines_round_trip_through_documents() {
    let Net {
        mut topo,
        untagged,
        tagged,
        subnet,
        tagged_subnet,
    } = network();
    topo.create_machine(Machine {
        domain: "lab".into(),
        boot_interface: Some("eth0".into()),
        ..Machine::new("n")
            .with_interface(eth("eth0", 1, untagged).with_link(Link::sticky(subnet)))
            .with_interface(eth("eth1", 2, untagged))
            .with_interface(eth("eth2", 3, untagged))
            .with_interface(Interface::bond(
                "bond0",
                ["eth1", "eth2"],
                Some(untagged),
                BondParams::with_mode(BondMode::ActiveBackup),
            ))
            .with_interface(
                Interface::vlan("bond0.100", "bond0", tagged)
                    .with_mtu(1400)
                    .with_link(Link {
                        mode: LinkMode::Auto,
                        subnet: Some(tagged_subnet),
                        ip: None,
                    }),
            )
            .with_interface(Interface::physical("eth3", mac(9), None))
    })
    .unwrap();
    let text = toml::to_string(&topo).unwrap();
    assert_eq!(toml::from_str::<Topology>(&text).unwrap(), topo, "{text}");
    let json = serde_json::to_string(&topo).unwrap();
    assert_eq!(serde_json::from_str::<Topology>(&json).unwrap(), topo);
}

#[test]
fn the_example_documents_load() {
    for file in ["topology.toml", "machines.toml"] {
        let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let topo: Topology = toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(topo.machines().count() > 0, "{path} has machines");
    }
}
