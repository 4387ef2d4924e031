//! Decoding of the frames discovery learns from, and encoding of the probes a scan sends.
//!
//! [`parse_frame`] takes one Ethernet II frame (as a packet socket or a capture file gives it,
//! without the FCS) and returns what it says about the neighbours on the link:
//!
//! - ARP over Ethernet/IPv4 ([`Arp`]): requests, replies, probes (sender `0.0.0.0`) and
//!   gratuitous announcements;
//! - IPv6 neighbour discovery ([`Ndp`]): solicitations and advertisements with their
//!   source/target link-layer address options, and duplicate address detection (from `::`);
//! - mDNS responses on UDP port 5353 ([`Mdns`]): A, AAAA, PTR and SRV records, with hostnames
//!   stripped of `.local`.
//!
//! One 802.1Q tag is kept as the frame's VLAN id (the outer one when a frame is double
//! tagged). Anything else is `Ok(None)`; a frame that claims to be one of these and is
//! malformed is a [`WireError`]. Checksums are not verified: a packet socket sees frames sent
//! from the same host before the checksum offload has filled them in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpHardwareId, ArpOperation, EtherType, Icmpv6Type, LinkExtSlice, LinkSlice, NetSlice,
    PacketBuilder, SlicedPacket, TransportSlice,
};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{Name, RData};
use maas_net::Mac;
use serde::{Deserialize, Serialize};

/// The UDP port of multicast DNS.
pub const MDNS_PORT: u16 = 5353;

/// ICMPv6 type of a neighbour solicitation.
const ICMPV6_NS: u8 = 135;
/// ICMPv6 type of a neighbour advertisement.
const ICMPV6_NA: u8 = 136;
/// NDP option: source link-layer address.
const OPT_SOURCE_LLA: u8 = 1;
/// NDP option: target link-layer address.
const OPT_TARGET_LLA: u8 = 2;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame is shorter than its headers say.
    #[error("truncated frame: {0}")]
    Truncated(String),
    /// The headers are inconsistent (a bad length or version field).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// An ARP packet for another hardware or protocol type than Ethernet/IPv4.
    #[error(
        "ARP for hardware type {hardware} / protocol {protocol:#06x} (lengths {hlen}/{plen}); only Ethernet/IPv4 is decoded"
    )]
    UnsupportedArp {
        /// The hardware type.
        hardware: u16,
        /// The protocol type (an EtherType).
        protocol: u16,
        /// The hardware address length.
        hlen: u8,
        /// The protocol address length.
        plen: u8,
    },
    /// A neighbour discovery message that RFC 4861 section 7.1 says to discard.
    #[error("invalid neighbour discovery message: {0}")]
    InvalidNdp(String),
    /// A UDP 5353 payload that is not a DNS message.
    #[error("invalid mDNS message: {0}")]
    InvalidMdns(String),
}

/// What a decoded frame says, with the link-layer header's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// The Ethernet source address.
    pub source: Mac,
    /// The Ethernet destination address.
    pub destination: Mac,
    /// The 802.1Q VLAN id, 0 when the frame is untagged (or priority tagged).
    pub vid: u16,
    /// The discovery message.
    pub payload: Payload,
}

/// The discovery message a frame carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// An ARP packet.
    Arp(Arp),
    /// An IPv6 neighbour solicitation or advertisement.
    Ndp(Ndp),
    /// An mDNS response.
    Mdns(Mdns),
}

/// The operation of an ARP packet: an open set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArpOp {
    /// 1: who has the target address?
    Request,
    /// 2: the sender has the sender address.
    Reply,
    /// Any other operation code (RARP, InARP...).
    Unknown(u16),
}

impl From<u16> for ArpOp {
    fn from(code: u16) -> Self {
        match code {
            1 => Self::Request,
            2 => Self::Reply,
            n => Self::Unknown(n),
        }
    }
}

impl From<ArpOp> for u16 {
    fn from(op: ArpOp) -> Self {
        match op {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
            ArpOp::Unknown(n) => n,
        }
    }
}

/// An Ethernet/IPv4 ARP packet (RFC 826, probes and announcements per RFC 5227).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Arp {
    /// Request, reply or another code.
    pub operation: ArpOp,
    /// The sender hardware address.
    pub sender_mac: Mac,
    /// The sender protocol address (`0.0.0.0` in a probe).
    pub sender_ip: Ipv4Addr,
    /// The target hardware address (ignored in requests; often zero).
    pub target_mac: Mac,
    /// The target protocol address.
    pub target_ip: Ipv4Addr,
}

