//! The accept loop: requests on the listening port, rate and session limits, and a task
//! per accepted transfer, whose end is counted and reported.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::lanes::Lanes;
use super::transfer::{Job, Link, Spin, run_transfer, run_upload};
use super::{Callback, Metrics, Record, Service};
use crate::tftp::direct::MapCache;
use crate::tftp::error::ProviderError;
use crate::tftp::server::{Event, Refusal, Response, respond};
use crate::tftp::upload::Receive;
use crate::tftp::wire::{self, ErrorCode, Packet};

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
    /// Serves until the task is dropped or the listening socket fails.
    pub async fn run(self) -> io::Result<()> {
        let shared = Arc::new(Shared {
            sessions: Mutex::default(),
            maps: MapCache::new(MAPPED_FILES),
            metrics: Arc::clone(&self.metrics),
            on_event: self.on_event.clone(),
        });
        // Owned by this future: dropping it stops the lanes and their transfers.
        let lanes = if self.config.single_port {
            None
        } else {
            Lanes::start(self.config.lanes.unwrap_or_else(Lanes::default_count))
        };
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
                    let Ok(socket) = connected_std(local, peer) else {
                        end_session(&shared, peer);
                        continue;
                    };
                    // A read on a socket of its own goes to a lane, where the socket is
                    // registered with the lane's runtime.
                    if let (Some(lanes), Job::Read(_)) = (&lanes, &job) {
                        let lane = lanes.pick();
                        let (shared, index) = (Arc::clone(&shared), lane.index);
                        let spin = Spin::new(
                            Duration::from_micros(self.config.ack_spin_us.into()),
                            lane.transfers(),
                        );
                        lane.spawn(async move {
                            match UdpSocket::from_std(socket) {
                                Ok(s) => {
                                    let lane = Some((index, spin));
                                    serve(job, Link::Own(s), &shared, peer, file, lane).await;
                                }
                                Err(_) => end_session(&shared, peer),
                            }
                        });
                        continue;
                    }
                    match UdpSocket::from_std(socket) {
                        Ok(s) => Link::Own(s),
                        Err(_) => {
                            end_session(&shared, peer);
                            continue;
                        }
                    }
                }
            };
            let shared = Arc::clone(&shared);
            tokio::spawn(async move { serve(job, link, &shared, peer, file, None).await });
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

/// Runs `job` on `link` to its end, then ends its session and reports it (`lane`: the lane's
/// number and the transfer's polling, if it runs on one).
async fn serve(
    job: Job,
    link: Link,
    shared: &Shared,
    peer: SocketAddr,
    file: String,
    lane: Option<(usize, Option<Spin>)>,
) {
    let (index, spin) = lane.map_or((None, None), |(i, spin)| (Some(i), spin));
    let event = match job {
        Job::Read(t) => {
            // A long file or shared bytes go out without a copy here: the kernel gathers each
            // payload from the mapping or the memory.
            let source = shared.maps.source(t.content());
            run_transfer(*t, link, source, spin).await
        }
        Job::Write(r, file) => run_upload(*r, file, link).await,
    };
    end_session(shared, peer);
    report(shared, peer, file, index, event);
}

/// A non-blocking UDP socket on `local`, connected to `peer`.
fn connected_std(local: SocketAddr, peer: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(local)?;
    socket.connect(peer)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
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

fn report(shared: &Shared, peer: SocketAddr, file: String, lane: Option<usize>, event: Event) {
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
            lane,
            summary,
        });
    }
}
