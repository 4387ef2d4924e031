//! MAAS's allocation rules and messages, including the cases from MAAS's own tests.

use maas_ipam::{AddressKind, AssignOptions, AutoRequest, Error, Event, Requested};
use maas_net::{IpRange, IpRangeKind, Subnet};

use crate::{NOW, Net, ip, ips};

/// Each MAAS case runs twice: in a managed subnet, and in an unmanaged one whose reserved
/// range covers every usable address (which must behave the same).
fn both(cidr: &str, gateway: Option<&str>, dns: &[&str], reserved: (&str, &str)) -> Vec<Net> {
    vec![
        Net::with(cidr, gateway, dns, true),
        Net::with(cidr, gateway, dns, false).range(reserved.0, reserved.1, IpRangeKind::Reserved),
    ]
}

#[test]
fn maas_case_slash30_with_gateway_and_dns_is_exhausted() {
    for net in both(
        "10.77.0.0/30",
        Some("10.77.0.1"),
        &["10.77.0.2"],
        ("10.77.0.1", "10.77.0.2"),
    ) {
        let (mut ipam, s) = net.ipam();
        let err = ipam.allocate(s, &AutoRequest::new(), NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "No more IPs available in subnet: 10.77.0.0/30."
        );
    }
}

#[test]
fn maas_case_empty_slash30_gives_dot1() {
    for net in both("10.77.0.0/30", None, &[], ("10.77.0.1", "10.77.0.2")) {
        let (mut ipam, s) = net.ipam();
        assert_eq!(
            ips(&ipam.allocate(s, &AutoRequest::new(), NOW).unwrap()),
            ["10.77.0.1"]
        );
    }
}

#[test]
fn maas_case_slash30_with_gateway_gives_dot2() {
    for net in both(
        "10.77.0.0/30",
        Some("10.77.0.1"),
        &[],
        ("10.77.0.1", "10.77.0.2"),
    ) {
        let (mut ipam, s) = net.ipam();
        assert_eq!(
            ips(&ipam.allocate(s, &AutoRequest::new(), NOW).unwrap()),
            ["10.77.0.2"]
        );
    }
}

#[test]
fn maas_case_slash29_excluding_dot3_count_6() {
    for net in both("10.77.0.0/29", None, &[], ("10.77.0.1", "10.77.0.6")) {
        let (mut ipam, s) = net.ipam();
        let request = AutoRequest::new().exclude(ip("10.77.0.3")).count(6);
        assert_eq!(
            ips(&ipam.next_addresses(s, &request).unwrap()),
            [
                "10.77.0.1",
                "10.77.0.2",
                "10.77.0.4",
                "10.77.0.5",
                "10.77.0.6"
            ]
        );
        assert_eq!(
            ips(&ipam.allocate(s, &request, NOW).unwrap()),
            [
                "10.77.0.1",
                "10.77.0.2",
                "10.77.0.4",
                "10.77.0.5",
                "10.77.0.6"
            ]
        );
    }
}

#[test]
fn maas_case_slash29_with_dot4_assigned_gives_dot5() {
    for net in both("10.77.0.0/29", None, &[], ("10.77.0.1", "10.77.0.6")) {
        let (mut ipam, s) = net.ipam();
        ipam.assign(
            ip("10.77.0.4"),
            Requested::Sticky,
            &AssignOptions {
                allow_reserved: true,
                ..Default::default()
            },
            NOW,
        )
        .unwrap();
        assert_eq!(
            ips(&ipam.allocate(s, &AutoRequest::new(), NOW).unwrap()),
            ["10.77.0.5"]
        );
    }
}

