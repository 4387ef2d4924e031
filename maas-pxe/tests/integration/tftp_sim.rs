//! A virtual-time driver stepping the TFTP server's [`Transfer`] against the [`Client`] over a
//! simulated link that loses, duplicates, delays and reorders datagrams.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use maas_pxe::tftp::{
    self, Client, ClientConfig, Event, Generated, Response, ServerConfig, Transfer,
};

/// A small deterministic generator (xorshift), so every failure replays from its seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the link does to each datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Net {
    pub(crate) loss: f64,
    pub(crate) duplicate: f64,
    /// The share of datagrams held back by an extra delay drawn from 0..jitter (which
    /// reorders them against those sent after).
    pub(crate) reorder: f64,
    /// The bound of that extra delay.
    pub(crate) jitter: Duration,
    pub(crate) delay: Duration,
    /// The client's receive buffer, in datagrams: a datagram for the client is dropped while
    /// this many are on their way to it (a client that reads only once a burst has landed,
    /// the worst case), as a socket buffer smaller than the window drops a burst's tail.
    pub(crate) rcvbuf: Option<usize>,
}

impl Net {
    pub(crate) const CLEAN: Self = Self {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        jitter: Duration::ZERO,
        delay: Duration::from_micros(200),
        rcvbuf: None,
    };
}

pub(crate) const SERVER: &str = "10.77.100.1:69";
pub(crate) const SERVER_TID: &str = "10.77.100.1:50000";
pub(crate) const CLIENT: &str = "10.77.100.2:40000";

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// How a simulated transfer went.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) data: Vec<u8>,
    pub(crate) client: Result<(), String>,
    pub(crate) event: Option<Event>,
    /// Datagrams the server sent (OACK, DATA, ERROR), retransmissions included.
    pub(crate) server_sent: u64,
    pub(crate) client_sent: u64,
    pub(crate) elapsed: Duration,
}

struct InFlight {
    at: Instant,
    seq: u64,
    to_server: bool,
    bytes: Vec<u8>,
}

/// Serves `file` as `name` to a client configured with `client_config`, over `net`.
pub(crate) fn transfer(
    file: &[u8],
    client_config: ClientConfig,
    server_config: &ServerConfig,
    net: Net,
    seed: u64,
) -> Outcome {
    let content = file.to_vec();
    let provider = Generated::new(move |_, _| Some(content.clone()));
    let start = Instant::now();
    let mut now = start;
    let mut rng = Rng::new(seed);
    let mut client = Client::new(
        now,
        addr(SERVER),
        "pxelinux.cfg/01-52-54-00-77-00-10",
        client_config,
    );
    let mut server: Option<Box<Transfer>> = None;
    let mut flight: Vec<InFlight> = Vec::new();
    let mut seq = 0u64;
    let mut data = Vec::new();
    let mut event = None;
    let (mut server_sent, mut client_sent) = (0u64, 0u64);
    let mut buf = Vec::new();
    let mut lens = Vec::new();
    // The server's datagrams come in batches of 1 to 4 slots (as the service takes a window),
    // sized by a generator of their own so the link's draws stay the same.
    let mut batches = Rng::new(seed ^ 0x5EED);
    let mut send =
        |flight: &mut Vec<InFlight>, rng: &mut Rng, now: Instant, to_server: bool, bytes: &[u8]| {
            if rng.chance(net.loss) {
                return;
            }
            if !to_server
                && net
                    .rcvbuf
                    .is_some_and(|n| flight.iter().filter(|f| !f.to_server).count() >= n)
            {
                return;
            }
            let copies = if rng.chance(net.duplicate) { 2 } else { 1 };
            for _ in 0..copies {
                let jitter = if net.jitter.is_zero() || !rng.chance(net.reorder) {
                    Duration::ZERO
                } else {
                    Duration::from_micros(rng.below(net.jitter.as_micros() as u64))
                };
                seq += 1;
                flight.push(InFlight {
                    at: now + net.delay + jitter,
                    seq,
                    to_server,
                    bytes: bytes.to_vec(),
                });
            }
        };
    for _step in 0..5_000_000u64 {
        // Everything each side has to say now.
        while let Some((_to, bytes)) = client.poll_transmit() {
            client_sent += 1;
            send(&mut flight, &mut rng, now, true, &bytes);
        }
        if let Some(t) = server.as_mut() {
            loop {
                let stride = t.max_datagram_len();
                let slots = 1 + (batches.next() % 4) as usize;
                buf.resize(stride * slots, 0);
                t.poll_transmit_batch(now, &mut buf, stride, &mut lens);
                if lens.is_empty() {
                    break;
                }
                for (i, len) in lens.iter().enumerate() {
                    server_sent += 1;
                    let at = i * stride;
                    send(&mut flight, &mut rng, now, false, &buf[at..at + len]);
                }
            }
            if let Some(e) = t.poll_event() {
                event = Some(e);
            }
        }
        data.extend(client.take_data());
        let server_done = server.as_ref().is_none_or(|t| t.is_finished());
        if client.is_finished() && server_done && flight.is_empty() {
            break;
        }
        // The next thing to happen.
        let next_packet = flight.iter().min_by_key(|f| (f.at, f.seq)).map(|f| f.at);
        let candidates = [
            next_packet,
            client.poll_timeout(),
            server.as_ref().and_then(|t| t.poll_timeout()),
        ];
        let Some(next) = candidates.into_iter().flatten().min() else {
            break;
        };
        now = now.max(next);
        if now - start > Duration::from_secs(3600) {
            break;
        }
        if let Some(i) = flight
            .iter()
            .enumerate()
            .filter(|(_, f)| f.at <= now)
            .min_by_key(|(_, f)| (f.at, f.seq))
            .map(|(i, _)| i)
        {
            let f = flight.swap_remove(i);
            if f.to_server {
                match server.as_mut() {
                    Some(t) => t.handle_datagram(now, &f.bytes),
                    None => {
                        match tftp::respond(now, &f.bytes, addr(CLIENT), &provider, server_config) {
                            Response::Start(t) => server = Some(t),
                            Response::Refuse(r) => {
                                let mut v = Vec::new();
                                r.encode(&mut v);
                                server_sent += 1;
                                send(&mut flight, &mut rng, now, false, &v);
                            }
                            Response::Ignore => {}
                        }
                    }
                }
            } else {
                client.handle_datagram(now, addr(SERVER_TID), &f.bytes);
            }
            continue;
        }
        client.handle_timeout(now);
        if let Some(t) = server.as_mut() {
            t.handle_timeout(now);
        }
    }
    if let Some(e) = server.as_mut().and_then(|t| t.poll_event()) {
        event = Some(e);
    }
    data.extend(client.take_data());
    Outcome {
        data,
        client: match client.result() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("unfinished".into()),
        },
        event,
        server_sent,
        client_sent,
        elapsed: now - start,
    }
}

/// `len` bytes of a recognisable pattern.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

pub(crate) fn config(blksize: Option<u16>, window: Option<u16>, tsize: bool) -> ClientConfig {
    let mut c = ClientConfig::default();
    if let Some(b) = blksize {
        c.blksize(b);
    }
    if let Some(w) = window {
        c.windowsize(w);
    }
    c.tsize(tsize);
    c
}
