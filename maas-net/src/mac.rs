//! Ethernet MAC addresses (EUI-48).

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use ipnet::Ipv6Net;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An Ethernet MAC address (EUI-48).
///
/// Parsing accepts every spelling that switches, BMCs and operating systems print, in any case:
/// `aa:bb:cc:dd:ee:ff` (octets of one or two digits), `aa-bb-cc-dd-ee-ff`, Cisco's
/// `aabb.ccdd.eeff` and bare `aabbccddeeff`. Display is always the canonical lower-case colon
/// form, so a parsed address prints the same way whatever it was written as.
///
/// ```
/// use maas_net::Mac;
///
/// let mac: Mac = "52-54-00-AB-CD-EF".parse()?;
/// assert_eq!(mac.to_string(), "52:54:00:ab:cd:ef");
/// assert_eq!(mac, "5254.00ab.cdef".parse()?);
/// assert!(mac.is_unicast() && mac.is_local());
/// assert_eq!(mac.ipv6_link_local().to_string(), "fe80::5054:ff:feab:cdef");
/// # Ok::<(), maas_net::ParseMacError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac([u8; 6]);

/// The error returned when a string is not a MAC address in any accepted spelling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid MAC address {input:?}: expected six octets written as aa:bb:cc:dd:ee:ff, \
     aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff"
)]
pub struct ParseMacError {
    /// The rejected input, cut to its first 64 characters.
    pub input: String,
}

impl Mac {
    /// The all-zero address, `00:00:00:00:00:00`.
    pub const ZERO: Self = Self([0; 6]);
    /// The broadcast address, `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Self = Self([0xff; 6]);

    /// A MAC address from its six octets, in transmission order.
    pub const fn new(octets: [u8; 6]) -> Self {
        Self(octets)
    }

    /// The six octets, in transmission order.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Parse any accepted spelling (see the type's documentation).
    pub fn parse(s: &str) -> Result<Self, ParseMacError> {
        parse_mac(s.as_bytes()).ok_or_else(|| ParseMacError {
            input: s.chars().take(64).collect(),
        })
    }

    /// True when the I/G bit is clear: the address names one interface.
    pub const fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0
    }

    /// True when the I/G bit is set: the address names a group (broadcast included).
    pub const fn is_multicast(&self) -> bool {
        !self.is_unicast()
    }

    /// True for `ff:ff:ff:ff:ff:ff`.
    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// True when the U/L bit is set: the address was assigned locally (virtual machines,
    /// containers, randomised addresses) rather than by the manufacturer.
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// True when the U/L bit is clear: a manufacturer-assigned address.
    pub const fn is_universal(&self) -> bool {
        !self.is_local()
    }

    /// The organisationally unique identifier: the first three octets, which name the vendor
    /// of a universally administered address.
    pub const fn oui(&self) -> [u8; 3] {
        [self.0[0], self.0[1], self.0[2]]
    }

    /// The modified EUI-64 interface identifier of RFC 4291 appendix A: `ff:fe` inserted in the
    /// middle and the U/L bit inverted. It is the low 64 bits of a SLAAC or link-local address.
    pub const fn eui64_interface_id(&self) -> [u8; 8] {
        let m = self.0;
        [m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]
    }

    /// The MAC address an EUI-64 interface identifier was made from, if it was made from one
    /// (its middle octets are `ff:fe`).
    pub const fn from_eui64_interface_id(id: [u8; 8]) -> Option<Self> {
        if id[3] == 0xff && id[4] == 0xfe {
            Some(Self([id[0] ^ 0x02, id[1], id[2], id[5], id[6], id[7]]))
        } else {
            None
        }
    }

    /// The IPv6 link-local address `fe80::/64` plus this address's EUI-64 interface identifier.
    pub fn ipv6_link_local(&self) -> Ipv6Addr {
        let mut bytes = [0u8; 16];
        bytes[0] = 0xfe;
        bytes[1] = 0x80;
        bytes[8..].copy_from_slice(&self.eui64_interface_id());
        Ipv6Addr::from(bytes)
    }

    /// The stateless autoconfiguration (SLAAC) address this interface takes in `prefix`, which
    /// must be a /64; `None` for any other prefix length.
    pub fn slaac_address(&self, prefix: Ipv6Net) -> Option<Ipv6Addr> {
        if prefix.prefix_len() != 64 {
            return None;
        }
        let mut bytes = prefix.network().octets();
        bytes[8..].copy_from_slice(&self.eui64_interface_id());
        Some(Ipv6Addr::from(bytes))
    }
}

