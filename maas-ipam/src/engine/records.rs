//! Record bookkeeping: storing and removing records while keeping the expiry and free-space
//! indexes in step.

use std::collections::btree_map::Entry;
use std::net::IpAddr;

use maas_net::SubnetId;
use maas_net::ip;

use super::Ipam;
use super::intervals::in_universe;
use crate::{Change, Record};

impl Ipam {
    /// Stores a held record (replacing the address's previous one), keeping every index, and
    /// queues its change. Returns the stored record.
    pub(super) fn put_held(&mut self, record: Record) -> &mut Record {
        self.put_held_from(record.subnet, record.ip, |_| record)
    }

    /// [`put_held`](Self::put_held) of the record `make` builds from the address's previous
    /// one (if any), in one descent of the tree. `make` must keep `ip` and `subnet`.
    pub(super) fn put_held_from(
        &mut self,
        subnet: SubnetId,
        ip: IpAddr,
        make: impl FnOnce(Option<&mut Record>) -> Record,
    ) -> &mut Record {
        self.mark_used(subnet, ip);
        match self.held.entry(ip) {
            Entry::Vacant(slot) => {
                let record = make(None);
                debug_assert!(record.ip == ip && record.subnet == subnet);
                if let Some(lease) = &record.lease {
                    self.expiries.insert((lease.expires, ip));
                }
                self.changes.push(Change::PutRecord(record.clone()));
                slot.insert(record)
            }
            Entry::Occupied(slot) => {
                let slot = slot.into_mut();
                let record = make(Some(slot));
                debug_assert!(record.ip == ip && record.subnet == subnet);
                let expires = record.lease.as_ref().map(|l| l.expires);
                if let Some(expires) = expires {
                    self.expiries.insert((expires, ip));
                }
                if let Some(lease) = &slot.lease
                    && Some(lease.expires) != expires
                {
                    self.expiries.remove(&(lease.expires, ip));
                }
                self.changes.push(Change::PutRecord(record.clone()));
                *slot = record;
                slot
            }
        }
    }

    pub(super) fn take_held(&mut self, ip: IpAddr) -> Option<Record> {
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

    pub(super) fn mark_used(&mut self, subnet: SubnetId, ip: IpAddr) {
        if let Some(p) = self.pools.get_mut(&subnet) {
            let a = ip::bits(ip).1;
            p.auto_free.remove(a);
            p.dhcp_free.remove(a);
        }
    }

    pub(super) fn mark_maybe_free(&mut self, subnet: SubnetId, ip: IpAddr) {
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
}
