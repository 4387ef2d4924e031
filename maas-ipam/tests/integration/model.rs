//! The engine against a naive reference model, on random operation sequences.
//!
//! The model recomputes every decision from plain sets by brute force over the subnet's
//! addresses (MAAS's rules written the simplest way); the engine must agree on every step:
//! the addresses returned, which operations are refused, what is held, and the statistics.
//! Along the way: no address is ever held twice, nothing lands outside its pool, and a
//! released address is available again. And the changes the engine emits, applied to a store,
//! rebuild an engine with the same records and the same client bindings.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use maas_ipam::{
    AddressKind, AssignOptions, AutoRequest, ClientKey, Ipam, LeaseState, Requested, Snapshot,
    Timestamp,
};
use maas_net::ip::{self, Family};
use maas_net::{IpRange, IpRangeKind, Subnet, SubnetId, Topology};
use proptest::prelude::*;

const HOLD: u64 = 30;
const LEASE: u64 = 100;
const QUARANTINE: u64 = 50;

#[derive(Clone, Debug)]
struct Config {
    v6: bool,
    prefix_small: bool,
    managed: bool,
    gateway: Option<u8>,
    dns: Option<u8>,
    reserved: Option<(u8, u8)>,
    dynamic: Option<(u8, u8)>,
}

#[derive(Clone, Debug)]
enum Op {
    Allocate {
        count: u8,
        exclude: Vec<u8>,
    },
    Assign {
        at: u8,
        sticky: bool,
        allow_reserved: bool,
    },
    Release {
        at: u8,
    },
    Observe {
        at: u8,
        age: u8,
    },
    Forget {
        at: u8,
    },
    Offer {
        client: u8,
    },
    Request {
        client: u8,
        at: Option<u8>,
    },
    LeaseRelease {
        client: u8,
    },
    Decline {
        client: u8,
    },
    Expire,
}

fn config() -> impl Strategy<Value = Config> {
    (
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.75),
        proptest::option::of(0u8..64),
        proptest::option::of(0u8..64),
        proptest::option::of((0u8..64, 0u8..24)),
        proptest::option::weighted(0.85, (0u8..64, 0u8..24)),
    )
        .prop_map(
            |(v6, prefix_small, managed, gateway, dns, reserved, dynamic)| Config {
                v6,
                prefix_small,
                managed,
                gateway,
                dns,
                reserved,
                dynamic,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..6, prop::collection::vec(0u8..64, 0..3)).prop_map(|(count, exclude)| Op::Allocate { count, exclude }),
        2 => (0u8..64, any::<bool>(), any::<bool>()).prop_map(|(at, sticky, allow_reserved)| Op::Assign { at, sticky, allow_reserved }),
        2 => (0u8..64).prop_map(|at| Op::Release { at }),
        2 => (0u8..64, 0u8..50).prop_map(|(at, age)| Op::Observe { at, age }),
        1 => (0u8..64).prop_map(|at| Op::Forget { at }),
        4 => (0u8..6).prop_map(|client| Op::Offer { client }),
        4 => (0u8..6, proptest::option::weighted(0.3, 0u8..64)).prop_map(|(client, at)| Op::Request { client, at }),
        3 => (0u8..6).prop_map(|client| Op::LeaseRelease { client }),
        2 => (0u8..6).prop_map(|client| Op::Decline { client }),
        1 => Just(Op::Expire),
    ]
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    kind: AddressKind,
    lease: Option<(ClientKey, LeaseState, Timestamp)>,
}

/// MAAS's rules over plain sets.
struct Model {
    family: Family,
    first: u128,
    last: u128,
    managed: bool,
    infra: BTreeSet<u128>,
    dynamic: Vec<(u128, u128)>,
    reserved: Vec<(u128, u128)>,
    held: BTreeMap<u128, Held>,
    discovered: BTreeMap<u128, Timestamp>,
    bindings: HashMap<ClientKey, u128>,
}

fn within(ranges: &[(u128, u128)], a: u128) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= a && a <= hi)
}

