//! Record bookkeeping: storing and removing records while keeping the expiry and free-space
//! indexes in step.

use std::collections::btree_map::Entry;
use std::net::IpAddr;

use maas_net::SubnetId;
use maas_net::ip;

use super::Ipam;
use super::intervals::in_universe;
use crate::{Change, ClientKey, LeaseState, Record};

/// The client whose binding `record` implies: the holder of an offered or bound DHCP lease.
///
/// The engine keeps each DHCP client's last address (its *binding*). While a record offers or
/// leases an address to a client, the record itself says where the client is bound, so the
/// change stream carries no binding for it: [`Change::PutBinding`] is only emitted for a
/// binding that no record implies (the client released its lease, or it expired), and
/// [`Ipam::from_snapshot`] derives the implied ones from the records. A DHCP lease then
/// costs the store one row, not two.
pub(super) fn implied_client(record: &Record) -> Option<&ClientKey> {
    record
        .lease
        .as_ref()
        .filter(|l| matches!(l.state, LeaseState::Offered | LeaseState::Bound))
        .map(|l| &l.client)
}

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
                if let Some(client) = implied_client(slot)
                    && implied_client(&record) != Some(client)
                    && self.bindings.get(client) == Some(&ip)
                {
                    // The record no longer says where its client is bound: the binding is
                    // stored on its own.
                    self.changes.push(Change::PutBinding {
                        client: client.clone(),
                        ip,
                    });
                }
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
        if let Some(client) = implied_client(&record)
            && self.bindings.get(client) == Some(&ip)
        {
            // The client keeps its claim on the address: stored on its own from now on.
            self.changes.push(Change::PutBinding {
                client: client.clone(),
                ip,
            });
        }
        self.mark_maybe_free(record.subnet, ip);
        Some(record)
    }

    /// Binds `client` to `ip`, where its record (stored just before or just after this
    /// call) offers or leases `ip` to it, so that the binding is implied (see
    /// [`implied_client`]): no binding is stored, and the one stored for an earlier address
    /// of the client, if any, is removed.
    pub(super) fn bind_implied(&mut self, client: &ClientKey, ip: IpAddr) {
        if self.bindings.get(client) == Some(&ip) {
            return;
        }
        if self.bindings.insert(client.clone(), ip).is_some() {
            self.changes.push(Change::RemoveBinding {
                client: client.clone(),
            });
        }
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