#[test]
fn auto_avoids_ranges_gateway_dns_and_route_gateways() {
    let mut net = Net::with("10.77.0.0/24", Some("10.77.0.1"), &["10.77.0.2"], true)
        .range("10.77.0.10", "10.77.0.99", IpRangeKind::Reserved)
        .range("10.77.0.100", "10.77.0.253", IpRangeKind::Dynamic);
    let vlan = net
        .topo
        .default_vlan(maas_net::Topology::DEFAULT_FABRIC)
        .unwrap();
    let other = net
        .topo
        .create_subnet(Subnet::new("10.77.9.0/24".parse().unwrap(), vlan))
        .unwrap();
    net.topo
        .create_static_route(maas_net::StaticRoute::new(
            net.subnet,
            other,
            ip("10.77.0.3"),
        ))
        .unwrap();
    let (mut ipam, s) = net.ipam();
    // Free: .4-.9 (6) and .254 (1): the smallest block first.
    let got = ipam
        .allocate(s, &AutoRequest::new().count(10), NOW)
        .unwrap();
    assert_eq!(
        ips(&got),
        [
            "10.77.0.254",
            "10.77.0.4",
            "10.77.0.5",
            "10.77.0.6",
            "10.77.0.7",
            "10.77.0.8",
            "10.77.0.9"
        ]
    );
    assert!(
        got.iter()
            .all(|a| ipam.record(*a).unwrap().kind == AddressKind::Auto)
    );
    assert_eq!(
        ipam.allocate(s, &AutoRequest::new(), NOW)
            .unwrap_err()
            .to_string(),
        "No more IPs available in subnet: 10.77.0.0/24."
    );
}

#[test]
fn ties_go_to_the_lowest_start() {
    let (mut ipam, s) = Net::new("10.77.0.0/28").ipam();
    // Free blocks after these: .1-.2, .4-.5, .7-.14 -> the two 2-blocks tie; .1 wins.
    for a in ["10.77.0.3", "10.77.0.6"] {
        ipam.assign(
            ip(a),
            Requested::UserReserved,
            &AssignOptions::default(),
            NOW,
        )
        .unwrap();
    }
    assert_eq!(
        ips(&ipam.allocate(s, &AutoRequest::new().count(3), NOW).unwrap()),
        ["10.77.0.1", "10.77.0.2", "10.77.0.4"]
    );
}

#[test]
fn ipv6_slash64_keeps_the_low_block_back() {
    let (mut ipam, s) = Net::with("fd77:0:0:1::/64", Some("fe80::1"), &[], true).ipam();
    assert_eq!(
        ipam.allocate(s, &AutoRequest::new().count(2), NOW).unwrap(),
        [ip("fd77:0:0:1::1:0:0"), ip("fd77:0:0:1::1:0:1")]
    );
    // Other prefix lengths have no such rule.
    let (mut ipam, s) = Net::new("fd77:0:0:2::/120").ipam();
    assert_eq!(
        ips(&ipam.allocate(s, &AutoRequest::new(), NOW).unwrap()),
        ["fd77:0:0:2::1"]
    );
    // /127 uses both addresses.
    let (mut ipam, s) = Net::new("fd77:0:0:3::/127").ipam();
    assert_eq!(
        ips(&ipam.allocate(s, &AutoRequest::new().count(3), NOW).unwrap()),
        ["fd77:0:0:3::", "fd77:0:0:3::1"]
    );
}

#[test]
fn point_to_point_and_host_subnets_use_every_address() {
    let (mut ipam, s) = Net::new("10.77.0.0/31").ipam();
    assert_eq!(
        ips(&ipam.allocate(s, &AutoRequest::new().count(3), NOW).unwrap()),
        ["10.77.0.0", "10.77.0.1"]
    );
    let (mut ipam, s) = Net::new("10.77.0.9/32").ipam();
    assert_eq!(
        ips(&ipam.allocate(s, &AutoRequest::new(), NOW).unwrap()),
        ["10.77.0.9"]
    );
}