impl Arp {
    /// The length of an Ethernet/IPv4 ARP packet.
    pub const LEN: usize = 28;

    /// An ARP probe (RFC 5227 2.1.1): a request from `0.0.0.0`, asking whether anybody uses
    /// the target address. It claims the address; it does not bind the sender to it.
    pub fn is_probe(&self) -> bool {
        self.operation == ArpOp::Request && self.sender_ip.is_unspecified()
    }

    /// A gratuitous ARP: a request or reply whose sender announces its own address (sender
    /// and target protocol addresses equal, RFC 5227 announcements and `arping -U`/`-A`).
    pub fn is_gratuitous(&self) -> bool {
        !self.sender_ip.is_unspecified() && self.sender_ip == self.target_ip
    }

    /// A probe from `mac` for `ip`, as a scan sends it.
    pub fn probe(mac: Mac, ip: Ipv4Addr) -> Self {
        Self {
            operation: ArpOp::Request,
            sender_mac: mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: Mac::ZERO,
            target_ip: ip,
        }
    }

    /// The 28 bytes of the packet.
    pub fn emit(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..2].copy_from_slice(&1u16.to_be_bytes());
        b[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&u16::from(self.operation).to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac.octets());
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac.octets());
        b[24..28].copy_from_slice(&self.target_ip.octets());
        b
    }

    /// The packet in a broadcast Ethernet frame from its sender (padded to the 60-byte
    /// minimum), with an 802.1Q tag when `vid` is not 0.
    pub fn emit_frame(&self, vid: u16) -> Vec<u8> {
        let mut f = Vec::with_capacity(64);
        f.extend_from_slice(&Mac::BROADCAST.octets());
        f.extend_from_slice(&self.sender_mac.octets());
        if vid != 0 {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        f.extend_from_slice(&0x0806u16.to_be_bytes());
        f.extend_from_slice(&self.emit());
        f.resize(f.len().max(60), 0);
        f
    }
}

/// The kind of a neighbour discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NdpKind {
    /// A neighbour solicitation (135).
    Solicitation,
    /// A neighbour advertisement (136) with its flags.
    Advertisement {
        /// R: the sender is a router.
        router: bool,
        /// S: an answer to a solicitation.
        solicited: bool,
        /// O: the advertisement should override a cached link-layer address.
        override_flag: bool,
    },
}

/// An IPv6 neighbour solicitation or advertisement (RFC 4861 sections 4.3, 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ndp {
    /// Solicitation or advertisement.
    pub kind: NdpKind,
    /// The IPv6 source address (`::` for duplicate address detection).
    pub source_ip: Ipv6Addr,
    /// The IPv6 destination address.
    pub destination_ip: Ipv6Addr,
    /// The target address.
    pub target: Ipv6Addr,
    /// The source link-layer address option of a solicitation, or the target link-layer
    /// address option of an advertisement.
    pub link_layer: Option<Mac>,
}

impl Ndp {
    /// A duplicate address detection probe: a solicitation from `::` (RFC 4862 5.4.2).
    pub fn is_dad(&self) -> bool {
        self.kind == NdpKind::Solicitation && self.source_ip.is_unspecified()
    }

    /// A duplicate address detection solicitation from `mac` for `target`, in a frame to
    /// the target's solicited-node multicast group, as a scan sends it. Owners of the address
    /// defend it with an advertisement to all nodes.
    pub fn dad_frame(mac: Mac, target: Ipv6Addr, vid: u16) -> Vec<u8> {
        let t = target.octets();
        let group = Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | u16::from(t[13]),
            u16::from_be_bytes([t[14], t[15]]),
        );
        let g = group.octets();
        let dst = [0x33, 0x33, g[12], g[13], g[14], g[15]];
        let builder = PacketBuilder::ethernet2(mac.octets(), dst);
        let mut out = Vec::with_capacity(90);
        let result = if vid == 0 {
            builder
                .ipv6(Ipv6Addr::UNSPECIFIED.octets(), g, 255)
                .icmpv6(Icmpv6Type::NeighborSolicitation)
                .write(&mut out, &t)
        } else {
            builder
                .single_vlan(etherparse::VlanId::try_new(vid & 0x0fff).unwrap_or_default())
                .ipv6(Ipv6Addr::UNSPECIFIED.octets(), g, 255)
                .icmpv6(Icmpv6Type::NeighborSolicitation)
                .write(&mut out, &t)
        };
        // Writing into a Vec fails only on a payload over the IPv6 length limit; 16 bytes
        // never is.
        debug_assert!(result.is_ok());
        out
    }
}

