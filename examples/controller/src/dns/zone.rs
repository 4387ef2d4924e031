//! The DNS data of the controller as one immutable [`Snapshot`], built from a neutral
//! [`Inputs`] (hosts, domains, subnets, leases) and answering queries from it.
//!
//! The module does no I/O and depends only on the network model and hickory-proto's record
//! types, so the fuzz target compiles it alone. Answers follow the zones MAAS serves:
//!
//! - one forward zone per authoritative domain: each host's boot interface addresses under
//!   its name, its other interfaces' under `<interface>.<host>`; in the default domain also
//!   the generated names of the addresses of the IPv4 dynamic ranges (`10-77-0-5`, as MAAS's
//!   `$GENERATE` lines name them) and of every current lease;
//! - the reverse zones of every subnet with `allow_dns`, named by `maas_net::dns` from its
//!   `rdns_mode`, with a PTR per known address; in RFC 2317 mode, the glue zone of the
//!   enclosing /24 with a CNAME per address of the subnet into its classless zone.
//!
//! Names not under a served zone are refused, or forwarded when the client may recurse: a
//! loopback client or one inside a subnet with `allow_dns`, and only when forwarders exist.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;
use maas_net::RdnsMode;
use maas_net::dns::{
    classless_name, generated_name, glue_network, parse_generated_name, parse_reverse_name,
    reverse_name, reverse_zones,
};

/// A host the DNS knows: a machine, a device or the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Host {
    /// Its host name (one label).
    pub(crate) name: String,
    /// The domain it is in.
    pub(crate) domain: String,
    /// Its interfaces with their addresses.
    pub(crate) interfaces: Vec<HostInterface>,
}

/// One interface of a [`Host`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostInterface {
    /// The interface's name (`eth1`).
    pub(crate) name: String,
    /// Whether the host boots from it: its addresses go under the host's own name.
    pub(crate) boot: bool,
    /// Its addresses.
    pub(crate) addresses: Vec<IpAddr>,
}

/// A domain as the DNS serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DomainInput {
    /// `maas`, `example.org`...
    pub(crate) name: String,
    /// Whether this controller answers for it.
    pub(crate) authoritative: bool,
    /// Its records' TTL, or the default one.
    pub(crate) ttl: Option<u32>,
}

/// A subnet as the DNS serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SubnetInput {
    /// The network.
    pub(crate) cidr: IpNet,
    /// Whether its clients may use the controller's DNS (and whether it has reverse zones).
    pub(crate) allow_dns: bool,
    /// How its reverse zones are made.
    pub(crate) rdns_mode: RdnsMode,
    /// Its dynamic ranges, first and last address.
    pub(crate) dynamic: Vec<(IpAddr, IpAddr)>,
}

/// Everything a [`Snapshot`] is built from; two equal inputs give the same answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Inputs {
    /// Machines, devices and the controller.
    pub(crate) hosts: Vec<Host>,
    /// The domains; the default one is always served when authoritative.
    pub(crate) domains: Vec<DomainInput>,
    /// The default domain's name (generated names and the name server live there).
    pub(crate) default_domain: String,
    /// The subnets of the network model.
    pub(crate) subnets: Vec<SubnetInput>,
    /// Addresses currently leased by DHCP.
    pub(crate) leases: Vec<IpAddr>,
    /// The controller's host name in the default domain (the zones' name server).
    pub(crate) ns_name: String,
    /// The TTL of records whose domain gives none.
    pub(crate) default_ttl: u32,
    /// Whether queries outside the served zones may be forwarded (forwarders configured).
    pub(crate) forwarding: bool,
}

/// What to do with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answer it from a served zone.
    Answer {
        /// NOERROR or NXDOMAIN.
        code: ResponseCode,
        /// The answer section.
        answers: Vec<Record>,
        /// The authority section (the zone's SOA for a negative answer).
        authorities: Vec<Record>,
    },
    /// Send it on to the forwarders.
    Forward,
    /// Refuse it (not ours, and the client may not recurse).
    Refused,
}

