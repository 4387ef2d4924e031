//! One test per MAAS rule, each asserting the exact message a user sees: defaults, names,
//! fabrics, VLANs, spaces and zones (subnets, routes and ranges are in `rules_subnets`).

use maas_net::{
    Error, Fabric, IpRange, IpRangeKind, RdnsMode, Space, Subnet, SubnetId, Topology, Vlan, VlanId,
    Zone,
};

use crate::{ip, net};

pub(crate) fn msg<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    result.unwrap_err().to_string()
}

pub(crate) fn untagged(topo: &Topology) -> VlanId {
    topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap()
}

/// A topology with 10.77.0.0/24 (gateway .1, DNS .2) on fabric-0's untagged VLAN.
pub(crate) fn with_subnet() -> (Topology, SubnetId) {
    let mut topo = Topology::new();
    let vlan = untagged(&topo);
    let subnet = topo
        .create_subnet(Subnet {
            gateway_ip: Some(ip("10.77.0.1")),
            dns_servers: vec![ip("10.77.0.2")],
            ..Subnet::new(net("10.77.0.0/24"), vlan)
        })
        .unwrap();
    (topo, subnet)
}

pub(crate) fn range(subnet: SubnetId, start: &str, end: &str, kind: IpRangeKind) -> IpRange {
    IpRange::new(subnet, ip(start), ip(end), kind)
}

// ---- defaults ---------------------------------------------------------------------------

#[test]
fn a_new_topology_has_the_defaults() {
    let topo = Topology::new();
    let fabric = topo.fabric(Topology::DEFAULT_FABRIC).unwrap();
    assert_eq!(fabric.name, "fabric-0");
    let vlan = topo.vlan(untagged(&topo)).unwrap();
    assert_eq!(
        (vlan.vid, vlan.name.as_deref(), vlan.mtu),
        (0, Some("untagged"), 1500)
    );
    assert!(!vlan.dhcp_on && vlan.relay_vlan.is_none() && vlan.space.is_none());
    assert_eq!(topo.zone(Topology::DEFAULT_ZONE).unwrap().name, "default");
    assert_eq!(topo.fabrics().count(), 1);
    assert_eq!(topo.vlans().count(), 1);
    assert_eq!(topo.zones().count(), 1);
}

#[test]
fn every_new_fabric_gets_an_untagged_vlan() {
    let mut topo = Topology::new();
    let id = topo.create_fabric(Fabric::new("")).unwrap();
    assert_eq!(topo.fabric(id).unwrap().name, format!("fabric-{id}"));
    let vlan = topo.vlan(topo.default_vlan(id).unwrap()).unwrap();
    assert_eq!((vlan.fabric, vlan.vid, vlan.mtu), (id, 0, 1500));
}

#[test]
fn subnet_defaults_follow_maas() {
    let (topo, id) = with_subnet();
    let s = topo.subnet(id).unwrap();
    assert!(s.managed && s.allow_dns && s.allow_proxy && !s.active_discovery);
    assert_eq!(s.rdns_mode, RdnsMode::Enabled);
    assert_eq!(s.name, "10.77.0.0/24");
}

// ---- names ------------------------------------------------------------------------------

#[test]
fn names_must_be_word_characters_or_dashes() {
    let mut topo = Topology::new();
    let long = "x".repeat(257);
    for bad in [
        "has space",
        "semi;colon",
        "dot.ted",
        "new\nline",
        "",
        long.as_str(),
    ] {
        let rule = "A name is 1 to 256 letters, digits, '_' or '-'.";
        assert_eq!(
            msg(topo.create_zone(Zone::new(bad))),
            format!("Invalid zone name: {bad:?}. {rule}")
        );
        if !bad.is_empty() {
            // An empty fabric or space name means "fabric-<id>" / "space-<id>".
            assert_eq!(
                msg(topo.create_fabric(Fabric::new(bad))),
                format!("Invalid fabric name: {bad:?}. {rule}")
            );
            assert_eq!(
                msg(topo.create_space(Space::new(bad))),
                format!("Invalid space name: {bad:?}. {rule}")
            );
        }
    }
    for good in ["rack_b", "rack-b", "Ünïcode", "x", &"y".repeat(256)] {
        topo.create_zone(Zone::new(good)).unwrap();
        topo.create_fabric(Fabric::new(good)).unwrap();
    }
}

