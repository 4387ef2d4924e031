//! One test per MAAS rule for subnets, static routes and IP ranges, each asserting the exact
//! message a user sees (helpers in `rules`).

use maas_net::{BootArchitecture, Error, IpRangeKind, StaticRoute, Subnet, SubnetId, Topology};

use crate::rules::{msg, range, untagged, with_subnet};
use crate::{ip, net};

// ---- subnets ----------------------------------------------------------------------------

#[test]
fn prefix_length_zero_is_refused() {
    let mut topo = Topology::new();
    let vlan = untagged(&topo);
    assert_eq!(
        msg(topo.create_subnet(Subnet::new(net("0.0.0.0/0"), vlan))),
        "Prefix length must be greater than 0. Got 0.0.0.0/0."
    );
    assert_eq!(
        msg(topo.create_subnet(Subnet::new(net("::/0"), vlan))),
        "Prefix length must be greater than 0. Got ::/0."
    );
    topo.create_subnet(Subnet::new(net("0.0.0.0/1"), vlan))
        .unwrap();
}

#[test]
fn host_bits_are_cleared_and_the_name_defaults_to_the_cidr() {
    let mut topo = Topology::new();
    let id = topo
        .create_subnet(Subnet::new(net("10.77.5.9/24"), untagged(&topo)))
        .unwrap();
    let s = topo.subnet(id).unwrap();
    assert_eq!(s.cidr, net("10.77.5.0/24"));
    assert_eq!(s.name, "10.77.5.0/24");
    assert_eq!(topo.subnet_by_cidr(net("10.77.5.0/24")), Some(id));
    assert_eq!(topo.subnet_by_cidr(net("10.77.5.0/25")), None);
}

#[test]
fn the_gateway_must_be_inside_the_cidr_or_ipv6_link_local() {
    let mut topo = Topology::new();
    let vlan = untagged(&topo);
    let with_gw = |cidr: &str, gw: &str| Subnet {
        gateway_ip: Some(ip(gw)),
        ..Subnet::new(net(cidr), vlan)
    };
    assert_eq!(
        msg(topo.create_subnet(with_gw("10.77.0.0/24", "10.77.1.1"))),
        "Gateway IP must be within CIDR range. 10.77.1.1 is not in 10.77.0.0/24."
    );
    assert_eq!(
        msg(topo.create_subnet(with_gw("10.77.0.0/24", "169.254.0.1"))),
        "Gateway IP must be within CIDR range. 169.254.0.1 is not in 10.77.0.0/24."
    );
    assert_eq!(
        msg(topo.create_subnet(with_gw("10.77.0.0/24", "fe80::1"))),
        "Gateway IP must be within CIDR range. fe80::1 is not in 10.77.0.0/24."
    );
    assert_eq!(
        msg(topo.create_subnet(with_gw("fd77:1::/64", "fd77:2::1"))),
        "Gateway IP must be within CIDR range. fd77:2::1 is not in fd77:1::/64."
    );
    topo.create_subnet(with_gw("fd77:1::/64", "fe80::1"))
        .unwrap();
    topo.create_subnet(with_gw("fd77:2::/64", "fd77:2::1"))
        .unwrap();
    topo.create_subnet(with_gw("10.77.0.0/24", "10.77.0.254"))
        .unwrap();
}

#[test]
fn overlapping_subnets_are_refused() {
    let mut topo = Topology::new();
    let vlan = untagged(&topo);
    topo.create_subnet(Subnet::new(net("10.77.1.0/24"), vlan))
        .unwrap();
    for (cidr, shown) in [
        ("10.77.1.0/24", "10.77.1.0/24"),
        ("10.77.1.128/25", "10.77.1.128/25"),
        ("10.77.0.0/16", "10.77.0.0/16"),
        ("10.77.1.77/32", "10.77.1.77/32"),
    ] {
        assert_eq!(
            msg(topo.create_subnet(Subnet::new(net(cidr), vlan))),
            format!(
                "Subnet {shown} would overlap with existing subnets. It overlaps 10.77.1.0/24."
            )
        );
    }
    // Neighbours and other families are fine, even on another VLAN.
    topo.create_subnet(Subnet::new(net("10.77.0.0/24"), vlan))
        .unwrap();
    topo.create_subnet(Subnet::new(net("10.77.2.0/23"), vlan))
        .unwrap();
    topo.create_subnet(Subnet::new(net("::ffff:10.77.1.0/120"), vlan))
        .unwrap();
}

