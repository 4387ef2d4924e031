//! DNS names of the network model: the reverse zones a subnet is served under, reverse names
//! of addresses, and the generated host names of addresses in dynamic ranges.
//!
//! Reverse zones follow MAAS's naming:
//!
//! - An IPv4 network is served on octet boundaries: its prefix is rounded up to the next
//!   multiple of 8 and the network split into zones of that size, so a /16 is the one zone
//!   `77.10.in-addr.arpa`, a /20 sixteen /24 zones, a /24 one zone.
//! - An IPv6 network is served on nibble boundaries the same way (a /64 is one zone of 16
//!   nibble labels, a /62 four /64 zones).
//! - A network narrower than a /24 (IPv6: a /124) gets one zone in the classless form of
//!   RFC 2317 as MAAS spells it: the network's last octet (IPv6: nibble), a hyphen and the
//!   prefix length, before the enclosing zone's name: `64-26.1.77.10.in-addr.arpa` for
//!   `10.77.1.64/26`.
//! - With the RFC 2317 mode such a network also needs glue in the enclosing /24 (IPv6: /124)
//!   zone: a CNAME from each address's ordinary reverse name to its name in the classless
//!   zone ([`glue_network`], [`classless_name`]).
//!
//! Addresses in dynamic ranges are named after the address: the IPv4 address with its dots
//! as hyphens (`10-77-0-5`), as MAAS's `$GENERATE` lines name them; an IPv6 address as its
//! compressed text with colons as hyphens (`fd77--5`).
//!
//! Names here carry no trailing dot and are lower case. The module does no I/O.
//!
//! ```
//! use maas_net::RdnsMode;
//! use maas_net::dns::{glue_network, reverse_zones};
//!
//! let small = "10.77.1.64/26".parse()?;
//! let zones = reverse_zones(small, RdnsMode::Rfc2317);
//! assert_eq!(zones[0].name, "64-26.1.77.10.in-addr.arpa");
//! assert_eq!(glue_network(small, RdnsMode::Rfc2317), Some("10.77.1.0/24".parse()?));
//! assert_eq!(reverse_zones("10.77.0.0/16".parse()?, RdnsMode::Enabled)[0].name, "77.10.in-addr.arpa");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::RdnsMode;

/// The most zones one subnet is split into; wider splits (an IPv4 /9, an IPv6 /61 and wider
/// on odd boundaries) are refused by [`reverse_zones`] returning the first this many.
pub const MAX_ZONES_PER_SUBNET: usize = 256;

/// A reverse zone: its name and the addresses it holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReverseZone {
    /// The zone's name, without the trailing dot.
    pub name: String,
    /// The addresses whose reverse names the zone holds (the whole subnet for a classless
    /// zone, one octet- or nibble-aligned block otherwise).
    pub network: IpNet,
}

impl ReverseZone {
    /// Whether this is a classless zone (RFC 2317 form: its first label holds a hyphen).
    pub fn is_classless(&self) -> bool {
        self.name
            .split('.')
            .next()
            .is_some_and(|label| label.contains('-'))
    }
}

/// The reverse zones of a subnet in `mode`: none when disabled; otherwise the octet- or
/// nibble-aligned zones covering it, or its one classless zone when it is narrower than a
/// /24 (IPv6: /124). Sorted by network. At most [`MAX_ZONES_PER_SUBNET`].
pub fn reverse_zones(cidr: IpNet, mode: RdnsMode) -> Vec<ReverseZone> {
    if mode == RdnsMode::Disabled {
        return Vec::new();
    }
    let cidr = cidr.trunc();
    let (unit, max) = match cidr {
        IpNet::V4(_) => (8u8, 32u8),
        IpNet::V6(_) => (4u8, 128u8),
    };
    let prefix = cidr.prefix_len();
    if prefix > max - unit {
        return vec![ReverseZone {
            name: classless_zone_name(cidr),
            network: cidr,
        }];
    }
    let aligned = prefix.div_ceil(unit) * unit;
    let Ok(subnets) = cidr.subnets(aligned) else {
        return Vec::new();
    };
    subnets
        .take(MAX_ZONES_PER_SUBNET)
        .map(|network| ReverseZone {
            name: aligned_zone_name(network),
            network,
        })
        .collect()
}

/// The enclosing /24 (IPv6: /124) whose zone carries RFC 2317 glue for `cidr`: only in the
/// RFC 2317 mode and for networks narrower than that.
pub fn glue_network(cidr: IpNet, mode: RdnsMode) -> Option<IpNet> {
    if mode != RdnsMode::Rfc2317 {
        return None;
    }
    match cidr {
        IpNet::V4(n) if n.prefix_len() > 24 => Ipv4Net::new(n.network(), 24)
            .ok()
            .map(|n| IpNet::V4(n.trunc())),
        IpNet::V6(n) if n.prefix_len() > 124 => Ipv6Net::new(n.network(), 124)
            .ok()
            .map(|n| IpNet::V6(n.trunc())),
        _ => None,
    }
}

