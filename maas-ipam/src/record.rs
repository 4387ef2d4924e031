//! What the address manager remembers: address records, DHCP leases and client identities.

use std::fmt;
use std::net::IpAddr;

pub use maas_net::{ClientKey, Timestamp};
use maas_net::{Mac, SubnetId};
use serde::{Deserialize, Serialize};

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
