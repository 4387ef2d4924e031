//! Durability with group commit: see [`Durable`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use maas_net::Topology;

use crate::{Change, Ipam, Store};

mod error;
mod shared;
mod writer;

pub use error::DurableError;
#[cfg(feature = "tokio")]
use shared::Progress;
use shared::{Queue, Shared};
use writer::write_loop;

/// Numbers the [`Durable`] instances of the process, so that a ticket is only honoured by the
/// instance that issued it.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// A claim on the durability of an operation's changes, from [`Durable::submit`]. Wait for it
/// ([`Durable::wait`]) before acknowledging the operation.
///
/// A ticket covers the operation's changes and everything the operation saw: an operation that
/// changed nothing gets a ticket that is durable once every change made before it is, so that
/// (for example) a retransmitted DHCPREQUEST is not acknowledged before the original's lease is
/// on disk. When nothing is in flight such a ticket is durable at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "wait for the ticket before acknowledging the operation"]
pub struct Ticket {
    instance: u64,
    seq: u64,
}

impl Ticket {
    /// The ticket's place in commit order: tickets with a higher sequence number become
    /// durable no sooner than those with a lower one.
    pub const fn seq(self) -> u64 {
        self.seq
    }
}

/// The address manager, durable: an [`Ipam`] whose every change is committed to a [`Store`]
/// before it is acknowledged, with group commit.
///
/// `Durable` runs each operation on the [`Ipam`] under a mutex, drains the changes it made and
/// queues them, in lock order, for a writer thread. The writer takes everything queued (up to
/// 4096 changes) and commits it to the [`Store`] in one transaction, so one disk sync covers
/// every operation that arrived while the previous one was in progress. An operation's caller
/// gets a [`Ticket`] and acknowledges the operation to the outside world (a DHCPACK, an API
/// response) only once the ticket is durable:
///
/// - [`Durable::apply`] runs an operation and returns once its changes are durable;
/// - [`Durable::submit`] returns at once with a ticket, and [`Durable::wait`] (or
///   `Durable::wait_async`, with the `tokio` feature) waits for it, so one thread can keep many
///   commits in flight.
///
/// Batches are committed in the order their operations ran, so a ticket is durable only when
/// every operation before it is.
///
/// If the store fails a commit, the changes of that batch are in memory but not on disk. Every
/// ticket of that batch and after it gets the error, and the manager refuses further changes
/// ([`DurableError::Poisoned`]) rather than acknowledge anything that is not durable: reopen
/// it from the store to continue from the last durable state.
///
/// A store may instead *refuse* a batch ([`Store::is_refusal`]), as `PgStore` (feature
/// `postgres`) does when another controller sharing its database holds one of the batch's
/// addresses. Then the tickets of that batch and of every operation queued after
/// it get [`DurableError::Refused`] (those operations ran on a state that held the refused
/// changes), the writer reloads the address manager from the store, under its lock, so that
/// operations from then on see the stored state (the other controller's holdings included),
/// and the manager keeps serving. If the reload fails, the manager refuses changes as after
/// any failed commit.
///
/// `Durable` is `Sync`: share it (in an `Arc`) between the threads or tasks that serve
/// requests. Dropping it stops the writer thread after it has committed everything queued.
///
/// ```
/// use maas_ipam::{ClientKey, Durable, MemoryStore, Timestamp};
/// use maas_net::{IpRange, IpRangeKind, Subnet, Topology};
///
/// let mut topo = Topology::new();
/// let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
/// let subnet = topo.create_subnet(Subnet::new("10.77.0.0/24".parse()?, vlan))?;
/// topo.create_ip_range(IpRange::new(
///     subnet,
///     "10.77.0.100".parse()?,
///     "10.77.0.199".parse()?,
///     IpRangeKind::Dynamic,
/// ))?;
/// let ipam = Durable::with_topology(MemoryStore::new(), topo)?;
///
/// let client = ClientKey::Mac("52:54:00:77:00:10".parse()?);
/// let now = Timestamp(1_700_000_000);
/// // DISCOVER: `apply` returns once the offer is durable.
/// let offered = ipam.apply(|ipam| ipam.dhcp_offer(subnet, &client, now, 30))?;
/// // REQUEST: `submit` returns at once; send the ACK when the ticket is durable.
/// let (lease, ticket) = ipam.submit(|ipam| ipam.dhcp_request(offered, &client, now, 3600))?;
/// ipam.wait(ticket)?;
/// assert_eq!(lease.ip, offered);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Durable<S: Store> {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<S>>,
}

