//! DHCPv6 messages on the wire, decoded strictly on top of dhcproto's v6 codec.
//!
//! dhcproto's v6 option list stops silently at the first option it cannot read, reads
//! fixed-size options without looking at their length (so the next option is read from the
//! wrong place), and in 0.15 writes the wrong length for user class (15) and vendor class (16)
//! options and reads a relayed client message as a relay message. [`decode`] walks the
//! options itself:
//!
//! - every option header and length must fit in the message (or in the option holding it);
//! - each value is checked against its option's length rule and content (addresses are 16
//!   bytes, status text UTF-8, user and vendor class items and boot-file parameters exactly
//!   fill their option, names are valid, NTP and vendor-specific sub-options are framed);
//! - options inside IA_NA, IA_TA, IA_PD, IA address and IA prefix options are decoded the same
//!   way, and relay message, user class, vendor class and vendor-specific options are refused
//!   there (RFC 8415 does not allow them inside);
//! - a relay message (Relay-forward, Relay-reply) must carry exactly one relay message option
//!   (9), which is decoded as the message it holds, to a depth of [`MAX_RELAY_DEPTH`].
//!
//! Relay message (9) and vendor-specific (17) options stay [`UnknownOption`]s with their exact
//! bytes, as does every code dhcproto does not type (59, 60 and 62 among them).
//!
//! [`encode`] writes user and vendor class options itself and checks every length;
//! `decode(encode(p))` gives `p` back.

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, IANA, IAPD, IAPrefix, IATA, Message, MessageType, OptionCode,
    RelayMessage, UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::error::{DecodeError, EncodeError, LengthRule, OptionError};
use super::options::{VendorClass, code, parse_boot_file_params, parse_v6_list};
use super::v4::check_names;

/// How deep relay messages may nest (RFC 8415 allows a hop-count limit of up to 32).
pub const MAX_RELAY_DEPTH: usize = 32;

const CLIENT_HEADER: usize = 4;
const RELAY_HEADER: usize = 34;

/// A strictly decoded DHCPv6 message: a client or server message, or a relay message that
/// carries one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// A client or server message.
    Message(Message),
    /// A Relay-forward or Relay-reply message.
    Relay(RelayPacket),
}

/// A relay message with the message it relays, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayPacket {
    relay: RelayMessage,
    relayed: Box<Packet>,
}

impl RelayPacket {
    /// The relay message; its option 9 holds the relayed message's bytes.
    pub fn relay(&self) -> &RelayMessage {
        &self.relay
    }

    /// The relayed message, decoded.
    pub fn relayed(&self) -> &Packet {
        &self.relayed
    }
}

impl Packet {
    /// The client or server message, under however many relay messages.
    pub fn message(&self) -> &Message {
        match self {
            Self::Message(m) => m,
            Self::Relay(r) => r.relayed.message(),
        }
    }

    /// The relay messages around the message, outermost first.
    pub fn relays(&self) -> Vec<&RelayMessage> {
        let mut out = Vec::new();
        let mut p = self;
        while let Self::Relay(r) = p {
            out.push(&r.relay);
            p = &r.relayed;
        }
        out
    }
}

/// Decodes a DHCPv6 message strictly; see the [module documentation](self).
///
/// ```
/// use dhcproto::v6::{DhcpOption, Message, MessageType};
/// use maas_pxe::dhcp::v6;
///
/// let mut msg = Message::new_with_id(MessageType::Solicit, [1, 2, 3]);
/// msg.opts_mut().insert(DhcpOption::ClientArchType(vec![16.into()]));
/// let bytes = v6::encode_message_to_vec(&msg)?;
/// assert_eq!(v6::decode(&bytes)?.message(), &msg);
/// assert!(v6::decode(&bytes[..bytes.len() - 1]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
    decode_at(bytes, 0)
}

