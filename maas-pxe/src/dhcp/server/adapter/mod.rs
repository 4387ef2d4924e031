//! The DHCP service on tokio (Linux): sockets, timers and tasks around [`Server4`] and
//! [`Server6`].
//!
//! [`serve4`] and [`serve6`] open sockets on the configured interfaces and answer on them
//! until the returned [`ServiceHandle`] is shut down or dropped:
//!
//! - **Interfaces.** Each interface gets its own sockets, bound to it (`SO_BINDTODEVICE`):
//!   DHCPv4 on `0.0.0.0:67` (and `0.0.0.0:4011` for ProxyDHCP when asked), DHCPv6 on
//!   `[::]:547` in the `ff02::1:2` group. The server's address passed to the engine
//!   ([`Received::local`]) is the one the kernel reports for the datagram (`IP_PKTINFO`'s
//!   `ipi_spec_dst`), else the interface's first IPv4 address; for DHCPv6, the datagram's
//!   unicast destination, else the interface's first global address, else its link-local one.
//! - **Replies to clients without an address.** A [`Destination::Hardware`] reply is
//!   broadcast on the receiving interface, like [`Destination::Broadcast`]: a client that has
//!   no address yet cannot answer ARP, and firmware and clients that did not set the
//!   broadcast flag (dhclient, edk2) accept a broadcast reply all the same. Replies leave from
//!   the engine's [`Transmit::source`] on the receiving interface (`IP_PKTINFO` on send).
//! - **Batches.** Each socket has one task that, once woken, takes every datagram queued
//!   (up to 256), then leaves the socket alone for [`ServiceConfig::coalesce`] (1 ms by
//!   default): under load one wake-up serves many requests instead of one each, which is
//!   most of a lease's CPU cost at thousands of leases a second. A lone request on an idle
//!   server is still answered at once.
//! - **Storage never blocks receiving.** A decision that waits for the lease store
//!   ([`Handled::ticket`]) joins the task's queue and, in order, is reported and its reply sent
//!   when its commit has ended, while the task goes on taking requests; the store commits many
//!   clients' changes at once. So a [`Report::Event`] of a lease change means the change is
//!   durable. A failed wait drops the reply and reports the failure instead of the event.
//!   A commit that ends while the socket rests does not wake the task: its replies go out
//!   when the rest ends, in the same wake-up as the next batch.
//! - **Conflict probes** ([`Handled::probe`]) run in their own task: one ICMP echo with a
//!   bounded wait ([`ServiceConfig::probe_timeout`]), then [`Server4::probe_result`].
//! - **Cores.** The engine takes `&self`: [`ServiceConfig::workers`] tasks may share each DHCP
//!   socket (default 1: one task keeps up with tens of thousands of datagrams a second, and
//!   more tasks on one socket wake each other for nothing).
//! - **Expiry.** Every [`ServiceConfig::expire_every`], [`Leases::expire`] runs with the
//!   current time. The adapter is the only place that reads the clock
//!   ([`Timestamp::now`]).
//!
//! Everything the service decides or fails to do goes to the caller's `report` callback as a
//! [`Report`], once per datagram; it is called from the service's tasks, so keep it short.
//!
//! ```no_run
//! # #[cfg(feature = "ipam")]
//! # async fn run(
//! #     server: maas_pxe::dhcp::server::Server4<std::sync::Mutex<maas_ipam::Ipam>>,
//! #     stop: impl std::future::Future<Output = ()>,
//! # ) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use maas_pxe::dhcp::server::{InterfaceConfig, Report, ServiceConfig, serve4};
//!
//! let interfaces = [InterfaceConfig::new("eth1")];
//! let service = serve4(Arc::new(server), &interfaces, &ServiceConfig::default(), |r: &Report<'_>| {
//!     if let Report::Event { interface, event } = r {
//!         println!("{interface}: {event:?}");
//!     }
//! })
//! .await?;
//! stop.await; // e.g. SIGTERM
//! service.shutdown();
//! # Ok(())
//! # }
//! ```

mod batch;
mod mmsg;
mod probe;
mod sys;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use maas_net::Timestamp;
use serde::Serialize;
use tokio::task::JoinHandle;