/// An mDNS response: who sent it and the records it carries (answers and additionals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mdns {
    /// The IP source address of the response.
    pub source_ip: IpAddr,
    /// The records understood (A, AAAA, PTR, SRV); others are skipped.
    pub records: Vec<MdnsRecord>,
}

/// One mDNS record of interest. Host names are given without the trailing dot and without
/// `.local`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum MdnsRecord {
    /// A or AAAA: `host` has address `ip`.
    Address {
        /// The host name.
        host: String,
        /// The address.
        ip: IpAddr,
    },
    /// A PTR of a reverse name (`*.in-addr.arpa`, `*.ip6.arpa`): `ip` is `host`.
    Reverse {
        /// The address.
        ip: IpAddr,
        /// The host name.
        host: String,
    },
    /// Another PTR, as DNS-SD browses services: `name` points to `target`.
    Pointer {
        /// The owner name (such as `_http._tcp.local`).
        name: String,
        /// The name pointed to (a service instance).
        target: String,
    },
    /// SRV: the service `instance` is on `host`, port `port`.
    Service {
        /// The service instance name.
        instance: String,
        /// The host name of the target.
        host: String,
        /// The port.
        port: u16,
    },
}

/// Decodes one Ethernet II frame (without FCS). `Ok(None)` for frames that are not ARP,
/// neighbour discovery or mDNS responses.
pub fn parse_frame(data: &[u8]) -> Result<Option<Frame>, WireError> {
    // ARP is most of what discovery sees: decode it (untagged or with one tag) straight from
    // its fixed offsets, without slicing the frame layer by layer.
    if let Some(frame) = parse_arp_frame(data) {
        return frame.map(Some);
    }
    let packet = SlicedPacket::from_ethernet(data).map_err(|e| slice_error(&e))?;
    let Some(LinkSlice::Ethernet2(eth)) = &packet.link else {
        return Ok(None);
    };
    let source = Mac::new(eth.source());
    let destination = Mac::new(eth.destination());
    let vid = packet
        .link_exts
        .iter()
        .find_map(|ext| match ext {
            LinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
            LinkExtSlice::Macsec(_) => None,
        })
        .unwrap_or(0);
    let payload = match &packet.net {
        Some(NetSlice::Arp(arp)) => Some(Payload::Arp(parse_arp(arp)?)),
        Some(NetSlice::Ipv6(ip)) => match &packet.transport {
            Some(TransportSlice::Icmpv6(icmp)) => {
                let header = ip.header();
                parse_ndp(
                    header.source_addr(),
                    header.destination_addr(),
                    header.hop_limit(),
                    icmp.type_u8(),
                    icmp.code_u8(),
                    icmp.bytes5to8(),
                    icmp.payload(),
                )?
                .map(Payload::Ndp)
            }
            Some(TransportSlice::Udp(udp)) => parse_mdns_udp(
                IpAddr::V6(ip.header().source_addr()),
                udp.source_port(),
                udp.destination_port(),
                udp.payload(),
            )?,
            _ => None,
        },
        Some(NetSlice::Ipv4(ip)) => match &packet.transport {
            Some(TransportSlice::Udp(udp)) => parse_mdns_udp(
                IpAddr::V4(ip.header().source_addr()),
                udp.source_port(),
                udp.destination_port(),
                udp.payload(),
            )?,
            _ => None,
        },
        None => None,
    };
    Ok(payload.map(|payload| Frame {
        source,
        destination,
        vid,
        payload,
    }))
}

