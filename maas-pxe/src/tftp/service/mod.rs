//! The TFTP service on tokio: the sans-IO [`Transfer`](super::Transfer) on UDP sockets, and
//! [`fetch`], the [`Client`](super::Client) on a socket.
//!
//! Each accepted request gets its own task and, by default, its own socket on an ephemeral
//! port (RFC 1350's transfer ID), connected to the client so the kernel drops anything from
//! elsewhere. With [`ServiceConfig::single_port`] every transfer shares the well-known port
//! (for firewalls that only open 69), datagrams dispatched by the client's address. Tasks are
//! cheap: thousands of transfers run on a handful of threads. Read transfers run on threads of
//! their own, one per CPU less one ([`ServiceConfig::lanes`]), where one alone on its thread
//! polls for its next ACK for a few tens of microseconds before it sleeps
//! ([`ServiceConfig::ack_spin_us`]): a lock-step transfer is one wake-up per block, and on a
//! virtual machine the wake-up of an idle CPU costs more than the rest of the round trip.
//!
//! Limits, all answered without amplification: new requests from one IP address beyond a
//! rate are dropped unanswered; transfers beyond the per-client or global limit get a short
//! ERROR; a retransmitted request for a transfer already running is ignored.
//!
//! A window goes out in few system calls: segmented sends (UDP GSO, each segment a whole DATA
//! packet, 64 KB per call) when the blocks fit the path's MTU, `sendmmsg` otherwise, on the
//! transfer's own socket or addressed from the shared one. A file of at least 1 MiB or a
//! generated file is sent with no copy in user space (the kernel gathers each payload from a
//! shared mapping of the file, kept for the next transfers of the same file, or from the
//! shared bytes); a shorter file is read with one `preadv` per window. Write requests are
//! refused unless [`ServiceConfig::write`] names a directory; uploads are then stored there by
//! [`UploadDir`], visible only once complete.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;

use super::negotiate::ServerConfig;
use super::provider::FileProvider;
use super::server::Summary;
use super::upload::{UploadDir, WriteConfig};

mod fetch;
mod lanes;
mod listener;
mod send;
mod transfer;

pub use fetch::{fetch, fetch_chunks, fetch_to};

/// How the service listens and what it allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Where requests arrive. Default `0.0.0.0:69`.
    pub listen: SocketAddr,
    /// Negotiation and retransmission.
    pub server: ServerConfig,
    /// Serve every transfer from the listening port instead of one port each.
    pub single_port: bool,
    /// Transfers at once, in all. Default 10,000.
    pub max_sessions: usize,
    /// Transfers at once from one IP address. Default 128.
    pub max_sessions_per_client: usize,
    /// New requests accepted per second from one IP address (a token bucket). Default 200.
    pub requests_per_second: f64,
    /// How many requests one IP address may send in a burst. Default 400.
    pub request_burst: f64,
    /// Accept write requests into this directory (refused with error 2 when `None`, the
    /// default).
    pub write: Option<WriteConfig>,
    /// Threads of their own for read transfers (each on the least busy): `None` (the
    /// default) for one per CPU the process may use, less one (so none on a single CPU);
    /// `Some(0)` for none. Without lanes, and in single-port mode, transfers run on the
    /// caller's runtime, as uploads always do. See [`ack_spin_us`](Self::ack_spin_us).
    pub lanes: Option<usize>,
    /// How many microseconds a transfer alone on its lane ([`lanes`](Self::lanes)) polls its
    /// socket for the next ACK before it sleeps (zero: never). Polling keeps the CPU busy for up to this long per
    /// block and saves the wake-up when the ACK comes in time; after a poll that ends empty
    /// the transfer polls for fewer and fewer ACKs (one in 64 at least), so a client slower
    /// than this costs next to nothing. Default 50.
    pub ack_spin_us: u32,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 69)),
            server: ServerConfig::default(),
            single_port: false,
            max_sessions: 10_000,
            max_sessions_per_client: 128,
            requests_per_second: 200.0,
            request_burst: 400.0,
            write: None,
            lanes: None,
            ack_spin_us: 50,
        }
    }
}

