//! Sockets: options, `recvmsg`/`sendmmsg` with packet information, interface addresses.
//!
//! Everything here goes through safe wrappers (socket2, nix, and [`mmsg`] for `sendmmsg`); the
//! sockets are non-blocking and registered with tokio by the caller.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, SockaddrLike, recvmsg, setsockopt,
    sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};

use super::mmsg;

/// The DHCPv6 multicast group of all relay agents and servers.
pub(super) const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// What the kernel knows about an interface when the service starts.
pub(super) struct Link {
    pub(super) index: u32,
    pub(super) ipv4: Vec<Ipv4Addr>,
    pub(super) ipv6: Vec<Ipv6Addr>,
}

/// The index and addresses of interface `name`.
pub(super) fn link(name: &str) -> io::Result<Link> {
    let index = nix::net::if_::if_nametoindex(name).map_err(|e| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name:?}: {e}"),
        )
    })?;
    let mut link = Link {
        index,
        ipv4: Vec::new(),
        ipv6: Vec::new(),
    };
    for ifaddr in nix::ifaddrs::getifaddrs()? {
        if ifaddr.interface_name != name {
            continue;
        }
        let Some(address) = ifaddr.address else {
            continue;
        };
        if let Some(v4) = address.as_sockaddr_in() {
            link.ipv4.push(v4.ip());
        } else if let Some(v6) = address.as_sockaddr_in6() {
            link.ipv6.push(v6.ip());
        }
    }
    Ok(link)
}

/// A UDP socket on `0.0.0.0:port` bound to `device`, able to broadcast, that reports each
/// datagram's receiving address (`IP_PKTINFO`).
pub(super) fn udp4(
    device: &str,
    port: u16,
    receive_buffer: usize,
) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    grow_receive_buffer(&socket, receive_buffer);
    socket.bind_device(Some(device.as_bytes()))?;
    socket.set_broadcast(true)?;
    setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)?;
    socket.set_nonblocking(true)?;
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    socket
        .bind(&addr.into())
        .map_err(|e| annotate(e, &format!("binding {addr} on {device}")))?;
    Ok(socket.into())
}

/// A UDP socket on `[::]:port` bound to `device` (interface `index`), in the DHCPv6 servers'
/// multicast group there, that reports each datagram's destination (`IPV6_RECVPKTINFO`).
pub(super) fn udp6(
    device: &str,
    index: u32,
    port: u16,
    receive_buffer: usize,
) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(true)?;
    socket.set_reuse_address(true)?;
    grow_receive_buffer(&socket, receive_buffer);
    socket.bind_device(Some(device.as_bytes()))?;
    setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
    socket.set_nonblocking(true)?;
    let addr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
    socket
        .bind(&addr.into())
        .map_err(|e| annotate(e, &format!("binding {addr} on {device}")))?;
    socket
        .join_multicast_v6(&ALL_DHCP_SERVERS, index)
        .map_err(|e| annotate(e, &format!("joining {ALL_DHCP_SERVERS} on {device}")))?;
    Ok(socket.into())
}

/// Asks for a receive buffer of `bytes` (0: leave the default): forced past
/// `net.core.rmem_max` with `CAP_NET_ADMIN`, else capped there by the kernel. A smaller
/// buffer than asked is not an error: the socket works, bursts just overflow sooner.
fn grow_receive_buffer(socket: &Socket, bytes: usize) {
    if bytes == 0 {
        return;
    }
    if setsockopt(socket, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = socket.set_recv_buffer_size(bytes);
    }
}

/// One IPv4 datagram's metadata.
pub(super) struct Meta4 {
    pub(super) len: usize,
    pub(super) source: SocketAddrV4,
    /// `ipi_spec_dst`: the local address a reply would come from.
    pub(super) local: Ipv4Addr,
    pub(super) interface: u32,
}

/// Receives one datagram into `buf` (non-blocking: `WouldBlock` when none is queued).
pub(super) fn recv4(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Meta4> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(libc::in_pktinfo);
    let msg = recvmsg::<SockaddrIn>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram truncated",
        ));
    }
    let source = msg.address.map_or(
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        SocketAddrV4::from,
    );
    let mut local = Ipv4Addr::UNSPECIFIED;
    let mut interface = 0;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::Ipv4PacketInfo(info) = cmsg {
            local = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
            interface = u32::try_from(info.ipi_ifindex).unwrap_or(0);
        }
    }
    Ok(Meta4 {
        len: msg.bytes,
        source,
        local,
        interface,
    })
}

/// One datagram to send: to `to`, from `source` (unspecified: the kernel's choice), out of
/// interface `interface`.
pub(super) struct Out<'a, A, L> {
    pub(super) bytes: &'a [u8],
    pub(super) to: A,
    pub(super) source: L,
    pub(super) interface: u32,
}

