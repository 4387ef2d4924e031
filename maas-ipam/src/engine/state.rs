//! Building an [`Ipam`] (empty or from a [`Snapshot`]), its snapshot, and reading its state:
//! records, queued changes, events and the next timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use maas_net::{SubnetId, Topology};

use super::records::implied_client;
use super::{Event, Ipam};
use crate::{AddressKind, Change, Error, Record, Snapshot, Timestamp};

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
    /// must lie in a subnet, and no address may be held twice. A client's binding is the one
    /// stored for it, else the one its offered or bound record implies (see
    /// [`Change::PutBinding`]).
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
        // The bindings the records imply (see `implied_client`), then the stored ones.
        ipam.bindings = ipam
            .held
            .values()
            .filter_map(|r| implied_client(r).map(|c| (c.clone(), r.ip)))
            .collect();
        ipam.bindings.extend(snapshot.bindings);
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
}