fn decode_at(bytes: &[u8], depth: usize) -> Result<Packet, DecodeError> {
    let relay = matches!(
        bytes.first().map(|&t| MessageType::from(t)),
        Some(MessageType::RelayForw | MessageType::RelayRepl)
    );
    let need = if relay { RELAY_HEADER } else { CLIENT_HEADER };
    if bytes.len() < need {
        return Err(DecodeError::V6Truncated {
            len: bytes.len(),
            need,
        });
    }
    let truncated = |_| DecodeError::V6Truncated {
        len: bytes.len(),
        need,
    };
    let opts = options(&bytes[need..], None)?;
    if !relay {
        let mut message = Message::decode(&mut Decoder::new(&bytes[..need])).map_err(truncated)?;
        message.set_opts(opts);
        return Ok(Packet::Message(message));
    }
    if depth >= MAX_RELAY_DEPTH {
        return Err(DecodeError::V6TooDeep {
            max: MAX_RELAY_DEPTH,
        });
    }
    let inner = match opts.get_all(OptionCode::RelayMsg) {
        Some([DhcpOption::Unknown(u)]) => u.data(),
        found => {
            return Err(DecodeError::V6Option {
                code: code::v6::RELAY_MSG,
                problem: OptionError::invalid(format!(
                    "a relay message carries {} relay message options; it needs exactly one",
                    found.map_or(0, <[DhcpOption]>::len)
                )),
            });
        }
    };
    let relayed = decode_at(inner, depth + 1)?;
    let mut relay = RelayMessage::decode(&mut Decoder::new(&bytes[..need])).map_err(truncated)?;
    relay.set_opts(opts);
    Ok(Packet::Relay(RelayPacket {
        relay,
        relayed: Box::new(relayed),
    }))
}

/// Decodes an option list; `parent` is the option holding it, if any.
fn options(data: &[u8], parent: Option<u16>) -> Result<DhcpOptions, DecodeError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let Some(&[c0, c1, l0, l1]) = data.get(i..i + 4) else {
            return Err(DecodeError::V6Header {
                offset: i,
                available: data.len() - i,
            });
        };
        let code = u16::from_be_bytes([c0, c1]);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let end = i + 4 + len;
        if end > data.len() {
            return Err(DecodeError::V6Overrun {
                code,
                offset: i,
                len,
                available: data.len() - i - 4,
            });
        }
        if let Some(parent) = parent
            && matches!(code, 9 | 15 | 16 | 17)
        {
            return Err(DecodeError::V6Misplaced { code, parent });
        }
        out.push(option(code, &data[i + 4..end], &data[i..end])?);
        i = end;
    }
    // dhcproto keeps options sorted by code; a stable sort keeps repeated codes (several IA_NA
    // options) in their order, and dhcproto's own sort leaves a sorted list as it is.
    out.sort_by_key(|o| u16::from(OptionCode::from(o)));
    Ok(DhcpOptions::from_iter(out))
}

/// How a DHCPv6 option's value is checked and represented.
#[derive(Clone, Copy)]
enum Shape {
    Typed,
    Raw,
    /// Fixed fields of this many bytes, then options.
    Nested(usize),
    UserClass,
    VendorClass,
    VendorOpts,
    Names,
    Ntp,
    Params,
}

fn rule(code: u16) -> (LengthRule, Shape) {
    use LengthRule::{AtLeast, Between, Exactly, MultipleOf};
    match code {
        1 | 2 => (Between(3, 130), Shape::Typed),
        3 | 25 => (AtLeast(12), Shape::Nested(12)),
        4 => (AtLeast(4), Shape::Nested(4)),
        5 => (AtLeast(24), Shape::Nested(24)),
        26 => (AtLeast(25), Shape::Nested(25)),
        6 => (MultipleOf { unit: 2, min: 0 }, Shape::Typed),
        7 | 19 => (Exactly(1), Shape::Typed),
        8 => (Exactly(2), Shape::Typed),
        11 => (AtLeast(11), Shape::Typed),
        12 => (Exactly(16), Shape::Typed),
        13 => (AtLeast(2), Shape::Typed),
        14 | 20 => (Exactly(0), Shape::Typed),
        15 => (AtLeast(2), Shape::UserClass),
        16 => (AtLeast(4), Shape::VendorClass),
        17 => (AtLeast(4), Shape::VendorOpts),
        18 => (AtLeast(1), Shape::Typed),
        59 => (AtLeast(1), Shape::Raw),
        23 => (MultipleOf { unit: 16, min: 16 }, Shape::Typed),
        24 => (AtLeast(1), Shape::Names),
        32 => (Exactly(4), Shape::Raw),
        56 => (AtLeast(4), Shape::Ntp),
        60 => (LengthRule::Any, Shape::Params),
        61 => (MultipleOf { unit: 2, min: 2 }, Shape::Typed),
        62 => (Exactly(3), Shape::Raw),
        _ => (LengthRule::Any, Shape::Raw),
    }
}

