//! What the callers and the writer thread share: the commit queue, its progress and its
//! failure.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::error::{DurableError, SharedError};
use crate::{Change, Ipam};

/// What the callers and the writer share.
pub(super) struct Shared {
    pub(super) instance: u64,
    pub(super) ipam: Mutex<Ipam>,
    pub(super) queue: Mutex<Queue>,
    /// The writer waits here for work (or shutdown).
    pub(super) work: Condvar,
    /// Waiters wait here for durability (or failure).
    pub(super) done: Condvar,
    /// Set once `queue.failure` is: a lock-free check before running an operation.
    pub(super) failed: AtomicBool,
    /// See [`Durable::set_commit_delay`], in microseconds.
    ///
    /// [`Durable::set_commit_delay`]: super::Durable::set_commit_delay
    pub(super) commit_delay_us: AtomicU64,
    /// The durable sequence number and failure flag, for async waiters.
    #[cfg(feature = "tokio")]
    pub(super) progress: tokio::sync::watch::Sender<Progress>,
}

/// What async waiters watch.
#[cfg(feature = "tokio")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Progress {
    pub(super) durable: u64,
    pub(super) failed: bool,
}

/// The commit queue and its progress. Lock order: `ipam` before `queue`.
#[derive(Default)]
pub(super) struct Queue {
    /// The changes waiting for the writer, in order.
    pub(super) changes: Vec<Change>,
    /// The sequence number of each operation in `changes`, with the offset just past its last
    /// change, in order.
    pub(super) ends: VecDeque<(u64, usize)>,
    /// The sequence number of the last queued operation.
    pub(super) last_seq: u64,
    /// Every operation up to this sequence number is durable.
    pub(super) durable_seq: u64,
    /// Set when a commit failed or the writer stopped; final.
    pub(super) failure: Option<Failure>,
    /// The operations whose batch the store refused, as disjoint ranges of sequence numbers
    /// in increasing order (each counted in `durable_seq`, since nothing waits for them), with
    /// the refusal. One entry per refusal, kept for the life of the manager.
    pub(super) refused: Vec<(u64, u64, SharedError)>,
    /// Set on drop: the writer commits what is pending, then stops.
    pub(super) shutdown: bool,
    /// Whether the writer waits on `work` (so that callers only signal when needed).
    pub(super) writer_idle: bool,
    /// Whether some queued operation waits for a commit. Deferred operations alone do not
    /// start one: they ride along with the next.
    pub(super) urgent: bool,
    /// Set by [`Durable::refresh`]: reload the manager from the store once nothing is queued.
    ///
    /// [`Durable::refresh`]: super::Durable::refresh
    pub(super) refresh: bool,
}

/// Why nothing more becomes durable.
pub(super) enum Failure {
    /// The store failed a commit.
    Commit(SharedError),
    /// The writer thread ended without committing (a panic in the store).
    WriterStopped,
}

impl Failure {
    /// The error for a ticket that was not made durable.
    pub(super) fn for_ticket(&self) -> DurableError {
        match self {
            Self::Commit(e) => DurableError::Commit(Arc::clone(e)),
            Self::WriterStopped => DurableError::WriterStopped,
        }
    }

    /// The error for an operation refused since.
    pub(super) fn for_new_op(&self) -> DurableError {
        match self {
            Self::Commit(e) => DurableError::Poisoned(Arc::clone(e)),
            Self::WriterStopped => DurableError::WriterStopped,
        }
    }
}

impl Shared {
    pub(super) fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // No code that can panic runs under this lock; recover the guard regardless.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a failure (the first one wins), drops pending work and wakes every waiter.
    pub(super) fn fail(&self, queue: &mut Queue, failure: Failure) {
        if queue.failure.is_none() {
            queue.failure = Some(failure);
        }
        queue.changes.clear();
        queue.ends.clear();
        queue.urgent = false;
        self.failed.store(true, Ordering::Release);
        self.publish(queue);
        self.done.notify_all();
    }

    /// Tells async waiters where the writer is.
    pub(super) fn publish(&self, queue: &Queue) {
        #[cfg(feature = "tokio")]
        self.progress.send_replace(Progress {
            durable: queue.durable_seq,
            failed: queue.failure.is_some(),
        });
        #[cfg(not(feature = "tokio"))]
        let _ = queue;
    }

    /// The outcome of a ticket if it is decided: durable, or never going to be.
    pub(super) fn outcome(queue: &Queue, seq: u64) -> Option<Result<(), DurableError>> {
        if seq <= queue.durable_seq {
            let at = queue.refused.partition_point(|&(_, last, _)| last < seq);
            Some(match queue.refused.get(at) {
                Some((first, _, e)) if *first <= seq => Err(DurableError::Refused(Arc::clone(e))),
                _ => Ok(()),
            })
        } else {
            queue.failure.as_ref().map(|f| Err(f.for_ticket()))
        }
    }
}
