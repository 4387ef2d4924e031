//! Just enough DHCPv4 for the peer tests: relay-style probes, ACKs read back from a pcap
//! capture, and perfdhcp's report.
//!
//! The codec is deliberately independent of the crates under test, so a bug there cannot
//! hide itself here.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

/// Message types (option 53).
pub(crate) const DISCOVER: u8 = 1;
/// DHCPOFFER.
pub(crate) const OFFER: u8 = 2;
/// DHCPACK.
pub(crate) const ACK: u8 = 5;

/// A BOOTP/DHCP reply, as far as the tests look at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    /// Option 53.
    pub(crate) kind: u8,
    /// Transaction ID.
    pub(crate) xid: u32,
    /// The client's hardware address.
    pub(crate) chaddr: [u8; 6],
    /// The address offered or acknowledged.
    pub(crate) yiaddr: Ipv4Addr,
    /// The boot file header field (empty when unset).
    pub(crate) file: String,
}

/// A DISCOVER for `chaddr` as a relay at `giaddr` forwards it, with client identifier
/// `01 chaddr` (option 61): the identity perfdhcp's REQUESTs carry, so the server knows the
/// client as the one perfdhcp leased to.
pub(crate) fn discover(xid: u32, chaddr: [u8; 6], giaddr: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 240];
    p[..4].copy_from_slice(&[1, 1, 6, 1]); // BOOTREQUEST, Ethernet, 6-byte address, 1 hop
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[24..28].copy_from_slice(&giaddr.octets());
    p[28..34].copy_from_slice(&chaddr);
    p[236..240].copy_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(&[53, 1, DISCOVER, 61, 7, 1]);
    p.extend_from_slice(&chaddr);
    p.push(255);
    p
}

/// Parses a BOOTREPLY with an Ethernet `chaddr` and a message type.
pub(crate) fn parse_reply(b: &[u8]) -> Option<Reply> {
    if b.len() < 240 || b[0] != 2 || b[236..240] != [99, 130, 83, 99] {
        return None;
    }
    let mut kind = None;
    let mut i = 240;
    while i < b.len() {
        match b[i] {
            0 => i += 1,
            255 => break,
            code => {
                let len = usize::from(*b.get(i + 1)?);
                let value = b.get(i + 2..i + 2 + len)?;
                if code == 53 && len == 1 {
                    kind = Some(value[0]);
                }
                i += 2 + len;
            }
        }
    }
    Some(Reply {
        kind: kind?,
        xid: u32::from_be_bytes(b[4..8].try_into().ok()?),
        chaddr: b[28..34].try_into().ok()?,
        yiaddr: Ipv4Addr::from(<[u8; 4]>::try_from(&b[16..20]).ok()?),
        file: String::from_utf8_lossy(b[108..236].split(|c| *c == 0).next()?).into_owned(),
    })
}

/// The DHCP payloads (UDP port 67 or 68) of an Ethernet pcap file, as `tcpdump -w` writes it.
pub(crate) fn pcap_dhcp_payloads(file: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if file.len() < 24 {
        return out;
    }
    let little = match file[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return out,
    };
    let u32_at = |b: &[u8], at: usize| {
        let bytes: [u8; 4] = b[at..at + 4].try_into().unwrap();
        if little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    assert_eq!(u32_at(file, 20), 1, "not an Ethernet capture");
    let mut at = 24;
    while at + 16 <= file.len() {
        let len = u32_at(file, at + 8) as usize;
        let Some(frame) = file.get(at + 16..at + 16 + len) else {
            break; // a record cut short by the kill
        };
        at += 16 + len;
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let udp = &ip[ihl..];
        let ports = [
            u16::from_be_bytes([udp[0], udp[1]]),
            u16::from_be_bytes([udp[2], udp[3]]),
        ];
        if ports.iter().any(|p| *p == 67 || *p == 68) {
            out.push(udp[8..].to_vec());
        }
    }
    out
}

/// The sent and received counts of one perfdhcp exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Exchange {
    /// Requests sent.
    pub(crate) sent: u64,
    /// Answers received.
    pub(crate) received: u64,
}

