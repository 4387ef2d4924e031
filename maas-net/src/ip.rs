//! Address arithmetic shared by the model and the crates built on it.
//!
//! Addresses of both families map to `u128` with a [`Family`] tag, so ranges and free blocks
//! are plain integer intervals whatever the family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub const fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The family of a network.
    pub const fn of_net(net: IpNet) -> Self {
        match net {
            IpNet::V4(_) => Self::V4,
            IpNet::V6(_) => Self::V6,
        }
    }
}

/// The address as a family and an integer.
pub const fn bits(ip: IpAddr) -> (Family, u128) {
    match ip {
        IpAddr::V4(a) => (Family::V4, a.to_bits() as u128),
        IpAddr::V6(a) => (Family::V6, a.to_bits()),
    }
}

/// The address of a family with this integer value; IPv4 keeps the low 32 bits.
pub const fn from_bits(family: Family, value: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from_bits(value as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from_bits(value)),
    }
}

/// The first and last address of a network, as integers.
pub fn bounds(net: IpNet) -> (u128, u128) {
    (bits(net.network()).1, bits(net.broadcast()).1)
}

/// The addresses of a network that can be given to hosts, as an inclusive integer interval:
/// everything but the network address (and the IPv4 broadcast address), except in IPv4 /31
/// and /32 and IPv6 /127 and /128 networks, where every address is usable.
pub fn usable_bounds(net: IpNet) -> (u128, u128) {
    let (first, last) = bounds(net);
    match net {
        IpNet::V4(n) if n.prefix_len() >= 31 => (first, last),
        IpNet::V4(_) => (first + 1, last - 1),
        IpNet::V6(n) if n.prefix_len() >= 127 => (first, last),
        IpNet::V6(_) => (first + 1, last),
    }
}

/// Whether an address is IPv6 link-local (`fe80::/10`).
pub const fn is_ipv6_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_bounds_follow_the_prefix() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let ip = |s: &str| bits(s.parse().unwrap()).1;
        assert_eq!(
            usable_bounds(net("10.0.0.0/24")),
            (ip("10.0.0.1"), ip("10.0.0.254"))
        );
        assert_eq!(
            usable_bounds(net("10.0.0.0/31")),
            (ip("10.0.0.0"), ip("10.0.0.1"))
        );
        assert_eq!(
            usable_bounds(net("10.0.0.7/32")),
            (ip("10.0.0.7"), ip("10.0.0.7"))
        );
        assert_eq!(
            usable_bounds(net("fd77::/64")),
            (ip("fd77::1"), ip("fd77::ffff:ffff:ffff:ffff"))
        );
        assert_eq!(
            usable_bounds(net("fd77::/127")),
            (ip("fd77::"), ip("fd77::1"))
        );
        assert_eq!(
            from_bits(Family::V4, ip("10.1.2.3")),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert!(is_ipv6_link_local("fe80::1".parse().unwrap()));
        assert!(is_ipv6_link_local("febf::1".parse().unwrap()));
        assert!(!is_ipv6_link_local("fec0::1".parse().unwrap()));
        assert!(!is_ipv6_link_local("10.0.0.1".parse().unwrap()));
    }
}
