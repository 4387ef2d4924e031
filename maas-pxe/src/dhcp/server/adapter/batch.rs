//! The receive loop shared by DHCPv4 and DHCPv6: one task per socket takes every datagram
//! the kernel has queued, answers what it can at once, and sends the acknowledgements that
//! wait for the lease store in order as their commits end.
//!
//! Under load one wake-up then serves a batch of datagrams and one commit a batch of
//! acknowledgements; a task per reply or per datagram would cost a wake-up (a context switch
//! on another core, often) each, which is most of a lease's CPU time at thousands of leases a
//! second.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};

use maas_net::Timestamp;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::{Context, Endpoint, Engine, Queued, ServiceError, pause_after};
use crate::dhcp::server::{Event, Handled, LeaseError, Leases, Transmit};

/// The ticket type of an engine's lease store.
pub(super) type TicketOf<S> = <<S as Engine>::Store as Leases>::Ticket;

/// Receives one datagram (non-blocking) and hands it to the engine.
pub(super) type HandleFn<S> =
    fn(&Context<S>, &Endpoint, &mut [u8], Timestamp) -> io::Result<Handled<TicketOf<S>>>;

/// Reports a decision and puts its reply in the outbox, or gives them back to wait for the
/// store.
pub(super) type FinishFn<S> = fn(
    &Arc<Context<S>>,
    &Arc<Endpoint>,
    Handled<TicketOf<S>>,
    &mut Vec<Transmit>,
) -> Option<Queued<TicketOf<S>>>;

/// Sends replies, as few system calls as the kernel allows.
pub(super) type SendFn<S> = fn(&Context<S>, &Endpoint, &[Transmit]);

/// Datagrams taken per wake-up before the loop looks at finished commits again.
const BATCH: usize = 256;

type Wait = Pin<Box<dyn Future<Output = Result<(), LeaseError>> + Send>>;

