//! [`Leases`] on `maas_ipam`: an [`Ipam`] behind a mutex (in memory) and a [`Durable`] one
//! (acknowledged only once committed, with group commit).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Mutex;

use maas_ipam::{Durable, DurableError, Error, Ipam, Store, Ticket};
use maas_net::{ClientKey, SubnetId, Timestamp};

use super::{Bound, LeaseError, Leases};

fn lease_error(error: Error, ip: Option<IpAddr>, client: Option<&ClientKey>) -> LeaseError {
    match error {
        Error::PoolExhausted { cidr } | Error::Exhausted { cidr } => LeaseError::Exhausted {
            subnet: cidr.to_string(),
        },
        Error::Unmanaged { cidr } => LeaseError::NoPool {
            subnet: cidr.to_string(),
        },
        Error::NotLeased { ip, client } => LeaseError::NotHolder { ip, client },
        Error::Corrupt(message) => LeaseError::Storage { message },
        other => match (ip, client) {
            (Some(ip), Some(client)) => LeaseError::Unavailable {
                ip,
                client: client.clone(),
                reason: other.to_string(),
            },
            _ => LeaseError::NoPool {
                subnet: other.to_string(),
            },
        },
    }
}

fn durable_error(
    error: DurableError,
    ip: Option<IpAddr>,
    client: Option<&ClientKey>,
) -> LeaseError {
    match error {
        DurableError::Ipam(e) => lease_error(e, ip, client),
        other => LeaseError::Storage {
            message: other.to_string(),
        },
    }
}

fn lock(ipam: &Mutex<Ipam>) -> std::sync::MutexGuard<'_, Ipam> {
    ipam.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// In memory: nothing to wait for. Leases are lost when the process ends.
impl Leases for Mutex<Ipam> {
    type Ticket = Infallible;

    fn offer(
        &self,
        subnet: SubnetId,
        client: &ClientKey,
        now: Timestamp,
        hold_secs: u32,
    ) -> Result<IpAddr, LeaseError> {
        let mut ipam = lock(self);
        let result = ipam.dhcp_offer(subnet, client, now, hold_secs.into());
        ipam.take_changes();
        result.map_err(|e| lease_error(e, None, Some(client)))
    }

    fn bind(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        hostname: Option<&str>,
        now: Timestamp,
        lease_secs: u32,
    ) -> Result<Bound<Infallible>, LeaseError> {
        let mut ipam = lock(self);
        let result = ipam.dhcp_request_with_hostname(ip, client, hostname, now, lease_secs.into());
        ipam.take_changes();
        let record = result.map_err(|e| lease_error(e, Some(ip), Some(client)))?;
        Ok(Bound {
            ip,
            expires: record.lease.map_or(now, |l| l.expires),
            ticket: None,
        })
    }

    fn release(&self, ip: IpAddr, client: &ClientKey) -> Result<Option<Infallible>, LeaseError> {
        let mut ipam = lock(self);
        let result = ipam.dhcp_release(ip, client);
        ipam.take_changes();
        result
            .map(|()| None)
            .map_err(|e| lease_error(e, Some(ip), Some(client)))
    }

    fn decline(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        now: Timestamp,
        quarantine_secs: u32,
    ) -> Result<Option<Infallible>, LeaseError> {
        let mut ipam = lock(self);
        let result = ipam.dhcp_decline(ip, client, now, quarantine_secs.into());
        ipam.take_changes();
        result
            .map(|()| None)
            .map_err(|e| lease_error(e, Some(ip), Some(client)))
    }

    fn expire(&self, now: Timestamp) -> Result<(usize, Option<Infallible>), LeaseError> {
        let mut ipam = lock(self);
        let n = ipam.expire(now).len();
        ipam.take_changes();
        Ok((n, None))
    }

    fn wait(&self, ticket: Infallible) -> Result<(), LeaseError> {
        match ticket {}
    }

    #[cfg(feature = "tokio")]
    async fn wait_async(&self, ticket: Infallible) -> Result<(), LeaseError> {
        match ticket {}
    }
}

/// Durable: every change is committed by the store's writer, many clients' changes per commit
/// (group commit); a ticket says when an acknowledgement may go out. An offer's hold is
/// deferred ([`Durable::submit_deferred`]): committed with the next lease, never waited for
/// and never the cause of a commit, since losing it costs nothing.
impl<S: Store + Send + 'static> Leases for Durable<S> {
    type Ticket = Ticket;

    fn offer(
        &self,
        subnet: SubnetId,
        client: &ClientKey,
        now: Timestamp,
        hold_secs: u32,
    ) -> Result<IpAddr, LeaseError> {
        self.submit_deferred(|ipam| ipam.dhcp_offer(subnet, client, now, hold_secs.into()))
            .map_err(|e| durable_error(e, None, Some(client)))
    }

    fn bind(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        hostname: Option<&str>,
        now: Timestamp,
        lease_secs: u32,
    ) -> Result<Bound<Ticket>, LeaseError> {
        let (record, ticket) = self
            .submit(|ipam| {
                ipam.dhcp_request_with_hostname(ip, client, hostname, now, lease_secs.into())
            })
            .map_err(|e| durable_error(e, Some(ip), Some(client)))?;
        Ok(Bound {
            ip,
            expires: record.lease.map_or(now, |l| l.expires),
            ticket: Some(ticket),
        })
    }

    fn release(&self, ip: IpAddr, client: &ClientKey) -> Result<Option<Ticket>, LeaseError> {
        self.submit(|ipam| ipam.dhcp_release(ip, client))
            .map(|((), t)| Some(t))
            .map_err(|e| durable_error(e, Some(ip), Some(client)))
    }

    fn decline(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        now: Timestamp,
        quarantine_secs: u32,
    ) -> Result<Option<Ticket>, LeaseError> {
        self.submit(|ipam| ipam.dhcp_decline(ip, client, now, quarantine_secs.into()))
            .map(|((), t)| Some(t))
            .map_err(|e| durable_error(e, Some(ip), Some(client)))
    }

    fn expire(&self, now: Timestamp) -> Result<(usize, Option<Ticket>), LeaseError> {
        self.submit(|ipam| Ok(ipam.expire(now).len()))
            .map(|(n, t)| (n, Some(t)))
            .map_err(|e| durable_error(e, None, None))
    }

    fn wait(&self, ticket: Ticket) -> Result<(), LeaseError> {
        Self::wait(self, ticket).map_err(|e| durable_error(e, None, None))
    }

    #[cfg(feature = "tokio")]
    async fn wait_async(&self, ticket: Ticket) -> Result<(), LeaseError> {
        Self::wait_async(self, ticket)
            .await
            .map_err(|e| durable_error(e, None, None))
    }
}
