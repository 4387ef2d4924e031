//! Load balancing between servers that share a link (the idea of RFC 3074): each client
//! falls in one of 256 buckets by a hash of its identity, each server answers the DISCOVERs
//! of its own buckets only, and a client that has been trying for a while (its `secs` field)
//! is answered by every server, so a server that is down delays its share of the clients
//! instead of leaving them without an address.
//!
//! Servers that split a link never offer the same free address to two clients at once, which
//! two servers drawing from one pool otherwise do all the time (both pick the lowest free
//! address). The bucket hash is FNV-1a folded to 8 bits, not RFC 3074's Pearson table: the
//! servers that share a link must use the same implementation.

use std::collections::HashMap;

use maas_net::{ClientKey, VlanId};

/// This server's part of the clients of one link: share `index` of `of` equal parts of the 256
/// buckets (`index < of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Share {
    /// Which part (0-based).
    pub index: u32,
    /// Into how many parts the link's clients are split (the servers on it).
    pub of: u32,
}

impl Share {
    /// The whole link: one server.
    pub const ALL: Self = Self { index: 0, of: 1 };

    /// Share `index` of `of` (`of` at least 1, `index` below it), or `None`.
    pub fn new(index: u32, of: u32) -> Option<Self> {
        (of >= 1 && index < of).then_some(Self { index, of })
    }

    /// Whether a client in `bucket` is this share's.
    pub fn holds(self, bucket: u8) -> bool {
        if self.of <= 1 {
            return true;
        }
        // Buckets split in contiguous runs: bucket b goes to part b * of / 256.
        u32::from(bucket) * self.of / 256 == self.index
    }
}

/// Which DISCOVERs this server answers, link by link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadBalance {
    /// This server's share on each VLAN split between several servers; a VLAN absent here is
    /// served whole.
    pub shares: HashMap<VlanId, Share>,
    /// A client whose `secs` field (seconds since it began trying) reaches this is answered
    /// whatever its bucket. RFC 3074 and ISC dhcpd's `load balance max seconds` use 3.
    pub max_secs: u16,
}

impl LoadBalance {
    /// No split: every DISCOVER is answered.
    pub fn none() -> Self {
        Self {
            shares: HashMap::new(),
            max_secs: DEFAULT_MAX_SECS,
        }
    }

    /// Whether to answer a DISCOVER from `client` on `vlan` that has been trying for `secs`.
    pub fn answers(&self, vlan: VlanId, client: &ClientKey, secs: u16) -> bool {
        match self.shares.get(&vlan) {
            None => true,
            Some(share) => secs >= self.max_secs || share.holds(bucket(client)),
        }
    }
}

/// RFC 3074's and ISC dhcpd's default for [`LoadBalance::max_secs`].
pub const DEFAULT_MAX_SECS: u16 = 3;

/// The client's bucket: FNV-1a over its identity (client identifier, or hardware address),
/// folded to 8 bits.
pub fn bucket(client: &ClientKey) -> u8 {
    let octets;
    let bytes: &[u8] = match client {
        ClientKey::Mac(mac) => {
            octets = mac.octets();
            &octets
        }
        ClientKey::ClientId(id) => id,
    };
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let [a, b, c, d] = h.to_be_bytes();
    a ^ b ^ c ^ d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vlan() -> VlanId {
        let topology = maas_net::Topology::new();
        let fabric = topology.fabrics().next().unwrap().0;
        topology.default_vlan(fabric).unwrap()
    }

    proptest! {
        /// Of the servers splitting a link, exactly one answers a client that has just begun.
        #[test]
        fn exactly_one_of_the_servers_answers(id in proptest::collection::vec(any::<u8>(), 1..20), of in 1u32..8) {
            let vlan = vlan();
            let client = ClientKey::client_id(id);
            let answering = (0..of)
                .filter(|&index| {
                    let mut lb = LoadBalance::none();
                    lb.shares.insert(vlan, Share::new(index, of).unwrap());
                    lb.answers(vlan, &client, 0)
                })
                .count();
            prop_assert_eq!(answering, 1);
        }

        /// A client trying for `max_secs` or more is answered by every server.
        #[test]
        fn a_client_that_waited_is_answered_by_all(mac in any::<[u8; 6]>(), of in 1u32..8, secs in 3u16..) {
            let vlan = vlan();
            let client = ClientKey::Mac(maas_net::Mac::new(mac));
            for index in 0..of {
                let mut lb = LoadBalance::none();
                lb.shares.insert(vlan, Share::new(index, of).unwrap());
                prop_assert!(lb.answers(vlan, &client, secs));
            }
        }
    }

    #[test]
    fn two_servers_split_clients_about_evenly() {
        let first = (0u32..10_000)
            .filter(|i| {
                let mut mac = [0x52, 0x54, 0, 0, 0, 0];
                mac[2..].copy_from_slice(&i.to_be_bytes());
                Share { index: 0, of: 2 }.holds(bucket(&ClientKey::Mac(maas_net::Mac::new(mac))))
            })
            .count();
        assert!((4_000..6_000).contains(&first), "{first} of 10,000");
    }

    #[test]
    fn shares_are_checked() {
        assert_eq!(Share::new(2, 2), None);
        assert_eq!(Share::new(0, 0), None);
        assert!(Share::ALL.holds(200));
    }

    #[test]
    fn an_unsplit_vlan_is_served_whole() {
        let lb = LoadBalance::none();
        assert!(lb.answers(vlan(), &ClientKey::client_id(vec![1, 2, 3]), 0));
    }
}