impl Model {
    fn auto_universe(&self, a: u128) -> bool {
        let in_pool = if self.managed {
            !within(&self.dynamic, a) && !within(&self.reserved, a)
        } else {
            within(&self.reserved, a) && !within(&self.dynamic, a)
        };
        (self.first..=self.last).contains(&a) && in_pool && !self.infra.contains(&a)
    }

    fn auto_free(&self, a: u128) -> bool {
        self.auto_universe(a) && !self.held.contains_key(&a) && !self.discovered.contains_key(&a)
    }

    fn dhcp_universe(&self, a: u128) -> bool {
        self.managed
            && within(&self.dynamic, a)
            && !self.infra.contains(&a)
            && (self.first..=self.last).contains(&a)
    }

    fn dhcp_free(&self, a: u128) -> bool {
        self.dhcp_universe(a) && !self.held.contains_key(&a) && !self.discovered.contains_key(&a)
    }

    fn free_blocks(&self) -> Vec<(u128, u128)> {
        let mut blocks: Vec<(u128, u128)> = Vec::new();
        for a in self.first..=self.last {
            if self.auto_free(a) {
                match blocks.last_mut() {
                    Some(b) if b.1 + 1 == a => b.1 = a,
                    _ => blocks.push((a, a)),
                }
            }
        }
        blocks
    }

    fn choose(&self, count: usize, exclude: &BTreeSet<u128>) -> Vec<u128> {
        let mut blocks: Vec<(u128, u128)> = Vec::new();
        for a in self.first..=self.last {
            if self.auto_free(a) && !exclude.contains(&a) {
                match blocks.last_mut() {
                    Some(b) if b.1 + 1 == a => b.1 = a,
                    _ => blocks.push((a, a)),
                }
            }
        }
        blocks.sort_by_key(|&(lo, hi)| (hi - lo, lo));
        let mut out: Vec<u128> = blocks
            .iter()
            .flat_map(|&(lo, hi)| lo..=hi)
            .take(count)
            .collect();
        let mut seen: Vec<(Timestamp, u128)> =
            self.discovered.iter().map(|(a, t)| (*t, *a)).collect();
        seen.sort();
        for (_, a) in seen {
            if out.len() >= count {
                break;
            }
            if !exclude.contains(&a) && !self.held.contains_key(&a) && self.auto_universe(a) {
                out.push(a);
            }
        }
        out
    }

    fn active(&self, client: &ClientKey) -> Option<u128> {
        let a = *self.bindings.get(client)?;
        match &self.held.get(&a)?.lease {
            Some((c, state, _)) if c == client && *state != LeaseState::Declined => Some(a),
            _ => None,
        }
    }
}

fn client_key(n: u8) -> ClientKey {
    if n % 3 == 2 {
        ClientKey::client_id(vec![0xff, n])
    } else {
        ClientKey::Mac(maas_net::Mac::new([0x52, 0x54, 0, 0x77, 1, n]))
    }
}

