//! The properties the `maas-ipam` fuzz targets check.
//!
//! Each function takes the raw input bytes and panics when a documented property of the
//! address manager does not hold for them; inputs that describe refused operations are fine.
//! The fuzz targets in `fuzz_targets/` call these, and the `fuzz_corpus` module of
//! `maas-ipam/tests/integration` includes this file to replay the committed corpora under
//! `cargo test`.
//!
//! `check_ipam_ops` reads its input as a small network followed by a sequence of operations,
//! and checks the engine after each one against a brute-force model of the subnet (at most 256
//! addresses): which addresses AUTO and DHCP may take, the best-fit order, the statistics.
//!
//! Input layout: byte 0 chooses the subnet (bit 0: IPv6 `fd77:4::/122` instead of
//! `10.77.4.0/26`; bit 1: unmanaged); byte 1 a gateway and byte 2 a DNS server (0: none, else
//! a host byte); byte 3 the number of ranges (mod 4), each three bytes (start host, length
//! mod 16, kind). Then each operation is an op code byte (mod [`OPS`]) and its argument bytes.
//! A host byte `h` names the address at offset `h % 80` from the subnet's network address, so
//! a few lie outside it.
//!
//! Op codes: 0 `allocate`, 1 `next_addresses`, 2 `assign`, 3 `release`, 4 `observe`,
//! 5 `forget`, 6 `dhcp_offer`, 7 `dhcp_request` of the client's last offer, 8 `dhcp_request`
//! of a host byte, 9 `dhcp_release`, 10 `dhcp_decline`, 11 `expire`, 12 move the clock on,
//! 13 `create_ip_range`, 14 `delete_ip_range`, 15 change the subnet (gateway, DNS server,
//! managed, prefix length), 16 `update_ip_range`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use maas_ipam::{
    AddressKind, AssignOptions, AutoRequest, Change, ClientKey, Error, Ipam, LeaseState, Record,
    Requested, Snapshot, Timestamp, apply,
};
use maas_net::ip::{self, Family};
use maas_net::{IpRange, IpRangeKind, Mac, Subnet, SubnetId, Topology};

/// Number of operation codes `check_ipam_ops` knows.
const OPS: u8 = 17;
/// At most this many operations are run per input.
const MAX_OPS: usize = 200;

/// Reads bytes in order; missing bytes read as zero once the input is exhausted.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied();
        self.pos += 1;
        b
    }

    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
}

/// The address at offset `h % 80` from `base`.
fn host(family: Family, base: u128, h: u8) -> IpAddr {
    ip::from_bits(family, base + u128::from(h % 80))
}

/// One of eight DHCP clients: four by MAC address, four by client identifier.
fn client(b: u8) -> ClientKey {
    let c = b % 8;
    if c < 4 {
        ClientKey::Mac(Mac::new([0x52, 0x54, 0x00, 0x00, 0x00, c]))
    } else {
        ClientKey::client_id(vec![0x01, c])
    }
}

/// What the subnet's model allows for one address, before any record.
#[derive(Clone, Copy, Default)]
struct Slot {
    auto: bool,
    dhcp: bool,
}

/// A brute-force view of one subnet: every usable address with what AUTO and DHCP may do there.
struct Model {
    family: Family,
    managed: bool,
    usable: (u128, u128),
    slots: BTreeMap<u128, Slot>,
    held: BTreeMap<u128, Record>,
    discovered: BTreeMap<u128, Record>,
}