#[test]
fn requested_addresses_follow_maas_rules() {
    let (mut ipam, _) = Net::with("10.77.0.0/24", Some("10.77.0.1"), &["10.77.0.2"], true)
        .range("10.77.0.10", "10.77.0.19", IpRangeKind::Reserved)
        .range("10.77.0.100", "10.77.0.199", IpRangeKind::Dynamic)
        .ipam();
    let opts = AssignOptions::default();
    let sticky = |ipam: &mut maas_ipam::Ipam, a: &str, o: &AssignOptions| {
        ipam.assign(ip(a), Requested::Sticky, o, NOW)
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        sticky(&mut ipam, "10.77.0.150", &opts).unwrap_err(),
        "10.77.0.150 is within the dynamic range from 10.77.0.100 to 10.77.0.199."
    );
    assert_eq!(
        sticky(&mut ipam, "10.77.0.15", &opts).unwrap_err(),
        "10.77.0.15 is within the reserved range from 10.77.0.10 to 10.77.0.19."
    );
    sticky(
        &mut ipam,
        "10.77.0.15",
        &AssignOptions {
            allow_reserved: true,
            ..Default::default()
        },
    )
    .unwrap();
    sticky(&mut ipam, "10.77.0.50", &opts).unwrap();
    assert_eq!(
        sticky(&mut ipam, "10.77.0.50", &opts).unwrap_err(),
        "The IP address 10.77.0.50 is already in use."
    );
    assert_eq!(
        sticky(&mut ipam, "10.77.0.1", &opts).unwrap_err(),
        "The IP address 10.77.0.1 is already in use: it is the gateway of 10.77.0.0/24."
    );
    assert_eq!(
        sticky(&mut ipam, "10.77.0.2", &opts).unwrap_err(),
        "The IP address 10.77.0.2 is already in use: it is the DNS server of 10.77.0.0/24."
    );
    assert_eq!(
        sticky(&mut ipam, "10.77.0.0", &opts).unwrap_err(),
        "10.77.0.0 is the network address of 10.77.0.0/24 and cannot be assigned."
    );
    assert_eq!(
        sticky(&mut ipam, "10.77.0.255", &opts).unwrap_err(),
        "10.77.0.255 is the broadcast address of 10.77.0.0/24 and cannot be assigned."
    );
    assert_eq!(
        sticky(&mut ipam, "10.78.0.1", &opts).unwrap_err(),
        "No subnet contains 10.78.0.1."
    );
    // A discovered address does not block an assignment.
    ipam.observe(
        ip("10.77.0.60"),
        Some("52:54:00:00:00:60".parse().unwrap()),
        NOW,
    );
    ipam.assign(ip("10.77.0.60"), Requested::UserReserved, &opts, NOW)
        .unwrap();
    assert_eq!(
        ipam.record(ip("10.77.0.60")).unwrap().kind,
        AddressKind::UserReserved
    );
    assert_eq!(
        ipam.discovered(ip("10.77.0.60")).unwrap().kind,
        AddressKind::Discovered
    );
}

#[test]
fn unmanaged_subnets_allocate_only_inside_reserved_ranges() {
    let (mut ipam, s) = Net::with("10.77.0.0/24", Some("10.77.0.1"), &[], false)
        .range("10.77.0.200", "10.77.0.210", IpRangeKind::Reserved)
        .range("10.77.0.205", "10.77.0.210", IpRangeKind::Dynamic)
        .ipam();
    let got = ipam
        .allocate(s, &AutoRequest::new().count(10), NOW)
        .unwrap();
    assert_eq!(
        ips(&got),
        [
            "10.77.0.200",
            "10.77.0.201",
            "10.77.0.202",
            "10.77.0.203",
            "10.77.0.204"
        ]
    );
    // A requested address may be anywhere outside dynamic ranges.
    ipam.assign(
        ip("10.77.0.50"),
        Requested::Sticky,
        &AssignOptions::default(),
        NOW,
    )
    .unwrap();
}

