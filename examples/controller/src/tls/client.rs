//! The client side: how a rack or the command line trusts its region, as a rustls client
//! configuration and as a connector for hyper-util's client.

use std::path::PathBuf;
use std::sync::Arc;

use hyper::Uri;
use hyper_rustls::{HttpsConnector, ResolveServerName};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use subtle::ConstantTimeEq as _;

use super::{TlsError, format_fingerprint, load_certs, provider, sha256};

/// How a client trusts its region's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RegionTrust {
    /// The certificates of this PEM file are the trust anchors, and the region's certificate
    /// must chain to one and be valid for the host name or address of the URL (for a
    /// self-signed region, its `cert.pem` itself).
    Ca(PathBuf),
    /// Exactly the certificate with this SHA-256 (of its DER), whatever its names, issuer or
    /// dates: the certificate is pinned, its issuer is not consulted. The handshake's
    /// signatures are still checked against its key.
    Fingerprint([u8; 32]),
}

/// Reads a SHA-256 certificate fingerprint: 64 hex digits, any case, with or without `:`
/// between pairs, with or without a `sha256:` or `SHA256 Fingerprint=` prefix (what
/// `openssl x509 -fingerprint -sha256` prints).
pub(crate) fn parse_fingerprint(text: &str) -> Result<[u8; 32], TlsError> {
    let wrong = |reason: String| TlsError::Fingerprint { reason };
    let mut digits = text.trim();
    for prefix in ["sha256 fingerprint=", "sha256:"] {
        if let Some(head) = digits.get(..prefix.len())
            && head.eq_ignore_ascii_case(prefix)
        {
            digits = digits.get(prefix.len()..).unwrap_or_default().trim_start();
        }
    }
    if let Some(bad) = digits.chars().find(|c| *c != ':' && !c.is_ascii_hexdigit()) {
        return Err(wrong(format!(
            "{bad:?} is not a hex digit (expected 64 hex digits, pairs optionally separated by ':')"
        )));
    }
    let nibbles: Vec<u8> = digits.bytes().filter(|b| *b != b':').map(nibble).collect();
    if nibbles.len() != 64 {
        return Err(wrong(format!(
            "{} hex digits, where a SHA-256 fingerprint has 64",
            nibbles.len()
        )));
    }
    let mut sha256 = [0; 32];
    for (byte, pair) in sha256.iter_mut().zip(nibbles.chunks_exact(2)) {
        if let [high, low] = pair {
            *byte = (high << 4) | low;
        }
    }
    Ok(sha256)
}

/// The value of a hex digit (0 for anything else, which the caller has refused).
fn nibble(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// A rustls client configuration (*ring* provider, ALPN `http/1.1`) that trusts the region
/// as `trust` says: [`RegionTrust::Ca`] verifies the chain and the name as browsers do,
/// [`RegionTrust::Fingerprint`] accepts exactly the pinned certificate.
pub(crate) fn client_config(trust: &RegionTrust) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config { source })?;
    let mut config = match trust {
        RegionTrust::Ca(path) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|source| TlsError::Anchor {
                    path: path.clone(),
                    source,
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        RegionTrust::Fingerprint(sha256) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned::new(*sha256)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// hyper-util's client connector for the region: `http://` URLs over plain TCP, `https://`
/// ones over rustls.
pub(crate) type Connector = HttpsConnector<HttpConnector>;

/// A connector trusting the region as `trust` says. Without a trust, `http://` URLs work and
/// `https://` ones fail before connecting: nothing is trusted by default. A connection not
/// open within `connect_timeout` fails (a rack then tries its next region).
pub(crate) fn connector(
    trust: Option<&RegionTrust>,
    connect_timeout: Option<std::time::Duration>,
) -> Result<Connector, TlsError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(connect_timeout);
    // The TLS layer above takes https URLs.
    http.enforce_http(false);
    http.set_nodelay(true);
    Ok(match trust {
        Some(trust) => HttpsConnector::from((http, client_config(trust)?)),
        None => {
            // No anchors either, should a URL ever get past the refusal.
            let nothing = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|source| TlsError::Config { source })?
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth();
            HttpsConnector::new(http, nothing, false, Arc::new(NoTrust))
        }
    })
}

/// Refuses every `https://` URL: no CA and no fingerprint is configured for the region.
struct NoTrust;

/// Why an `https://` URL is refused without a trust.
#[derive(Debug, thiserror::Error)]
#[error(
    "{uri}: no trust is configured for the region's certificate (its CA file or its SHA-256 fingerprint), so https is refused"
)]
struct NoTrustError {
    /// The URL.
    uri: String,
}

impl ResolveServerName for NoTrust {
    fn resolve(
        &self,
        uri: &Uri,
    ) -> Result<ServerName<'static>, Box<dyn std::error::Error + Sync + Send>> {
        Err(Box::new(NoTrustError {
            uri: uri.to_string(),
        }))
    }
}

/// Accepts exactly the end-entity certificate with a SHA-256, and checks the handshake's
/// signatures against its key with the *ring* provider's algorithms.
#[derive(Debug)]
struct Pinned {
    /// The pinned certificate's SHA-256.
    sha256: [u8; 32],
    /// The signature algorithms the handshake may use.
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn new(sha256: [u8; 32]) -> Self {
        Self {
            sha256,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

/// The region presented another certificate than the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("the server's certificate has SHA-256 fingerprint {presented}, not the pinned one")]
struct FingerprintMismatch {
    /// The presented certificate's fingerprint.
    presented: String,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = sha256(end_entity);
        if bool::from(presented[..].ct_eq(&self.sha256[..])) {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = FingerprintMismatch {
            presented: format_fingerprint(&presented),
        };
        Err(CertificateError::Other(OtherError(Arc::new(mismatch))).into())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENSSL: &str = "sha256 Fingerprint=BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
                           B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD";

    #[test]
    fn fingerprints_read_in_every_usual_form() {
        let expected = sha256(b"abc");
        let bare = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        for text in [
            OPENSSL.to_string(),
            OPENSSL.replace("sha256", "SHA256"),
            format!("sha256:{bare}"),
            format!("SHA256:{}", bare.to_uppercase()),
            format!("  {bare}\n"),
            format_fingerprint(&expected),
        ] {
            assert_eq!(parse_fingerprint(&text).ok(), Some(expected), "{text}");
        }
    }

    #[test]
    fn fingerprint_errors_say_what_is_wrong() {
        for (text, expected) in [
            ("", "0 hex digits"),
            ("sha256:", "0 hex digits"),
            ("ab:cd", "4 hex digits"),
            (&OPENSSL[..OPENSSL.len() - 3], "62 hex digits"),
            (&format!("{OPENSSL}00"), "66 hex digits"),
            ("sha1:ab", "'s' is not a hex digit"),
            ("zz", "'z' is not a hex digit"),
        ] {
            let error = parse_fingerprint(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.starts_with("certificate fingerprint: "), "{error}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let scratch = crate::tls::tests::Scratch::new("tls-empty-ca");
        let path = scratch.0.join("empty.pem");
        std::fs::write(&path, "nothing here\n").expect("writes");
        let error = client_config(&RegionTrust::Ca(path.clone())).expect_err("refused");
        assert!(
            matches!(&error, TlsError::NoCertificate { path: p } if *p == path),
            "{error}"
        );
        let error = client_config(&RegionTrust::Ca(scratch.0.join("missing.pem")))
            .expect_err("refused")
            .to_string();
        assert!(error.contains("missing.pem"), "{error}");
    }

    #[test]
    fn configs_offer_http1_only() {
        let config = client_config(&RegionTrust::Fingerprint([0; 32])).expect("builds");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