impl Model {
    fn of(ipam: &Ipam, subnet: SubnetId) -> Self {
        let topo = ipam.topology();
        let s = topo.subnet(subnet).expect("the fuzzed subnet exists");
        let family = Family::of_net(s.cidr);
        let usable = ip::usable_bounds(s.cidr);
        let mut infra: BTreeSet<IpAddr> = s.gateway_ip.into_iter().collect();
        infra.extend(s.dns_servers.iter().copied());
        infra.extend(topo.static_routes_from(subnet).map(|(_, r)| r.gateway_ip));
        let ranges: Vec<&IpRange> = topo.ip_ranges_in(subnet).map(|(_, r)| r).collect();
        let in_kind =
            |a: IpAddr, kind: IpRangeKind| ranges.iter().any(|r| r.kind == kind && r.contains(a));
        let mut slots = BTreeMap::new();
        for a in usable.0..=usable.1 {
            let addr = ip::from_bits(family, a);
            let is_infra = infra.contains(&addr);
            let dynamic = in_kind(addr, IpRangeKind::Dynamic);
            let reserved = in_kind(addr, IpRangeKind::Reserved);
            let auto = !is_infra && !dynamic && if s.managed { !reserved } else { reserved };
            let dhcp = s.managed && dynamic && !is_infra;
            slots.insert(a, Slot { auto, dhcp });
        }
        let (lo, hi) = (s.cidr.network(), s.cidr.broadcast());
        let bits = |r: &Record| (ip::bits(r.ip).1, r.clone());
        Self {
            family,
            managed: s.managed,
            usable,
            slots,
            held: ipam
                .records()
                .filter(|r| r.ip >= lo && r.ip <= hi)
                .map(bits)
                .collect(),
            discovered: ipam
                .discoveries()
                .filter(|r| r.ip >= lo && r.ip <= hi)
                .map(bits)
                .collect(),
        }
    }

    fn slot(&self, ip: IpAddr) -> Slot {
        let (f, a) = ip::bits(ip);
        if f != self.family {
            return Slot::default();
        }
        self.slots.get(&a).copied().unwrap_or_default()
    }

    fn taken(&self, a: u128) -> bool {
        self.held.contains_key(&a) || self.discovered.contains_key(&a)
    }

    /// Addresses AUTO may pick now, in address order.
    fn auto_free(&self) -> Vec<u128> {
        self.slots
            .iter()
            .filter(|(a, s)| s.auto && !self.taken(**a))
            .map(|(a, _)| *a)
            .collect()
    }

    /// Addresses DHCP may lease now, in address order.
    fn dhcp_free(&self) -> Vec<u128> {
        self.slots
            .iter()
            .filter(|(a, s)| s.dhcp && !self.taken(**a))
            .map(|(a, _)| *a)
            .collect()
    }

    /// What `allocate` must return: the free addresses (less the excluded ones) in best-fit
    /// order, then the least recently seen DISCOVERED addresses AUTO may take.
    fn expected_auto(&self, request: &AutoRequest) -> Vec<IpAddr> {
        let excluded: BTreeSet<u128> = request
            .exclude
            .iter()
            .filter(|ip| Family::of(**ip) == self.family)
            .map(|ip| ip::bits(*ip).1)
            .collect();
        let free: Vec<u128> = self
            .auto_free()
            .into_iter()
            .filter(|a| !excluded.contains(a))
            .collect();
        let mut blocks = runs(&free);
        blocks.sort_by_key(|&(lo, hi)| (hi - lo, lo));
        let mut out: Vec<u128> = blocks
            .into_iter()
            .flat_map(|(lo, hi)| lo..=hi)
            .take(request.count)
            .collect();
        if out.len() < request.count {
            let mut reusable: Vec<(Timestamp, u128)> = self
                .discovered
                .iter()
                .filter(|(a, _)| {
                    !excluded.contains(a)
                        && !self.held.contains_key(a)
                        && self.slots.get(a).is_some_and(|s| s.auto)
                })
                .map(|(a, r)| (r.updated, *a))
                .collect();
            reusable.sort_unstable();
            let more = request.count - out.len();
            out.extend(reusable.into_iter().take(more).map(|(_, a)| a));
        }
        out.into_iter()
            .map(|a| ip::from_bits(self.family, a))
            .collect()
    }

    /// Whether `client` holds a live (not declined) lease of `ip`.
    fn leased_to(&self, ip: IpAddr, client: &ClientKey) -> bool {
        let a = ip::bits(ip).1;
        Family::of(ip) == self.family
            && self
                .held
                .get(&a)
                .and_then(|r| r.lease.as_ref())
                .is_some_and(|l| &l.client == client && l.state != LeaseState::Declined)
    }
}

