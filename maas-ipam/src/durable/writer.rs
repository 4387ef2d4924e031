//! The writer thread: group commits from the queue, and reloading the address manager from
//! the store after a refusal or on request.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use super::error::SharedError;
use super::shared::{Failure, Shared};
use crate::{Change, Ipam, Store};

/// The most changes the writer puts in one commit. An operation's changes are never split, so
/// a batch holds more when a single operation made more.
pub(super) const MAX_BATCH_CHANGES: usize = 4096;

/// Marks the writer as stopped if it ends without saying so (a panic in the store), so that no
/// waiter waits for it.
struct WriterGuard<'a>(&'a Shared);

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.lock_queue();
        if !queue.ends.is_empty() || queue.durable_seq < queue.last_seq {
            self.0.fail(&mut queue, Failure::WriterStopped);
        }
    }
}

/// The writer thread: commits what is queued, a batch at a time, until shutdown with nothing
/// pending or a failed commit. Returns the store.
pub(super) fn write_loop<S: Store>(shared: &Shared, mut store: S) -> S {
    let _guard = WriterGuard(shared);
    let mut batch: Vec<Change> = Vec::new();
    // Operations in the previous commit: more than one means callers queue concurrently.
    let mut previous_ops = 0;
    // Held from a refresh request to its reload: no operation joins the queue meanwhile, so
    // the commits before the reload end, however busy the manager is.
    let mut hold: Option<MutexGuard<'_, Ipam>> = None;
    loop {
        if hold.is_none() && shared.lock_queue().refresh {
            hold = shared.ipam.lock().ok();
        }
        let (first, last) = {
            let mut queue = shared.lock_queue();
            while !queue.urgent && !queue.refresh && !queue.shutdown && queue.failure.is_none() {
                queue.writer_idle = true;
                queue = shared
                    .work
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                queue.writer_idle = false;
            }
            if queue.refresh && queue.ends.is_empty() && queue.failure.is_none() {
                queue.refresh = false;
                drop(queue);
                if let Err(failure) = refresh(shared, &mut store, hold.take()) {
                    shared.fail(&mut shared.lock_queue(), failure);
                    return store;
                }
                continue;
            }
            let delay = shared.commit_delay_us.load(Ordering::Relaxed);
            if delay > 0
                && hold.is_none()
                && previous_ops > 1
                && !queue.shutdown
                && queue.changes.len() < MAX_BATCH_CHANGES
            {
                // Nobody signals the writer while it is not idle: this sleeps for the delay
                // (or until shutdown), letting more operations join the commit.
                queue = shared
                    .work
                    .wait_timeout(queue, Duration::from_micros(delay))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if queue.failure.is_some() {
                return store;
            }
            let (Some(&(first, _)), Some(&(mut last, _))) = (queue.ends.front(), queue.ends.back())
            else {
                // Shut down with nothing pending.
                return store;
            };
            if queue.changes.len() <= MAX_BATCH_CHANGES {
                // Everything: hand the queue's buffer over and give it the empty one.
                previous_ops = queue.ends.len();
                std::mem::swap(&mut batch, &mut queue.changes);
                queue.ends.clear();
                queue.urgent = false;
            } else {
                // Whole operations, up to the bound (or the first one alone if it is larger).
                let mut units = 0;
                let mut cut = 0;
                for &(seq, end) in &queue.ends {
                    if units > 0 && end > MAX_BATCH_CHANGES {
                        break;
                    }
                    (units, cut, last) = (units + 1, end, seq);
                }
                batch.extend(queue.changes.drain(..cut));
                queue.ends.drain(..units);
                previous_ops = units;
                for (_, end) in &mut queue.ends {
                    *end -= cut;
                }
                if queue.ends.is_empty() {
                    queue.urgent = false;
                }
            }
            (first, last)
        };
        let result = store.commit_owned(&mut batch);
        batch.clear();
        if batch.capacity() > 4 * MAX_BATCH_CHANGES {
            batch.shrink_to(MAX_BATCH_CHANGES);
        }
        let mut queue = shared.lock_queue();
        match result {
            Ok(()) => {
                queue.durable_seq = last;
                shared.publish(&queue);
                drop(queue);
                shared.done.notify_all();
            }
            Err(e) if S::is_refusal(&e) => {
                debug_assert_eq!(first, queue.durable_seq + 1);
                drop(queue);
                if let Err(failure) = reload(shared, &mut store, Arc::new(e), hold.take()) {
                    shared.fail(&mut shared.lock_queue(), failure);
                    return store;
                }
            }
            Err(e) => {
                debug_assert_eq!(first, queue.durable_seq + 1);
                shared.fail(&mut queue, Failure::Commit(Arc::new(e)));
                return store;
            }
        }
    }
}

/// [`Durable::refresh`]: replaces the address manager with one loaded from the store, under
/// the manager's lock (`held`, or taken here), unless operations were queued meanwhile (they
/// are committed first, and the refresh waits for the next turn). A store that cannot be read
/// leaves the manager as it was; only a failure to store what loading changed is final.
///
/// [`Durable::refresh`]: super::Durable::refresh
fn refresh<'a, S: Store>(
    shared: &'a Shared,
    store: &mut S,
    held: Option<MutexGuard<'a, Ipam>>,
) -> Result<(), Failure> {
    let Some(mut ipam) = held.or_else(|| shared.ipam.lock().ok()) else {
        return Ok(());
    };
    {
        let mut queue = shared.lock_queue();
        if !queue.ends.is_empty() {
            queue.refresh = true;
            return Ok(());
        }
    }
    let Ok(snapshot) = store.load() else {
        return Ok(());
    };
    let Ok(mut fresh) = Ipam::from_snapshot(snapshot) else {
        return Ok(());
    };
    let initial = fresh.take_changes();
    if !initial.is_empty() {
        store
            .commit(&initial)
            .map_err(|e| Failure::Commit(Arc::new(e)))?;
    }
    *ipam = fresh;
    Ok(())
}

/// After the store refused a batch: fails the batch's operations and every one queued after
/// it (they ran on a state holding the refused changes) and replaces the address manager with
/// one loaded from the store. Holding the manager's lock throughout keeps operations out until
/// the reloaded state is in place; a failure to reload is final.
fn reload<'a, S: Store>(
    shared: &'a Shared,
    store: &mut S,
    refusal: SharedError,
    held: Option<MutexGuard<'a, Ipam>>,
) -> Result<(), Failure> {
    // Lock order: the manager, then the queue. A panicked operation left it unusable anyway.
    let Some(mut ipam) = held.or_else(|| shared.ipam.lock().ok()) else {
        return Err(Failure::Commit(refusal));
    };
    let snapshot = store.load().map_err(|e| Failure::Commit(Arc::new(e)))?;
    let mut fresh = Ipam::from_snapshot(snapshot).map_err(|e| Failure::Commit(Arc::new(e)))?;
    let initial = fresh.take_changes();
    if !initial.is_empty() {
        store
            .commit(&initial)
            .map_err(|e| Failure::Commit(Arc::new(e)))?;
    }
    let mut queue = shared.lock_queue();
    let (first, last) = (queue.durable_seq + 1, queue.last_seq);
    queue.refused.push((first, last, refusal));
    queue.changes.clear();
    queue.ends.clear();
    queue.urgent = false;
    // A sequence number of its own for the reloaded state, so that operations that change
    // nothing from here on are not taken for ones that saw the refused changes.
    queue.last_seq += 1;
    queue.durable_seq = queue.last_seq;
    shared.publish(&queue);
    drop(queue);
    *ipam = fresh;
    drop(ipam);
    shared.done.notify_all();
    Ok(())
}