#[test]
fn disabled_boot_architectures_take_names_or_octets() {
    let mut topo = Topology::new();
    let subnet = Subnet {
        disabled_boot_architectures: vec![
            "pxe".parse().unwrap(),
            "00:0B".parse().unwrap(),
            "7".parse().unwrap(),
            BootArchitecture::Pxe,
        ],
        ..Subnet::new(net("10.77.0.0/24"), untagged(&topo))
    };
    let id = topo.create_subnet(subnet).unwrap();
    assert_eq!(
        topo.subnet(id).unwrap().disabled_boot_architectures,
        [
            BootArchitecture::Pxe,
            BootArchitecture::UefiArm64Tftp,
            BootArchitecture::UefiAmd64Tftp
        ],
        "kept by name, duplicates dropped"
    );
    assert_eq!(
        "windows"
            .parse::<BootArchitecture>()
            .unwrap_err()
            .to_string(),
        "Unknown boot architecture windows"
    );
    assert_eq!(
        "00:08".parse::<BootArchitecture>().unwrap_err().to_string(),
        "Unknown boot architecture 00:08"
    );
}

#[test]
fn a_subnet_change_may_not_strand_its_ranges_or_routes() {
    let (mut topo, subnet) = with_subnet();
    topo.create_ip_range(range(
        subnet,
        "10.77.0.100",
        "10.77.0.199",
        IpRangeKind::Dynamic,
    ))
    .unwrap();

    assert_eq!(
        msg(topo.update_subnet(subnet, |s| s.gateway_ip = Some(ip("10.77.0.150")))),
        "The gateway 10.77.0.150 is within the dynamic range from 10.77.0.100 to 10.77.0.199."
    );
    assert_eq!(
        msg(topo.update_subnet(subnet, |s| s.dns_servers.push(ip("10.77.0.100")))),
        "The DNS server 10.77.0.100 is within the dynamic range from 10.77.0.100 to 10.77.0.199."
    );
    assert_eq!(
        msg(topo.update_subnet(subnet, |s| {
            s.cidr = net("10.77.0.0/25");
            s.gateway_ip = None;
            s.dns_servers.clear();
        })),
        "The change would make the dynamic range 10.77.0.100-10.77.0.199 invalid: End IP address \
         must be within subnet: 10.77.0.0/25."
    );
    assert_eq!(
        msg(topo.update_subnet(subnet, |s| s.managed = false)),
        "The change would make the dynamic range 10.77.0.100-10.77.0.199 invalid: In an unmanaged \
         subnet a dynamic range must lie inside a reserved range; 10.77.0.100-10.77.0.199 does not."
    );

    let dest = topo
        .create_subnet(Subnet::new(net("10.77.9.0/24"), untagged(&topo)))
        .unwrap();
    topo.create_static_route(StaticRoute::new(subnet, dest, ip("10.77.0.254")))
        .unwrap();
    assert_eq!(
        msg(topo.update_subnet(subnet, |s| s.cidr = net("10.77.0.0/16"))),
        "Subnet 10.77.0.0/16 would overlap with existing subnets. It overlaps 10.77.9.0/24."
    );
    assert_eq!(
        msg(topo.update_subnet(dest, |s| s.cidr = net("fd77:9::/64"))),
        "The change would make the static route from 10.77.0.0/24 to fd77:9::/64 via 10.77.0.254 \
         invalid: Static route source and destination must be the same IP version (10.77.0.0/24 \
         and fd77:9::/64)."
    );

    // Nothing above changed the topology, and the address index still answers.
    assert_eq!(topo.subnet(subnet).unwrap().cidr, net("10.77.0.0/24"));
    assert_eq!(topo.subnet_containing(ip("10.77.0.7")), Some(subnet));
    assert_eq!(topo.subnet_containing(ip("10.77.9.7")), Some(dest));

    // A change that keeps everything valid goes through, and the index follows it.
    topo.update_subnet(subnet, |s| s.cidr = net("10.77.0.0/23"))
        .unwrap();
    assert_eq!(topo.subnet_containing(ip("10.77.1.7")), Some(subnet));
}

