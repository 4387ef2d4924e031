//! The TFTP service on tokio: the sans-IO [`Transfer`] on UDP sockets, and
//! [`fetch`], the [`Client`](super::Client) on a socket.
//!
//! Each accepted request gets its own task and, by default, its own socket on an ephemeral
//! port (RFC 1350's transfer ID), connected to the client so the kernel drops anything from
//! elsewhere. With [`ServiceConfig::single_port`] every transfer shares the well-known port
//! (for firewalls that only open 69), datagrams dispatched by the client's address. Tasks are
//! cheap: thousands of transfers run on a handful of threads.
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

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg, sendmsg,
};
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::direct::{MapCache, Scratch, Source};
use super::error::ProviderError;
use super::negotiate::ServerConfig;
use super::provider::Content;
use super::provider::FileProvider;
use super::server::{DataBlock, shrank};
use super::server::{Event, Refusal, Response, Summary, Transfer, respond};
use super::upload::{PendingFile, Receive, UploadDir, WriteConfig};
use super::wire::DATA_HEADER;
use super::wire::{self, ErrorCode, Packet};

mod fetch;

pub use fetch::{fetch, fetch_to};

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

/// How many files stay mapped for direct sends between transfers.
const MAPPED_FILES: usize = 64;

/// The shared state of the accept loop and the transfer tasks.
struct Shared {
    sessions: Mutex<Sessions>,
    maps: MapCache,
    metrics: Arc<Metrics>,
    on_event: Option<Callback>,
}

#[derive(Default)]
struct Sessions {
    /// Running transfers by client address; in single-port mode, their inboxes.
    active: HashMap<SocketAddr, Option<mpsc::Sender<Vec<u8>>>>,
    per_ip: HashMap<IpAddr, usize>,
    buckets: HashMap<IpAddr, Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
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

