//! Errors, one enum per layer.

use std::net::IpAddr;

use http::StatusCode;

/// Why a request is refused before anything is fetched. Each refusal maps to the status code
/// the client gets ([`Refusal::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The client's address is in no subnet that allows the proxy, nor loopback.
    #[error("client {0} is not in a subnet that allows the proxy")]
    ClientNotAllowed(IpAddr),
    /// CONNECT is only allowed to port 443.
    #[error("CONNECT to port {0} refused: tunnels are only allowed to port 443")]
    ConnectPort(u16),
    /// Plain HTTP is only forwarded to the safe ports (80, 21, 443, 1025-65535).
    #[error("port {0} is not a safe port (80, 21, 443, 1025-65535)")]
    UnsafePort(u16),
    /// The destination address is in a denied network (the controller's or the BMCs').
    #[error("destination {0} is in a denied network")]
    DeniedDestination(IpAddr),
    /// The request target is not an absolute `http://` URI (or an authority for CONNECT).
    #[error("request target {0:?} is not an absolute http:// URI")]
    BadTarget(String),
    /// Both Transfer-Encoding and Content-Length: a request-smuggling attempt.
    #[error("both Transfer-Encoding and Content-Length present")]
    TransferEncodingAndLength,
    /// A Transfer-Encoding other than a single final `chunked`.
    #[error("unsupported Transfer-Encoding {0:?}")]
    BadTransferEncoding(String),
    /// Several Content-Length fields, or one that is not a number.
    #[error("invalid or repeated Content-Length")]
    BadContentLength,
    /// The request head is larger than the limit, or has too many fields.
    #[error("request header fields too large (limit {0} bytes)")]
    HeadersTooLarge(usize),
    /// Our own `Via` token is already in the request: it went round in a loop.
    #[error("forwarding loop detected (Via already contains {0:?})")]
    Loop(String),
    /// A method the proxy does not forward.
    #[error("method {0} is not supported by the proxy")]
    Method(String),
    /// The request head does not parse as HTTP/1.x.
    #[error("malformed request: {0}")]
    Malformed(String),
}

impl Refusal {
    /// The HTTP status the client gets for this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ClientNotAllowed(_)
            | Self::ConnectPort(_)
            | Self::UnsafePort(_)
            | Self::DeniedDestination(_) => StatusCode::FORBIDDEN,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Loop(_) => StatusCode::LOOP_DETECTED,
            Self::Method(_) => StatusCode::NOT_IMPLEMENTED,
            Self::TransferEncodingAndLength
            | Self::BadTransferEncoding(_)
            | Self::BadContentLength
            | Self::BadTarget(_)
            | Self::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Errors of the on-disk store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation in the cache directory failed.
    #[error("cache directory {path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Object metadata that does not decode; the object is dropped.
    #[error("corrupt cache object {0}")]
    Corrupt(std::path::PathBuf),
}

/// Errors of the server adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding or accepting on the listening socket failed.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The upstream proxy URL is not `http://[user:pass@]host:port`.
    #[error("upstream proxy {0:?} is not http://[user:password@]host:port")]
    Upstream(String),
}
