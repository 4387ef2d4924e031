//! The client side on tokio: a [`Client`] on its own UDP socket, receiving coalesced
//! datagrams (UDP GRO) when the kernel offers them.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::tftp::wire::ErrorCode;
use crate::tftp::{Client, ClientConfig, ClientError};

/// Reads `file` from the TFTP server at `server` with `config`, returning its bytes.
pub async fn fetch(
    server: SocketAddr,
    file: &str,
    config: ClientConfig,
) -> Result<Vec<u8>, ClientError> {
    let mut data = Vec::new();
    fetch_to(server, file, config, &mut data).await?;
    Ok(data)
}

/// Reads `file` from the TFTP server at `server` with `config`, writing its bytes to `out`
/// as they arrive (a boot image never sits whole in memory), and returns how many were
/// written. A write error ends the transfer (the server gets an ERROR 3, disk full) and is
/// returned as [`ClientError::Io`]; what was written before an error is a prefix of the file.
pub async fn fetch_to(
    server: SocketAddr,
    file: &str,
    config: ClientConfig,
    out: &mut impl io::Write,
) -> Result<u64, ClientError> {
    run(server, file, config, &mut Writer(out)).await
}

/// Reads `file` like [`fetch_to`], handing its bytes to `store` as owned buffers of at least
/// `chunk` bytes (the last one shorter) instead of copying them into a writer: `store` keeps
/// or writes each buffer and returns an empty one for the next bytes (the one it was given,
/// once written, so a long file cycles through a few allocations). An error from `store`
/// ends the transfer as a write error does in [`fetch_to`].
pub async fn fetch_chunks(
    server: SocketAddr,
    file: &str,
    config: ClientConfig,
    chunk: usize,
    store: impl FnMut(Vec<u8>) -> io::Result<Vec<u8>>,
) -> Result<u64, ClientError> {
    let chunk = chunk.max(1);
    let mut chunks = Chunks {
        chunk,
        // Room for a chunk and one more receive, so filling it never reallocates.
        spare: Some(Vec::with_capacity(chunk + RECV_BUF)),
        store,
    };
    run(server, file, config, &mut chunks).await
}

/// Where [`run`] puts the file's bytes.
trait Store {
    /// Stores what `client` holds, or waits for more unless `last`; returns the bytes stored.
    fn store(&mut self, client: &mut Client, last: bool) -> io::Result<u64>;
}

struct Writer<'a, W>(&'a mut W);

impl<W: io::Write> Store for Writer<'_, W> {
    fn store(&mut self, client: &mut Client, _last: bool) -> io::Result<u64> {
        let mut n = 0;
        client.drain_data(|d| {
            n = d.len() as u64;
            self.0.write_all(d)
        })?;
        Ok(n)
    }
}

struct Chunks<F> {
    chunk: usize,
    spare: Option<Vec<u8>>,
    store: F,
}

impl<F: FnMut(Vec<u8>) -> io::Result<Vec<u8>>> Store for Chunks<F> {
    fn store(&mut self, client: &mut Client, last: bool) -> io::Result<u64> {
        let held = client.buffered();
        if held == 0 || (held < self.chunk && !last) {
            return Ok(0);
        }
        let spare = self.spare.take().unwrap_or_default();
        let full = client.replace_data(spare);
        let mut next = (self.store)(full)?;
        next.clear();
        next.reserve(self.chunk + RECV_BUF);
        self.spare = Some(next);
        Ok(held as u64)
    }
}

/// The largest datagram, or coalesced run of datagrams, one receive takes.
const RECV_BUF: usize = 65536;

async fn run(
    server: SocketAddr,
    file: &str,
    config: ClientConfig,
    out: &mut impl Store,
) -> Result<u64, ClientError> {
    let local: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let std_socket = socket2::Socket::new(
        socket2::Domain::for_address(local),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Room for a whole window of large blocks, beyond the system's cap when the process may
    // (CAP_NET_ADMIN), else up to the cap.
    if setsockopt(&std_socket, sockopt::RcvBufForce, &config.recv_buffer).is_err() {
        let _ = std_socket.set_recv_buffer_size(config.recv_buffer);
    }
    std_socket.set_nonblocking(true)?;
    std_socket.bind(&local.into())?;
    let socket = UdpSocket::from_std(std_socket.into())?;
    // Datagrams the server sent as one segmented batch arrive as one buffer (Linux UDP GRO):
    // one system call for a whole window. Without it, one datagram per call.
    let _ = setsockopt(&socket, sockopt::UdpGroSegment, &true);
    let mut client = Client::new(Instant::now(), server, file, config);
    let mut written = 0u64;
    let mut buf = vec![0u8; RECV_BUF];
    let mut cmsg = nix::cmsg_space!(i32);
    loop {
        while let Some((to, bytes)) = client.poll_transmit() {
            socket.send_to(&bytes, to).await?;
        }
        if client.is_finished() {
            break;
        }
        let Some(deadline) = client.poll_timeout() else {
            break;
        };
        let received = tokio::select! {
            r = recv_segments(&socket, &mut buf, &mut cmsg) => r,
            () = tokio::time::sleep_until(deadline.into()) => {
                client.handle_timeout(Instant::now());
                continue;
            }
        };
        match received {
            Ok((n, from, segment)) => {
                let now = Instant::now();
                let segment = segment.unwrap_or(n).max(1);
                for datagram in buf[..n].chunks(segment) {
                    client.handle_datagram(now, from, datagram);
                }
                let last = client.result().is_some();
                match out.store(&mut client, last) {
                    Ok(n) => written += n,
                    Err(e) => {
                        // Tell the server, so it stops sending, then report the write error.
                        client.abort(ErrorCode::DiskFull, "cannot store the file");
                        while let Some((to, bytes)) = client.poll_transmit() {
                            let _ = socket.send_to(&bytes, to).await;
                        }
                        return Err(e.into());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e.into()),
        }
    }
    written += out.store(&mut client, true)?;
    match client.result() {
        Some(Ok(())) => Ok(written),
        _ => Err(take_error(&client)),
    }
}

/// Receives one datagram, or one coalesced run of equal-size datagrams and their size.
async fn recv_segments(
    socket: &UdpSocket,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<usize>)> {
    socket
        .async_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let msg = recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(cmsg),
                MsgFlags::empty(),
            )
            .map_err(io::Error::from)?;
            let mut segment = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::UdpGroSegments(size) = c {
                        segment = usize::try_from(size).ok();
                    }
                }
            }
            let from = msg
                .address
                .and_then(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                        .or_else(|| {
                            a.as_sockaddr_in6()
                                .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                        })
                })
                .ok_or_else(|| io::Error::other("datagram without a source address"))?;
            Ok((msg.bytes, from, segment))
        })
        .await
}

fn take_error(client: &Client) -> ClientError {
    match client.result() {
        Some(Err(ClientError::Server { code, message })) => ClientError::Server {
            code: *code,
            message: message.clone(),
        },
        Some(Err(ClientError::Timeout { tries })) => ClientError::Timeout { tries: *tries },
        Some(Err(e)) => ClientError::Protocol(e.to_string()),
        _ => ClientError::Protocol("the transfer ended without a result".into()),
    }
}