/// A served zone.
#[derive(Debug)]
struct Zone {
    soa: Record,
    ns: Record,
    records: BTreeMap<String, Vec<Record>>,
    kind: ZoneKind,
}

#[derive(Debug)]
enum ZoneKind {
    Forward { generated: bool },
    Reverse { network: IpNet, classless: bool },
    Glue,
}

/// An IPv4 dynamic range whose addresses have generated names.
#[derive(Debug)]
struct Dynamic {
    first: IpAddr,
    last: IpAddr,
}

/// The most CNAME links followed inside the served zones.
const MAX_CHAIN: usize = 8;

/// The DNS data at one moment: built once per change, then only read.
#[derive(Debug)]
pub(crate) struct Snapshot {
    serial: u32,
    zones: BTreeMap<String, Zone>,
    recursion_from: Vec<IpNet>,
    dynamic: Vec<Dynamic>,
    default_domain: String,
    default_ttl: u32,
    forwarding: bool,
}

/// `name` without a trailing dot, lower case.
fn key(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn fqdn(name: &str) -> Option<Name> {
    let mut n = Name::from_ascii(name).ok()?;
    n.set_fqdn(true);
    Some(n)
}

fn inside(ip: IpAddr, first: IpAddr, last: IpAddr) -> bool {
    matches!(
        (ip, first, last),
        (IpAddr::V4(_), IpAddr::V4(_), IpAddr::V4(_))
            | (IpAddr::V6(_), IpAddr::V6(_), IpAddr::V6(_))
    ) && first <= ip
        && ip <= last
}

impl Snapshot {
    /// The snapshot of `inputs`, its SOA serial `serial`.
    pub(crate) fn build(inputs: &Inputs, serial: u32) -> Self {
        let default_domain = key(&inputs.default_domain);
        let ns_host = format!("{}.{default_domain}", key(&inputs.ns_name));
        let mut out = Self {
            serial,
            zones: BTreeMap::new(),
            recursion_from: inputs
                .subnets
                .iter()
                .filter(|s| s.allow_dns)
                .map(|s| s.cidr)
                .collect(),
            dynamic: Vec::new(),
            default_domain: default_domain.clone(),
            default_ttl: inputs.default_ttl,
            forwarding: inputs.forwarding,
        };
        let ttl_of = |domain: &str| {
            inputs
                .domains
                .iter()
                .find(|d| key(&d.name) == domain)
                .and_then(|d| d.ttl)
                .unwrap_or(inputs.default_ttl)
        };
        let rname = format!("nobody.{default_domain}");
        let add_zone = |zones: &mut BTreeMap<String, Zone>, name: &str, kind: ZoneKind| {
            let (Some(apex), Some(mname), Some(rname)) = (fqdn(name), fqdn(&ns_host), fqdn(&rname))
            else {
                return;
            };
            let ttl = inputs.default_ttl;
            let soa = SOA::new(mname.clone(), rname, serial, 600, 1800, 604_800, ttl);
            zones.entry(key(name)).or_insert_with(|| Zone {
                soa: Record::from_rdata(apex.clone(), ttl, RData::SOA(soa)),
                ns: Record::from_rdata(apex, ttl, RData::NS(NS(mname))),
                records: BTreeMap::new(),
                kind,
            });
        };
        for domain in inputs.domains.iter().filter(|d| d.authoritative) {
            let generated = key(&domain.name) == default_domain;
            add_zone(
                &mut out.zones,
                &domain.name,
                ZoneKind::Forward { generated },
            );
        }
        let served: Vec<&SubnetInput> = inputs
            .subnets
            .iter()
            .filter(|s| s.allow_dns && s.rdns_mode != RdnsMode::Disabled)
            .collect();
        for subnet in &served {
            for zone in reverse_zones(subnet.cidr, subnet.rdns_mode) {
                let classless = zone.is_classless();
                add_zone(
                    &mut out.zones,
                    &zone.name,
                    ZoneKind::Reverse {
                        network: zone.network,
                        classless,
                    },
                );
            }
            if let Some(glue) = glue_network(subnet.cidr, subnet.rdns_mode) {
                let name = maas_net::dns::aligned_zone_name(glue);
                add_zone(&mut out.zones, &name, ZoneKind::Glue);
                let ttl = inputs.default_ttl;
                for ip in subnet
                    .cidr
                    .hosts()
                    .chain([subnet.cidr.network(), subnet.cidr.broadcast()])
                {
                    let (Some(owner), Some(target)) = (
                        fqdn(&reverse_name(ip)),
                        fqdn(&classless_name(ip, subnet.cidr)),
                    ) else {
                        continue;
                    };
                    let record = Record::from_rdata(owner, ttl, RData::CNAME(CNAME(target)));
                    out.put(&reverse_name(ip), record);
                }
            }
            if out.zones.contains_key(&default_domain) {
                for &(first, last) in &subnet.dynamic {
                    if first.is_ipv4() {
                        out.dynamic.push(Dynamic { first, last });
                    }
                }
            }
        }
        // Hosts: forward records in their domain, PTRs in the reverse zones.
        for host in &inputs.hosts {
            let domain = key(&host.domain);
            if !out.zones.contains_key(&domain) {
                continue;
            }
            let ttl = ttl_of(&domain);
            for interface in &host.interfaces {
                let name = if interface.boot {
                    format!("{}.{domain}", key(&host.name))
                } else {
                    format!("{}.{}.{domain}", key(&interface.name), key(&host.name))
                };
                let Some(owner) = fqdn(&name) else { continue };
                for &ip in &interface.addresses {
                    out.put(&name, address_record(owner.clone(), ttl, ip));
                    out.put_ptr(&served, ip, &owner, ttl);
                }
            }
        }
        // Leases (IPv6 ones have no generated range): under their generated names.
        if out.zones.contains_key(&default_domain) {
            let ttl = ttl_of(&default_domain);
            for &ip in &inputs.leases {
                let name = format!("{}.{default_domain}", generated_name(ip));
                let Some(owner) = fqdn(&name) else { continue };
                if out.lookup_records(&name).is_empty() {
                    out.put(&name, address_record(owner.clone(), ttl, ip));
                }
                out.put_ptr(&served, ip, &owner, ttl);
            }
        }
        out
    }

    /// The SOA serial.
    pub(crate) fn serial(&self) -> u32 {
        self.serial
    }

    /// The names of the served zones.
    pub(crate) fn zone_names(&self) -> impl Iterator<Item = &str> {
        self.zones.keys().map(String::as_str)
    }

    fn put(&mut self, name: &str, record: Record) {
        let name = key(name);
        if let Some(zone) = self.zone_for_mut(&name) {
            let list = zone.records.entry(name).or_default();
            if !list.contains(&record) {
                list.push(record);
            }
        }
    }

    /// A PTR for `ip` in the reverse zone that holds it, unless it has one already (the
    /// first host named wins, so a lease never hides a machine).
    fn put_ptr(&mut self, served: &[&SubnetInput], ip: IpAddr, target: &Name, ttl: u32) {
        let Some(subnet) = served.iter().find(|s| s.cidr.contains(&ip)) else {
            return;
        };
        let classless = reverse_zones(subnet.cidr, subnet.rdns_mode)
            .first()
            .is_some_and(maas_net::dns::ReverseZone::is_classless);
        let name = if classless {
            classless_name(ip, subnet.cidr)
        } else {
            reverse_name(ip)
        };
        let Some(owner) = fqdn(&name) else { return };
        let explicit = self
            .zone_for_mut(&name)
            .and_then(|z| z.records.get(&name))
            .is_some_and(|list| list.iter().any(|r| r.record_type() == RecordType::PTR));
        if explicit {
            return;
        }
        self.put(
            &name,
            Record::from_rdata(owner, ttl, RData::PTR(PTR(target.clone()))),
        );
    }

    fn zone_for_mut(&mut self, name: &str) -> Option<&mut Zone> {
        let apex = self.zone_name(name)?.to_owned();
        self.zones.get_mut(&apex)
    }

    /// The longest served zone name `name` (lower case, no trailing dot) is in.
    fn zone_name(&self, name: &str) -> Option<&str> {
        let mut rest = name;
        loop {
            if let Some((apex, _)) = self.zones.get_key_value(rest) {
                return Some(apex);
            }
            rest = rest.split_once('.')?.1;
        }
    }

    fn lookup_records(&self, name: &str) -> Vec<Record> {
        let Some(apex) = self.zone_name(name) else {
            return Vec::new();
        };
        let zone = &self.zones[apex];
        let mut out = zone.records.get(name).cloned().unwrap_or_default();
        if out.is_empty() {
            out.extend(self.generated(zone, apex, name));
        }
        if name == apex {
            out.push(zone.soa.clone());
            out.push(zone.ns.clone());
        }
        out
    }

    /// The records a dynamic range's address has under its generated name.
    fn generated(&self, zone: &Zone, apex: &str, name: &str) -> Option<Record> {
        let ttl = self.default_ttl;
        match zone.kind {
            ZoneKind::Forward { generated: true } => {
                let label = name.strip_suffix(apex)?.strip_suffix('.')?;
                let ip = parse_generated_name(label)?;
                if !self.is_dynamic(ip) {
                    return None;
                }
                Some(address_record(fqdn(name)?, ttl, ip))
            }
            ZoneKind::Reverse { network, classless } => {
                let ip = if classless {
                    let label = name.strip_suffix(apex)?.strip_suffix('.')?;
                    let IpNet::V4(net) = network else { return None };
                    let last: u8 = label.parse().ok()?;
                    let o = net.network().octets();
                    IpAddr::from([o[0], o[1], o[2], last])
                } else {
                    parse_reverse_name(name)?
                };
                if !network.contains(&ip) || !self.is_dynamic(ip) {
                    return None;
                }
                let target = fqdn(&format!("{}.{}", generated_name(ip), self.default_domain))?;
                Some(Record::from_rdata(
                    fqdn(name)?,
                    ttl,
                    RData::PTR(PTR(target)),
                ))
            }
            _ => None,
        }
    }

    fn is_dynamic(&self, ip: IpAddr) -> bool {
        self.dynamic.iter().any(|d| inside(ip, d.first, d.last))
    }

    /// Whether `client` may have names outside the served zones resolved.
    pub(crate) fn may_recurse(&self, client: IpAddr) -> bool {
        client.is_loopback() || self.recursion_from.iter().any(|n| n.contains(&client))
    }

    /// What to answer to a query for `name` and `qtype` from `client`.
    pub(crate) fn answer(
        &self,
        name: &Name,
        qtype: RecordType,
        client: IpAddr,
        recursion_desired: bool,
    ) -> Outcome {
        let wanted = key(&name.to_ascii());
        let Some(apex) = self.zone_name(&wanted).map(str::to_owned) else {
            return if recursion_desired && self.forwarding && self.may_recurse(client) {
                Outcome::Forward
            } else {
                Outcome::Refused
            };
        };
        let mut answers = Vec::new();
        let mut current = wanted;
        let mut zone_apex = apex;
        for _ in 0..MAX_CHAIN {
            let found = self.lookup_records(&current);
            let exists = !found.is_empty() || self.has_below(&zone_apex, &current);
            let matching: Vec<Record> = found
                .iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .cloned()
                .collect();
            if !matching.is_empty() {
                answers.extend(matching);
                return self.positive(answers);
            }
            let cname = found.iter().find_map(|r| match &r.data {
                RData::CNAME(CNAME(target)) => Some((r.clone(), target.clone())),
                _ => None,
            });
            let Some((record, target)) = cname else {
                let code = if exists || !answers.is_empty() {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                };
                let soa = self.zones[&zone_apex].soa.clone();
                return Outcome::Answer {
                    code: if answers.is_empty() {
                        code
                    } else {
                        ResponseCode::NoError
                    },
                    answers,
                    authorities: vec![soa],
                };
            };
            answers.push(record);
            current = key(&target.to_ascii());
            match self.zone_name(&current) {
                Some(next) => zone_apex = next.to_owned(),
                None => return self.positive(answers),
            }
        }
        self.positive(answers)
    }

    fn positive(&self, answers: Vec<Record>) -> Outcome {
        Outcome::Answer {
            code: ResponseCode::NoError,
            answers,
            authorities: Vec::new(),
        }
    }

    /// Whether a name below `name` has records (so `name` exists, without records).
    fn has_below(&self, apex: &str, name: &str) -> bool {
        let suffix = format!(".{name}");
        self.zones[apex]
            .records
            .range(String::new()..)
            .any(|(k, _)| k.ends_with(&suffix))
    }

    /// The whole zone `name` for a transfer: SOA, NS, every record (generated ones too, at
    /// most 65,536 per range), SOA; `None` when the zone is not served.
    pub(crate) fn transfer(&self, name: &Name) -> Option<Vec<Record>> {
        let apex = key(&name.to_ascii());
        let zone = self.zones.get(&apex)?;
        let mut out = vec![zone.soa.clone(), zone.ns.clone()];
        for records in zone.records.values() {
            out.extend(records.iter().cloned());
        }
        match zone.kind {
            ZoneKind::Forward { generated: true } | ZoneKind::Reverse { .. } => {
                for range in &self.dynamic {
                    let (IpAddr::V4(first), IpAddr::V4(last)) = (range.first, range.last) else {
                        continue;
                    };
                    let (a, b) = (first.to_bits(), last.to_bits());
                    for bits in a..=b.min(a.saturating_add(65_535)) {
                        let ip = IpAddr::V4(bits.into());
                        let owner = match zone.kind {
                            ZoneKind::Forward { .. } => {
                                format!("{}.{}", generated_name(ip), apex)
                            }
                            ZoneKind::Reverse { network, classless } => {
                                if !network.contains(&ip) {
                                    continue;
                                }
                                if classless {
                                    classless_name(ip, network)
                                } else {
                                    reverse_name(ip)
                                }
                            }
                            ZoneKind::Glue => continue,
                        };
                        if zone.records.contains_key(&owner) {
                            continue;
                        }
                        out.extend(self.generated(zone, &apex, &owner));
                    }
                }
            }
            _ => {}
        }
        out.push(zone.soa.clone());
        Some(out)
    }

    /// A whole response to `request` (its first query) from `client`, as the server sends it
    /// before size limits: for tests and the fuzz target. `None` when the query is to be
    /// forwarded.
    #[cfg_attr(not(test), allow(dead_code))] // the server encodes through hickory-server
    pub(crate) fn respond(&self, request: &Message, client: IpAddr) -> Option<Message> {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.message_type = MessageType::Response;
        let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
        response.metadata = metadata;
        response.add_queries(request.queries.iter().cloned());
        let Some(query) = request.queries.first() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return Some(response);
        };
        if request.metadata.op_code != OpCode::Query {
            response.metadata.response_code = ResponseCode::NotImp;
            return Some(response);
        }
        match self.answer(
            query.name(),
            query.query_type(),
            client,
            request.metadata.recursion_desired,
        ) {
            Outcome::Answer {
                code,
                answers,
                authorities,
            } => {
                response.metadata.authoritative = true;
                response.metadata.response_code = code;
                response.add_answers(answers);
                response.add_authorities(authorities);
                Some(response)
            }
            Outcome::Refused => {
                response.metadata.response_code = ResponseCode::Refused;
                Some(response)
            }
            Outcome::Forward => None,
        }
    }
}

fn address_record(owner: Name, ttl: u32, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(a) => Record::from_rdata(owner, ttl, RData::A(A(a))),
        IpAddr::V6(a) => Record::from_rdata(owner, ttl, RData::AAAA(AAAA(a))),
    }
}