/// Sorted addresses as inclusive runs.
fn runs(sorted: &[u128]) -> Vec<(u128, u128)> {
    let mut out: Vec<(u128, u128)> = Vec::new();
    for &a in sorted {
        match out.last_mut() {
            Some(last) if last.1 + 1 == a => last.1 = a,
            _ => out.push((a, a)),
        }
    }
    out
}

/// The invariants that hold after every operation. Records made or renewed before the last
/// change of the network model are exempt from the range rules (a range may be added over them
/// or removed from under them).
fn check_state(ipam: &Ipam, subnet: SubnetId, model_changed: Timestamp) {
    let model = Model::of(ipam, subnet);
    let topo = ipam.topology();
    let held: Vec<&Record> = ipam.records().collect();
    let ips: BTreeSet<IpAddr> = held.iter().map(|r| r.ip).collect();
    assert_eq!(ips.len(), held.len(), "an address is held twice");
    for r in &held {
        assert_ne!(r.kind, AddressKind::Discovered, "{r:?} among held records");
        assert_eq!(ipam.record(r.ip), Some(*r));
        assert_eq!(topo.subnet_containing(r.ip), Some(r.subnet), "{r:?}");
        assert_eq!(r.lease.is_some(), r.kind == AddressKind::Dhcp, "{r:?}");
        let slot = model.slot(r.ip);
        if r.kind == AddressKind::Auto && r.created > model_changed {
            assert!(slot.auto, "AUTO {} where AUTO may not allocate", r.ip);
        }
        // A declined address is quarantined where it was offered, in a range or not.
        let live = r
            .lease
            .as_ref()
            .is_some_and(|l| l.state != LeaseState::Declined);
        if live && r.updated > model_changed {
            assert!(slot.dhcp, "DHCP {} outside the dynamic ranges", r.ip);
        }
    }
    for r in ipam.discoveries() {
        assert_eq!(r.kind, AddressKind::Discovered, "{r:?} among discoveries");
        assert_eq!(topo.subnet_containing(r.ip), Some(r.subnet), "{r:?}");
        assert!(r.lease.is_none(), "{r:?}");
    }
    let next_expiry = held
        .iter()
        .filter_map(|r| r.lease.as_ref().map(|l| l.expires))
        .min();
    assert_eq!(ipam.poll_timeout(), next_expiry, "poll_timeout");

    let free = model.auto_free();
    let largest = runs(&free)
        .iter()
        .map(|&(lo, hi)| hi - lo + 1)
        .max()
        .unwrap_or(0);
    let stats = ipam
        .statistics(subnet, false, false)
        .expect("statistics of a known subnet");
    let total = model.usable.1 - model.usable.0 + 1;
    assert_eq!(stats.total_addresses, total, "total_addresses");
    assert_eq!(
        stats.num_available + stats.num_unavailable,
        stats.total_addresses,
        "available + unavailable"
    );
    assert_eq!(stats.num_available, free.len() as u128, "num_available");
    assert_eq!(stats.largest_available, largest, "largest_available");
    check_range_usage(ipam, subnet);
}

/// The statistics with ranges cover every usable address once, and their unused runs are the
/// available addresses.
fn check_range_usage(ipam: &Ipam, subnet: SubnetId) {
    let full = ipam
        .statistics(subnet, true, true)
        .expect("statistics of a known subnet");
    let ranges = full.ranges.as_deref().unwrap_or_default();
    let covered: u128 = ranges.iter().map(|r| r.num_addresses).sum();
    assert_eq!(covered, full.total_addresses, "ranges cover {ranges:?}");
    let unused: u128 = ranges
        .iter()
        .filter(|r| r.purpose == ["unused"])
        .map(|r| r.num_addresses)
        .sum();
    assert_eq!(unused, full.num_available, "unused runs {ranges:?}");
}

/// Records, discoveries and bindings, in a comparable order.
fn normalised(mut snapshot: Snapshot) -> Snapshot {
    snapshot.bindings.sort();
    snapshot
}

