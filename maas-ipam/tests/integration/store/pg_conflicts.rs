//! Several regions on one PostgreSQL database, each with its own engine and `Durable`: the
//! database refuses a record for an address held by someone else, and lets every legitimate
//! transition through.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Barrier, Mutex};

use maas_ipam::{
    AddressKind, Change, ClientKey, Durable, DurableError, Lease, LeaseState, PgStore,
    PgStoreError, Record, Store, Timestamp,
};
use maas_net::{IpRange, IpRangeKind, Subnet, SubnetId, Topology};

use super::pg::Pg;
use super::{Backend, client, lease, mac, record};
use crate::ip;

/// A /24 whose dynamic range is `10.78.0.10` and the `size - 1` addresses after it.
fn small_range(size: u8) -> (Topology, SubnetId) {
    let mut topo = Topology::new();
    let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
    let subnet = topo
        .create_subnet(Subnet::new("10.78.0.0/24".parse().unwrap(), vlan))
        .unwrap();
    topo.create_ip_range(IpRange::new(
        subnet,
        ip("10.78.0.10"),
        IpAddr::from([10, 78, 0, 9 + size]),
        IpRangeKind::Dynamic,
    ))
    .unwrap();
    (topo, subnet)
}

/// Two regions on one database: the first seeds the topology, the second loads it.
fn two_regions(pg: &mut Pg, size: u8) -> (Durable<PgStore>, Durable<PgStore>, SubnetId) {
    let (topo, subnet) = small_range(size);
    let one = Durable::with_topology(pg.create(), topo).unwrap();
    let two = Durable::open(pg.create()).unwrap();
    (one, two, subnet)
}

