//! Why a rack could not talk with its region, and which failures move a call on to the
//! next region.

/// Why a rack could not talk with its region.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// `[cluster]` lacks what a rack needs.
    #[error("a rack needs [cluster] {0}")]
    Missing(&'static str),
    /// The request could not be built.
    #[error("{uri}: {source}")]
    Request {
        /// The URL.
        uri: String,
        /// The HTTP library's error.
        #[source]
        source: hyper::http::Error,
    },
    /// The region could not be reached.
    #[error("{uri}: {source}")]
    Unreachable {
        /// The URL.
        uri: String,
        /// The client's error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The answer's body could not be read.
    #[error("{uri}: {source}")]
    Body {
        /// The URL.
        uri: String,
        /// The connection's error.
        #[source]
        source: hyper::Error,
    },
    /// No answer in time.
    #[error("{uri}: no answer in {secs}s")]
    Timeout {
        /// The URL.
        uri: String,
        /// The limit.
        secs: u64,
    },
    /// The region refused, with its message.
    #[error("{uri}: {status}: {message}")]
    Refused {
        /// The URL.
        uri: String,
        /// The HTTP status.
        status: hyper::StatusCode,
        /// The region's message.
        message: String,
    },
    /// The answer is not what the protocol says.
    #[error("{uri}: the answer does not follow the rack protocol: {source}")]
    Decode {
        /// The URL.
        uri: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The region speaks another protocol version.
    #[error(
        "the region speaks rack protocol {region}, this rack {rack}: run the same version on both"
    )]
    Version {
        /// The region's.
        region: u32,
        /// Ours.
        rack: u32,
    },
    /// The region's network model or records cannot be used.
    #[error("the region's {what}: {message}")]
    Invalid {
        /// What.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The rack's own cache could not be opened.
    #[error("the rack's cache: {0}")]
    State(Box<crate::state::StateError>),
    /// The region's certificate is not the one this rack trusts.
    #[error("{uri}: the region's certificate is not trusted: {source}")]
    Untrusted {
        /// The URL.
        uri: String,
        /// The TLS library's reason.
        #[source]
        source: Box<rustls::Error>,
    },
    /// The rack's trust in its region (`region_ca`, `region_fingerprint`) cannot be set up.
    #[error("[cluster]: {0}")]
    Tls(Box<crate::tls::TlsError>),
    /// A file of the rack's own (its credential, a boot resource it fetches).
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl From<crate::state::StateError> for RegionError {
    fn from(e: crate::state::StateError) -> Self {
        Self::State(Box::new(e))
    }
}

impl From<crate::tls::TlsError> for RegionError {
    fn from(e: crate::tls::TlsError) -> Self {
        Self::Tls(Box::new(e))
    }
}

/// The TLS error somewhere in `error`'s sources, if the connection failed on one.
fn tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An io::Error's source() skips the error it wraps: look inside it.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            next = Some(inner);
            continue;
        }
        next = e.source();
    }
    None
}

impl RegionError {
    /// Whether the next region should be tried: this one could not be reached, did not
    /// answer in time, or failed (5xx). A refusal, a certificate not trusted or another
    /// protocol version is the region's answer.
    pub(crate) fn fails_over(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::Body { .. } => true,
            Self::Refused { status, .. } => status.is_server_error(),
            _ => false,
        }
    }
}

/// The error of a request that got no answer: a certificate not trusted, or unreachable.
pub(super) fn unreachable(uri: &str, source: hyper_util::client::legacy::Error) -> RegionError {
    match tls_error(&source) {
        Some(tls) => RegionError::Untrusted {
            uri: uri.to_string(),
            source: Box::new(tls.clone()),
        },
        None => RegionError::Unreachable {
            uri: uri.to_string(),
            source,
        },
    }
}