impl<S: Store> std::fmt::Debug for Durable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.shared.lock_queue();
        f.debug_struct("Durable")
            .field("queued", &queue.last_seq)
            .field("durable", &queue.durable_seq)
            .field("failed", &queue.failure.is_some())
            .finish_non_exhaustive()
    }
}

impl<S: Store> Durable<S> {
    /// Loads the state in `store` and starts the writer. An empty store starts an address
    /// manager with an empty topology ([`Topology::new`]).
    pub fn open(store: S) -> Result<Self, DurableError> {
        Self::start(store, None)
    }

    /// Like [`open`](Self::open), but an empty store starts with `topology`, which is committed
    /// before this returns. A store that holds state keeps its own topology: `topology` is
    /// ignored.
    pub fn with_topology(store: S, topology: Topology) -> Result<Self, DurableError> {
        Self::start(store, Some(topology))
    }

    fn start(mut store: S, seed: Option<Topology>) -> Result<Self, DurableError> {
        let snapshot = store.load().map_err(|e| DurableError::Load(Arc::new(e)))?;
        let mut ipam;
        let mut initial = Vec::new();
        if snapshot.is_empty() {
            let seed_doc = seed.as_ref().map(Topology::to_doc);
            ipam = Ipam::new(seed.unwrap_or_default());
            initial = ipam.take_changes();
            if let Some(doc) = seed_doc
                && !initial.iter().any(|c| matches!(c, Change::Topology(_)))
            {
                initial.insert(0, Change::Topology(doc));
            }
        } else {
            ipam = Ipam::from_snapshot(snapshot).map_err(DurableError::Restore)?;
            initial.extend(ipam.take_changes());
        }
        if !initial.is_empty() {
            store
                .commit(&initial)
                .map_err(|e| DurableError::Commit(Arc::new(e)))?;
        }

        #[cfg(feature = "tokio")]
        let (progress, _) = tokio::sync::watch::channel(Progress::default());
        let shared = Arc::new(Shared {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            ipam: Mutex::new(ipam),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            failed: AtomicBool::new(false),
            commit_delay_us: AtomicU64::new(0),
            #[cfg(feature = "tokio")]
            progress,
        });
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("maas-ipam-commit".to_owned())
                .spawn(move || write_loop(&shared, store))
                .map_err(DurableError::Spawn)?
        };
        Ok(Self {
            shared,
            writer: Some(writer),
        })
    }

    /// Lets the writer gather operations for up to `delay` before a commit while callers are
    /// queuing concurrently (its previous commit held more than one operation), so that one
    /// disk sync covers more of them: fewer syncs and less CPU per operation under load, for
    /// at most `delay` more latency. A lone caller is never delayed. Default: no delay.
    pub fn set_commit_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.commit_delay_us.store(us, Ordering::Relaxed);
    }

    /// Runs `op` on the address manager and returns its result once its changes are durable.
    ///
    /// If `op` fails, its error is returned at once (whatever it changed before failing is
    /// still committed, in order). If the commit fails, the result is dropped and the store's
    /// error returned: the operation must not be acknowledged.
    pub fn apply<R>(
        &self,
        op: impl FnOnce(&mut Ipam) -> Result<R, crate::Error>,
    ) -> Result<R, DurableError> {
        let (result, ticket) = self.submit(op)?;
        self.wait(ticket)?;
        Ok(result)
    }

    /// Runs `op` on the address manager and queues its changes for the writer without waiting:
    /// acknowledge the result once [`wait`](Self::wait) on the ticket returns `Ok`.
    pub fn submit<R>(
        &self,
        op: impl FnOnce(&mut Ipam) -> Result<R, crate::Error>,
    ) -> Result<(R, Ticket), DurableError> {
        self.queue_op(op, true)
    }

    /// Runs `op` on the address manager and queues its changes without starting a commit:
    /// they become durable with the next commit another operation asks for (or at shutdown).
    ///
    /// For changes whose loss in a crash is harmless, such as a DHCP offer's hold on an
    /// address: a server that forgot an offer only offers the address again. Deferring them
    /// spares a commit (a disk sync) per offer when the server is not busy enough to group
    /// commits.
    pub fn submit_deferred<R>(
        &self,
        op: impl FnOnce(&mut Ipam) -> Result<R, crate::Error>,
    ) -> Result<R, DurableError> {
        self.queue_op(op, false).map(|(value, _)| value)
    }

    fn queue_op<R>(
        &self,
        op: impl FnOnce(&mut Ipam) -> Result<R, crate::Error>,
        urgent: bool,
    ) -> Result<(R, Ticket), DurableError> {
        let mut ipam = self
            .shared
            .ipam
            .lock()
            .map_err(|_| DurableError::Panicked)?;
        if self.shared.failed.load(Ordering::Acquire)
            && let Some(failure) = &self.shared.lock_queue().failure
        {
            return Err(failure.for_new_op());
        }
        let result = op(&mut ipam);
        let changes = ipam.take_changes();
        let (seq, wake) = {
            let mut queue = self.shared.lock_queue();
            let mut wake = false;
            if !changes.is_empty() {
                if let Some(failure) = &queue.failure {
                    // The writer has stopped: these changes can never be made durable.
                    return Err(failure.for_new_op());
                }
                queue.last_seq += 1;
                let seq = queue.last_seq;
                queue.changes.extend(changes);
                let end = queue.changes.len();
                queue.ends.push_back((seq, end));
                if urgent {
                    queue.urgent = true;
                    wake = queue.writer_idle;
                }
            }
            (queue.last_seq, wake)
        };
        drop(ipam);
        if wake {
            self.shared.work.notify_one();
        }
        let value = result?;
        Ok((
            value,
            Ticket {
                instance: self.shared.instance,
                seq,
            },
        ))
    }

    /// Asks for a commit now, even with no address change queued, and returns its ticket:
    /// once it is durable, so is everything queued before this call.
    ///
    /// For stores that carry other records of the application in the same transaction as the
    /// address changes (see [`RedbStore::on_commit`](crate::RedbStore::on_commit)): queue
    /// those records with the store, then wait for this ticket before acknowledging them.
    pub fn sync(&self) -> Result<Ticket, DurableError> {
        let (seq, wake) = {
            let mut queue = self.shared.lock_queue();
            if let Some(failure) = &queue.failure {
                return Err(failure.for_new_op());
            }
            queue.last_seq += 1;
            let seq = queue.last_seq;
            let end = queue.changes.len();
            queue.ends.push_back((seq, end));
            queue.urgent = true;
            (seq, queue.writer_idle)
        };
        if wake {
            self.shared.work.notify_one();
        }
        Ok(Ticket {
            instance: self.shared.instance,
            seq,
        })
    }

    /// Runs `f` under the address manager's lock, then asks for a commit as
    /// [`sync`](Self::sync) does, and returns `f`'s value with the commit's ticket.
    ///
    /// For stores that carry other records of the application: stage them with the store in
    /// `f`. No commit and no reload can come between the staging and the ticket, so when the
    /// store refuses the batch holding them, this ticket is among the refused ones (and a store
    /// that drops what is staged when it is loaded again drops exactly these records).
    pub fn sync_with<R>(&self, f: impl FnOnce() -> R) -> Result<(R, Ticket), DurableError> {
        let ipam = self
            .shared
            .ipam
            .lock()
            .map_err(|_| DurableError::Panicked)?;
        let (value, seq, wake) = {
            let mut queue = self.shared.lock_queue();
            if let Some(failure) = &queue.failure {
                return Err(failure.for_new_op());
            }
            let value = f();
            queue.last_seq += 1;
            let seq = queue.last_seq;
            let end = queue.changes.len();
            queue.ends.push_back((seq, end));
            queue.urgent = true;
            (value, seq, queue.writer_idle)
        };
        drop(ipam);
        if wake {
            self.shared.work.notify_one();
        }
        Ok((
            value,
            Ticket {
                instance: self.shared.instance,
                seq,
            },
        ))
    }

    /// Asks the writer to reload the address manager from the store as soon as everything
    /// queued is committed, and returns at once: for a store shared with other controllers
    /// (several regions on one database), when one of them says it changed something, so that
    /// this manager's allocations see it. Operations wait while the reload runs; one that
    /// was queued before it is committed first. A reload that fails (the store cannot be
    /// read) leaves the manager as it was: the store still refuses what another holds.
    pub fn refresh(&self) {
        let wake = {
            let mut queue = self.shared.lock_queue();
            if queue.failure.is_some() {
                return;
            }
            queue.refresh = true;
            queue.writer_idle
        };
        if wake {
            self.shared.work.notify_one();
        }
    }

    /// Waits until the ticket's changes are durable, or the commit holding them (or an earlier
    /// one) failed.
    pub fn wait(&self, ticket: Ticket) -> Result<(), DurableError> {
        self.check_ticket(ticket)?;
        let mut queue = self.shared.lock_queue();
        loop {
            if let Some(outcome) = Shared::outcome(&queue, ticket.seq) {
                return outcome;
            }
            queue = self
                .shared
                .done
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout`: `Ok(false)` when the ticket is
    /// not durable yet (it may still become durable; wait again or check later).
    pub fn wait_timeout(&self, ticket: Ticket, timeout: Duration) -> Result<bool, DurableError> {
        self.check_ticket(ticket)?;
        let deadline = Instant::now().checked_add(timeout);
        let mut queue = self.shared.lock_queue();
        loop {
            if let Some(outcome) = Shared::outcome(&queue, ticket.seq) {
                return outcome.map(|()| true);
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                // A timeout too long to represent: wait as `wait` does.
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Ok(false);
            }
            queue = self
                .shared
                .done
                .wait_timeout(queue, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Whether the ticket is durable, without waiting: `Ok(false)` while its commit is in
    /// progress, an error if it failed.
    pub fn is_durable(&self, ticket: Ticket) -> Result<bool, DurableError> {
        self.check_ticket(ticket)?;
        Shared::outcome(&self.shared.lock_queue(), ticket.seq)
            .map_or(Ok(false), |outcome| outcome.map(|()| true))
    }

    /// Waits, without blocking the executor, until the ticket's changes are durable or the
    /// commit holding them failed.
    #[cfg(feature = "tokio")]
    pub async fn wait_async(&self, ticket: Ticket) -> Result<(), DurableError> {
        self.check_ticket(ticket)?;
        let mut progress = self.shared.progress.subscribe();
        if let Some(outcome) = Shared::outcome(&self.shared.lock_queue(), ticket.seq) {
            return outcome;
        }
        // The writer updates the queue before it publishes, so once the watched value says
        // the ticket is decided, the queue says how. The sender lives as long as `self`.
        let _ = progress
            .wait_for(|p| p.durable >= ticket.seq || p.failed)
            .await;
        Shared::outcome(&self.shared.lock_queue(), ticket.seq)
            .unwrap_or(Err(DurableError::WriterStopped))
    }

    /// Runs `f` on the address manager. It sees every operation that has run, including those
    /// whose changes are not durable yet: to acknowledge something based on what `f` saw, use
    /// [`submit`](Self::submit) with an operation that changes nothing, and wait for its
    /// ticket.
    pub fn read<R>(&self, f: impl FnOnce(&Ipam) -> R) -> R {
        // After a panic in an operation, reads still see the (possibly half-changed) state;
        // writes are refused.
        let ipam = self
            .shared
            .ipam
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&ipam)
    }

    /// Stops the writer after it has committed everything queued, and returns the store; an
    /// error if anything queued could not be committed.
    pub fn close(mut self) -> Result<S, DurableError> {
        let store = self.stop();
        let queue = self.shared.lock_queue();
        match (&queue.failure, store) {
            (Some(failure), _) => Err(failure.for_ticket()),
            (None, Some(store)) => Ok(store),
            (None, None) => Err(DurableError::WriterStopped),
        }
    }

    /// Asks the writer to commit what is queued and stop, and joins it.
    fn stop(&mut self) -> Option<S> {
        let writer = self.writer.take()?;
        self.shared.lock_queue().shutdown = true;
        self.shared.work.notify_one();
        writer.join().ok()
    }

    fn check_ticket(&self, ticket: Ticket) -> Result<(), DurableError> {
        if ticket.instance == self.shared.instance {
            Ok(())
        } else {
            Err(DurableError::ForeignTicket)
        }
    }
}

impl<S: Store> Drop for Durable<S> {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
