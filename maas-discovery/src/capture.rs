//! Capture on Linux without libpcap: an `AF_PACKET` socket per interface with a classic BPF
//! filter that lets through ARP, ICMPv6 neighbour solicitations and advertisements, and UDP
//! from port 5353 (mDNS), untagged or with one 802.1Q tag.
//!
//! The socket joins the mDNS groups (`01:00:5e:00:00:fb`, `33:33:00:00:00:fb`) and, so that
//! neighbour solicitations to any solicited-node group are seen, all multicast
//! (`PACKET_MR_ALLMULTI`). It puts the interface in promiscuous mode only when asked. Linux
//! strips the VLAN tag of received frames on most drivers and passes it alongside
//! (`PACKET_AUXDATA`): [`Capture::recv`] returns it, and [`Received::decode`] puts it back
//! into the [`Frame`]. Frames the host sends itself are marked [`Received::outgoing`], so
//! that a scan's own probes are not mistaken for another device's claims.
//!
//! Opening a capture needs `CAP_NET_RAW`; without it the error says so. With the `tokio`
//! feature, [`AsyncCapture`] waits for frames on the runtime with `AsyncFd`.
//!
//! This is the only module of the crate with `unsafe` code: the socket calls that neither the
//! standard library nor a safe wrapper covers for packet sockets (`bind` to a `sockaddr_ll`,
//! `SO_ATTACH_FILTER`, `PACKET_ADD_MEMBERSHIP`, `recvmsg` with `PACKET_AUXDATA`), and
//! `getifaddrs` for [`interface_ipv4_addresses`].
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use maas_net::Mac;
use serde::{Deserialize, Serialize};

use crate::wire::{Frame, WireError, parse_frame};

/// Why a capture could not be opened or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The process lacks `CAP_NET_RAW`.
    #[error(
        "capturing on {interface} needs CAP_NET_RAW: run as root, or grant it with `setcap cap_net_raw+ep <binary>`"
    )]
    Permission {
        /// The interface.
        interface: String,
    },
    /// No interface has that name.
    #[error("no network interface named {0:?}")]
    NoSuchInterface(String),
    /// The interface has no Ethernet MAC address (a tunnel or loopback device).
    #[error("interface {interface} has no Ethernet address ({detail})")]
    NotEthernet {
        /// The interface.
        interface: String,
        /// What was read instead.
        detail: String,
    },
    /// Another system call failed.
    #[error("{call} on {interface}: {source}")]
    Io {
        /// The call or option.
        call: &'static str,
        /// The interface.
        interface: String,
        /// The OS error.
        source: io::Error,
    },
}

/// What to capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// The interface name.
    pub interface: String,
    /// Put the interface in promiscuous mode, to see unicast frames between other devices
    /// (ARP replies) too (default off).
    #[serde(default)]
    pub promiscuous: bool,
    /// Receive all multicast, so that neighbour solicitations to every solicited-node group
    /// are seen (default on).
    #[serde(default = "yes")]
    pub all_multicast: bool,
}

fn yes() -> bool {
    true
}

impl CaptureConfig {
    /// Captures on `interface`, not promiscuous, all multicast.
    pub fn new(interface: impl Into<String>) -> Self {
        Self {
            interface: interface.into(),
            promiscuous: false,
            all_multicast: true,
        }
    }

    /// Sets promiscuous mode.
    pub fn promiscuous(&mut self, on: bool) -> &mut Self {
        self.promiscuous = on;
        self
    }

    /// Sets whether all multicast is received.
    pub fn all_multicast(&mut self, on: bool) -> &mut Self {
        self.all_multicast = on;
        self
    }
}

/// What [`Capture::recv`] received: the frame's length in the buffer and what the kernel said
/// about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes of the frame in the buffer (a longer frame is truncated to the buffer).
    pub len: usize,
    /// The VLAN id of a tag the kernel took off the frame, if it did.
    pub vid: Option<u16>,
    /// Whether the host itself sent the frame.
    pub outgoing: bool,
}