#[test]
fn discovered_addresses_are_avoided_then_reused_oldest_first() {
    let (mut ipam, s) = Net::new("10.77.0.0/29").ipam();
    let mac = |n: u8| Some(maas_net::Mac::new([0x52, 0x54, 0, 0, 0, n]));
    ipam.observe(ip("10.77.0.1"), mac(1), maas_ipam::Timestamp(30));
    ipam.observe(ip("10.77.0.2"), mac(2), maas_ipam::Timestamp(10));
    ipam.observe(ip("10.77.0.3"), mac(3), maas_ipam::Timestamp(20));
    // .4-.6 are free and go first.
    assert_eq!(
        ips(&ipam.allocate(s, &AutoRequest::new().count(3), NOW).unwrap()),
        ["10.77.0.4", "10.77.0.5", "10.77.0.6"]
    );
    assert_eq!(ipam.poll_event(), None);
    // Then the least recently seen discovered address, with a warning.
    assert_eq!(
        ips(&ipam.allocate(s, &AutoRequest::new(), NOW).unwrap()),
        ["10.77.0.2"]
    );
    assert_eq!(
        ipam.poll_event(),
        Some(Event::ReusedDiscovered {
            subnet: s,
            ip: ip("10.77.0.2"),
            mac: mac(2),
            last_seen: maas_ipam::Timestamp(10)
        })
    );
    // Seeing .1 again makes it the most recent: .3 goes next.
    ipam.observe(ip("10.77.0.1"), mac(1), maas_ipam::Timestamp(40));
    assert_eq!(
        ips(&ipam.allocate(s, &AutoRequest::new().count(2), NOW).unwrap()),
        ["10.77.0.3", "10.77.0.1"]
    );
    assert_eq!(
        ipam.allocate(s, &AutoRequest::new(), NOW)
            .unwrap_err()
            .to_string(),
        "No more IPs available in subnet: 10.77.0.0/29."
    );
}

#[test]
fn release_makes_an_address_free_again() {
    let (mut ipam, s) = Net::new("10.77.0.0/30").ipam();
    let got = ipam.allocate(s, &AutoRequest::new().count(2), NOW).unwrap();
    assert!(ipam.allocate(s, &AutoRequest::new(), NOW).is_err());
    assert_eq!(ipam.release(got[0]).unwrap().kind, AddressKind::Auto);
    assert_eq!(
        ipam.allocate(s, &AutoRequest::new(), NOW).unwrap(),
        [got[0]]
    );
    assert_eq!(
        ipam.release(ip("10.77.0.9")).unwrap_err().to_string(),
        "The IP address 10.77.0.9 is not assigned."
    );
    // A released address still seen on the wire stays out of the free pool.
    ipam.observe(got[1], None, NOW);
    ipam.release(got[1]).unwrap();
    assert_eq!(ipam.statistics(s, false, false).unwrap().num_available, 0);
    ipam.forget(got[1]).unwrap();
    assert_eq!(ipam.statistics(s, false, false).unwrap().num_available, 1);
}

#[test]
fn dynamic_ranges_may_not_cover_assigned_addresses() {
    let (mut ipam, s) = Net::new("10.77.0.0/24").ipam();
    ipam.assign(
        ip("10.77.0.150"),
        Requested::Sticky,
        &AssignOptions::default(),
        NOW,
    )
    .unwrap();
    let err = ipam
        .create_ip_range(IpRange::new(
            s,
            ip("10.77.0.100"),
            ip("10.77.0.199"),
            IpRangeKind::Dynamic,
        ))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Requested dynamic range conflicts with an existing IP address or range. \
         10.77.0.100-10.77.0.199 overlaps the assigned address 10.77.0.150."
    );
    // A reserved range may.
    ipam.create_ip_range(IpRange::new(
        s,
        ip("10.77.0.100"),
        ip("10.77.0.199"),
        IpRangeKind::Reserved,
    ))
    .unwrap();
    // And AUTO now avoids it.
    assert_eq!(
        ips(&ipam.allocate(s, &AutoRequest::new(), NOW).unwrap()),
        ["10.77.0.200"]
    );
}

