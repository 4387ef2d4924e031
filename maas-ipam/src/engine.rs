//! The allocation engine: which address a machine, a DHCP client or a user gets.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;
use maas_net::ip::{self, Family};
use maas_net::{IpRange, IpRangeId, IpRangeKind, Mac, SubnetId, Topology};
use serde::{Deserialize, Serialize};

use crate::blocks::FreeBlocks;
use crate::{
    AddressKind, Change, ClientKey, Error, Lease, LeaseState, Record, Snapshot, Timestamp,
};

/// The address manager: the network model plus every recorded address, with indexes that make
/// each decision O(log n).
///
/// It does no I/O. Every change it makes is also queued as a [`Change`]; a caller that wants
/// durability hands [`take_changes`](Self::take_changes) to a [`Store`](crate::Store) (the
/// [`Durable`](crate::Durable) wrapper does exactly that, with group commit) and acknowledges
/// the operation only once the store has committed it. Time is passed in as a [`Timestamp`].
///
/// Rules, as MAAS applies them:
///
/// - **AUTO** in a managed subnet takes an address outside every reserved and dynamic range,
///   never the network address (nor the IPv4 broadcast address, except in /31 and /32; nor
///   the IPv6 subnet-router anycast address, except in /127 and /128), the gateway, the DNS
///   servers, the gateways of the subnet's static routes, an assigned or discovered address,
///   nor (in an IPv6 /64) `::1` to `::ffff:ffff`. It picks the first address of the smallest
///   free block, lowest start among equals. In an unmanaged subnet only reserved ranges are
///   used. When nothing is free it reuses the least recently seen DISCOVERED address and says
///   so ([`Event::ReusedDiscovered`]).
/// - **STICKY** and **USER_RESERVED** addresses are asked for by address: inside the subnet,
///   not in a dynamic range, not in a reserved range unless allowed, not in use.
/// - **DHCP** leases come only from dynamic ranges of managed subnets; a client gets its
///   previous address again while that is free; declined addresses are quarantined.
/// - **DISCOVERED** addresses never block an assignment of the same address, but are avoided
///   while free addresses exist.
///
/// ```
/// use maas_ipam::{AutoRequest, Ipam, Timestamp};
/// use maas_net::{Subnet, Topology};
///
/// let mut topo = Topology::new();
/// let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
/// let subnet = topo.create_subnet(Subnet {
///     gateway_ip: Some("10.77.0.1".parse()?),
///     ..Subnet::new("10.77.0.0/29".parse()?, vlan)
/// })?;
/// let mut ipam = Ipam::new(topo);
/// let now = Timestamp(1_700_000_000);
/// let got = ipam.allocate(subnet, &AutoRequest::new().exclude("10.77.0.3".parse()?).count(6), now)?;
/// let got: Vec<String> = got.iter().map(|ip| ip.to_string()).collect();
/// assert_eq!(got, ["10.77.0.2", "10.77.0.4", "10.77.0.5", "10.77.0.6"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Ipam {
    topology: Topology,
    pools: HashMap<SubnetId, Pools>,
    /// Every record but the DISCOVERED ones: at most one per address.
    held: BTreeMap<IpAddr, Record>,
    /// DISCOVERED records, apart: they may share an address with a held record.
    discovered: BTreeMap<IpAddr, Record>,
    /// Each DHCP client's last address.
    bindings: HashMap<ClientKey, IpAddr>,
    /// (expiry, address) of every DHCP record.
    expiries: BTreeSet<(Timestamp, IpAddr)>,
    changes: Vec<Change>,
    events: VecDeque<Event>,
}

/// Something worth telling an operator about, from [`Ipam::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A subnet had no free address left, so an address last seen in use on the wire was
    /// assigned. If its old user comes back, the two will clash.
    ReusedDiscovered {
        /// The subnet.
        subnet: SubnetId,
        /// The reused address.
        ip: IpAddr,
        /// The interface it was last seen on.
        mac: Option<Mac>,
        /// When it was last seen.
        last_seen: Timestamp,
    },
}

/// What to ask of [`Ipam::allocate`]: how many addresses, which to avoid, who they are for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoRequest {
    /// How many addresses (default 1). Fewer are returned when fewer are free.
    pub count: usize,
    /// Addresses not to hand out this time.
    pub exclude: Vec<IpAddr>,
    /// The interface the addresses are for.
    pub mac: Option<Mac>,
    /// Free text naming the holder.
    pub owner: Option<String>,
}

impl AutoRequest {
    /// One address, nothing excluded.
    pub fn new() -> Self {
        Self {
            count: 1,
            ..Self::default()
        }
    }

    /// Ask for `n` addresses.
    pub fn count(mut self, n: usize) -> Self {
        self.count = n;
        self
    }

    /// Do not hand out `ip`.
    pub fn exclude(mut self, ip: IpAddr) -> Self {
        self.exclude.push(ip);
        self
    }

    /// For this interface.
    pub fn mac(mut self, mac: Mac) -> Self {
        self.mac = Some(mac);
        self
    }
}

/// The kinds of address that are asked for by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Requested {
    /// Kept for a machine's interface until released.
    Sticky,
    /// Kept for something outside the controller's management.
    UserReserved,
}

/// Options of [`Ipam::assign`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssignOptions {
    /// The interface the address is for.
    pub mac: Option<Mac>,
    /// Free text naming the holder.
    pub owner: Option<String>,
    /// Whether the address may lie in a reserved range of a managed subnet.
    pub allow_reserved: bool,
}