#[test]
fn fabric_n_and_space_n_are_reserved_for_their_own_id() {
    let mut topo = Topology::new();
    assert_eq!(
        msg(topo.create_fabric(Fabric::new("fabric-7"))),
        "Reserved fabric name: \"fabric-7\". Names of the form fabric-N belong to the fabric \
         whose id is N."
    );
    // The next fabric is id 1, so "fabric-1" is its own name.
    let id = topo.create_fabric(Fabric::new("fabric-1")).unwrap();
    assert_eq!(id.get(), 1);
    // Renaming it to another number is refused; names that merely start alike are fine.
    assert_eq!(
        msg(topo.update_fabric(id, |f| f.name = "fabric-0".into())),
        "Reserved fabric name: \"fabric-0\". Names of the form fabric-N belong to the fabric \
         whose id is N."
    );
    topo.update_fabric(id, |f| f.name = "fabric-1a".into())
        .unwrap();
    topo.update_fabric(id, |f| f.name = "fabric-".into())
        .unwrap();

    assert_eq!(
        msg(topo.create_space(Space::new("space-9"))),
        "Reserved space name: \"space-9\". Names of the form space-N belong to the space whose \
         id is N."
    );
    let space = topo.create_space(Space::new("")).unwrap();
    assert_eq!(topo.space(space).unwrap().name, format!("space-{space}"));
    // Zones have no reserved names.
    topo.create_zone(Zone::new("zone-3")).unwrap();
}

#[test]
fn names_are_unique_per_kind() {
    let mut topo = Topology::new();
    topo.create_fabric(Fabric::new("storage")).unwrap();
    assert_eq!(
        msg(topo.create_fabric(Fabric::new("storage"))),
        "Fabric with name \"storage\" already exists."
    );
    topo.create_space(Space::new("storage")).unwrap();
    assert_eq!(
        msg(topo.create_space(Space::new("storage"))),
        "Space with name \"storage\" already exists."
    );
    assert_eq!(
        msg(topo.create_zone(Zone::new("default"))),
        "Zone with name \"default\" already exists."
    );
    let other = topo.create_zone(Zone::new("b")).unwrap();
    assert_eq!(
        msg(topo.update_zone(other, |z| z.name = "default".into())),
        "Zone with name \"default\" already exists."
    );
}

// ---- fabrics ----------------------------------------------------------------------------

#[test]
fn the_default_fabric_cannot_be_deleted() {
    let mut topo = Topology::new();
    assert_eq!(
        msg(topo.delete_fabric(Topology::DEFAULT_FABRIC)),
        "This fabric is the default fabric, it cannot be deleted (fabric-0)."
    );
    // Renaming it is allowed.
    topo.update_fabric(Topology::DEFAULT_FABRIC, |f| f.name = "main".into())
        .unwrap();
    assert_eq!(
        msg(topo.delete_fabric(Topology::DEFAULT_FABRIC)),
        "This fabric is the default fabric, it cannot be deleted (main)."
    );
}

#[test]
fn a_fabric_with_subnets_cannot_be_deleted() {
    let mut topo = Topology::new();
    let fabric = topo.create_fabric(Fabric::new("storage")).unwrap();
    let tagged = topo.create_vlan(Vlan::new(fabric, 20)).unwrap();
    topo.create_subnet(Subnet::new(net("10.77.9.0/24"), tagged))
        .unwrap();
    topo.create_subnet(Subnet::new(
        net("10.77.3.0/24"),
        topo.default_vlan(fabric).unwrap(),
    ))
    .unwrap();
    assert_eq!(
        msg(topo.delete_fabric(fabric)),
        "Can't delete fabric storage; the following subnets are still present: 10.77.3.0/24, \
         10.77.9.0/24."
    );
}

#[test]
fn deleting_a_fabric_deletes_its_vlans_and_the_relays_to_them() {
    let mut topo = Topology::new();
    let fabric = topo.create_fabric(Fabric::new("lab")).unwrap();
    let lab_vlan = topo.create_vlan(Vlan::new(fabric, 30)).unwrap();
    let relaying = topo
        .create_vlan(Vlan {
            relay_vlan: Some(lab_vlan),
            ..Vlan::new(Topology::DEFAULT_FABRIC, 40)
        })
        .unwrap();
    topo.delete_fabric(fabric).unwrap();
    assert!(topo.fabric(fabric).is_none());
    assert_eq!(topo.vlans_on(fabric).count(), 0);
    assert_eq!(topo.vlan(relaying).unwrap().relay_vlan, None);
    assert_eq!(
        msg(topo.delete_fabric(fabric)),
        format!("Fabric {fabric} does not exist.")
    );
}

// ---- VLANs ------------------------------------------------------------------------------

