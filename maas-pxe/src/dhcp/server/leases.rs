//! The seam between the DHCP server and whatever hands out addresses.

use std::net::IpAddr;

use maas_net::{ClientKey, SubnetId, Timestamp};

/// Why a lease operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeaseError {
    /// Every address of the subnet's dynamic ranges is offered, leased or quarantined.
    #[error("no free address is left in the dynamic ranges of {subnet}")]
    Exhausted {
        /// The subnet, as text (its CIDR).
        subnet: String,
    },
    /// The subnet leases nothing: it has no dynamic range, or it is unmanaged.
    #[error("{subnet} has no dynamic range to lease from")]
    NoPool {
        /// The subnet, as text (its CIDR).
        subnet: String,
    },
    /// The address cannot be leased to this client: another client holds it, it is assigned
    /// statically, or it lies outside every dynamic range.
    #[error("{ip} cannot be leased to {client}: {reason}")]
    Unavailable {
        /// The address asked for.
        ip: IpAddr,
        /// The client asking.
        client: ClientKey,
        /// Why, in the backend's words.
        reason: String,
    },
    /// The client does not hold the address it releases or declines.
    #[error("{client} does not hold {ip}")]
    NotHolder {
        /// The address.
        ip: IpAddr,
        /// The client.
        client: ClientKey,
    },
    /// The backend could not record the change (storage failure): nothing may be acknowledged.
    #[error("the lease store failed: {message}")]
    Storage {
        /// What failed.
        message: String,
    },
}

/// A lease granted by [`Leases::bind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound<T> {
    /// The address leased.
    pub ip: IpAddr,
    /// When the lease ends.
    pub expires: Timestamp,
    /// Present when the lease is not durable yet: the acknowledgement must wait until
    /// [`Leases::wait`] (or [`Leases::wait_async`]) on it returns `Ok`.
    pub ticket: Option<T>,
}

/// Where DHCP leases come from: the address manager behind the server.
///
/// Methods take `&self` so one server can answer on every core at once; implementations
/// serialise what must be serialised. `now` is wall-clock time passed in by the caller.
/// Feature `ipam` implements this for [`maas_ipam::Ipam`](https://docs.rs/maas-ipam) (behind
/// a mutex) and for its durable form.
///
/// A change that is not durable when a method returns comes with a ticket; the server sends
/// nothing that acknowledges it (an ACK, a DHCPv6 Reply) until the ticket is waited for.
pub trait Leases: Send + Sync {
    /// Proof that a change was handed to storage, to wait for before acknowledging it.
    type Ticket: Send + 'static;

    /// Chooses an address of `subnet`'s dynamic ranges for `client` and holds it for
    /// `hold_secs`: the client's current offer or lease if it has one, its previous address
    /// if still free, else a free one.
    fn offer(
        &self,
        subnet: SubnetId,
        client: &ClientKey,
        now: Timestamp,
        hold_secs: u32,
    ) -> Result<IpAddr, LeaseError>;

    /// Leases (or renews) `ip` to `client` until `now + lease_secs`. The address must be the
    /// client's own offer or lease, or free in a dynamic range. `hostname` is what the client
    /// said it is called, to record.
    fn bind(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        hostname: Option<&str>,
        now: Timestamp,
        lease_secs: u32,
    ) -> Result<Bound<Self::Ticket>, LeaseError>;

    /// The client gives `ip` back.
    fn release(&self, ip: IpAddr, client: &ClientKey) -> Result<Option<Self::Ticket>, LeaseError>;

    /// `ip`, offered or leased to `client`, is in use by someone else: keep it out of use
    /// until `now + quarantine_secs`.
    fn decline(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        now: Timestamp,
        quarantine_secs: u32,
    ) -> Result<Option<Self::Ticket>, LeaseError>;

    /// Ends the offers, leases and quarantines that expired by `now`; returns how many.
    fn expire(&self, now: Timestamp) -> Result<(usize, Option<Self::Ticket>), LeaseError>;

    /// Blocks until the ticket's changes are durable.
    fn wait(&self, ticket: Self::Ticket) -> Result<(), LeaseError>;

    /// Waits until the ticket's changes are durable, without blocking the executor.
    #[cfg(feature = "tokio")]
    fn wait_async(
        &self,
        ticket: Self::Ticket,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send;
}

/// A shared lease store: one address manager behind several servers (DHCPv4 and DHCPv6) and
/// whatever else reads it (an API, statistics).
impl<L: Leases + ?Sized> Leases for std::sync::Arc<L> {
    type Ticket = L::Ticket;

    fn offer(
        &self,
        subnet: SubnetId,
        client: &ClientKey,
        now: Timestamp,
        hold_secs: u32,
    ) -> Result<IpAddr, LeaseError> {
        (**self).offer(subnet, client, now, hold_secs)
    }

    fn bind(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        hostname: Option<&str>,
        now: Timestamp,
        lease_secs: u32,
    ) -> Result<Bound<L::Ticket>, LeaseError> {
        (**self).bind(ip, client, hostname, now, lease_secs)
    }

    fn release(&self, ip: IpAddr, client: &ClientKey) -> Result<Option<L::Ticket>, LeaseError> {
        (**self).release(ip, client)
    }

    fn decline(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        now: Timestamp,
        quarantine_secs: u32,
    ) -> Result<Option<L::Ticket>, LeaseError> {
        (**self).decline(ip, client, now, quarantine_secs)
    }

    fn expire(&self, now: Timestamp) -> Result<(usize, Option<L::Ticket>), LeaseError> {
        (**self).expire(now)
    }

    fn wait(&self, ticket: L::Ticket) -> Result<(), LeaseError> {
        (**self).wait(ticket)
    }

    #[cfg(feature = "tokio")]
    async fn wait_async(&self, ticket: L::Ticket) -> Result<(), LeaseError> {
        (**self).wait_async(ticket).await
    }
}
