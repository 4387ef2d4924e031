//! Errors of the address manager.

use std::net::IpAddr;

use ipnet::IpNet;
use maas_net::SubnetId;

use crate::ClientKey;

/// Why the address manager refused a request. Messages start with MAAS's sentence where MAAS
/// has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rule of the network model (range placement, subnet shape...).
    #[error(transparent)]
    Net(#[from] maas_net::Error),
    /// A subnet id that names nothing.
    #[error("Subnet {0} does not exist.")]
    UnknownSubnet(SubnetId),
    /// An address outside every subnet.
    #[error("No subnet contains {0}.")]
    NoSubnet(IpAddr),
    /// No free address is left for automatic assignment.
    #[error("No more IPs available in subnet: {cidr}.")]
    Exhausted {
        /// The subnet.
        cidr: IpNet,
    },
    /// No free address is left in the dynamic ranges.
    #[error("No more IPs available in the dynamic ranges of subnet: {cidr}.")]
    PoolExhausted {
        /// The subnet.
        cidr: IpNet,
    },
    /// DHCP was asked to lease in a subnet where it never does.
    #[error("Subnet {cidr} is unmanaged: addresses there are never leased by DHCP.")]
    Unmanaged {
        /// The subnet.
        cidr: IpNet,
    },
    /// A requested address inside a dynamic range.
    #[error("{ip} is within the dynamic range from {start} to {end}.")]
    InDynamicRange {
        /// The requested address.
        ip: IpAddr,
        /// Start of the range.
        start: IpAddr,
        /// End of the range.
        end: IpAddr,
    },
    /// A requested address inside a reserved range, without leave to use one.
    #[error("{ip} is within the reserved range from {start} to {end}.")]
    InReservedRange {
        /// The requested address.
        ip: IpAddr,
        /// Start of the range.
        start: IpAddr,
        /// End of the range.
        end: IpAddr,
    },
    /// A requested address already held.
    #[error("The IP address {ip} is already in use.")]
    InUse {
        /// The requested address.
        ip: IpAddr,
    },
    /// A requested address that the subnet keeps for its router or name servers.
    #[error("The IP address {ip} is already in use: it is the {role} of {cidr}.")]
    Infrastructure {
        /// The requested address.
        ip: IpAddr,
        /// `gateway`, `DNS server` or `static route gateway`.
        role: &'static str,
        /// The subnet.
        cidr: IpNet,
    },
    /// A requested address that no host may have.
    #[error("{ip} is the {role} of {cidr} and cannot be assigned.")]
    NotUsable {
        /// The requested address.
        ip: IpAddr,
        /// `network address` or `broadcast address`.
        role: &'static str,
        /// The subnet.
        cidr: IpNet,
    },
    /// A DHCP request for an address outside the subnet's dynamic ranges.
    #[error("{ip} is not in a dynamic range of {cidr}.")]
    NotInPool {
        /// The requested address.
        ip: IpAddr,
        /// The subnet.
        cidr: IpNet,
    },
    /// An address with no record to release.
    #[error("The IP address {0} is not assigned.")]
    NotAssigned(IpAddr),
    /// A DHCP message about a lease the client does not hold.
    #[error("{client} holds no lease of {ip}.")]
    NotLeased {
        /// The address.
        ip: IpAddr,
        /// The client.
        client: ClientKey,
    },
    /// A topology change that would leave recorded addresses outside every subnet.
    #[error("The change would leave {count} recorded addresses outside their subnet, {ip} first.")]
    WouldOrphan {
        /// How many records.
        count: usize,
        /// The first of them.
        ip: IpAddr,
    },
    /// A snapshot that contradicts itself (two holders of one address, a record outside its
    /// subnet).
    #[error("The stored state is inconsistent: {0}")]
    Corrupt(String),
}
