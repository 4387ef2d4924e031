//! What DHCP servers and address managers share about a lease: who holds it and when.
//!
//! [`ClientKey`] names a DHCP client the way both the server and the address manager key its
//! lease; [`Timestamp`] is the wall-clock second that lease times are counted in. Neither
//! crate reads a clock: callers pass the time in.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Mac;

/// Wall-clock time in whole seconds since the Unix epoch.
///
/// The engine never reads a clock: every call that depends on time takes `now`, so tests (and a
/// controller replaying a log) decide what time it is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The time `secs` seconds later (saturating).
    pub const fn plus(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// The current wall-clock time, for adapters that own a clock.
    pub fn now() -> Self {
        Self(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who a DHCP lease is for: the client identifier (option 61 / DHCPv6 DUID) when the client
/// sends one, else its hardware address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKey {
    /// The client's hardware address.
    Mac(Mac),
    /// An opaque client identifier or DUID.
    ClientId(ClientId),
}

/// The bytes of a client identifier (DHCPv4 option 61) or DUID (DHCPv6 option 1).
///
/// Kept inline up to [`INLINE`](Self::INLINE) bytes, which covers every DUID type's usual
/// length (DUID-LLT of an Ethernet address is 14 bytes, DUID-UUID 18): a key is copied
/// into each record, binding and change of a lease, and a copy that allocates would cost
/// more than the rest of that work. Longer identifiers are kept on the heap. It compares,
/// hashes and serializes as the byte sequence itself.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(smallvec::SmallVec<[u8; Self::INLINE]>);

impl ClientId {
    /// How many bytes are kept without an allocation.
    pub const INLINE: usize = 24;

    /// The identifier `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        Self(smallvec::SmallVec::from_slice(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for ClientId {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for ClientId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_slice().fmt(f)
    }
}

impl From<&[u8]> for ClientId {
    fn from(bytes: &[u8]) -> Self {
        Self::new(bytes)
    }
}

impl<const N: usize> From<[u8; N]> for ClientId {
    fn from(bytes: [u8; N]) -> Self {
        Self::new(&bytes)
    }
}

impl From<Vec<u8>> for ClientId {
    fn from(bytes: Vec<u8>) -> Self {
        if bytes.len() <= Self::INLINE {
            Self::new(&bytes)
        } else {
            Self(smallvec::SmallVec::from_vec(bytes))
        }
    }
}

impl ClientKey {
    /// The client identifier or DUID `bytes` as a key.
    pub fn client_id(bytes: impl Into<ClientId>) -> Self {
        Self::ClientId(bytes.into())
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mac(mac) => mac.fmt(f),
            Self::ClientId(id) => {
                f.write_str("id:")?;
                id.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A client identifier, short (inline) or long (on the heap), behaves as its bytes do
        /// in a `Vec`: the same equality, order and hash, and the same serialized form, so
        /// keys stored before it existed read back unchanged.
        #[test]
        fn a_client_id_is_its_bytes(
            a in prop::collection::vec(any::<u8>(), 0..64),
            b in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            use std::hash::BuildHasher;
            let (x, y) = (ClientId::from(a.clone()), ClientId::new(&b));
            prop_assert_eq!(&*x, a.as_slice());
            prop_assert_eq!(x == y, a == b);
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            let hasher = std::collections::hash_map::RandomState::new();
            prop_assert_eq!(hasher.hash_one(&x), hasher.hash_one(&a));
            let json = serde_json::to_string(&ClientKey::ClientId(x.clone())).unwrap();
            #[derive(Serialize)]
            #[serde(rename_all = "snake_case")]
            enum Before {
                #[allow(dead_code)]
                Mac(Mac),
                ClientId(Vec<u8>),
            }
            prop_assert_eq!(&json, &serde_json::to_string(&Before::ClientId(a.clone())).unwrap());
            let back: ClientKey = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, ClientKey::ClientId(x));
        }
    }

    #[test]
    fn client_ids_show_as_hex_and_debug_as_bytes() {
        let key = ClientKey::client_id([0, 1, 0xab]);
        assert_eq!(key.to_string(), "id:0001ab");
        assert_eq!(format!("{key:?}"), "ClientId([0, 1, 171])");
        let long = ClientKey::client_id(vec![7; 100]);
        assert_eq!(long.to_string().len(), 3 + 200);
    }
}