fn build(config: &Config) -> (Ipam, SubnetId, Model) {
    // Small enough to check by brute force; the /64 rule has its own test.
    let cidr: ipnet::IpNet = match (config.v6, config.prefix_small) {
        (false, false) => "10.77.4.0/26".parse().unwrap(),
        (false, true) => "10.77.4.0/29".parse().unwrap(),
        (true, false) => "fd77:4::/122".parse().unwrap(),
        (true, true) => "fd77:4::/125".parse().unwrap(),
    };
    let (base, top) = ip::bounds(cidr);
    let family = Family::of_net(cidr);
    let at = |o: u8| ip::from_bits(family, base + u128::from(o) % (top - base + 1));
    let mut topo = Topology::new();
    let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
    let subnet = Subnet {
        managed: config.managed,
        gateway_ip: config.gateway.map(at),
        dns_servers: config.dns.map(at).into_iter().collect(),
        ..Subnet::new(cidr, vlan)
    };
    let s = topo.create_subnet(subnet).unwrap();
    // The model takes whatever ranges the topology accepted.
    for (range, kind) in [
        (config.reserved, IpRangeKind::Reserved),
        (config.dynamic, IpRangeKind::Dynamic),
    ] {
        if let Some((o, len)) = range {
            let start = at(o);
            let end = ip::from_bits(family, (ip::bits(start).1 + u128::from(len)).min(top));
            let _ = topo.create_ip_range(IpRange::new(s, start, end, kind));
        }
    }
    let (first, last) = ip::usable_bounds(cidr);
    let model_subnet = topo.subnet(s).unwrap();
    let infra: BTreeSet<u128> = model_subnet
        .gateway_ip
        .iter()
        .chain(&model_subnet.dns_servers)
        .map(|a| ip::bits(*a).1)
        .collect();
    let mut dynamic = Vec::new();
    let mut reserved = Vec::new();
    for (_, r) in topo.ip_ranges_in(s) {
        let bounds = (ip::bits(r.start).1, ip::bits(r.end).1);
        match r.kind {
            IpRangeKind::Dynamic => dynamic.push(bounds),
            IpRangeKind::Reserved => reserved.push(bounds),
        }
    }
    let model = Model {
        family,
        first,
        last,
        managed: config.managed,
        infra,
        dynamic,
        reserved,
        held: BTreeMap::new(),
        discovered: BTreeMap::new(),
        bindings: HashMap::new(),
    };
    (Ipam::new(topo), s, model)
}