/// perfdhcp's per-exchange statistics (`DISCOVER-OFFER`, `REQUEST-ACK`), by exchange name.
pub(crate) fn perfdhcp_stats(report: &[String]) -> BTreeMap<String, Exchange> {
    let mut stats = BTreeMap::new();
    let mut current = None;
    for line in report {
        if let Some(name) = line.strip_prefix("***Statistics for: ") {
            current = Some(name.trim_end_matches('*').to_string());
            continue;
        }
        let Some(name) = &current else { continue };
        let entry: &mut Exchange = stats.entry(name.clone()).or_default();
        if let Some(n) = line.strip_prefix("sent packets: ") {
            entry.sent = n.trim().parse().unwrap_or(0);
        } else if let Some(n) = line.strip_prefix("received packets: ") {
            entry.received = n.trim().parse().unwrap_or(0);
        }
    }
    stats
}

/// Sends a relayed DISCOVER for each `chaddr` from `giaddr`:67 to `server`:67 and collects
/// the offered address (`None`: no offer after three tries). Runs inside the client
/// namespace, where nothing else holds port 67.
pub(crate) fn probe_offers(
    server: Ipv4Addr,
    giaddr: Ipv4Addr,
    clients: &[[u8; 6]],
) -> Vec<([u8; 6], Option<Ipv4Addr>)> {
    let socket = UdpSocket::bind(SocketAddrV4::new(giaddr, 67)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut results = Vec::new();
    let mut buf = [0u8; 1500];
    for (n, chaddr) in clients.iter().enumerate() {
        let mut offered = None;
        'tries: for attempt in 0..3u32 {
            let xid = 0x7700_0000 | ((n as u32) << 2) | attempt;
            socket
                .send_to(
                    &discover(xid, *chaddr, giaddr),
                    SocketAddrV4::new(server, 67),
                )
                .unwrap();
            // Bounded: every recv waits at most the read timeout, and a stray reply costs one
            // of a fixed number of reads.
            for _ in 0..8 {
                let Ok(len) = socket.recv(&mut buf) else {
                    continue 'tries;
                };
                if let Some(reply) = parse_reply(&buf[..len])
                    && reply.xid == xid
                    && reply.kind == OFFER
                {
                    offered = Some(reply.yiaddr);
                    break 'tries;
                }
            }
        }
        results.push((*chaddr, offered));
    }
    results
}

/// `52:54:00:...` text for a hardware address.
pub(crate) fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub(crate) fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

#[test]
fn codec_round_trip() {
    let mac = [0x52, 0x54, 0, 0x77, 1, 2];
    let mut p = discover(7, mac, Ipv4Addr::new(10, 77, 0, 2));
    assert!(parse_reply(&p).is_none(), "a request is not a reply");
    p[0] = 2;
    p[16..20].copy_from_slice(&[10, 77, 16, 5]);
    p[242] = ACK;
    let reply = parse_reply(&p).unwrap();
    assert_eq!(reply.kind, ACK);
    assert_eq!(reply.xid, 7);
    assert_eq!(reply.chaddr, mac);
    assert_eq!(reply.yiaddr, Ipv4Addr::new(10, 77, 16, 5));
    assert_eq!(reply.file, "");
    assert_eq!(parse_mac(&mac_text(&mac)), Some(mac));
}

#[test]
fn perfdhcp_report() {
    let report: Vec<String> = [
        "***Statistics for: DISCOVER-OFFER***",
        "sent packets: 600",
        "received packets: 598",
        "***Statistics for: REQUEST-ACK***",
        "sent packets: 598",
        "received packets: 597",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let stats = perfdhcp_stats(&report);
    assert_eq!(
        stats["DISCOVER-OFFER"],
        Exchange {
            sent: 600,
            received: 598
        }
    );
    assert_eq!(stats["REQUEST-ACK"].received, 597);
}
