//! The server side: the identity the listeners present, and the accept loop serving a router
//! over TLS or plain TCP.

use std::convert::Infallible;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::DnsName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::{ServerTls, TlsError, format_fingerprint, load_certs, load_key, provider, sha256};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);
/// How long a stop lets connections finish the requests they are serving.
const DRAIN_WITHIN: Duration = Duration::from_secs(10);
/// How long the loop waits after a failed accept (out of file descriptors...) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long the self-signed certificate is valid.
const SELF_SIGNED_DAYS: i64 = 3650;
/// The directory under the state directory that holds the self-signed certificate.
const SELF_SIGNED_DIR: &str = "tls";

/// What a TLS listener presents: its rustls configuration (ALPN `http/1.1`), the SHA-256
/// fingerprint of its certificate, and the file clients should trust.
pub(crate) struct Identity {
    /// The server configuration, for [`serve`].
    pub(crate) config: Arc<ServerConfig>,
    /// The SHA-256 of the DER end-entity certificate as `openssl x509 -fingerprint -sha256`
    /// shows it (`AB:CD:...`, uppercase), to pin with `RegionTrust::Fingerprint`.
    pub(crate) fingerprint: String,
    /// The PEM file clients should trust (`RegionTrust::Ca`, `curl --cacert`): the
    /// self-signed certificate itself, or the configured chain's file.
    pub(crate) cert_path: PathBuf,
}

impl std::fmt::Debug for Identity {
    // The configuration holds the private key: not shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// The identity `tls` gives the listeners, or `None` for plain HTTP.
///
/// - [`ServerTls::Files`]: the PEM chain (leaf first) and private key (PKCS#8, RSA or SEC1).
/// - [`ServerTls::SelfSigned`]: on the first call, an ECDSA P-256 key and a self-signed
///   certificate valid for ten years are generated into `state_dir/tls/key.pem` (mode 0600,
///   created so) and `state_dir/tls/cert.pem` (mode 0644); later calls reuse them, so the
///   fingerprint stays the same across restarts. Its subjectAltNames are `names` (each an IP
///   address or a DNS name) with `localhost`, `127.0.0.1` and `::1`; they are fixed when it
///   is generated: remove `state_dir/tls/` to generate a certificate for other names. It is
///   an end-entity certificate (no CA flag, extended key usage serverAuth) that clients
///   trust directly: `cert_path` is `cert.pem`, and both OpenSSL (`curl --cacert cert.pem`)
///   and rustls (a root store holding it) accept it as its own trust anchor.
pub(crate) fn server_identity(
    tls: &ServerTls,
    state_dir: &Path,
    names: &[String],
) -> Result<Option<Identity>, TlsError> {
    let (cert_path, key_path) = match tls {
        ServerTls::Off => return Ok(None),
        ServerTls::Files { cert, key } => (cert.clone(), key.clone()),
        ServerTls::SelfSigned => self_signed(&state_dir.join(SELF_SIGNED_DIR), names)?,
    };
    let chain = load_certs(&cert_path)?;
    let key = load_key(&key_path)?;
    let fingerprint = match chain.first() {
        Some(leaf) => format_fingerprint(&sha256(leaf)),
        None => return Err(TlsError::NoCertificate { path: cert_path }),
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config { source })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Identity {
            cert: cert_path.clone(),
            key: key_path,
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Identity {
        config: Arc::new(config),
        fingerprint,
        cert_path,
    }))
}

