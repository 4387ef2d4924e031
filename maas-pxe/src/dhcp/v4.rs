//! DHCPv4 messages on the wire, decoded strictly on top of dhcproto's codec.
//!
//! dhcproto decodes leniently: its option list stops silently at the first option it cannot
//! read, fixed-size options ignore their length byte, `file` and `sname` are never read as
//! options, and a few options decode lossily. [`decode`] therefore walks the raw bytes itself:
//!
//! 1. The fixed header, the magic cookie and `hlen` (at most 16) are checked.
//! 2. The options field is walked option by option: every length must fit in the field, and a
//!    field holding options must end with the end option (255). Bytes after the end option are
//!    padding and ignored. An options field that holds nothing but padding needs no end option.
//! 3. Option 52 (overload) continues the options in `file` (value 1), `sname` (2) or both (3),
//!    read in that order as RFC 2131 says; there the end of the field also ends the options.
//! 4. Every instance of an option code, wherever it appears, is concatenated in order into one
//!    value (RFC 3396).
//! 5. Each value is checked against its option's length rule and content: addresses are 4
//!    bytes, booleans 0 or 1, text UTF-8 where dhcproto keeps it as a `String`, names valid RFC
//!    1035 names, relay sub-options and classless routes framed, PXE options well-formed.
//!
//! The decoded [`Packet`] keeps the header and the concatenated raw values, which the PXE
//! parsers and the reply builders read (option 93's whole list, for one, where dhcproto keeps
//! the first code). Its [`Packet::message`] is dhcproto's typed [`Message`], built on first
//! use: every value that passed the checks has a typed form, except those dhcproto would
//! misread, kept as [`UnknownOption`]s with their exact bytes (option 37, which dhcproto reads
//! as option 23; option 81 in ASCII form; option 150 with more than one address; every code
//! dhcproto does not know).
//!
//! A [`Reply`] is an answer under construction, as raw values: cheap to fill and to encode,
//! which is what keeps a request-to-reply round cheap. [`encode`] writes a
//! dhcproto [`Message`] instead, for callers who build one.
//!
//! Both encoders write every option in the options field (values longer than 255 bytes split
//! into consecutive pieces as RFC 3396 says, option 82 last), the end option, and padding to
//! the 300-byte BOOTP minimum. Messages round-trip: `decode(encode(m)).message()` is `m` for
//! every message whose `sname` and `file` hold no NUL byte, whose options are in dhcproto's
//! typed form where dhcproto has one, and whose values follow their options' rules (no empty
//! host name, no empty router list).

use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::OnceLock;

use dhcproto::v4::{
    DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use maas_net::Mac;

use super::error::{Area, DecodeError, EncodeError, LengthRule, OptionError};
use super::options::{IpxeFeatures, MachineId, RequestedOptions, VendorClass, code};

/// The fixed header (236 bytes) and the magic cookie.
pub const HEADER_LEN: usize = 240;
/// The smallest message the encoders write: the BOOTP minimum, which some PXE ROMs insist on.
pub const MIN_LEN: usize = 300;
/// The magic cookie that starts the options field.
pub const MAGIC: [u8; 4] = dhcproto::v4::MAGIC;

/// The fixed header without the magic cookie.
const FIXED: usize = 236;
const SNAME: Range<usize> = 44..108;
const FILE: Range<usize> = 108..236;
const CHADDR: usize = 28;

/// A strictly decoded DHCPv4 message: the header, and the raw value of every option,
/// concatenated per RFC 3396, in the order the codes first appeared.
///
/// Only [`decode`] makes one, so every option in it has passed its checks.
#[derive(Clone, Debug)]
pub struct Packet {
    header: [u8; FIXED],
    overload: u8,
    raw: RawOptions,
    message: OnceLock<Message>,
}

impl PartialEq for Packet {
    fn eq(&self, other: &Self) -> bool {
        self.header == other.header && self.overload == other.overload && self.raw == other.raw
    }
}

impl Eq for Packet {}

impl Packet {
    /// The message in dhcproto's typed form, built on first use.
    pub fn message(&self) -> &Message {
        self.message.get_or_init(|| self.build_message())
    }

    /// The message in dhcproto's typed form.
    pub fn into_message(self) -> Message {
        match self.message.into_inner() {
            Some(m) => m,
            None => Self::build_message_from(&self.header, self.overload, &self.raw),
        }
    }

    fn build_message(&self) -> Message {
        Self::build_message_from(&self.header, self.overload, &self.raw)
    }

    fn build_message_from(header: &[u8; FIXED], overload: u8, raw: &RawOptions) -> Message {
        let mut fixed = [0u8; HEADER_LEN];
        fixed[..FIXED].copy_from_slice(header);
        fixed[FIXED..].copy_from_slice(&MAGIC);
        // 240 bytes are always enough for the header; the fallback is never reached.
        let mut message = Message::decode(&mut Decoder::new(&fixed)).unwrap_or_default();
        let hlen = usize::from(header[2]).min(16);
        message.set_chaddr(&header[CHADDR..CHADDR + hlen]);
        message.clear_sname();
        message.clear_fname();
        if overload & 2 == 0
            && let Some(sname) = c_string(&header[SNAME])
        {
            message.set_sname(sname);
        }
        if overload & 1 == 0
            && let Some(file) = c_string(&header[FILE])
        {
            message.set_fname(file);
        }
        let mut scratch = Vec::new();
        let opts = message.opts_mut();
        for (code, data) in raw.iter() {
            if code != code::OVERLOAD {
                opts.insert(typed(code, data, &mut scratch));
            }
        }
        message
    }

    /// BOOTREQUEST (1) or BOOTREPLY (2).
    pub fn opcode(&self) -> Opcode {
        self.header[0].into()
    }

    /// The hardware type.
    pub fn htype(&self) -> HType {
        self.header[1].into()
    }

    /// The hops a relay counted.
    pub fn hops(&self) -> u8 {
        self.header[3]
    }

    /// The transaction id.
    pub fn xid(&self) -> u32 {
        u32::from_be_bytes([
            self.header[4],
            self.header[5],
            self.header[6],
            self.header[7],
        ])
    }

    /// Seconds since the client began.
    pub fn secs(&self) -> u16 {
        u16::from_be_bytes([self.header[8], self.header[9]])
    }

    /// The flags (broadcast).
    pub fn flags(&self) -> Flags {
        u16::from_be_bytes([self.header[10], self.header[11]]).into()
    }

    fn addr(&self, at: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            self.header[at],
            self.header[at + 1],
            self.header[at + 2],
            self.header[at + 3],
        )
    }

    /// The client's address (renewing clients).
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.addr(12)
    }

    /// The address offered or given.
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.addr(16)
    }

    /// The next server.
    pub fn siaddr(&self) -> Ipv4Addr {
        self.addr(20)
    }

    /// The relay agent's address, unspecified when not relayed.
    pub fn giaddr(&self) -> Ipv4Addr {
        self.addr(24)
    }

    /// The client hardware address (`hlen` bytes of `chaddr`).
    pub fn chaddr(&self) -> &[u8] {
        &self.header[CHADDR..CHADDR + usize::from(self.header[2])]
    }

    /// The `sname` field as a string, unless empty or overloaded with options.
    pub fn sname(&self) -> Option<&[u8]> {
        (self.overload & 2 == 0)
            .then(|| c_string(&self.header[SNAME]))
            .flatten()
    }

    /// The `file` field as a string, unless empty or overloaded with options.
    pub fn file(&self) -> Option<&[u8]> {
        (self.overload & 1 == 0)
            .then(|| c_string(&self.header[FILE]))
            .flatten()
    }

    /// The DHCP message type (option 53); `None` for a BOOTP message.
    pub fn message_type(&self) -> Option<MessageType> {
        self.option(code::MESSAGE_TYPE).map(|t| t[0].into())
    }

    /// The raw value of option `code`: every instance concatenated, as sent.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.raw.get(code)
    }

    /// Every option code with its raw value, in the order the codes first appeared (option
    /// 52 included).
    pub fn options(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.raw.iter()
    }

    /// The options the client asked for (option 55).
    pub fn requested(&self) -> RequestedOptions {
        self.option(code::PARAMETER_REQUEST_LIST)
            .map_or(RequestedOptions::ALL, RequestedOptions::from_list)
    }

    /// The client's Ethernet address, when the hardware type is Ethernet (1) and `hlen` is 6.
    pub fn mac(&self) -> Option<Mac> {
        if self.header[1] != 1 {
            return None;
        }
        Mac::try_from(self.chaddr()).ok()
    }

    /// The relay agent address (`giaddr`), if the message came through a relay.
    pub fn relay(&self) -> Option<Ipv4Addr> {
        let giaddr = self.giaddr();
        (!giaddr.is_unspecified()).then_some(giaddr)
    }
}