/// The ARP fast path: `None` when the frame is not ARP (then the general path decides).
fn parse_arp_frame(data: &[u8]) -> Option<Result<Frame, WireError>> {
    let (header, rest) = data.split_first_chunk::<14>()?;
    let (vid, body) = match u16::from_be_bytes([header[12], header[13]]) {
        0x0806 => (0, rest),
        0x8100 => {
            let (tag, body) = rest.split_first_chunk::<4>()?;
            if u16::from_be_bytes([tag[2], tag[3]]) != 0x0806 {
                return None;
            }
            (u16::from_be_bytes([tag[0], tag[1]]) & 0x0fff, body)
        }
        _ => return None,
    };
    let mut destination = [0u8; 6];
    destination.copy_from_slice(&header[..6]);
    let mut source = [0u8; 6];
    source.copy_from_slice(&header[6..12]);
    Some(
        etherparse::ArpPacketSlice::from_slice(body)
            .map_err(|e| WireError::Truncated(e.to_string()))
            .and_then(|arp| parse_arp(&arp))
            .map(|arp| Frame {
                source: Mac::new(source),
                destination: Mac::new(destination),
                vid,
                payload: Payload::Arp(arp),
            }),
    )
}

fn slice_error(e: &etherparse::err::packet::SliceError) -> WireError {
    use etherparse::err::packet::SliceError;
    match e {
        SliceError::Len(l) => WireError::Truncated(l.to_string()),
        other => WireError::Malformed(other.to_string()),
    }
}

fn parse_arp(arp: &etherparse::ArpPacketSlice<'_>) -> Result<Arp, WireError> {
    let hardware = arp.hw_addr_type();
    let protocol = arp.proto_addr_type();
    if hardware != ArpHardwareId::ETHERNET
        || protocol != EtherType::IPV4
        || arp.hw_addr_size() != 6
        || arp.proto_addr_size() != 4
    {
        return Err(WireError::UnsupportedArp {
            hardware: hardware.0,
            protocol: protocol.0,
            hlen: arp.hw_addr_size(),
            plen: arp.proto_addr_size(),
        });
    }
    let mac = |b: &[u8]| Mac::try_from(b).map_err(|e| WireError::Malformed(e.to_string()));
    let ip = |b: &[u8]| {
        <[u8; 4]>::try_from(b)
            .map(Ipv4Addr::from)
            .map_err(|_| WireError::Malformed("ARP protocol address is not 4 bytes".into()))
    };
    let ArpOperation(op) = arp.operation();
    Ok(Arp {
        operation: ArpOp::from(op),
        sender_mac: mac(arp.sender_hw_addr())?,
        sender_ip: ip(arp.sender_protocol_addr())?,
        target_mac: mac(arp.target_hw_addr())?,
        target_ip: ip(arp.target_protocol_addr())?,
    })
}

fn parse_ndp(
    source_ip: Ipv6Addr,
    destination_ip: Ipv6Addr,
    hop_limit: u8,
    icmp_type: u8,
    code: u8,
    flags: [u8; 4],
    body: &[u8],
) -> Result<Option<Ndp>, WireError> {
    let kind = match icmp_type {
        ICMPV6_NS => NdpKind::Solicitation,
        ICMPV6_NA => NdpKind::Advertisement {
            router: flags[0] & 0x80 != 0,
            solicited: flags[0] & 0x40 != 0,
            override_flag: flags[0] & 0x20 != 0,
        },
        _ => return Ok(None),
    };
    if hop_limit != 255 {
        return Err(WireError::InvalidNdp(format!(
            "hop limit {hop_limit}, not 255: the message was forwarded by a router"
        )));
    }
    if code != 0 {
        return Err(WireError::InvalidNdp(format!("ICMPv6 code {code}, not 0")));
    }
    let Some((target, mut options)) = body.split_first_chunk::<16>() else {
        return Err(WireError::InvalidNdp(format!(
            "{} bytes after the header, too short for a target address",
            body.len()
        )));
    };
    let target = Ipv6Addr::from(*target);
    if target.is_multicast() {
        return Err(WireError::InvalidNdp(format!(
            "target {target} is a multicast address"
        )));
    }
    let wanted = match kind {
        NdpKind::Solicitation => OPT_SOURCE_LLA,
        NdpKind::Advertisement { .. } => OPT_TARGET_LLA,
    };
    let mut link_layer = None;
    while !options.is_empty() {
        let [opt_type, units, ..] = *options else {
            return Err(WireError::InvalidNdp("a truncated option".into()));
        };
        let len = usize::from(units) * 8;
        if len == 0 {
            return Err(WireError::InvalidNdp(format!(
                "option {opt_type} has length 0"
            )));
        }
        let Some((option, rest)) = options.split_at_checked(len) else {
            return Err(WireError::InvalidNdp(format!(
                "option {opt_type} of {len} bytes, {} left",
                options.len()
            )));
        };
        if opt_type == wanted && link_layer.is_none() {
            // An Ethernet link-layer address option is exactly one unit: type, length, MAC.
            if len != 8 {
                return Err(WireError::InvalidNdp(format!(
                    "link-layer address option of {len} bytes, not 8 on Ethernet"
                )));
            }
            link_layer =
                Some(Mac::try_from(&option[2..8]).map_err(|e| {
                    WireError::InvalidNdp(format!("link-layer address option: {e}"))
                })?);
        }
        options = rest;
    }
    let ndp = Ndp {
        kind,
        source_ip,
        destination_ip,
        target,
        link_layer,
    };
    if ndp.is_dad() {
        if link_layer.is_some() {
            return Err(WireError::InvalidNdp(
                "solicitation from :: with a source link-layer address option".into(),
            ));
        }
        if !is_solicited_node(destination_ip) {
            return Err(WireError::InvalidNdp(format!(
                "solicitation from :: to {destination_ip}, not a solicited-node group"
            )));
        }
    }
    Ok(Some(ndp))
}

