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

use super::{Context, Endpoint, Engine, Queued, ServiceError, pause_after};
use crate::dhcp::server::{Event, Handled, LeaseError, Leases, Transmit};

/// The ticket type of an engine's lease store.
pub(super) type TicketOf<S> = <<S as Engine>::Store as Leases>::Ticket;

/// Receives one datagram (non-blocking) and hands it to the engine.
pub(super) type HandleFn<S> =
    fn(&Context<S>, &Endpoint, &mut [u8], Timestamp) -> io::Result<Handled<TicketOf<S>>>;

/// Reports a decision and sends its reply, or gives them back to wait for the store.
pub(super) type FinishFn<S> =
    fn(&Arc<Context<S>>, &Arc<Endpoint>, Handled<TicketOf<S>>) -> Option<Queued<TicketOf<S>>>;

/// Sends a reply.
pub(super) type SendFn<S> = fn(&Context<S>, &Endpoint, &Transmit);

/// Datagrams taken per wake-up before the loop looks at finished commits again.
const BATCH: usize = 256;

type Wait = Pin<Box<dyn Future<Output = Result<(), LeaseError>> + Send>>;

/// Serves `endpoint` until the task is aborted.
pub(super) async fn receive<S: Engine>(
    context: Arc<Context<S>>,
    endpoint: Arc<Endpoint>,
    handle: HandleFn<S>,
    finish: FinishFn<S>,
    send: SendFn<S>,
) {
    let mut buf = vec![0u8; super::RECEIVE_BUFFER];
    // Decisions waiting for the store, oldest first; `waiting` is the oldest one's wait.
    let mut queue: VecDeque<Queued<TicketOf<S>>> = VecDeque::new();
    let mut waiting: Option<(Option<Transmit>, Event, Wait)> = None;
    // After a batch, the socket is left alone until then (see `ServiceConfig::coalesce`).
    let mut resting: Option<tokio::time::Instant> = None;
    let coalesce = context.config.coalesce;
    loop {
        tokio::select! {
            biased;
            outcome = front(&mut waiting), if waiting.is_some() && resting.is_none() => {
                if let Some((transmit, event, _)) = waiting.take() {
                    deliver(&context, &endpoint, transmit, event, outcome, send);
                }
            }
            () = rest(resting) , if resting.is_some() => resting = None,
            ready = endpoint.socket.readable(), if resting.is_none() => {
                if let Err(error) = ready {
                    pause_after(&context, &endpoint, error).await;
                    continue;
                }
                if !coalesce.is_zero() {
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
                        deliver(&context, &endpoint, transmit, event, outcome, send);
                    }
                }
                for _ in 0..BATCH {
                    let now = Timestamp::now();
                    let handled = endpoint.socket.try_io(Interest::READABLE, || {
                        handle(&context, &endpoint, &mut buf, now)
                    });
                    match handled {
                        Ok(handled) => queue.extend(finish(&context, &endpoint, handled)),
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                        Err(error) => {
                            pause_after(&context, &endpoint, error).await;
                            break;
                        }
                    }
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
                    deliver(&context, &endpoint, transmit, event, outcome, send);
                }
                Poll::Pending => waiting = Some((transmit, event, wait)),
            }
        }
    }
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

/// Reports a decision whose change is durable and sends its reply; reports the failure
/// instead (nothing is sent) when the change could not be made durable.
pub(super) fn deliver<S>(
    context: &Context<S>,
    endpoint: &Endpoint,
    transmit: Option<Transmit>,
    event: Event,
    outcome: Result<(), LeaseError>,
    send: SendFn<S>,
) {
    match outcome {
        Ok(()) => {
            context.event(&endpoint.name, &event);
            if let Some(transmit) = transmit {
                send(context, endpoint, &transmit);
            }
        }
        Err(e) => context.error(Some(&endpoint.name), &ServiceError::Durability(e)),
    }
}
