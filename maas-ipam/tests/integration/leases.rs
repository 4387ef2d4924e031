//! DHCP leases: offers, binding, renewal, stickiness, release, decline and expiry.

use maas_ipam::{AddressKind, AssignOptions, ClientKey, Error, LeaseState, Requested, Timestamp};
use maas_net::IpRangeKind;

use crate::{NOW, Net, ip};

fn client(n: u8) -> ClientKey {
    ClientKey::Mac(maas_net::Mac::new([0x52, 0x54, 0, 0x77, 0, n]))
}

fn pool() -> (maas_ipam::Ipam, maas_net::SubnetId) {
    Net::with("10.77.0.0/24", Some("10.77.0.1"), &[], true)
        .range("10.77.0.100", "10.77.0.103", IpRangeKind::Dynamic)
        .ipam()
}

#[test]
fn servers_offering_from_different_parts_do_not_collide_until_a_part_is_used_up() {
    // Two ranges, 4 + 4 addresses: part 0 of 2 starts at .100, part 1 at .200.
    let net = Net::with("10.77.0.0/24", Some("10.77.0.1"), &[], true)
        .range("10.77.0.100", "10.77.0.103", IpRangeKind::Dynamic)
        .range("10.77.0.200", "10.77.0.203", IpRangeKind::Dynamic);
    let (mut a, s) = net.clone().ipam();
    let (mut b, _) = net.clone().ipam();
    let mut offered = std::collections::BTreeSet::new();
    for n in 0..4 {
        let ip_a = a.dhcp_offer_in_part(s, &client(n), NOW, 30, 0, 2).unwrap();
        let ip_b = b
            .dhcp_offer_in_part(s, &client(100 + n), NOW, 30, 1, 2)
            .unwrap();
        assert!(offered.insert(ip_a), "{ip_a} twice");
        assert!(offered.insert(ip_b), "{ip_b} twice");
    }
    assert_eq!(
        a.dhcp_offer_in_part(s, &client(0), NOW, 30, 0, 2).unwrap(),
        ip("10.77.0.100"),
        "a client keeps its offer"
    );
    assert!(offered.contains(&ip("10.77.0.103")) && offered.contains(&ip("10.77.0.203")));
    // Part 0 is used up on server A: it goes on after it (into part 1), then wraps.
    assert_eq!(
        a.dhcp_offer_in_part(s, &client(50), NOW, 30, 0, 2).unwrap(),
        ip("10.77.0.200")
    );
    // One part (or none) is the lowest free address, as dhcp_offer gives.
    let (mut c, _) = net.ipam();
    assert_eq!(
        c.dhcp_offer_in_part(s, &client(1), NOW, 30, 0, 0).unwrap(),
        ip("10.77.0.100")
    );
    // An index past the parts counts as the last part.
    assert_eq!(
        c.dhcp_offer_in_part(s, &client(2), NOW, 30, 7, 2).unwrap(),
        ip("10.77.0.200")
    );
}

#[test]
fn offers_come_from_the_dynamic_range_lowest_first() {
    let (mut ipam, s) = pool();
    assert_eq!(
        ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap(),
        ip("10.77.0.100")
    );
    // A repeated DISCOVER gets the same offer; another client the next address.
    assert_eq!(
        ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap(),
        ip("10.77.0.100")
    );
    assert_eq!(
        ipam.dhcp_offer(s, &client(2), NOW, 30).unwrap(),
        ip("10.77.0.101")
    );
    let r = ipam.record(ip("10.77.0.100")).unwrap();
    assert_eq!(r.kind, AddressKind::Dhcp);
    assert_eq!(r.lease.as_ref().unwrap().state, LeaseState::Offered);
    assert_eq!(r.lease.as_ref().unwrap().expires, NOW.plus(30));
}

