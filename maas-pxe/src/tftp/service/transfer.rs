//! The transfer tasks: a read transfer or an upload driven on its socket (its own, or the
//! listening one shared) until it ends.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::send::{Batch, MAX_BATCH};
use crate::tftp::direct::Source;
use crate::tftp::server::{Event, Summary, Transfer};
use crate::tftp::upload::{PendingFile, Receive};
use crate::tftp::wire::{self, ErrorCode};

/// What a transfer task runs.
pub(super) enum Job {
    /// A read request.
    Read(Box<Transfer>),
    /// A write request and the file it goes to.
    Write(Box<Receive>, PendingFile),
}

pub(super) async fn run_upload(mut r: Receive, file: PendingFile, mut link: Link) -> Event {
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
pub(super) enum Link {
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

/// Runs a read transfer to its end; `spin`, for a transfer on a lane, polls its own socket for
/// each ACK before it sleeps.
pub(super) async fn run_transfer(
    mut t: Transfer,
    mut link: Link,
    mut source: Option<Arc<Source>>,
    mut spin: Option<Spin>,
) -> Event {
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
                        if let Some(r) = spin.as_mut().and_then(|p| p.poll(s, &mut inbuf)) {
                            Some(r)
                        } else {
                            tokio::select! {
                                r = s.recv(&mut inbuf) => Some(r),
                                () = &mut sleep => None,
                            }
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

/// Polling a transfer's socket for the next ACK before sleeping, which saves the
/// wake-up (on a virtual machine, an exit to the hypervisor and back) when the client answers
/// within the budget. Only a transfer alone on its lane polls, so no other transfer waits
/// behind it, and only while the client keeps answering in time: each poll that ends empty
/// doubles the number of ACKs waited for without polling (up to 64) before the next try.
pub(super) struct Spin {
    budget: Duration,
    /// The number of transfers on the lane (this one included).
    lane: Arc<AtomicUsize>,
    /// ACKs still to wait for without polling.
    skip: u32,
    /// The exponent of the next `skip` after an empty poll.
    backoff: u32,
}

/// The largest exponent of [`Spin::backoff`]: after empty polls, one ACK in 64 is polled for.
const MAX_BACKOFF: u32 = 6;

impl Spin {
    pub(super) fn new(budget: Duration, lane: Arc<AtomicUsize>) -> Option<Self> {
        (!budget.is_zero()).then_some(Self {
            budget,
            lane,
            skip: 0,
            backoff: 0,
        })
    }

    /// Polls `s` for a datagram for up to the budget, when it is this transfer's turn to:
    /// what the receive returned, or `None` (not polled, or nothing came).
    fn poll(&mut self, s: &UdpSocket, buf: &mut [u8]) -> Option<io::Result<usize>> {
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        if self.lane.load(Ordering::Relaxed) != 1 {
            return None;
        }
        let until = Instant::now() + self.budget;
        loop {
            // Straight to the socket: the runtime's readiness is not updated while this task
            // holds the thread.
            match recv(s.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => {
                    self.backoff = 0;
                    return Some(Ok(n));
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => return Some(Err(e.into())),
            }
            if Instant::now() >= until {
                self.skip = 1 << self.backoff;
                self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
                return None;
            }
            std::hint::spin_loop();
        }
    }
}

/// An ERROR standing for "the client's port is unreachable", fed to the engine.
fn client_gone() -> Vec<u8> {
    let mut v = Vec::new();
    wire::encode_error(ErrorCode::Undefined, "port unreachable", &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        a.connect(b.local_addr().unwrap()).await.unwrap();
        b.connect(a.local_addr().unwrap()).await.unwrap();
        (a, b)
    }

    #[test]
    fn polling_backs_off_while_nothing_comes_and_resumes_once_an_ack_does() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (server, client) = pair().await;
            let lane = Arc::new(AtomicUsize::new(1));
            let mut spin = Spin::new(Duration::from_micros(200), Arc::clone(&lane)).unwrap();
            let mut buf = [0u8; 16];
            // Nothing comes: polled (and empty), then 1, 2, 4 ... ACKs skipped between polls.
            let mut polled = Vec::new();
            for _ in 0..40 {
                let before = spin.skip;
                assert!(spin.poll(&server, &mut buf).is_none());
                polled.push(before == 0);
            }
            let at: Vec<usize> = (0..40).filter(|&i| polled[i]).collect();
            assert_eq!(at, [0, 2, 5, 10, 19, 36]);
            // An ACK already queued is taken by the next poll, which resets the back-off.
            while spin.skip > 0 {
                assert!(spin.poll(&server, &mut buf).is_none());
            }
            client.send(b"ack").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(spin.poll(&server, &mut buf).unwrap().unwrap(), 3);
            assert_eq!((spin.skip, spin.backoff), (0, 0));
            // Not alone on the lane: no poll, even with a datagram waiting.
            client.send(b"ack").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            lane.store(2, Ordering::Relaxed);
            assert!(spin.poll(&server, &mut buf).is_none());
            lane.store(1, Ordering::Relaxed);
            assert_eq!(spin.poll(&server, &mut buf).unwrap().unwrap(), 3);
        });
        assert!(Spin::new(Duration::ZERO, Arc::default()).is_none());
    }
}