/// The allocation state of one subnet.
#[derive(Clone, Debug)]
pub(crate) struct Pools {
    pub(crate) cidr: IpNet,
    pub(crate) family: Family,
    /// Where AUTO may allocate, before records are taken out: sorted, disjoint.
    pub(crate) auto_universe: Vec<(u128, u128)>,
    pub(crate) auto_free: FreeBlocks,
    /// Where DHCP may lease: the dynamic ranges of a managed subnet.
    pub(crate) dhcp_universe: Vec<(u128, u128)>,
    pub(crate) dhcp_free: FreeBlocks,
    /// (last seen, address) of the DISCOVERED records in the subnet.
    pub(crate) discovered_age: BTreeSet<(Timestamp, u128)>,
    /// The dynamic and the reserved ranges, each sorted; ranges of one kind never overlap.
    pub(crate) dynamic_ranges: Vec<(u128, u128)>,
    pub(crate) reserved_ranges: Vec<(u128, u128)>,
}

impl Ipam {
    /// An address manager over this network model, with nothing recorded.
    pub fn new(topology: Topology) -> Self {
        let mut ipam = Self {
            topology,
            pools: HashMap::new(),
            held: BTreeMap::new(),
            discovered: BTreeMap::new(),
            bindings: HashMap::new(),
            expiries: BTreeSet::new(),
            changes: Vec::new(),
            events: VecDeque::new(),
        };
        ipam.rebuild_all();
        ipam
    }

    /// Rebuilds an address manager from what a store read back. Records are checked: each
    /// must lie in a subnet, and no address may be held twice.
    pub fn from_snapshot(snapshot: Snapshot) -> Result<Self, Error> {
        let topology = match &snapshot.topology {
            Some(doc) => Topology::from_doc(doc)
                .map_err(|e| Error::Corrupt(format!("stored topology: {e}")))?,
            None => Topology::new(),
        };
        let mut ipam = Self::new(topology);
        for mut record in snapshot.records {
            let subnet = ipam
                .topology
                .subnet_containing(record.ip)
                .ok_or_else(|| Error::Corrupt(format!("{} lies in no subnet", record.ip)))?;
            record.subnet = subnet;
            if (record.kind == AddressKind::Dhcp) != record.lease.is_some() {
                return Err(Error::Corrupt(format!(
                    "the {} record of {} {} a lease",
                    record.kind,
                    record.ip,
                    if record.lease.is_some() {
                        "carries"
                    } else {
                        "lacks"
                    }
                )));
            }
            let map = if record.kind == AddressKind::Discovered {
                &mut ipam.discovered
            } else {
                &mut ipam.held
            };
            if map.contains_key(&record.ip) {
                return Err(Error::Corrupt(format!("{} is recorded twice", record.ip)));
            }
            if let Some(lease) = &record.lease {
                ipam.expiries.insert((lease.expires, record.ip));
            }
            map.insert(record.ip, record);
        }
        ipam.bindings = snapshot.bindings.into_iter().collect();
        ipam.rebuild_all();
        Ok(ipam)
    }