/// Decodes a network and a sequence of operations, runs them, and checks the engine against a
/// brute-force model after each one; then checks that a snapshot and the change log both
/// rebuild the same engine.
pub fn check_ipam_ops(data: &[u8]) {
    let mut r = Reader { data, pos: 0 };
    let setup = r.byte();
    let v6 = setup & 1 != 0;
    let managed = setup & 2 == 0;
    let cidr: ipnet::IpNet = if v6 { "fd77:4::/122" } else { "10.77.4.0/26" }
        .parse()
        .expect("a valid CIDR");
    let family = Family::of_net(cidr);
    let base = ip::bounds(cidr).0;
    let at = |h: u8| host(family, base, h);

    let mut topo = Topology::new();
    let vlan = topo
        .default_vlan(Topology::DEFAULT_FABRIC)
        .expect("the default fabric has its untagged VLAN");
    let subnet = topo
        .create_subnet(Subnet {
            managed,
            ..Subnet::new(cidr, vlan)
        })
        .expect("an empty topology takes a subnet");
    let gateway = r.byte();
    if gateway != 0 {
        let _ = topo.update_subnet(subnet, |s| s.gateway_ip = Some(at(gateway)));
    }
    let dns = r.byte();
    if dns != 0 {
        let _ = topo.update_subnet(subnet, |s| s.dns_servers = vec![at(dns)]);
    }
    for _ in 0..r.byte() % 4 {
        let (start, len, kind) = (r.byte(), r.byte() % 16, r.byte());
        let _ = topo.create_ip_range(range(subnet, family, base, start, len, kind));
    }
    let doc = topo.to_doc();
    let mut ipam = Ipam::new(topo);
    let mut log: Vec<Vec<Change>> = vec![ipam.take_changes()];
    let mut now = Timestamp(1_000_000);
    let mut model_changed = now;
    // The address each client was last offered, to request, release or decline it.
    let mut offered: BTreeMap<u8, IpAddr> = BTreeMap::new();
    check_state(&ipam, subnet, model_changed);

    for _ in 0..MAX_OPS {
        let Some(op) = r.next() else { break };
        now = now.plus(1);
        let before = Model::of(&ipam, subnet);
        match op % OPS {
            0 | 1 => {
                let a = r.byte();
                let mut request = AutoRequest::new().count(usize::from(a & 7));
                for _ in 0..(a >> 3) & 3 {
                    request = request.exclude(at(r.byte()));
                }
                let want = before.expected_auto(&request);
                if op % OPS == 0 {
                    match ipam.allocate(subnet, &request, now) {
                        Ok(got) => {
                            assert_eq!(got, want, "allocate({request:?})");
                            for ip in &got {
                                let rec = ipam.record(*ip).expect("an allocated address");
                                assert_eq!(rec.kind, AddressKind::Auto);
                                assert!(
                                    !before.held.contains_key(&ip::bits(*ip).1),
                                    "allocate returned {ip}, already held"
                                );
                            }
                        }
                        Err(Error::Exhausted { .. }) => {
                            assert!(want.is_empty() && request.count > 0, "exhausted: {want:?}");
                        }
                        Err(e) => panic!("allocate({request:?}): {e}"),
                    }
                } else {
                    match ipam.next_addresses(subnet, &request) {
                        Ok(got) => assert_eq!(got, want, "next_addresses({request:?})"),
                        Err(Error::Exhausted { .. }) => {
                            assert!(want.is_empty() && request.count > 0, "exhausted: {want:?}");
                        }
                        Err(e) => panic!("next_addresses({request:?}): {e}"),
                    }
                }
            }
            2 => {
                let (h, flags) = (r.byte(), r.byte());
                let ip = at(h);
                let kind = if flags & 1 == 0 {
                    Requested::Sticky
                } else {
                    Requested::UserReserved
                };
                let options = AssignOptions {
                    allow_reserved: flags & 2 != 0,
                    ..AssignOptions::default()
                };
                let a = ip::bits(ip).1;
                let in_subnet = cidr_of(&ipam, subnet).contains(&ip);
                let usable = in_subnet && a >= before.usable.0 && a <= before.usable.1;
                let allowed = usable && assignable(&ipam, subnet, ip, options.allow_reserved);
                let result = ipam.assign(ip, kind, &options, now);
                let want = allowed && !before.held.contains_key(&a);
                assert_eq!(result.is_ok(), want, "assign({ip}, {kind:?}): {result:?}");
            }
            3 => {
                let ip = at(r.byte());
                let held = before.held.contains_key(&ip::bits(ip).1) && in_cidr(&ipam, subnet, ip);
                assert_eq!(ipam.release(ip).is_ok(), held, "release({ip})");
            }
            4 => {
                let (h, m) = (r.byte(), r.byte());
                let ip = at(h);
                let mac = (m & 0x80 != 0).then(|| Mac::new([0x02, 0, 0, 0, 0, m & 7]));
                let seen = ipam.observe(ip, mac, now);
                assert_eq!(seen.is_some(), in_cidr(&ipam, subnet, ip), "observe({ip})");
            }
            5 => {
                let ip = at(r.byte());
                let known =
                    before.discovered.contains_key(&ip::bits(ip).1) && in_cidr(&ipam, subnet, ip);
                assert_eq!(ipam.forget(ip).is_some(), known, "forget({ip})");
            }
            6 => {
                let (c, hold) = (r.byte() % 8, r.byte());
                let key = client(c);
                match ipam.dhcp_offer(subnet, &key, now, u64::from(hold)) {
                    Ok(ip) => {
                        let a = ip::bits(ip).1;
                        let renewed = before.leased_to(ip, &key);
                        assert!(
                            renewed || before.dhcp_free().contains(&a),
                            "offer of {ip} to {key}, neither its own nor free"
                        );
                        assert!(
                            before.slot(ip).dhcp,
                            "offer of {ip} to {key}, outside the dynamic ranges"
                        );
                        assert!(
                            ipam.record(ip)
                                .is_some_and(|r| r.lease.as_ref().is_some_and(|l| l.client == key)),
                            "offer of {ip} to {key} not recorded"
                        );
                        offered.insert(c, ip);
                    }
                    Err(Error::PoolExhausted { .. }) => {
                        assert!(before.dhcp_free().is_empty(), "pool exhausted");
                    }
                    Err(Error::Unmanaged { .. }) => assert!(!before.managed),
                    Err(e) => panic!("dhcp_offer: {e}"),
                }
            }
            7 | 8 => {
                let (c, arg, secs) = (r.byte() % 8, r.byte(), r.byte());
                let key = client(c);
                let ip = match (op % OPS, offered.get(&c)) {
                    (7, Some(ip)) => *ip,
                    _ => at(arg),
                };
                let result = ipam.dhcp_request(ip, &key, now, u64::from(secs) * 4);
                if let Ok(record) = &result {
                    let a = ip::bits(ip).1;
                    assert!(
                        before.slot(ip).dhcp,
                        "lease of {ip} outside the dynamic ranges"
                    );
                    assert!(
                        before.leased_to(ip, &key) || before.dhcp_free().contains(&a),
                        "lease of {ip} to {key}, neither its own nor free"
                    );
                    let lease = record.lease.as_ref().expect("a DHCP record has a lease");
                    assert_eq!(lease.state, LeaseState::Bound);
                    assert_eq!(&lease.client, &key);
                }
            }
            9 | 10 => {
                let (c, arg, secs) = (r.byte() % 8, r.byte(), r.byte());
                let key = client(c);
                let ip = match offered.get(&c) {
                    Some(ip) if arg & 0x80 != 0 => *ip,
                    _ => at(arg),
                };
                let own = before.leased_to(ip, &key) && in_cidr(&ipam, subnet, ip);
                let result = if op % OPS == 9 {
                    ipam.dhcp_release(ip, &key)
                } else {
                    ipam.dhcp_decline(ip, &key, now, u64::from(secs))
                };
                assert_eq!(result.is_ok(), own, "release/decline of {ip} by {key}");
            }
            11 => {
                now = now.plus(u64::from(r.byte()));
                for record in ipam.expire(now) {
                    let lease = record.lease.expect("only leases expire");
                    assert!(lease.expires <= now, "expired early: {lease:?}");
                }
                assert!(ipam.poll_timeout().is_none_or(|t| t > now), "left expired");
            }
            12 => now = now.plus(u64::from(r.byte()) * 16),
            13 => {
                let (start, len, kind) = (r.byte(), r.byte() % 16, r.byte());
                let new = range(subnet, family, base, start, len, kind);
                let dynamic = new.kind == IpRangeKind::Dynamic;
                let (lo, hi) = (ip::bits(new.start).1, ip::bits(new.end).1);
                if ipam.create_ip_range(new).is_ok() {
                    model_changed = now;
                    if dynamic {
                        assert!(
                            before.held.range(lo..=hi).next().is_none(),
                            "a dynamic range over a held address"
                        );
                    }
                }
            }
            14 => {
                let k = r.byte();
                let ids: Vec<_> = ipam
                    .topology()
                    .ip_ranges_in(subnet)
                    .map(|(id, _)| id)
                    .collect();
                if !ids.is_empty()
                    && ipam
                        .delete_ip_range(ids[usize::from(k) % ids.len()])
                        .is_ok()
                {
                    model_changed = now;
                }
            }
            15 => {
                let (what, h) = (r.byte(), r.byte());
                let result = ipam.change_topology(|t| {
                    t.update_subnet(subnet, |s| match what % 4 {
                        0 => s.gateway_ip = (h != 0).then(|| at(h)),
                        1 => s.dns_servers = if h == 0 { vec![] } else { vec![at(h)] },
                        2 => s.managed = !s.managed,
                        _ => {
                            let prefix = s.cidr.max_prefix_len() - 8 + h % 5;
                            s.cidr = ipnet::IpNet::new(s.cidr.network(), prefix)
                                .expect("a valid prefix length");
                        }
                    })
                });
                if result.is_ok() {
                    model_changed = now;
                }
            }
            _ => {
                let (k, end, kind) = (r.byte(), r.byte(), r.byte());
                let ids: Vec<_> = ipam
                    .topology()
                    .ip_ranges_in(subnet)
                    .map(|(id, _)| id)
                    .collect();
                if !ids.is_empty() {
                    let id = ids[usize::from(k) % ids.len()];
                    let changed = ipam.update_ip_range(id, |range| {
                        range.end = at(end);
                        range.kind = if kind & 1 == 0 {
                            IpRangeKind::Dynamic
                        } else {
                            IpRangeKind::Reserved
                        };
                    });
                    if changed.is_ok() {
                        model_changed = now;
                    }
                }
            }
        }
        check_state(&ipam, subnet, model_changed);
        log.push(ipam.take_changes());
    }

    // A snapshot rebuilds the same engine.
    let snapshot = ipam.snapshot();
    let back = Ipam::from_snapshot(snapshot.clone()).expect("the engine's snapshot loads");
    assert_same(&ipam, &back, subnet, "from_snapshot(snapshot)");

    // So does the change log, applied batch by batch to the first topology.
    let mut replayed = Snapshot {
        topology: Some(doc),
        ..Snapshot::default()
    };
    for batch in &log {
        apply(&mut replayed, batch);
    }
    let loaded = Ipam::from_snapshot(replayed).expect("the replayed change log loads");
    assert_same(&ipam, &loaded, subnet, "the replayed change log");
}