    /// Serves until the task is dropped or the listening socket fails.
    pub async fn run(self) -> io::Result<()> {
        let shared = Arc::new(Shared {
            sessions: Mutex::default(),
            maps: MapCache::new(MAPPED_FILES),
            metrics: Arc::clone(&self.metrics),
            on_event: self.on_event.clone(),
        });
        let mut buf = vec![0u8; 65536];
        let mut out = Vec::with_capacity(128);
        loop {
            let (n, peer) = match self.socket.recv_from(&mut buf).await {
                Ok(r) => r,
                // An ICMP error for an earlier send surfaces here on some systems: not fatal.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            let datagram = &buf[..n];
            Metrics::add(&self.metrics.requests, 1);
            // A datagram for a running single-port transfer goes to its task.
            let inbox = {
                let sessions = lock(&shared.sessions);
                sessions.active.get(&peer).cloned()
            };
            if let Some(inbox) = inbox {
                if let Some(tx) = inbox {
                    let _ = tx.try_send(datagram.to_vec());
                }
                // A request retransmitted while its transfer runs is ignored.
                continue;
            }
            if !self.admit_rate(&shared, peer.ip()) {
                Metrics::add(&self.metrics.rate_limited, 1);
                continue;
            }
            let now = Instant::now();
            let (job, file) = match self.start_upload(now, datagram, peer) {
                Some(Ok((job, file))) => (job, file),
                Some(Err(r)) => {
                    Metrics::add(&self.metrics.refused, 1);
                    out.clear();
                    r.encode(&mut out);
                    let _ = self.socket.send_to(&out, peer).await;
                    continue;
                }
                None => match respond(now, datagram, peer, &*self.provider, &self.config.server) {
                    Response::Start(t) => {
                        let file = match Packet::decode(datagram) {
                            Ok(Packet::Rrq(r)) => r.filename,
                            _ => String::new(),
                        };
                        (Job::Read(t), file)
                    }
                    Response::Refuse(r) => {
                        Metrics::add(&self.metrics.refused, 1);
                        out.clear();
                        r.encode(&mut out);
                        let _ = self.socket.send_to(&out, peer).await;
                        continue;
                    }
                    Response::Ignore => continue,
                },
            };
            let inbox = if self.config.single_port {
                let (tx, rx) = mpsc::channel(256);
                Some((tx, rx))
            } else {
                None
            };
            if let Err(message) =
                self.admit_session(&shared, peer, inbox.as_ref().map(|(tx, _)| tx.clone()))
            {
                Metrics::add(&self.metrics.session_limited, 1);
                Metrics::add(&self.metrics.refused, 1);
                out.clear();
                wire::encode_error(ErrorCode::Undefined, message, &mut out);
                let _ = self.socket.send_to(&out, peer).await;
                continue;
            }
            Metrics::add(&self.metrics.started, 1);
            Metrics::add(&self.metrics.active, 1);
            let link = match inbox {
                Some((_, rx)) => Link::Shared {
                    socket: Arc::clone(&self.socket),
                    peer,
                    inbox: rx,
                },
                None => {
                    let local = SocketAddr::new(self.socket.local_addr()?.ip(), 0);
                    match UdpSocket::bind(local).await {
                        Ok(s) => match s.connect(peer).await {
                            Ok(()) => Link::Own(s),
                            Err(_) => {
                                end_session(&shared, peer);
                                continue;
                            }
                        },
                        Err(_) => {
                            end_session(&shared, peer);
                            continue;
                        }
                    }
                }
            };
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let event = match job {
                    Job::Read(t) => {
                        // A long file or shared bytes go out without a copy here: the kernel
                        // gathers each payload from the mapping or the memory.
                        let source = shared.maps.source(t.content());
                        run_transfer(*t, link, source).await
                    }
                    Job::Write(r, file) => run_upload(*r, file, link).await,
                };
                end_session(&shared, peer);
                report(&shared, peer, file, event);
            });
        }
    }

    /// A write request, when uploads are enabled: the upload to start, or its refusal.
    /// `None` for anything else.
    fn start_upload(
        &self,
        now: Instant,
        datagram: &[u8],
        peer: SocketAddr,
    ) -> Option<Result<(Job, String), Refusal>> {
        let (uploads, write) = (self.uploads.as_ref()?, self.config.write.as_ref()?);
        let Ok(Packet::Wrq(request)) = Packet::decode(datagram) else {
            return None;
        };
        let receive = match Receive::new(now, &request, peer, &self.config.server, write.max_size) {
            Ok(r) => r,
            Err(r) => return Some(Err(r)),
        };
        let file = match uploads.create(&request.filename) {
            Ok(f) => f,
            Err(e) => {
                let message = match e {
                    ProviderError::Io { .. } => "Cannot create the file",
                    ref other => other.client_message(),
                };
                return Some(Err(Refusal::new(e.code(), message)));
            }
        };
        Some(Ok((Job::Write(Box::new(receive), file), request.filename)))
    }

    fn admit_rate(&self, shared: &Shared, ip: IpAddr) -> bool {
        let now = Instant::now();
        let rate = self.config.requests_per_second.max(0.0);
        let burst = self.config.request_burst.max(1.0);
        let mut sessions = lock(&shared.sessions);
        if sessions.buckets.len() > 100_000 {
            // Forget addresses whose bucket has refilled: they are back to a full burst anyway.
            sessions
                .buckets
                .retain(|_, b| b.tokens + rate * now.duration_since(b.at).as_secs_f64() < burst);
        }
        let bucket = sessions.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + rate * now.duration_since(bucket.at).as_secs_f64()).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn admit_session(
        &self,
        shared: &Shared,
        peer: SocketAddr,
        inbox: Option<mpsc::Sender<Vec<u8>>>,
    ) -> Result<(), &'static str> {
        let mut sessions = lock(&shared.sessions);
        if sessions.active.len() >= self.config.max_sessions {
            return Err("Server busy: too many transfers");
        }
        let mine = sessions.per_ip.get(&peer.ip()).copied().unwrap_or(0);
        if mine >= self.config.max_sessions_per_client {
            return Err("Too many transfers from this address");
        }
        *sessions.per_ip.entry(peer.ip()).or_default() += 1;
        sessions.active.insert(peer, inbox);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn end_session(shared: &Shared, peer: SocketAddr) {
    let mut sessions = lock(&shared.sessions);
    if sessions.active.remove(&peer).is_some()
        && let Some(n) = sessions.per_ip.get_mut(&peer.ip())
    {
        *n -= 1;
        if *n == 0 {
            sessions.per_ip.remove(&peer.ip());
        }
    }
    shared.metrics.active.fetch_sub(1, Ordering::Relaxed);
}