/// The name of the zone serving an octet- or nibble-aligned network (`c.b.a.in-addr.arpa`
/// for a /24; for a /0, `in-addr.arpa` or `ip6.arpa`).
pub fn aligned_zone_name(network: IpNet) -> String {
    let full = reverse_name(network.network());
    let (labels, unit) = match network {
        IpNet::V4(_) => (4usize, 8usize),
        IpNet::V6(_) => (32, 4),
    };
    let keep = usize::from(network.prefix_len()).div_ceil(unit);
    full.split('.')
        .skip(labels - keep)
        .collect::<Vec<_>>()
        .join(".")
}

/// The classless (RFC 2317, MAAS's spelling) zone name of a network narrower than a /24 (or
/// a /124): `64-26.1.77.10.in-addr.arpa`.
pub fn classless_zone_name(network: IpNet) -> String {
    let network = network.trunc();
    match network {
        IpNet::V4(n) => {
            let o = n.network().octets();
            format!(
                "{}-{}.{}.{}.{}.in-addr.arpa",
                o[3],
                n.prefix_len(),
                o[2],
                o[1],
                o[0]
            )
        }
        IpNet::V6(n) => {
            let parent = Ipv6Net::new(n.network(), 124)
                .map(|p| aligned_zone_name(IpNet::V6(p.trunc())))
                .unwrap_or_default();
            let last = n.network().octets()[15] & 0x0f;
            format!("{last:x}-{}.{parent}", n.prefix_len())
        }
    }
}

/// The ordinary reverse name of an address: `5.0.77.10.in-addr.arpa`, or 32 nibbles before
/// `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut out = String::with_capacity(72);
            for byte in a.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            out.push_str("ip6.arpa");
            out
        }
    }
}

/// The address an ordinary reverse name stands for (case-insensitive, trailing dot allowed),
/// or `None` when it is not a whole address's name.
pub fn parse_reverse_name(name: &str) -> Option<IpAddr> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 4 {
            return None;
        }
        let mut o = [0u8; 4];
        for (i, label) in labels.iter().rev().enumerate() {
            if label.is_empty() || (label.len() > 1 && label.starts_with('0')) {
                return None;
            }
            o[i] = label.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(o)));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let labels: Vec<&str> = rest.split('.').collect();
    if labels.len() != 32 {
        return None;
    }
    let mut value: u128 = 0;
    for label in labels.iter().rev() {
        let mut chars = label.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else {
            return None;
        };
        value = (value << 4) | u128::from(c.to_digit(16)?);
    }
    Some(IpAddr::V6(Ipv6Addr::from_bits(value)))
}

/// The name of `ip` inside the classless zone of `network` (which must hold it): the last
/// octet (IPv6: nibble) before the zone's name, `70.64-26.1.77.10.in-addr.arpa`. This is
/// where RFC 2317 glue points.
pub fn classless_name(ip: IpAddr, network: IpNet) -> String {
    let zone = classless_zone_name(network);
    match ip {
        IpAddr::V4(a) => format!("{}.{zone}", a.octets()[3]),
        IpAddr::V6(a) => format!("{:x}.{zone}", a.octets()[15] & 0x0f),
    }
}

/// The host name MAAS gives an address of a dynamic range: `10-77-0-5`, or for IPv6 the
/// compressed address with hyphens for colons (`fd77--5`).
pub fn generated_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string().replace('.', "-"),
        IpAddr::V6(a) => a.to_string().replace(':', "-"),
    }
}

