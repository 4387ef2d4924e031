//! What the DNS serves, gathered from the controller's state into the neutral [`Inputs`]:
//! the hosts (the controller, machines and devices), the domains, the subnets with their
//! dynamic ranges, and the current leases.

use std::net::IpAddr;

use maas_ipam::LeaseState;
use maas_net::IpRangeKind;

use super::zone::{DomainInput, Host, HostInterface, Inputs, SubnetInput};
use crate::app::App;
use crate::config::DnsSection;
use maas_net::Mac;

use crate::state::{DEFAULT_DOMAIN, Device, IpAssignment, Machine};

/// Everything the DNS answers from, now.
pub(crate) fn gather(app: &App, section: &DnsSection) -> Inputs {
    let (subnets, leases) = app.state.ipam.read(|ipam| {
        let topology = ipam.topology();
        let subnets = topology
            .subnets()
            .map(|(id, s)| SubnetInput {
                cidr: s.cidr,
                allow_dns: s.allow_dns,
                rdns_mode: s.rdns_mode,
                dynamic: topology
                    .ip_ranges_in(id)
                    .filter(|(_, r)| r.kind == IpRangeKind::Dynamic)
                    .map(|(_, r)| (r.start, r.end))
                    .collect(),
            })
            .collect::<Vec<_>>();
        let leases = ipam
            .leases()
            .filter(|r| {
                r.lease
                    .as_ref()
                    .is_some_and(|l| l.state == LeaseState::Bound)
            })
            .map(|r| r.ip)
            .collect::<Vec<_>>();
        (subnets, leases)
    });
    let domains = app
        .state
        .domains()
        .into_iter()
        .map(|d| DomainInput {
            name: d.name,
            authoritative: d.authoritative,
            ttl: d.ttl,
        })
        .collect();
    Inputs {
        hosts: hosts(app, section),
        domains,
        default_domain: DEFAULT_DOMAIN.into(),
        subnets,
        leases,
        ns_name: section.name.clone(),
        default_ttl: section.default_ttl,
        forwarding: !section.forwarders.is_empty(),
    }
}

/// Every host the DNS names: the controller, the machines, then the devices.
pub(crate) fn hosts(app: &App, section: &DnsSection) -> Vec<Host> {
    let controller: Vec<IpAddr> = section
        .addresses
        .iter()
        .copied()
        .chain(app.config.controller.advertise)
        .collect();
    let mut out = Vec::new();
    if !controller.is_empty() {
        out.push(Host {
            name: section.name.clone(),
            domain: DEFAULT_DOMAIN.into(),
            interfaces: vec![HostInterface {
                name: String::new(),
                boot: true,
                addresses: controller,
            }],
        });
    }
    out.extend(app.state.machines().iter().map(machine_host));
    out.extend(app.state.devices().iter().map(|device| {
        let addresses = app.state.device_addresses(device);
        device_host(device, &addresses)
    }));
    out
}

/// A device as a host: each interface with the addresses of its links as
/// [`State::device_addresses`](crate::state::State::device_addresses) gives them (a dynamic
/// link's bound lease); the first interface is its boot interface, named by the host name.
pub(crate) fn device_host(
    device: &Device,
    addresses: &[(Mac, IpAssignment, Option<IpAddr>)],
) -> Host {
    let mut interfaces: Vec<HostInterface> = device
        .interfaces
        .iter()
        .enumerate()
        .map(|(n, iface)| HostInterface {
            name: iface.name.clone(),
            boot: n == 0,
            addresses: addresses
                .iter()
                .filter(|(mac, ..)| *mac == iface.mac)
                .filter_map(|(_, _, ip)| *ip)
                .collect(),
        })
        .collect();
    interfaces.retain(|i| !i.addresses.is_empty());
    Host {
        name: device.name.clone(),
        domain: device.domain.clone(),
        interfaces,
    }
}

/// A machine as a host: each interface of its network configuration with the addresses of
/// its links; the boot interface (its MAC is the machine's) also carries the last lease when
/// it has no other address.
pub(crate) fn machine_host(machine: &Machine) -> Host {
    let mut interfaces: Vec<HostInterface> = machine
        .network
        .iter()
        .flat_map(|doc| &doc.interfaces)
        .map(|i| HostInterface {
            name: i.name.clone(),
            boot: i.mac == Some(machine.mac),
            addresses: i.links.iter().filter_map(|l| l.ip).collect(),
        })
        .collect();
    match interfaces.iter_mut().find(|i| i.boot) {
        Some(boot) => {
            if boot.addresses.is_empty() {
                boot.addresses.extend(machine.ip);
            }
        }
        None => interfaces.push(HostInterface {
            name: "boot".into(),
            boot: true,
            addresses: machine.ip.into_iter().collect(),
        }),
    }
    interfaces.retain(|i| !i.addresses.is_empty());
    Host {
        name: machine.hostname.clone(),
        domain: machine.domain.clone(),
        interfaces,
    }
}