    /// Everything the address manager holds, as a store would save it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            topology: Some(self.topology.to_doc()),
            records: self
                .held
                .values()
                .chain(self.discovered.values())
                .cloned()
                .collect(),
            bindings: self
                .bindings
                .iter()
                .map(|(c, ip)| (c.clone(), *ip))
                .collect(),
        }
    }

    /// The network model.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The non-DISCOVERED record of an address.
    pub fn record(&self, ip: IpAddr) -> Option<&Record> {
        self.held.get(&ip)
    }

    /// The DISCOVERED record of an address.
    pub fn discovered(&self, ip: IpAddr) -> Option<&Record> {
        self.discovered.get(&ip)
    }

    /// Every non-DISCOVERED record, by address.
    pub fn records(&self) -> impl Iterator<Item = &Record> + '_ {
        self.held.values()
    }

    /// Every DISCOVERED record, by address.
    pub fn discoveries(&self) -> impl Iterator<Item = &Record> + '_ {
        self.discovered.values()
    }

    /// The non-DISCOVERED records of one subnet, by address.
    pub fn records_in(&self, subnet: SubnetId) -> impl Iterator<Item = &Record> + '_ {
        let bounds = self
            .pools
            .get(&subnet)
            .map(|p| (p.cidr.network(), p.cidr.broadcast()));
        bounds
            .into_iter()
            .flat_map(move |(lo, hi)| self.held.range(lo..=hi).map(|(_, r)| r))
    }

    /// The changes made since the last call, oldest first, for a store to commit.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Whether changes are waiting to be taken.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The next event worth telling an operator about.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the next DHCP offer, lease or quarantine ends: the time to call
    /// [`expire`](Self::expire) next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.expiries.first().map(|(t, _)| *t)
    }

    // ---- topology --------------------------------------------------------------------------

    /// Changes the network model. The change is refused (and nothing changes) if a recorded
    /// address would no longer lie in a subnet. Allocation indexes follow the new model.
    pub fn change_topology<R>(
        &mut self,
        change: impl FnOnce(&mut Topology) -> Result<R, maas_net::Error>,
    ) -> Result<R, Error> {
        let before = self.topology.clone();
        let result = change(&mut self.topology)?;
        // Records follow their address to whichever subnet now holds it.
        let mut moved = Vec::new();
        let mut orphans = self
            .held
            .values()
            .chain(self.discovered.values())
            .filter_map(|r| match self.topology.subnet_containing(r.ip) {
                Some(s) if s == r.subnet => None,
                Some(s) => {
                    moved.push((r.ip, r.kind == AddressKind::Discovered, s));
                    None
                }
                None => Some(r.ip),
            });
        if let Some(first) = orphans.next() {
            let count = 1 + orphans.count();
            self.topology = before;
            return Err(Error::WouldOrphan { count, ip: first });
        }
        drop(orphans);
        for (ip, discovered, subnet) in moved {
            let map = if discovered {
                &mut self.discovered
            } else {
                &mut self.held
            };
            if let Some(record) = map.get_mut(&ip) {
                record.subnet = subnet;
                self.changes.push(Change::PutRecord(record.clone()));
            }
        }
        self.changes.push(Change::Topology(self.topology.to_doc()));
        self.rebuild_all();
        Ok(result)
    }

    /// Adds an IP range. Besides the model's rules, a dynamic range may not cover an address
    /// that is already assigned ("Requested dynamic range conflicts with an existing IP address
    /// or range.").
    pub fn create_ip_range(&mut self, range: IpRange) -> Result<IpRangeId, Error> {
        let in_use = self.held_between(range.start, range.end);
        let subnet = range.subnet;
        let id = self.topology.create_ip_range_with(range, &in_use)?;
        self.changes.push(Change::Topology(self.topology.to_doc()));
        self.rebuild(subnet);
        Ok(id)
    }

    /// Changes an IP range, checked as [`create_ip_range`](Self::create_ip_range).
    pub fn update_ip_range(
        &mut self,
        id: IpRangeId,
        change: impl FnOnce(&mut IpRange),
    ) -> Result<(), Error> {
        let mut preview = self
            .topology
            .ip_range(id)
            .cloned()
            .ok_or(maas_net::Error::NotFound {
                kind: maas_net::Kind::IpRange,
                id: id.get(),
            })?;
        let old_subnet = preview.subnet;
        change(&mut preview);
        let in_use = self.held_between(preview.start, preview.end);
        let new = preview.clone();
        self.topology
            .update_ip_range_with(id, |r| *r = new, &in_use)?;
        self.changes.push(Change::Topology(self.topology.to_doc()));
        self.rebuild(old_subnet);
        self.rebuild(preview.subnet);
        Ok(())
    }

    /// Deletes an IP range.
    pub fn delete_ip_range(&mut self, id: IpRangeId) -> Result<IpRange, Error> {
        let range = self.topology.delete_ip_range(id)?;
        self.changes.push(Change::Topology(self.topology.to_doc()));
        self.rebuild(range.subnet);
        Ok(range)
    }

    fn held_between(&self, start: IpAddr, end: IpAddr) -> Vec<IpAddr> {
        if start > end {
            return Vec::new();
        }
        self.held.range(start..=end).map(|(ip, _)| *ip).collect()
    }

    // ---- AUTO ------------------------------------------------------------------------------

    /// The addresses [`allocate`](Self::allocate) would pick, without recording anything.
    pub fn next_addresses(
        &self,
        subnet: SubnetId,
        request: &AutoRequest,
    ) -> Result<Vec<IpAddr>, Error> {
        Ok(self
            .choose(subnet, request)?
            .into_iter()
            .map(|(ip, _)| ip)
            .collect())
    }

    /// Allocates addresses for automatic assignment and records them as AUTO.
    ///
    /// Returns up to `request.count` addresses, in MAAS's order: the first address of the
    /// smallest free block, then the next, and so on. When no block is free, least recently
    /// seen DISCOVERED addresses are reused, each with an [`Event::ReusedDiscovered`]; when
    /// none is left either, the error is `"No more IPs available in subnet: <cidr>."`
    pub fn allocate(
        &mut self,
        subnet: SubnetId,
        request: &AutoRequest,
        now: Timestamp,
    ) -> Result<Vec<IpAddr>, Error> {
        let chosen = self.choose(subnet, request)?;
        let mut out = Vec::with_capacity(chosen.len());
        for (ip, reused) in chosen {
            if let Some(old) = reused {
                self.events.push_back(Event::ReusedDiscovered {
                    subnet,
                    ip,
                    mac: old.mac,
                    last_seen: old.updated,
                });
            }
            self.put_held(Record {
                ip,
                subnet,
                kind: AddressKind::Auto,
                mac: request.mac,
                owner: request.owner.clone(),
                lease: None,
                created: now,
                updated: now,
            });
            out.push(ip);
        }
        Ok(out)
    }

    /// The addresses to hand out, each with the DISCOVERED record it reuses, if any.
    fn choose(
        &self,
        subnet: SubnetId,
        request: &AutoRequest,
    ) -> Result<Vec<(IpAddr, Option<Record>)>, Error> {
        let pools = self
            .pools
            .get(&subnet)
            .ok_or(Error::UnknownSubnet(subnet))?;
        let mut excluded: Vec<u128> = request
            .exclude
            .iter()
            .filter(|ip| Family::of(**ip) == pools.family)
            .map(|ip| ip::bits(*ip).1)
            .collect();
        excluded.sort_unstable();
        excluded.dedup();
        let picks = best_fit_excluding(&pools.auto_free, &excluded, request.count);
        let mut out: Vec<(IpAddr, Option<Record>)> = picks
            .into_iter()
            .map(|a| (ip::from_bits(pools.family, a), None))
            .collect();
        if out.len() < request.count {
            // Nothing free: fall back to addresses only seen on the wire, oldest first.
            for &(_, a) in &pools.discovered_age {
                if out.len() == request.count {
                    break;
                }
                let ip = ip::from_bits(pools.family, a);
                if excluded.binary_search(&a).is_ok()
                    || self.held.contains_key(&ip)
                    || !in_universe(&pools.auto_universe, a)
                {
                    continue;
                }
                out.push((ip, self.discovered.get(&ip).cloned()));
            }
        }
        if out.is_empty() && request.count > 0 {
            return Err(Error::Exhausted { cidr: pools.cidr });
        }
        Ok(out)
    }

    // ---- requested addresses -------------------------------------------------------------

    /// Records an address asked for by address, as STICKY or USER_RESERVED.
    ///
    /// The address must lie in a subnet, be usable by a host, lie outside every dynamic range
    /// ("X is within the dynamic range from A to B"), outside reserved ranges of a managed
    /// subnet unless `allow_reserved`, and not be in use ("The IP address X is already in
    /// use."). A DISCOVERED record of the same address does not stand in the way.
    pub fn assign(
        &mut self,
        ip: IpAddr,
        kind: Requested,
        options: &AssignOptions,
        now: Timestamp,
    ) -> Result<SubnetId, Error> {
        let subnet = self.check_requested(ip, options.allow_reserved)?;
        self.put_held(Record {
            ip,
            subnet,
            kind: match kind {
                Requested::Sticky => AddressKind::Sticky,
                Requested::UserReserved => AddressKind::UserReserved,
            },
            mac: options.mac,
            owner: options.owner.clone(),
            lease: None,
            created: now,
            updated: now,
        });
        Ok(subnet)
    }

    /// The checks of [`assign`](Self::assign), without recording anything.
    pub fn check_requested(&self, ip: IpAddr, allow_reserved: bool) -> Result<SubnetId, Error> {
        let id = self
            .topology
            .subnet_containing(ip)
            .ok_or(Error::NoSubnet(ip))?;
        let subnet = self.topology.subnet(id).ok_or(Error::UnknownSubnet(id))?;
        let cidr = subnet.cidr;
        let (first, last) = ip::bounds(cidr);
        let (usable_first, usable_last) = ip::usable_bounds(cidr);
        let a = ip::bits(ip).1;
        if a < usable_first || a > usable_last {
            let role = if a == first {
                "network address"
            } else {
                "broadcast address"
            };
            debug_assert!(a == first || a == last);
            return Err(Error::NotUsable { ip, role, cidr });
        }
        let pools = self.pools.get(&id).ok_or(Error::UnknownSubnet(id))?;
        let family = pools.family;
        if let Some((lo, hi)) = range_holding(&pools.dynamic_ranges, a) {
            return Err(Error::InDynamicRange {
                ip,
                start: ip::from_bits(family, lo),
                end: ip::from_bits(family, hi),
            });
        }
        if subnet.managed
            && !allow_reserved
            && let Some((lo, hi)) = range_holding(&pools.reserved_ranges, a)
        {
            return Err(Error::InReservedRange {
                ip,
                start: ip::from_bits(family, lo),
                end: ip::from_bits(family, hi),
            });
        }
        if subnet.gateway_ip == Some(ip) {
            return Err(Error::Infrastructure {
                ip,
                role: "gateway",
                cidr,
            });
        }
        if subnet.dns_servers.contains(&ip) {
            return Err(Error::Infrastructure {
                ip,
                role: "DNS server",
                cidr,
            });
        }
        if self
            .topology
            .static_routes_from(id)
            .any(|(_, r)| r.gateway_ip == ip)
        {
            return Err(Error::Infrastructure {
                ip,
                role: "static route gateway",
                cidr,
            });
        }
        if self.held.contains_key(&ip) {
            return Err(Error::InUse { ip });
        }
        Ok(id)
    }

    /// Releases an address: its non-DISCOVERED record goes and the address is free again
    /// (unless it is still seen on the wire).
    pub fn release(&mut self, ip: IpAddr) -> Result<Record, Error> {
        self.take_held(ip).ok_or(Error::NotAssigned(ip))
    }

    // ---- discovery -------------------------------------------------------------------------

    /// Records that `ip` was seen in use by `mac` at `now` (ARP, NDP, a foreign DHCP lease).
    /// Returns the subnet, or `None` when the address lies in no subnet (nothing is recorded).
    pub fn observe(&mut self, ip: IpAddr, mac: Option<Mac>, now: Timestamp) -> Option<SubnetId> {
        let subnet = self.topology.subnet_containing(ip)?;
        let created = match self.discovered.get(&ip) {
            Some(old) => {
                if let Some(p) = self.pools.get_mut(&old.subnet) {
                    p.discovered_age.remove(&(old.updated, ip::bits(ip).1));
                }
                old.created
            }
            None => now,
        };
        let record = Record {
            ip,
            subnet,
            kind: AddressKind::Discovered,
            mac,
            owner: None,
            lease: None,
            created,
            updated: now,
        };
        if let Some(p) = self.pools.get_mut(&subnet) {
            p.discovered_age.insert((now, ip::bits(ip).1));
        }
        self.mark_used(subnet, ip);
        self.changes.push(Change::PutRecord(record.clone()));
        self.discovered.insert(ip, record);
        Some(subnet)
    }

    /// Forgets a DISCOVERED address (it has not been seen for long enough).
    pub fn forget(&mut self, ip: IpAddr) -> Option<Record> {
        let record = self.discovered.remove(&ip)?;
        if let Some(p) = self.pools.get_mut(&record.subnet) {
            p.discovered_age.remove(&(record.updated, ip::bits(ip).1));
        }
        self.changes.push(Change::RemoveRecord {
            ip,
            discovered: true,
        });
        self.mark_maybe_free(record.subnet, ip);
        Some(record)
    }

    // ---- DHCP ------------------------------------------------------------------------------

    /// Offers an address to a DHCP client and holds it for `hold_secs`.
    ///
    /// A client that already holds an offer or lease in the subnet gets that address; one that
    /// had an address before gets it again while it is free; anyone else gets the lowest free
    /// address of the subnet's dynamic ranges.
    pub fn dhcp_offer(
        &mut self,
        subnet: SubnetId,
        client: &ClientKey,
        now: Timestamp,
        hold_secs: u64,
    ) -> Result<IpAddr, Error> {
        self.dhcp_offer_in_part(subnet, client, now, hold_secs, 0, 1)
    }

    /// [`dhcp_offer`](Self::dhcp_offer) for one of `of` servers that draw from the same
    /// dynamic ranges (each from its own copy of the records): a new client gets the lowest
    /// free address of part `index` of the ranges (the ranges' addresses cut in `of` equal
    /// runs), or after it when that part is used up, or the lowest free one. Servers that
    /// take different parts do not offer the same address to two clients while their parts
    /// last. `of` 0 counts as 1; an `index` past the parts counts as the last.
    pub fn dhcp_offer_in_part(
        &mut self,
        subnet: SubnetId,
        client: &ClientKey,
        now: Timestamp,
        hold_secs: u64,
        index: u32,
        of: u32,
    ) -> Result<IpAddr, Error> {
        let pools = self.dhcp_pools(subnet)?;
        let family = pools.family;
        if let Some(&ip) = self.bindings.get(client) {
            // An offer or lease it already has, if it is still in a dynamic range.
            let in_pool =
                Family::of(ip) == family && in_universe(&pools.dhcp_universe, ip::bits(ip).1);
            let held = self
                .held
                .get(&ip)
                .filter(|r| r.subnet == subnet)
                .and_then(|r| r.lease.as_ref());
            let state = held
                .filter(|l| &l.client == client && l.state != LeaseState::Declined)
                .map(|l| l.state);
            match state {
                Some(_) if !in_pool => {
                    // Its range is gone (or changed): the old offer or lease is stale.
                    self.take_held(ip);
                }
                Some(LeaseState::Offered) => {
                    let mut record = self.held[&ip].clone();
                    self.set_lease(&mut record, LeaseState::Offered, now.plus(hold_secs));
                    self.put_held(record);
                    return Ok(ip);
                }
                Some(_) => return Ok(ip),
                None => {}
            }
        }
        let pools = self.dhcp_pools(subnet)?;
        let previous = self
            .bindings
            .get(client)
            .filter(|ip| Family::of(**ip) == family && pools.dhcp_free.contains(ip::bits(**ip).1))
            .copied();
        let start = part_start(&pools.dhcp_universe, index, of);
        let Some(ip) = previous.or_else(|| {
            start
                .and_then(|a| pools.dhcp_free.first_at_or_after(a))
                .or_else(|| pools.dhcp_free.lowest())
                .map(|a| ip::from_bits(family, a))
        }) else {
            return Err(Error::PoolExhausted { cidr: pools.cidr });
        };
        self.lease(
            subnet,
            ip,
            client,
            LeaseState::Offered,
            now,
            now.plus(hold_secs),
            None,
        );
        Ok(ip)
    }

    /// Binds (or renews) a DHCP lease of `ip` for `client` until `now + lease_secs`: the
    /// client's own offer or lease, or a free address of the dynamic ranges (a client in
    /// INIT-REBOOT asking for its old address). A client holds one address: an offer or lease
    /// it had of another address is given up.
    pub fn dhcp_request(
        &mut self,
        ip: IpAddr,
        client: &ClientKey,
        now: Timestamp,
        lease_secs: u64,
    ) -> Result<Record, Error> {
        self.dhcp_request_with_hostname(ip, client, None, now, lease_secs)
    }

    /// [`dhcp_request`](Self::dhcp_request), recording the host name the client sent (DHCP
    /// option 12 or 81, DHCPv6 option 39) as the record's owner, as MAAS shows it beside the
    /// lease. Without one, a renewed lease keeps the name it had. Control characters are
    /// dropped and the name is cut at 253 bytes (the longest DNS name).
    pub fn dhcp_request_with_hostname(
        &mut self,
        ip: IpAddr,
        client: &ClientKey,
        hostname: Option<&str>,
        now: Timestamp,
        lease_secs: u64,
    ) -> Result<Record, Error> {
        let subnet = self
            .topology
            .subnet_containing(ip)
            .ok_or(Error::NoSubnet(ip))?;
        let pools = self.dhcp_pools(subnet)?;
        let cidr = pools.cidr;
        let a = ip::bits(ip).1;
        if !in_universe(&pools.dhcp_universe, a) {
            return Err(Error::NotInPool { ip, cidr });
        }
        let created = match self.held.get(&ip) {
            Some(record) => match &record.lease {
                Some(lease) if &lease.client == client && lease.state != LeaseState::Declined => {
                    record.created
                }
                _ => return Err(Error::InUse { ip }),
            },
            None if pools.dhcp_free.contains(a) => now,
            // Free of records but seen on the wire: someone else uses it.
            None => return Err(Error::InUse { ip }),
        };
        let mut record = self.lease(
            subnet,
            ip,
            client,
            LeaseState::Bound,
            created,
            now.plus(lease_secs),
            Some(now),
        );
        if let Some(name) = hostname.map(clean_hostname).filter(|n| !n.is_empty())
            && record.owner.as_deref() != Some(name.as_str())
        {
            record.owner = Some(name);
            if let Some(held) = self.held.get_mut(&ip) {
                held.owner.clone_from(&record.owner);
            }
            // The record just queued by `lease` is replaced rather than followed by a second.
            if let Some(Change::PutRecord(queued)) = self.changes.last_mut()
                && queued.ip == ip
            {
                queued.owner.clone_from(&record.owner);
            }
        }
        if self.bindings.get(client) != Some(&ip) {
            // One address per client: an offer or lease it held of another is given up.
            if let Some(&previous) = self.bindings.get(client)
                && self.check_lease_holder(previous, client).is_ok()
            {
                self.take_held(previous);
            }
            self.bindings.insert(client.clone(), ip);
            self.changes.push(Change::PutBinding {
                client: client.clone(),
                ip,
            });
        }
        Ok(record)
    }

    /// The client gives its lease back; the address is free at once. The client keeps its
    /// claim to get the address again while it stays free.
    pub fn dhcp_release(&mut self, ip: IpAddr, client: &ClientKey) -> Result<(), Error> {
        self.check_lease_holder(ip, client)?;
        self.take_held(ip);
        Ok(())
    }

    /// The client found `ip` in use by someone else: the address is quarantined until
    /// `now + quarantine_secs` and the client will not be offered it again.
    pub fn dhcp_decline(
        &mut self,
        ip: IpAddr,
        client: &ClientKey,
        now: Timestamp,
        quarantine_secs: u64,
    ) -> Result<(), Error> {
        self.check_lease_holder(ip, client)?;
        let subnet = self.held[&ip].subnet;
        self.lease(
            subnet,
            ip,
            client,
            LeaseState::Declined,
            now,
            now.plus(quarantine_secs),
            Some(now),
        );
        if self.bindings.get(client) == Some(&ip) {
            self.bindings.remove(client);
            self.changes.push(Change::RemoveBinding {
                client: client.clone(),
            });
        }
        Ok(())
    }

    /// Ends every offer, lease and quarantine that expired by `now`, freeing the addresses.
    /// Returns the expired records.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some(&(when, ip)) = self.expiries.first() {
            if when > now {
                break;
            }
            self.expiries.pop_first();
            if let Some(record) = self.take_held(ip) {
                out.push(record);
            }
        }
        out
    }

    /// Every DHCP record (offered, bound or declined), by address.
    pub fn leases(&self) -> impl Iterator<Item = &Record> + '_ {
        self.held.values().filter(|r| r.kind == AddressKind::Dhcp)
    }

    fn check_lease_holder(&self, ip: IpAddr, client: &ClientKey) -> Result<(), Error> {
        match self.held.get(&ip).and_then(|r| r.lease.as_ref()) {
            Some(lease) if &lease.client == client && lease.state != LeaseState::Declined => Ok(()),
            _ => Err(Error::NotLeased {
                ip,
                client: client.clone(),
            }),
        }
    }

    fn dhcp_pools(&self, subnet: SubnetId) -> Result<&Pools, Error> {
        let pools = self
            .pools
            .get(&subnet)
            .ok_or(Error::UnknownSubnet(subnet))?;
        let managed = self.topology.subnet(subnet).is_some_and(|s| s.managed);
        if !managed {
            return Err(Error::Unmanaged { cidr: pools.cidr });
        }
        Ok(pools)
    }

    #[allow(clippy::too_many_arguments)]
    fn lease(
        &mut self,
        subnet: SubnetId,
        ip: IpAddr,
        client: &ClientKey,
        state: LeaseState,
        created: Timestamp,
        expires: Timestamp,
        updated: Option<Timestamp>,
    ) -> Record {
        let mac = match client {
            ClientKey::Mac(mac) => Some(*mac),
            // RFC 2132 9.14: type 1 is an Ethernet address, as PXE firmware, iPXE, udhcpc and
            // dhcpcd send it.
            ClientKey::ClientId(id) if id.len() == 7 && id[0] == 1 => {
                let mut octets = [0; 6];
                octets.copy_from_slice(&id[1..]);
                Some(Mac::new(octets))
            }
            ClientKey::ClientId(_) => self.held.get(&ip).and_then(|r| r.mac),
        };
        let record = Record {
            ip,
            subnet,
            kind: AddressKind::Dhcp,
            mac,
            owner: self.held.get(&ip).and_then(|r| r.owner.clone()),
            lease: Some(Lease {
                client: client.clone(),
                state,
                expires,
            }),
            created,
            updated: updated.unwrap_or(created),
        };
        if state == LeaseState::Offered && self.bindings.get(client) != Some(&ip) {
            // Remember the offer so that a repeated DISCOVER gets the same address.
            self.bindings.insert(client.clone(), ip);
            self.changes.push(Change::PutBinding {
                client: client.clone(),
                ip,
            });
        }
        self.put_held(record.clone());
        record
    }

    fn set_lease(&self, record: &mut Record, state: LeaseState, expires: Timestamp) {
        if let Some(lease) = &mut record.lease {
            lease.state = state;
            lease.expires = expires;
        }
    }

    // ---- record bookkeeping ----------------------------------------------------------------

    /// Stores a held record (replacing the address's previous one), keeping every index.
    fn put_held(&mut self, record: Record) {
        let ip = record.ip;
        if let Some(old) = self.held.get(&ip)
            && let Some(lease) = &old.lease
        {
            self.expiries.remove(&(lease.expires, ip));
        }
        if let Some(lease) = &record.lease {
            self.expiries.insert((lease.expires, ip));
        }
        self.mark_used(record.subnet, ip);
        self.changes.push(Change::PutRecord(record.clone()));
        self.held.insert(ip, record);
    }

    fn take_held(&mut self, ip: IpAddr) -> Option<Record> {
        let record = self.held.remove(&ip)?;
        if let Some(lease) = &record.lease {
            self.expiries.remove(&(lease.expires, ip));
        }
        self.changes.push(Change::RemoveRecord {
            ip,
            discovered: false,
        });
        self.mark_maybe_free(record.subnet, ip);
        Some(record)
    }

    fn mark_used(&mut self, subnet: SubnetId, ip: IpAddr) {
        if let Some(p) = self.pools.get_mut(&subnet) {
            let a = ip::bits(ip).1;
            p.auto_free.remove(a);
            p.dhcp_free.remove(a);
        }
    }

    fn mark_maybe_free(&mut self, subnet: SubnetId, ip: IpAddr) {
        if self.held.contains_key(&ip) || self.discovered.contains_key(&ip) {
            return;
        }
        if let Some(p) = self.pools.get_mut(&subnet) {
            let a = ip::bits(ip).1;
            if in_universe(&p.auto_universe, a) {
                p.auto_free.insert(a);
            }
            if in_universe(&p.dhcp_universe, a) {
                p.dhcp_free.insert(a);
            }
        }
    }

    // ---- indexes ---------------------------------------------------------------------------

    pub(crate) fn discovered_between(
        &self,
        lo: IpAddr,
        hi: IpAddr,
    ) -> impl Iterator<Item = &Record> + '_ {
        self.discovered.range(lo..=hi).map(|(_, r)| r)
    }

    pub(crate) fn pools(&self, subnet: SubnetId) -> Option<&Pools> {
        self.pools.get(&subnet)
    }

    fn rebuild_all(&mut self) {
        let ids: Vec<SubnetId> = self.topology.subnets().map(|(id, _)| id).collect();
        self.pools.retain(|id, _| ids.contains(id));
        for id in ids {
            self.rebuild(id);
        }
    }

    /// Recomputes one subnet's pools from the model and the records.
    fn rebuild(&mut self, id: SubnetId) {
        let Some(subnet) = self.topology.subnet(id) else {
            self.pools.remove(&id);
            return;
        };
        let cidr = subnet.cidr;
        let family = Family::of_net(cidr);
        let (first, _) = ip::bounds(cidr);
        let usable = ip::usable_bounds(cidr);
        let mut points: Vec<u128> = Vec::new();
        let same_family = |a: &IpAddr| Family::of(*a) == family && cidr.contains(a);
        points.extend(
            subnet
                .gateway_ip
                .iter()
                .filter(|a| same_family(a))
                .map(|a| ip::bits(*a).1),
        );
        points.extend(
            subnet
                .dns_servers
                .iter()
                .filter(|a| same_family(a))
                .map(|a| ip::bits(*a).1),
        );
        points.extend(
            self.topology
                .static_routes_from(id)
                .map(|(_, r)| r.gateway_ip)
                .filter(|a| same_family(a))
                .map(|a| ip::bits(a).1),
        );
        let mut dynamic = Vec::new();
        let mut reserved = Vec::new();
        for (_, r) in self.topology.ip_ranges_in(id) {
            let bounds = (ip::bits(r.start).1, ip::bits(r.end).1);
            match r.kind {
                IpRangeKind::Dynamic => dynamic.push(bounds),
                IpRangeKind::Reserved => reserved.push(bounds),
            }
        }
        dynamic.sort_unstable();
        reserved.sort_unstable();
        let mut blocked: Vec<(u128, u128)> = points.iter().map(|&a| (a, a)).collect();
        blocked.extend(&dynamic);
        if let IpNet::V6(n) = cidr
            && n.prefix_len() == 64
        {
            blocked.push((first + 1, first + 0xffff_ffff));
        }
        let base = if subnet.managed {
            blocked.extend(&reserved);
            vec![usable]
        } else {
            clip(&reserved, usable)
        };
        blocked.sort_unstable();
        let auto_universe = subtract(&base, &blocked);
        let dhcp_universe = if subnet.managed {
            let mut pts: Vec<(u128, u128)> = points.iter().map(|&a| (a, a)).collect();
            pts.sort_unstable();
            subtract(&clip(&dynamic, usable), &pts)
        } else {
            Vec::new()
        };
        // Everything recorded in the subnet is taken out of both pools.
        let (lo, hi) = (cidr.network(), cidr.broadcast());
        let mut used: Vec<(u128, u128)> = self
            .held
            .range(lo..=hi)
            .chain(self.discovered.range(lo..=hi))
            .map(|(ip, _)| {
                let a = ip::bits(*ip).1;
                (a, a)
            })
            .collect();
        used.sort_unstable();
        let discovered_age = self
            .discovered
            .range(lo..=hi)
            .map(|(ip, r)| (r.updated, ip::bits(*ip).1))
            .collect();
        let pools = Pools {
            cidr,
            family,
            auto_free: FreeBlocks::from_sorted(subtract(&auto_universe, &used)),
            dhcp_free: FreeBlocks::from_sorted(subtract(&dhcp_universe, &used)),
            auto_universe,
            dhcp_universe,
            discovered_age,
            dynamic_ranges: dynamic,
            reserved_ranges: reserved,
        };
        self.pools.insert(id, pools);
    }
}