/// Decodes a DHCPv4 (or BOOTP) message strictly; see the [module documentation](self).
///
/// ```
/// use dhcproto::v4::{DhcpOption, Message, MessageType};
/// use maas_pxe::dhcp::v4;
///
/// let mut msg = Message::new_with_id(7, [0; 4].into(), [0; 4].into(), [0; 4].into(), [0; 4].into(), &[2, 0, 0, 0, 0, 1]);
/// msg.opts_mut().insert(DhcpOption::MessageType(MessageType::Discover));
/// let bytes = v4::encode_to_vec(&msg)?;
/// assert_eq!(v4::decode(&bytes)?.message(), &msg);
///
/// // Cut inside the last option: an error, not a shorter option list.
/// let mut cut = bytes[..v4::HEADER_LEN + 3].to_vec();
/// cut[v4::HEADER_LEN + 1] = 5;
/// assert!(v4::decode(&cut).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
    let Some((header, rest)) = bytes.split_first_chunk::<FIXED>() else {
        return Err(DecodeError::Truncated {
            len: bytes.len(),
            need: HEADER_LEN,
        });
    };
    let Some((&found, _)) = rest.split_first_chunk::<4>() else {
        return Err(DecodeError::Truncated {
            len: bytes.len(),
            need: HEADER_LEN,
        });
    };
    if found != MAGIC {
        return Err(DecodeError::Magic { found });
    }
    let hlen = header[2];
    if hlen > 16 {
        return Err(DecodeError::HardwareLength { hlen });
    }

    let mut pieces = Vec::with_capacity(16);
    walk(bytes, HEADER_LEN..bytes.len(), Area::Options, &mut pieces)?;
    let overload = overload(bytes, &pieces)?;
    if overload & 1 != 0 {
        walk(bytes, FILE, Area::File, &mut pieces)?;
    }
    if overload & 2 != 0 {
        walk(bytes, SNAME, Area::Sname, &mut pieces)?;
    }
    let raw = RawOptions::concatenate(bytes, &pieces);
    for (code, data) in raw.iter() {
        if code != code::OVERLOAD {
            check(code, data).map_err(|problem| DecodeError::Option { code, problem })?;
        }
    }
    Ok(Packet {
        header: *header,
        overload,
        raw,
        message: OnceLock::new(),
    })
}