#[test]
fn a_lease_records_the_client_hostname_cleaned_and_kept_on_renewal() {
    let (mut ipam, s) = pool();
    let a = ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap();
    ipam.take_changes();
    let bound = ipam
        .dhcp_request_with_hostname(a, &client(1), Some(" node-7.\u{7}."), NOW, 600)
        .unwrap();
    assert_eq!(bound.owner.as_deref(), Some("node-7"));
    assert_eq!(ipam.record(a).unwrap().owner.as_deref(), Some("node-7"));
    // One stored record per request, holding the name.
    let changes = ipam.take_changes();
    let records: Vec<_> = changes
        .iter()
        .filter_map(|c| match c {
            maas_ipam::Change::PutRecord(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), 1, "{changes:?}");
    assert_eq!(records[0].owner.as_deref(), Some("node-7"));
    // A renewal without a name keeps it; a new name replaces it; an over-long one is cut.
    let renewed = ipam
        .dhcp_request(a, &client(1), NOW.plus(300), 600)
        .unwrap();
    assert_eq!(renewed.owner.as_deref(), Some("node-7"));
    let long = "x".repeat(400);
    let renamed = ipam
        .dhcp_request_with_hostname(a, &client(1), Some(&long), NOW.plus(400), 600)
        .unwrap();
    assert_eq!(renamed.owner.map(|o| o.len()), Some(253));
}

#[test]
fn request_binds_and_renews() {
    let (mut ipam, s) = pool();
    let a = ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap();
    let bound = ipam.dhcp_request(a, &client(1), NOW, 600).unwrap();
    assert_eq!(bound.lease.as_ref().unwrap().state, LeaseState::Bound);
    assert_eq!(bound.mac, Some("52:54:00:77:00:01".parse().unwrap()));
    let renewed = ipam
        .dhcp_request(a, &client(1), NOW.plus(300), 600)
        .unwrap();
    assert_eq!(renewed.lease.unwrap().expires, NOW.plus(900));
    assert_eq!(renewed.created, NOW);
    assert_eq!(ipam.poll_timeout(), Some(NOW.plus(900)));
    // Another client may not take it.
    assert_eq!(
        ipam.dhcp_request(a, &client(2), NOW, 600).unwrap_err(),
        Error::InUse { ip: a }
    );
}

#[test]
fn init_reboot_may_claim_a_free_pool_address_only() {
    let (mut ipam, _) = pool();
    ipam.dhcp_request(ip("10.77.0.102"), &client(1), NOW, 600)
        .unwrap();
    assert_eq!(
        ipam.dhcp_request(ip("10.77.0.50"), &client(2), NOW, 600)
            .unwrap_err()
            .to_string(),
        "10.77.0.50 is not in a dynamic range of 10.77.0.0/24."
    );
    // Seen on the wire: someone else has it.
    ipam.observe(ip("10.77.0.103"), None, NOW);
    assert_eq!(
        ipam.dhcp_request(ip("10.77.0.103"), &client(3), NOW, 600)
            .unwrap_err(),
        Error::InUse {
            ip: ip("10.77.0.103")
        }
    );
}

#[test]
fn clients_get_their_previous_address_while_it_is_free() {
    let (mut ipam, s) = pool();
    let first = ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap();
    ipam.dhcp_request(first, &client(1), NOW, 600).unwrap();
    let second = ipam.dhcp_offer(s, &client(2), NOW, 30).unwrap();
    ipam.dhcp_request(second, &client(2), NOW, 600).unwrap();
    ipam.dhcp_release(first, &client(1)).unwrap();
    ipam.dhcp_release(second, &client(2)).unwrap();
    // Client 2 comes back first but still gets its own address, not the lowest free one.
    assert_eq!(ipam.dhcp_offer(s, &client(2), NOW, 30).unwrap(), second);
    assert_eq!(ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap(), first);
    // Once someone else holds it, a returning client gets another.
    let (mut ipam, s) = pool();
    let a = ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap();
    ipam.dhcp_request(a, &client(1), NOW, 600).unwrap();
    ipam.dhcp_release(a, &client(1)).unwrap();
    assert_eq!(ipam.dhcp_offer(s, &client(2), NOW, 30).unwrap(), a);
    assert_ne!(ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap(), a);
}

#[test]
fn release_needs_the_holder() {
    let (mut ipam, s) = pool();
    let a = ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap();
    ipam.dhcp_request(a, &client(1), NOW, 600).unwrap();
    assert_eq!(
        ipam.dhcp_release(a, &client(2)).unwrap_err().to_string(),
        format!("52:54:00:77:00:02 holds no lease of {a}.")
    );
    ipam.dhcp_release(a, &client(1)).unwrap();
    assert!(ipam.record(a).is_none());
}

#[test]
fn declined_addresses_are_quarantined_until_they_expire() {
    let (mut ipam, s) = pool();
    let a = ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap();
    ipam.dhcp_decline(a, &client(1), NOW, 3600).unwrap();
    assert_eq!(
        ipam.record(a).unwrap().lease.as_ref().unwrap().state,
        LeaseState::Declined
    );
    // Nobody is offered it, not even the client that declined it.
    assert_ne!(ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap(), a);
    assert_ne!(ipam.dhcp_offer(s, &client(2), NOW, 30).unwrap(), a);
    assert!(ipam.dhcp_request(a, &client(1), NOW, 600).is_err());
    let expired = ipam.expire(NOW.plus(3600));
    assert!(expired.iter().any(|r| r.ip == a));
    assert!(ipam.record(a).is_none());
    assert_eq!(
        ipam.dhcp_offer(s, &client(3), NOW.plus(3600), 30).unwrap(),
        a
    );
}

#[test]
fn expiry_frees_offers_and_leases_at_their_time() {
    let (mut ipam, s) = pool();
    let a = ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap();
    let b = ipam.dhcp_offer(s, &client(2), NOW, 30).unwrap();
    ipam.dhcp_request(b, &client(2), NOW, 600).unwrap();
    assert!(ipam.expire(NOW.plus(29)).is_empty());
    let gone: Vec<_> = ipam
        .expire(NOW.plus(30))
        .into_iter()
        .map(|r| r.ip)
        .collect();
    assert_eq!(gone, [a]);
    assert_eq!(ipam.poll_timeout(), Some(NOW.plus(600)));
    let gone: Vec<_> = ipam
        .expire(Timestamp(u64::MAX))
        .into_iter()
        .map(|r| r.ip)
        .collect();
    assert_eq!(gone, [b]);
    assert_eq!(ipam.poll_timeout(), None);
    assert_eq!(ipam.leases().count(), 0);
}

#[test]
fn the_pool_runs_out_with_a_clear_error() {
    let (mut ipam, s) = pool();
    for n in 1..=4 {
        ipam.dhcp_offer(s, &client(n), NOW, 30).unwrap();
    }
    assert_eq!(
        ipam.dhcp_offer(s, &client(5), NOW, 30)
            .unwrap_err()
            .to_string(),
        "No more IPs available in the dynamic ranges of subnet: 10.77.0.0/24."
    );
    // Static assignments never touch the pool, and the pool never touches them.
    assert!(
        ipam.assign(
            ip("10.77.0.101"),
            Requested::Sticky,
            &AssignOptions::default(),
            NOW
        )
        .is_err()
    );
}

#[test]
fn unmanaged_subnets_lease_nothing() {
    let (mut ipam, s) = Net::with("10.77.0.0/24", None, &[], false)
        .range("10.77.0.100", "10.77.0.199", IpRangeKind::Reserved)
        .range("10.77.0.150", "10.77.0.199", IpRangeKind::Dynamic)
        .ipam();
    assert_eq!(
        ipam.dhcp_offer(s, &client(1), NOW, 30)
            .unwrap_err()
            .to_string(),
        "Subnet 10.77.0.0/24 is unmanaged: addresses there are never leased by DHCP."
    );
}

#[test]
fn client_ids_and_ipv6_pools_work_the_same() {
    let (mut ipam, s) = Net::new("fd77:0:0:5::/64")
        .range("fd77:0:0:5::1000", "fd77:0:0:5::1fff", IpRangeKind::Dynamic)
        .ipam();
    let duid = ClientKey::client_id(vec![0, 1, 0, 1, 0xaa, 0xbb]);
    let a = ipam.dhcp_offer(s, &duid, NOW, 30).unwrap();
    assert_eq!(a, ip("fd77:0:0:5::1000"));
    let r = ipam.dhcp_request(a, &duid, NOW, 600).unwrap();
    assert_eq!(r.mac, None);
    assert_eq!(r.lease.unwrap().client.to_string(), "id:00010001aabb");
}

#[test]
fn a_client_holds_one_address() {
    let (mut ipam, s) = pool();
    let offered = ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap();
    // The client asks for another free address instead (INIT-REBOOT with an old lease).
    ipam.dhcp_request(ip("10.77.0.103"), &client(1), NOW, 600)
        .unwrap();
    assert!(
        ipam.record(offered).is_none(),
        "the abandoned offer is free again"
    );
    assert_eq!(ipam.leases().count(), 1);
}

#[test]
fn an_offer_whose_range_is_gone_is_dropped_not_repeated() {
    let (mut ipam, s) = pool();
    let offered = ipam.dhcp_offer(s, &client(1), NOW, 30).unwrap();
    let range = ipam
        .topology()
        .ip_ranges_in(s)
        .next()
        .map(|(id, _)| id)
        .unwrap();
    ipam.delete_ip_range(range).unwrap();
    ipam.create_ip_range(maas_net::IpRange::new(
        s,
        ip("10.77.0.200"),
        ip("10.77.0.210"),
        IpRangeKind::Dynamic,
    ))
    .unwrap();
    let again = ipam.dhcp_offer(s, &client(1), NOW.plus(5), 30).unwrap();
    assert_eq!(again, ip("10.77.0.200"));
    assert!(ipam.record(offered).is_none(), "the stale offer is gone");
    ipam.dhcp_request(again, &client(1), NOW.plus(6), 600)
        .unwrap();
}

#[test]
fn an_ethernet_client_identifier_gives_the_lease_its_mac() {
    let (mut ipam, s) = pool();
    let by_id = ClientKey::client_id(vec![1, 0x52, 0x54, 0, 0x77, 0, 9]);
    let a = ipam.dhcp_offer(s, &by_id, NOW, 30).unwrap();
    let bound = ipam.dhcp_request(a, &by_id, NOW, 600).unwrap();
    assert_eq!(bound.mac, Some("52:54:00:77:00:09".parse().unwrap()));
    // Another kind of identifier (a DUID here) names no MAC.
    let duid = ClientKey::client_id(vec![255, 0, 0, 0, 1, 0, 1, 2, 3]);
    let b = ipam.dhcp_offer(s, &duid, NOW, 30).unwrap();
    assert_eq!(ipam.dhcp_request(b, &duid, NOW, 600).unwrap().mac, None);
}
