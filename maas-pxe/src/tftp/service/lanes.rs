//! Lanes: read transfers on threads of their own.
//!
//! A transfer waits for an ACK after each window, and in lock-step (window 1) after each
//! block: a chain of wake-ups whose speed is how fast each wake-up is. A task that sleeps until
//! its ACK arrives pays for the wake-up of a sleeping thread each time; on a virtual machine
//! whose CPU went idle that is an exit to the hypervisor and back, tens of microseconds, more
//! than the rest of a lock-step round trip. A lane is a thread with a single-threaded runtime
//! of its own; each read transfer goes to the least busy lane, and a transfer alone on its
//! lane may poll its socket for the next ACK for a few tens of microseconds before it sleeps
//! (see `Spin`), which no task on a shared runtime may do without holding up the others.
//!
//! There is one lane per CPU the process may use, less one, so that polling lanes never take
//! every CPU; none on a single CPU, where polling would only keep the client from running
//! (transfers then run on the caller's runtime, as uploads always do).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// One thread and its runtime.
pub(super) struct Lane {
    /// The lane's number, from 0.
    pub(super) index: usize,
    handle: Handle,
    active: Arc<AtomicUsize>,
    /// Dropped with the lane: the thread's runtime then stops, ending its tasks.
    _stop: oneshot::Sender<()>,
}

impl Lane {
    /// The lane's count of running transfers.
    pub(super) fn transfers(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.active)
    }

    /// Runs `task` on the lane, counted as one of its transfers until it ends or is dropped.
    pub(super) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let active = Arc::clone(&self.active);
        active.fetch_add(1, Ordering::Relaxed);
        let guard = Running(active);
        self.handle.spawn(async move {
            let _guard = guard;
            task.await;
        });
    }
}

/// Decrements a lane's count when its transfer ends, however it ends.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The lanes, stopped when dropped.
pub(super) struct Lanes {
    lanes: Vec<Lane>,
}

impl Lanes {
    /// `count` lanes, or `None` for none (zero, or a thread cannot be started).
    pub(super) fn start(count: usize) -> Option<Self> {
        if count == 0 {
            return None;
        }
        let lanes = (0..count)
            .map(start_lane)
            .collect::<io::Result<Vec<_>>>()
            .ok()?;
        Some(Self { lanes })
    }

    /// The default number of lanes: one per CPU the process may use, less one.
    pub(super) fn default_count() -> usize {
        std::thread::available_parallelism().map_or(0, |n| n.get() - 1)
    }

    /// The least busy lane.
    pub(super) fn pick(&self) -> &Lane {
        self.lanes
            .iter()
            .min_by_key(|l| l.active.load(Ordering::Relaxed))
            .unwrap_or(&self.lanes[0])
    }
}

fn start_lane(index: usize) -> io::Result<Lane> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("tftp-lane-{index}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => {
                    let _ = ready_tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })?;
    let handle = ready_rx
        .recv()
        .map_err(|_| io::Error::other("lane thread ended before starting"))??;
    Ok(Lane {
        index,
        handle,
        active: Arc::default(),
        _stop: stop,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn transfers_go_to_the_least_busy_lane_and_are_counted_until_they_end() {
        let lanes = Lanes::start(3).expect("three lanes");
        let (release, released) = tokio::sync::watch::channel(false);
        let (ran_tx, ran_rx) = std::sync::mpsc::channel();
        let mut picked = Vec::new();
        for _ in 0..6 {
            let lane = lanes.pick();
            picked.push(lane.index);
            let (mut released, ran_tx) = (released.clone(), ran_tx.clone());
            let index = lane.index;
            lane.spawn(async move {
                let _ = ran_tx.send((index, std::thread::current().name().map(String::from)));
                let _ = released.wait_for(|r| *r).await;
            });
        }
        picked.sort_unstable();
        assert_eq!(picked, [0, 0, 1, 1, 2, 2], "spread evenly");
        for _ in 0..6 {
            let (index, thread) = ran_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the lane ran its task");
            assert_eq!(thread, Some(format!("tftp-lane-{index}")));
        }
        assert!(
            lanes
                .lanes
                .iter()
                .all(|l| l.active.load(Ordering::Relaxed) == 2)
        );
        release.send_replace(true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while lanes
            .lanes
            .iter()
            .any(|l| l.active.load(Ordering::Relaxed) > 0)
        {
            assert!(Instant::now() < deadline, "a count stayed up");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn no_lanes_asked_none_started() {
        assert!(Lanes::start(0).is_none());
    }
}