/// Encodes a dhcproto `message` into `out` (cleared first); see the
/// [module documentation](self).
pub fn encode(message: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.clear();
    let opts = message.opts();
    if opts.contains(OptionCode::OptionOverload) {
        return Err(EncodeError::Overload);
    }
    // dhcproto's encoder writes from the start of its buffer: options first, then the header
    // is put in front of them.
    let mut e = Encoder::new(out);
    e.write(MAGIC)?;
    let relay = opts.get(OptionCode::RelayAgentInformation);
    let others = opts
        .iter()
        .filter(|(c, _)| **c != OptionCode::RelayAgentInformation)
        .map(|(_, o)| o);
    for opt in others.chain(relay) {
        let before = e.len_filled();
        opt.encode(&mut e)?;
        if e.len_filled() == before {
            // dhcproto writes nothing for an empty value; the option still exists.
            e.write_u8(OptionCode::from(opt).into())?;
            e.write_u8(0)?;
        }
    }
    e.write_u8(code::END)?;
    let mut header = [0u8; FIXED];
    header[0] = message.opcode().into();
    header[1] = message.htype().into();
    header[2] = message.hlen();
    header[3] = message.hops();
    header[4..8].copy_from_slice(&message.xid().to_be_bytes());
    header[8..10].copy_from_slice(&message.secs().to_be_bytes());
    header[10..12].copy_from_slice(&u16::from(message.flags()).to_be_bytes());
    for (i, addr) in [
        message.ciaddr(),
        message.yiaddr(),
        message.siaddr(),
        message.giaddr(),
    ]
    .into_iter()
    .enumerate()
    {
        header[12 + 4 * i..16 + 4 * i].copy_from_slice(&addr.octets());
    }
    put_field(&mut header, CHADDR..CHADDR + 16, message.chaddr());
    put_field(&mut header, SNAME, message.sname().unwrap_or_default());
    put_field(&mut header, FILE, message.fname().unwrap_or_default());
    out.splice(0..0, header);
    if out.len() < MIN_LEN {
        out.resize(MIN_LEN, code::PAD);
    }
    Ok(())
}

/// Copies `value` into `header[field]`, cut to the field (dhcproto never holds more).
fn put_field(header: &mut [u8; FIXED], field: Range<usize>, value: &[u8]) {
    let n = value.len().min(field.len());
    header[field.start..field.start + n].copy_from_slice(&value[..n]);
}

/// Encodes a dhcproto `message` into a new buffer; see [`encode`].
pub fn encode_to_vec(message: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(MIN_LEN);
    encode(message, &mut out)?;
    Ok(out)
}

/// A DHCPv4 reply under construction: a BOOTREPLY header and option values as bytes.
///
/// [`reply_to`](super::reply_to) starts one from a request; the reply builders
/// ([`LeaseTimes`](super::LeaseTimes), [`NetworkOptions`](super::NetworkOptions),
/// [`BootOptions`](super::BootOptions)) fill it through
/// [`ReplyOptions`](super::reply::ReplyOptions), as they fill a dhcproto [`Message`]. Setting
/// an option replaces its earlier value. Codes 0, 52 and 255 are framing, not options, and
/// are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    header: [u8; FIXED],
    data: Vec<u8>,
    index: Vec<(u8, Range<usize>)>,
}

impl Reply {
    /// An empty BOOTREPLY (hardware type Ethernet, no address, no option).
    pub fn new(xid: u32) -> Self {
        let mut header = [0u8; FIXED];
        header[0] = 2;
        header[1] = 1;
        header[4..8].copy_from_slice(&xid.to_be_bytes());
        Self {
            header,
            data: Vec::with_capacity(128),
            index: Vec::with_capacity(20),
        }
    }

    /// A BOOTREPLY with `request`'s hardware type and address, transaction id, flags and
    /// relay address, and nothing else.
    pub fn for_request(request: &Packet) -> Self {
        let mut reply = Self::new(request.xid());
        reply.header[1..3].copy_from_slice(&request.header[1..3]);
        reply.header[10..12].copy_from_slice(&request.header[10..12]);
        reply.header[24..CHADDR + 16].copy_from_slice(&request.header[24..CHADDR + 16]);
        reply
    }

    /// The transaction id.
    pub fn xid(&self) -> u32 {
        u32::from_be_bytes([
            self.header[4],
            self.header[5],
            self.header[6],
            self.header[7],
        ])
    }

    /// Sets the flags.
    pub fn set_flags(&mut self, flags: Flags) -> &mut Self {
        self.header[10..12].copy_from_slice(&u16::from(flags).to_be_bytes());
        self
    }

    fn set_addr(&mut self, at: usize, addr: Ipv4Addr) -> &mut Self {
        self.header[at..at + 4].copy_from_slice(&addr.octets());
        self
    }