/// Serves `router` over HTTP/1.1 on `listener`, over TLS when `tls` is given, until `shutdown`
/// is cancelled.
///
/// Each request carries the peer's address as [`ConnectInfo<SocketAddr>`]. A TLS handshake
/// that fails or takes more than ten seconds drops its connection only (logged at debug);
/// a failed accept (out of file descriptors...) is logged and retried a moment later. On
/// `shutdown` the loop stops accepting, lets the open connections finish the requests they
/// are serving for at most ten seconds, then drops what is left and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: Router,
    shutdown: CancellationToken,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(event = "accept_failed", error = %e);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        match &acceptor {
            None => {
                connections.spawn(serve_connection(tcp, peer, router, watcher));
            }
            Some(acceptor) => {
                let handshake = tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(tcp));
                let stop = shutdown.clone();
                connections.spawn(async move {
                    // A handshake has no request to finish: a stop ends it at once.
                    let done = tokio::select! {
                        () = stop.cancelled() => return,
                        done = handshake => done,
                    };
                    match done {
                        Ok(Ok(stream)) => serve_connection(stream, peer, router, watcher).await,
                        Ok(Err(e)) => {
                            tracing::debug!(event = "tls_handshake_failed", peer = %peer, error = %e);
                        }
                        Err(_) => {
                            tracing::debug!(
                                event = "tls_handshake_failed",
                                peer = %peer,
                                error = "no handshake in 10s",
                            );
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_WITHIN, graceful.shutdown())
        .await
        .is_ok();
    if !drained {
        tracing::debug!(
            event = "connections_dropped",
            count = connections.len(),
            reason = "still open 10s after the stop",
        );
    }
    connections.shutdown().await;
}

/// Serves one connection's requests until it closes, or until a stop seen by `watcher` lets it
/// finish the request under way and closes it.
async fn serve_connection<I>(io: I, peer: SocketAddr, router: Router, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            let response: Response<axum::body::Body> = router.oneshot(request).await?;
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    // The timer enables the header read timeout (30 s by default): no idle half-sent request
    // holds a connection forever.
    builder.timer(TokioTimer::new());
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(event = "connection_error", peer = %peer, error = %e);
    }
}

/// The paths of the self-signed certificate and its key in `dir`, generated if they are not
/// both there.
fn self_signed(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if exists(&cert)? && exists(&key)? {
        warn_if_readable_by_others(&key);
        return Ok((cert, key));
    }
    let names = subject_names(names)?;
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|source| TlsError::Generate { source })?;
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, common_name(&names));
    params.distinguished_name = subject;
    params.subject_alt_names = names;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // A day back for clocks a little behind the region's.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now.checked_sub(time::Duration::days(1)).unwrap_or(now);
    params.not_after = now
        .checked_add(time::Duration::days(SELF_SIGNED_DAYS))
        .unwrap_or(params.not_after);
    let certificate = params
        .self_signed(&key_pair)
        .map_err(|source| TlsError::Generate { source })?;

    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    // The key first: a certificate on disk means both are complete.
    write_atomically(&key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(&cert, certificate.pem().as_bytes(), 0o644)?;
    sync_dir(dir);
    tracing::info!(
        event = "tls_certificate_generated",
        cert = %cert.display(),
        fingerprint = format_fingerprint(&sha256(certificate.der())),
    );
    Ok((cert, key))
}

/// Whether `path` exists; an error other than its absence (permissions) is one.
fn exists(path: &Path) -> Result<bool, TlsError> {
    path.try_exists().map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificate's subjectAltNames: `names` (brackets around IPv6 addresses allowed, DNS
/// names lowercased) and the loopback names, each once, in order.
fn subject_names(names: &[String]) -> Result<Vec<SanType>, TlsError> {
    let loopback = [
        "localhost".to_string(),
        Ipv4Addr::LOCALHOST.to_string(),
        Ipv6Addr::LOCALHOST.to_string(),
    ];
    let mut sans = Vec::new();
    for name in names.iter().chain(&loopback) {
        let trimmed = name.trim();
        let bare = trimmed
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(trimmed);
        let san = if let Ok(ip) = bare.parse::<IpAddr>() {
            SanType::IpAddress(ip)
        } else {
            let dns =
                DnsName::try_from(bare.to_ascii_lowercase()).map_err(|source| TlsError::Name {
                    name: name.clone(),
                    source,
                })?;
            let dns: &str = dns.as_ref();
            let ia5 = rcgen::string::Ia5String::try_from(dns)
                .map_err(|source| TlsError::Generate { source })?;
            SanType::DnsName(ia5)
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// The subject's common name: the first DNS name given, so that two controllers' certificates
/// are told apart in a store holding both.
fn common_name(names: &[SanType]) -> String {
    names
        .iter()
        .find_map(|san| match san {
            SanType::DnsName(dns) if dns.as_str() != "localhost" => {
                Some(format!("maas-controller {}", dns.as_str()))
            }
            SanType::IpAddress(ip) if !ip.is_loopback() => Some(format!("maas-controller {ip}")),
            _ => None,
        })
        .unwrap_or_else(|| "maas-controller".to_string())
}

/// Writes `contents` to `path` through a new file created with `mode` (so a key is never
/// readable by others, even for a moment) renamed over it.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    // A leftover of an interrupted write: created afresh below, so with `mode`.
    if let Err(e) = fs::remove_file(&tmp)
        && e.kind() != io::ErrorKind::NotFound
    {
        return Err(failed(&tmp)(e));
    }
    let mut file = create_new(&tmp, mode).map_err(failed(&tmp))?;
    file.write_all(contents).map_err(failed(&tmp))?;
    // Explicit, whatever the umask took away.
    set_mode(&file, mode).map_err(failed(&tmp))?;
    file.sync_all().map_err(failed(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(failed(path))
}

/// Creates `path`, which must not exist, with permissions `mode`.
#[cfg(unix)]
fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Creates `path`, which must not exist.
#[cfg(not(unix))]
fn create_new(path: &Path, _mode: u32) -> io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Sets an open file's permissions to `mode`.
#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

/// Permissions are Unix modes: nothing to do elsewhere.
#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Makes the renames in `dir` durable; a failure only loses them to a crash, which generates
/// a new certificate at the next start.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Warns when an existing key file can be read by other users.
#[cfg(unix)]
fn warn_if_readable_by_others(key: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = fs::metadata(key)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            event = "tls_key_exposed",
            key = %key.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            advice = "chmod 600",
        );
    }
}

/// Permissions are Unix modes: nothing to check elsewhere.
#[cfg(not(unix))]
fn warn_if_readable_by_others(_key: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::tests::Scratch;

    #[test]
    fn off_is_plain_http() {
        let scratch = Scratch::new("tls-off");
        let identity = server_identity(&ServerTls::Off, &scratch.0, &[]).expect("off");
        assert!(identity.is_none());
        assert!(!scratch.0.join("tls").exists());
    }

    #[test]
    fn self_signed_is_generated_once_with_a_private_key() {
        let scratch = Scratch::new("tls-once");
        let names = ["region.example".to_string(), "[fd00::5]".to_string()];
        let first = server_identity(&ServerTls::SelfSigned, &scratch.0, &names)
            .expect("generates")
            .expect("an identity");
        assert_eq!(first.cert_path, scratch.0.join("tls/cert.pem"));
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let again = server_identity(&ServerTls::SelfSigned, &scratch.0, &[])
            .expect("reuses")
            .expect("an identity");
        assert_eq!(again.fingerprint, first.fingerprint);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &str| {
                let meta = fs::metadata(scratch.0.join(p)).expect("exists");
                meta.permissions().mode() & 0o777
            };
            assert_eq!(mode("tls/key.pem"), 0o600);
            assert_eq!(mode("tls/cert.pem"), 0o644);
        }
        assert!(!scratch.0.join("tls/key.pem.tmp").exists());
        let listed = format!("{first:?}");
        assert!(!listed.contains("PRIVATE"), "{listed}");
    }

    #[test]
    fn the_same_files_give_the_same_identity() {
        let scratch = Scratch::new("tls-files");
        let generated = server_identity(&ServerTls::SelfSigned, &scratch.0, &[])
            .expect("generates")
            .expect("an identity");
        let files = ServerTls::Files {
            cert: scratch.0.join("tls/cert.pem"),
            key: scratch.0.join("tls/key.pem"),
        };
        let loaded = server_identity(&files, Path::new("/nonexistent"), &[])
            .expect("loads")
            .expect("an identity");
        assert_eq!(loaded.fingerprint, generated.fingerprint);
        assert_eq!(loaded.cert_path, scratch.0.join("tls/cert.pem"));
    }

    #[test]
    fn an_incomplete_pair_is_generated_again() {
        let scratch = Scratch::new("tls-incomplete");
        let first = server_identity(&ServerTls::SelfSigned, &scratch.0, &[])
            .expect("generates")
            .expect("an identity");
        fs::remove_file(scratch.0.join("tls/cert.pem")).expect("removes");
        let second = server_identity(&ServerTls::SelfSigned, &scratch.0, &[])
            .expect("generates")
            .expect("an identity");
        assert_ne!(second.fingerprint, first.fingerprint);
    }

    #[test]
    fn file_errors_name_the_file_and_never_the_key() {
        let scratch = Scratch::new("tls-errors");
        server_identity(&ServerTls::SelfSigned, &scratch.0, &[]).expect("generates");
        let other = Scratch::new("tls-errors-other");
        server_identity(&ServerTls::SelfSigned, &other.0, &[]).expect("generates");
        let cert = scratch.0.join("tls/cert.pem");
        let key = scratch.0.join("tls/key.pem");
        let missing = scratch.0.join("missing.pem");
        let files = |cert: &Path, key: &Path| ServerTls::Files {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        };
        let error = |tls: &ServerTls| match server_identity(tls, &scratch.0, &[]) {
            Ok(_) => panic!("{tls:?} was accepted"),
            Err(e) => e.to_string(),
        };

        let text = error(&files(&missing, &key));
        assert!(text.contains(&missing.display().to_string()), "{text}");
        // The key file given as the certificate: no certificate, and nothing of the key said.
        let text = error(&files(&key, &key));
        assert!(text.contains("no certificate"), "{text}");
        let key_text = fs::read_to_string(&key).expect("reads");
        let key_body = key_text.lines().nth(1).expect("a body line");
        assert!(!text.contains(key_body), "{text}");
        let text = error(&files(&cert, &cert));
        assert!(text.contains("no private key"), "{text}");
        let text = error(&files(&cert, &other.0.join("tls/key.pem")));
        assert!(text.contains(&cert.display().to_string()), "{text}");
        assert!(!text.contains(key_body), "{text}");
    }

    #[test]
    fn names_are_ip_addresses_or_dns_names() {
        let sans = subject_names(&[
            "Region.Example".to_string(),
            "10.0.0.1".to_string(),
            "localhost".to_string(),
            "[::1]".to_string(),
        ])
        .expect("valid");
        assert_eq!(sans.len(), 5, "{sans:?}");
        assert_eq!(common_name(&sans), "maas-controller region.example");
        assert_eq!(common_name(&sans[2..]), "maas-controller");
        let error = subject_names(&["not a name!".to_string()]).expect_err("refused");
        assert!(error.to_string().contains("not a name!"), "{error}");
    }

    /// OpenSSL, which curl uses, takes the certificate as its own trust anchor too (skipped
    /// where the `openssl` command is missing).
    #[test]
    fn openssl_trusts_the_self_signed_certificate() {
        let scratch = Scratch::new("tls-openssl");
        let identity = server_identity(&ServerTls::SelfSigned, &scratch.0, &[])
            .expect("generates")
            .expect("an identity");
        let cert = identity.cert_path.to_string_lossy().into_owned();
        let verify = std::process::Command::new("openssl")
            .args(["verify", "-purpose", "sslserver", "-CAfile", &cert, &cert])
            .output();
        let Ok(verify) = verify else {
            eprintln!("skipped: no openssl command");
            return;
        };
        let said = String::from_utf8_lossy(&verify.stdout).into_owned()
            + &String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success(), "openssl verify: {said}");
        let shown = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", &cert])
            .output()
            .expect("openssl runs");
        let shown = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.trim().ends_with(&identity.fingerprint), "{shown}");
    }
}
