//! Who may use the proxy, and where it may go.
//!
//! Clients come only from the CIDRs of the subnets that allow the proxy, plus loopback.
//! Destinations: CONNECT only to port 443, plain HTTP only to the safe ports, and never to an
//! address in a denied network (checked on every address a name resolves to, so a name cannot
//! smuggle a request to the controller or a BMC). IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`)
//! are treated as the IPv4 address they carry, on both sides.

use std::net::IpAddr;

use ipnet::IpNet;
use maas_net::Topology;
use serde::{Deserialize, Serialize};

use crate::error::Refusal;

/// The networks refused as destinations unless configured otherwise: loopback, "this network",
/// link-local (cloud metadata services live there) and multicast.
pub const DEFAULT_DENIED: &[&str] = &[
    "127.0.0.0/8",
    "0.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "::1/128",
    "::/128",
    "fe80::/10",
    "ff00::/8",
];

/// Access-control configuration (serde, so it comes from the controller's file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AclConfig {
    /// Client networks allowed besides loopback.
    pub allow: Vec<IpNet>,
    /// Destination networks refused (the controller's own and the BMC networks belong here).
    pub deny: Vec<IpNet>,
}

impl Default for AclConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: default_denied(),
        }
    }
}

/// [`DEFAULT_DENIED`] parsed.
pub fn default_denied() -> Vec<IpNet> {
    DEFAULT_DENIED
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// What a request is for: a tunnel, or a plain HTTP fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `CONNECT host:port`.
    Connect,
    /// An absolute-form `http://` request.
    Http,
}

/// The access-control list: decides on clients, ports and destination addresses.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl Acl {
    /// An ACL from its configuration.
    pub fn new(config: &AclConfig) -> Self {
        Self {
            allow: config.allow.iter().map(canonical_net).collect(),
            deny: config.deny.iter().map(canonical_net).collect(),
        }
    }

    /// Clients from every subnet of `topology` with `allow_proxy` set; destinations in
    /// [`DEFAULT_DENIED`] and `denied` (the controller's and the BMC networks) refused.
    pub fn from_topology(topology: &Topology, denied: impl IntoIterator<Item = IpNet>) -> Self {
        let allow = topology
            .subnets()
            .filter(|(_, s)| s.allow_proxy)
            .map(|(_, s)| s.cidr.trunc())
            .collect();
        let mut deny = default_denied();
        deny.extend(denied);
        Self::new(&AclConfig { allow, deny })
    }

    /// The allowed client networks (loopback is always allowed besides these).
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// The denied destination networks.
    pub fn denied(&self) -> &[IpNet] {
        &self.deny
    }

    /// Whether `client` may use the proxy.
    pub fn check_client(&self, client: IpAddr) -> Result<(), Refusal> {
        let ip = client.to_canonical();
        if ip.is_loopback() || self.allow.iter().any(|n| n.contains(&ip)) {
            Ok(())
        } else {
            Err(Refusal::ClientNotAllowed(ip))
        }
    }

    /// Whether a request of `kind` may go to `port`.
    pub fn check_port(&self, kind: Kind, port: u16) -> Result<(), Refusal> {
        match kind {
            Kind::Connect if port == 443 => Ok(()),
            Kind::Connect => Err(Refusal::ConnectPort(port)),
            Kind::Http if is_safe_port(port) => Ok(()),
            Kind::Http => Err(Refusal::UnsafePort(port)),
        }
    }

    /// Whether the proxy may connect to `dest` (call it on every resolved address, and connect
    /// only to an address that passed).
    pub fn check_destination(&self, dest: IpAddr) -> Result<(), Refusal> {
        let ip = dest.to_canonical();
        if self.deny.iter().any(|n| n.contains(&ip)) {
            Err(Refusal::DeniedDestination(ip))
        } else {
            Ok(())
        }
    }
}

/// The safe ports of squid's default configuration: 80, 21, 443 and 1025-65535.
pub fn is_safe_port(port: u16) -> bool {
    matches!(port, 80 | 21 | 443 | 1025..=65535)
}

fn canonical_net(net: &IpNet) -> IpNet {
    let net = net.trunc();
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn acl() -> Acl {
        let mut config = AclConfig {
            allow: vec![
                "10.77.180.0/24".parse().unwrap(),
                "fd77:180::/64".parse().unwrap(),
            ],
            ..AclConfig::default()
        };
        config.deny.push("10.77.181.0/24".parse().unwrap());
        Acl::new(&config)
    }

    #[test]
    fn clients() {
        let acl = acl();
        for ok in [
            "10.77.180.9",
            "fd77:180::9",
            "::ffff:10.77.180.9",
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(acl.check_client(ok.parse().unwrap()), Ok(()), "{ok}");
        }
        for bad in [
            "10.77.181.9",
            "fd77:181::9",
            "::ffff:10.77.181.9",
            "192.0.2.1",
        ] {
            assert!(
                matches!(
                    acl.check_client(bad.parse().unwrap()),
                    Err(Refusal::ClientNotAllowed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn ports() {
        let acl = acl();
        assert!(acl.check_port(Kind::Connect, 443).is_ok());
        assert_eq!(
            acl.check_port(Kind::Connect, 22),
            Err(Refusal::ConnectPort(22))
        );
        assert_eq!(
            acl.check_port(Kind::Connect, 8443),
            Err(Refusal::ConnectPort(8443))
        );
        for p in [80, 21, 443, 1025, 3142, 65535] {
            assert!(acl.check_port(Kind::Http, p).is_ok(), "{p}");
        }
        for p in [22, 25, 1024, 0] {
            assert_eq!(acl.check_port(Kind::Http, p), Err(Refusal::UnsafePort(p)));
        }
    }

    #[test]
    fn destinations() {
        let acl = acl();
        for bad in [
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "10.77.181.1",
            "::ffff:10.77.181.1",
            "fe80::1",
            "0.0.0.0",
        ] {
            assert!(
                acl.check_destination(bad.parse().unwrap()).is_err(),
                "{bad}"
            );
        }
        assert!(
            acl.check_destination("10.77.180.1".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn mapped_deny_network_applies_to_ipv4() {
        let acl = Acl::new(&AclConfig {
            allow: vec![],
            deny: vec!["::ffff:10.77.182.0/120".parse().unwrap()],
        });
        assert!(
            acl.check_destination("10.77.182.7".parse().unwrap())
                .is_err()
        );
    }

    #[test]
    fn from_topology_uses_allow_proxy() {
        let mut topo = Topology::new();
        let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
        topo.create_subnet(maas_net::Subnet::new(
            "10.77.183.0/24".parse().unwrap(),
            vlan,
        ))
        .unwrap();
        let mut off = maas_net::Subnet::new("10.77.184.0/24".parse().unwrap(), vlan);
        off.allow_proxy = false;
        topo.create_subnet(off).unwrap();
        let acl = Acl::from_topology(&topo, ["10.77.185.0/24".parse().unwrap()]);
        assert!(acl.check_client("10.77.183.5".parse().unwrap()).is_ok());
        assert!(acl.check_client("10.77.184.5".parse().unwrap()).is_err());
        assert!(
            acl.check_destination("10.77.185.5".parse().unwrap())
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn mapped_and_plain_agree(a in any::<u32>()) {
            let acl = acl();
            let v4 = std::net::Ipv4Addr::from(a);
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            prop_assert_eq!(acl.check_client(IpAddr::V4(v4)).is_ok(), acl.check_client(mapped).is_ok());
            prop_assert_eq!(acl.check_destination(IpAddr::V4(v4)).is_ok(), acl.check_destination(mapped).is_ok());
        }
    }
}
