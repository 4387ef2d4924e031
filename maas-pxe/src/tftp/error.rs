//! The errors of the TFTP layers: the wire, the file providers and the client.

use std::io;

use super::wire::ErrorCode;

/// A datagram that is not a well-formed TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the packet's fixed part.
    #[error("datagram of {len} bytes is too short for a TFTP packet (needs {need})")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// An opcode other than 1-6.
    #[error("unknown TFTP opcode {0} (expected 1-6)")]
    UnknownOpcode(u16),
    /// A string runs to the end of the datagram without its NUL.
    #[error("the {0} is not terminated by a NUL byte")]
    Unterminated(&'static str),
    /// A required string is absent or empty.
    #[error("the {0} is missing")]
    Missing(&'static str),
    /// A string longer than the decoder accepts.
    #[error("the {what} is {len} bytes long (at most 1024 accepted)")]
    TooLong {
        /// Which string.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A string that is not UTF-8.
    #[error("the {0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// A mode other than `octet` or `netascii`.
    #[error("transfer mode {0:?} is not supported (use octet or netascii)")]
    UnknownMode(String),
    /// An option name with no value after it.
    #[error("option {0:?} has no value")]
    OptionWithoutValue(String),
    /// The same option twice.
    #[error("option {0:?} is given twice")]
    DuplicateOption(String),
    /// Bytes after the end of a fixed-size packet.
    #[error("{extra} unexpected bytes after the {opcode} packet")]
    TrailingBytes {
        /// The packet kind.
        opcode: &'static str,
        /// How many bytes are left over.
        extra: usize,
    },
    /// A DATA payload above RFC 2348's 65464 bytes.
    #[error("DATA payload of {0} bytes exceeds the 65464-byte maximum block size")]
    DataTooLong(usize),
}

/// Why a [`FileProvider`](super::FileProvider) does not serve a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// No such file (TFTP error 1).
    #[error("file {0:?} not found")]
    NotFound(String),
    /// The name is refused: it would leave the root, names a device, a directory or a link
    /// out of the root, or is malformed (TFTP error 2).
    #[error("access to {path:?} refused: {reason}")]
    Refused {
        /// The requested name.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// An upload would replace an existing file, which is not allowed (TFTP error 6).
    #[error("file {0:?} already exists")]
    Exists(String),
    /// The file exists but could not be read (or, for an upload, written).
    #[error("cannot read {path:?}: {source}")]
    Io {
        /// The requested name.
        path: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl ProviderError {
    /// The TFTP error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::FileNotFound,
            Self::Refused { .. } => ErrorCode::AccessViolation,
            Self::Exists(_) => ErrorCode::FileExists,
            Self::Io { .. } => ErrorCode::Undefined,
        }
    }

    /// The message sent to the client: short, and without server paths.
    pub fn client_message(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "File not found",
            Self::Refused { .. } => "Access violation",
            Self::Exists(_) => "File already exists",
            Self::Io { .. } => "Read error",
        }
    }
}

/// Why a client transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an ERROR packet.
    #[error("server refused: error {code}: {message}")]
    Server {
        /// The server's code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// No answer after every retransmission.
    #[error("no answer from the server after {tries} tries")]
    Timeout {
        /// Tries made.
        tries: u32,
    },
    /// The server broke the protocol (bad OACK, an option not asked for, a malformed packet).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A socket error, or storing the file failed (client adapter only).
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}
