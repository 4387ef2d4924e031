//! The rack's DHCP leases: offered from a mirror of the region's addresses, each recorded by
//! a region before it is acknowledged, and what the rack may still acknowledge on its own
//! while no region answers.
//!
//! Cut off from every region, the rack acknowledges only
//! - a renewal: a bind of an address the mirror shows bound to the same client, and
//! - a new lease of an address of the rack's block, which the region holds for this rack
//!   alone (no other rack or region hands it out),
//!
//! after writing the operation to the durable [queue](super::queue). Releases and declines
//! are queued too. Anything else is refused, as when a region refuses: never an
//! acknowledgement nobody recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Method;
use maas_ipam::{Ipam, LeaseState, Snapshot};
use maas_net::{ClientKey, SubnetId, Timestamp};
use maas_pxe::dhcp::server::{Bound, LeaseError, Leases};

use super::queue::Queued;
use super::region::{CALL_TIMEOUT, CONNECT_TIMEOUT, Region, RegionError};
use crate::protocol::{LeaseBatch, LeaseBatchAnswer, LeaseOp, LeaseOutcome, LeaseReport};

/// Leases from a mirror of the region's addresses, each confirmed by a region (or, cut off,
/// queued on disk when the rules above allow it) before it is acknowledged.
pub(crate) struct RackLeases {
    mirror: Arc<Mutex<Ipam>>,
    region: Arc<Region>,
    /// This rack's block, as the region last sent it.
    block: Mutex<Vec<IpAddr>>,
    /// Addresses of the block offered while cut off: to whom, until when.
    handed: Mutex<BTreeMap<IpAddr, (ClientKey, Timestamp)>>,
    /// To the reporter task, which sends what queued up meanwhile as one batch.
    queue: tokio::sync::mpsc::UnboundedSender<Pending>,
    /// This rack's part of the dynamic ranges of subnets on VLANs it shares with other
    /// racks (index, of): new clients are offered addresses from it first, so racks that
    /// offer from their own mirrors do not offer one address to two clients.
    parts: Mutex<std::collections::HashMap<SubnetId, (u32, u32)>>,
}