#[test]
fn deleting_a_subnet_takes_its_ranges_and_routes() {
    let (mut topo, subnet) = with_subnet();
    let other = topo
        .create_subnet(Subnet::new(net("10.77.9.0/24"), untagged(&topo)))
        .unwrap();
    topo.create_ip_range(range(
        subnet,
        "10.77.0.100",
        "10.77.0.199",
        IpRangeKind::Dynamic,
    ))
    .unwrap();
    topo.create_ip_range(range(
        other,
        "10.77.9.100",
        "10.77.9.199",
        IpRangeKind::Dynamic,
    ))
    .unwrap();
    topo.create_static_route(StaticRoute::new(subnet, other, ip("10.77.0.254")))
        .unwrap();
    topo.create_static_route(StaticRoute::new(other, subnet, ip("10.77.9.254")))
        .unwrap();
    topo.delete_subnet(subnet).unwrap();
    assert_eq!(topo.ip_ranges().count(), 1);
    assert_eq!(topo.static_routes().count(), 0);
    assert_eq!(topo.subnet_containing(ip("10.77.0.7")), None);
    assert_eq!(
        msg(topo.delete_subnet(subnet)),
        format!("Subnet {subnet} does not exist.")
    );
}

// ---- static routes ----------------------------------------------------------------------

#[test]
fn static_route_rules() {
    let (mut topo, a) = with_subnet();
    let vlan = untagged(&topo);
    let b = topo
        .create_subnet(Subnet::new(net("10.77.9.0/24"), vlan))
        .unwrap();
    let v6 = topo
        .create_subnet(Subnet::new(net("fd77:9::/64"), vlan))
        .unwrap();
    assert_eq!(
        msg(topo.create_static_route(StaticRoute::new(a, a, ip("10.77.0.254")))),
        "Static route source and destination cannot be the same subnet (10.77.0.0/24)."
    );
    assert_eq!(
        msg(topo.create_static_route(StaticRoute::new(a, v6, ip("10.77.0.254")))),
        "Static route source and destination must be the same IP version (10.77.0.0/24 and \
         fd77:9::/64)."
    );
    assert_eq!(
        msg(topo.create_static_route(StaticRoute::new(a, b, ip("10.77.9.254")))),
        "Static route gateway_ip must be within the source subnet: 10.77.9.254 is not in \
         10.77.0.0/24."
    );
    let id = topo
        .create_static_route(StaticRoute {
            metric: 5,
            ..StaticRoute::new(a, b, ip("10.77.0.254"))
        })
        .unwrap();
    assert_eq!(
        msg(topo.create_static_route(StaticRoute::new(a, b, ip("10.77.0.254")))),
        "A static route from 10.77.0.0/24 to 10.77.9.0/24 via 10.77.0.254 already exists."
    );
    // Another gateway to the same destination is a second route.
    topo.create_static_route(StaticRoute::new(a, b, ip("10.77.0.253")))
        .unwrap();
    assert_eq!(topo.static_routes_from(a).count(), 2);
    assert_eq!(topo.static_route(id).unwrap().metric, 5);
    assert_eq!(
        msg(topo.create_static_route(StaticRoute::new(a, SubnetId::new(99), ip("10.77.0.254")))),
        "Subnet 99 does not exist."
    );
}

// ---- IP ranges --------------------------------------------------------------------------