#[test]
fn vid_must_be_between_0_and_4094() {
    let mut topo = Topology::new();
    let f = Topology::DEFAULT_FABRIC;
    assert_eq!(
        msg(topo.create_vlan(Vlan::new(f, 4095))),
        "VID must be between 0 and 4094. Got 4095."
    );
    assert_eq!(
        msg(topo.create_vlan(Vlan::new(f, u16::MAX))),
        "VID must be between 0 and 4094. Got 65535."
    );
    topo.create_vlan(Vlan::new(f, 4094)).unwrap();
    topo.create_vlan(Vlan::new(f, 1)).unwrap();
}

#[test]
fn mtu_must_be_between_552_and_65535() {
    let mut topo = Topology::new();
    let f = Topology::DEFAULT_FABRIC;
    assert_eq!(
        msg(topo.create_vlan(Vlan {
            mtu: 551,
            ..Vlan::new(f, 2)
        })),
        "MTU must be between 552 and 65535. Got 551."
    );
    assert_eq!(
        msg(topo.create_vlan(Vlan {
            mtu: 65536,
            ..Vlan::new(f, 2)
        })),
        "MTU must be between 552 and 65535. Got 65536."
    );
    topo.create_vlan(Vlan {
        mtu: 552,
        ..Vlan::new(f, 2)
    })
    .unwrap();
    topo.create_vlan(Vlan {
        mtu: 65535,
        ..Vlan::new(f, 3)
    })
    .unwrap();
    let v = topo.create_vlan(Vlan::new(f, 4)).unwrap();
    assert_eq!(topo.vlan(v).unwrap().mtu, 1500);
}

#[test]
fn a_vid_is_unique_within_its_fabric_only() {
    let mut topo = Topology::new();
    let other = topo.create_fabric(Fabric::new("other")).unwrap();
    topo.create_vlan(Vlan::new(Topology::DEFAULT_FABRIC, 100))
        .unwrap();
    topo.create_vlan(Vlan::new(other, 100)).unwrap();
    assert_eq!(
        msg(topo.create_vlan(Vlan::new(Topology::DEFAULT_FABRIC, 100))),
        "A VLAN with VID 100 already exists in fabric fabric-0."
    );
    assert_eq!(
        msg(topo.create_vlan(Vlan::new(other, 0))),
        "A VLAN with VID 0 already exists in fabric other."
    );
    let v = topo.create_vlan(Vlan::new(other, 101)).unwrap();
    assert_eq!(
        msg(topo.update_vlan(v, |v| v.vid = 100)),
        "A VLAN with VID 100 already exists in fabric other."
    );
}

#[test]
fn the_untagged_vlan_is_fixed_and_undeletable() {
    let mut topo = Topology::new();
    let id = untagged(&topo);
    assert_eq!(
        msg(topo.delete_vlan(id)),
        "This VLAN is the default VLAN in the fabric, it cannot be deleted (fabric-0 VID 0)."
    );
    assert_eq!(
        msg(topo.update_vlan(id, |v| v.vid = 5)),
        "The default VLAN of fabric fabric-0 must keep VID 0 on that fabric."
    );
    let other = topo.create_fabric(Fabric::new("other")).unwrap();
    assert_eq!(
        msg(topo.update_vlan(id, |v| v.fabric = other)),
        "The default VLAN of fabric fabric-0 must keep VID 0 on that fabric."
    );
    // Other properties may change.
    topo.update_vlan(id, |v| {
        v.mtu = 9000;
        v.dhcp_on = true;
    })
    .unwrap();
}

#[test]
fn a_vlan_must_reference_existing_things() {
    let mut topo = Topology::new();
    assert_eq!(
        msg(topo.create_vlan(Vlan::new(maas_net::FabricId::new(9), 5))),
        "Fabric 9 does not exist."
    );
    assert_eq!(
        msg(topo.create_vlan(Vlan {
            space: Some(maas_net::SpaceId::new(4)),
            ..Vlan::new(Topology::DEFAULT_FABRIC, 5)
        })),
        "Space 4 does not exist."
    );
    assert_eq!(
        msg(topo.create_vlan(Vlan {
            relay_vlan: Some(VlanId::new(77)),
            ..Vlan::new(Topology::DEFAULT_FABRIC, 5)
        })),
        "VLAN 77 does not exist."
    );
}