fn report(shared: &Shared, peer: SocketAddr, file: String, event: Event) {
    let m = &shared.metrics;
    let (outcome, error_code, message, summary) = match event {
        Event::Completed(s) => {
            Metrics::add(&m.completed, 1);
            ("completed", None, None, s)
        }
        Event::Aborted {
            code,
            message,
            summary,
        } => {
            Metrics::add(&m.aborted, 1);
            ("aborted", Some(code.code()), Some(message), summary)
        }
        Event::TimedOut(s) => {
            Metrics::add(&m.timed_out, 1);
            ("timed_out", None, None, s)
        }
        Event::Failed { error, summary } => {
            Metrics::add(&m.failed, 1);
            ("failed", None, Some(error), summary)
        }
    };
    Metrics::add(&m.bytes, summary.bytes);
    Metrics::add(&m.packets, summary.packets);
    Metrics::add(&m.retransmitted, summary.retransmitted);
    Metrics::add(
        &m.duration_us,
        u64::try_from(summary.duration.as_micros()).unwrap_or(u64::MAX),
    );
    if let Some(f) = &shared.on_event {
        f(&Record {
            peer,
            file,
            outcome,
            error_code,
            message,
            summary,
        });
    }
}

/// What a transfer task runs.
enum Job {
    /// A read request.
    Read(Box<Transfer>),
    /// A write request and the file it goes to.
    Write(Box<Receive>, PendingFile),
}

async fn run_upload(mut r: Receive, file: PendingFile, mut link: Link) -> Event {
    let mut file = Some(file);
    let mut out = Vec::with_capacity(64);
    let mut inbuf = vec![0u8; 65536];
    let mut outcome = None;
    loop {
        while r.poll_transmit(&mut out) {
            let _ = match &link {
                Link::Own(s) => s.send(&out).await.map(drop),
                Link::Shared { socket, peer, .. } => socket.send_to(&out, *peer).await.map(drop),
            };
        }
        if r.is_finished() {
            break;
        }
        let Some(deadline) = r.poll_timeout() else {
            break;
        };
        let sleep = tokio::time::sleep_until(deadline.into());
        let received = match &mut link {
            Link::Own(s) => tokio::select! {
                got = s.recv(&mut inbuf) => match got {
                    Ok(n) => Some(inbuf[..n].to_vec()),
                    Err(_) => continue,
                },
                () = sleep => None,
            },
            Link::Shared { inbox, .. } => tokio::select! {
                got = inbox.recv() => match got {
                    Some(d) => Some(d),
                    None => break,
                },
                () = sleep => None,
            },
        };
        let now = Instant::now();
        match received {
            Some(d) => r.handle_datagram(now, &d),
            None => r.handle_timeout(now),
        }
        let data = r.take_data();
        if !data.is_empty()
            && let Some(f) = &mut file
            && f.write(&data).is_err()
        {
            r.abort(now, ErrorCode::DiskFull, "Cannot write the file");
        }
        if let Some(event) = r.poll_event() {
            // The file is in place before the final ACK tells the client so.
            if let Event::Completed(_) = event
                && let Some(f) = file.take()
                && f.commit().is_err()
            {
                r.abort(now, ErrorCode::Undefined, "Cannot store the file");
                outcome = r.poll_event();
                continue;
            }
            outcome = Some(event);
        }
    }
    // An upload that did not complete leaves nothing behind (the temporary file goes with
    // `file`).
    drop(file);
    outcome.unwrap_or(Event::TimedOut(Summary {
        bytes: r.received(),
        packets: 0,
        retransmitted: 0,
        blksize: r.blksize(),
        windowsize: r.windowsize(),
        burst: r.windowsize(),
        timeouts: 0,
        duration: Duration::ZERO,
    }))
}

/// How a transfer task talks to its client.
enum Link {
    /// A socket of its own, connected to the client.
    Own(UdpSocket),
    /// The listening socket, with datagrams from the client handed over by the accept loop.
    Shared {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
        inbox: mpsc::Receiver<Vec<u8>>,
    },
}