impl Received {
    /// Decodes the frame in `buf` (the buffer given to `recv`), with the VLAN tag the kernel
    /// stripped put back.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<Frame>, WireError> {
        let data = buf.get(..self.len).unwrap_or(buf);
        let mut frame = parse_frame(data)?;
        if let (Some(frame), Some(vid)) = (frame.as_mut(), self.vid) {
            frame.vid = vid;
        }
        Ok(frame)
    }
}

/// An `AF_PACKET` capture socket bound to one interface, with the discovery filter.
#[derive(Debug)]
pub struct Capture {
    fd: OwnedFd,
    interface: String,
    ifindex: i32,
    mac: Mac,
}

/// `ETH_P_ALL` in network byte order, as `socket` and `sockaddr_ll` want it.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

impl Capture {
    /// Opens a capture: a packet socket with the filter attached before it is bound (so no
    /// unfiltered frame is ever queued), bound to the interface, with its memberships.
    pub fn open(config: &CaptureConfig) -> Result<Self, CaptureError> {
        let interface = config.interface.clone();
        let io_err = |call: &'static str| {
            let source = io::Error::last_os_error();
            CaptureError::Io {
                call,
                interface: config.interface.clone(),
                source,
            }
        };
        let name = CString::new(interface.as_bytes())
            .map_err(|_| CaptureError::NoSuchInterface(interface.clone()))?;
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(CaptureError::NoSuchInterface(interface));
        }
        let ifindex =
            i32::try_from(ifindex).map_err(|_| CaptureError::NoSuchInterface(interface.clone()))?;
        let mac = interface_mac(&interface)?;

        // Protocol 0: the socket receives nothing until it is bound with ETH_P_ALL below.
        // SAFETY: plain system call with constant arguments.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => CaptureError::Permission { interface },
                _ => CaptureError::Io {
                    call: "socket(AF_PACKET)",
                    interface,
                    source: err,
                },
            });
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let program = filter();
        let fprog = libc::sock_fprog {
            len: u16::try_from(program.len()).unwrap_or(u16::MAX),
            filter: program.as_ptr().cast_mut(),
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
            .map_err(|()| io_err("SO_ATTACH_FILTER"))?;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, &1i32)
            .map_err(|()| io_err("PACKET_AUXDATA"))?;

        // SAFETY: an all-zero sockaddr_ll is a valid value of this plain C struct.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL_BE;
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io_err("bind(AF_PACKET)"));
        }

        let membership = |kind: i32, address: Option<[u8; 6]>| {
            let mut mreq = libc::packet_mreq {
                mr_ifindex: ifindex,
                mr_type: kind as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            if let Some(a) = address {
                mreq.mr_alen = 6;
                mreq.mr_address[..6].copy_from_slice(&a);
            }
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
        };
        for group in [
            [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb], // 224.0.0.251, mDNS
            [0x33, 0x33, 0x00, 0x00, 0x00, 0xfb], // ff02::fb, mDNS
            [0x33, 0x33, 0x00, 0x00, 0x00, 0x01], // ff02::1, all nodes (advertisements)
        ] {
            membership(libc::PACKET_MR_MULTICAST, Some(group))
                .map_err(|()| io_err("PACKET_ADD_MEMBERSHIP (multicast)"))?;
        }
        if config.all_multicast {
            membership(libc::PACKET_MR_ALLMULTI, None)
                .map_err(|()| io_err("PACKET_ADD_MEMBERSHIP (all multicast)"))?;
        }
        if config.promiscuous {
            membership(libc::PACKET_MR_PROMISC, None)
                .map_err(|()| io_err("PACKET_ADD_MEMBERSHIP (promiscuous)"))?;
        }
        // Memberships end with the socket: closing it leaves the interface as it was.
        Ok(Self {
            fd,
            interface: config.interface.clone(),
            ifindex,
            mac,
        })
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The interface's MAC address (the source of a scan's probes).
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// The interface index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Receives one frame into `buf` without waiting: `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one tpacket_auxdata control message, aligned for cmsghdr.
        let mut control = [0u64; 8];
        // SAFETY: an all-zero sockaddr_ll / msghdr are valid values of these plain C structs.
        let mut from: libc::sockaddr_ll = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&raw mut from).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 8]>();
        // SAFETY: every pointer in `msg` points to live buffers of the lengths given, which
        // outlive the call.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_TRUNC) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = usize::try_from(n).unwrap_or(0).min(buf.len());
        let mut vid = None;
        // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its control buffer within
        // msg_controllen, and the auxdata is read unaligned from within the message's data.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                let header = &*cmsg;
                if header.cmsg_level == libc::SOL_PACKET
                    && header.cmsg_type == libc::PACKET_AUXDATA
                    && header.cmsg_len as usize
                        >= libc::CMSG_LEN(size_of::<libc::tpacket_auxdata>() as u32) as usize
                {
                    let aux = libc::CMSG_DATA(cmsg)
                        .cast::<libc::tpacket_auxdata>()
                        .read_unaligned();
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        vid = Some(aux.tp_vlan_tci & 0x0fff);
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        Ok(Received {
            len,
            vid,
            outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
        })
    }

    /// Sends one complete Ethernet frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is a live buffer of the length given.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for Capture {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Capture {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The interface's MAC from sysfs.
