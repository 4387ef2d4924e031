//! The messages between a region and its racks, as typed structs both sides use, and the
//! protocol version they check at connect.
//!
//! A rack enrols once with the cluster's shared secret ([`Enrolment`]) and uses the
//! credential it is given from then on. It sends [`VERSION_HEADER`] with every request; a region answers a rack of another
//! version with 409 and says which versions meet. The rack checks the version in the
//! [`RackConfig`] it fetches at start and refuses to serve with a region of another one.

use std::net::IpAddr;

use maas_ipam::{Record, Snapshot};
use maas_net::{ClientKey, Mac, TopologyDoc};
use serde::{Deserialize, Serialize};

use crate::state::{BootSeen, Machine};

mod health;

pub(crate) use health::{DhcpHealth, HealthError, parse_queued};

/// The version of these messages. Bumped on any change a peer of the previous version would
/// misread.
pub(crate) const PROTOCOL_VERSION: u32 = 4;

/// The header carrying the rack's [`PROTOCOL_VERSION`].
pub(crate) const VERSION_HEADER: &str = "x-maas-protocol";

/// The header carrying the rack's name.
pub(crate) const RACK_HEADER: &str = "x-maas-rack";

/// The header carrying whether the rack's DHCP serves, as [`DhcpHealth::emit`] writes it.
/// Optional: a rack that does not know yet (it is starting) sends none, and so does a rack
/// older than the header.
pub(crate) const DHCP_HEADER: &str = "x-maas-rack-dhcp";

/// The header carrying how many reports wait in the rack's queue for a region, in decimal.
/// Optional, as [`DHCP_HEADER`].
pub(crate) const QUEUED_HEADER: &str = "x-maas-rack-queued";

/// `GET /api/v1/rack/config`: what a rack needs to serve.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RackConfig {
    /// The region's [`PROTOCOL_VERSION`].
    pub(crate) protocol: u32,
    /// The network model.
    pub(crate) topology: TopologyDoc,
    /// Every address record (the rack's DHCP mirror).
    pub(crate) snapshot: Snapshot,
    /// The machines, with the secrets in their power parameters masked.
    pub(crate) machines: Vec<Machine>,
    /// The iPXE script template.
    pub(crate) ipxe_script: Option<String>,
    /// The pxelinux template.
    pub(crate) pxelinux_template: Option<String>,
    /// The GRUB template.
    pub(crate) grub_template: Option<String>,
    /// The DHCP lease time.
    pub(crate) lease_secs: u32,
    /// Each machine's credential, for its boot configuration (`{token}` in the templates).
    pub(crate) machine_tokens: std::collections::BTreeMap<Mac, String>,
    /// The boot resources, which the rack fetches (`GET /api/v1/rack/resources/...`) and
    /// serves to its machines.
    pub(crate) resources: Vec<crate::state::resources::BootResource>,
    /// The addresses the region holds for this rack alone (its block, on each subnet with a
    /// dynamic range on the VLANs it serves): the only ones it may hand to new clients while
    /// no region answers. Each is an offered DHCP record of a client
    /// [`block_client`] names.
    #[serde(default)]
    pub(crate) block: Vec<IpAddr>,
    /// The rack's share of the new clients of each VLAN it serves with other racks: it
    /// answers the DISCOVERs of its share only, and any client that has been trying for 3 s.
    #[serde(default)]
    pub(crate) dhcp_shares: Vec<crate::config::DhcpShare>,
}

/// The client a region holds slot `slot` of rack `rack`'s block on subnet `cidr` for.
pub(crate) fn block_client(rack: &str, cidr: &ipnet::IpNet, slot: u32) -> ClientKey {
    ClientKey::client_id(format!("{}{cidr}/{slot}", block_prefix(rack)).into_bytes())
}

/// The start of the client identifiers of rack `rack`'s block.
pub(crate) fn block_prefix(rack: &str) -> String {
    format!("maas-rack-block:{rack}:")
}

/// Whether `client` holds an address of rack `rack`'s block.
pub(crate) fn is_block_client(rack: &str, client: &ClientKey) -> bool {
    matches!(client, ClientKey::ClientId(id) if id.starts_with(block_prefix(rack).as_bytes()))
}

/// `POST /api/v1/rack/enrol`'s answer: the rack's own credential, given once.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Enrolment {
    /// The rack's name.
    pub(crate) name: String,
    /// Its credential, for every later call.
    pub(crate) credential: String,
}

/// A lease operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LeaseOp {
    /// A lease granted or renewed.
    Bind,
    /// The client gave the address back.
    Release,
    /// The client found the address in use.
    Decline,
}

impl LeaseOp {
    /// The name in the messages and logs.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::Release => "release",
            Self::Decline => "decline",
        }
    }
}

/// `POST /api/v1/rack/leases`: a lease operation a rack's DHCP server wants recorded before
/// it acknowledges it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LeaseReport {
    /// What happened.
    pub(crate) op: LeaseOp,
    /// The address.
    pub(crate) ip: IpAddr,
    /// The client.
    pub(crate) client: ClientKey,
    /// The host name the client gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hostname: Option<String>,
    /// The lease time granted (binds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lease_secs: Option<u32>,
    /// How long the address stays out of use (declines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) quarantine_secs: Option<u32>,
}

/// `POST /api/v1/rack/leases/batch`: many lease operations, applied in order and committed
/// together.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LeaseBatch {
    /// The operations.
    pub(crate) reports: Vec<LeaseReport>,
}

/// The region's answer to one lease operation: the address's record once durable, or why it
/// was refused.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LeaseOutcome {
    /// Recorded (the record is absent once a release removed it).
    Record(Option<Record>),
    /// Refused, with the address manager's reason.
    Error(String),
}

/// The answer to a [`LeaseBatch`], in the same order.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LeaseBatchAnswer {
    /// One outcome per operation.
    pub(crate) results: Vec<LeaseOutcome>,
}

/// `POST /api/v1/rack/seen`: what a machine told a rack's DHCP server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SeenReport {
    /// The machine.
    pub(crate) mac: Mac,
    /// The address it leased.
    #[serde(default)]
    pub(crate) ip: Option<IpAddr>,
    /// What its firmware asked for.
    #[serde(default)]
    pub(crate) boot: Option<BootSeen>,
}

/// `POST /api/v1/rack/interfaces`: the rack's own discovery interfaces, which its region
/// counts as known (never unknown discoveries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RackInterfaces {
    /// Each watched interface.
    pub(crate) interfaces: Vec<RackInterface>,
}

/// One of a rack's interfaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RackInterface {
    /// Its MAC.
    pub(crate) mac: Mac,
    /// Its addresses.
    #[serde(default)]
    pub(crate) ips: Vec<IpAddr>,
}

/// `POST /api/v1/rack/discoveries`: a discovery event, as the observer reported it.
pub(crate) type DiscoveryReport = maas_discovery::Event;