#[test]
fn relay_vlan_rules() {
    let mut topo = Topology::new();
    let f = Topology::DEFAULT_FABRIC;
    let target = untagged(&topo);
    let a = topo
        .create_vlan(Vlan {
            relay_vlan: Some(target),
            ..Vlan::new(f, 10)
        })
        .unwrap();
    let b = topo.create_vlan(Vlan::new(f, 20)).unwrap();

    assert_eq!(
        msg(topo.update_vlan(b, |v| v.relay_vlan = Some(b))),
        "VLAN fabric-0 VID 20 cannot relay DHCP to itself."
    );
    // No chains: b may not relay to a, which relays.
    assert_eq!(
        msg(topo.update_vlan(b, |v| v.relay_vlan = Some(a))),
        "VLAN fabric-0 VID 20 cannot relay DHCP to VLAN fabric-0 VID 10: fabric-0 VID 10 itself \
         relays DHCP to fabric-0 VID 0."
    );
    // Nor may the target start relaying while a relays to it.
    assert_eq!(
        msg(topo.update_vlan(target, |v| v.relay_vlan = Some(b))),
        "VLAN fabric-0 VID 0 cannot relay DHCP: VLAN fabric-0 VID 10 relays DHCP to it."
    );
    // Several VLANs may relay to the same one.
    topo.update_vlan(b, |v| v.relay_vlan = Some(target))
        .unwrap();
    assert_eq!(topo.vlan(b).unwrap().relay_vlan, Some(target));
}

#[test]
fn dhcp_on_clears_relay_vlan() {
    let mut topo = Topology::new();
    let f = Topology::DEFAULT_FABRIC;
    let target = untagged(&topo);
    let created = topo
        .create_vlan(Vlan {
            dhcp_on: true,
            relay_vlan: Some(target),
            ..Vlan::new(f, 10)
        })
        .unwrap();
    assert_eq!(topo.vlan(created).unwrap().relay_vlan, None);
    let relaying = topo
        .create_vlan(Vlan {
            relay_vlan: Some(target),
            ..Vlan::new(f, 11)
        })
        .unwrap();
    topo.update_vlan(relaying, |v| v.dhcp_on = true).unwrap();
    assert_eq!(topo.vlan(relaying).unwrap().relay_vlan, None);
    assert!(topo.vlan(relaying).unwrap().dhcp_on);
}

#[test]
fn deleting_a_vlan_moves_its_subnets_to_the_default_vlan() {
    let mut topo = Topology::new();
    let f = Topology::DEFAULT_FABRIC;
    let space = topo.create_space(Space::new("pxe")).unwrap();
    let tagged = topo
        .create_vlan(Vlan {
            space: Some(space),
            ..Vlan::new(f, 300)
        })
        .unwrap();
    let subnet = topo
        .create_subnet(Subnet::new(net("10.77.30.0/24"), tagged))
        .unwrap();
    let relaying = topo
        .create_vlan(Vlan {
            relay_vlan: Some(tagged),
            ..Vlan::new(f, 301)
        })
        .unwrap();
    assert_eq!(topo.subnet_space(subnet), Some(space));

    let removed = topo.delete_vlan(tagged).unwrap();
    assert_eq!(removed.vid, 300);
    assert_eq!(topo.subnet(subnet).unwrap().vlan, untagged(&topo));
    assert_eq!(
        topo.subnet_space(subnet),
        None,
        "the space follows the VLAN"
    );
    assert_eq!(topo.vlan(relaying).unwrap().relay_vlan, None);
    assert_eq!(
        msg(topo.delete_vlan(tagged)),
        format!("VLAN {tagged} does not exist.")
    );
}

// ---- spaces -----------------------------------------------------------------------------

#[test]
fn a_subnets_space_comes_from_its_vlan() {
    let (mut topo, subnet) = with_subnet();
    assert_eq!(topo.subnet_space(subnet), None);
    let space = topo.create_space(Space::new("provisioning")).unwrap();
    topo.update_vlan(untagged(&topo), |v| v.space = Some(space))
        .unwrap();
    assert_eq!(topo.subnet_space(subnet), Some(space));
    topo.delete_space(space).unwrap();
    assert_eq!(topo.vlan(untagged(&topo)).unwrap().space, None);
    assert_eq!(topo.subnet_space(subnet), None);
}

// ---- zones ------------------------------------------------------------------------------

#[test]
fn the_default_zone_is_kept() {
    let mut topo = Topology::new();
    assert_eq!(
        msg(topo.delete_zone(Topology::DEFAULT_ZONE)),
        "This zone is the default zone, it cannot be deleted (default)."
    );
    assert_eq!(
        msg(topo.update_zone(Topology::DEFAULT_ZONE, |z| z.name = "main".into())),
        "This zone is the default zone, it cannot be renamed (default)."
    );
    topo.update_zone(Topology::DEFAULT_ZONE, |z| z.description = "rack A".into())
        .unwrap();
    let b = topo.create_zone(Zone::new("rack-b")).unwrap();
    assert_eq!(topo.delete_zone(b).unwrap().name, "rack-b");
    assert_eq!(topo.zone_by_name("rack-b"), None);
}
