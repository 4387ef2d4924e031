//! Subnets and the static routes between them.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::ip::{self, Family};
use crate::{
    Error, IpRange, IpRangeId, IpRangeKind, Kind, StaticRoute, StaticRouteId, Subnet, SubnetId,
};

use super::{Topology, not_found};

impl Topology {
    // ---- subnets -------------------------------------------------------------------------

    /// Add a subnet. Host bits of the CIDR are cleared; an empty name becomes the CIDR.
    pub fn create_subnet(&mut self, subnet: Subnet) -> Result<SubnetId, Error> {
        self.insert_subnet(None, subnet)
    }

    pub(crate) fn insert_subnet(
        &mut self,
        id: Option<SubnetId>,
        mut subnet: Subnet,
    ) -> Result<SubnetId, Error> {
        let id = id.unwrap_or(SubnetId::new(self.next.subnet));
        if self.subnets.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::Subnet,
                id: id.get(),
            });
        }
        normalise_subnet(&mut subnet);
        self.check_subnet(id, &subnet)?;
        self.index_subnet(id, subnet.cidr);
        self.subnets.insert(id, subnet);
        self.next.subnet = self.next.subnet.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change a subnet. The change is refused if one of the subnet's ranges, routes or linked
    /// machines would no longer be valid (a range outside a smaller CIDR, a gateway moved into a dynamic range, a
    /// managed subnet made unmanaged while a dynamic range lies outside every reserved range).
    pub fn update_subnet(
        &mut self,
        id: SubnetId,
        change: impl FnOnce(&mut Subnet),
    ) -> Result<(), Error> {
        let old = self
            .subnets
            .get(&id)
            .ok_or(not_found(Kind::Subnet, id.get()))?;
        let old_cidr = old.cidr;
        let mut subnet = old.clone();
        change(&mut subnet);
        normalise_subnet(&mut subnet);
        // Take the subnet out of the index so it cannot be found overlapping itself.
        self.unindex_subnet(old_cidr);
        if let Err(e) = self.check_subnet(id, &subnet) {
            self.index_subnet(id, old_cidr);
            return Err(e);
        }
        self.index_subnet(id, subnet.cidr);
        // Machines linked to the subnet must still pass with it changed (addresses inside it,
        // on their interfaces' VLAN, a gateway for a default-gateway link).
        let affected = self.machines_touching(None, Some(id));
        let new_cidr = subnet.cidr;
        let old = self.subnets.insert(id, subnet).expect("checked above");
        if let Err(e) = self.recheck_machines(&affected) {
            self.unindex_subnet(new_cidr);
            self.index_subnet(id, old.cidr);
            self.subnets.insert(id, old);
            return Err(e);
        }
        Ok(())
    }

    /// Delete a subnet with its IP ranges, the static routes from or to it, and machines'
    /// links to it (a default-gateway link left without a suitable link is cleared).
    pub fn delete_subnet(&mut self, id: SubnetId) -> Result<Subnet, Error> {
        if !self.subnets.contains_key(&id) {
            return Err(not_found(Kind::Subnet, id.get()));
        }
        self.unlink_subnet(id);
        let subnet = self
            .subnets
            .remove(&id)
            .ok_or(not_found(Kind::Subnet, id.get()))?;
        self.unindex_subnet(subnet.cidr);
        let ranges: Vec<IpRangeId> = self.ip_ranges_in(id).map(|(r, _)| r).collect();
        for range in ranges {
            self.take_range(range);
        }
        let routes: Vec<StaticRouteId> = self.static_routes_touching(id).map(|(r, _)| r).collect();
        for route in routes {
            self.take_route(route);
        }
        Ok(subnet)
    }

    fn put_route(&mut self, id: StaticRouteId, route: StaticRoute) {
        self.take_route(id);
        self.routes_by_subnet.insert((route.source, id));
        self.routes_by_subnet.insert((route.destination, id));
        self.routes.insert(id, route);
    }

    fn take_route(&mut self, id: StaticRouteId) -> Option<StaticRoute> {
        let route = self.routes.remove(&id)?;
        self.routes_by_subnet.remove(&(route.source, id));
        self.routes_by_subnet.remove(&(route.destination, id));
        Some(route)
    }

    fn index_subnet(&mut self, id: SubnetId, cidr: IpNet) {
        let (first, last) = ip::bounds(cidr);
        self.subnet_index
            .insert((Family::of_net(cidr), first), (last, id));
    }

    fn unindex_subnet(&mut self, cidr: IpNet) {
        self.subnet_index
            .remove(&(Family::of_net(cidr), ip::bounds(cidr).0));
    }

    /// Checks a subnet as it would be stored under `id`; the subnet itself must not be in the
    /// index.
    fn check_subnet(&self, id: SubnetId, subnet: &Subnet) -> Result<(), Error> {
        let cidr = subnet.cidr;
        if cidr.prefix_len() == 0 {
            return Err(Error::PrefixZero { cidr });
        }
        if !self.vlans.contains_key(&subnet.vlan) {
            return Err(not_found(Kind::Vlan, subnet.vlan.get()));
        }
        if let Some(gateway) = subnet.gateway_ip {
            let link_local = Family::of_net(cidr) == Family::V6 && ip::is_ipv6_link_local(gateway);
            if !cidr.contains(&gateway) && !link_local {
                return Err(Error::GatewayOutsideSubnet { gateway, cidr });
            }
        }
        if let Some(other) = self.overlapping_subnet(cidr) {
            return Err(Error::SubnetOverlap {
                cidr,
                existing: self.subnets[&other].cidr,
            });
        }
        // What already hangs off the subnet must stay valid.
        let ranges: Vec<(IpRangeId, &IpRange)> = self.ip_ranges_in(id).collect();
        for (_, range) in ranges
            .iter()
            .filter(|(_, r)| r.kind == IpRangeKind::Dynamic)
        {
            let roles = subnet.gateway_ip.iter().map(|g| ("gateway", *g));
            for (role, ip) in roles.chain(subnet.dns_servers.iter().map(|d| ("DNS server", *d))) {
                if range.contains(ip) {
                    return Err(Error::InDynamicRange {
                        role,
                        ip,
                        start: range.start,
                        end: range.end,
                    });
                }
            }
        }
        for (range_id, range) in &ranges {
            self.check_range_in(Some(*range_id), range, subnet, &[], true)
                .map_err(|reason| Error::WouldInvalidate {
                    what: format!("{} range {}-{}", range.kind, range.start, range.end),
                    reason: Box::new(reason),
                })?;
        }
        for (_, route) in self.static_routes_touching(id) {
            let (source, destination) = if route.source == id {
                (subnet.cidr, self.subnets[&route.destination].cidr)
            } else {
                (self.subnets[&route.source].cidr, subnet.cidr)
            };
            check_route_shape(source, destination, route.gateway_ip).map_err(|reason| {
                Error::WouldInvalidate {
                    what: format!(
                        "static route from {source} to {destination} via {}",
                        route.gateway_ip
                    ),
                    reason: Box::new(reason),
                }
            })?;
        }
        Ok(())
    }

    // ---- static routes -------------------------------------------------------------------

    /// Add a static route.
    pub fn create_static_route(&mut self, route: StaticRoute) -> Result<StaticRouteId, Error> {
        self.insert_static_route(None, route)
    }

    pub(crate) fn insert_static_route(
        &mut self,
        id: Option<StaticRouteId>,
        route: StaticRoute,
    ) -> Result<StaticRouteId, Error> {
        let id = id.unwrap_or(StaticRouteId::new(self.next.route));
        if self.routes.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::StaticRoute,
                id: id.get(),
            });
        }
        self.check_route(id, &route)?;
        self.put_route(id, route);
        self.next.route = self.next.route.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change a static route.
    pub fn update_static_route(
        &mut self,
        id: StaticRouteId,
        change: impl FnOnce(&mut StaticRoute),
    ) -> Result<(), Error> {
        let mut route = self
            .routes
            .get(&id)
            .ok_or(not_found(Kind::StaticRoute, id.get()))?
            .clone();
        change(&mut route);
        self.check_route(id, &route)?;
        self.put_route(id, route);
        Ok(())
    }

    /// Delete a static route.
    pub fn delete_static_route(&mut self, id: StaticRouteId) -> Result<StaticRoute, Error> {
        self.take_route(id)
            .ok_or(not_found(Kind::StaticRoute, id.get()))
    }

    fn check_route(&self, id: StaticRouteId, route: &StaticRoute) -> Result<(), Error> {
        let source = self
            .subnets
            .get(&route.source)
            .ok_or(not_found(Kind::Subnet, route.source.get()))?;
        let destination = self
            .subnets
            .get(&route.destination)
            .ok_or(not_found(Kind::Subnet, route.destination.get()))?;
        if route.source == route.destination {
            return Err(Error::RouteToSelf {
                subnet: source.cidr,
            });
        }
        check_route_shape(source.cidr, destination.cidr, route.gateway_ip)?;
        let duplicate = self.static_routes_from(route.source).any(|(o, r)| {
            o != id
                && r.source == route.source
                && r.destination == route.destination
                && r.gateway_ip == route.gateway_ip
        });
        if duplicate {
            return Err(Error::RouteExists {
                from: source.cidr,
                to: destination.cidr,
                gateway: route.gateway_ip,
            });
        }
        Ok(())
    }
}

fn normalise_subnet(subnet: &mut Subnet) {
    subnet.cidr = subnet.cidr.trunc();
    if subnet.name.is_empty() {
        subnet.name = subnet.cidr.to_string();
    }
    let mut seen = Vec::with_capacity(subnet.disabled_boot_architectures.len());
    subnet.disabled_boot_architectures.retain(|a| {
        let new = !seen.contains(a);
        seen.push(*a);
        new
    });
}

fn check_route_shape(source: IpNet, destination: IpNet, gateway: IpAddr) -> Result<(), Error> {
    if Family::of_net(source) != Family::of_net(destination) {
        return Err(Error::RouteFamilyMismatch {
            from: source,
            to: destination,
        });
    }
    if !source.contains(&gateway) {
        return Err(Error::RouteGatewayOutside {
            gateway,
            from: source,
        });
    }
    Ok(())
}