    fn addr(&self, at: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            self.header[at],
            self.header[at + 1],
            self.header[at + 2],
            self.header[at + 3],
        )
    }

    /// Sets `ciaddr`.
    pub fn set_ciaddr(&mut self, addr: Ipv4Addr) -> &mut Self {
        self.set_addr(12, addr)
    }

    /// Sets `yiaddr`, the address given.
    pub fn set_yiaddr(&mut self, addr: Ipv4Addr) -> &mut Self {
        self.set_addr(16, addr)
    }

    /// Sets `siaddr`, the next server.
    pub fn set_siaddr(&mut self, addr: Ipv4Addr) -> &mut Self {
        self.set_addr(20, addr)
    }

    /// Sets `giaddr`.
    pub fn set_giaddr(&mut self, addr: Ipv4Addr) -> &mut Self {
        self.set_addr(24, addr)
    }

    /// `ciaddr`.
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.addr(12)
    }

    /// `yiaddr`.
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.addr(16)
    }

    /// `siaddr`.
    pub fn siaddr(&self) -> Ipv4Addr {
        self.addr(20)
    }

    /// `giaddr`.
    pub fn giaddr(&self) -> Ipv4Addr {
        self.addr(24)
    }

    /// Sets the `sname` field; `false` (and no change) when `name` is longer than its 64
    /// bytes or holds a NUL.
    pub fn set_sname(&mut self, name: &[u8]) -> bool {
        self.set_field(SNAME, name)
    }

    /// Sets the `file` field; `false` (and no change) when `file` is longer than its 128
    /// bytes or holds a NUL.
    pub fn set_file(&mut self, file: &[u8]) -> bool {
        self.set_field(FILE, file)
    }

    fn set_field(&mut self, field: Range<usize>, value: &[u8]) -> bool {
        if value.len() > field.len() || value.contains(&0) {
            return false;
        }
        self.header[field.clone()].fill(0);
        self.header[field.start..field.start + value.len()].copy_from_slice(value);
        true
    }

    /// The `file` field, unless empty.
    pub fn file(&self) -> Option<&[u8]> {
        c_string(&self.header[FILE])
    }

    /// Sets option `code` to `value`, replacing an earlier value.
    pub fn set(&mut self, code: u8, value: &[u8]) -> &mut Self {
        if matches!(code, code::PAD | code::OVERLOAD | code::END) {
            return self;
        }
        let start = self.data.len();
        self.data.extend_from_slice(value);
        let range = start..self.data.len();
        match self.index.iter_mut().find(|(c, _)| *c == code) {
            Some(entry) => entry.1 = range,
            None => self.index.push((code, range)),
        }
        self
    }

    /// Sets an option from its dhcproto form.
    pub fn set_option(&mut self, option: &DhcpOption) -> Result<&mut Self, EncodeError> {
        let mut buf = Vec::new();
        option.encode(&mut Encoder::new(&mut buf))?;
        let mut value = Vec::with_capacity(buf.len());
        let mut i = 0;
        while i + 1 < buf.len() {
            let len = usize::from(buf[i + 1]);
            value.extend_from_slice(buf.get(i + 2..i + 2 + len).unwrap_or_default());
            i += 2 + len;
        }
        Ok(self.set(OptionCode::from(option).into(), &value))
    }

    /// The value of option `code`.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.index
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, r)| &self.data[r.clone()])
    }

    /// Removes option `code`.
    pub fn remove(&mut self, code: u8) -> &mut Self {
        self.index.retain(|(c, _)| *c != code);
        self
    }

    /// The options set, in the order [`encode`](Self::encode) writes them: by code, with
    /// option 82 last.
    pub fn options(&self) -> impl Iterator<Item = (u8, &[u8])> {
        let mut order: Vec<&(u8, Range<usize>)> = self.index.iter().collect();
        order.sort_unstable_by_key(|(c, _)| (*c == code::RELAY_AGENT_INFO, *c));
        order.into_iter().map(|(c, r)| (*c, &self.data[r.clone()]))
    }

    /// Encodes the reply into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(MIN_LEN + self.data.len());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&MAGIC);
        for (code, value) in self.options() {
            if value.is_empty() {
                out.extend_from_slice(&[code, 0]);
            }
            for chunk in value.chunks(255) {
                out.push(code);
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
        }
        out.push(code::END);
        if out.len() < MIN_LEN {
            out.resize(MIN_LEN, code::PAD);
        }
    }

    /// Encodes the reply into a new buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MIN_LEN);
        self.encode(&mut out);
        out
    }

    /// The reply as a strictly decoded [`Packet`] (and so as a dhcproto [`Message`]); an error
    /// names an option set to a value its rules refuse.
    pub fn to_packet(&self) -> Result<Packet, DecodeError> {
        decode(&self.to_vec())
    }
}

/// One instance of an option: its code and where its value lies in the datagram.
#[derive(Clone, Copy)]
struct Piece {
    code: u8,
    start: usize,
    end: usize,
}

/// Walks the options in `bytes[field]`, appending each instance to `pieces`.
fn walk(
    bytes: &[u8],
    field: Range<usize>,
    area: Area,
    pieces: &mut Vec<Piece>,
) -> Result<(), DecodeError> {
    let base = field.start;
    let data = &bytes[field];
    let mut i = 0;
    let mut any = false;
    while i < data.len() {
        let code = data[i];
        match code {
            code::PAD => i += 1,
            code::END => return Ok(()),
            _ => {
                if code == code::OVERLOAD && area != Area::Options {
                    return Err(DecodeError::MisplacedOverload { area });
                }
                let Some(&len) = data.get(i + 1) else {
                    return Err(DecodeError::NoLength {
                        area,
                        code,
                        offset: i,
                    });
                };
                let len = usize::from(len);
                let end = i + 2 + len;
                if end > data.len() {
                    return Err(DecodeError::Overrun {
                        area,
                        code,
                        offset: i,
                        len,
                        available: data.len() - i - 2,
                    });
                }
                pieces.push(Piece {
                    code,
                    start: base + i + 2,
                    end: base + end,
                });
                any = true;
                i = end;
            }
        }
    }
    if any && area == Area::Options {
        return Err(DecodeError::MissingEnd { area });
    }
    Ok(())
}

/// The value of option 52, or 0 when absent.
fn overload(bytes: &[u8], pieces: &[Piece]) -> Result<u8, DecodeError> {
    let mut value = Vec::new();
    for p in pieces.iter().filter(|p| p.code == code::OVERLOAD) {
        value.extend_from_slice(&bytes[p.start..p.end]);
    }
    match value.as_slice() {
        [] if !pieces.iter().any(|p| p.code == code::OVERLOAD) => Ok(0),
        [v @ 1..=3] => Ok(*v),
        [v] => Err(DecodeError::Overload { value: *v }),
        other => Err(DecodeError::Option {
            code: code::OVERLOAD,
            problem: OptionError::Length {
                len: other.len(),
                expected: LengthRule::Exactly(1),
            },
        }),
    }
}

/// The text of a NUL-terminated header field, or `None` when it is empty.
fn c_string(field: &[u8]) -> Option<&[u8]> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    (end > 0).then(|| &field[..end])
}

