//! `sendmmsg` for DHCP replies: several datagrams, each to its own address, in one system
//! call, and how many of them the kernel took.
//!
//! The crate's second module with `unsafe` code (after `tftp::direct`): nix's `sendmmsg`
//! reports the number sent only through an iterator that reads address slots a send never
//! fills (they are read as if initialised), so the call is made here on `libc` directly. The
//! unsafe part is the call alone: every pointer it gets comes from a slice that outlives it.
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::mem::size_of;
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::SockaddrLike;

// The layout `Control` writes: a 16-byte `cmsghdr` with a `size_t` length first, data padded
// to 8 bytes (64-bit Linux).
const _: () = assert!(size_of::<libc::cmsghdr>() == 16 && size_of::<usize>() == 8);
// SAFETY: `CMSG_LEN` and `CMSG_SPACE` only compute sizes.
const _: () = assert!(unsafe { libc::CMSG_LEN(20) == 36 && libc::CMSG_SPACE(20) == 40 });
const _: () = assert!(unsafe { libc::CMSG_LEN(12) == 28 && libc::CMSG_SPACE(12) == 32 });

/// A control message (`cmsghdr` and its data) laid out as the kernel reads it, built from
/// bytes: at most one packet-information message, 8-byte aligned.
#[derive(Clone, Copy)]
pub(super) struct Control {
    words: [u64; 5],
    len: usize,
}

impl Control {
    /// No control message.
    pub(super) const NONE: Self = Self {
        words: [0; 5],
        len: 0,
    };

    /// A message of `level` and `kind` carrying `data` (at most 24 bytes).
    fn new(level: i32, kind: i32, data: &[u8]) -> Self {
        // `cmsghdr`: the length (a `size_t`), the level and the type (`int`s), then the data
        // at the next 8-byte boundary; the whole padded to 8 bytes (`CMSG_SPACE`).
        const HEADER: usize = size_of::<usize>() + 2 * size_of::<i32>();
        let mut bytes = [0u8; 40];
        let data = &data[..data.len().min(bytes.len() - HEADER)];
        bytes[..8].copy_from_slice(&(HEADER + data.len()).to_ne_bytes());
        bytes[8..12].copy_from_slice(&level.to_ne_bytes());
        bytes[12..16].copy_from_slice(&kind.to_ne_bytes());
        bytes[HEADER..HEADER + data.len()].copy_from_slice(data);
        let mut words = [0u64; 5];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *word = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
        }
        Self {
            words,
            len: (HEADER + data.len()).next_multiple_of(8),
        }
    }

    /// `IP_PKTINFO`: send out of interface `index` from `source`.
    pub(super) fn pktinfo4(index: u32, source: std::net::Ipv4Addr) -> Self {
        // `in_pktinfo`: the interface index, the source (`ipi_spec_dst`), the destination
        // (unused when sending), addresses in network order.
        let mut data = [0u8; 12];
        data[..4].copy_from_slice(&i32::try_from(index).unwrap_or(0).to_ne_bytes());
        data[4..8].copy_from_slice(&source.octets());
        Self::new(libc::IPPROTO_IP, libc::IP_PKTINFO, &data)
    }

    /// `IPV6_PKTINFO`: send out of interface `index` from `source`.
    pub(super) fn pktinfo6(index: u32, source: std::net::Ipv6Addr) -> Self {
        // `in6_pktinfo`: the address, then the interface index.
        let mut data = [0u8; 20];
        data[..16].copy_from_slice(&source.octets());
        data[16..].copy_from_slice(&index.to_ne_bytes());
        Self::new(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &data)
    }
}

/// One datagram for [`send`].
pub(super) struct Datagram<'a, S> {
    pub(super) bytes: &'a [u8],
    pub(super) to: S,
}

/// Sends `datagrams` with `control` in one `sendmmsg`, returning how many the kernel took
/// (from the first: the call stops at the first datagram that fails, and fails only when
/// that is the first).
pub(super) fn send<S: SockaddrLike>(
    socket: &impl AsRawFd,
    datagrams: &[Datagram<'_, S>],
    control: &Control,
) -> io::Result<usize> {
    let iovs: Vec<IoSlice<'_>> = datagrams.iter().map(|d| IoSlice::new(d.bytes)).collect();
    let mut headers: Vec<libc::mmsghdr> = datagrams
        .iter()
        .zip(&iovs)
        .map(|(datagram, iov)| {
            // SAFETY: an all-zero `msghdr` is valid (null pointers with zero lengths).
            let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
            header.msg_name = datagram.to.as_ptr().cast_mut().cast();
            header.msg_namelen = datagram.to.len();
            header.msg_iov = std::ptr::from_ref(iov).cast_mut().cast();
            header.msg_iovlen = 1;
            if control.len > 0 {
                header.msg_control = control.words.as_ptr().cast_mut().cast();
                header.msg_controllen = control.len;
            }
            libc::mmsghdr {
                msg_hdr: header,
                msg_len: 0,
            }
        })
        .collect();
    let count = u32::try_from(headers.len()).unwrap_or(u32::MAX);
    // SAFETY: every header points into `datagrams`, `iovs` and `control`, which outlive the
    // call; the kernel only reads them (and writes each header's `msg_len`), and `count` is
    // at most the number of headers.
    let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), count, 0) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    use nix::sys::socket::SockaddrIn;

    use super::*;

    #[test]
    fn sends_each_datagram_to_its_address_and_stops_at_a_failure() {
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        for socket in [&a, &b] {
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
        }
        let to = |socket: &UdpSocket| match socket.local_addr().unwrap() {
            std::net::SocketAddr::V4(addr) => SockaddrIn::from(addr),
            std::net::SocketAddr::V6(_) => unreachable!("bound to IPv4"),
        };
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let control = Control::pktinfo4(0, Ipv4Addr::LOCALHOST);
        let too_big = vec![0u8; 70_000];
        let datagrams = [
            Datagram {
                bytes: b"one",
                to: to(&a),
            },
            Datagram {
                bytes: b"two",
                to: to(&b),
            },
            Datagram {
                bytes: &too_big,
                to: to(&a),
            },
            Datagram {
                bytes: b"four",
                to: to(&b),
            },
        ];
        assert_eq!(send(&sender, &datagrams, &control).unwrap(), 2);
        let mut buf = [0u8; 16];
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        assert_eq!(from, sender.local_addr().unwrap());
        let (n, _) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
        // The one that fails, first in a call, is the call's error.
        let error = send(&sender, &datagrams[2..3], &Control::NONE).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EMSGSIZE), "{error}");
        assert_eq!(send(&sender, &datagrams[3..], &Control::NONE).unwrap(), 1);
        let (n, _) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"four");
    }
}
