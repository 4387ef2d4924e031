//! DISCOVERED addresses: seen in use on the wire, avoided but never blocking.

use std::net::IpAddr;

use maas_net::ip;
use maas_net::{Mac, SubnetId};

use super::Ipam;
use crate::{AddressKind, Change, Record, Timestamp};

impl Ipam {
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
}