fn interface_mac(interface: &str) -> Result<Mac, CaptureError> {
    if interface.contains('/') || interface.starts_with('.') {
        return Err(CaptureError::NoSuchInterface(interface.to_string()));
    }
    let path = format!("/sys/class/net/{interface}/address");
    let text = std::fs::read_to_string(&path).map_err(|source| CaptureError::Io {
        call: "reading the interface's address from sysfs",
        interface: interface.to_string(),
        source,
    })?;
    Mac::parse(text.trim()).map_err(|e| CaptureError::NotEthernet {
        interface: interface.to_string(),
        detail: format!("{:?}: {e}", text.trim()),
    })
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> Result<(), ()> {
    // SAFETY: `value` points to a live, initialised T whose size is passed along; the kernel
    // copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(()) } else { Ok(()) }
}

/// The classic BPF program (see the module docs).
fn filter() -> Vec<libc::sock_filter> {
    Asm::discovery().finish()
}

const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const JEQ: u16 = 0x15;
const JGT: u16 = 0x25;
const JGE: u16 = 0x35;
const JSET: u16 = 0x45;
const RET: u16 = 0x06;

/// A tiny assembler with named labels for the filter, so the jump offsets are computed, not
/// counted by hand.
struct Asm {
    code: Vec<(u16, &'static str, &'static str, u32)>,
    labels: Vec<(&'static str, usize)>,
}

impl Asm {
    fn discovery() -> Self {
        let mut a = Self {
            code: Vec::new(),
            labels: Vec::new(),
        };
        a.ether(0, "u_v6", "u_v4", "tag");
        a.label("tag");
        a.stmt(LD_H_ABS, 12);
        a.jump(JEQ, 0x8100, "t", "reject");
        a.label("t");
        a.ether(4, "t_v6", "t_v4", "reject");
        a.ip(0, "u_v6", "u_v4", "u_icmp6", "u_nd", "u_udp6");
        a.ip(4, "t_v6", "t_v4", "t_icmp6", "t_nd", "t_udp6");
        a.label("accept");
        a.stmt(RET, 0x0004_0000);
        a.label("reject");
        a.stmt(RET, 0);
        a
    }

    /// Dispatch on the EtherType at `12 + off`.
    fn ether(&mut self, off: u32, v6: &'static str, v4: &'static str, other: &'static str) {
        self.stmt(LD_H_ABS, 12 + off);
        self.jump(JEQ, 0x0806, "accept", "");
        self.jump(JEQ, 0x86dd, v6, "");
        self.jump(JEQ, 0x0800, v4, other);
    }

    fn ip(
        &mut self,
        off: u32,
        v6: &'static str,
        v4: &'static str,
        icmp6: &'static str,
        nd: &'static str,
        udp6: &'static str,
    ) {
        let l3 = 14 + off;
        self.label(v6);
        self.stmt(LD_B_ABS, l3 + 6); // next header
        self.jump(JEQ, 58, icmp6, "");
        self.jump(JEQ, 17, udp6, "reject");
        self.label(icmp6);
        self.stmt(LD_B_ABS, l3 + 40); // ICMPv6 type
        self.jump(JGE, 135, nd, "reject");
        self.label(nd);
        self.jump(JGT, 136, "reject", "accept");
        self.label(udp6);
        self.stmt(LD_H_ABS, l3 + 40); // UDP source port
        self.jump(JEQ, 5353, "accept", "reject");
        self.label(v4);
        self.stmt(LD_B_ABS, l3 + 9); // protocol
        self.jump(JEQ, 17, "", "reject");
        self.stmt(LD_H_ABS, l3 + 6); // fragment offset: only first fragments have ports
        self.jump(JSET, 0x1fff, "reject", "");
        self.stmt(LDX_B_MSH, l3); // X = IPv4 header length
        self.stmt(LD_H_IND, l3); // UDP source port
        self.jump(JEQ, 5353, "accept", "reject");
    }

    fn label(&mut self, name: &'static str) {
        self.labels.push((name, self.code.len()));
    }

    fn stmt(&mut self, code: u16, k: u32) {
        self.code.push((code, "", "", k));
    }

    /// A conditional jump; an empty label means the next instruction.
    fn jump(&mut self, code: u16, k: u32, jt: &'static str, jf: &'static str) {
        self.code.push((code, jt, jf, k));
    }

    fn finish(self) -> Vec<libc::sock_filter> {
        let target = |at: usize, label: &str| -> u8 {
            if label.is_empty() {
                return 0;
            }
            let to = self
                .labels
                .iter()
                .find(|(name, _)| *name == label)
                .map_or(at + 1, |(_, pos)| *pos);
            // The program is a few dozen instructions and only jumps forward.
            u8::try_from(to.saturating_sub(at + 1)).unwrap_or(u8::MAX)
        };
        self.code
            .iter()
            .enumerate()
            .map(|(at, &(code, jt, jf, k))| libc::sock_filter {
                code,
                jt: target(at, jt),
                jf: target(at, jf),
                k,
            })
            .collect()
    }
}

/// The IPv4 addresses of the interface `name`, in the kernel's order; empty when it has none
/// or does not exist. What a scanner needs to pick the subnets it is attached to.
pub fn interface_ipv4_addresses(name: &str) -> io::Result<Vec<Ipv4Addr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list and stores its head in `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut node = list;
    while !node.is_null() {
        // SAFETY: `node` is a node of the list getifaddrs returned, which is not freed yet.
        let ifa = unsafe { &*node };
        node = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated name owned by the list.
        let ifname = unsafe { CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: `ifa_addr` points to a socket address at least as large as a `sockaddr`.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if ifname.to_bytes() != name.as_bytes() || i32::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: an `AF_INET` address is a `sockaddr_in`; read unaligned to not assume more.
        let sin = unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in>()) };
        out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
    }
    // SAFETY: the list getifaddrs returned, freed once; no reference into it is kept.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

#[cfg(feature = "tokio")]
pub use self::tokio_adapter::AsyncCapture;

#[cfg(feature = "tokio")]
mod tokio_adapter {
    use std::io;

    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    use super::{Capture, CaptureConfig, CaptureError, Received};

    /// A [`Capture`] on the tokio runtime: waits for frames with `AsyncFd`.
    #[derive(Debug)]
    pub struct AsyncCapture {
        inner: AsyncFd<Capture>,
    }

    impl AsyncCapture {
        /// Opens a capture (see [`Capture::open`]) and registers it with the runtime.
        pub fn open(config: &CaptureConfig) -> Result<Self, CaptureError> {
            let capture = Capture::open(config)?;
            Self::new(capture).map_err(|source| CaptureError::Io {
                call: "registering with the tokio reactor",
                interface: config.interface.clone(),
                source,
            })
        }

        /// Wraps an open capture (its socket is non-blocking already).
        pub fn new(capture: Capture) -> io::Result<Self> {
            // SAFETY: the descriptor is owned by `capture` (an `OwnedFd`), which the `AsyncFd`
            // owns in turn: it stays open for as long as it is registered.
            let inner = unsafe {
                AsyncFd::register_with_interest(capture, Interest::READABLE | Interest::WRITABLE)
            }?;
            Ok(Self { inner })
        }

        /// The capture.
        pub fn get_ref(&self) -> &Capture {
            self.inner.get_ref()
        }

        /// Waits for and receives one frame.
        pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
            loop {
                let mut guard = self.inner.readable().await?;
                match guard.try_io(|fd| fd.get_ref().recv(buf)) {
                    Ok(result) => return result,
                    Err(_would_block) => continue,
                }
            }
        }

        /// Sends one frame, waiting while the socket's buffer is full.
        pub async fn send(&self, frame: &[u8]) -> io::Result<()> {
            loop {
                let mut guard = self.inner.writable().await?;
                match guard.try_io(|fd| fd.get_ref().send(frame)) {
                    Ok(result) => return result,
                    Err(_would_block) => continue,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        let lo = interface_ipv4_addresses("lo").unwrap();
        assert!(lo.contains(&Ipv4Addr::LOCALHOST), "{lo:?}");
        assert!(interface_ipv4_addresses("no-such-if0").unwrap().is_empty());
    }

    /// Runs the filter over `frame` like the kernel's classic BPF interpreter (the subset of
    /// instructions the program uses), returning the number of bytes kept.
    fn run(program: &[libc::sock_filter], frame: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |i: usize| frame.get(i).copied();
        let half = |i: usize| Some(u32::from(u16::from_be_bytes([byte(i)?, byte(i + 1)?])));
        loop {
            let ins = &program[pc];
            pc += 1;
            let k = ins.k as usize;
            let jump = |cond: bool| usize::from(if cond { ins.jt } else { ins.jf });
            match ins.code {
                LD_H_ABS => match half(k) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_B_ABS => match byte(k) {
                    Some(v) => a = u32::from(v),
                    None => return 0,
                },
                LD_H_IND => match half(k + x as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LDX_B_MSH => match byte(k) {
                    Some(v) => x = u32::from(v & 0xf) * 4,
                    None => return 0,
                },
                JEQ => pc += jump(a == ins.k),
                JGT => pc += jump(a > ins.k),
                JGE => pc += jump(a >= ins.k),
                JSET => pc += jump(a & ins.k != 0),
                RET => return ins.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn filter_keeps_discovery_frames_only() {
        use crate::wire::{Arp, Ndp};
        use std::net::Ipv4Addr;
        let program = filter();
        let mac = Mac::new([2, 0, 0, 0, 0, 1]);
        let arp = Arp::probe(mac, Ipv4Addr::new(10, 77, 130, 1));
        assert!(run(&program, &arp.emit_frame(0)) > 0);
        assert!(run(&program, &arp.emit_frame(12)) > 0);
        let dad = Ndp::dad_frame(
            mac,
            "fd77:130::1"
                .parse()
                .unwrap_or(std::net::Ipv6Addr::LOCALHOST),
            0,
        );
        assert!(run(&program, &dad) > 0);
        let tagged = Ndp::dad_frame(
            mac,
            "fd77:130::1"
                .parse()
                .unwrap_or(std::net::Ipv6Addr::LOCALHOST),
            3,
        );
        assert!(run(&program, &tagged) > 0);
        // An ICMPv6 echo request (type 128) is not let through.
        let mut echo = dad.clone();
        echo[14 + 40] = 128;
        assert_eq!(run(&program, &echo), 0);
        // IPv4 UDP from 5353 is; from another port it is not.
        let mut udp = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [1, 0, 0x5e, 0, 0, 0xfb])
            .ipv4([10, 77, 130, 1], [224, 0, 0, 251], 255)
            .udp(5353, 5353)
            .write(&mut udp, &[0; 12])
            .unwrap_or_default();
        assert!(run(&program, &udp) > 0);
        udp[14 + 20] = 0x10;
        assert_eq!(run(&program, &udp), 0);
        let mut ip6udp = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0x33, 0x33, 0, 0, 0, 0xfb])
            .ipv6([0xfe; 16], [0xff; 16], 255)
            .udp(5353, 5353)
            .write(&mut ip6udp, &[0; 12])
            .unwrap_or_default();
        assert!(run(&program, &ip6udp) > 0);
        // TCP and other EtherTypes are not.
        let mut other = arp.emit_frame(0);
        other[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
        assert_eq!(run(&program, &other), 0);
    }

    #[test]
    fn unknown_interface_is_a_clear_error() {
        let err = Capture::open(&CaptureConfig::new("maas-no-such0")).unwrap_err();
        assert!(matches!(err, CaptureError::NoSuchInterface(_)), "{err}");
    }
}
