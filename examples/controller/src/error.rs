//! The controller's error: what stopped it from starting or serving.

use std::net::SocketAddr;
use std::path::PathBuf;

pub use crate::rack::RegionError;
pub use crate::state::StateError;

/// Why the controller could not start, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file has problems (every one is listed).
    #[error("the configuration has {} problem(s): {}", .0.len(), .0.join("; "))]
    Config(Vec<String>),
    /// A listening socket could not be opened.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// What was to listen there.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// Another system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The boot assets directory cannot be served.
    #[error("boot assets {path}: {source}")]
    BootAssets {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The DHCP server refused its configuration.
    #[error("DHCP: {0}")]
    Dhcp(#[from] maas_pxe::dhcp::ConfigError),
    /// The caching proxy could not start.
    #[error("proxy: {0}")]
    Proxy(#[from] maas_proxy::ServerError),
    /// Discovery could not open its capture.
    #[error("discovery on {interface}: {source}")]
    Discovery {
        /// The interface.
        interface: String,
        /// The capture's error.
        #[source]
        source: maas_discovery::capture::CaptureError,
    },
    /// The store.
    #[error(transparent)]
    State(Box<StateError>),
    /// The region (a rack's).
    #[error(transparent)]
    Region(Box<RegionError>),
    /// The API's certificate could not be loaded or made.
    #[error("TLS: {0}")]
    Tls(Box<crate::tls::TlsError>),
}

impl From<StateError> for Error {
    fn from(e: StateError) -> Self {
        Self::State(Box::new(e))
    }
}

impl From<RegionError> for Error {
    fn from(e: RegionError) -> Self {
        Self::Region(Box::new(e))
    }
}

impl From<crate::tls::TlsError> for Error {
    fn from(e: crate::tls::TlsError) -> Self {
        Self::Tls(Box::new(e))
    }
}

impl Error {
    pub(crate) fn io(what: &'static str, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }
}