fn raw(code: u16, value: &[u8]) -> DhcpOption {
    DhcpOption::Unknown(UnknownOption::new(code.into(), value.to_vec()))
}

/// Checks one option and gives its dhcproto form; `whole` is the option with its header.
fn option(code: u16, value: &[u8], whole: &[u8]) -> Result<DhcpOption, DecodeError> {
    let fail = |problem| DecodeError::V6Option { code, problem };
    let (len_rule, shape) = rule(code);
    OptionError::check(value, len_rule).map_err(fail)?;
    match shape {
        Shape::Raw => return Ok(raw(code, value)),
        Shape::Typed => {}
        Shape::Nested(fixed) => return nested(code, value, fixed),
        Shape::UserClass => {
            parse_v6_list(value, "user class").map_err(fail)?;
        }
        Shape::VendorClass => {
            for item in parse_v6_list(&value[4..], "vendor class").map_err(fail)? {
                if !item.is_empty() {
                    VendorClass::parse(&item).map_err(fail)?;
                }
            }
        }
        Shape::VendorOpts => {
            options_framing(&value[4..], "vendor-specific sub-option").map_err(fail)?;
            return Ok(raw(code, value));
        }
        Shape::Names => {
            check_names(value).map_err(fail)?;
        }
        Shape::Ntp => check_ntp(value).map_err(fail)?,
        Shape::Params => {
            parse_boot_file_params(value).map_err(fail)?;
            return Ok(raw(code, value));
        }
    }
    DhcpOption::decode(&mut Decoder::new(whole))
        .map_err(|e| fail(OptionError::invalid(e.to_string())))
}

/// IA_NA, IA_TA, IA_PD, IA address and IA prefix: fixed fields, then options decoded here.
fn nested(code: u16, value: &[u8], fixed: usize) -> Result<DhcpOption, DecodeError> {
    let opts = options(&value[fixed..], Some(code))?;
    let u32_at =
        |i: usize| u32::from_be_bytes([value[i], value[i + 1], value[i + 2], value[i + 3]]);
    let addr_at = |i: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&value[i..i + 16]);
        std::net::Ipv6Addr::from(a)
    };
    Ok(match code {
        3 => DhcpOption::IANA(IANA {
            id: u32_at(0),
            t1: u32_at(4),
            t2: u32_at(8),
            opts,
        }),
        25 => DhcpOption::IAPD(IAPD {
            id: u32_at(0),
            t1: u32_at(4),
            t2: u32_at(8),
            opts,
        }),
        4 => DhcpOption::IATA(IATA {
            id: u32_at(0),
            opts,
        }),
        5 => DhcpOption::IAAddr(IAAddr {
            addr: addr_at(0),
            preferred_life: u32_at(16),
            valid_life: u32_at(20),
            opts,
        }),
        _ => DhcpOption::IAPrefix(IAPrefix {
            preferred_lifetime: u32_at(0),
            valid_lifetime: u32_at(4),
            prefix_len: value[8],
            prefix_ip: addr_at(9),
            opts,
        }),
    })
}

/// Checks that `data` is a list of (code, length, value) with 16-bit code and length.
fn options_framing(data: &[u8], what: &str) -> Result<(), OptionError> {
    let mut i = 0;
    while i < data.len() {
        let Some(&[_, _, l0, l1]) = data.get(i..i + 4) else {
            return Err(OptionError::invalid(format!(
                "a {what} header at byte {i} is cut short"
            )));
        };
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if i + 4 + len > data.len() {
            return Err(OptionError::invalid(format!(
                "a {what} at byte {i} claims {len} bytes but only {} remain",
                data.len() - i - 4
            )));
        }
        i += 4 + len;
    }
    Ok(())
}