/// A lease operation waiting to be sent to the region.
struct Pending {
    report: LeaseReport,
    /// Whether it may be acknowledged while no region answers (queued instead).
    offline: bool,
    reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// The most operations sent in one request.
pub(crate) const BATCH: usize = 512;

/// The region's answer to a lease report, to wait for before acknowledging.
pub(crate) type Ticket = tokio::sync::oneshot::Receiver<Result<(), String>>;

impl RackLeases {
    fn mirror(&self) -> &Mutex<Ipam> {
        &self.mirror
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ipam> {
        self.mirror
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A rack's leases: `mirror` to offer from, `block` its own addresses, every operation
    /// reported to `region` by a task of `runtime`, batched.
    pub(crate) fn new(
        mirror: Ipam,
        block: Vec<IpAddr>,
        region: Arc<Region>,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let mirror = Arc::new(Mutex::new(mirror));
        let (queue, pending) = tokio::sync::mpsc::unbounded_channel();
        runtime.spawn(report_batches(
            Arc::clone(&region),
            Arc::clone(&mirror),
            pending,
        ));
        Self {
            mirror,
            region,
            block: Mutex::new(block),
            handed: Mutex::default(),
            queue,
            parts: Mutex::default(),
        }
    }

    /// Offers to new clients from part `index` of `of` of the dynamic ranges of each subnet
    /// on the shared `vlans` ([`Ipam::dhcp_offer_in_part`]).
    pub(crate) fn set_parts(&self, vlans: &[(maas_net::VlanId, u32, u32)]) {
        let ipam = self.lock();
        let topology = ipam.topology();
        let parts = topology
            .subnets()
            .filter_map(|(id, subnet)| {
                vlans
                    .iter()
                    .find(|(vlan, ..)| *vlan == subnet.vlan)
                    .map(|&(_, index, of)| (id, (index, of)))
            })
            .collect();
        drop(ipam);
        *self
            .parts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = parts;
    }

    /// The mirror, for the queue's replay.
    pub(crate) fn mirror_handle(&self) -> &Mutex<Ipam> {
        &self.mirror
    }

    /// Queues `op` on `ip` for the region; the ticket resolves with the region's answer.
    fn report(&self, report: LeaseReport, offline: bool) -> Ticket {
        let (reply, ticket) = tokio::sync::oneshot::channel();
        let pending = Pending {
            report,
            offline,
            reply,
        };
        if let Err(unsent) = self.queue.send(pending) {
            let _ = unsent.0.reply.send(Err("the reporter has stopped".into()));
        }
        ticket
    }

    /// Replaces the mirror with the region's records and the block with the region's.
    pub(crate) fn refresh(
        &self,
        snapshot: Snapshot,
        block: Vec<IpAddr>,
    ) -> Result<(), RegionError> {
        let fresh = Ipam::from_snapshot(snapshot).map_err(|e| RegionError::Invalid {
            what: "address records",
            message: e.to_string(),
        })?;
        *self.lock() = fresh;
        self.handed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|ip, _| block.contains(ip));
        *self
            .block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = block;
        Ok(())
    }

    /// Applies queued lease operations to the mirror (a rack started from its cache: the
    /// cached records predate them).
    pub(crate) fn apply_queued(&self, reports: &[LeaseReport], now: Timestamp) {
        let rack = self.region.name().to_string();
        let mut ipam = self.lock();
        for r in reports {
            let _ = match r.op {
                LeaseOp::Bind => {
                    if let Some(slot) = reservation(&ipam, &rack, r.ip) {
                        let _ = ipam.dhcp_release(r.ip, &slot);
                    }
                    ipam.dhcp_request_with_hostname(
                        r.ip,
                        &r.client,
                        r.hostname.as_deref(),
                        now,
                        r.lease_secs.unwrap_or(600).into(),
                    )
                    .map(drop)
                }
                LeaseOp::Release => ipam.dhcp_release(r.ip, &r.client),
                LeaseOp::Decline => ipam.dhcp_decline(
                    r.ip,
                    &r.client,
                    now,
                    r.quarantine_secs.unwrap_or(600).into(),
                ),
            };
        }
        ipam.take_changes();
    }

    /// An address of this rack's block on `subnet` for `client`, while cut off: the one it
    /// was offered already, else one not offered to anyone else.
    fn offer_from_block(
        &self,
        ipam: &Ipam,
        subnet: SubnetId,
        client: &ClientKey,
        now: Timestamp,
        hold_secs: u32,
    ) -> Result<IpAddr, LeaseError> {
        let rack = self.region.name();
        let on_subnet = |ip: &IpAddr| ipam.topology().subnet_containing(*ip) == Some(subnet);
        let mut handed = self
            .handed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = now.plus(u64::from(hold_secs));
        if let Some((&ip, _)) = handed
            .iter()
            .find(|(ip, (c, _))| c == client && on_subnet(ip))
        {
            handed.insert(ip, (client.clone(), until));
            return Ok(ip);
        }
        let block = self
            .block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let free = block.iter().copied().find(|ip| {
            on_subnet(ip)
                && reservation(ipam, rack, *ip).is_some()
                && handed.get(ip).is_none_or(|(_, until)| *until <= now)
        });
        let Some(ip) = free else {
            tracing::warn!(event = "block_exhausted", client = %client);
            return Err(LeaseError::Exhausted {
                subnet: ipam
                    .topology()
                    .subnet(subnet)
                    .map_or_else(String::new, |s| s.cidr.to_string()),
            });
        };
        handed.insert(ip, (client.clone(), until));
        tracing::info!(event = "block_offer", ip = %ip, client = %client);
        Ok(ip)
    }
}

/// The client the region holds `ip` for as part of rack `rack`'s block, if it does.
pub(crate) fn reservation(ipam: &Ipam, rack: &str, ip: IpAddr) -> Option<ClientKey> {
    ipam.record(ip)
        .and_then(|r| r.lease.as_ref())
        .filter(|l| {
            l.state == LeaseState::Offered && crate::protocol::is_block_client(rack, &l.client)
        })
        .map(|l| l.client.clone())
}

/// The address the mirror shows bound to `client` on `subnet`.
fn bound_to(ipam: &Ipam, subnet: SubnetId, client: &ClientKey) -> Option<IpAddr> {
    ipam.records_in(subnet)
        .find(|r| {
            r.lease
                .as_ref()
                .is_some_and(|l| &l.client == client && l.state == LeaseState::Bound)
        })
        .map(|r| r.ip)
}

/// Sends the queued lease operations to the region, as many as queued up while the previous
/// batch was on its way (group commit across the wire), and hands each its answer. What the
/// durable queue holds goes first, so the region sees every operation in order. When no
/// region answers, what may be acknowledged is queued on disk, the rest refused. A bind not
/// recorded leaves the mirror ([`forget_in_mirror`]).
async fn report_batches(
    region: Arc<Region>,
    mirror: Arc<Mutex<Ipam>>,
    mut pending: tokio::sync::mpsc::UnboundedReceiver<Pending>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        // What the queue holds goes first; a region that refuses it refuses this batch too.
        let answer = if region.cut_off() {
            None
        } else {
            match replay(&region, &mirror).await {
                Err(e) if e.fails_over() => None,
                Err(e) => Some(Err(e)),
                Ok(()) => {
                    let body = LeaseBatch {
                        reports: batch.iter().map(|p| p.report.clone()).collect(),
                    };
                    Some(
                        region
                            .call::<LeaseBatchAnswer>(
                                Method::POST,
                                "/api/v1/rack/leases/batch",
                                Some(&body),
                            )
                            .await,
                    )
                }
            }
        };
        // A region answered (each refusal is its decision), or none did.
        let answered = matches!(answer, Some(Ok(_)));
        let results: Vec<Result<(), String>> = match answer {
            Some(Ok(mut answer)) => {
                answer.results.truncate(batch.len());
                let mut results: Vec<Result<(), String>> = answer
                    .results
                    .into_iter()
                    .map(|outcome| match outcome {
                        LeaseOutcome::Record(_) => Ok(()),
                        LeaseOutcome::Error(e) => Err(e),
                    })
                    .collect();
                results.resize(batch.len(), Err("the region gave no answer for it".into()));
                results
            }
            Some(Err(e)) if !e.fails_over() => batch.iter().map(|_| Err(e.to_string())).collect(),
            Some(Err(_)) | None => offline(&region, &batch),
        };
        for (p, result) in batch.drain(..).zip(results) {
            if let Err(e) = &result {
                tracing::warn!(
                    event = "lease_refused_by_region",
                    op = p.report.op.as_str(),
                    ip = %p.report.ip,
                    error = e,
                );
                if p.report.op == LeaseOp::Bind {
                    forget_in_mirror(&mirror, &p.report, answered);
                }
            }
            let _ = p.reply.send(result);
        }
    }
}

/// No region answers: the operations that may be are queued on disk (and then acknowledged),
/// the others refused.
fn offline(region: &Region, batch: &[Pending]) -> Vec<Result<(), String>> {
    let allowed: Vec<Queued> = batch
        .iter()
        .filter(|p| p.offline)
        .map(|p| Queued::Lease(p.report.clone()))
        .collect();
    let queued = !allowed.is_empty() && region.enqueue(allowed);
    batch
        .iter()
        .map(|p| {
            if p.offline && queued {
                tracing::info!(
                    event = "lease_queued",
                    op = p.report.op.as_str(),
                    ip = %p.report.ip,
                    client = %p.report.client,
                );
                Ok(())
            } else if p.offline {
                Err("no region answers and the queue could not be written".into())
            } else {
                Err("no region answers, and this is neither a renewal nor an address of this rack's block".into())
            }
        })
        .collect()
}

/// How long (seconds) the mirror keeps an address the region refused out of its offers, unless
/// a refresh says otherwise first.
const REFUSED_HOLD: u64 = 600;

/// Takes a bind that was not recorded out of the mirror. One a region refused is held out of
/// use (quarantined, as after a decline) until the next refresh says who holds it: the region
/// refuses an address it knows is held elsewhere (another rack's lease, another region's), and
/// offering it again would only be refused again. One no region answered for lets the
/// address go.
fn forget_in_mirror(mirror: &Mutex<Ipam>, report: &LeaseReport, refused: bool) {
    let mut ipam = mirror
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if refused {
        let _ = ipam.dhcp_decline(report.ip, &report.client, crate::now(), REFUSED_HOLD);
    } else {
        let _ = ipam.dhcp_release(report.ip, &report.client);
    }
    ipam.take_changes();
}

/// Sends what the durable queue holds to the regions, in order, removing each entry once a
/// region answered it: recorded, or refused for good (logged; a refused bind is held out of
/// the mirror's offers). Stops at the first call no region answers, or that a region refuses as a whole
/// (a credential or version it does not take), keeping what is left.
pub(crate) async fn replay(region: &Region, mirror: &Mutex<Ipam>) -> Result<(), RegionError> {
    let _one_at_a_time = region.replaying.lock().await;
    let mut sent = 0usize;
    let result = loop {
        let front = region.queue.front(BATCH);
        let Some(first) = front.first() else {
            break Ok(());
        };
        let mut done = BTreeSet::new();
        if matches!(first.item, Queued::Lease(_)) {
            let entries: Vec<(u64, LeaseReport)> = front
                .iter()
                .map_while(|e| match &e.item {
                    Queued::Lease(r) => Some((e.seq, r.clone())),
                    _ => None,
                })
                .collect();
            let body = LeaseBatch {
                reports: entries.iter().map(|(_, r)| r.clone()).collect(),
            };
            match region
                .call::<LeaseBatchAnswer>(Method::POST, "/api/v1/rack/leases/batch", Some(&body))
                .await
            {
                Ok(answer) => {
                    let mut outcomes = answer.results.into_iter();
                    for (seq, report) in &entries {
                        if let Some(LeaseOutcome::Error(e)) = outcomes.next() {
                            tracing::warn!(
                                event = "queued_lease_refused",
                                op = report.op.as_str(),
                                ip = %report.ip,
                                client = %report.client,
                                error = e,
                            );
                            if report.op == LeaseOp::Bind {
                                forget_in_mirror(mirror, report, true);
                            }
                        }
                        done.insert(*seq);
                    }
                }
                Err(e) if e.fails_over() || keeps_queue(&e) => break Err(e),
                Err(e) => {
                    tracing::warn!(event = "queued_leases_refused", count = entries.len(), error = %e);
                    done.extend(entries.iter().map(|(seq, _)| *seq));
                }
            }
        } else {
            match region.send_report(&first.item).await {
                Ok(()) => {}
                Err(e) if e.fails_over() || keeps_queue(&e) => break Err(e),
                Err(e) => {
                    tracing::warn!(event = "queued_report_refused", kind = first.item.kind(), error = %e);
                }
            }
            done.insert(first.seq);
        }
        sent += done.len();
        if let Err(e) = region.queue.remove(&done) {
            tracing::error!(event = "queue_write_failed", error = %e);
            break Err(RegionError::File {
                path: super::queue::QUEUE_FILE.into(),
                source: e,
            });
        }
    };
    if sent > 0 {
        tracing::info!(event = "queue_replayed", sent, left = region.queue.len());
    }
    result
}

/// A refusal of the whole request, not of what it carries: the queue keeps it for later.
fn keeps_queue(e: &RegionError) -> bool {
    match e {
        RegionError::Refused { status, .. } => {
            [hyper::StatusCode::UNAUTHORIZED, hyper::StatusCode::CONFLICT].contains(status)
        }
        RegionError::Version { .. } | RegionError::Untrusted { .. } => true,
        _ => false,
    }
}

fn refused(message: String) -> LeaseError {
    LeaseError::Storage {
        message: format!("the region did not record it: {message}"),
    }
}

/// How long an operation may wait for the regions: each region's connection and answer, once.
fn report_deadline(regions: usize) -> Duration {
    (CONNECT_TIMEOUT + CALL_TIMEOUT) * u32::try_from(regions.max(1)).unwrap_or(u32::MAX)
        + Duration::from_secs(1)
}

impl Leases for RackLeases {
    type Ticket = Ticket;

