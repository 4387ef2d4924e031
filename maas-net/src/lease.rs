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
/// more than the rest of that work. Longer identifiers are kept on the heap. It compares
/// and hashes as the byte sequence itself. Binary formats (postcard) carry that sequence;
/// human-readable ones (JSON, TOML) carry it in lower-case hex, `"000100012b3c..."`, as
/// DUIDs are usually written, and read either form.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

impl Serialize for ClientId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return self.0.serialize(serializer);
        }
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut inline = [0u8; 2 * Self::INLINE];
        let mut heap = Vec::new();
        let out = if self.0.len() <= Self::INLINE {
            &mut inline[..2 * self.0.len()]
        } else {
            heap.resize(2 * self.0.len(), 0);
            heap.as_mut_slice()
        };
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0.iter()) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        // Only ASCII hex digits were written.
        let text = std::str::from_utf8(out).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, SeqAccess, Visitor};

        struct HexOrBytes;

        impl<'de> Visitor<'de> for HexOrBytes {
            type Value = ClientId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a client identifier in hex, such as \"0001ab\", or its bytes")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ClientId, E> {
                let digits = v.as_bytes();
                if !digits.len().is_multiple_of(2) {
                    return Err(E::custom(format_args!(
                        "a client identifier in hex has an even number of digits, not {}",
                        digits.len()
                    )));
                }
                let mut bytes = smallvec::SmallVec::with_capacity(digits.len() / 2);
                for pair in digits.chunks_exact(2) {
                    let byte = crate::mac::hex_value(pair).ok_or_else(|| {
                        E::custom(format_args!(
                            "a client identifier in hex has only hex digits, not {:?}",
                            String::from_utf8_lossy(pair)
                        ))
                    })?;
                    // Two hex digits: at most 0xff.
                    bytes.push(byte as u8);
                }
                Ok(ClientId(bytes))
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ClientId, E> {
                Ok(ClientId::new(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ClientId, A::Error> {
                let mut bytes = smallvec::SmallVec::new();
                while let Some(byte) = seq.next_element::<u8>()? {
                    bytes.push(byte);
                }
                Ok(ClientId(bytes))
            }
        }

        if deserializer.is_human_readable() {
            // The hex string, or the array of numbers earlier versions wrote.
            deserializer.deserialize_any(HexOrBytes)
        } else {
            smallvec::SmallVec::deserialize(deserializer).map(ClientId)
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
        /// in a `Vec`: the same equality, order and hash, and the same postcard form, so keys
        /// stored before it existed read back unchanged. JSON carries it in hex and reads the
        /// array of numbers that earlier versions wrote.
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
            #[derive(Serialize)]
            #[serde(rename_all = "snake_case")]
            enum Before {
                #[allow(dead_code)]
                Mac(Mac),
                ClientId(Vec<u8>),
            }
            let key = ClientKey::ClientId(x.clone());
            let binary = postcard::to_stdvec(&key).unwrap();
            prop_assert_eq!(&binary, &postcard::to_stdvec(&Before::ClientId(a.clone())).unwrap());
            prop_assert_eq!(postcard::from_bytes::<ClientKey>(&binary).unwrap(), key.clone());
            let json = serde_json::to_string(&key).unwrap();
            let hex: String = a.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(&json, &format!("{{\"client_id\":\"{hex}\"}}"));
            prop_assert_eq!(serde_json::from_str::<ClientKey>(&json).unwrap(), key.clone());
            let upper = json.to_uppercase().replace("CLIENT_ID", "client_id");
            prop_assert_eq!(serde_json::from_str::<ClientKey>(&upper).unwrap(), key.clone());
            let earlier = serde_json::to_string(&Before::ClientId(a.clone())).unwrap();
            prop_assert_eq!(serde_json::from_str::<ClientKey>(&earlier).unwrap(), key);
        }
    }

    #[test]
    fn malformed_hex_client_ids_are_refused() {
        for (json, why) in [
            (r#"{"client_id":"abc"}"#, "even number of digits"),
            (r#"{"client_id":"0g"}"#, "only hex digits"),
            (r#"{"client_id":[1,256]}"#, "256"),
        ] {
            let err = serde_json::from_str::<ClientKey>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{json}: {err}");
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