/// The address a [`generated_name`] label stands for, or `None` when it is not one (a
/// different spelling of the same address is not one either).
pub fn parse_generated_name(label: &str) -> Option<IpAddr> {
    let label = label.to_ascii_lowercase();
    let ip: IpAddr = if label.contains(':') || label.contains('.') {
        return None;
    } else if label.bytes().filter(|b| *b == b'-').count() == 3
        && label.bytes().all(|b| b.is_ascii_digit() || b == b'-')
    {
        label.replace('-', ".").parse::<Ipv4Addr>().ok()?.into()
    } else {
        label.replace('-', ":").parse::<Ipv6Addr>().ok()?.into()
    };
    (generated_name(ip) == label).then_some(ip)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("a network")
    }

    fn names(cidr: &str, mode: RdnsMode) -> Vec<String> {
        reverse_zones(net(cidr), mode)
            .into_iter()
            .map(|z| z.name)
            .collect()
    }

    #[test]
    fn ipv4_zones_on_octet_boundaries() {
        assert_eq!(
            names("10.77.0.0/24", RdnsMode::Enabled),
            ["0.77.10.in-addr.arpa"]
        );
        assert_eq!(
            names("10.77.0.0/16", RdnsMode::Enabled),
            ["77.10.in-addr.arpa"]
        );
        let wide = names("10.77.16.0/20", RdnsMode::Enabled);
        assert_eq!(wide.len(), 16);
        assert_eq!(wide[0], "16.77.10.in-addr.arpa");
        assert_eq!(wide[15], "31.77.10.in-addr.arpa");
        assert_eq!(names("10.0.0.0/8", RdnsMode::Enabled), ["10.in-addr.arpa"]);
        assert!(names("10.77.0.0/24", RdnsMode::Disabled).is_empty());
    }

    #[test]
    fn ipv4_classless_zones_and_glue() {
        assert_eq!(
            names("10.77.1.64/26", RdnsMode::Enabled),
            ["64-26.1.77.10.in-addr.arpa"]
        );
        assert_eq!(
            names("10.77.1.8/29", RdnsMode::Rfc2317),
            ["8-29.1.77.10.in-addr.arpa"]
        );
        assert_eq!(
            glue_network(net("10.77.1.64/26"), RdnsMode::Rfc2317),
            Some(net("10.77.1.0/24"))
        );
        assert_eq!(glue_network(net("10.77.1.64/26"), RdnsMode::Enabled), None);
        assert_eq!(glue_network(net("10.77.1.0/24"), RdnsMode::Rfc2317), None);
        assert_eq!(
            classless_name("10.77.1.70".parse().expect("ip"), net("10.77.1.64/26")),
            "70.64-26.1.77.10.in-addr.arpa"
        );
    }

    #[test]
    fn ipv6_zones_on_nibble_boundaries() {
        assert_eq!(
            names("fd77:0:0:1::/64", RdnsMode::Enabled),
            ["1.0.0.0.0.0.0.0.0.0.0.0.7.7.d.f.ip6.arpa"]
        );
        let odd = names("fd77::/62", RdnsMode::Enabled);
        assert_eq!(odd.len(), 4);
        assert_eq!(odd[3], "3.0.0.0.0.0.0.0.0.0.0.0.7.7.d.f.ip6.arpa");
        assert_eq!(
            names("fd77::10/126", RdnsMode::Rfc2317),
            ["0-126.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.7.d.f.ip6.arpa"]
        );
    }

    #[test]
    fn generated_names_follow_maas() {
        let ip: IpAddr = "10.77.0.5".parse().expect("ip");
        assert_eq!(generated_name(ip), "10-77-0-5");
        assert_eq!(parse_generated_name("10-77-0-5"), Some(ip));
        let v6: IpAddr = "fd77::5".parse().expect("ip");
        assert_eq!(generated_name(v6), "fd77--5");
        assert_eq!(parse_generated_name("FD77--5"), Some(v6));
        for bad in [
            "node-1",
            "10-77-0",
            "10-77-0-05",
            "10-77-0-256",
            "",
            "-",
            "a.b",
        ] {
            assert_eq!(parse_generated_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn reverse_names_parse_back() {
        assert_eq!(
            parse_reverse_name("5.0.77.10.IN-ADDR.ARPA."),
            Some("10.77.0.5".parse().expect("ip"))
        );
        for bad in [
            "0.77.10.in-addr.arpa",
            "05.0.77.10.in-addr.arpa",
            "x.0.77.10.in-addr.arpa",
            "1.ip6.arpa",
            "example.com",
        ] {
            assert_eq!(parse_reverse_name(bad), None, "{bad}");
        }
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from_bits(v))),
            any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from_bits(v))),
        ]
    }

    fn any_subnet() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 8u8..=32).prop_map(|(v, p)| IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from_bits(v), p)
                    .expect("prefix")
                    .trunc()
            )),
            (any::<u128>(), 60u8..=128).prop_map(|(v, p)| IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from_bits(v), p)
                    .expect("prefix")
                    .trunc()
            )),
        ]
    }

    proptest! {
        #[test]
        fn reverse_and_generated_names_round_trip(ip in any_ip()) {
            prop_assert_eq!(parse_reverse_name(&reverse_name(ip)), Some(ip));
            prop_assert_eq!(parse_generated_name(&generated_name(ip)), Some(ip));
        }

        /// Every address of a subnet has its reverse name in exactly one of the subnet's
        /// zones (its ordinary name, or its classless one for a narrow subnet), and the
        /// zones lie inside the subnet or hold it whole.
        #[test]
        fn every_address_has_one_zone(cidr in any_subnet(), pick in any::<u128>()) {
            let zones = reverse_zones(cidr, RdnsMode::Enabled);
            prop_assert!(!zones.is_empty());
            let narrow = match cidr {
                IpNet::V4(n) => n.prefix_len() > 24,
                IpNet::V6(n) => n.prefix_len() > 124,
            };
            prop_assert_eq!(zones.iter().any(ReverseZone::is_classless), narrow);
            let (first, last) = crate::ip::bounds(cidr);
            let span = last - first;
            let offset = if span == u128::MAX { pick } else { pick % (span + 1) };
            let ip = crate::ip::from_bits(crate::ip::Family::of_net(cidr), first + offset);
            let holding: Vec<&ReverseZone> =
                zones.iter().filter(|z| z.network.contains(&ip)).collect();
            if zones.len() < MAX_ZONES_PER_SUBNET {
                prop_assert_eq!(holding.len(), 1);
            }
            for zone in &holding {
                let name = if zone.is_classless() {
                    classless_name(ip, cidr)
                } else {
                    reverse_name(ip)
                };
                prop_assert!(name.ends_with(&format!(".{}", zone.name)), "{} in {}", name, zone.name);
            }
            for zone in &zones {
                prop_assert!(cidr.contains(&zone.network) || zone.network.contains(&cidr));
            }
        }
    }
}
