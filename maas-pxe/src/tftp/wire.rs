//! The TFTP wire format (RFC 1350, RFC 2347 options): strict decoding into [`Packet`] and
//! encoding back.
//!
//! Decoding never panics and never guesses: a datagram that is too short, an unknown opcode,
//! a string without its terminating NUL, an unknown transfer mode, an option without a value
//! or given twice is a [`WireError`] naming what is wrong. Option names are compared without
//! regard to case and kept in lower case. The one leniency is the ERROR packet, whose message
//! may lack its NUL: a client's abort must end a transfer even when it is sloppy.

use std::fmt;

use super::error::WireError;

/// The largest block size RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;
/// The smallest block size RFC 2348 allows.
pub const MIN_BLKSIZE: u16 = 8;
/// The block size without negotiation (RFC 1350).
pub const DEFAULT_BLKSIZE: u16 = 512;
/// The length of a DATA packet's header (opcode and block number).
pub const DATA_HEADER: usize = 4;
/// The longest file name or option string accepted (a datagram holds at most 65507 bytes
/// anyway; names this long are an attack, not a boot file).
pub const MAX_STRING: usize = 1024;

/// A TFTP opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// Read request (1).
    Rrq,
    /// Write request (2).
    Wrq,
    /// Data (3).
    Data,
    /// Acknowledgement (4).
    Ack,
    /// Error (5).
    Error,
    /// Option acknowledgement (6, RFC 2347).
    Oack,
}

impl Opcode {
    /// The opcode's number on the wire.
    pub fn code(self) -> u16 {
        match self {
            Self::Rrq => 1,
            Self::Wrq => 2,
            Self::Data => 3,
            Self::Ack => 4,
            Self::Error => 5,
            Self::Oack => 6,
        }
    }

    /// The opcode of a number, if it is one.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => Self::Rrq,
            2 => Self::Wrq,
            3 => Self::Data,
            4 => Self::Ack,
            5 => Self::Error,
            6 => Self::Oack,
            _ => return None,
        })
    }
}

/// A transfer mode (RFC 1350). `mail` is obsolete and decodes as an error.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Bytes as they are.
    #[default]
    Octet,
    /// Text with CR LF line ends (and CR NUL for a bare CR).
    Netascii,
}

impl Mode {
    /// The mode's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Octet => "octet",
            Self::Netascii => "netascii",
        }
    }
}

/// An error code (RFC 1350, RFC 2347). Unknown numbers are kept, not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    Undefined,
    /// 1: file not found.
    FileNotFound,
    /// 2: access violation.
    AccessViolation,
    /// 3: disk full or allocation exceeded.
    DiskFull,
    /// 4: illegal TFTP operation.
    IllegalOperation,
    /// 5: unknown transfer ID.
    UnknownTransferId,
    /// 6: file already exists.
    FileExists,
    /// 7: no such user.
    NoSuchUser,
    /// 8: option negotiation refused (RFC 2347).
    OptionRefused,
    /// Any other number.
    Unknown(u16),
}

impl ErrorCode {
    /// The code's number on the wire.
    pub fn code(self) -> u16 {
        match self {
            Self::Undefined => 0,
            Self::FileNotFound => 1,
            Self::AccessViolation => 2,
            Self::DiskFull => 3,
            Self::IllegalOperation => 4,
            Self::UnknownTransferId => 5,
            Self::FileExists => 6,
            Self::NoSuchUser => 7,
            Self::OptionRefused => 8,
            Self::Unknown(n) => n,
        }
    }

