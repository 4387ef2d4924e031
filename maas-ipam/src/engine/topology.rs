//! Changes to the network model: the topology and its IP ranges, with the allocation indexes
//! following them.

use std::net::IpAddr;

use maas_net::{IpRange, IpRangeId, Topology};

use super::Ipam;
use crate::{AddressKind, Change, Error};

impl Ipam {
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
}
