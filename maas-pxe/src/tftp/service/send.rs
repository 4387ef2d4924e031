//! The send paths: a window's datagrams in one buffer, out in segmented sends (UDP GSO)
//! or one `sendmmsg`, or with their payloads gathered by the kernel from the content.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg, sendmsg,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::tftp::direct::{Scratch, Source};
use crate::tftp::provider::Content;
use crate::tftp::server::{DataBlock, Transfer, shrank};
use crate::tftp::wire::DATA_HEADER;

/// The datagrams of one window, in one buffer at a fixed stride.
#[derive(Default)]
pub(super) struct Batch {
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
pub(super) const MAX_BATCH: usize = 256;

/// The most bytes taken from a transfer at once (its batch buffer's size at most).
const MAX_BATCH_BYTES: usize = 256 << 10;

/// The most bytes of one segmented send (a UDP datagram's payload limit, with room for the
/// headers).
const MAX_GSO_BYTES: usize = 65_000;

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Takes what the transfer has to send now: at most [`MAX_BATCH`] datagrams and
    /// [`MAX_BATCH_BYTES`] (at least one datagram).
    pub(super) fn fill(&mut self, t: &mut Transfer) {
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
    pub(super) fn fill_blocks(
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
    pub(super) async fn send_direct(
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
    pub(super) async fn send(&mut self, s: &UdpSocket, to: Option<SocketAddr>) -> io::Result<()> {
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