/// A range in the fuzzed subnet: `len + 1` addresses from host byte `start`.
fn range(subnet: SubnetId, family: Family, base: u128, start: u8, len: u8, kind: u8) -> IpRange {
    let first = host(family, base, start);
    let last = ip::from_bits(family, ip::bits(first).1 + u128::from(len));
    let kind = if kind & 1 == 0 {
        IpRangeKind::Dynamic
    } else {
        IpRangeKind::Reserved
    };
    IpRange::new(subnet, first, last, kind)
}

fn cidr_of(ipam: &Ipam, subnet: SubnetId) -> ipnet::IpNet {
    ipam.topology()
        .subnet(subnet)
        .expect("the fuzzed subnet exists")
        .cidr
}

fn in_cidr(ipam: &Ipam, subnet: SubnetId, ip: IpAddr) -> bool {
    cidr_of(ipam, subnet).contains(&ip)
}

/// Whether the model lets `ip` (usable, in the subnet) be asked for by address, records apart.
fn assignable(ipam: &Ipam, subnet: SubnetId, ip: IpAddr, allow_reserved: bool) -> bool {
    let topo = ipam.topology();
    let s = topo.subnet(subnet).expect("the fuzzed subnet exists");
    let infra = s.gateway_ip == Some(ip)
        || s.dns_servers.contains(&ip)
        || topo
            .static_routes_from(subnet)
            .any(|(_, r)| r.gateway_ip == ip);
    let blocked = topo.ip_ranges_in(subnet).any(|(_, r)| {
        r.contains(ip)
            && match r.kind {
                IpRangeKind::Dynamic => true,
                IpRangeKind::Reserved => s.managed && !allow_reserved,
            }
    });
    !infra && !blocked
}

