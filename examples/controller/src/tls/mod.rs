//! TLS for the controller's HTTP: the identity its listeners present, an HTTP/1.1 accept loop
//! over TLS or plain TCP, and the trust a rack or the command line puts in its region.
//!
//! | piece | what |
//! |---|---|
//! | [`ServerTls`] | the `tls` setting: `"off"`, `"self-signed"` or `{ cert = "..", key = ".." }` |
//! | [`server_identity`] | the rustls server configuration, the certificate's fingerprint and the file clients should trust |
//! | [`serve`] | the accept loop: TLS handshakes bounded in time, the peer's address as [`axum::extract::ConnectInfo`], a graceful stop |
//! | [`RegionTrust`], `client_config`, [`connector`] | a client that trusts the region's CA file, or exactly the certificate with a pinned SHA-256 fingerprint |
//!
//! Every configuration is built with the *ring* provider passed explicitly, so no
//! process-wide default provider has to be installed, and ALPN offers `http/1.1` only.

// The region, racks and command line take these up one by one; until then only the tests do.

mod client;
mod server;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[cfg(test)]
pub(crate) use client::client_config;
pub(crate) use client::{Connector, RegionTrust, connector, parse_fingerprint};
pub(crate) use server::{Identity, serve, server_identity};

/// Why TLS could not be set up. Messages name the files involved, never what keys hold.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("{}: not valid PEM: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{}: no certificate in it (a PEM \"CERTIFICATE\" block)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key.
    #[error(
        "{}: no private key in it (a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused a certificate chain with its key: a key that is not the certificate's,
    /// or a kind of key it cannot sign with.
    #[error("{} with the key {}: {source}", cert.display(), key.display())]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's error.
        #[source]
        source: rustls::Error,
    },
    /// A certificate of a CA file cannot be a trust anchor.
    #[error("{}: not a usable CA certificate: {source}", path.display())]
    Anchor {
        /// The file.
        path: PathBuf,
        /// rustls's error.
        #[source]
        source: rustls::Error,
    },
    /// A name for the self-signed certificate is neither an IP address nor a DNS name.
    #[error(
        "{name:?} cannot name the certificate (neither an IP address nor a DNS name): {source}"
    )]
    Name {
        /// The name as given.
        name: String,
        /// Why it is not a DNS name.
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// The self-signed certificate could not be generated.
    #[error("cannot generate the self-signed certificate: {source}")]
    Generate {
        /// The generator's error.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate fingerprint could not be read.
    #[error("certificate fingerprint: {reason}")]
    Fingerprint {
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the protocol versions for the provider.
    #[error("TLS configuration: {source}")]
    Config {
        /// rustls's error.
        #[source]
        source: rustls::Error,
    },
}

/// How the controller's HTTP listeners identify themselves, the `tls` setting:
///
/// ```toml
/// tls = "off"                                 # plain HTTP (the default)
/// tls = "self-signed"                         # generated once into state_dir/tls/, then reused
/// tls = { cert = "cert.pem", key = "key.pem" } # PEM files: the chain, leaf first, and its key
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum ServerTls {
    /// Plain HTTP.
    #[default]
    Off,
    /// A self-signed certificate kept in the state directory (see [`server_identity`]).
    SelfSigned,
    /// A certificate chain and its private key, both PEM.
    Files {
        /// The chain, the server's own certificate first.
        cert: PathBuf,
        /// The private key: PKCS#8, RSA (PKCS#1) or SEC1.
        key: PathBuf,
    },
}

/// The *ring* provider every configuration here is built with.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SHA-256 of a DER certificate.
fn sha256(der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0; 32];
    for (o, b) in out.iter_mut().zip(digest.as_ref()) {
        *o = *b;
    }
    out
}

/// A SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` shows it: uppercase hex pairs
/// joined by `:`.
fn format_fingerprint(sha256: &[u8; 32]) -> String {
    let mut text = String::with_capacity(32 * 3);
    for (i, byte) in sha256.iter().enumerate() {
        if i > 0 {
            text.push(':');
        }
        let _ = write!(text, "{byte:02X}");
    }
    text
}

/// Reads a whole file.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate of a PEM file, in order; at least one.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8, RSA (PKCS#1) or SEC1.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        source => TlsError::Pem {
            path: path.to_path_buf(),
            source,
        },
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn fingerprints_look_like_openssl_ones() {
        let text = format_fingerprint(&sha256(b"abc"));
        assert_eq!(
            text,
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }
}