    /// The code of a number (never fails: unknown numbers are [`ErrorCode::Unknown`]).
    pub fn from_code(code: u16) -> Self {
        match code {
            0 => Self::Undefined,
            1 => Self::FileNotFound,
            2 => Self::AccessViolation,
            3 => Self::DiskFull,
            4 => Self::IllegalOperation,
            5 => Self::UnknownTransferId,
            6 => Self::FileExists,
            7 => Self::NoSuchUser,
            8 => Self::OptionRefused,
            n => Self::Unknown(n),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// Options of a request or an OACK, in the order given, names in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Options(Vec<(String, String)>);

impl Options {
    /// No options.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Adds (or replaces) an option; the name is stored in lower case.
    pub fn set(&mut self, name: &str, value: impl fmt::Display) -> &mut Self {
        let name = name.to_ascii_lowercase();
        let value = value.to_string();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
        self
    }

    /// The value of an option (the name is matched without regard to case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The options in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    /// The file name as sent (not yet checked against any root).
    pub filename: String,
    /// The transfer mode.
    pub mode: Mode,
    /// RFC 2347 options.
    pub options: Options,
}

/// A decoded TFTP packet. DATA borrows its payload from the datagram.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Packet<'a> {
    /// Read request.
    Rrq(Request),
    /// Write request.
    Wrq(Request),
    /// A block of data.
    Data {
        /// The 16-bit block number.
        block: u16,
        /// The payload (at most [`MAX_BLKSIZE`] bytes).
        data: &'a [u8],
    },
    /// An acknowledgement.
    Ack {
        /// The 16-bit block number acknowledged.
        block: u16,
    },
    /// An error, ending the transfer.
    Error {
        /// The error code.
        code: ErrorCode,
        /// The message.
        message: String,
    },
    /// Options acknowledged by the server.
    Oack(Options),
}

impl<'a> Packet<'a> {
    /// Decodes one datagram strictly.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, WireError> {
        if bytes.len() < 2 {
            return Err(WireError::Truncated {
                len: bytes.len(),
                need: 2,
            });
        }
        let code = u16::from_be_bytes([bytes[0], bytes[1]]);
        let opcode = Opcode::from_code(code).ok_or(WireError::UnknownOpcode(code))?;
        let body = &bytes[2..];
        match opcode {
            Opcode::Rrq => Ok(Self::Rrq(decode_request(body)?)),
            Opcode::Wrq => Ok(Self::Wrq(decode_request(body)?)),
            Opcode::Data => {
                let block = block_number(bytes)?;
                let data = &bytes[4..];
                if data.len() > usize::from(MAX_BLKSIZE) {
                    return Err(WireError::DataTooLong(data.len()));
                }
                Ok(Self::Data { block, data })
            }
            Opcode::Ack => {
                let block = block_number(bytes)?;
                if bytes.len() != 4 {
                    return Err(WireError::TrailingBytes {
                        opcode: "ACK",
                        extra: bytes.len() - 4,
                    });
                }
                Ok(Self::Ack { block })
            }
            Opcode::Error => {
                let code = ErrorCode::from_code(block_number(bytes)?);
                let rest = &bytes[4..];
                let text = match rest.iter().position(|&b| b == 0) {
                    Some(end) => {
                        if rest[end + 1..].iter().any(|&b| b != 0) {
                            return Err(WireError::TrailingBytes {
                                opcode: "ERROR",
                                extra: rest.len() - end - 1,
                            });
                        }
                        &rest[..end]
                    }
                    None => rest,
                };
                Ok(Self::Error {
                    code,
                    message: String::from_utf8_lossy(text).into_owned(),
                })
            }
            Opcode::Oack => {
                let mut strings = Strings::new(body);
                let options = decode_options(&mut strings)?;
                Ok(Self::Oack(options))
            }
        }
    }

    /// Appends the packet's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Rrq(r) => encode_request(Opcode::Rrq, r, out),
            Self::Wrq(r) => encode_request(Opcode::Wrq, r, out),
            Self::Data { block, data } => {
                encode_data_header(*block, out);
                out.extend_from_slice(data);
            }
            Self::Ack { block } => encode_ack(*block, out),
            Self::Error { code, message } => encode_error(*code, message, out),
            Self::Oack(options) => {
                out.extend_from_slice(&Opcode::Oack.code().to_be_bytes());
                encode_options(options, out);
            }
        }
    }

    /// The packet's bytes in a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Appends a DATA header (opcode 3 and the block number).
pub fn encode_data_header(block: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&Opcode::Data.code().to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
}

/// Appends an ACK.
pub fn encode_ack(block: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&Opcode::Ack.code().to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
}

/// Appends an ERROR; NUL bytes in the message are dropped so it stays one string.
pub fn encode_error(code: ErrorCode, message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&Opcode::Error.code().to_be_bytes());
    out.extend_from_slice(&code.code().to_be_bytes());
    out.extend(message.bytes().filter(|&b| b != 0));
    out.push(0);
}

fn encode_request(opcode: Opcode, r: &Request, out: &mut Vec<u8>) {
    out.extend_from_slice(&opcode.code().to_be_bytes());
    out.extend(r.filename.bytes().filter(|&b| b != 0));
    out.push(0);
    out.extend_from_slice(r.mode.as_str().as_bytes());
    out.push(0);
    encode_options(&r.options, out);
}

fn encode_options(options: &Options, out: &mut Vec<u8>) {
    for (name, value) in options.iter() {
        out.extend(name.bytes().filter(|&b| b != 0));
        out.push(0);
        out.extend(value.bytes().filter(|&b| b != 0));
        out.push(0);
    }
}

fn block_number(bytes: &[u8]) -> Result<u16, WireError> {
    match bytes {
        [_, _, a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(WireError::Truncated {
            len: bytes.len(),
            need: 4,
        }),
    }
}

/// NUL-terminated strings one after the other.
struct Strings<'a> {
    rest: &'a [u8],
}

