//! IP address management with MAAS semantics, durable and fast.
//!
//! The engine, [`Ipam`], decides which address a machine, a DHCP client or a user gets, and
//! remembers it: AUTO assignment from the free space of a subnet (the first address of the
//! smallest free block, as MAAS does), STICKY and USER_RESERVED addresses asked for by address,
//! DHCP leases from dynamic ranges with stickiness and quarantine, DISCOVERED addresses that are
//! avoided but never block, and MAAS's subnet statistics. Subnets, ranges, gateways and routes
//! come from [`maas_net::Topology`].
//!
//! The engine does no I/O and reads no clock: time is passed in as a [`Timestamp`], and every
//! change is also queued as a [`Change`] for a [`Store`]. Free space lives in block indexes
//! (ordered by address and by size), so a decision costs O(log n) in the number of free
//! blocks whatever the number of addresses used, and an IPv6 /64 costs what an IPv4 /30 does.
//!
//! Stores: [`Durable`] runs a [`Store`] on a writer thread and group-commits, so that one
//! durable write covers every operation queued meanwhile. [`MemoryStore`] keeps nothing;
//! `RedbStore` (feature `redb`, default) is one embedded crash-safe file; `PgStore` (feature
//! `postgres`) keeps the state in PostgreSQL, with a versioned schema migrated at connect and
//! constraints that make the database refuse an address held twice. The store suite in
//! `tests/integration/store` runs the same tests against each of them.
//!
//! ```
//! use maas_ipam::{AssignOptions, AutoRequest, ClientKey, Ipam, Requested, Timestamp};
//! use maas_net::{IpRange, IpRangeKind, Subnet, Topology};
//!
//! let mut topo = Topology::new();
//! let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
//! let subnet = topo.create_subnet(Subnet {
//!     gateway_ip: Some("10.77.0.1".parse()?),
//!     dns_servers: vec!["10.77.0.2".parse()?],
//!     ..Subnet::new("10.77.0.0/24".parse()?, vlan)
//! })?;
//! topo.create_ip_range(IpRange::new(
//!     subnet,
//!     "10.77.0.100".parse()?,
//!     "10.77.0.199".parse()?,
//!     IpRangeKind::Dynamic,
//! ))?;
//! let mut ipam = Ipam::new(topo);
//! let now = Timestamp(1_700_000_000);
//!
//! // AUTO: free blocks are .3-.99 and .200-.254; the smaller one goes first.
//! assert_eq!(ipam.allocate(subnet, &AutoRequest::new(), now)?, ["10.77.0.200".parse::<std::net::IpAddr>()?]);
//!
//! // STICKY, asked for by address: MAAS's rules and messages.
//! let err = ipam.assign("10.77.0.150".parse()?, Requested::Sticky, &AssignOptions::default(), now).unwrap_err();
//! assert_eq!(err.to_string(), "10.77.0.150 is within the dynamic range from 10.77.0.100 to 10.77.0.199.");
//!
//! // DHCP: offer, then bind.
//! let client = ClientKey::Mac("52:54:00:77:00:10".parse()?);
//! let offered = ipam.dhcp_offer(subnet, &client, now, 30)?;
//! ipam.dhcp_request(offered, &client, now, 3600)?;
//! assert_eq!(offered.to_string(), "10.77.0.100");
//!
//! // Statistics, as MAAS computes them.
//! let stats = ipam.statistics(subnet, false, false)?;
//! assert_eq!((stats.total_addresses, stats.num_available), (254, 254 - 2 - 100 - 1));
//!
//! // What a store must make durable before these are acknowledged.
//! assert!(!ipam.take_changes().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod blocks;
mod durable;
mod engine;
mod error;
#[cfg(feature = "postgres")]
mod pg_store;
mod record;
#[cfg(feature = "redb")]
mod redb_store;
mod stats;
mod store;

pub use durable::{Durable, DurableError, Ticket};
pub use engine::{AssignOptions, AutoRequest, Event, Ipam, Requested};
pub use error::Error;
#[cfg(feature = "postgres")]
pub use pg_store::{PgCommitHook, PgHookError, PgStore, PgStoreError};
/// The PostgreSQL client [`PgStore`] uses, for applications that make their own connection
/// ([`PgStore::open`]) or read their own tables ([`PgStore::client`]).
#[cfg(feature = "postgres")]
pub use postgres;
pub use record::{AddressKind, ClientKey, Lease, LeaseState, Record, Timestamp};
#[cfg(feature = "redb")]
pub use redb_store::{
    CommitHook, JournalError, JournalReplay, RedbStore, StoreError, read_journal,
};
pub use stats::{RangeUsage, SubnetStatistics, Suggestions};
pub use store::{Change, MemoryStore, Snapshot, Store, apply};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