#[test]
fn range_shape_rules_with_maas_messages() {
    let (mut topo, s) = with_subnet();
    let d = IpRangeKind::Dynamic;
    let cases = [
        (
            "10.77.0.10",
            "fd77::1",
            "Start IP address and end IP address must be in the same address family.",
        ),
        (
            "10.77.0.20",
            "10.77.0.10",
            "End IP address must not be less than Start IP address.",
        ),
        (
            "10.77.1.10",
            "10.77.1.20",
            "IP addresses must be within subnet: 10.77.0.0/24.",
        ),
        (
            "10.76.255.250",
            "10.77.0.20",
            "Start IP address must be within subnet: 10.77.0.0/24.",
        ),
        (
            "10.77.0.250",
            "10.77.1.20",
            "End IP address must be within subnet: 10.77.0.0/24.",
        ),
        (
            "10.77.0.0",
            "10.77.0.20",
            "Reserved network address cannot be included in IP range.",
        ),
        (
            "10.77.0.200",
            "10.77.0.255",
            "Broadcast address cannot be included in IP range.",
        ),
    ];
    for (start, end, want) in cases {
        for kind in [IpRangeKind::Dynamic, IpRangeKind::Reserved] {
            assert_eq!(
                msg(topo.create_ip_range(range(s, start, end, kind))),
                want,
                "{start}-{end} {kind}"
            );
        }
    }
    assert_eq!(
        msg(topo.create_ip_range(range(SubnetId::new(42), "10.77.0.10", "10.77.0.20", d))),
        "Subnet 42 does not exist."
    );
    assert_eq!(topo.ip_ranges().count(), 0);
}

#[test]
fn tiny_networks_may_use_every_address() {
    let mut topo = Topology::new();
    let vlan = untagged(&topo);
    let p2p = topo
        .create_subnet(Subnet::new(net("10.77.0.0/31"), vlan))
        .unwrap();
    topo.create_ip_range(range(p2p, "10.77.0.0", "10.77.0.1", IpRangeKind::Reserved))
        .unwrap();
    let host = topo
        .create_subnet(Subnet::new(net("10.77.0.9/32"), vlan))
        .unwrap();
    topo.create_ip_range(range(host, "10.77.0.9", "10.77.0.9", IpRangeKind::Reserved))
        .unwrap();
    let v6 = topo
        .create_subnet(Subnet::new(net("fd77::/127"), vlan))
        .unwrap();
    topo.create_ip_range(range(v6, "fd77::", "fd77::1", IpRangeKind::Reserved))
        .unwrap();
}

#[test]
fn ipv6_dynamic_ranges_hold_at_least_256_addresses() {
    let mut topo = Topology::new();
    let s = topo
        .create_subnet(Subnet::new(net("fd77:1::/64"), untagged(&topo)))
        .unwrap();
    assert_eq!(
        msg(topo.create_ip_range(range(s, "fd77:1::100", "fd77:1::1fe", IpRangeKind::Dynamic))),
        "IPv6 dynamic range must be at least 256 addresses in size. Got 255."
    );
    topo.create_ip_range(range(s, "fd77:1::100", "fd77:1::1ff", IpRangeKind::Dynamic))
        .unwrap();
    // Reserved IPv6 ranges may be small, and the top of a /64 is usable (no broadcast).
    topo.create_ip_range(range(s, "fd77:1::5", "fd77:1::5", IpRangeKind::Reserved))
        .unwrap();
    topo.create_ip_range(range(
        s,
        "fd77:1::ffff:ffff:ffff:ff00",
        "fd77:1::ffff:ffff:ffff:ffff",
        IpRangeKind::Dynamic,
    ))
    .unwrap();
    assert_eq!(
        msg(topo.create_ip_range(range(s, "fd77:1::", "fd77:1::5", IpRangeKind::Reserved))),
        "Reserved network address cannot be included in IP range."
    );
}

#[test]
fn reserved_ranges_may_cover_the_gateway_and_dns_but_not_other_ranges() {
    let (mut topo, s) = with_subnet();
    topo.create_ip_range(range(s, "10.77.0.1", "10.77.0.9", IpRangeKind::Reserved))
        .unwrap();
    assert_eq!(
        msg(topo.create_ip_range(range(s, "10.77.0.5", "10.77.0.20", IpRangeKind::Reserved))),
        "Requested reserved range conflicts with an existing range. 10.77.0.5-10.77.0.20 overlaps \
         the reserved range 10.77.0.1-10.77.0.9."
    );
    topo.create_ip_range(range(s, "10.77.0.100", "10.77.0.199", IpRangeKind::Dynamic))
        .unwrap();
    assert_eq!(
        msg(topo.create_ip_range(range(
            s,
            "10.77.0.150",
            "10.77.0.250",
            IpRangeKind::Reserved
        ))),
        "Requested reserved range conflicts with an existing range. 10.77.0.150-10.77.0.250 \
         overlaps the dynamic range 10.77.0.100-10.77.0.199."
    );
    topo.create_ip_range(range(s, "10.77.0.10", "10.77.0.99", IpRangeKind::Reserved))
        .unwrap();
}