use super::{
    CLIENT_PORT, Destination, Event, Handled, LeaseError, Leases, PXE_PORT, Received, Received6,
    SERVER_PORT, SERVER_PORT_V6, Server4, Server6, ServerPort, Transmit,
};

/// Big enough for any UDP payload: a DHCP message is never truncated.
const RECEIVE_BUFFER: usize = 65_536;
/// How long a receive loop rests after an unexpected socket error, so a persistent one does
/// not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// One interface to serve on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// The interface's name (`eth1`, `br0`).
    pub name: String,
    /// Also listen on port 4011 for PXE boot-server requests (ProxyDHCP; DHCPv4 only).
    #[serde(default)]
    pub pxe_port: bool,
}

impl InterfaceConfig {
    /// Serve on interface `name`, on the DHCP port only.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pxe_port: false,
        }
    }

    /// Also listen on port 4011 (ProxyDHCP boot-server requests).
    pub fn pxe_port(&mut self, on: bool) -> &mut Self {
        self.pxe_port = on;
        self
    }
}

/// How the service runs; every field has a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Tasks receiving on each DHCP socket (at least 1). Default 1.
    pub workers: usize,
    /// How often expired offers, leases and quarantines are ended; `None` never (the caller
    /// runs [`Leases::expire`] itself). Default 5 s.
    pub expire_every: Option<Duration>,
    /// How long a conflict probe waits for an echo reply. Default 500 ms.
    pub probe_timeout: Duration,
    /// The kernel receive buffer asked for on each DHCP socket, in bytes. A burst of requests
    /// (a rack powered on at once, a relay forwarding a backlog) queues there while the workers
    /// catch up; the kernel's default (about 200 KiB, some 150 datagrams) drops part of it.
    /// As root the size is forced past `net.core.rmem_max`; otherwise it is capped there.
    /// Default 4 MiB; 0 keeps the kernel's default.
    pub receive_buffer: usize,
    /// After taking the datagrams queued on a socket, leave it alone this long, so that
    /// under load one wake-up takes many datagrams instead of one each: a reply may leave up
    /// to this much (plus the timer's granularity, about a millisecond) later, which DHCP
    /// clients, retransmitting after seconds, do not notice. An idle server still answers a
    /// lone request at once. Acknowledgements whose commit ends during the rest go out when
    /// it ends. Default 1 ms; zero reads each datagram as it comes.
    pub coalesce: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            expire_every: Some(Duration::from_secs(5)),
            probe_timeout: Duration::from_millis(500),
            receive_buffer: 4 << 20,
            coalesce: Duration::from_millis(1),
        }
    }
}

impl ServiceConfig {
    /// Sets the receiving tasks per DHCP socket (0 counts as 1).
    pub fn workers(&mut self, workers: usize) -> &mut Self {
        self.workers = workers;
        self
    }

    /// Sets the expiry period (`None`: no expiry task).
    pub fn expire_every(&mut self, every: Option<Duration>) -> &mut Self {
        self.expire_every = every;
        self
    }

    /// Sets the receive buffer asked for on each DHCP socket (0: the kernel's default).
    pub fn receive_buffer(&mut self, bytes: usize) -> &mut Self {
        self.receive_buffer = bytes;
        self
    }

    /// Sets how long a socket rests after a batch ([`ServiceConfig::coalesce`]).
    pub fn coalesce(&mut self, rest: Duration) -> &mut Self {
        self.coalesce = rest;
        self
    }

    /// Sets the conflict probe's wait.
    pub fn probe_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.probe_timeout = timeout;
        self
    }
}

/// An interface the service listens on, as the kernel described it at start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its index: [`Received::interface`] and [`Transmit::interface`] number interfaces so.
    pub index: u32,
    /// Its IPv4 addresses.
    pub ipv4: Vec<Ipv4Addr>,
    /// Its IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
    /// The addresses the service's sockets are bound to there.
    pub listening: Vec<SocketAddr>,
}