/// The concatenated value of every option code, in first-appearance order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
struct RawOptions {
    data: Vec<u8>,
    index: Vec<(u8, Range<usize>)>,
}

impl RawOptions {
    fn concatenate(bytes: &[u8], pieces: &[Piece]) -> Self {
        const NONE: u16 = u16::MAX;
        let mut slot = [NONE; 256];
        let mut index: Vec<(u8, Range<usize>)> = Vec::with_capacity(pieces.len());
        for p in pieces {
            let s = &mut slot[usize::from(p.code)];
            if *s == NONE {
                // At most 255 codes, so the index fits.
                *s = index.len() as u16;
                index.push((p.code, 0..0));
            }
            index[usize::from(*s)].1.end += p.end - p.start;
        }
        let mut total = 0;
        for (_, r) in &mut index {
            let len = r.end;
            *r = total..total;
            total += len;
        }
        let mut data = vec![0; total];
        for p in pieces {
            let r = &mut index[usize::from(slot[usize::from(p.code)])].1;
            let len = p.end - p.start;
            data[r.end..r.end + len].copy_from_slice(&bytes[p.start..p.end]);
            r.end += len;
        }
        Self { data, index }
    }

    fn get(&self, code: u8) -> Option<&[u8]> {
        self.index
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, r)| &self.data[r.clone()])
    }

    fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.index.iter().map(|(c, r)| (*c, &self.data[r.clone()]))
    }
}

/// How an option's value is checked and represented.
#[derive(Clone, Copy)]
enum Shape {
    /// dhcproto's typed form, after the length check.
    Typed,
    /// dhcproto's typed form, a `String`: the value must be UTF-8.
    Text,
    /// Kept as an [`UnknownOption`] with its exact bytes.
    Raw,
    /// A one-byte boolean: 0 or 1.
    Bool,
    /// A list of RFC 1035 names (options 88 and 119).
    Names,
    /// Option 81: typed when the name is in wire form and reads back exactly.
    Fqdn,
    /// Option 82: relay sub-options.
    Relay,
    /// Option 121: classless routes.
    Routes,
    /// Option 60: a vendor class, checked for the PXE format.
    VendorClass,
    /// Option 97: type 0 and a UUID.
    MachineId,
    /// Option 150: typed for one address, raw for several.
    TftpServers,
    /// Option 151: a status code and UTF-8 text.
    Status,
    /// Option 175: iPXE sub-options, framing checked.
    Ipxe,
}

/// The length rule and shape of a DHCPv4 option.
fn rule(code: u8) -> (LengthRule, Shape) {
    use LengthRule::{AtLeast, Between, Exactly, MultipleOf};
    const ADDRESSES: LengthRule = MultipleOf { unit: 4, min: 4 };
    const TEXT: LengthRule = AtLeast(1);
    match code {
        1 | 16 | 28 | 32 | 50 | 54 | 118 => (Exactly(4), Shape::Typed),
        2 | 24 | 35 | 38 | 51 | 58 | 59 | 91 | 106 | 152..=155 => (Exactly(4), Shape::Typed),
        3..=11 | 41 | 42 | 44 | 45 | 48 | 49 | 65 | 69..=76 | 89 | 92 => (ADDRESSES, Shape::Typed),
        68 => (MultipleOf { unit: 4, min: 0 }, Shape::Typed),
        12 | 14 | 15 | 17 | 18 | 40 | 47 | 56 | 62 | 64 | 100 | 101 | 114 => (TEXT, Shape::Text),
        13 | 22 | 26 | 57 => (Exactly(2), Shape::Typed),
        19 | 20 | 27 | 29 | 30 | 31 | 34 | 36 | 39 | 116 => (Exactly(1), Shape::Bool),
        21 | 33 => (MultipleOf { unit: 8, min: 8 }, Shape::Typed),
        23 | 46 | 53 | 156 | 157 => (Exactly(1), Shape::Typed),
        25 => (MultipleOf { unit: 2, min: 2 }, Shape::Typed),
        // dhcproto 0.15 decodes option 37 as option 23.
        37 => (Exactly(1), Shape::Raw),
        43 | 55 | 63 | 66 | 67 | 77 => (AtLeast(1), Shape::Typed),
        60 => (AtLeast(1), Shape::VendorClass),
        61 => (AtLeast(2), Shape::Typed),
        80 => (Exactly(0), Shape::Typed),
        81 => (AtLeast(3), Shape::Fqdn),
        82 => (AtLeast(2), Shape::Relay),
        88 | 119 => (AtLeast(1), Shape::Names),
        93 => (MultipleOf { unit: 2, min: 2 }, Shape::Typed),
        94 => (Exactly(3), Shape::Typed),
        97 => (Exactly(17), Shape::MachineId),
        121 => (AtLeast(5), Shape::Routes),
        150 => (ADDRESSES, Shape::TftpServers),
        151 => (Between(1, 255), Shape::Status),
        175 => (LengthRule::Any, Shape::Ipxe),
        208 | 211 => (Exactly(4), Shape::Raw),
        209 | 210 => (TEXT, Shape::Raw),
        _ => (LengthRule::Any, Shape::Raw),
    }
}

/// Checks one option value against its option's rules.
fn check(code: u8, data: &[u8]) -> Result<(), OptionError> {
    let (len_rule, shape) = rule(code);
    OptionError::check(data, len_rule)?;
    match shape {
        Shape::Typed | Shape::Raw | Shape::Fqdn | Shape::TftpServers => Ok(()),
        Shape::Text => utf8(data),
        Shape::Status => utf8(&data[1..]),
        Shape::Bool if data[0] > 1 => Err(OptionError::invalid(format!(
            "boolean value {} is neither 0 nor 1",
            data[0]
        ))),
        Shape::Bool => Ok(()),
        Shape::Names => check_names(data).map(drop),
        Shape::Relay => check_relay(data),
        Shape::Routes => check_routes(data),
        Shape::VendorClass => VendorClass::check(data),
        Shape::MachineId => MachineId::parse(data).map(drop),
        Shape::Ipxe => IpxeFeatures::parse(data).map(drop),
    }
}