#[test]
fn dynamic_ranges_avoid_ranges_gateway_dns_and_assigned_addresses() {
    let (mut topo, s) = with_subnet();
    let conflict = |with: &str, start: &str, end: &str| {
        format!(
            "Requested dynamic range conflicts with an existing IP address or range. \
             {start}-{end} overlaps {with}."
        )
    };
    let d = IpRangeKind::Dynamic;
    assert_eq!(
        msg(topo.create_ip_range(range(s, "10.77.0.1", "10.77.0.50", d))),
        conflict("the gateway 10.77.0.1", "10.77.0.1", "10.77.0.50")
    );
    assert_eq!(
        msg(topo.create_ip_range(range(s, "10.77.0.2", "10.77.0.50", d))),
        conflict("the DNS server 10.77.0.2", "10.77.0.2", "10.77.0.50")
    );
    assert_eq!(
        msg(topo.create_ip_range_with(range(s, "10.77.0.3", "10.77.0.50", d), &[ip("10.77.0.40")])),
        conflict("the assigned address 10.77.0.40", "10.77.0.3", "10.77.0.50")
    );
    topo.create_ip_range(range(s, "10.77.0.60", "10.77.0.70", IpRangeKind::Reserved))
        .unwrap();
    assert_eq!(
        msg(topo.create_ip_range(range(s, "10.77.0.3", "10.77.0.60", d))),
        conflict(
            "the reserved range 10.77.0.60-10.77.0.70",
            "10.77.0.3",
            "10.77.0.60"
        )
    );
    let first = topo
        .create_ip_range(range(s, "10.77.0.3", "10.77.0.59", d))
        .unwrap();
    assert_eq!(
        msg(topo.create_ip_range(range(s, "10.77.0.59", "10.77.0.59", d))),
        conflict(
            "the dynamic range 10.77.0.3-10.77.0.59",
            "10.77.0.59",
            "10.77.0.59"
        )
    );
    // Addresses in use elsewhere do not matter.
    topo.create_ip_range_with(
        range(s, "10.77.0.100", "10.77.0.200", d),
        &[ip("10.77.0.50"), ip("fd77::1")],
    )
    .unwrap();
    // An update is checked the same way, against the others only.
    topo.update_ip_range(first, |r| r.end = ip("10.77.0.55"))
        .unwrap();
    assert_eq!(
        msg(topo.update_ip_range(first, |r| r.end = ip("10.77.0.65"))),
        conflict(
            "the reserved range 10.77.0.60-10.77.0.70",
            "10.77.0.3",
            "10.77.0.65"
        )
    );
}

#[test]
fn a_full_subnet_has_no_room_for_another_range() {
    let (mut topo, s) = with_subnet();
    topo.create_ip_range(range(s, "10.77.0.1", "10.77.0.254", IpRangeKind::Reserved))
        .unwrap();
    assert_eq!(
        msg(topo.create_ip_range(range(s, "10.77.0.10", "10.77.0.20", IpRangeKind::Dynamic))),
        "There is no room for any dynamic ranges on this subnet."
    );
    assert_eq!(
        msg(topo.create_ip_range(range(s, "10.77.0.10", "10.77.0.20", IpRangeKind::Reserved))),
        "There is no room for any reserved ranges on this subnet."
    );

    // Gateway and DNS servers use up the last free addresses for a dynamic range only.
    let mut topo = Topology::new();
    let tiny = topo
        .create_subnet(Subnet {
            gateway_ip: Some(ip("10.77.0.1")),
            dns_servers: vec![ip("10.77.0.2")],
            ..Subnet::new(net("10.77.0.0/30"), untagged(&topo))
        })
        .unwrap();
    assert_eq!(
        msg(topo.create_ip_range(range(tiny, "10.77.0.1", "10.77.0.2", IpRangeKind::Dynamic))),
        "There is no room for any dynamic ranges on this subnet."
    );
    topo.create_ip_range(range(tiny, "10.77.0.1", "10.77.0.2", IpRangeKind::Reserved))
        .unwrap();
}

