//! The properties the DHCP server fuzz target checks.
//!
//! `check_dhcp4_server` drives a `Server4` on in-memory maas-ipam leases with a sequence of
//! datagrams, probe answers and clock steps, and checks after each step that nothing panics,
//! that every reply decodes as a BOOTREPLY with the request's transaction id, that every
//! address offered or leased lies in a dynamic range of the topology, and that no address is
//! leased to two clients. The `fuzz_corpus` module of `maas-pxe/tests/integration` includes
//! this file to replay the committed corpus under `cargo test`.
//!
//! `check_dhcp6_server` does the same for a `Server6`: every reply decodes, offered and
//! leased addresses lie in a dynamic range, and no client holds two leases. Its input is one
//! byte of configuration (bit 0 ProxyDHCP, bit 1 non-authoritative, bit 3 rapid commit off),
//! then records of an operation byte (high nibble: clock step in minutes of ten before the
//! datagram); the server's DUID is DUID-LL 52:54:00:77:00:01 and a length-prefixed datagram.
//!
//! Input of `check_dhcp4_server`: one byte of configuration (bit 0 ProxyDHCP, bit 1 non-authoritative, bit 2 conflict
//! check, bit 3 rapid commit off), then records of an operation byte and, for datagrams, a
//! two-byte big-endian length and the datagram. Operation low bits: 0 a datagram on port 67,
//! 1 a datagram on port 4011, 2 the answer to the oldest probe (bit 2: in use), 3 advance the
//! clock by the operation's high nibble times 10 minutes and expire leases. Bit 3 of a datagram
//! operation receives it on an interface whose address is in no subnet.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::sync::Mutex;

use maas_ipam::{Ipam, LeaseState};
use maas_net::{IpRange, IpRangeKind, Mac, Subnet, Timestamp, Topology, Vlan};
use maas_pxe::dhcp::server::{
    Duid, Event, Leases, Mode, Received, Received6, Server4, Server6, ServerConfig, ServerPort,
};
use maas_pxe::dhcp::{v4, v6};
use maas_pxe::dhcproto::v4::Opcode;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// Two subnets with small pools (10.77.0.0/24 served directly, 10.77.5.0/24 through a relay)
/// so that exhaustion, quarantine and reuse are reached quickly.
pub fn server_topology() -> Topology {
    let mut t = Topology::new();
    let fabric = t.fabrics().next().expect("the default fabric").0;
    let vlan = t.default_vlan(fabric).expect("its default VLAN");
    t.update_vlan(vlan, |v| v.dhcp_on = true).expect("DHCP on");
    let s0 = t
        .create_subnet(Subnet {
            gateway_ip: Some(IpAddr::V4(SERVER)),
            ..Subnet::new("10.77.0.0/24".parse().expect("a CIDR"), vlan)
        })
        .expect("a subnet");
    t.create_ip_range(IpRange::new(
        s0,
        "10.77.0.100".parse().expect("an address"),
        "10.77.0.103".parse().expect("an address"),
        IpRangeKind::Dynamic,
    ))
    .expect("a range");
    let relayed = t
        .create_vlan(Vlan {
            relay_vlan: Some(vlan),
            ..Vlan::new(fabric, 5)
        })
        .expect("a VLAN");
    let s5 = t
        .create_subnet(Subnet::new(
            "10.77.5.0/24".parse().expect("a CIDR"),
            relayed,
        ))
        .expect("a subnet");
    t.create_ip_range(IpRange::new(
        s5,
        "10.77.5.50".parse().expect("an address"),
        "10.77.5.52".parse().expect("an address"),
        IpRangeKind::Dynamic,
    ))
    .expect("a range");
    let s6 = t
        .create_subnet(Subnet::new("fd77::/64".parse().expect("a CIDR"), vlan))
        .expect("a subnet");
    t.create_ip_range(IpRange::new(
        s6,
        "fd77::1:0".parse().expect("an address"),
        "fd77::1:ff".parse().expect("an address"),
        IpRangeKind::Dynamic,
    ))
    .expect("a range");
    t
}

fn in_dynamic_range(topology: &Topology, ip: IpAddr) -> bool {
    topology
        .ip_ranges()
        .any(|(_, r)| r.kind == IpRangeKind::Dynamic && r.start <= ip && ip <= r.end)
}