fn run(config: &Config, ops: &[Op]) -> Result<(), TestCaseError> {
    let (mut ipam, s, mut m) = build(config);
    let family = m.family;
    let (base, top) = (m.first.saturating_sub(1), m.last + 1);
    let addr = |o: u8| base + u128::from(o) % (top - base + 1);
    let to_ip = |a: u128| ip::from_bits(family, a);
    // What a store holds: the change stream applied in order.
    let mut stored = Snapshot {
        topology: Some(ipam.topology().to_doc()),
        ..Snapshot::default()
    };
    for (step, op) in ops.iter().enumerate() {
        let now = Timestamp(1000 + 10 * step as u64);
        match op {
            Op::Allocate { count, exclude } => {
                let exclude: BTreeSet<u128> = exclude.iter().map(|o| addr(*o)).collect();
                let mut request = AutoRequest::new().count(usize::from(*count));
                request.exclude = exclude.iter().map(|a| to_ip(*a)).collect();
                let want = m.choose(usize::from(*count), &exclude);
                let got = ipam.allocate(s, &request, now);
                if want.is_empty() {
                    prop_assert!(got.is_err(), "{:?}: engine gave {:?}", op, got);
                } else {
                    let got: Vec<u128> = got
                        .map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?
                        .iter()
                        .map(|a| ip::bits(*a).1)
                        .collect();
                    prop_assert_eq!(&got, &want, "{:?}", op);
                    for a in got {
                        prop_assert!(!m.held.contains_key(&a), "double allocation of {}", a);
                        m.held.insert(
                            a,
                            Held {
                                kind: AddressKind::Auto,
                                lease: None,
                            },
                        );
                    }
                }
                while ipam.poll_event().is_some() {}
            }
            Op::Assign {
                at,
                sticky,
                allow_reserved,
            } => {
                let a = addr(*at);
                let reserved_refused = m.managed && within(&m.reserved, a) && !*allow_reserved;
                let ok = (m.first..=m.last).contains(&a)
                    && !within(&m.dynamic, a)
                    && !reserved_refused
                    && !m.infra.contains(&a)
                    && !m.held.contains_key(&a);
                let kind = if *sticky {
                    Requested::Sticky
                } else {
                    Requested::UserReserved
                };
                let options = AssignOptions {
                    allow_reserved: *allow_reserved,
                    ..Default::default()
                };
                let got = ipam.assign(to_ip(a), kind, &options, now);
                prop_assert_eq!(got.is_ok(), ok, "{:?}: {:?}", op, got);
                if ok {
                    let kind = if *sticky {
                        AddressKind::Sticky
                    } else {
                        AddressKind::UserReserved
                    };
                    m.held.insert(a, Held { kind, lease: None });
                }
            }
            Op::Release { at } => {
                let a = addr(*at);
                prop_assert_eq!(ipam.release(to_ip(a)).is_ok(), m.held.remove(&a).is_some());
            }
            Op::Observe { at, age } => {
                let a = addr(*at);
                let seen = Timestamp(now.0.saturating_sub(u64::from(*age)));
                let in_subnet = ipam.topology().subnet(s).unwrap().cidr.contains(&to_ip(a));
                prop_assert_eq!(ipam.observe(to_ip(a), None, seen).is_some(), in_subnet);
                if in_subnet {
                    m.discovered.insert(a, seen);
                }
            }
            Op::Forget { at } => {
                let a = addr(*at);
                prop_assert_eq!(
                    ipam.forget(to_ip(a)).is_some(),
                    m.discovered.remove(&a).is_some()
                );
            }
            Op::Offer { client } => {
                let c = client_key(*client);
                let want = if !m.managed {
                    None
                } else if let Some(a) = m.active(&c) {
                    Some(a)
                } else {
                    let previous = m.bindings.get(&c).copied().filter(|a| m.dhcp_free(*a));
                    previous.or_else(|| (m.first..=m.last).find(|a| m.dhcp_free(*a)))
                };
                let got = ipam
                    .dhcp_offer(s, &c, now, HOLD)
                    .ok()
                    .map(|a| ip::bits(a).1);
                prop_assert_eq!(got, want, "{:?}", op);
                if let Some(a) = want {
                    let refresh = match m.held.get(&a) {
                        Some(h) => matches!(h.lease, Some((_, LeaseState::Offered, _))),
                        None => true,
                    };
                    if refresh {
                        m.held.insert(
                            a,
                            Held {
                                kind: AddressKind::Dhcp,
                                lease: Some((c.clone(), LeaseState::Offered, now.plus(HOLD))),
                            },
                        );
                    }
                    m.bindings.insert(c, a);
                }
            }
            Op::Request { client, at } => {
                let c = client_key(*client);
                let Some(a) = at.map(addr).or_else(|| m.bindings.get(&c).copied()) else {
                    continue;
                };
                let ok = m.managed
                    && m.dhcp_universe(a)
                    && match m.held.get(&a) {
                        Some(h) => {
                            matches!(&h.lease, Some((holder, state, _)) if *holder == c && *state != LeaseState::Declined)
                        }
                        None => !m.discovered.contains_key(&a),
                    };
                let got = ipam.dhcp_request(to_ip(a), &c, now, LEASE);
                prop_assert_eq!(got.is_ok(), ok, "{:?}: {:?}", op, got);
                if ok {
                    // One address per client: its other offer or lease is given up.
                    if let Some(previous) = m.active(&c).filter(|p| *p != a) {
                        m.held.remove(&previous);
                    }
                    m.held.insert(
                        a,
                        Held {
                            kind: AddressKind::Dhcp,
                            lease: Some((c.clone(), LeaseState::Bound, now.plus(LEASE))),
                        },
                    );
                    m.bindings.insert(c, a);
                }
            }
            Op::LeaseRelease { client } | Op::Decline { client } => {
                let c = client_key(*client);
                let Some(a) = m.bindings.get(&c).copied() else {
                    continue;
                };
                let ok = m.active(&c) == Some(a);
                let got = match op {
                    Op::Decline { .. } => ipam.dhcp_decline(to_ip(a), &c, now, QUARANTINE),
                    _ => ipam.dhcp_release(to_ip(a), &c),
                };
                prop_assert_eq!(got.is_ok(), ok, "{:?}: {:?}", op, got);
                if ok {
                    if matches!(op, Op::Decline { .. }) {
                        m.held.insert(
                            a,
                            Held {
                                kind: AddressKind::Dhcp,
                                lease: Some((
                                    c.clone(),
                                    LeaseState::Declined,
                                    now.plus(QUARANTINE),
                                )),
                            },
                        );
                        m.bindings.remove(&c);
                    } else {
                        m.held.remove(&a);
                    }
                }
            }
            Op::Expire => {
                let mut got: Vec<u128> = ipam
                    .expire(now)
                    .into_iter()
                    .map(|r| ip::bits(r.ip).1)
                    .collect();
                got.sort();
                let want: Vec<u128> = m
                    .held
                    .iter()
                    .filter(|(_, h)| h.lease.as_ref().is_some_and(|(_, _, t)| *t <= now))
                    .map(|(a, _)| *a)
                    .collect();
                prop_assert_eq!(&got, &want);
                for a in want {
                    m.held.remove(&a);
                }
            }
        }
        check(&ipam, s, &m)?;
        maas_ipam::apply(&mut stored, &ipam.take_changes());
        check_reload(&ipam, &stored)?;
    }
    Ok(())
}