    fn offer(
        &self,
        subnet: SubnetId,
        client: &ClientKey,
        now: Timestamp,
        hold_secs: u32,
    ) -> Result<IpAddr, LeaseError> {
        if !self.region.cut_off() {
            let part = self
                .parts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&subnet)
                .copied();
            if let Some((index, of)) = part {
                let mut ipam = self.lock();
                let offered =
                    ipam.dhcp_offer_in_part(subnet, client, now, hold_secs.into(), index, of);
                ipam.take_changes();
                if let Ok(ip) = offered {
                    return Ok(ip);
                }
                // The error as the plain offer reports it.
            }
            return Leases::offer(self.mirror(), subnet, client, now, hold_secs);
        }
        let ipam = self.lock();
        if let Some(ip) = bound_to(&ipam, subnet, client) {
            return Ok(ip);
        }
        self.offer_from_block(&ipam, subnet, client, now, hold_secs)
    }

    fn bind(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        hostname: Option<&str>,
        now: Timestamp,
        lease_secs: u32,
    ) -> Result<Bound<Ticket>, LeaseError> {
        let offline = {
            let mut ipam = self.lock();
            let renewal = ipam
                .record(ip)
                .and_then(|r| r.lease.as_ref())
                .is_some_and(|l| &l.client == client && l.state == LeaseState::Bound);
            let mut handed = self
                .handed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let from_block = handed.get(&ip).is_some_and(|(c, _)| c == client);
            if from_block && let Some(slot) = reservation(&ipam, self.region.name(), ip) {
                // The region turns its reservation into this client's lease on the report.
                let _ = ipam.dhcp_release(ip, &slot);
                ipam.take_changes();
                handed.remove(&ip);
            }
            renewal || from_block
        };
        let bound = Leases::bind(self.mirror(), ip, client, hostname, now, lease_secs)?;
        let ticket = self.report(
            LeaseReport {
                op: LeaseOp::Bind,
                ip,
                client: client.clone(),
                hostname: hostname.map(str::to_owned),
                lease_secs: Some(lease_secs),
                quarantine_secs: None,
            },
            offline,
        );
        Ok(Bound {
            ip: bound.ip,
            expires: bound.expires,
            ticket: Some(ticket),
        })
    }