/// Parses the accepted spellings without allocating; `None` for anything else.
fn parse_mac(s: &[u8]) -> Option<Mac> {
    let mut out = [0u8; 6];
    let colon = s.contains(&b':');
    let dash = s.contains(&b'-');
    let dot = s.contains(&b'.');
    match (colon, dash, dot) {
        (true, false, false) | (false, true, false) => {
            let sep = if colon { b':' } else { b'-' };
            let mut n = 0;
            for group in s.split(|&b| b == sep) {
                if n == 6 || group.is_empty() || group.len() > 2 {
                    return None;
                }
                out[n] = hex_value(group)? as u8;
                n += 1;
            }
            (n == 6).then_some(Mac(out))
        }
        (false, false, true) => {
            let mut n = 0;
            for group in s.split(|&b| b == b'.') {
                if n == 3 || group.len() != 4 {
                    return None;
                }
                let v = hex_value(group)?;
                out[2 * n] = (v >> 8) as u8;
                out[2 * n + 1] = v as u8;
                n += 1;
            }
            (n == 3).then_some(Mac(out))
        }
        (false, false, false) if s.len() == 12 => {
            for (i, pair) in s.chunks(2).enumerate() {
                out[i] = hex_value(pair)? as u8;
            }
            Some(Mac(out))
        }
        _ => None,
    }
}

/// The value of up to four hex digits; `None` on any other byte.
pub(crate) fn hex_value(digits: &[u8]) -> Option<u16> {
    digits.iter().try_fold(0u16, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        Some(acc << 4 | d as u16)
    })
}

impl FromStr for Mac {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written out by hand: `write!` with six `{:02x}` costs several times more, and
        // every lease event and log line shows a MAC.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b':'; 17];
        for (i, octet) in self.0.iter().enumerate() {
            text[3 * i] = HEX[usize::from(octet >> 4)];
            text[3 * i + 1] = HEX[usize::from(octet & 0xf)];
        }
        // Only ASCII hex digits and colons were written.
        let text = std::str::from_utf8(&text).map_err(|_| fmt::Error)?;
        f.pad(text)
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl From<[u8; 6]> for Mac {
    fn from(octets: [u8; 6]) -> Self {
        Self(octets)
    }
}

impl From<Mac> for [u8; 6] {
    fn from(mac: Mac) -> Self {
        mac.0
    }
}

impl TryFrom<&[u8]> for Mac {
    type Error = ParseMacError;

    /// Exactly six bytes; the error carries the bytes in hex.
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 6]>::try_from(bytes)
            .map(Self)
            .map_err(|_| ParseMacError {
                input: bytes.iter().take(32).map(|b| format!("{b:02x}")).collect(),
            })
    }
}