/// See the module documentation.
pub fn check_dhcp4_server(data: &[u8]) {
    let Some((flags, mut rest)) = data.split_first() else {
        return;
    };
    let config = ServerConfig {
        mode: mode(*flags),
        conflict_check: flags & 4 != 0,
        rapid_commit: flags & 8 == 0,
        lease_secs: 1800,
        ..ServerConfig::default()
    };
    let topology = server_topology();
    let server = Server4::new(
        config,
        topology.clone(),
        Mutex::new(Ipam::new(topology.clone())),
    )
    .expect("a valid configuration");
    let mut now = Timestamp(1_800_000_000);
    let mut probes = VecDeque::new();
    for _ in 0..64 {
        let Some((op, tail)) = rest.split_first() else {
            break;
        };
        rest = tail;
        let handled = match op & 3 {
            0 | 1 => {
                let [hi, lo, tail @ ..] = rest else {
                    break;
                };
                let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
                let (datagram, tail) = tail.split_at(len);
                rest = tail;
                let rx = Received {
                    bytes: datagram,
                    source: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
                    local: if op & 8 != 0 {
                        Ipv4Addr::new(192, 0, 2, 1)
                    } else {
                        SERVER
                    },
                    interface: 1,
                    port: if op & 3 == 1 {
                        ServerPort::Pxe
                    } else {
                        ServerPort::Dhcp
                    },
                };
                let handled = server.handle(now, &rx);
                if let Some(t) = &handled.transmit {
                    let reply = v4::decode(&t.bytes).expect("a reply decodes");
                    assert_eq!(reply.opcode(), Opcode::BootReply);
                    let request = v4::decode(datagram).expect("only decoded requests get replies");
                    assert_eq!(reply.xid(), request.xid());
                }
                handled
            }
            2 => match probes.pop_front() {
                Some(probe) => server.probe_result(probe, op & 4 != 0, now),
                None => continue,
            },
            _ => {
                now = now.plus(u64::from(op >> 4) * 600);
                server.leases().expire(now).expect("in memory");
                continue;
            }
        };
        if let Some(probe) = handled.probe {
            probes.push_back(probe);
        }
        match &handled.event {
            Event::Offered { ip, .. } | Event::Leased { ip, .. } => {
                assert!(
                    in_dynamic_range(&topology, *ip),
                    "{ip} is outside the pools"
                );
            }
            _ => {}
        }
        if let Event::Leased { ip, client, .. } = &handled.event {
            let ipam = server.leases().lock().expect("not poisoned");
            let lease = ipam.record(*ip).and_then(|r| r.lease.clone());
            let lease = lease.expect("an acknowledged lease is recorded");
            assert_eq!(&lease.client, client);
            assert_eq!(lease.state, LeaseState::Bound);
        }
        let ipam = server.leases().lock().expect("not poisoned");
        let mut holders = HashMap::new();
        for record in ipam.leases() {
            if let Some(lease) = record
                .lease
                .as_ref()
                .filter(|l| l.state == LeaseState::Bound)
            {
                assert!(
                    holders.insert(lease.client.clone(), record.ip).is_none(),
                    "{} holds two leases",
                    lease.client
                );
            }
        }
    }
}

fn mode(flags: u8) -> Mode {
    if flags & 1 != 0 {
        Mode::Proxy
    } else if flags & 2 != 0 {
        Mode::NonAuthoritative
    } else {
        Mode::Authoritative
    }
}

/// Panics if a client holds two bound leases.
fn one_lease_per_client(ipam: &Ipam) {
    let mut holders = HashMap::new();
    for record in ipam.leases() {
        if let Some(lease) = record
            .lease
            .as_ref()
            .filter(|l| l.state == LeaseState::Bound)
        {
            assert!(
                holders.insert(lease.client.clone(), record.ip).is_none(),
                "{} holds two leases",
                lease.client
            );
        }
    }
}

/// See the module documentation.
pub fn check_dhcp6_server(data: &[u8]) {
    let Some((flags, mut rest)) = data.split_first() else {
        return;
    };
    let config = ServerConfig {
        mode: mode(*flags),
        rapid_commit: flags & 8 == 0,
        lease_secs: 1800,
        duid: Some(Duid::LinkLayer {
            mac: Mac::new([0x52, 0x54, 0, 0x77, 0, 1]),
        }),
        ..ServerConfig::default()
    };
    let topology = server_topology();
    let server = Server6::new(
        config,
        topology.clone(),
        Mutex::new(Ipam::new(topology.clone())),
    )
    .expect("a valid configuration");
    let mut now = Timestamp(1_800_000_000);
    for _ in 0..64 {
        let [op, hi, lo, tail @ ..] = rest else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        if op >> 4 != 0 {
            now = now.plus(u64::from(op >> 4) * 600);
            server.leases().expire(now).expect("in memory");
        }
        let rx = Received6 {
            bytes: datagram,
            source: SocketAddrV6::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x10), 546, 0, 1),
            local: Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1),
            interface: 1,
        };
        let handled = server.handle(now, &rx);
        if let Some(t) = &handled.transmit {
            v6::decode(&t.bytes).expect("a reply decodes");
            v6::decode(datagram).expect("only decoded requests get replies");
        }
        match &handled.event {
            Event::Offered { ip, .. } | Event::Leased { ip, .. } => {
                assert!(
                    in_dynamic_range(&topology, *ip),
                    "{ip} is outside the pools"
                );
            }
            _ => {}
        }
        one_lease_per_client(&server.leases().lock().expect("not poisoned"));
    }
}
