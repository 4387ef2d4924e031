//! What the address manager remembers: address records, DHCP leases and client identities.

use std::fmt;
use std::net::IpAddr;

use maas_net::{Mac, SubnetId};
use serde::{Deserialize, Serialize};

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

/// How an address came to be recorded, as MAAS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum AddressKind {
    /// Chosen by the allocator for a machine's interface.
    Auto,
    /// Asked for by address and kept until released.
    Sticky,
    /// Reserved by a user for something outside the controller's management.
    UserReserved,
    /// Leased by the DHCP server from a dynamic range.
    Dhcp,
    /// Seen on the wire (ARP, NDP, a foreign DHCP lease); never blocks an assignment, avoided
    /// while free addresses exist.
    Discovered,
}

impl AddressKind {
    /// MAAS's name: `AUTO`, `STICKY`, `USER_RESERVED`, `DHCP`, `DISCOVERED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "AUTO",
            Self::Sticky => "STICKY",
            Self::UserReserved => "USER_RESERVED",
            Self::Dhcp => "DHCP",
            Self::Discovered => "DISCOVERED",
        }
    }
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// Where a DHCP lease is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeaseState {
    /// Offered, not yet requested; held briefly so two clients are not offered one address.
    Offered,
    /// Acknowledged: the client owns the address until the lease expires.
    Bound,
    /// The client reported the address in use by someone else; kept out of use until the
    /// quarantine ends.
    Declined,
}

/// The DHCP part of a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The client holding the lease (for a declined address, the client that declined it).
    pub client: ClientKey,
    /// Offered, bound or declined.
    pub state: LeaseState,
    /// When the offer, lease or quarantine ends.
    pub expires: Timestamp,
}

/// One recorded address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The address.
    pub ip: IpAddr,
    /// The subnet it belongs to.
    pub subnet: SubnetId,
    /// How it was recorded.
    pub kind: AddressKind,
    /// The interface it belongs to, when known.
    pub mac: Option<Mac>,
    /// Free text naming the holder (a machine, a user, a hostname a client sent).
    pub owner: Option<String>,
    /// For `DHCP` records, the lease.
    pub lease: Option<Lease>,
    /// When the record was made.
    pub created: Timestamp,
    /// When it last changed; for `DISCOVERED` records, when the address was last seen.
    pub updated: Timestamp,
}