/// Counters of the service, updated as transfers go.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: AtomicU64,
    refused: AtomicU64,
    rate_limited: AtomicU64,
    session_limited: AtomicU64,
    started: AtomicU64,
    active: AtomicU64,
    completed: AtomicU64,
    aborted: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    packets: AtomicU64,
    retransmitted: AtomicU64,
    duration_us: AtomicU64,
}

/// A copy of the [`Metrics`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Datagrams received on the listening port (requests and strays).
    pub requests: u64,
    /// Requests answered with an ERROR (not found, refused, malformed, over a limit).
    pub refused: u64,
    /// Requests dropped by the per-address rate limit.
    pub rate_limited: u64,
    /// Requests refused by a session limit.
    pub session_limited: u64,
    /// Transfers started.
    pub started: u64,
    /// Transfers running.
    pub active: u64,
    /// Transfers completed.
    pub completed: u64,
    /// Transfers the client aborted with an ERROR.
    pub aborted: u64,
    /// Transfers whose client stopped answering.
    pub timed_out: u64,
    /// Transfers ended by a read error.
    pub failed: u64,
    /// File bytes acknowledged by clients.
    pub bytes: u64,
    /// DATA packets sent.
    pub packets: u64,
    /// DATA and OACK packets sent again.
    pub retransmitted: u64,
    /// The sum of the durations of ended transfers, in microseconds.
    pub duration_us: u64,
}

impl Metrics {
    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            requests: g(&self.requests),
            refused: g(&self.refused),
            rate_limited: g(&self.rate_limited),
            session_limited: g(&self.session_limited),
            started: g(&self.started),
            active: g(&self.active),
            completed: g(&self.completed),
            aborted: g(&self.aborted),
            timed_out: g(&self.timed_out),
            failed: g(&self.failed),
            bytes: g(&self.bytes),
            packets: g(&self.packets),
            retransmitted: g(&self.retransmitted),
            duration_us: g(&self.duration_us),
        }
    }

    fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// One ended transfer, as reported to [`Service::on_event`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The client.
    pub peer: SocketAddr,
    /// The file name requested.
    pub file: String,
    /// `completed`, `aborted`, `timed_out` or `failed`.
    pub outcome: &'static str,
    /// The client's error code, for `aborted`.
    pub error_code: Option<u16>,
    /// The client's message or the read error.
    pub message: Option<String>,
    /// The lane that ran the transfer ([`ServiceConfig::lanes`]), if one did.
    pub lane: Option<usize>,
    /// What was sent.
    #[serde(flatten)]
    pub summary: Summary,
}

type Callback = Arc<dyn Fn(&Record) + Send + Sync>;

/// The TFTP service: bound, not yet serving.
pub struct Service {
    socket: Arc<UdpSocket>,
    config: ServiceConfig,
    provider: Arc<dyn FileProvider>,
    metrics: Arc<Metrics>,
    on_event: Option<Callback>,
    uploads: Option<UploadDir>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config)
            .field("metrics", &self.metrics.snapshot())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Binds the listening socket.
    pub async fn bind(config: ServiceConfig, provider: Arc<dyn FileProvider>) -> io::Result<Self> {
        let uploads = match &config.write {
            Some(w) => Some(UploadDir::new(&w.dir, w.overwrite).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("upload directory {}: {e}", w.dir.display()),
                )
            })?),
            None => None,
        };
        let socket = UdpSocket::bind(config.listen).await?;
        Ok(Self {
            uploads,
            socket: Arc::new(socket),
            config,
            provider,
            metrics: Arc::default(),
            on_event: None,
        })
    }

    /// The address requests arrive on (with the port chosen when `listen` had port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The service's counters (shared: they keep counting once serving).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Calls `f` for every transfer that ends.
    pub fn on_event(&mut self, f: impl Fn(&Record) + Send + Sync + 'static) -> &mut Self {
        self.on_event = Some(Arc::new(f));
        self
    }
}
