//! How the store lays out what it writes: addresses as 4 or 16 octets, the format version,
//! and the journal's random id.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A journal id: random enough that two databases do not share one (the standard library's
/// randomly keyed hasher, seeded by the system; no secret rests on it).
pub(super) fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// An address's octets, 4 or 16 of them, without allocating.
pub(super) struct Octets {
    bytes: [u8; 16],
    len: usize,
}

impl Octets {
    pub(super) fn of(ip: IpAddr) -> Self {
        let mut bytes = [0; 16];
        match ip {
            IpAddr::V4(v4) => {
                bytes[..4].copy_from_slice(&v4.octets());
                Self { bytes, len: 4 }
            }
            IpAddr::V6(v6) => Self {
                bytes: v6.octets(),
                len: 16,
            },
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The address whose octets these are: 4 for IPv4, 16 for IPv6.
pub(super) fn octets_to_ip(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(octets) {
        Some(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        None
    }
}

/// The format version stored in `meta`, if it is 4 bytes.
pub(super) fn decode_version(bytes: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(bytes).ok().map(u32::from_le_bytes)
}
