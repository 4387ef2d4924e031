//! DHCP leases from the dynamic ranges: offers, binding, release, decline and expiry.

use std::net::IpAddr;

use maas_net::ip::{self, Family};
use maas_net::{Mac, SubnetId};

use super::intervals::{in_universe, part_start};
use super::{Ipam, Pools};
use crate::{AddressKind, Change, ClientKey, Error, Lease, LeaseState, Record, Timestamp};

impl Ipam {
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
        let name = hostname.map(clean_hostname).filter(|n| !n.is_empty());
        let held = self.lease(
            subnet,
            ip,
            client,
            LeaseState::Bound,
            created,
            now.plus(lease_secs),
            Some(now),
        );
        let renamed = name.is_some() && held.owner != name;
        if renamed {
            held.owner = name;
        }
        let record = held.clone();
        // The record just queued by `lease` gets the new name rather than a second change.
        if renamed
            && let Some(Change::PutRecord(queued)) = self.changes.last_mut()
            && queued.ip == ip
        {
            queued.owner.clone_from(&record.owner);
        }
        let previous = self.bindings.get(client).copied();
        if previous != Some(ip) {
            // One address per client: an offer or lease it held of another is given up
            // (after the binding moved, so that the binding is not stored for it).
            let gave_up = previous.filter(|&p| self.check_lease_holder(p, client).is_ok());
            self.bind_implied(client, ip);
            if let Some(previous) = gave_up {
                self.take_held(previous);
            }
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
        // The binding goes first, so that the declined record does not store it on its own.
        if self.bindings.get(client) == Some(&ip) {
            self.bindings.remove(client);
            self.changes.push(Change::RemoveBinding {
                client: client.clone(),
            });
        }
        self.lease(
            subnet,
            ip,
            client,
            LeaseState::Declined,
            now,
            now.plus(quarantine_secs),
            Some(now),
        );
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
    ) -> &mut Record {
        let client_mac = match client {
            ClientKey::Mac(mac) => Some(*mac),
            // RFC 2132 9.14: type 1 is an Ethernet address, as PXE firmware, iPXE, udhcpc and
            // dhcpcd send it.
            ClientKey::ClientId(id) if id.len() == 7 && id[0] == 1 => {
                let mut octets = [0; 6];
                octets.copy_from_slice(&id[1..]);
                Some(Mac::new(octets))
            }
            // Another identifier: the address's record keeps the MAC it had.
            ClientKey::ClientId(_) => None,
        };
        if state == LeaseState::Offered {
            // Remember the offer so that a repeated DISCOVER gets the same address.
            self.bind_implied(client, ip);
        }
        self.put_held_from(subnet, ip, |previous| {
            let (mac, owner) = match previous {
                // The previous record is replaced: its owner moves to the new one.
                Some(previous) => (client_mac.or(previous.mac), previous.owner.take()),
                None => (client_mac, None),
            };
            Record {
                ip,
                subnet,
                kind: AddressKind::Dhcp,
                mac,
                owner,
                lease: Some(Lease {
                    client: client.clone(),
                    state,
                    expires,
                }),
                created,
                updated: updated.unwrap_or(created),
            }
        })
    }

    fn set_lease(&self, record: &mut Record, state: LeaseState, expires: Timestamp) {
        if let Some(lease) = &mut record.lease {
            lease.state = state;
            lease.expires = expires;
        }
    }
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