#[test]
fn topology_changes_may_not_orphan_records() {
    let (mut ipam, s) = Net::new("10.77.0.0/24").ipam();
    ipam.assign(
        ip("10.77.0.200"),
        Requested::Sticky,
        &AssignOptions::default(),
        NOW,
    )
    .unwrap();
    let err = ipam
        .change_topology(|t| t.update_subnet(s, |x| x.cidr = "10.77.0.0/25".parse().unwrap()))
        .unwrap_err();
    assert_eq!(
        err,
        Error::WouldOrphan {
            count: 1,
            ip: ip("10.77.0.200")
        }
    );
    assert_eq!(
        ipam.topology().subnet(s).unwrap().cidr.to_string(),
        "10.77.0.0/24"
    );
    assert_eq!(ipam.statistics(s, false, false).unwrap().num_available, 253);
    ipam.change_topology(|t| t.update_subnet(s, |x| x.gateway_ip = Some(ip("10.77.0.1"))))
        .unwrap();
    assert_eq!(ipam.statistics(s, false, false).unwrap().num_available, 252);
    // Blocks are now .2-.199 and .201-.254: the smaller one goes first.
    assert_eq!(
        ips(&ipam.allocate(s, &AutoRequest::new(), NOW).unwrap()),
        ["10.77.0.201"]
    );
}

#[test]
fn a_snapshot_restores_the_same_decisions() {
    let (mut ipam, s) = Net::with("10.77.0.0/24", Some("10.77.0.1"), &[], true)
        .range("10.77.0.100", "10.77.0.199", IpRangeKind::Dynamic)
        .ipam();
    let mut store = maas_ipam::MemoryStore::new();
    use maas_ipam::Store;
    store.commit(&ipam.take_changes()).unwrap();
    ipam.allocate(s, &AutoRequest::new().count(5), NOW).unwrap();
    ipam.observe(ip("10.77.0.30"), None, NOW);
    let client = maas_ipam::ClientKey::Mac("52:54:00:00:00:01".parse().unwrap());
    let offered = ipam.dhcp_offer(s, &client, NOW, 30).unwrap();
    ipam.dhcp_request(offered, &client, NOW, 600).unwrap();
    // Apply the change log to a store and rebuild from what it holds.
    let mut seeded = maas_ipam::Snapshot {
        topology: Some(ipam.topology().to_doc()),
        ..Default::default()
    };
    maas_ipam::apply(&mut seeded, &ipam.take_changes());
    let mut copy = maas_ipam::Ipam::from_snapshot(seeded).unwrap();
    assert_eq!(
        copy.next_addresses(s, &AutoRequest::new().count(3))
            .unwrap(),
        ipam.next_addresses(s, &AutoRequest::new().count(3))
            .unwrap()
    );
    assert_eq!(
        copy.statistics(s, true, true).unwrap(),
        ipam.statistics(s, true, true).unwrap()
    );
    assert_eq!(copy.dhcp_offer(s, &client, NOW, 30).unwrap(), offered);
    let other = maas_ipam::ClientKey::Mac("52:54:00:00:00:02".parse().unwrap());
    assert_eq!(
        copy.dhcp_offer(s, &other, NOW, 30).unwrap(),
        ipam.dhcp_offer(s, &other, NOW, 30).unwrap()
    );
}

#[test]
fn snapshots_with_misplaced_leases_are_refused() {
    let (mut ipam, s) = Net::new("10.77.0.0/24").ipam();
    ipam.allocate(s, &AutoRequest::new(), NOW).unwrap();
    let mut snapshot = ipam.snapshot();
    snapshot.records[0].lease = Some(maas_ipam::Lease {
        client: maas_ipam::ClientKey::Mac("52:54:00:00:00:01".parse().unwrap()),
        state: maas_ipam::LeaseState::Bound,
        expires: NOW,
    });
    let err = maas_ipam::Ipam::from_snapshot(snapshot).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    assert!(
        err.to_string()
            .contains("the AUTO record of 10.77.0.1 carries a lease"),
        "{err}"
    );
}