/// What the service tells its caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum Report<'a> {
    /// The engine's decision about a datagram received on `interface`, or about a finished
    /// conflict probe; one that changed leases is reported once the change is durable.
    Event {
        /// The receiving interface's name.
        interface: &'a str,
        /// The decision.
        event: &'a Event,
    },
    /// Something failed; when it concerned a reply, the reply was not sent.
    Error {
        /// The interface concerned, if any.
        interface: Option<&'a str>,
        /// What failed.
        error: &'a ServiceError,
    },
    /// The periodic expiry ended `count` offers, leases and quarantines.
    Expired {
        /// How many.
        count: usize,
    },
}

/// What can fail while the service runs (opening it fails with an [`io::Error`] instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A socket could not receive.
    #[error("receiving failed: {0}")]
    Receive(#[source] io::Error),
    /// A reply could not be sent.
    #[error("sending a reply to {to} failed: {error}")]
    Send {
        /// Where it was going.
        to: SocketAddr,
        /// Why it failed.
        #[source]
        error: io::Error,
    },
    /// The engine gave a destination this socket family cannot reach.
    #[error("cannot send to {0:?} from this socket")]
    Destination(Destination),
    /// The lease store did not make a lease durable: its acknowledgement was dropped.
    #[error("the lease was not made durable, so its reply was dropped: {0}")]
    Durability(#[source] LeaseError),
    /// A conflict probe could not be sent; the address was treated as free.
    #[error("the conflict probe of {ip} failed, so it is offered unprobed: {error}")]
    Probe {
        /// The address to probe.
        ip: Ipv4Addr,
        /// Why it failed.
        #[source]
        error: io::Error,
    },
    /// The periodic expiry failed.
    #[error("ending expired leases failed: {0}")]
    Expire(#[source] LeaseError),
}

/// A running service: its tasks stop when it is shut down or dropped.
///
/// Replies already waiting for the lease store or a conflict probe are still sent after
/// shutdown, within the probe's timeout or the store's commit.
#[derive(Debug)]
pub struct ServiceHandle {
    interfaces: Vec<Interface>,
    tasks: Vec<JoinHandle<()>>,
}

impl ServiceHandle {
    /// The interfaces served, with the addresses learnt at start.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Stops receiving: the sockets close once the tasks holding them end.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

type ReportFn = dyn Fn(&Report<'_>) + Send + Sync;

/// What every task of one service shares.
/// What the service needs of an engine beyond answering: its lease store.
trait Engine: Send + Sync + 'static {
    type Store: Leases + 'static;
    fn store(&self) -> &Self::Store;
}

impl<L: Leases + 'static> Engine for Server4<L> {
    type Store = L;
    fn store(&self) -> &L {
        self.leases()
    }
}

impl<L: Leases + 'static> Engine for Server6<L> {
    type Store = L;
    fn store(&self) -> &L {
        self.leases()
    }
}

/// A decision whose change the store has not made durable yet: its event is reported and its
/// reply sent once it is (see [`batch`]).
struct Queued<T> {
    transmit: Option<Transmit>,
    ticket: T,
    event: Event,
}

/// Reports `handled`'s event and puts its reply in the outbox now, or gives them back to be
/// reported and sent once its ticket is durable.
fn settle<S: Engine>(
    context: &Context<S>,
    endpoint: &Endpoint,
    handled: Handled<batch::TicketOf<S>>,
    outbox: &mut Vec<Transmit>,
) -> Option<Queued<batch::TicketOf<S>>> {
    let Handled {
        transmit,
        ticket,
        event,
        ..
    } = handled;
    match ticket {
        Some(ticket) => Some(Queued {
            transmit,
            ticket,
            event,
        }),
        None => {
            context.event(&endpoint.name, &event);
            outbox.extend(transmit);
            None
        }
    }
}

struct Context<S> {
    server: Arc<S>,
    report: Box<ReportFn>,
    config: ServiceConfig,
}

impl<S> Context<S> {
    fn event(&self, interface: &str, event: &Event) {
        (self.report)(&Report::Event { interface, event });
    }

    fn error(&self, interface: Option<&str>, error: &ServiceError) {
        (self.report)(&Report::Error { interface, error });
    }
}

/// One socket on one interface.
struct Endpoint {
    socket: std::net::UdpSocket,
    name: Arc<str>,
    index: u32,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    port: ServerPort,
}

impl Endpoint {
    /// `interface`, or this endpoint's own when it is 0 (not known).
    fn or_own(&self, interface: u32) -> u32 {
        if interface == 0 {
            self.index
        } else {
            interface
        }
    }
}

/// Serves DHCPv4 with `server` on `interfaces` until the handle is dropped.
///
/// Fails when an interface does not exist or a socket cannot be opened (another DHCP server
/// on the port, or no `CAP_NET_BIND_SERVICE`/`CAP_NET_RAW` for the privileged port and
/// `SO_BINDTODEVICE`). Must run inside a tokio runtime, a multi-thread one to use every core.
pub async fn serve4<L, R>(
    server: Arc<Server4<L>>,
    interfaces: &[InterfaceConfig],
    config: &ServiceConfig,
    report: R,
) -> io::Result<ServiceHandle>
where
    L: Leases + 'static,
    R: Fn(&Report<'_>) + Send + Sync + 'static,
{
    let mut endpoints = Vec::new();
    let mut described = Vec::new();
    for interface in interfaces {
        let link = sys::link(&interface.name)?;
        let name: Arc<str> = Arc::from(interface.name.as_str());
        let mut listening = Vec::new();
        let mut ports = vec![(SERVER_PORT, ServerPort::Dhcp)];
        if interface.pxe_port {
            ports.push((PXE_PORT, ServerPort::Pxe));
        }
        for (number, port) in ports {
            let socket = sys::udp4(&interface.name, number, config.receive_buffer)?;
            listening.push(socket.local_addr()?);
            endpoints.push(Arc::new(Endpoint {
                socket,
                name: Arc::clone(&name),
                index: link.index,
                ipv4: link.ipv4.first().copied(),
                ipv6: None,
                port,
            }));
        }
        described.push(Interface {
            name: interface.name.clone(),
            index: link.index,
            ipv4: link.ipv4,
            ipv6: link.ipv6,
            listening,
        });
    }
    let context = Arc::new(Context {
        server,
        report: Box::new(report),
        config: config.clone(),
    });
    let mut tasks = Vec::new();
    for endpoint in endpoints {
        let workers = match endpoint.port {
            ServerPort::Dhcp => context.config.workers.max(1),
            ServerPort::Pxe => 1,
        };
        for _ in 0..workers {
            tasks.push(tokio::spawn(batch::receive(
                Arc::clone(&context),
                Arc::clone(&endpoint),
                handle4,
                finish4,
                send4,
            )));
        }
    }
    tasks.extend(spawn_expiry(&context));
    Ok(ServiceHandle {
        interfaces: described,
        tasks,
    })
}

/// Serves DHCPv6 with `server` on `interfaces` until the handle is dropped
/// ([`InterfaceConfig::pxe_port`] does not apply).
///
/// Fails like [`serve4`]; an interface also needs IPv6 enabled to join `ff02::1:2`.
pub async fn serve6<L, R>(
    server: Arc<Server6<L>>,
    interfaces: &[InterfaceConfig],
    config: &ServiceConfig,
    report: R,
) -> io::Result<ServiceHandle>
where
    L: Leases + 'static,
    R: Fn(&Report<'_>) + Send + Sync + 'static,
{
    let mut endpoints = Vec::new();
    let mut described = Vec::new();
    for interface in interfaces {
        let link = sys::link(&interface.name)?;
        let socket = sys::udp6(
            &interface.name,
            link.index,
            SERVER_PORT_V6,
            config.receive_buffer,
        )?;
        let preferred = link
            .ipv6
            .iter()
            .find(|ip| !sys::is_link_scoped(**ip) && !ip.is_loopback())
            .or_else(|| link.ipv6.first())
            .copied();
        described.push(Interface {
            name: interface.name.clone(),
            index: link.index,
            ipv4: link.ipv4,
            ipv6: link.ipv6,
            listening: vec![socket.local_addr()?],
        });
        endpoints.push(Arc::new(Endpoint {
            socket,
            name: Arc::from(interface.name.as_str()),
            index: link.index,
            ipv4: None,
            ipv6: preferred,
            port: ServerPort::Dhcp,
        }));
    }
    let context = Arc::new(Context {
        server,
        report: Box::new(report),
        config: config.clone(),
    });
    let mut tasks = Vec::new();
    for endpoint in endpoints {
        for _ in 0..context.config.workers.max(1) {
            tasks.push(tokio::spawn(batch::receive(
                Arc::clone(&context),
                Arc::clone(&endpoint),
                handle6,
                finish6,
                send6,
            )));
        }
    }
    tasks.extend(spawn_expiry(&context));
    Ok(ServiceHandle {
        interfaces: described,
        tasks,
    })
}

/// Receives one DHCPv4 datagram (non-blocking) and hands it to the engine.
fn handle4<L: Leases + 'static>(
    context: &Context<Server4<L>>,
    endpoint: &Endpoint,
    buf: &mut [u8],
    now: Timestamp,
) -> io::Result<Handled<L::Ticket>> {
    let meta = sys::recv4(&endpoint.socket, buf)?;
    let local = if meta.local.is_unspecified() {
        endpoint.ipv4.unwrap_or(Ipv4Addr::UNSPECIFIED)
    } else {
        meta.local
    };
    let rx = Received {
        bytes: &buf[..meta.len],
        source: meta.source,
        local,
        interface: endpoint.or_own(meta.interface),
        port: endpoint.port,
    };
    Ok(context.server.handle(now, &rx))
}

/// Starts `handled`'s conflict probe, if any, and settles it ([`settle`]).
fn finish4<L: Leases + 'static>(
    context: &Arc<Context<Server4<L>>>,
    endpoint: &Arc<Endpoint>,
    mut handled: Handled<L::Ticket>,
    outbox: &mut Vec<Transmit>,
) -> Option<Queued<L::Ticket>> {
    if let Some(probe) = handled.probe.take() {
        let waits = matches!(handled.event, Event::Offered { .. });
        let (context, endpoint) = (Arc::clone(context), Arc::clone(endpoint));
        tokio::spawn(async move {
            let timeout = context.config.probe_timeout;
            let in_use = match probe::ping(&endpoint.name, probe.ip, timeout).await {
                Ok(in_use) => in_use,
                Err(error) => {
                    let error = ServiceError::Probe {
                        ip: probe.ip,
                        error,
                    };
                    context.error(Some(&endpoint.name), &error);
                    false
                }
            };
            let handled = context.server.probe_result(probe, in_use, Timestamp::now());
            let mut outbox = Vec::new();
            if let Some(queued) = finish4(&context, &endpoint, handled, &mut outbox) {
                let outcome = context.server.store().wait_async(queued.ticket).await;
                batch::deliver(
                    &context,
                    &endpoint,
                    queued.transmit,
                    queued.event,
                    outcome,
                    &mut outbox,
                );
            }
            send4(&context, &endpoint, &outbox);
        });
        // An offer waiting for its probe is reported once the probe has answered.
        if waits {
            return None;
        }
    }
    settle(context, endpoint, handled, outbox)
}

/// Sends DHCPv4 replies: each run of replies from the same address out of the same interface
/// in one system call.
fn send4<S>(context: &Context<S>, endpoint: &Endpoint, transmits: &[Transmit]) {
    let mut out: Vec<sys::Out<'_, SocketAddrV4, Ipv4Addr>> = Vec::with_capacity(transmits.len());
    for transmit in transmits {
        let to = match transmit.destination {
            Destination::Relay(SocketAddr::V4(to)) | Destination::Unicast(SocketAddr::V4(to)) => to,
            // A client without an address cannot answer ARP: broadcast on its link, which
            // every client accepts whether or not it set the broadcast flag.
            Destination::Broadcast | Destination::Hardware { .. } => {
                SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
            }
            other => {
                context.error(Some(&endpoint.name), &ServiceError::Destination(other));
                continue;
            }
        };
        let source = match transmit.source {
            IpAddr::V4(source) => source,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        out.push(sys::Out {
            bytes: &transmit.bytes,
            to,
            source,
            interface: endpoint.or_own(transmit.interface),
        });
    }
    // The socket is non-blocking: a full send buffer drops a reply, as a busy link would, and
    // the client retransmits.
    sys::send4_all(&endpoint.socket, &out, |to, error| {
        let error = ServiceError::Send {
            to: SocketAddr::V4(to),
            error,
        };
        context.error(Some(&endpoint.name), &error);
    });
}

/// Receives one DHCPv6 datagram (non-blocking) and hands it to the engine.
fn handle6<L: Leases + 'static>(
    context: &Context<Server6<L>>,
    endpoint: &Endpoint,
    buf: &mut [u8],
    now: Timestamp,
) -> io::Result<Handled<L::Ticket>> {
    let meta = sys::recv6(&endpoint.socket, buf)?;
    let local = if meta.destination.is_multicast() || meta.destination.is_unspecified() {
        endpoint.ipv6.unwrap_or(Ipv6Addr::UNSPECIFIED)
    } else {
        meta.destination
    };
    let rx = Received6 {
        bytes: &buf[..meta.len],
        source: meta.source,
        local,
        interface: endpoint.or_own(meta.interface),
    };
    Ok(context.server.handle(now, &rx))
}

/// Settles `handled` ([`settle`]).
fn finish6<L: Leases + 'static>(
    context: &Arc<Context<Server6<L>>>,
    endpoint: &Arc<Endpoint>,
    handled: Handled<L::Ticket>,
    outbox: &mut Vec<Transmit>,
) -> Option<Queued<L::Ticket>> {
    settle(context, endpoint, handled, outbox)
}