/// An engine rebuilt from what the store holds has the engine's records and bindings (the
/// bindings its records imply are not stored; the others are).
fn check_reload(ipam: &Ipam, stored: &Snapshot) -> Result<(), TestCaseError> {
    let reloaded =
        Ipam::from_snapshot(stored.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (mut want, mut got) = (ipam.snapshot(), reloaded.snapshot());
    for snapshot in [&mut want, &mut got] {
        snapshot.bindings.sort();
        snapshot
            .records
            .sort_by_key(|r| (r.ip, r.kind == AddressKind::Discovered));
    }
    prop_assert_eq!(&got.records, &want.records);
    prop_assert_eq!(&got.bindings, &want.bindings);
    // Only bindings no stored record implies take rows of their own, besides ones the
    // client's record came to imply again later.
    for (client, ip) in &stored.bindings {
        prop_assert_eq!(
            want.bindings.iter().find(|(c, _)| c == client).map(|b| b.1),
            Some(*ip)
        );
    }
    Ok(())
}

/// The engine's state and statistics equal the model's.
fn check(ipam: &Ipam, s: SubnetId, m: &Model) -> Result<(), TestCaseError> {
    let held: BTreeMap<u128, Held> = ipam
        .records()
        .map(|r| {
            let lease = r
                .lease
                .as_ref()
                .map(|l| (l.client.clone(), l.state, l.expires));
            (
                ip::bits(r.ip).1,
                Held {
                    kind: r.kind,
                    lease,
                },
            )
        })
        .collect();
    prop_assert_eq!(&held, &m.held);
    let discovered: BTreeMap<u128, Timestamp> = ipam
        .discoveries()
        .map(|r| (ip::bits(r.ip).1, r.updated))
        .collect();
    prop_assert_eq!(&discovered, &m.discovered);
    // Nothing outside its pool.
    for (a, h) in &m.held {
        match h.kind {
            AddressKind::Auto => {
                prop_assert!(m.auto_universe(*a), "AUTO address {} outside the pool", a)
            }
            AddressKind::Dhcp => prop_assert!(
                m.dhcp_universe(*a),
                "lease of {} outside the dynamic ranges",
                a
            ),
            _ => prop_assert!(
                !within(&m.dynamic, *a),
                "static address {} in a dynamic range",
                a
            ),
        }
    }
    let stats = ipam
        .statistics(s, true, true)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let blocks = m.free_blocks();
    let available: u128 = blocks.iter().map(|(lo, hi)| hi - lo + 1).sum();
    prop_assert_eq!(stats.num_available, available);
    prop_assert_eq!(stats.total_addresses, m.last - m.first + 1);
    prop_assert_eq!(
        stats.largest_available,
        blocks.iter().map(|(lo, hi)| hi - lo + 1).max().unwrap_or(0)
    );
    // The ranges partition the usable addresses, and the unused ones are exactly the free ones.
    let ranges = stats.ranges.unwrap_or_default();
    let covered: u128 = ranges.iter().map(|r| r.num_addresses).sum();
    prop_assert_eq!(covered, stats.total_addresses);
    let unused: u128 = ranges
        .iter()
        .filter(|r| r.purpose == ["unused"])
        .map(|r| r.num_addresses)
        .sum();
    prop_assert_eq!(unused, available);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn engine_agrees_with_the_reference_model(config in config(), ops in prop::collection::vec(op(), 1..60)) {
        run(&config, &ops)?;
    }
}
