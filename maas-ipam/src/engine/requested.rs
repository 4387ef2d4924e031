//! Addresses asked for by address (STICKY and USER_RESERVED): MAAS's checks, and release.

use std::net::IpAddr;

use maas_net::SubnetId;
use maas_net::ip;

use super::intervals::range_holding;
use super::{AssignOptions, Ipam, Requested};
use crate::{AddressKind, Error, Record, Timestamp};

impl Ipam {
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
}