/// Every held (not DISCOVERED) row: address and lease client.
fn held_rows(pg: &mut Pg) -> BTreeMap<IpAddr, Option<String>> {
    let mut store = pg.create();
    store
        .client()
        .query(
            "SELECT ip, lease_client FROM ipam_records WHERE NOT discovered",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[test]
fn two_regions_leasing_one_address_at_once_one_wins() {
    let Some(mut pg) = Pg::new() else { return };
    let (one, two, subnet) = two_regions(&mut pg, 1);
    let barrier = Barrier::new(2);
    let (a, b) = (client(1), client(2));
    let results: Vec<(ClientKey, Result<IpAddr, DurableError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = [(&one, a.clone()), (&two, b.clone())]
            .into_iter()
            .map(|(region, c)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let result = region.apply(|ipam| lease(ipam, subnet, &c));
                    (c, result)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    let (winner, Ok(at)) = won[0] else {
        unreachable!()
    };
    assert_eq!(*at, ip("10.78.0.10"));
    let (loser, lost) = results.iter().find(|(_, r)| r.is_err()).unwrap();
    let err = lost.as_ref().unwrap_err();
    assert!(matches!(err, DurableError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("10.78.0.10"), "{err}");
    assert_eq!(
        held_rows(&mut pg),
        BTreeMap::from([(*at, Some(winner.to_string()))])
    );
    // The losing region reloaded: it sees the winner's lease, has nothing left to offer, and
    // keeps serving.
    let losing = if *loser == a { &one } else { &two };
    let holder = losing.read(|ipam| ipam.record(*at).and_then(|r| r.lease.clone()));
    assert_eq!(holder.map(|l| l.client), Some(winner.clone()));
    let err = losing.apply(|ipam| lease(ipam, subnet, loser)).unwrap_err();
    assert!(matches!(err, DurableError::Ipam(_)), "{err:?}");
    losing.apply(|ipam| ipam.dhcp_release(*at, winner)).unwrap();
    assert!(held_rows(&mut pg).is_empty());
}

#[test]
fn two_regions_leasing_concurrently_never_hold_an_address_twice() {
    let Some(mut pg) = Pg::new() else { return };
    let (one, two, subnet) = two_regions(&mut pg, 40);
    let acknowledged = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for (r, region) in [&one, &two].into_iter().enumerate() {
            for t in 0..2u32 {
                let acknowledged = &acknowledged;
                scope.spawn(move || {
                    let clients = (0..100).map(|n| client((r as u32 * 2 + t) * 1000 + n));
                    let tickets: Vec<_> = clients
                        .filter_map(|c| match region.submit(|ipam| lease(ipam, subnet, &c)) {
                            Ok((at, ticket)) => Some((c, at, ticket)),
                            // The range is used up, as this region sees it.
                            Err(DurableError::Ipam(_)) => None,
                            Err(e) => panic!("{e:?}"),
                        })
                        .collect();
                    for (c, at, ticket) in tickets {
                        match region.wait(ticket) {
                            Ok(()) => acknowledged.lock().unwrap().push((at, c.to_string())),
                            // Refused: another region holds the address.
                            Err(DurableError::Refused(_)) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                });
            }
        }
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    let addresses: HashSet<IpAddr> = acknowledged.iter().map(|(at, _)| *at).collect();
    assert_eq!(
        addresses.len(),
        acknowledged.len(),
        "an address acknowledged twice"
    );
    // Every acknowledged lease is stored, for its client, and nothing else is: a refused batch
    // left nothing behind.
    let want: BTreeMap<IpAddr, Option<String>> = acknowledged
        .into_iter()
        .map(|(at, c)| (at, Some(c)))
        .collect();
    assert_eq!(held_rows(&mut pg), want);
    let mut store = pg.create();
    let twice = store
        .client()
        .query(
            "SELECT ip FROM ipam_records WHERE NOT discovered GROUP BY ip HAVING count(*) > 1",
            &[],
        )
        .unwrap();
    assert!(twice.is_empty());
    // Both regions still serve, and agree with the database once reopened.
    for region in [&one, &two] {
        region.apply(|_| Ok(())).unwrap();
    }
    let reopened = Durable::open(pg.create()).unwrap();
    let count = reopened.read(|ipam| ipam.records().count());
    assert_eq!(count, want.len());
}

/// A record as another region would write it, for the transition table.
fn dhcp(at: &str, c: &ClientKey, state: LeaseState, expires: u64, updated: u64) -> Record {
    Record {
        mac: None,
        owner: None,
        lease: Some(Lease {
            client: c.clone(),
            state,
            expires: Timestamp(expires),
        }),
        updated: Timestamp(updated),
        ..record(at, AddressKind::Dhcp, None)
    }
}

fn held_by(at: &str, kind: AddressKind, n: u8, owner: &str) -> Record {
    Record {
        mac: Some(mac(n)),
        owner: Some(owner.to_owned()),
        ..record(at, kind, None)
    }
}

/// Each case: what region one stores, then the batch region two commits, and whether the
/// database lets it through (a refused batch is rolled back whole: the first refused case's
/// batch also holds a record for a free address).
#[test]
fn legitimate_transitions_pass_and_takeovers_are_refused() {
    if Pg::new().is_none() {
        return;
    }
    let (x, y) = (client(1), client(2));
    let by_mac = ClientKey::Mac(mac(5));
    let put = |r: Record| Change::PutRecord(r);
    let at = "10.77.1.5";
    let remove = Change::RemoveRecord {
        ip: ip(at),
        discovered: false,
    };
    let cases: Vec<(&str, Vec<Change>, Vec<Change>, bool)> = vec![
        (
            "the same client renews",
            vec![put(dhcp(at, &x, LeaseState::Bound, 2000, 1000))],
            vec![put(dhcp(at, &x, LeaseState::Bound, 5000, 1500))],
            true,
        ),
        (
            "an offer becomes a lease for its client",
            vec![put(dhcp(at, &x, LeaseState::Offered, 1030, 1000))],
            vec![put(dhcp(at, &x, LeaseState::Bound, 4600, 1001))],
            true,
        ),
        (
            "a STICKY record updated by its machine",
            vec![put(held_by(at, AddressKind::Sticky, 5, "node-1"))],
            vec![put(held_by(at, AddressKind::Sticky, 5, "node-1.maas"))],
            true,
        ),
        (
            "an AUTO record of a machine's lease made by DHCP",
            vec![put(dhcp(at, &by_mac, LeaseState::Bound, 5000, 1000))],
            vec![put(held_by(at, AddressKind::Auto, 5, "node-1"))],
            true,
        ),
        (
            "a DISCOVERED record seen again with another MAC",
            vec![put(held_by(at, AddressKind::Discovered, 5, "seen"))],
            vec![put(held_by(at, AddressKind::Discovered, 6, "seen"))],
            true,
        ),
        (
            "an expired lease, removed, leased to another client",
            vec![
                put(dhcp(at, &x, LeaseState::Bound, 2000, 1000)),
                remove.clone(),
            ],
            vec![put(dhcp(at, &y, LeaseState::Bound, 9000, 3000))],
            true,
        ),
        (
            "an expired lease its region has not removed yet",
            vec![put(dhcp(at, &x, LeaseState::Bound, 2000, 1000))],
            vec![put(dhcp(at, &y, LeaseState::Offered, 3030, 3000))],
            true,
        ),
        (
            "a live lease taken by another client",
            vec![put(dhcp(at, &x, LeaseState::Bound, 5000, 1000))],
            vec![
                put(dhcp("10.77.1.6", &y, LeaseState::Bound, 5000, 1500)),
                put(dhcp(at, &y, LeaseState::Bound, 5000, 1500)),
            ],
            false,
        ),
        (
            "a live offer taken by another client",
            vec![put(dhcp(at, &x, LeaseState::Offered, 1030, 1000))],
            vec![put(dhcp(at, &y, LeaseState::Offered, 1040, 1010))],
            false,
        ),
        (
            "a STICKY address allocated to another machine",
            vec![put(held_by(at, AddressKind::Sticky, 5, "node-1"))],
            vec![put(held_by(at, AddressKind::Auto, 6, "node-2"))],
            false,
        ),
        (
            "a lease over a user reservation",
            vec![put(held_by(at, AddressKind::UserReserved, 5, "admin"))],
            vec![put(dhcp(at, &y, LeaseState::Offered, 1030, 1000))],
            false,
        ),
    ];
    for (name, first, second, passes) in cases {
        let mut pg_case = Pg::new().unwrap();
        let (mut one, mut two) = (pg_case.create(), pg_case.create());
        // Region one commits its changes one at a time, as its writer would when idle.
        for change in &first {
            one.commit(std::slice::from_ref(change)).unwrap();
        }
        let before = sorted_records(&mut two);
        let result = two.commit(&second);
        if passes {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut want = before.clone();
            for change in &second {
                let Change::PutRecord(r) = change else {
                    unreachable!()
                };
                want.retain(|s| {
                    (s.ip, s.kind == AddressKind::Discovered)
                        != (r.ip, r.kind == AddressKind::Discovered)
                });
                want.push(r.clone());
            }
            want.sort_by_key(|r| (r.ip, r.kind == AddressKind::Discovered));
            assert_eq!(sorted_records(&mut one), want, "{name}");
        } else {
            let err = result.expect_err(name);
            assert!(
                matches!(&err, PgStoreError::Conflict { ip: refused, .. } if *refused == ip(at)),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains(at), "{name}: {err}");
            assert_eq!(sorted_records(&mut one), before, "{name}: rolled back");
        }
    }
}

fn sorted_records(store: &mut PgStore) -> Vec<Record> {
    store.load().unwrap().records
}

/// A region removing an address and putting it for another holder in one batch: the batch's
/// last change per key must not become a refused takeover.
#[test]
fn remove_then_put_for_another_holder_in_one_batch_passes() {
    let Some(mut pg) = Pg::new() else { return };
    let (x, y) = (client(1), client(2));
    let at = "10.77.1.5";
    let mut store = pg.create();
    store
        .commit(&[Change::PutRecord(dhcp(
            at,
            &x,
            LeaseState::Bound,
            5000,
            1000,
        ))])
        .unwrap();
    let replaced = dhcp(at, &y, LeaseState::Offered, 1030, 1000);
    store
        .commit(&[
            Change::RemoveRecord {
                ip: ip(at),
                discovered: false,
            },
            Change::PutRecord(replaced.clone()),
        ])
        .unwrap();
    assert_eq!(pg.create().load().unwrap().records, vec![replaced]);
}

/// A region removing its stale record after another region took the address over (its lease
/// had expired) leaves the other region's record alone.
#[test]
fn removing_a_stale_record_leaves_the_new_holders() {
    let Some(mut pg) = Pg::new() else { return };
    let (x, y) = (client(1), client(2));
    let at = "10.77.1.5";
    let (mut one, mut two) = (pg.create(), pg.create());
    one.commit(&[Change::PutRecord(dhcp(
        at,
        &x,
        LeaseState::Bound,
        2000,
        1000,
    ))])
    .unwrap();
    let taken = dhcp(at, &y, LeaseState::Bound, 9000, 3000);
    two.commit(&[Change::PutRecord(taken.clone())]).unwrap();
    one.commit(&[Change::RemoveRecord {
        ip: ip(at),
        discovered: false,
    }])
    .unwrap();
    assert_eq!(two.load().unwrap().records, vec![taken]);
}

/// Two regions reserving the same address for the same owner, neither knowing of the other's:
/// the second is refused (one reservation, not two answered); once it has read the stored
/// one, it may change it.
#[test]
fn a_record_a_store_has_not_seen_is_not_replaced_even_for_its_holder() {
    let Some(mut pg) = Pg::new() else {
        return;
    };
    let (mut one, mut two) = (pg.create(), pg.create());
    let at = "10.77.1.7";
    let mut first = held_by(at, AddressKind::UserReserved, 5, "admin");
    first.mac = None;
    one.commit(&[Change::PutRecord(first.clone())]).unwrap();
    let mut second = first.clone();
    second.created = Timestamp(first.created.0 + 1);
    second.updated = second.created;
    let err = two
        .commit(&[Change::PutRecord(second.clone())])
        .expect_err("a reservation two did not see");
    assert!(matches!(err, PgStoreError::Conflict { .. }), "{err:?}");
    assert_eq!(sorted_records(&mut one), [first]);
    // Having read it, two changes it.
    two.load().unwrap();
    two.commit(&[Change::PutRecord(second.clone())]).unwrap();
    assert_eq!(sorted_records(&mut one), [second]);
}
