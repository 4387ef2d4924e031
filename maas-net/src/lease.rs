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
    ClientId(Vec<u8>),
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
