//! Properties checked on random inputs: overlap detection and address lookup agree with a
//! brute-force check, random sequences of changes never break the model's invariants (and a
//! refused change changes nothing), and every reachable topology round-trips through TOML and
//! JSON.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use maas_net::ip::{self, Family};
use maas_net::{
    Fabric, FabricId, IpRange, IpRangeKind, Space, SpaceId, StaticRoute, Subnet, SubnetId,
    Topology, Vlan, VlanId, Zone, ZoneId,
};
use proptest::prelude::*;

/// Networks inside 10.77.0.0/16 and fd77::/16, sized so that random ones often collide.
fn small_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u16>(), 16u8..=32).prop_map(|(host, len)| {
            let addr = Ipv4Addr::from(u32::from_be_bytes([10, 77, 0, 0]) | u32::from(host));
            IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
        }),
        (any::<u16>(), 16u8..=128).prop_map(|(bits, len)| {
            // Vary only the bits right after fd77: so that networks nest and overlap.
            let value = (0xfd77u128 << 112) | (u128::from(bits) << 96);
            IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(value), len.max(16))
                    .unwrap()
                    .trunc(),
            )
        }),
    ]
}

fn overlaps(a: IpNet, b: IpNet) -> bool {
    Family::of_net(a) == Family::of_net(b) && (a.contains(&b.network()) || b.contains(&a.network()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn overlap_detection_agrees_with_brute_force(nets in prop::collection::vec(small_net(), 1..40)) {
        let mut topo = Topology::new();
        let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
        let mut accepted: Vec<IpNet> = Vec::new();
        for n in nets {
            let expect_ok = !accepted.iter().any(|a| overlaps(*a, n));
            let got = topo.create_subnet(Subnet::new(n, vlan));
            prop_assert_eq!(got.is_ok(), expect_ok, "{} against {:?}: {:?}", n, accepted, got);
            if let Err(e) = got {
                prop_assert!(e.to_string().starts_with(&format!("Subnet {n} would overlap")), "{}", e);
            } else {
                accepted.push(n);
            }
            // overlapping_subnet answers for any network, stored or not.
            let found = topo.overlapping_subnet(n).map(|id| topo.subnet(id).unwrap().cidr);
            match found {
                Some(f) => prop_assert!(overlaps(f, n)),
                None => prop_assert!(!accepted.iter().any(|a| overlaps(*a, n))),
            }
        }
    }

    #[test]
    fn address_lookup_agrees_with_brute_force(
        nets in prop::collection::vec(small_net(), 1..30),
        probes in prop::collection::vec(small_net(), 1..30),
    ) {
        let mut topo = Topology::new();
        let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
        for n in nets {
            let _ = topo.create_subnet(Subnet::new(n, vlan));
        }
        // Probe the first, last and an inner address of each probe network.
        for p in probes {
            for addr in [p.network(), p.broadcast(), p.hosts().nth(1).unwrap_or(p.network())] {
                let expect = topo.subnets().find(|(_, s)| s.cidr.contains(&addr)).map(|(id, _)| id);
                prop_assert_eq!(topo.subnet_containing(addr), expect, "{}", addr);
            }
        }
    }
}

/// One change to a topology, with ids and values drawn small so that they often hit existing
/// entities and often break a rule.
#[derive(Clone, Debug)]
enum Op {
    CreateFabric(u8),
    DeleteFabric(u32),
    CreateVlan(u32, u16, u32),
    UpdateVlanRelay(u32, Option<u32>, bool),
    UpdateVlanSpace(u32, Option<u32>),
    DeleteVlan(u32),
    CreateSpace(u8),
    DeleteSpace(u32),
    CreateZone(u8),
    DeleteZone(u32),
    CreateSubnet(IpNet, u32, Option<u8>, bool),
    UpdateSubnet(u32, IpNet, Option<u8>, bool),
    DeleteSubnet(u32),
    CreateRange(u32, u8, u16, bool),
    UpdateRange(u32, u8, u16, Option<bool>),
    DeleteRange(u32),
    CreateRoute(u32, u32, u8),
    DeleteRoute(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let id = || 0u32..6;
    let few = || 0u32..3;
    prop_oneof![
        2 => (0u8..4).prop_map(Op::CreateFabric),
        1 => id().prop_map(Op::DeleteFabric),
        3 => (few(), prop_oneof![4 => 1u16..8, 1 => Just(0), 1 => Just(4095)], prop_oneof![Just(1500u32), Just(9000), Just(100)])
            .prop_map(|(f, v, m)| Op::CreateVlan(f, v, m)),
        2 => (id(), proptest::option::of(id()), any::<bool>()).prop_map(|(v, r, d)| Op::UpdateVlanRelay(v, r, d)),
        1 => (id(), proptest::option::of(few())).prop_map(|(v, s)| Op::UpdateVlanSpace(v, s)),
        1 => id().prop_map(Op::DeleteVlan),
        1 => (0u8..4).prop_map(Op::CreateSpace),
        1 => few().prop_map(Op::DeleteSpace),
        1 => (0u8..4).prop_map(Op::CreateZone),
        1 => few().prop_map(Op::DeleteZone),
        5 => (small_net(), few(), proptest::option::of(any::<u8>()), prop::bool::weighted(0.7))
            .prop_map(|(n, v, g, m)| Op::CreateSubnet(n, v, g, m)),
        2 => (few(), small_net(), proptest::option::of(any::<u8>()), prop::bool::weighted(0.7))
            .prop_map(|(s, n, g, m)| Op::UpdateSubnet(s, n, g, m)),
        1 => id().prop_map(Op::DeleteSubnet),
        8 => (few(), any::<u8>(), prop_oneof![0u16..40, 250u16..300], any::<bool>())
            .prop_map(|(s, a, len, d)| Op::CreateRange(s, a, len, d)),
        2 => (id(), any::<u8>(), prop_oneof![0u16..40, 250u16..300], proptest::option::of(any::<bool>()))
            .prop_map(|(r, a, len, d)| Op::UpdateRange(r, a, len, d)),
        1 => id().prop_map(Op::DeleteRange),
        3 => (few(), few(), any::<u8>()).prop_map(|(a, b, g)| Op::CreateRoute(a, b, g)),
        1 => id().prop_map(Op::DeleteRoute),
    ]
}

/// The `k`th address of a subnet (wrapping), so that random offsets land inside it.
fn nth(topo: &Topology, subnet: u32, k: u8) -> IpAddr {
    match topo.subnet(SubnetId::new(subnet)) {
        Some(s) => {
            let (family, first) = ip::bits(s.cidr.network());
            let last = ip::bits(s.cidr.broadcast()).1;
            let span = (last - first).saturating_add(1);
            ip::from_bits(family, first + u128::from(k) % span)
        }
        None => IpAddr::V4(Ipv4Addr::new(10, 77, 255, k)),
    }
}

/// `start + len`, saturating within the family.
fn offset(start: IpAddr, len: u16) -> IpAddr {
    let (family, v) = ip::bits(start);
    let max = if family == Family::V4 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    ip::from_bits(family, v.saturating_add(u128::from(len)).min(max))
}

fn apply(topo: &mut Topology, op: &Op) -> Result<(), maas_net::Error> {
    match *op {
        Op::CreateFabric(n) => topo.create_fabric(Fabric::new(format!("f{n}"))).map(drop),
        Op::DeleteFabric(id) => topo.delete_fabric(FabricId::new(id)).map(drop),
        Op::CreateVlan(f, vid, mtu) => topo
            .create_vlan(Vlan {
                mtu,
                ..Vlan::new(FabricId::new(f), vid)
            })
            .map(drop),
        Op::UpdateVlanRelay(v, relay, dhcp) => topo.update_vlan(VlanId::new(v), |vlan| {
            vlan.relay_vlan = relay.map(VlanId::new);
            vlan.dhcp_on = dhcp;
        }),
        Op::UpdateVlanSpace(v, space) => {
            topo.update_vlan(VlanId::new(v), |vlan| vlan.space = space.map(SpaceId::new))
        }
        Op::DeleteVlan(id) => topo.delete_vlan(VlanId::new(id)).map(drop),
        Op::CreateSpace(n) => topo.create_space(Space::new(format!("s{n}"))).map(drop),
        Op::DeleteSpace(id) => topo.delete_space(SpaceId::new(id)).map(drop),
        Op::CreateZone(n) => topo.create_zone(Zone::new(format!("z{n}"))).map(drop),
        Op::DeleteZone(id) => topo.delete_zone(ZoneId::new(id)).map(drop),
        Op::CreateSubnet(cidr, vlan, gw, managed) => {
            let gateway_ip = gw.map(|k| {
                let (f, first) = ip::bits(cidr.network());
                let span = (ip::bits(cidr.broadcast()).1 - first).saturating_add(1);
                ip::from_bits(f, first + u128::from(k) % span)
            });
            topo.create_subnet(Subnet {
                gateway_ip,
                managed,
                ..Subnet::new(cidr, VlanId::new(vlan))
            })
            .map(drop)
        }
        Op::UpdateSubnet(id, cidr, gw, managed) => {
            let gateway_ip = gw.map(|k| nth(topo, id, k));
            topo.update_subnet(SubnetId::new(id), |s| {
                s.cidr = cidr;
                s.gateway_ip = gateway_ip;
                s.managed = managed;
            })
        }
        Op::DeleteSubnet(id) => topo.delete_subnet(SubnetId::new(id)).map(drop),
        Op::CreateRange(s, a, len, dynamic) => {
            let kind = if dynamic {
                IpRangeKind::Dynamic
            } else {
                IpRangeKind::Reserved
            };
            let start = nth(topo, s, a);
            let r = IpRange::new(SubnetId::new(s), start, offset(start, len), kind);
            topo.create_ip_range(r).map(drop)
        }
        Op::UpdateRange(id, a, len, dynamic) => {
            let Some(subnet) = topo
                .ip_range(maas_net::IpRangeId::new(id))
                .map(|r| r.subnet.get())
            else {
                return topo.update_ip_range(maas_net::IpRangeId::new(id), |_| {});
            };
            let start = nth(topo, subnet, a);
            let end = offset(start, len);
            topo.update_ip_range(maas_net::IpRangeId::new(id), |r| {
                r.start = start;
                r.end = end;
                if let Some(dynamic) = dynamic {
                    r.kind = if dynamic {
                        IpRangeKind::Dynamic
                    } else {
                        IpRangeKind::Reserved
                    };
                }
            })
        }
        Op::DeleteRange(id) => topo.delete_ip_range(maas_net::IpRangeId::new(id)).map(drop),
        Op::CreateRoute(a, b, g) => {
            let gateway = nth(topo, a, g);
            topo.create_static_route(StaticRoute::new(
                SubnetId::new(a),
                SubnetId::new(b),
                gateway,
            ))
            .map(drop)
        }
        Op::DeleteRoute(id) => topo
            .delete_static_route(maas_net::StaticRouteId::new(id))
            .map(drop),
    }
}

/// Everything the model promises, checked from the outside.
fn check_invariants(topo: &Topology) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        topo.fabric(Topology::DEFAULT_FABRIC)
            .map(|f| f.name.as_str())
            .is_some(),
        true
    );
    prop_assert!(topo.zone(Topology::DEFAULT_ZONE).is_some());
    for (fid, _) in topo.fabrics() {
        prop_assert!(
            topo.default_vlan(fid).is_some(),
            "fabric {} lost its untagged VLAN",
            fid
        );
    }
    for (vid, v) in topo.vlans() {
        prop_assert!(topo.fabric(v.fabric).is_some());
        prop_assert!(v.vid <= 4094 && (552..=65535).contains(&v.mtu));
        prop_assert_eq!(
            topo.vlans_on(v.fabric)
                .filter(|(_, o)| o.vid == v.vid)
                .count(),
            1
        );
        if let Some(s) = v.space {
            prop_assert!(topo.space(s).is_some());
        }
        if let Some(r) = v.relay_vlan {
            prop_assert!(!v.dhcp_on && r != vid);
            prop_assert_eq!(topo.vlan(r).unwrap().relay_vlan, None, "relay chain");
        }
    }
    let subnets: Vec<_> = topo.subnets().collect();
    for (i, (id, s)) in subnets.iter().enumerate() {
        prop_assert!(topo.vlan(s.vlan).is_some());
        prop_assert!(s.cidr.prefix_len() > 0 && s.cidr == s.cidr.trunc());
        if let Some(g) = s.gateway_ip {
            prop_assert!(s.cidr.contains(&g) || ip::is_ipv6_link_local(g));
        }
        for (_, other) in &subnets[i + 1..] {
            prop_assert!(
                !overlaps(s.cidr, other.cidr),
                "{} overlaps {}",
                s.cidr,
                other.cidr
            );
        }
        prop_assert_eq!(topo.subnet_containing(s.cidr.network()), Some(*id));
        prop_assert_eq!(topo.subnet_containing(s.cidr.broadcast()), Some(*id));
    }
    let ranges: Vec<_> = topo.ip_ranges().collect();
    for (i, (_, r)) in ranges.iter().enumerate() {
        let s = topo.subnet(r.subnet).expect("range's subnet exists");
        prop_assert!(s.cidr.contains(&r.start) && s.cidr.contains(&r.end) && r.size() > 0);
        if r.kind == IpRangeKind::Dynamic {
            prop_assert!(s.gateway_ip.is_none_or(|g| !r.contains(g)));
            if !s.managed {
                let held = ranges.iter().any(|(_, o)| {
                    o.subnet == r.subnet
                        && o.kind == IpRangeKind::Reserved
                        && o.contains(r.start)
                        && o.contains(r.end)
                });
                prop_assert!(held, "unmanaged dynamic range outside reserved ranges");
            }
        }
        for (_, o) in &ranges[i + 1..] {
            if o.subnet != r.subnet {
                continue;
            }
            let meet = ip::bits(r.start).1 <= ip::bits(o.end).1
                && ip::bits(o.start).1 <= ip::bits(r.end).1;
            let allowed = !s.managed && r.kind != o.kind; // dynamic inside reserved, unmanaged
            prop_assert!(!meet || allowed, "ranges overlap: {:?} {:?}", r, o);
        }
    }
    // The per-subnet lookups agree with a scan of everything.
    for (id, _) in topo.subnets() {
        let indexed: Vec<_> = topo.ip_ranges_in(id).map(|(r, _)| r).collect();
        let scanned: Vec<_> = topo
            .ip_ranges()
            .filter(|(_, r)| r.subnet == id)
            .map(|(r, _)| r)
            .collect();
        prop_assert_eq!(indexed, scanned);
        let indexed: Vec<_> = topo.static_routes_from(id).map(|(r, _)| r).collect();
        let scanned: Vec<_> = topo
            .static_routes()
            .filter(|(_, r)| r.source == id)
            .map(|(r, _)| r)
            .collect();
        prop_assert_eq!(indexed, scanned);
    }
    for (_, route) in topo.static_routes() {
        let source = topo.subnet(route.source).expect("route source exists");
        let dest = topo
            .subnet(route.destination)
            .expect("route destination exists");
        prop_assert!(route.source != route.destination);
        prop_assert!(source.cidr.contains(&route.gateway_ip));
        prop_assert_eq!(Family::of_net(source.cidr), Family::of_net(dest.cidr));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn random_changes_keep_every_invariant(ops in prop::collection::vec(op(), 1..80)) {
        let mut topo = Topology::new();
        for op in &ops {
            let before = topo.clone();
            if apply(&mut topo, op).is_err() {
                prop_assert_eq!(&topo, &before, "a refused {:?} changed the topology", op);
            }
            check_invariants(&topo)?;
        }
        // Whatever was reached saves and loads unchanged, in both formats.
        let text = toml::to_string(&topo).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: Topology = toml::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &topo);
        prop_assert_eq!(toml::to_string(&back).unwrap(), text);
        let json = serde_json::to_string(&topo).unwrap();
        let back: Topology = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}\n{json}")))?;
        prop_assert_eq!(&back, &topo);
    }
}