fn is_solicited_node(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    s[..5] == [0xff02, 0, 0, 0, 0] && s[5] == 1 && s[6] & 0xff00 == 0xff00
}

fn parse_mdns_udp(
    source_ip: IpAddr,
    source_port: u16,
    destination_port: u16,
    payload: &[u8],
) -> Result<Option<Payload>, WireError> {
    // Responses come from port 5353 (to 5353, or to the querier's port for legacy unicast).
    if source_port != MDNS_PORT {
        return Ok(None);
    }
    let _ = destination_port;
    Ok(parse_mdns(source_ip, payload)?.map(Payload::Mdns))
}

/// Decodes an mDNS message (the UDP payload). `Ok(None)` for queries (including probes,
/// whose proposed records are not yet the host's).
pub fn parse_mdns(source_ip: IpAddr, payload: &[u8]) -> Result<Option<Mdns>, WireError> {
    let message = Message::from_vec(payload).map_err(|e| WireError::InvalidMdns(e.to_string()))?;
    if message.metadata.message_type != MessageType::Response {
        return Ok(None);
    }
    let records = message
        .answers
        .iter()
        .chain(&message.additionals)
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(MdnsRecord::Address {
                host: host_name(&r.name),
                ip: IpAddr::V4(a.0),
            }),
            RData::AAAA(a) => Some(MdnsRecord::Address {
                host: host_name(&r.name),
                ip: IpAddr::V6(a.0),
            }),
            RData::PTR(p) => Some(match r.name.parse_arpa_name() {
                Ok(net) if net.prefix_len() == net.max_prefix_len() => MdnsRecord::Reverse {
                    ip: net.addr(),
                    host: host_name(&p.0),
                },
                _ => MdnsRecord::Pointer {
                    name: dns_name(&r.name),
                    target: dns_name(&p.0),
                },
            }),
            RData::SRV(s) => Some(MdnsRecord::Service {
                instance: dns_name(&r.name),
                host: host_name(&s.target),
                port: s.port,
            }),
            _ => None,
        })
        .collect();
    Ok(Some(Mdns { source_ip, records }))
}

/// A name as text without the trailing dot (dots inside labels stay escaped as `\.`).
fn dns_name(name: &Name) -> String {
    let mut s = name.to_utf8();
    if name.is_fqdn() && s.ends_with('.') {
        s.pop();
    }
    s
}