/// Human-readable formats (TOML, JSON) carry the canonical string; binary formats carry the
/// six octets.
impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MacVisitor;

        impl<'de> Visitor<'de> for MacVisitor {
            type Value = Mac;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a MAC address such as \"52:54:00:12:34:56\" or six octets")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Mac, E> {
                Mac::parse(v).map_err(E::custom)
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Mac, E> {
                Mac::try_from(v).map_err(E::custom)
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Mac, A::Error> {
                let mut out = [0u8; 6];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<u8>()?.is_some() {
                    return Err(de::Error::invalid_length(7, &self));
                }
                Ok(Mac(out))
            }
        }

        if deserializer.is_human_readable() {
            deserializer.deserialize_str(MacVisitor)
        } else {
            deserializer.deserialize_bytes(MacVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_spelling() {
        let want = Mac::new([0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0xff]);
        for s in [
            "aa:bb:cc:0d:ee:ff",
            "AA:BB:CC:0D:EE:FF",
            "aa:bb:cc:d:ee:ff",
            "aa-bb-cc-0d-ee-ff",
            "Aa-bB-cC-0d-Ee-fF",
            "aabb.cc0d.eeff",
            "AABB.CC0D.EEFF",
            "aabbcc0deeff",
            "AABBCC0DEEFF",
        ] {
            assert_eq!(Mac::parse(s), Ok(want), "{s}");
        }
        assert_eq!(want.to_string(), "aa:bb:cc:0d:ee:ff");
    }

    #[test]
    fn refuses_malformed_spellings() {
        for s in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:",
            "aa:bb-cc:dd:ee:ff",
            "aaa:bb:cc:dd:ee:ff",
            "aa:bb:cc:dd:ee:fg",
            "aabb.ccdd",
            "aabb.ccdd.eeff.0011",
            "aab.bccdd.eeff",
            "aabbccddeef",
            "aabbccddeeff0",
            "+a:bb:cc:dd:ee:ff",
            " aa:bb:cc:dd:ee:ff",
            "ａａ:bb:cc:dd:ee:ff",
            "aa::cc:dd:ee:ff",
        ] {
            let err = Mac::parse(s).expect_err(s);
            assert!(err.to_string().contains("invalid MAC address"), "{err}");
            assert_eq!(err.input, s);
        }
    }

    #[test]
    fn error_names_the_input() {
        let err = Mac::parse("zz:zz").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid MAC address \"zz:zz\": expected six octets written as aa:bb:cc:dd:ee:ff, \
             aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff"
        );
    }

    #[test]
    fn bits_and_oui() {
        let universal = Mac::new([0x00, 0x1b, 0x21, 0x01, 0x02, 0x03]);
        assert!(universal.is_unicast() && universal.is_universal());
        assert!(!universal.is_multicast() && !universal.is_local());
        assert_eq!(universal.oui(), [0x00, 0x1b, 0x21]);

        let local = Mac::new([0x52, 0x54, 0x00, 0x01, 0x02, 0x03]);
        assert!(local.is_local() && local.is_unicast());

        let multicast = Mac::new([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
        assert!(multicast.is_multicast() && !multicast.is_broadcast());
        assert!(Mac::BROADCAST.is_broadcast() && Mac::BROADCAST.is_multicast());
        assert!(Mac::ZERO.is_unicast());
    }

    #[test]
    fn eui64_follows_rfc4291() {
        // RFC 4291 appendix A worked example shape: 00:1b:21 -> 021b:21ff:fe..
        let mac: Mac = "00:1b:21:0a:0b:0c".parse().unwrap();
        assert_eq!(
            mac.eui64_interface_id(),
            [0x02, 0x1b, 0x21, 0xff, 0xfe, 0x0a, 0x0b, 0x0c]
        );
        assert_eq!(
            mac.ipv6_link_local(),
            "fe80::21b:21ff:fe0a:b0c".parse::<Ipv6Addr>().unwrap()
        );
        let prefix: Ipv6Net = "fd77:1:2:3::/64".parse().unwrap();
        assert_eq!(
            mac.slaac_address(prefix),
            Some("fd77:1:2:3:21b:21ff:fe0a:b0c".parse().unwrap())
        );
        assert_eq!(mac.slaac_address("fd77::/48".parse().unwrap()), None);
        assert_eq!(
            Mac::from_eui64_interface_id(mac.eui64_interface_id()),
            Some(mac)
        );
        assert_eq!(Mac::from_eui64_interface_id([0, 0, 0, 0, 0, 0, 0, 1]), None);
    }

    #[test]
    fn serde_human_and_binary() {
        let mac: Mac = "52:54:00:77:00:10".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&mac).unwrap(),
            "\"52:54:00:77:00:10\""
        );
        assert_eq!(
            serde_json::from_str::<Mac>("\"5254.0077.0010\"").unwrap(),
            mac
        );
        let err = serde_json::from_str::<Mac>("\"nope\"").unwrap_err();
        assert!(
            err.to_string().contains("invalid MAC address \"nope\""),
            "{err}"
        );
        assert_eq!(
            Mac::try_from(&[1u8, 2, 3, 4, 5, 6][..])
                .unwrap()
                .to_string(),
            "01:02:03:04:05:06"
        );
        assert!(Mac::try_from(&[1u8, 2, 3][..]).is_err());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(octets: [u8; 6]) {
            let mac = Mac::new(octets);
            prop_assert_eq!(mac.to_string().parse::<Mac>(), Ok(mac));
        }

        #[test]
        fn every_spelling_round_trips(octets: [u8; 6], upper: bool) {
            let mac = Mac::new(octets);
            let o = octets;
            let mut spellings = vec![
                o.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join("-"),
                o.iter().map(|b| format!("{b:x}")).collect::<Vec<_>>().join(":"),
                format!("{:02x}{:02x}.{:02x}{:02x}.{:02x}{:02x}", o[0], o[1], o[2], o[3], o[4], o[5]),
                o.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            ];
            if upper {
                spellings.iter_mut().for_each(|s| *s = s.to_uppercase());
            }
            for s in spellings {
                prop_assert_eq!(Mac::parse(&s), Ok(mac), "{}", s);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,24}|[0-9a-fA-F:.\\-]{0,20}") {
            if let Ok(mac) = Mac::parse(&s) {
                prop_assert_eq!(mac.to_string().parse::<Mac>(), Ok(mac));
            }
        }
    }
}