/// Sends `out`, each run of datagrams with the same source and interface in one `sendmmsg`
/// (the packet information is shared by a call's datagrams); `failed` hears of each datagram
/// the kernel refused.
pub(super) fn send4_all(
    socket: &impl AsRawFd,
    out: &[Out<'_, SocketAddrV4, Ipv4Addr>],
    failed: impl FnMut(SocketAddrV4, io::Error),
) {
    let control = |source: Ipv4Addr, interface| {
        if source.is_unspecified() && interface == 0 {
            mmsg::Control::NONE
        } else {
            mmsg::Control::pktinfo4(interface, source)
        }
    };
    send_all(socket, out, control, |to, _| SockaddrIn::from(to), failed);
}

/// [`send4_all`] for IPv6.
pub(super) fn send6_all(
    socket: &impl AsRawFd,
    out: &[Out<'_, SocketAddrV6, Ipv6Addr>],
    failed: impl FnMut(SocketAddrV6, io::Error),
) {
    let control = |source, interface| mmsg::Control::pktinfo6(interface, source);
    let address = |to, interface| SockaddrIn6::from(scoped(to, interface));
    send_all(socket, out, control, address, failed);
}

/// [`send4_all`] for either family: `control` makes a run's packet information from its
/// source and interface, `address` a datagram's destination from its address and interface.
fn send_all<A: Copy, L: Copy + PartialEq, S: SockaddrLike>(
    socket: &impl AsRawFd,
    out: &[Out<'_, A, L>],
    control: impl Fn(L, u32) -> mmsg::Control,
    address: impl Fn(A, u32) -> S,
    mut failed: impl FnMut(A, io::Error),
) {
    for run in out.chunk_by(|a, b| a.source == b.source && a.interface == b.interface) {
        let interface = run[0].interface;
        let control = control(run[0].source, interface);
        let datagrams: Vec<_> = run
            .iter()
            .map(|o| mmsg::Datagram {
                bytes: o.bytes,
                to: address(o.to, interface),
            })
            .collect();
        send_run(socket, &datagrams, &control, |i, error| {
            failed(run[i].to, error)
        });
    }
}

/// Sends every datagram of `datagrams`, calling `sendmmsg` again after one the kernel
/// refused (reported to `failed` by index).
fn send_run<S: SockaddrLike>(
    socket: &impl AsRawFd,
    datagrams: &[mmsg::Datagram<'_, S>],
    control: &mmsg::Control,
    mut failed: impl FnMut(usize, io::Error),
) {
    let mut start = 0;
    while start < datagrams.len() {
        match mmsg::send(socket, &datagrams[start..], control) {
            Ok(0) => {
                failed(start, io::Error::from(io::ErrorKind::WouldBlock));
                start += 1;
            }
            Ok(sent) => start += sent,
            // The call stops at the first datagram that fails: report it, go on after it.
            Err(error) => {
                failed(start, error);
                start += 1;
            }
        }
    }
}

/// One IPv6 datagram's metadata.
pub(super) struct Meta6 {
    pub(super) len: usize,
    pub(super) source: SocketAddrV6,
    /// The datagram's destination: the servers' multicast group or one of ours.
    pub(super) destination: Ipv6Addr,
    pub(super) interface: u32,
}

/// Receives one IPv6 datagram into `buf` (non-blocking).
pub(super) fn recv6(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Meta6> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(libc::in6_pktinfo);
    let msg = recvmsg::<SockaddrIn6>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram truncated",
        ));
    }
    let source = msg.address.map_or(
        SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0),
        SocketAddrV6::from,
    );
    let mut destination = Ipv6Addr::UNSPECIFIED;
    let mut interface = 0;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::Ipv6PacketInfo(info) = cmsg {
            destination = Ipv6Addr::from(info.ipi6_addr.s6_addr);
            interface = info.ipi6_ifindex;
        }
    }
    Ok(Meta6 {
        len: msg.bytes,
        source,
        destination,
        interface,
    })
}

/// `to`, with `interface` as its scope when it is link-scoped and has none.
fn scoped(mut to: SocketAddrV6, interface: u32) -> SocketAddrV6 {
    if to.scope_id() == 0 && is_link_scoped(*to.ip()) {
        to.set_scope_id(interface);
    }
    to
}

/// Link-local unicast or link-scoped multicast: meaningful only with an interface.
pub(super) fn is_link_scoped(ip: Ipv6Addr) -> bool {
    ip.is_unicast_link_local() || (ip.is_multicast() && ip.segments()[0] & 0x000f == 2)
}

fn annotate(error: io::Error, doing: &str) -> io::Error {
    io::Error::new(error.kind(), format!("{doing}: {error}"))
}