impl<'a> Strings<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Self { rest }
    }

    /// The next string, `None` at the end (or where only NUL padding is left).
    fn next(&mut self, what: &'static str) -> Result<Option<&'a str>, WireError> {
        if self.rest.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::Unterminated(what))?;
        if end > MAX_STRING {
            return Err(WireError::TooLong { what, len: end });
        }
        let s = std::str::from_utf8(&self.rest[..end]).map_err(|_| WireError::NotUtf8(what))?;
        self.rest = &self.rest[end + 1..];
        Ok(Some(s))
    }
}

fn decode_request(body: &[u8]) -> Result<Request, WireError> {
    let mut strings = Strings::new(body);
    let filename = strings
        .next("file name")?
        .ok_or(WireError::Missing("file name"))?;
    if filename.is_empty() {
        return Err(WireError::Missing("file name"));
    }
    let mode = strings.next("mode")?.ok_or(WireError::Missing("mode"))?;
    let mode = if mode.eq_ignore_ascii_case("octet") {
        Mode::Octet
    } else if mode.eq_ignore_ascii_case("netascii") {
        Mode::Netascii
    } else {
        return Err(WireError::UnknownMode(mode.to_string()));
    };
    let options = decode_options(&mut strings)?;
    Ok(Request {
        filename: filename.to_string(),
        mode,
        options,
    })
}

fn decode_options(strings: &mut Strings<'_>) -> Result<Options, WireError> {
    let mut options = Options::new();
    while let Some(name) = strings.next("option name")? {
        if name.is_empty() {
            return Err(WireError::Missing("option name"));
        }
        let value = strings
            .next("option value")?
            .ok_or_else(|| WireError::OptionWithoutValue(name.to_ascii_lowercase()))?;
        if options.get(name).is_some() {
            return Err(WireError::DuplicateOption(name.to_ascii_lowercase()));
        }
        options.set(name, value);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrq_with_options_round_trips() {
        let bytes = b"\x00\x01pxelinux.0\x00OCTET\x00BlkSize\x001468\x00tsize\x000\x00";
        let p = Packet::decode(bytes).unwrap();
        let Packet::Rrq(r) = &p else { panic!() };
        assert_eq!(r.filename, "pxelinux.0");
        assert_eq!(r.mode, Mode::Octet);
        assert_eq!(r.options.get("blksize"), Some("1468"));
        assert_eq!(r.options.get("TSIZE"), Some("0"));
        let again = p.to_vec();
        assert_eq!(Packet::decode(&again).unwrap(), p);
    }

    #[test]
    fn strict_errors() {
        assert!(matches!(
            Packet::decode(b"\x00"),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            Packet::decode(b"\x00\x09"),
            Err(WireError::UnknownOpcode(9))
        ));
        assert!(matches!(
            Packet::decode(b"\x00\x01file"),
            Err(WireError::Unterminated(_))
        ));
        assert!(matches!(
            Packet::decode(b"\x00\x01file\x00mail\x00"),
            Err(WireError::UnknownMode(_))
        ));
        assert!(matches!(
            Packet::decode(b"\x00\x01f\x00octet\x00blksize\x00"),
            Err(WireError::OptionWithoutValue(_))
        ));
        assert!(matches!(
            Packet::decode(b"\x00\x01f\x00octet\x00a\x001\x00A\x002\x00"),
            Err(WireError::DuplicateOption(_))
        ));
        assert!(matches!(
            Packet::decode(b"\x00\x04\x00\x01\x00"),
            Err(WireError::TrailingBytes { .. })
        ));
        assert!(matches!(
            Packet::decode(b"\x00\x01\x00octet\x00"),
            Err(WireError::Missing(_))
        ));
    }

    #[test]
    fn padding_after_request_is_tolerated() {
        let p = Packet::decode(b"\x00\x01f\x00netascii\x00\x00\x00").unwrap();
        assert!(matches!(
            p,
            Packet::Rrq(Request {
                mode: Mode::Netascii,
                ..
            })
        ));
    }

    #[test]
    fn data_ack_error() {
        assert_eq!(
            Packet::decode(b"\x00\x03\x12\x34abc").unwrap(),
            Packet::Data {
                block: 0x1234,
                data: b"abc"
            }
        );
        assert_eq!(
            Packet::decode(b"\x00\x04\xff\xff").unwrap(),
            Packet::Ack { block: 0xffff }
        );
        assert_eq!(
            Packet::decode(b"\x00\x05\x00\x08abort").unwrap(),
            Packet::Error {
                code: ErrorCode::OptionRefused,
                message: "abort".into()
            }
        );
        assert_eq!(ErrorCode::from_code(42), ErrorCode::Unknown(42));
    }
}
