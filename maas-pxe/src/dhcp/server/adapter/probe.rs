//! The conflict probe: one ICMP echo request, an answer within a bound or none.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;

static SEQUENCE: AtomicU16 = AtomicU16::new(1);

/// Whether anything at `ip` answers an ICMP echo on `device` within `timeout`.
///
/// Uses an unprivileged ping socket when the system allows one (`net.ipv4.ping_group_range`),
/// else a raw ICMP socket (root or `CAP_NET_RAW`). An error means no probe could be sent.
pub(super) async fn ping(device: &str, ip: Ipv4Addr, timeout: Duration) -> io::Result<bool> {
    let (socket, raw) = match Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)) {
        Ok(s) => (s, false),
        Err(_) => (
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?,
            true,
        ),
    };
    socket.bind_device(Some(device.as_bytes()))?;
    socket.set_nonblocking(true)?;
    // Connecting filters what the socket receives to the probed address.
    socket.connect(&SocketAddr::V4(SocketAddrV4::new(ip, 0)).into())?;
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    // A ping socket replaces the identifier with its own and matches replies by it; a raw
    // socket sees every reply from `ip`, so ours carry this process's identifier.
    let identifier = (std::process::id() & 0xffff) as u16;
    // tokio's UDP socket only calls send(2) and recv(2), which mean the same on an ICMP
    // datagram or raw socket: it registers the socket with the runtime without unsafe code.
    let socket = tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
    socket.send(&echo_request(identifier, sequence)).await?;

    let wait = async {
        let mut buf = [0u8; 1500];
        loop {
            let n = socket.recv(&mut buf).await?;
            let Some(icmp) = icmp_of(&buf[..n], raw) else {
                continue;
            };
            if icmp.len() >= 8 && icmp[0] == ECHO_REPLY {
                let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
                let id = u16::from_be_bytes([icmp[4], icmp[5]]);
                if seq == sequence && (!raw || id == identifier) {
                    return Ok::<bool, io::Error>(true);
                }
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(answered) => answered,
        Err(_elapsed) => Ok(false),
    }
}

/// The ICMP message in what a socket read: after the IPv4 header for a raw socket.
fn icmp_of(datagram: &[u8], raw: bool) -> Option<&[u8]> {
    if !raw {
        return Some(datagram);
    }
    let header = usize::from(datagram.first()? & 0x0f) * 4;
    datagram.get(header..)
}

fn echo_request(identifier: u16, sequence: u16) -> [u8; 16] {
    let mut packet = [0u8; 16];
    packet[0] = ECHO_REQUEST;
    packet[4..6].copy_from_slice(&identifier.to_be_bytes());
    packet[6..8].copy_from_slice(&sequence.to_be_bytes());
    packet[8..16].copy_from_slice(b"maas-rs\0");
    let checksum = checksum(&packet);
    packet[2..4].copy_from_slice(&checksum.to_be_bytes());
    packet
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksums_to_zero() {
        let packet = echo_request(0x1234, 7);
        assert_eq!(checksum(&packet), 0);
        assert_eq!(packet[0], ECHO_REQUEST);
    }

    #[test]
    fn raw_reads_skip_the_ip_header() {
        let mut datagram = vec![0x45; 20];
        datagram.extend_from_slice(&[ECHO_REPLY, 0, 0, 0]);
        assert_eq!(icmp_of(&datagram, true), Some(&[ECHO_REPLY, 0, 0, 0][..]));
        assert_eq!(icmp_of(&datagram, false).map(<[u8]>::len), Some(24));
    }
}