/// A host name without the trailing dot and without the `local` domain (the last label,
/// compared as a label, so `a\.local` is left alone).
fn host_name(name: &Name) -> String {
    let labels: Vec<&[u8]> = name.iter().collect();
    match labels.split_last() {
        Some((last, rest)) if !rest.is_empty() && last.eq_ignore_ascii_case(b"local") => {
            Name::from_labels(rest.iter().copied()).map_or_else(
                |_| dns_name(name),
                |mut n| {
                    n.set_fqdn(true);
                    dns_name(&n)
                },
            )
        }
        _ => dns_name(name),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn arp_frame(arp: &Arp) -> Vec<u8> {
        arp.emit_frame(0)
    }

    #[test]
    fn arp_round_trip_and_kinds() {
        let mac = Mac::new([2, 0, 0, 0, 0, 1]);
        let probe = Arp::probe(mac, Ipv4Addr::new(10, 77, 130, 5));
        let f = parse_frame(&arp_frame(&probe)).unwrap().unwrap();
        assert_eq!(f.payload, Payload::Arp(probe));
        assert_eq!(f.source, mac);
        assert_eq!(f.vid, 0);
        assert!(probe.is_probe());
        assert!(!probe.is_gratuitous());
        let tagged = parse_frame(&probe.emit_frame(42)).unwrap().unwrap();
        assert_eq!(tagged.vid, 42);
    }

    #[test]
    fn arp_of_another_type_is_an_error() {
        let mut f = arp_frame(&Arp::probe(
            Mac::new([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::LOCALHOST,
        ));
        f[14 + 1] = 6; // hardware type 6 (IEEE 802)
        assert!(matches!(
            parse_frame(&f),
            Err(WireError::UnsupportedArp { hardware: 6, .. })
        ));
    }

    #[test]
    fn truncated_is_an_error() {
        let f = arp_frame(&Arp::probe(
            Mac::new([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::LOCALHOST,
        ));
        assert!(parse_frame(&f[..30]).is_err());
        assert!(parse_frame(&f[..5]).is_err());
    }

    #[test]
    fn dad_round_trip() {
        let mac = Mac::new([2, 0, 0, 0, 0, 9]);
        let target: Ipv6Addr = "fd77:130::9".parse().unwrap();
        for vid in [0, 7] {
            let f = parse_frame(&Ndp::dad_frame(mac, target, vid))
                .unwrap()
                .unwrap();
            assert_eq!(f.vid, vid);
            let Payload::Ndp(ndp) = f.payload else {
                panic!("not NDP: {f:?}")
            };
            assert!(ndp.is_dad());
            assert_eq!(ndp.target, target);
            assert_eq!(ndp.link_layer, None);
            assert_eq!(f.destination, Mac::new([0x33, 0x33, 0xff, 0, 0, 9]));
        }
    }

    fn ns_frame(hop_limit: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0x33, 0x33, 0xff, 0, 0, 1])
            .ipv6(
                "fd77:130::2".parse::<Ipv6Addr>().unwrap().octets(),
                "ff02::1:ff00:1".parse::<Ipv6Addr>().unwrap().octets(),
                hop_limit,
            )
            .icmpv6(Icmpv6Type::NeighborSolicitation)
            .write(&mut out, body)
            .unwrap();
        out
    }

    #[test]
    fn solicitation_with_its_link_layer_option() {
        let mut body = "fd77:130::1".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        body.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1]);
        let f = parse_frame(&ns_frame(255, &body)).unwrap().unwrap();
        let Payload::Ndp(ndp) = f.payload else {
            panic!("{f:?}")
        };
        assert_eq!(ndp.link_layer, Some(Mac::new([2, 0, 0, 0, 0, 1])));
        assert!(!ndp.is_dad());
        // Forwarded (hop limit below 255), a zero-length option, a truncated option, a
        // multi-unit link-layer option: each refused with a reason.
        assert!(matches!(
            parse_frame(&ns_frame(64, &body)),
            Err(WireError::InvalidNdp(m)) if m.contains("hop limit")
        ));
        let mut zero = body.clone();
        zero[17] = 0;
        assert!(matches!(
            parse_frame(&ns_frame(255, &zero)),
            Err(WireError::InvalidNdp(_))
        ));
        assert!(matches!(
            parse_frame(&ns_frame(255, &body[..20])),
            Err(WireError::InvalidNdp(_))
        ));
        let mut long = body.clone();
        long[17] = 2;
        long.extend_from_slice(&[0; 8]);
        assert!(matches!(
            parse_frame(&ns_frame(255, &long)),
            Err(WireError::InvalidNdp(_))
        ));
        assert!(matches!(
            parse_frame(&ns_frame(255, &body[..10])),
            Err(WireError::InvalidNdp(_))
        ));
    }

    #[test]
    fn host_names_lose_local() {
        let n = |s: &str| host_name(&Name::from_utf8(s).unwrap());
        assert_eq!(n("node-a.local."), "node-a");
        assert!(n("Node-A.LOCAL.").eq_ignore_ascii_case("node-a"));
        assert_eq!(n("example.org."), "example.org");
        assert_eq!(n("local."), "local");
    }
}