/// Checks NTP server sub-options (RFC 5908): addresses of 16 bytes, one name each.
fn check_ntp(data: &[u8]) -> Result<(), OptionError> {
    options_framing(data, "NTP sub-option")?;
    let mut i = 0;
    while i < data.len() {
        let sub = u16::from_be_bytes([data[i], data[i + 1]]);
        let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
        let value = &data[i + 4..i + 4 + len];
        match sub {
            1 | 2 => OptionError::check(value, LengthRule::Exactly(16))
                .map_err(|e| OptionError::invalid(format!("NTP sub-option {sub}: {e}")))?,
            3 => {
                let mut d = BinDecoder::new(value);
                let name = Name::read(&mut d);
                if name.is_err() || !d.is_empty() {
                    return Err(OptionError::invalid(
                        "NTP sub-option 3 does not hold exactly one domain name",
                    ));
                }
            }
            _ => {
                return Err(OptionError::invalid(format!(
                    "NTP sub-option {sub} is not 1 (server address), 2 (multicast address) or 3 \
                     (server name)"
                )));
            }
        }
        i += 4 + len;
    }
    Ok(())
}

/// Encodes a packet into `out` (cleared first).
pub fn encode(packet: &Packet, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.clear();
    match packet {
        Packet::Message(m) => encode_message(m, out),
        Packet::Relay(r) => {
            let relay = &r.relay;
            let mut e = Encoder::new(out);
            e.write_u8(relay.msg_type().into())?;
            e.write_u8(relay.hop_count())?;
            e.write(relay.link_addr().octets())?;
            e.write(relay.peer_addr().octets())?;
            encode_options(relay.opts(), &mut e, None)
        }
    }
}

/// Encodes a client or server message into `out` (cleared first).
pub fn encode_message(message: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.clear();
    let mut e = Encoder::new(out);
    e.write_u8(message.msg_type().into())?;
    e.write(message.xid())?;
    encode_options(message.opts(), &mut e, None)
}

/// Encodes a server's reply into `out` (cleared first): `message`'s header, the client's and
/// the server's identifiers (options 1 and 2, the lowest codes, so first in a message's
/// option order), then `message`'s options, which must hold neither identifier. The bytes are
/// those of [`encode_message`] with both identifiers inserted into `message`, without copying
/// them into it first.
pub(crate) fn encode_reply(
    message: &Message,
    client_id: Option<&[u8]>,
    server_id: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.clear();
    let mut e = Encoder::new(out);
    e.write_u8(message.msg_type().into())?;
    e.write(message.xid())?;
    if let Some(id) = client_id {
        put(&mut e, OptionCode::ClientId.into(), id)?;
    }
    put(&mut e, OptionCode::ServerId.into(), server_id)?;
    encode_options(message.opts(), &mut e, None)
}

/// Encodes a client or server message into a new buffer.
pub fn encode_message_to_vec(message: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(128);
    encode_message(message, &mut out)?;
    Ok(out)
}

/// Encodes a packet into a new buffer.
pub fn encode_to_vec(packet: &Packet) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(128);
    encode(packet, &mut out)?;
    Ok(out)
}

fn encode_options(
    opts: &DhcpOptions,
    e: &mut Encoder<'_>,
    parent: Option<u16>,
) -> Result<(), EncodeError> {
    for opt in opts.iter() {
        let code: u16 = OptionCode::from(opt).into();
        if let Some(parent) = parent
            && matches!(code, 9 | 15 | 16 | 17)
        {
            return Err(EncodeError::V6Misplaced { code, parent });
        }
        match opt {
            DhcpOption::UserClass(uc) => {
                let value =
                    super::options::encode_v6_list(code, uc.data.iter().map(Vec::as_slice))?;
                put(e, code, &value)?;
            }
            DhcpOption::VendorClass(vc) => {
                let mut value = vc.num.to_be_bytes().to_vec();
                value.extend(super::options::encode_v6_list(
                    code,
                    vc.data.iter().map(Vec::as_slice),
                )?);
                put(e, code, &value)?;
            }
            DhcpOption::IANA(IANA { id, t1, t2, opts })
            | DhcpOption::IAPD(IAPD { id, t1, t2, opts })
                if let Some(nested) = ia_len(opts) =>
            {
                // The common case (addresses and status codes inside) written here: dhcproto
                // encodes the nested options into a buffer of their own first.
                let len = u16::try_from(12 + nested).map_err(|_| EncodeError::V6TooLong {
                    code,
                    len: 12 + nested,
                })?;
                e.write_u16(code)?;
                e.write_u16(len)?;
                e.write_u32(*id)?;
                e.write_u32(*t1)?;
                e.write_u32(*t2)?;
                write_ia_options(opts, e)?;
            }
            DhcpOption::IANA(IANA { opts, .. })
            | DhcpOption::IAPD(IAPD { opts, .. })
            | DhcpOption::IATA(IATA { opts, .. })
            | DhcpOption::IAAddr(IAAddr { opts, .. })
            | DhcpOption::IAPrefix(IAPrefix { opts, .. }) => {
                check_nested(opts, code)?;
                checked(e, code, opt)?;
            }
            _ => checked(e, code, opt)?,
        }
    }
    Ok(())
}