impl Link {
    /// The socket DATA goes out on, and the client's address when that socket is shared
    /// (unconnected).
    fn socket(&self) -> (&UdpSocket, Option<SocketAddr>) {
        match self {
            Self::Own(s) => (s, None),
            Self::Shared { socket, peer, .. } => (socket, Some(*peer)),
        }
    }
}

async fn run_transfer(mut t: Transfer, mut link: Link, mut source: Option<Arc<Source>>) -> Event {
    let mut batch = Batch::default();
    let mut inbuf = vec![0u8; 2048];
    let mut unreachable = false;
    let sleep = tokio::time::sleep_until(Instant::now().into());
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    let mut blocks = Vec::new();
    loop {
        if let Some(src) = &source {
            t.poll_transmit_blocks(MAX_BATCH, &mut blocks);
            if !blocks.is_empty() {
                let (s, to) = link.socket();
                match batch.send_direct(s, to, src, &blocks, t.blksize()).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => unreachable = true,
                    // The mapping cannot be read (the file shrank): these blocks and all
                    // after them are read from the file, as for a short one.
                    Err(e) if e.raw_os_error() == Some(libc::EFAULT) => {
                        source = None;
                        match batch.fill_blocks(t.content(), &blocks, t.blksize()) {
                            Ok(()) => {
                                if let Err(e) = batch.send(s, to).await
                                    && e.kind() == io::ErrorKind::ConnectionRefused
                                {
                                    unreachable = true;
                                }
                            }
                            // Shorter than when opened: the client is told, not handed a
                            // truncated file as if whole.
                            Err((message, error)) => t.fail(Instant::now(), message, error),
                        }
                    }
                    // Anything else is a lost window, which retransmission recovers.
                    Err(_) => {}
                }
                continue;
            }
        }

        // The whole window (or what is left of it) in one buffer, then out in as few system
        // calls as the socket allows.
        batch.fill(&mut t);
        if !batch.is_empty() {
            let (s, to) = link.socket();
            let sent = batch.send(s, to).await;
            // The client's port is closed: it may have gone away, but its last ACK can still
            // be queued behind the error, so the transfer ends only if nothing comes before
            // the next timeout. Other errors (a full buffer) are a lost packet, which
            // retransmission recovers.
            if let Err(e) = sent
                && e.kind() == io::ErrorKind::ConnectionRefused
            {
                unreachable = true;
            }
            continue;
        }
        if t.is_finished() {
            break;
        }
        let Some(deadline) = t.poll_timeout() else {
            break;
        };
        // One timer for the whole transfer, moved only when the deadline moves.
        if armed != Some(deadline) {
            sleep.as_mut().reset(deadline.into());
            armed = Some(deadline);
        }
        match &mut link {
            Link::Own(s) => {
                // An ACK already queued is taken without going through the runtime.
                let r = match s.try_recv(&mut inbuf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tokio::select! {
                            r = s.recv(&mut inbuf) => Some(r),
                            () = &mut sleep => None,
                        }
                    }
                    r => Some(r),
                };
                match r {
                    Some(Ok(n)) => {
                        unreachable = false;
                        t.handle_datagram(Instant::now(), &inbuf[..n]);
                    }
                    Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        unreachable = true;
                    }
                    Some(Err(_)) => {}
                    None => {
                        armed = None;
                        if unreachable {
                            t.handle_datagram(Instant::now(), &client_gone());
                        } else {
                            t.handle_timeout(Instant::now());
                        }
                    }
                }
            }
            Link::Shared { inbox, .. } => {
                tokio::select! {
                    r = inbox.recv() => match r {
                        Some(d) => t.handle_datagram(Instant::now(), &d),
                        None => break,
                    },
                    () = &mut sleep => {
                        armed = None;
                        if unreachable {
                            t.handle_datagram(Instant::now(), &client_gone());
                        } else {
                            t.handle_timeout(Instant::now());
                        }
                    }
                }
            }
        }
    }
    t.poll_event().unwrap_or(Event::TimedOut(Summary {
        bytes: 0,
        packets: 0,
        retransmitted: 0,
        blksize: t.blksize(),
        windowsize: t.windowsize(),
        burst: t.windowsize(),
        timeouts: 0,
        duration: Duration::ZERO,
    }))
}