/// The first `count` addresses in best-fit order, as if the `excluded` addresses (sorted) were
/// not free. Only blocks that hold an excluded address are split; the rest are read straight
/// from the size index, so the cost does not grow with the number of blocks.
fn best_fit_excluding(free: &FreeBlocks, excluded: &[u128], count: usize) -> Vec<u128> {
    let mut affected: BTreeMap<u128, u128> = BTreeMap::new();
    for &e in excluded {
        if let Some((lo, hi)) = free.block_of(e) {
            affected.insert(lo, hi);
        }
    }
    let mut pieces: Vec<(u128, u128)> = Vec::new();
    for (&lo, &hi) in &affected {
        let mut start = lo;
        let from = excluded.partition_point(|&e| e < lo);
        for &e in excluded[from..].iter().take_while(|&&e| e <= hi) {
            if e > start {
                pieces.push((start, e - 1));
            }
            start = e.saturating_add(1);
            if e == u128::MAX {
                start = hi.saturating_add(1);
            }
        }
        if start <= hi && !(start == 0 && hi == u128::MAX && lo != 0) {
            pieces.push((start, hi));
        }
    }
    pieces.sort_unstable_by_key(|&(lo, hi)| (hi - lo, lo));
    let mut pieces = pieces.into_iter().peekable();
    let mut whole = free
        .best_fit()
        .filter(|(lo, _)| !affected.contains_key(lo))
        .peekable();
    let mut out = Vec::with_capacity(count.min(1024));
    while out.len() < count {
        let take_piece = match (pieces.peek(), whole.peek()) {
            (Some(p), Some(w)) => (p.1 - p.0, p.0) <= (w.1 - w.0, w.0),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let Some((lo, hi)) = (if take_piece {
            pieces.next()
        } else {
            whole.next()
        }) else {
            break;
        };
        let mut a = lo;
        loop {
            out.push(a);
            if out.len() == count || a == hi {
                break;
            }
            a += 1;
        }
    }
    out
}

/// Whether `a` lies in one of the sorted, disjoint intervals.
pub(crate) fn in_universe(universe: &[(u128, u128)], a: u128) -> bool {
    range_holding(universe, a).is_some()
}

/// The first address of part `index` of `of` equal runs of the sorted, disjoint intervals'
/// addresses (`None` when there are none).
fn part_start(intervals: &[(u128, u128)], index: u32, of: u32) -> Option<u128> {
    let of = of.max(1);
    let index = index.min(of - 1);
    let total = intervals.iter().fold(0u128, |sum, &(lo, hi)| {
        sum.saturating_add(hi - lo).saturating_add(1)
    });
    let mut skip = total / u128::from(of) * u128::from(index);
    for &(lo, hi) in intervals {
        let len = (hi - lo).saturating_add(1);
        if skip < len {
            return Some(lo + skip);
        }
        skip -= len;
    }
    intervals.first().map(|&(lo, _)| lo)
}

/// The interval of the sorted, disjoint intervals that holds `a`.
fn range_holding(intervals: &[(u128, u128)], a: u128) -> Option<(u128, u128)> {
    let i = intervals.partition_point(|&(lo, _)| lo <= a);
    (i > 0 && intervals[i - 1].1 >= a).then(|| intervals[i - 1])
}

/// The parts of sorted intervals that lie within `bounds`.
fn clip(intervals: &[(u128, u128)], (lo, hi): (u128, u128)) -> Vec<(u128, u128)> {
    intervals
        .iter()
        .filter(|&&(a, b)| a <= hi && b >= lo)
        .map(|&(a, b)| (a.max(lo), b.min(hi)))
        .collect()
}

/// `base` (sorted, disjoint) minus `blocked` (sorted by start, may overlap).
pub(crate) fn subtract(base: &[(u128, u128)], blocked: &[(u128, u128)]) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(lo, hi) in base {
        let mut start = lo;
        // Skip blockers that end before this interval.
        while j < blocked.len() && blocked[j].1 < lo {
            j += 1;
        }
        let mut k = j;
        let mut done = false;
        while k < blocked.len() && blocked[k].0 <= hi {
            let (b_lo, b_hi) = blocked[k];
            if b_lo > start {
                out.push((start, b_lo - 1));
            }
            if b_hi >= hi {
                done = true;
                break;
            }
            start = start.max(b_hi + 1);
            k += 1;
        }
        if !done && start <= hi {
            out.push((start, hi));
        }
    }
    out
}