/// Two engines hold the same model, records, bindings and leases, and decide alike.
fn assert_same(a: &Ipam, b: &Ipam, subnet: SubnetId, what: &str) {
    assert_eq!(a.topology(), b.topology(), "{what}: topology");
    assert_eq!(
        normalised(a.snapshot()),
        normalised(b.snapshot()),
        "{what}: records and bindings"
    );
    assert_eq!(a.poll_timeout(), b.poll_timeout(), "{what}: poll_timeout");
    let four = AutoRequest::new().count(4);
    assert_eq!(
        a.next_addresses(subnet, &four).ok(),
        b.next_addresses(subnet, &four).ok(),
        "{what}: next_addresses"
    );
    assert_eq!(
        a.statistics(subnet, true, true).ok(),
        b.statistics(subnet, true, true).ok(),
        "{what}: statistics"
    );
}

/// A snapshot read from JSON either loads or is refused, without panicking; one that loads
/// saves a snapshot that loads again to the same engine.
pub fn check_ipam_snapshot(data: &[u8]) {
    let Ok(snapshot) = serde_json::from_slice::<Snapshot>(data) else {
        return;
    };
    let Ok(ipam) = Ipam::from_snapshot(snapshot) else {
        return;
    };
    let saved = ipam.snapshot();
    let back = Ipam::from_snapshot(saved.clone()).expect("a loaded engine's snapshot loads");
    assert_eq!(
        normalised(back.snapshot()),
        normalised(saved),
        "snapshot, load, snapshot"
    );
    assert_eq!(
        ipam.records().collect::<Vec<_>>(),
        back.records().collect::<Vec<_>>()
    );
    assert_eq!(
        ipam.discoveries().collect::<Vec<_>>(),
        back.discoveries().collect::<Vec<_>>()
    );
    let subnets: Vec<SubnetId> = ipam.topology().subnets().map(|(id, _)| id).collect();
    for subnet in subnets {
        assert_same(&ipam, &back, subnet, "snapshot, load");
        let stats = ipam
            .statistics(subnet, false, false)
            .expect("statistics of a known subnet");
        assert_eq!(
            stats.num_available + stats.num_unavailable,
            stats.total_addresses,
            "available + unavailable"
        );
        check_range_usage(&ipam, subnet);
        // Every lease ends by the end of time, and the expiry index knows them all.
    }
    // Every lease ends by the end of time, the expiry index knows them all, and nothing else
    // goes with them.
    let mut ended = ipam.clone();
    ended.expire(Timestamp(u64::MAX));
    let kept: Vec<&Record> = ipam.records().filter(|r| r.lease.is_none()).collect();
    assert_eq!(
        ended.records().collect::<Vec<_>>(),
        kept,
        "expire(MAX) removed exactly the leases"
    );
    assert_eq!(ended.poll_timeout(), None);
}