/// Serves `endpoint` until the task is aborted.
///
/// Replies go out together at the end of each turn of the loop (one `sendmmsg`), not one
/// system call each: besides the calls, that spares a switch to the client that a reply
/// wakes on a shared core at every send.
///
/// The socket is watched (registered with the runtime's poller) only while the task waits for
/// it: while it rests after a batch it is not, since every datagram arriving on a watched
/// socket wakes the runtime's thread, whether or not a task waits for it (at thousands of
/// datagrams a second that was one wake-up per datagram, the rest notwithstanding). When the
/// rest ends the task reads what arrived meanwhile without asking the poller, and watches the
/// socket again only once it finds it empty.
pub(super) async fn receive<S: Engine>(
    context: Arc<Context<S>>,
    endpoint: Arc<Endpoint>,
    handle: HandleFn<S>,
    finish: FinishFn<S>,
    send: SendFn<S>,
) {
    let mut buf = vec![0u8; super::RECEIVE_BUFFER];
    let mut outbox: Vec<Transmit> = Vec::new();
    // Decisions waiting for the store, oldest first; `waiting` is the oldest one's wait.
    let mut queue: VecDeque<Queued<TicketOf<S>>> = VecDeque::new();
    let mut waiting: Option<(Option<Transmit>, Event, Wait)> = None;
    // After a batch, the socket is left alone until then (see `ServiceConfig::coalesce`).
    let mut resting: Option<tokio::time::Instant> = None;
    let coalesce = context.config.coalesce;
    // While the socket is watched: this task's own descriptor of it, registered with the
    // poller (tasks sharing a socket each watch their own; dropping it unwatches).
    let mut watched: Option<UdpSocket> = None;
    // A batch ended before the socket was empty, and no rest follows: read on.
    let mut again = false;
    loop {
        let mut take = false;
        tokio::select! {
            biased;
            outcome = front(&mut waiting), if waiting.is_some() && resting.is_none() => {
                if let Some((transmit, event, _)) = waiting.take() {
                    deliver(&context, &endpoint, transmit, event, outcome, &mut outbox);
                }
            }
            () = rest(resting), if resting.is_some() => {
                resting = None;
                take = true;
            }
            () = tokio::task::yield_now(), if again => take = true,
            ready = readable(&mut watched, &endpoint.socket), if resting.is_none() => match ready {
                Ok(()) => take = true,
                Err(error) => {
                    watched = None;
                    pause_after(&context, &endpoint, error).await;
                }
            },
        }
        if take {
            // Until the socket is empty (its readiness was cleared: nothing else says there
            // is more), or the batch is full.
            let (mut taken, mut empty) = (0, false);
            while taken < BATCH {
                let now = Timestamp::now();
                match handle(&context, &endpoint, &mut buf, now) {
                    Ok(handled) => queue.extend(finish(&context, &endpoint, handled, &mut outbox)),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        empty = true;
                        break;
                    }
                    Err(error) => {
                        // What is answered already does not wait out the pause.
                        if !outbox.is_empty() {
                            send(&context, &endpoint, &outbox);
                            outbox.clear();
                        }
                        pause_after(&context, &endpoint, error).await;
                    }
                }
                taken += 1;
            }
            again = !empty && coalesce.is_zero();
            if taken > 0 && !coalesce.is_zero() {
                // Rest, unwatched.
                watched = None;
                resting = Some(tokio::time::Instant::now() + coalesce);
                // While the socket rests, a commit that ends does not wake the task: its
                // acknowledgements go out when the rest ends, with the next batch's wake-up
                // (one wake-up instead of two). Polling the wait with a waker that does
                // nothing replaces the task's; nothing is lost, as the rest's end polls it
                // again with the task's own.
                if let Some((_, _, wait)) = &mut waiting
                    && let Poll::Ready(outcome) = wait
                        .as_mut()
                        .poll(&mut std::task::Context::from_waker(Waker::noop()))
                    && let Some((transmit, event, _)) = waiting.take()
                {
                    deliver(&context, &endpoint, transmit, event, outcome, &mut outbox);
                }
            }
        }
        // Wait for the oldest queued decision; settle at once those whose commit has ended.
        while waiting.is_none() {
            let Some(Queued {
                transmit,
                ticket,
                event,
            }) = queue.pop_front()
            else {
                break;
            };
            let store = Arc::clone(&context);
            let mut wait: Wait =
                Box::pin(async move { store.server.store().wait_async(ticket).await });
            match wait
                .as_mut()
                .poll(&mut std::task::Context::from_waker(Waker::noop()))
            {
                Poll::Ready(outcome) => {
                    deliver(&context, &endpoint, transmit, event, outcome, &mut outbox);
                }
                Poll::Pending => waiting = Some((transmit, event, wait)),
            }
        }
        if !outbox.is_empty() {
            send(&context, &endpoint, &outbox);
            outbox.clear();
        }
    }
}

/// Waits until `socket` is readable, watching it first (through a descriptor of its own)
/// if it is not watched. The readiness is cleared: the caller reads until the socket would
/// block.
async fn readable(watched: &mut Option<UdpSocket>, socket: &std::net::UdpSocket) -> io::Result<()> {
    let own = match watched {
        Some(own) => own,
        None => watched.insert(UdpSocket::from_std(socket.try_clone()?)?),
    };
    own.readable().await?;
    // Forget the readiness: the datagrams are read from `socket` until it would block, and a
    // datagram arriving later makes the watched descriptor ready again.
    let _ = own.try_io(Interest::READABLE, || {
        Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
    });
    Ok(())
}

/// Sleeps until `until`.
async fn rest(until: Option<tokio::time::Instant>) {
    if let Some(until) = until {
        tokio::time::sleep_until(until).await;
    }
}

/// The oldest waiting reply's outcome (never resolves when none waits).
async fn front(waiting: &mut Option<(Option<Transmit>, Event, Wait)>) -> Result<(), LeaseError> {
    match waiting {
        Some((_, _, wait)) => wait.await,
        None => std::future::pending().await,
    }
}

/// Reports a decision whose change is durable and puts its reply in the outbox; reports the
/// failure instead (nothing is sent) when the change could not be made durable.
pub(super) fn deliver<S>(
    context: &Context<S>,
    endpoint: &Endpoint,
    transmit: Option<Transmit>,
    event: Event,
    outcome: Result<(), LeaseError>,
    outbox: &mut Vec<Transmit>,
) {
    match outcome {
        Ok(()) => {
            context.event(&endpoint.name, &event);
            outbox.extend(transmit);
        }
        Err(e) => context.error(Some(&endpoint.name), &ServiceError::Durability(e)),
    }
}