fn utf8(data: &[u8]) -> Result<(), OptionError> {
    std::str::from_utf8(data).map(drop).map_err(|e| {
        OptionError::invalid(format!(
            "text {:?} is not UTF-8 ({e})",
            String::from_utf8_lossy(data)
        ))
    })
}

fn raw(code: u8, data: &[u8]) -> DhcpOption {
    DhcpOption::Unknown(UnknownOption::new(code.into(), data.to_vec()))
}

/// The dhcproto form of a value that passed [`check`]: typed where dhcproto reads it
/// faithfully, raw otherwise (and raw, never a panic, should dhcproto refuse it after all).
pub(crate) fn typed(code: u8, data: &[u8], scratch: &mut Vec<u8>) -> DhcpOption {
    let (len_rule, shape) = rule(code);
    // A length the option does not allow (possible through `ReplyOptions for Message`) would
    // trip dhcproto's debug assertions or be read lossily.
    if !len_rule.allows(data.len()) {
        return raw(code, data);
    }
    match shape {
        Shape::Raw | Shape::Ipxe => return raw(code, data),
        Shape::TftpServers if data.len() != 4 => return raw(code, data),
        Shape::Fqdn => {
            // E flag clear: the name is ASCII, which dhcproto would read as wire format.
            if data.first().is_none_or(|flags| flags & 0x04 == 0) {
                return raw(code, data);
            }
            let mut d = BinDecoder::new(data.get(3..).unwrap_or_default());
            if Name::read(&mut d).is_err() || !d.is_empty() {
                return raw(code, data);
            }
        }
        _ => {}
    }
    scratch.clear();
    for chunk in data.chunks(255) {
        scratch.push(code);
        scratch.push(chunk.len() as u8);
        scratch.extend_from_slice(chunk);
    }
    if data.is_empty() {
        scratch.extend_from_slice(&[code, 0]);
    }
    let Ok(opt) = DhcpOption::decode(&mut Decoder::new(scratch)) else {
        return raw(code, data);
    };
    if matches!(shape, Shape::Fqdn) && reencoded(&opt).as_deref() != Some(data) {
        // dhcproto would write the name differently (it lower-cases and canonicalises it).
        return raw(code, data);
    }
    opt
}

/// The value dhcproto writes for `opt`, its pieces concatenated.
fn reencoded(opt: &DhcpOption) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    opt.encode(&mut Encoder::new(&mut buf)).ok()?;
    let mut value = Vec::new();
    let mut i = 0;
    while i + 1 < buf.len() {
        let len = usize::from(buf[i + 1]);
        value.extend_from_slice(buf.get(i + 2..i + 2 + len)?);
        i += 2 + len;
    }
    Some(value)
}

/// Checks a list of RFC 1035 names, compression pointers allowed (RFC 3397).
pub(crate) fn check_names(data: &[u8]) -> Result<usize, OptionError> {
    let mut d = BinDecoder::new(data);
    let mut count = 0;
    while !d.is_empty() {
        let at = d.index();
        Name::read(&mut d)
            .map_err(|e| OptionError::invalid(format!("the domain name at byte {at}: {e}")))?;
        count += 1;
    }
    Ok(count)
}

/// Checks relay agent sub-options (RFC 3046): framing, the fixed lengths dhcproto relies on,
/// and no sub-option twice (dhcproto would keep only the last).
fn check_relay(data: &[u8]) -> Result<(), OptionError> {
    let mut seen = [false; 256];
    let mut i = 0;
    while i < data.len() {
        let sub = data[i];
        let Some(&len) = data.get(i + 1) else {
            return Err(OptionError::invalid(format!(
                "relay sub-option {sub} at byte {i} has no length byte"
            )));
        };
        let len = usize::from(len);
        let Some(value) = data.get(i + 2..i + 2 + len) else {
            return Err(OptionError::invalid(format!(
                "relay sub-option {sub} at byte {i} claims {len} bytes but only {} remain",
                data.len() - i - 2
            )));
        };
        if std::mem::replace(&mut seen[usize::from(sub)], true) {
            return Err(OptionError::invalid(format!(
                "relay sub-option {sub} appears twice"
            )));
        }
        let expected = match sub {
            4 | 5 | 11 => LengthRule::Exactly(4),
            10 => LengthRule::Exactly(1),
            _ => LengthRule::Any,
        };
        OptionError::check(value, expected)
            .map_err(|e| OptionError::invalid(format!("relay sub-option {sub}: {e}")))?;
        i += 2 + len;
    }
    Ok(())
}