/// The datagrams of one window, in one buffer at a fixed stride.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    stride: usize,
    lens: Vec<usize>,
    /// UDP segmentation offload failed once (no support, or a segment over the MTU): not
    /// tried again for this transfer.
    no_gso: bool,
    /// Room for the direct sends' iovecs.
    scratch: Scratch,
}

/// The most datagrams taken from a transfer at once (a segmented send carries at most 64 of
/// them, and takes several calls for a batch this size; `sendmmsg` takes it in one).
const MAX_BATCH: usize = 256;

/// The most bytes taken from a transfer at once (its batch buffer's size at most).
const MAX_BATCH_BYTES: usize = 256 << 10;

/// The most bytes of one segmented send (a UDP datagram's payload limit, with room for the
/// headers).
const MAX_GSO_BYTES: usize = 65_000;

impl Batch {
    fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Takes what the transfer has to send now: at most [`MAX_BATCH`] datagrams and
    /// [`MAX_BATCH_BYTES`] (at least one datagram).
    fn fill(&mut self, t: &mut Transfer) {
        self.lens.clear();
        let stride = t.max_datagram_len();
        let count = t
            .pending_datagrams()
            .min(MAX_BATCH)
            .min((MAX_BATCH_BYTES / stride).max(1));
        if count == 0 {
            return;
        }
        if stride != self.stride || self.buf.len() < stride * count {
            self.stride = stride;
            if self.buf.len() < stride * count {
                self.buf.resize(stride * count, 0);
            }
        }
        t.poll_transmit_batch(
            Instant::now(),
            &mut self.buf[..stride * count],
            stride,
            &mut self.lens,
        );
    }