/// Refuses, at any depth, the options dhcproto cannot write inside IA options.
fn check_nested(opts: &DhcpOptions, parent: u16) -> Result<(), EncodeError> {
    for opt in opts.iter() {
        let code: u16 = OptionCode::from(opt).into();
        if matches!(code, 9 | 15 | 16 | 17) {
            return Err(EncodeError::V6Misplaced { code, parent });
        }
        if let DhcpOption::IAAddr(IAAddr { opts, .. })
        | DhcpOption::IAPrefix(IAPrefix { opts, .. }) = opt
        {
            check_nested(opts, code)?;
        }
    }
    Ok(())
}

/// The length of `opts` inside an IA option when they are only IA addresses and status codes
/// (the options [`write_ia_options`] writes), `None` otherwise.
fn ia_len(opts: &DhcpOptions) -> Option<usize> {
    opts.iter().try_fold(0usize, |sum, opt| {
        let value = match opt {
            DhcpOption::IAAddr(IAAddr { opts, .. }) => 24 + ia_len(opts)?,
            DhcpOption::StatusCode(status) => 2 + status.msg.len(),
            _ => return None,
        };
        Some(sum + 4 + value)
    })
}

/// Writes IA addresses and status codes (what [`ia_len`] accepted), as dhcproto does, without
/// its intermediate buffers; every length is checked.
fn write_ia_options(opts: &DhcpOptions, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
    for opt in opts.iter() {
        match opt {
            DhcpOption::IAAddr(IAAddr {
                addr,
                preferred_life,
                valid_life,
                opts,
            }) => {
                let value = 24 + ia_len(opts).unwrap_or(0);
                let len = u16::try_from(value).map_err(|_| EncodeError::V6TooLong {
                    code: u16::from(OptionCode::IAAddr),
                    len: value,
                })?;
                e.write_u16(OptionCode::IAAddr.into())?;
                e.write_u16(len)?;
                e.write(addr.octets())?;
                e.write_u32(*preferred_life)?;
                e.write_u32(*valid_life)?;
                write_ia_options(opts, e)?;
            }
            DhcpOption::StatusCode(status) => {
                put_status(e, u16::from(status.status), &status.msg)?;
            }
            other => {
                let code = u16::from(OptionCode::from(other));
                checked(e, code, other)?;
            }
        }
    }
    Ok(())
}

fn put_status(e: &mut Encoder<'_>, status: u16, msg: &str) -> Result<(), EncodeError> {
    let code = u16::from(OptionCode::StatusCode);
    let len = u16::try_from(2 + msg.len()).map_err(|_| EncodeError::V6TooLong {
        code,
        len: 2 + msg.len(),
    })?;
    e.write_u16(code)?;
    e.write_u16(len)?;
    e.write_u16(status)?;
    e.write_slice(msg.as_bytes())?;
    Ok(())
}

fn put(e: &mut Encoder<'_>, code: u16, value: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(value.len()).map_err(|_| EncodeError::V6TooLong {
        code,
        len: value.len(),
    })?;
    e.write_u16(code)?;
    e.write_u16(len)?;
    e.write_slice(value)?;
    Ok(())
}