/// Sends DHCPv6 replies: each run of replies from the same address out of the same interface
/// in one system call.
fn send6<S>(context: &Context<S>, endpoint: &Endpoint, transmits: &[Transmit]) {
    let mut out: Vec<sys::Out<'_, SocketAddrV6, Ipv6Addr>> = Vec::with_capacity(transmits.len());
    for transmit in transmits {
        let to = match transmit.destination {
            Destination::Relay(SocketAddr::V6(to)) | Destination::Unicast(SocketAddr::V6(to)) => to,
            other => {
                context.error(Some(&endpoint.name), &ServiceError::Destination(other));
                continue;
            }
        };
        let source = match transmit.source {
            IpAddr::V6(source) if !source.is_multicast() => source,
            _ => Ipv6Addr::UNSPECIFIED,
        };
        out.push(sys::Out {
            bytes: &transmit.bytes,
            to,
            source,
            interface: endpoint.or_own(transmit.interface),
        });
    }
    sys::send6_all(&endpoint.socket, &out, |to, error| {
        let error = ServiceError::Send {
            to: SocketAddr::V6(SocketAddrV6::new(*to.ip(), to.port(), 0, to.scope_id())),
            error,
        };
        context.error(Some(&endpoint.name), &error);
    });
}

/// Reports a receive error; rests after one that may persist.
async fn pause_after<S>(context: &Context<S>, endpoint: &Endpoint, error: io::Error) {
    let transient = error.kind() == io::ErrorKind::InvalidData;
    context.error(Some(&endpoint.name), &ServiceError::Receive(error));
    if !transient {
        tokio::time::sleep(ERROR_PAUSE).await;
    }
}

/// The periodic lease expiry task, when the configuration asks for one.
fn spawn_expiry<S: Engine>(context: &Arc<Context<S>>) -> Option<JoinHandle<()>> {
    let every = context.config.expire_every?;
    let context = Arc::clone(context);
    Some(tokio::spawn(expire(every, move || {
        let result = context.server.store().expire(Timestamp::now());
        report_expiry(&context, result);
    })))
}

async fn expire(every: Duration, run: impl Fn() + Send + 'static) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        run();
    }
}

fn report_expiry<S, T>(context: &Context<S>, result: Result<(usize, Option<T>), LeaseError>) {
    // The expiry's ticket is not waited for: nothing is acknowledged on it.
    match result {
        Ok((0, _)) => {}
        Ok((count, _)) => (context.report)(&Report::Expired { count }),
        Err(e) => context.error(None, &ServiceError::Expire(e)),
    }
}
