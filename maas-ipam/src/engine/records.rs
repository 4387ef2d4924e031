//! Record bookkeeping: storing and removing records while keeping the expiry and free-space
//! indexes in step.

use std::net::IpAddr;

use maas_net::SubnetId;
use maas_net::ip;

use super::Ipam;
use super::intervals::in_universe;
use crate::{Change, Record};

impl Ipam {
    /// Stores a held record (replacing the address's previous one), keeping every index.
    pub(super) fn put_held(&mut self, record: Record) {
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
