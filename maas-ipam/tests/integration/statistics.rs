//! Subnet statistics: MAAS's fields and arithmetic.

use maas_ipam::{AssignOptions, RangeUsage, Requested};
use maas_net::IpRangeKind;

use crate::{NOW, Net, ip};

#[test]
fn maas_example_four_used_in_a_slash24() {
    let (mut ipam, s) = Net::new("10.77.0.0/24").ipam();
    for a in ["10.77.0.2", "10.77.0.4", "10.77.0.6", "10.77.0.8"] {
        ipam.assign(ip(a), Requested::Sticky, &AssignOptions::default(), NOW)
            .unwrap();
    }
    let st = ipam.statistics(s, false, false).unwrap();
    assert_eq!(st.num_available, 250);
    assert_eq!(st.largest_available, 246);
    assert_eq!(st.num_unavailable, 4);
    assert_eq!(st.total_addresses, 254);
    assert!((st.usage - 4.0 / 254.0).abs() < 1e-12);
    assert_eq!(st.usage_string, "2%");
    assert_eq!(st.available_string, "98%");
    assert_eq!(
        (st.first_address, st.last_address),
        (ip("10.77.0.1"), ip("10.77.0.254"))
    );
    assert_eq!(st.ip_version, 4);
    assert!(st.ranges.is_none() && st.suggestions.is_none());
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["usage_string"], "2%");
    assert!(json.get("ranges").is_none() && json.get("suggested_gateway").is_none());
}

#[test]
fn ranges_partition_the_subnet_by_purpose() {
    let (mut ipam, s) = Net::with("10.77.0.0/28", Some("10.77.0.1"), &["10.77.0.2"], true)
        .range("10.77.0.8", "10.77.0.11", IpRangeKind::Dynamic)
        .ipam();
    ipam.assign(
        ip("10.77.0.5"),
        Requested::Sticky,
        &AssignOptions::default(),
        NOW,
    )
    .unwrap();
    let st = ipam.statistics(s, true, true).unwrap();
    let r = |a: &str, b: &str, n: u128, p: &[&str]| RangeUsage {
        start: ip(a),
        end: ip(b),
        num_addresses: n,
        purpose: p.iter().map(|s| s.to_string()).collect(),
    };
    assert_eq!(
        st.ranges.unwrap(),
        [
            r("10.77.0.1", "10.77.0.1", 1, &["gateway-ip"]),
            r("10.77.0.2", "10.77.0.2", 1, &["dns-server"]),
            r("10.77.0.3", "10.77.0.4", 2, &["unused"]),
            r("10.77.0.5", "10.77.0.5", 1, &["assigned-ip"]),
            r("10.77.0.6", "10.77.0.7", 2, &["unused"]),
            r("10.77.0.8", "10.77.0.11", 4, &["dynamic"]),
            r("10.77.0.12", "10.77.0.14", 3, &["unused"]),
        ]
    );
    assert_eq!(
        (st.num_available, st.num_unavailable, st.largest_available),
        (7, 7, 3)
    );
    let sug = st.suggestions.unwrap();
    assert_eq!(sug.suggested_gateway, None, "the subnet has a gateway");
    assert_eq!(
        sug.suggested_dynamic_range, None,
        "the subnet has a dynamic range"
    );
}

#[test]
fn suggestions_follow_maas() {
    // An empty /24: gateway .1, dynamic range the top quarter of the rest.
    let (ipam, s) = Net::new("10.77.0.0/24").ipam();
    let st = ipam.statistics(s, false, true).unwrap();
    let sug = st.suggestions.unwrap();
    assert_eq!(sug.suggested_gateway, Some(ip("10.77.0.1")));
    let range = sug.suggested_dynamic_range.unwrap();
    // Largest block .1-.254 minus the gateway: .2-.254 (253 > 254/4): first = .254 - 63.
    assert_eq!(
        (range.start, range.end, range.num_addresses),
        (ip("10.77.0.191"), ip("10.77.0.254"), 64)
    );
    assert_eq!(range.purpose, ["proposed-dynamic"]);
    let json = serde_json::to_value(ipam.statistics(s, false, true).unwrap()).unwrap();
    assert_eq!(json["suggested_gateway"], "10.77.0.1");
    assert_eq!(json["suggested_dynamic_range"]["start"], "10.77.0.191");

    // First address taken: the last one is suggested.
    let (mut ipam, s) = Net::new("10.77.0.0/24").ipam();
    ipam.assign(
        ip("10.77.0.1"),
        Requested::Sticky,
        &AssignOptions::default(),
        NOW,
    )
    .unwrap();
    assert_eq!(
        ipam.statistics(s, false, true)
            .unwrap()
            .suggestions
            .unwrap()
            .suggested_gateway,
        Some(ip("10.77.0.254"))
    );

    // IPv6: the subnet-router anycast address.
    let (ipam, s) = Net::new("fd77:0:0:1::/64").ipam();
    let sug = ipam
        .statistics(s, false, true)
        .unwrap()
        .suggestions
        .unwrap();
    assert_eq!(sug.suggested_gateway, Some(ip("fd77:0:0:1::")));
    assert!(sug.suggested_dynamic_range.is_some());
}

#[test]
fn unmanaged_subnets_count_only_reserved_space_as_available() {
    let (ipam, s) = Net::with("10.77.0.0/24", None, &[], false)
        .range("10.77.0.10", "10.77.0.19", IpRangeKind::Reserved)
        .ipam();
    let st = ipam.statistics(s, true, false).unwrap();
    assert_eq!((st.num_available, st.total_addresses), (10, 254));
    let purposes: Vec<Vec<String>> = st.ranges.unwrap().into_iter().map(|r| r.purpose).collect();
    assert_eq!(
        purposes,
        [vec!["unmanaged"], vec!["unused"], vec!["unmanaged"]]
    );
}

#[test]
fn ipv6_counts_do_not_overflow() {
    let (ipam, s) = Net::new("fd77::/16").ipam();
    let st = ipam.statistics(s, true, true).unwrap();
    assert_eq!(st.total_addresses, (1u128 << 112) - 1);
    assert_eq!(st.num_available, st.total_addresses);
    assert_eq!(st.usage_string, "0%");
    assert_eq!(st.ranges.unwrap().len(), 1);
}

#[test]
fn the_top_of_the_ipv6_space_does_not_overflow() {
    let (ipam, s) = Net::new("ffff:ffff:ffff:ffff::/64").ipam();
    let st = ipam.statistics(s, true, true).unwrap();
    let range = st.suggestions.unwrap().suggested_dynamic_range.unwrap();
    assert_eq!(range.end, ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    let (ipam, s) = Net::new("ffff::/16").ipam();
    assert!(ipam.statistics(s, true, true).is_ok());
}