/// A host name as a client sent it, fit to record: no control characters, at most 253 bytes
/// (cut on a character boundary), no trailing dot.
fn clean_hostname(name: &str) -> String {
    let mut clean = String::with_capacity(name.len().min(253));
    for c in name.chars().filter(|c| !c.is_control()) {
        if clean.len() + c.len_utf8() > 253 {
            break;
        }
        clean.push(c);
    }
    clean.trim().trim_end_matches('.').trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subtract_cuts_holes() {
        assert_eq!(
            subtract(&[(1, 10)], &[(3, 4), (4, 5), (9, 12)]),
            [(1, 2), (6, 8)]
        );
        assert_eq!(
            subtract(&[(1, 10), (20, 30)], &[(0, 1), (25, 25)]),
            [(2, 10), (20, 24), (26, 30)]
        );
        assert_eq!(subtract(&[(0, u128::MAX)], &[(0, u128::MAX)]), []);
        assert_eq!(subtract(&[(5, 5)], &[]), [(5, 5)]);
    }

    proptest! {
        #[test]
        fn subtract_agrees_with_sets(
            base in prop::collection::btree_set(0u128..80, 0..60),
            blocked in prop::collection::vec((0u128..80, 0u128..6), 0..12),
        ) {
            let mut base_iv: Vec<(u128, u128)> = Vec::new();
            for &a in &base {
                match base_iv.last_mut() {
                    Some(l) if l.1 + 1 == a => l.1 = a,
                    _ => base_iv.push((a, a)),
                }
            }
            let mut blocked: Vec<(u128, u128)> = blocked.into_iter().map(|(a, n)| (a, a + n)).collect();
            blocked.sort_unstable();
            let got: BTreeSet<u128> = subtract(&base_iv, &blocked).into_iter().flat_map(|(a, b)| a..=b).collect();
            let want: BTreeSet<u128> = base.iter().copied().filter(|a| !blocked.iter().any(|&(lo, hi)| lo <= *a && *a <= hi)).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn best_fit_excluding_agrees_with_a_rebuilt_index(
            free in prop::collection::btree_set(0u128..64, 0..50),
            excluded in prop::collection::btree_set(0u128..64, 0..8),
            count in 0usize..70,
        ) {
            let iv = |set: &BTreeSet<u128>| {
                let mut v: Vec<(u128, u128)> = Vec::new();
                for &a in set {
                    match v.last_mut() {
                        Some(l) if l.1 + 1 == a => l.1 = a,
                        _ => v.push((a, a)),
                    }
                }
                v
            };
            let blocks = FreeBlocks::from_sorted(iv(&free));
            let excluded: Vec<u128> = excluded.into_iter().collect();
            let got = best_fit_excluding(&blocks, &excluded, count);
            let remaining: BTreeSet<u128> = free.iter().copied().filter(|a| excluded.binary_search(a).is_err()).collect();
            let reference = FreeBlocks::from_sorted(iv(&remaining));
            let want: Vec<u128> = reference.best_fit().flat_map(|(a, b)| a..=b).take(count).collect();
            prop_assert_eq!(got, want);
        }
    }
}
