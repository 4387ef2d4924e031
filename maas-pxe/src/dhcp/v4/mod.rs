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

mod framing;
mod reply;
mod rules;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::OnceLock;

#[cfg(doc)]
use dhcproto::v4::UnknownOption;
use dhcproto::v4::{Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use maas_net::Mac;

pub use reply::Reply;
pub(crate) use rules::{check_names, typed};

use super::error::{Area, DecodeError, EncodeError};
use super::options::{RequestedOptions, code};
use framing::{RawOptions, c_string, overload, walk};
use rules::check;

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
