//! [`Reply`]: a DHCPv4 answer under construction, kept as raw option values.

use std::net::Ipv4Addr;
use std::ops::Range;

#[cfg(doc)]
use dhcproto::v4::Message;
use dhcproto::v4::{DhcpOption, Flags, OptionCode};
use dhcproto::{Encodable, Encoder};

use super::framing::c_string;
use super::{CHADDR, FILE, FIXED, MAGIC, MIN_LEN, Packet, SNAME, decode};
use crate::dhcp::error::{DecodeError, EncodeError};
use crate::dhcp::options::code;

/// A DHCPv4 reply under construction: a BOOTREPLY header and option values as bytes.
///
/// [`reply_to`](crate::dhcp::reply_to) starts one from a request; the reply builders
/// ([`LeaseTimes`](crate::dhcp::LeaseTimes), [`NetworkOptions`](crate::dhcp::NetworkOptions),
/// [`BootOptions`](crate::dhcp::BootOptions)) fill it through
/// [`ReplyOptions`](crate::dhcp::reply::ReplyOptions), as they fill a dhcproto [`Message`].
/// Setting an option replaces its earlier value. Codes 0, 52 and 255 are framing, not options,
/// and are ignored.
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
