//! The transfer tasks: a read transfer or an upload driven on its socket (its own, or the
//! listening one shared) until it ends.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

pub(super) async fn run_transfer(
    mut t: Transfer,
    mut link: Link,
    mut source: Option<Arc<Source>>,
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

/// An ERROR standing for "the client's port is unreachable", fed to the engine.
fn client_gone() -> Vec<u8> {
    let mut v = Vec::new();
    wire::encode_error(ErrorCode::Undefined, "port unreachable", &mut v);
    v
}