    /// Writes `blocks` into the buffer by reading the content (when direct sends failed), or
    /// says why they cannot be: the ERROR message and the failure.
    fn fill_blocks(
        &mut self,
        content: &Content,
        blocks: &[DataBlock],
        blksize: u16,
    ) -> Result<(), (&'static str, String)> {
        self.lens.clear();
        let stride = DATA_HEADER + usize::from(blksize);
        self.stride = stride;
        if self.buf.len() < stride * blocks.len() {
            self.buf.resize(stride * blocks.len(), 0);
        }
        for (b, slot) in blocks.iter().zip(self.buf.chunks_exact_mut(stride)) {
            slot[..DATA_HEADER].copy_from_slice(&b.header);
            match content.read_at(b.offset, &mut slot[DATA_HEADER..DATA_HEADER + b.len]) {
                Ok(n) if n == b.len => self.lens.push(DATA_HEADER + n),
                Ok(n) => {
                    self.lens.clear();
                    return Err(shrank(b.offset + n as u64));
                }
                Err(e) => {
                    self.lens.clear();
                    return Err(("Read error", e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Sends `blocks` with their payloads gathered from `src` by the kernel: segmented sends
    /// of whole blocks when they fit the path, else one `sendmmsg`.
    async fn send_direct(
        &mut self,
        s: &UdpSocket,
        to: Option<SocketAddr>,
        src: &Source,
        blocks: &[DataBlock],
        blksize: u16,
    ) -> io::Result<()> {
        let dest = to.map(socket2::SockAddr::from);
        let dest = dest.as_ref();
        let n = blocks.len();
        let stride = DATA_HEADER + usize::from(blksize);
        let mut from = 0;
        let full = blocks[..n.saturating_sub(1)]
            .iter()
            .all(|b| b.len == usize::from(blksize));
        if !self.no_gso && n > 1 && full && stride <= MAX_GSO_BYTES / 2 {
            let scratch = &mut self.scratch;
            from = segmented_runs(s, &mut self.no_gso, n, stride, |from, upto, segment| {
                src.send_segmented(s, dest, &blocks[from..upto], segment, scratch)
            })
            .await?;
        }
        while from < n {
            let scratch = &mut self.scratch;
            let sent = s
                .async_io(Interest::WRITABLE, || {
                    src.send_each(s, dest, &blocks[from..], scratch)
                })
                .await?;
            from += sent.max(1);
        }
        Ok(())
    }

    fn datagram(&self, i: usize) -> &[u8] {
        &self.buf[i * self.stride..i * self.stride + self.lens[i]]
    }

    /// Whether the datagrams lie end to end with one size (the last may be shorter), as a
    /// segmented send needs.
    fn uniform(&self) -> bool {
        let n = self.lens.len();
        n > 1
            && self.stride <= MAX_GSO_BYTES / 2
            && self.lens[..n - 1].iter().all(|&l| l == self.stride)
    }

    /// Sends the batch to `to` on a shared socket or, when `None`, on a connected one: in
    /// segmented sends when the datagrams allow, else one `sendmmsg`.
    async fn send(&mut self, s: &UdpSocket, to: Option<SocketAddr>) -> io::Result<()> {
        if self.lens.len() == 1 {
            return match to {
                None => s.send(self.datagram(0)).await.map(drop),
                Some(peer) => s.send_to(self.datagram(0), peer).await.map(drop),
            };
        }
        let dest = to.map(SockaddrStorage::from);
        let mut from = 0;
        if !self.no_gso && self.uniform() {
            let (buf, lens, stride) = (&self.buf, &self.lens, self.stride);
            from = segmented_runs(
                s,
                &mut self.no_gso,
                lens.len(),
                stride,
                |from, upto, segment| {
                    let end = (upto - 1) * stride + lens[upto - 1];
                    let iov = [IoSlice::new(&buf[from * stride..end])];
                    let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
                    sendmsg(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), dest.as_ref())
                        .map_err(io::Error::from)
                },
            )
            .await?;
        }
        while from < self.lens.len() {
            let n = s
                .async_io(Interest::WRITABLE, || {
                    let slices: Vec<[IoSlice<'_>; 1]> = (from..self.lens.len())
                        .map(|i| [IoSlice::new(self.datagram(i))])
                        .collect();
                    let mut headers =
                        MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
                    let addrs = vec![dest; slices.len()];
                    sendmmsg(
                        s.as_raw_fd(),
                        &mut headers,
                        &slices,
                        addrs,
                        [],
                        MsgFlags::empty(),
                    )
                    .map(|r| r.count())
                    .map_err(io::Error::from)
                })
                .await?;
            from += n.max(1);
        }
        Ok(())
    }
}

/// The most segments in one segmented send (the kernel's UDP_MAX_SEGMENTS is 64 in older
/// kernels, 128 in newer ones).
const MAX_SEGMENTS: usize = 64;

/// Sends datagrams `0..n` of `stride` bytes each (the last may be shorter) in segmented
/// sends, each of as many whole segments as one UDP datagram can carry (and at most
/// [`MAX_SEGMENTS`]), with `send(from, to, segment)`, and returns how far it got: `n`, or
/// where the rest must go one datagram per message. Segmentation refused (no support, or a
/// segment over the MTU) sets `no_gso` for the rest of the transfer; another failure leaves
/// the rest of this batch to single datagrams and the next batch tries again. A closed port
/// is returned as an error.
async fn segmented_runs(
    s: &UdpSocket,
    no_gso: &mut bool,
    n: usize,
    stride: usize,
    mut send: impl FnMut(usize, usize, u16) -> io::Result<usize>,
) -> io::Result<usize> {
    let per_call = (MAX_GSO_BYTES / stride).clamp(1, MAX_SEGMENTS);
    let segment = u16::try_from(stride).unwrap_or(u16::MAX);
    let mut from = 0;
    while from < n {
        let to = (from + per_call).min(n);
        match s
            .async_io(Interest::WRITABLE, || send(from, to, segment))
            .await
        {
            Ok(_) => from = to,
            Err(e) if gso_refused(&e) => {
                *no_gso = true;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(e),
            Err(_) => break,
        }
    }
    Ok(from)
}

/// Whether a segmented send failed for want of segmentation: EMSGSIZE or EINVAL (a segment
/// over the MTU), EIO (no checksum offload on the route), no UDP_SEGMENT in this kernel.
fn gso_refused(e: &io::Error) -> bool {
    matches!(
        Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        Errno::EMSGSIZE | Errno::EINVAL | Errno::EIO | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP
    )
}

/// An ERROR standing for "the client's port is unreachable", fed to the engine.
fn client_gone() -> Vec<u8> {
    let mut v = Vec::new();
    wire::encode_error(ErrorCode::Undefined, "port unreachable", &mut v);
    v
}