    fn release(&self, ip: IpAddr, client: &ClientKey) -> Result<Option<Ticket>, LeaseError> {
        Leases::release(self.mirror(), ip, client)?;
        Ok(Some(self.report(
            LeaseReport {
                op: LeaseOp::Release,
                ip,
                client: client.clone(),
                hostname: None,
                lease_secs: None,
                quarantine_secs: None,
            },
            true,
        )))
    }

    fn decline(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        now: Timestamp,
        quarantine_secs: u32,
    ) -> Result<Option<Ticket>, LeaseError> {
        Leases::decline(self.mirror(), ip, client, now, quarantine_secs)?;
        Ok(Some(self.report(
            LeaseReport {
                op: LeaseOp::Decline,
                ip,
                client: client.clone(),
                hostname: None,
                lease_secs: None,
                quarantine_secs: Some(quarantine_secs),
            },
            true,
        )))
    }

    fn expire(&self, now: Timestamp) -> Result<(usize, Option<Ticket>), LeaseError> {
        // The region ends its own leases; the mirror follows on its own clock meanwhile.
        let (n, _) = Leases::expire(self.mirror(), now)?;
        Ok((n, None))
    }

    fn wait(&self, mut ticket: Ticket) -> Result<(), LeaseError> {
        let deadline = std::time::Instant::now() + report_deadline(self.region.count());
        loop {
            match ticket.try_recv() {
                Ok(result) => return result.map_err(refused),
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err(refused("the report was dropped".into()));
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    return Err(refused("no answer in time".into()));
                }
            }
        }
    }

    async fn wait_async(&self, ticket: Ticket) -> Result<(), LeaseError> {
        let deadline = report_deadline(self.region.count());
        match tokio::time::timeout(deadline, ticket).await {
            Ok(Ok(result)) => result.map_err(refused),
            Ok(Err(_)) => Err(refused("the report was dropped".into())),
            Err(_) => Err(refused("no answer in time".into())),
        }
    }
}
