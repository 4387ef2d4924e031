//! The server's DUID (RFC 8415 section 11): its forms, and where a server gets one.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;

use maas_net::Mac;
use serde::{Deserialize, Serialize};

/// The server's DHCP unique identifier (RFC 8415 section 11), sent in every answer as the
/// server identifier (option 2).
///
/// Clients address Request, Renew, Release and Decline to the DUID of the server whose
/// Advertise they chose, so it must not change while their leases last: configure one (a
/// DUID-LL from one of the server's Ethernet addresses is the usual choice), or keep the one
/// [`Server6::duid`](super::Server6::duid) reports and configure it from then on.
///
/// ```
/// use maas_pxe::dhcp::server::Duid;
///
/// let duid = Duid::LinkLayer { mac: "52:54:00:77:00:01".parse()? };
/// assert_eq!(duid.to_bytes(), [0, 3, 0, 1, 0x52, 0x54, 0, 0x77, 0, 1]);
/// let parsed: Duid = toml::from_str("type = \"link_layer\"\nmac = \"52:54:00:77:00:01\"")?;
/// assert_eq!(parsed, duid);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Duid {
    /// DUID-LLT (type 1): an Ethernet address and the time it was chosen.
    LinkLayerTime {
        /// The Ethernet address.
        mac: Mac,
        /// Seconds since midnight UTC, 1 January 2000, modulo 2^32.
        time: u32,
    },
    /// DUID-LL (type 3): an Ethernet address.
    LinkLayer {
        /// The Ethernet address.
        mac: Mac,
    },
    /// DUID-UUID (type 4, RFC 6355).
    Uuid {
        /// The UUID's 16 bytes.
        uuid: [u8; 16],
    },
}

impl Duid {
    /// The DUID as sent in option 2.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Hardware type 1 is Ethernet (RFC 826).
        match self {
            Self::LinkLayerTime { mac, time } => {
                let mut out = vec![0, 1, 0, 1];
                out.extend(time.to_be_bytes());
                out.extend(mac.octets());
                out
            }
            Self::LinkLayer { mac } => {
                let mut out = vec![0, 3, 0, 1];
                out.extend(mac.octets());
                out
            }
            Self::Uuid { uuid } => {
                let mut out = vec![0, 4];
                out.extend(uuid);
                out
            }
        }
    }

    /// The DUID-LL of the network interface `name`: its Ethernet address, read from
    /// `/sys/class/net/<name>/address` (Linux). A server that keeps this DUID across restarts
    /// lets its clients keep renewing with it.
    ///
    /// The error names the interface: [`io::ErrorKind::NotFound`] when there is no such
    /// interface, [`io::ErrorKind::InvalidInput`] for a name that is not one,
    /// [`io::ErrorKind::InvalidData`] when its address is not an Ethernet address.
    pub fn from_interface(name: &str) -> io::Result<Self> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not an interface name"),
            ));
        }
        let path = format!("/sys/class/net/{name}/address");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("interface {name}: {e}")))?;
        let mac = text.trim().parse::<Mac>().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("interface {name}: address {:?}: {e}", text.trim()),
            )
        })?;
        Ok(Self::LinkLayer { mac })
    }

    /// A DUID-UUID with a random (version 4) UUID: what a server without a configured DUID
    /// uses. Randomness comes from the standard library's per-process hash keys.
    pub fn random() -> Self {
        let mut uuid = [0u8; 16];
        for (i, half) in uuid.chunks_exact_mut(8).enumerate() {
            // Each `RandomState` has keys of its own; hashing the chunk index keeps the two
            // halves apart even if the keys were ever shared.
            half.copy_from_slice(&RandomState::new().hash_one(i).to_be_bytes());
        }
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        Self::Uuid { uuid }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duid_of_an_interface() {
        // Loopback's address is all zeros, an Ethernet address all the same.
        if std::path::Path::new("/sys/class/net/lo/address").exists() {
            assert_eq!(
                Duid::from_interface("lo").ok(),
                Some(Duid::LinkLayer {
                    mac: Mac::new([0; 6])
                })
            );
        }
        let missing = Duid::from_interface("maas-nonexistent0").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(
            missing.to_string().contains("maas-nonexistent0"),
            "{missing}"
        );
        for bad in ["", "..", "lo/../lo"] {
            let e = Duid::from_interface(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {e}");
        }
    }
}