#[test]
fn unmanaged_subnets_keep_dynamic_ranges_inside_reserved_ones() {
    let mut topo = Topology::new();
    let s = topo
        .create_subnet(Subnet {
            managed: false,
            gateway_ip: Some(ip("10.77.100.1")),
            ..Subnet::new(net("10.77.100.0/24"), untagged(&topo))
        })
        .unwrap();
    assert_eq!(
        msg(topo.create_ip_range(range(
            s,
            "10.77.100.10",
            "10.77.100.20",
            IpRangeKind::Dynamic
        ))),
        "There is no room for any dynamic ranges on this subnet."
    );
    let reserved = topo
        .create_ip_range(range(
            s,
            "10.77.100.1",
            "10.77.100.99",
            IpRangeKind::Reserved,
        ))
        .unwrap();
    assert_eq!(
        msg(topo.create_ip_range(range(
            s,
            "10.77.100.90",
            "10.77.100.120",
            IpRangeKind::Dynamic
        ))),
        "In an unmanaged subnet a dynamic range must lie inside a reserved range; \
         10.77.100.90-10.77.100.120 does not."
    );
    assert_eq!(
        msg(topo.create_ip_range(range(
            s,
            "10.77.100.1",
            "10.77.100.20",
            IpRangeKind::Dynamic
        ))),
        "Requested dynamic range conflicts with an existing IP address or range. \
         10.77.100.1-10.77.100.20 overlaps the gateway 10.77.100.1."
    );
    let dynamic = topo
        .create_ip_range(range(
            s,
            "10.77.100.50",
            "10.77.100.80",
            IpRangeKind::Dynamic,
        ))
        .unwrap();
    // The reserved range may not shrink away from, nor be deleted under, its dynamic range.
    assert_eq!(
        msg(topo.update_ip_range(reserved, |r| r.end = ip("10.77.100.60"))),
        "The change would make the dynamic range 10.77.100.50-10.77.100.80 invalid: In an \
         unmanaged subnet a dynamic range must lie inside a reserved range; \
         10.77.100.50-10.77.100.80 does not."
    );
    assert!(
        msg(topo.delete_ip_range(reserved)).starts_with("The change would make the dynamic range")
    );
    // Nor turn into a dynamic range, nor move to another subnet.
    let held = "The change would make the dynamic range 10.77.100.50-10.77.100.80 invalid";
    assert_eq!(
        msg(topo.update_ip_range(reserved, |r| r.kind = IpRangeKind::Dynamic)),
        "There is no room for any dynamic ranges on this subnet."
    );
    let other = topo
        .create_subnet(Subnet {
            managed: false,
            ..Subnet::new(net("10.77.101.0/24"), untagged(&topo))
        })
        .unwrap();
    assert_eq!(
        msg(topo.update_ip_range(reserved, |r| {
            r.subnet = other;
            r.start = ip("10.77.101.1");
            r.end = ip("10.77.101.99");
        }))
        .split(':')
        .next()
        .unwrap(),
        held
    );
    topo.delete_ip_range(dynamic).unwrap();
    topo.delete_ip_range(reserved).unwrap();
    assert_eq!(topo.ip_ranges().count(), 0);
}

#[test]
fn failed_changes_leave_the_topology_unchanged() {
    let (mut topo, s) = with_subnet();
    topo.create_ip_range(range(s, "10.77.0.100", "10.77.0.199", IpRangeKind::Dynamic))
        .unwrap();
    let before = topo.clone();
    let vlan = untagged(&topo);
    let attempts: Vec<Result<(), Error>> = vec![
        topo.update_vlan(vlan, |v| v.mtu = 10),
        topo.update_subnet(s, |s| s.cidr = net("10.77.0.0/25")),
        topo.update_fabric(Topology::DEFAULT_FABRIC, |f| f.name = "bad name".into()),
        topo.create_subnet(Subnet::new(net("10.77.0.0/16"), vlan))
            .map(drop),
        topo.delete_zone(Topology::DEFAULT_ZONE).map(drop),
    ];
    assert!(attempts.iter().all(Result::is_err));
    assert_eq!(topo, before);
    assert_eq!(topo.subnet_containing(ip("10.77.0.5")), Some(s));
}
