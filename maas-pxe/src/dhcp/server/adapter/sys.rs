//! Sockets: options, `recvmsg`/`sendmsg` with packet information, interface addresses.
//!
//! Everything here goes through safe wrappers (socket2, nix); the sockets are non-blocking
//! and registered with tokio by the caller.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, recvmsg, sendmsg,
    setsockopt, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};

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

/// Sends `bytes` to `to` out of interface `interface`, from `source` when it is set.
pub(super) fn send4(
    socket: &impl AsRawFd,
    bytes: &[u8],
    to: SocketAddrV4,
    source: Ipv4Addr,
    interface: u32,
) -> io::Result<()> {
    let info = libc::in_pktinfo {
        ipi_ifindex: i32::try_from(interface).unwrap_or(0),
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(source).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
    let cmsgs: &[ControlMessage<'_>] = if source.is_unspecified() && interface == 0 {
        &[]
    } else {
        &cmsgs
    };
    let to = SockaddrIn::from(to);
    sendmsg(
        socket.as_raw_fd(),
        &[IoSlice::new(bytes)],
        cmsgs,
        MsgFlags::empty(),
        Some(&to),
    )?;
    Ok(())
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

/// Sends `bytes` to `to` out of interface `interface`, from `source` unless it is unspecified.
pub(super) fn send6(
    socket: &impl AsRawFd,
    bytes: &[u8],
    mut to: SocketAddrV6,
    source: Ipv6Addr,
    interface: u32,
) -> io::Result<()> {
    if to.scope_id() == 0 && is_link_scoped(*to.ip()) {
        to.set_scope_id(interface);
    }
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: source.octets(),
        },
        ipi6_ifindex: interface,
    };
    let cmsgs = [ControlMessage::Ipv6PacketInfo(&info)];
    let to = SockaddrIn6::from(to);
    sendmsg(
        socket.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &cmsgs,
        MsgFlags::empty(),
        Some(&to),
    )?;
    Ok(())
}

/// Link-local unicast or link-scoped multicast: meaningful only with an interface.
pub(super) fn is_link_scoped(ip: Ipv6Addr) -> bool {
    ip.is_unicast_link_local() || (ip.is_multicast() && ip.segments()[0] & 0x000f == 2)
}

fn annotate(error: io::Error, doing: &str) -> io::Error {
    io::Error::new(error.kind(), format!("{doing}: {error}"))
}