/// Lets dhcproto write `opt`, then checks the length it wrote (it truncates silently).
fn checked(e: &mut Encoder<'_>, code: u16, opt: &DhcpOption) -> Result<(), EncodeError> {
    let start = e.len_filled();
    opt.encode(e)?;
    let written = e.len_filled() - start - 4;
    let filled = e.buffer_filled();
    let said = usize::from(u16::from_be_bytes([filled[start + 2], filled[start + 3]]));
    if said != written {
        return Err(EncodeError::V6TooLong { code, len: written });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(code: u16, value: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend((value.len() as u16).to_be_bytes());
        v.extend(value);
        v
    }

    fn solicit(options: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![1, 0xaa, 0xbb, 0xcc];
        for o in options {
            b.extend(o);
        }
        b
    }

    #[test]
    fn a_reply_encodes_as_the_message_with_its_identifiers() {
        let mut reply = Message::new_with_id(MessageType::Reply, [1, 2, 3]);
        reply.opts_mut().insert(DhcpOption::IANA(IANA {
            id: 7,
            t1: 1800,
            t2: 2880,
            opts: vec![DhcpOption::IAAddr(IAAddr {
                addr: "fd77::1:5".parse().unwrap(),
                preferred_life: 3600,
                valid_life: 3600,
                opts: DhcpOptions::new(),
            })]
            .into_iter()
            .collect(),
        }));
        reply.opts_mut().insert(DhcpOption::DomainNameServers(vec![
            "fd77::53".parse().unwrap(),
        ]));
        reply.opts_mut().insert(DhcpOption::RapidCommit);
        let server = [0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
        for client in [Some(&[0, 3, 0, 1, 0x52, 0x54, 0, 0x77, 2, 1][..]), None] {
            let mut whole = reply.clone();
            whole
                .opts_mut()
                .insert(DhcpOption::ServerId(server.to_vec()));
            if let Some(id) = client {
                whole.opts_mut().insert(DhcpOption::ClientId(id.to_vec()));
            }
            let mut bytes = Vec::new();
            encode_reply(&reply, client, &server, &mut bytes).unwrap();
            assert_eq!(bytes, encode_message_to_vec(&whole).unwrap());
            assert_eq!(decode(&bytes).unwrap().message(), &whole);
        }
    }

    #[test]
    fn framing_errors_are_errors() {
        assert_eq!(
            decode(&[1, 2]).unwrap_err(),
            DecodeError::V6Truncated { len: 2, need: 4 }
        );
        assert_eq!(
            decode(&solicit(&[vec![0, 8, 0]])).unwrap_err(),
            DecodeError::V6Header {
                offset: 0,
                available: 3
            }
        );
        assert_eq!(
            decode(&solicit(&[vec![0, 8, 0, 5, 0]]))
                .unwrap_err()
                .to_string(),
            "DHCPv6 option 8 at byte 0 claims 5 bytes but only 1 remain"
        );
        assert_eq!(
            decode(&solicit(&[opt(8, &[0, 0, 0, 0])]))
                .unwrap_err()
                .to_string(),
            "DHCPv6 option 8 (elapsed time): length 4 where exactly 2 bytes is required"
        );
        // Lengths dhcproto would subtract from without looking.
        for code in [11, 13, 16, 17] {
            assert!(decode(&solicit(&[opt(code, &[1])])).is_err(), "{code}");
        }
    }

    #[test]
    fn class_options() {
        let class = b"HTTPClient:Arch:00016:UNDI:003000";
        let mut vendor = 343u32.to_be_bytes().to_vec();
        vendor.extend((class.len() as u16).to_be_bytes());
        vendor.extend(class);
        let b = solicit(&[
            opt(15, b"\x00\x04iPXE"),
            opt(16, &vendor),
            opt(61, &[0, 16, 0, 7]),
        ]);
        let p = decode(&b).unwrap();
        let m = p.message();
        assert_eq!(
            m.opts().get(OptionCode::UserClass),
            Some(&DhcpOption::UserClass(dhcproto::v6::UserClass {
                data: vec![b"iPXE".to_vec()]
            }))
        );
        assert!(matches!(
            m.opts().get(OptionCode::ClientArchType),
            Some(DhcpOption::ClientArchType(a)) if a.len() == 2
        ));
        // Our encoder writes the lengths dhcproto 0.15 gets wrong.
        assert_eq!(encode_message_to_vec(m).unwrap(), b);

        assert!(decode(&solicit(&[opt(15, b"\x00\x05iPXE")])).is_err());
        let mut bad = 343u32.to_be_bytes().to_vec();
        bad.extend([0, 16]);
        bad.extend(b"PXEClient:Arch:7");
        assert!(
            decode(&solicit(&[opt(16, &bad)]))
                .unwrap_err()
                .to_string()
                .contains("five decimal digits")
        );
    }

    #[test]
    fn nested_options() {
        let mut iana = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        iana.extend(opt(13, b"\x00\x00ok"));
        let p = decode(&solicit(&[opt(3, &iana)])).unwrap();
        assert_eq!(encode_to_vec(&p).unwrap(), solicit(&[opt(3, &iana)]));
        let mut bad = iana.clone();
        bad.extend(opt(15, b"\x00\x01x"));
        assert_eq!(
            decode(&solicit(&[opt(3, &bad)])).unwrap_err(),
            DecodeError::V6Misplaced {
                code: 15,
                parent: 3
            }
        );
        let mut bad = iana;
        bad.extend(opt(13, b"\x00"));
        assert!(decode(&solicit(&[opt(3, &bad)])).is_err());
    }

    #[test]
    fn relays() {
        let inner = solicit(&[opt(8, &[0, 0])]);
        let mut relay = vec![12, 0];
        relay.extend([0xfd; 16]);
        relay.extend([0xfe; 16]);
        relay.extend(opt(9, &inner));
        let p = decode(&relay).unwrap();
        assert_eq!(p.relays().len(), 1);
        assert_eq!(p.message().msg_type(), MessageType::Solicit);
        assert_eq!(encode_to_vec(&p).unwrap(), relay);

        let mut no_inner = relay[..34].to_vec();
        no_inner.extend(opt(8, &[0, 0]));
        assert!(
            decode(&no_inner)
                .unwrap_err()
                .to_string()
                .contains("carries 0 relay message options")
        );
        let mut bad_inner = relay[..34].to_vec();
        bad_inner.extend(opt(9, &[1, 2]));
        assert!(matches!(
            decode(&bad_inner),
            Err(DecodeError::V6Truncated { .. })
        ));

        let mut deep = inner;
        for _ in 0..=MAX_RELAY_DEPTH {
            let mut r = vec![12, 0];
            r.extend([0; 32]);
            r.extend(opt(9, &deep));
            deep = r;
        }
        assert_eq!(
            decode(&deep).unwrap_err(),
            DecodeError::V6TooDeep {
                max: MAX_RELAY_DEPTH
            }
        );
    }

    #[test]
    fn ntp_and_names() {
        let mut ntp = opt(1, &[0xfd; 16]);
        ntp.extend(opt(3, b"\x03ntp\x00"));
        assert!(decode(&solicit(&[opt(56, &ntp)])).is_ok());
        assert!(decode(&solicit(&[opt(56, &opt(4, &[0; 16]))])).is_err());
        assert!(decode(&solicit(&[opt(56, &opt(3, b"\x03ntp\x00\x00"))])).is_err());
        assert!(decode(&solicit(&[opt(24, b"\x04maas\x00")])).is_ok());
        assert!(decode(&solicit(&[opt(24, b"\x04maas")])).is_err());
    }

    #[test]
    fn encoder_checks_lengths() {
        let mut m = Message::new_with_id(MessageType::Advertise, [0, 0, 1]);
        m.opts_mut().insert(DhcpOption::ClientId(vec![0; 70_000]));
        assert!(matches!(
            encode_message_to_vec(&m),
            Err(EncodeError::V6TooLong { code: 1, .. })
        ));
        let mut m = Message::new_with_id(MessageType::Advertise, [0, 0, 1]);
        let mut inner = DhcpOptions::new();
        inner.insert(DhcpOption::UserClass(dhcproto::v6::UserClass {
            data: vec![],
        }));
        m.opts_mut().insert(DhcpOption::IANA(IANA {
            id: 1,
            t1: 0,
            t2: 0,
            opts: inner,
        }));
        assert_eq!(
            encode_message_to_vec(&m).unwrap_err(),
            EncodeError::V6Misplaced {
                code: 15,
                parent: 3
            }
        );
    }
}