/// Checks classless static routes (RFC 3442): prefix lengths up to 32, each destination with
/// its significant bytes and a router.
fn check_routes(data: &[u8]) -> Result<(), OptionError> {
    let mut i = 0;
    while i < data.len() {
        let prefix = data[i];
        if prefix > 32 {
            return Err(OptionError::invalid(format!(
                "the route at byte {i} has prefix length {prefix}, more than 32"
            )));
        }
        let need = 1 + usize::from(prefix).div_ceil(8) + 4;
        if i + need > data.len() {
            return Err(OptionError::invalid(format!(
                "the route at byte {i} (/{prefix}) needs {need} bytes but only {} remain",
                data.len() - i
            )));
        }
        i += need;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BOOTREQUEST header with magic cookie, then `options` as given.
    fn packet(options: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[28..34].copy_from_slice(&[0x52, 0x54, 0, 0x77, 0, 0x10]);
        b[236..240].copy_from_slice(&MAGIC);
        b.extend_from_slice(options);
        b
    }

    fn err(options: &[u8]) -> String {
        decode(&packet(options)).unwrap_err().to_string()
    }

    #[test]
    fn header_checks() {
        assert_eq!(
            decode(&[0; 239]).unwrap_err(),
            DecodeError::Truncated {
                len: 239,
                need: 240
            }
        );
        let mut b = packet(&[255]);
        b[236] = 0;
        assert!(matches!(decode(&b), Err(DecodeError::Magic { .. })));
        let mut b = packet(&[255]);
        b[2] = 17;
        assert_eq!(
            decode(&b).unwrap_err(),
            DecodeError::HardwareLength { hlen: 17 }
        );
    }

    #[test]
    fn framing_errors_are_errors() {
        assert_eq!(
            err(&[53, 1, 1, 12, 5, b'a']),
            "DHCPv4 option 12 at byte 3 of the options field claims 5 bytes but only 1 remain"
        );
        assert_eq!(
            err(&[53, 1, 1, 12]),
            "DHCPv4 option 12 at byte 3 of the options field has no length byte"
        );
        assert_eq!(
            err(&[53, 1, 1]),
            "the options field holds options but no end option (255) after them"
        );
        // Nothing but padding, or nothing at all: no options, no error.
        assert!(decode(&packet(&[])).unwrap().message().opts().is_empty());
        assert!(
            decode(&packet(&[0, 0, 0]))
                .unwrap()
                .message()
                .opts()
                .is_empty()
        );
        // Anything after the end option is padding.
        let p = decode(&packet(&[53, 1, 1, 255, 12, 200, 1])).unwrap();
        assert_eq!(p.message_type(), Some(MessageType::Discover));
        assert_eq!(p.options().count(), 1);
    }

    #[test]
    fn value_errors_are_errors() {
        assert_eq!(
            err(&[51, 2, 0, 1, 255]),
            "DHCPv4 option 51 (IP address lease time): length 2 where exactly 4 bytes is required"
        );
        assert_eq!(
            err(&[94, 2, 1, 3, 255]),
            "DHCPv4 option 94 (client network interface identifier): length 2 where exactly 3 \
             bytes is required"
        );
        assert_eq!(
            err(&[80, 1, 0, 255]),
            "DHCPv4 option 80 (rapid commit): length 1 where exactly 0 bytes is required"
        );
        assert_eq!(
            err(&[19, 1, 2, 255]),
            "DHCPv4 option 19 (no short name): boolean value 2 is neither 0 nor 1"
        );
        assert!(err(&[3, 6, 10, 0, 0, 1, 10, 0, 255]).contains("a multiple of 4 bytes"));
        assert!(err(&[12, 2, 0xff, 0xfe, 255]).starts_with("DHCPv4 option 12 (host name): "));
        assert!(err(&[12, 0, 255]).contains("length 0 where at least 1 bytes is required"));
        assert!(err(&[93, 3, 0, 7, 0, 255]).contains("option 93"));
        assert!(
            err(&[
                60, 16, b'P', b'X', b'E', b'C', b'l', b'i', b'e', b'n', b't', b':', b'A', b'r',
                b'c', b'h', b':', b'7', 255
            ])
            .contains("five decimal digits")
        );
        assert!(err(&[121, 5, 33, 0, 0, 0, 0, 255]).contains("prefix length 33"));
        assert!(err(&[121, 6, 24, 10, 0, 1, 1, 1, 255]).contains("needs 8 bytes"));
        assert!(err(&[119, 3, 5, b'a', 0, 255]).contains("the domain name at byte 0"));
        assert!(err(&[82, 4, 1, 5, 0, 0, 255]).contains("relay sub-option 1 at byte 0 claims 5"));
        assert!(err(&[82, 6, 1, 1, 0, 1, 1, 0, 255]).contains("relay sub-option 1 appears twice"));
        assert!(err(&[82, 4, 5, 2, 0, 0, 255]).contains("relay sub-option 5: length 2"));
        assert!(err(&[175, 2, 0x13, 4, 255]).contains("sub-option 19 at byte 0 claims 4"));
        assert!(
            err(&[
                97, 17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255
            ])
            .contains("identifier type 1")
        );
    }

    #[test]
    fn rfc_3396_concatenation() {
        // Option 55 in two non-adjacent pieces, option 12 split across 255-byte pieces.
        let mut opts = vec![55, 2, 1, 3, 53, 1, 1, 55, 1, 6];
        let name = vec![b'h'; 300];
        opts.extend([12, 255]);
        opts.extend(&name[..255]);
        opts.extend([12, 45]);
        opts.extend(&name[255..]);
        opts.push(255);
        let p = decode(&packet(&opts)).unwrap();
        assert_eq!(p.option(55), Some(&[1, 3, 6][..]));
        assert_eq!(p.option(12).map(<[u8]>::len), Some(300));
        assert_eq!(
            p.message().opts().get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("h".repeat(300)))
        );
        let codes: Vec<u8> = p.options().map(|(c, _)| c).collect();
        assert_eq!(codes, [55, 53, 12]);
        // A fixed-size option split in two is concatenated, then judged.
        assert!(err(&[51, 4, 0, 0, 1, 0, 51, 4, 0, 0, 1, 0, 255]).contains("length 8"));
    }

    #[test]
    fn option_overload() {
        let mut b = packet(&[53, 1, 1, 52, 1, 3, 255]);
        // file: option 67 then end; sname: option 66 running to the end of the field.
        b[FILE.start..FILE.start + 8].copy_from_slice(&[67, 5, b'a', b'.', b'e', b'f', b'i', 255]);
        b[SNAME.start] = 66;
        b[SNAME.start + 1] = 62;
        b[SNAME.start + 2..SNAME.end].fill(b's');
        let p = decode(&b).unwrap();
        assert_eq!(p.option(67), Some(&b"a.efi"[..]));
        assert_eq!(p.option(66).map(<[u8]>::len), Some(62));
        assert_eq!(p.message().fname(), None);
        assert_eq!(p.message().sname(), None);
        assert!(!p.message().opts().contains(OptionCode::OptionOverload));
        let codes: Vec<u8> = p.options().map(|(c, _)| c).collect();
        assert_eq!(codes, [53, 52, 67, 66], "options, then file, then sname");

        // Without overload the same bytes are names.
        let mut plain = b.clone();
        plain[HEADER_LEN + 3..HEADER_LEN + 6].copy_from_slice(&[0, 0, 0]);
        let p = decode(&plain).unwrap();
        assert_eq!(
            p.message().fname().map(<[u8]>::len),
            Some(8),
            "up to the first NUL"
        );
        assert!(p.option(67).is_none());

        let mut bad = b.clone();
        bad[FILE.start + 1] = 200;
        assert_eq!(
            decode(&bad).unwrap_err().to_string(),
            "DHCPv4 option 67 at byte 0 of the file field (overloaded by option 52) claims 200 \
             bytes but only 126 remain"
        );
        let mut bad = b.clone();
        bad[HEADER_LEN + 5] = 4;
        assert_eq!(
            decode(&bad).unwrap_err(),
            DecodeError::Overload { value: 4 }
        );
        let mut bad = b.clone();
        bad[FILE.start..FILE.start + 4].copy_from_slice(&[52, 1, 1, 255]);
        assert_eq!(
            decode(&bad).unwrap_err(),
            DecodeError::MisplacedOverload { area: Area::File }
        );
    }

    #[test]
    fn lossy_options_are_kept_raw() {
        let p = decode(&packet(&[37, 1, 64, 150, 8, 10, 0, 0, 1, 10, 0, 0, 2, 255])).unwrap();
        let opts = p.message().opts();
        assert_eq!(
            opts.get(OptionCode::Unknown(37)),
            Some(&DhcpOption::Unknown(UnknownOption::new(
                37.into(),
                vec![64]
            )))
        );
        assert!(matches!(
            opts.get(OptionCode::TFTPServerAddress),
            Some(DhcpOption::Unknown(_))
        ));
        let p = decode(&packet(&[150, 4, 10, 0, 0, 1, 255])).unwrap();
        assert_eq!(
            p.message().opts().get(OptionCode::TFTPServerAddress),
            Some(&DhcpOption::TFTPServerAddress(Ipv4Addr::new(10, 0, 0, 1)))
        );
        // ASCII FQDN (E flag clear) stays raw; wire form is typed.
        let p = decode(&packet(&[81, 7, 0, 0, 0, b'h', b'o', b's', b't', 255])).unwrap();
        assert!(matches!(
            p.message().opts().get(OptionCode::ClientFQDN),
            Some(DhcpOption::Unknown(_))
        ));
        let p = decode(&packet(&[
            81, 9, 4, 0, 0, 4, b'h', b'o', b's', b't', 0, 255,
        ]))
        .unwrap();
        assert!(matches!(
            p.message().opts().get(OptionCode::ClientFQDN),
            Some(DhcpOption::ClientFQDN(_))
        ));
    }

    #[test]
    fn names_in_header_fields() {
        let mut b = packet(&[255]);
        b[FILE].fill(b'f');
        b[SNAME.start..SNAME.start + 3].copy_from_slice(b"tft");
        let p = decode(&b).unwrap();
        assert_eq!(
            p.message().fname().map(<[u8]>::len),
            Some(128),
            "no NUL: the whole field"
        );
        assert_eq!(p.message().sname(), Some(&b"tft"[..]));
        let again = decode(&encode_to_vec(p.message()).unwrap()).unwrap();
        assert_eq!(again.message(), p.message());
    }

    #[test]
    fn encode_writes_end_padding_and_relay_last() {
        let mut msg = decode(&packet(&[53, 1, 1, 255])).unwrap().into_message();
        let mut relay = dhcproto::v4::relay::RelayAgentInformation::default();
        relay.insert(dhcproto::v4::relay::RelayInfo::AgentCircuitId(vec![7]));
        msg.opts_mut()
            .insert(DhcpOption::RelayAgentInformation(relay));
        msg.opts_mut()
            .insert(DhcpOption::Unknown(UnknownOption::new(200.into(), vec![])));
        let bytes = encode_to_vec(&msg).unwrap();
        assert_eq!(bytes.len(), MIN_LEN);
        assert_eq!(
            &bytes[HEADER_LEN..HEADER_LEN + 11],
            &[53, 1, 1, 200, 0, 82, 3, 1, 1, 7, 255]
        );
        assert_eq!(decode(&bytes).unwrap().message(), &msg);
        msg.opts_mut().insert(DhcpOption::OptionOverload(1));
        assert_eq!(encode_to_vec(&msg).unwrap_err(), EncodeError::Overload);
    }

    #[test]
    fn typed_never_panics_on_bad_lengths() {
        let mut scratch = Vec::new();
        for code in 1..=254u8 {
            for len in [0usize, 1, 2, 3, 5, 17, 300] {
                let data = vec![7u8; len];
                let _ = typed(code, &data, &mut scratch);
            }
        }
        assert_eq!(typed(94, &[1], &mut scratch), raw(94, &[1]));
    }

    #[test]
    fn accessors() {
        let p = decode(&packet(&[55, 3, 1, 3, 67, 255])).unwrap();
        assert_eq!(p.mac(), Some(Mac::new([0x52, 0x54, 0, 0x77, 0, 0x10])));
        assert!(p.requested().wants(67) && !p.requested().wants(66));
        assert_eq!(p.relay(), None);
        assert!(decode(&packet(&[255])).unwrap().requested().wants(66));
    }
}
