//! The server and clients against each other over loopback: TLS and plain HTTP, the peer's
//! address, CA and fingerprint trust, refusals, failed handshakes and the graceful stop.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpInfo;
use hyper_util::rt::TokioExecutor;
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    Connector, Identity, RegionTrust, ServerTls, client_config, connector, parse_fingerprint,
    serve, server_identity,
};

/// A scratch directory, removed on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    /// An empty directory named after the test.
    pub(crate) fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("maas-controller-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creates the scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed identity in `scratch`.
fn identity(scratch: &Scratch) -> Identity {
    server_identity(&ServerTls::SelfSigned, &scratch.0, &[])
        .expect("generates")
        .expect("an identity")
}

/// A server answering `/` with the peer address it was given.
struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(tls: Option<Arc<ServerConfig>>) -> Self {
        let router = Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, tls, router, stop.clone()));
        Self { addr, stop, task }
    }

    /// Stops it and waits, at most `within`, for the loop to return.
    async fn stop(self, within: Duration) -> bool {
        self.stop.cancel();
        tokio::time::timeout(within, self.task).await.is_ok()
    }
}

/// A client through `connector`.
fn client(connector: Connector) -> Client<Connector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(connector)
}

/// GETs `url` with a new client: the body, and the client's own address on the connection.
async fn fetch(connector: Connector, url: &str) -> Result<(String, SocketAddr), String> {
    fetch_with(&client(connector), url).await
}

/// GETs `url`: the body, and the client's own address on the connection.
async fn fetch_with(
    client: &Client<Connector, Empty<Bytes>>,
    url: &str,
) -> Result<(String, SocketAddr), String> {
    let uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| format!("{url}: no answer in 10s"))?
        .map_err(|e| chain(&e))?;
    let local = response
        .extensions()
        .get::<HttpInfo>()
        .map(HttpInfo::local_addr)
        .ok_or("no connection information")?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| chain(&e))?
        .to_bytes();
    Ok((String::from_utf8_lossy(&body).into_owned(), local))
}

/// An error with all its sources.
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    text
}

#[tokio::test]
async fn plain_http_carries_the_peer_address() {
    let server = Server::start(None).await;
    let url = format!("http://{}/", server.addr);
    let (body, local) = fetch(connector(None, None).expect("builds"), &url)
        .await
        .expect("answers");
    assert_eq!(body, local.to_string());
    let error = fetch(
        connector(None, None).expect("builds"),
        &format!("https://{}/", server.addr),
    )
    .await
    .expect_err("https without trust");
    assert!(error.contains("no trust is configured"), "{error}");
    assert!(server.stop(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn the_self_signed_certificate_is_its_own_anchor() {
    let scratch = Scratch::new("tls-anchor");
    let identity = identity(&scratch);
    let server = Server::start(Some(Arc::clone(&identity.config))).await;
    let trust = RegionTrust::Ca(identity.cert_path.clone());
    let port = server.addr.port();
    for url in [
        format!("https://127.0.0.1:{port}/"),
        format!("https://localhost:{port}/"),
    ] {
        let (body, local) = fetch(connector(Some(&trust), None).expect("builds"), &url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(body, local.to_string(), "{url}");
    }
    // Plain HTTP to a TLS listener gets no answer, and the listener goes on.
    let error = fetch(
        connector(Some(&trust), None).expect("builds"),
        &format!("http://127.0.0.1:{port}/"),
    )
    .await;
    assert!(error.is_err(), "{error:?}");
    let again = fetch(
        connector(Some(&trust), None).expect("builds"),
        &format!("https://127.0.0.1:{port}/"),
    )
    .await;
    assert!(again.is_ok(), "{again:?}");
    assert!(server.stop(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn rustls_alone_accepts_it_and_agrees_on_http1() {
    let scratch = Scratch::new("tls-rustls");
    let identity = identity(&scratch);
    let server = Server::start(Some(Arc::clone(&identity.config))).await;
    let config = client_config(&RegionTrust::Ca(identity.cert_path.clone())).expect("builds");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    for name in ["localhost", "127.0.0.1", "::1"] {
        let tcp = TcpStream::connect(server.addr).await.expect("connects");
        let name = rustls::pki_types::ServerName::try_from(name).expect("a name");
        let stream = tls.connect(name.to_owned(), tcp).await;
        let stream = stream.unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
    let tcp = TcpStream::connect(server.addr).await.expect("connects");
    let name = rustls::pki_types::ServerName::try_from("elsewhere.example").expect("a name");
    let error = tls.connect(name, tcp).await.expect_err("another name");
    assert!(error.to_string().contains("not valid for name"), "{error}");
    assert!(server.stop(Duration::from_secs(5)).await);
}

/// curl (OpenSSL) trusts the self-signed certificate given as `--cacert` (skipped where the
/// `curl` command is missing).
#[tokio::test]
async fn curl_trusts_the_self_signed_certificate() {
    let scratch = Scratch::new("tls-curl");
    let identity = identity(&scratch);
    let server = Server::start(Some(Arc::clone(&identity.config))).await;
    let port = server.addr.port();
    for url in [
        format!("https://127.0.0.1:{port}/"),
        format!("https://localhost:{port}/"),
    ] {
        let mut command = std::process::Command::new("curl");
        command
            .args([
                "--silent",
                "--show-error",
                "--noproxy",
                "*",
                "--max-time",
                "10",
            ])
            .arg("--cacert")
            .arg(&identity.cert_path)
            .arg(&url);
        let curl = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("curl's thread");
        let Ok(curl) = curl else {
            eprintln!("skipped: no curl command");
            return;
        };
        let body = String::from_utf8_lossy(&curl.stdout);
        let said = String::from_utf8_lossy(&curl.stderr);
        assert!(curl.status.success(), "{url}: {said}");
        let peer: SocketAddr = body
            .parse()
            .unwrap_or_else(|e| panic!("{url}: {body}: {e}"));
        assert!(peer.ip().is_loopback(), "{url}: {peer}");
    }
    assert!(server.stop(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn an_unrelated_ca_is_refused() {
    let scratch = Scratch::new("tls-unrelated");
    let other = Scratch::new("tls-unrelated-other");
    let served = identity(&scratch);
    let unrelated = identity(&other);
    let server = Server::start(Some(Arc::clone(&served.config))).await;
    let trust = RegionTrust::Ca(unrelated.cert_path.clone());
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    let error = fetch(connector(Some(&trust), None).expect("builds"), &url)
        .await
        .expect_err("refused");
    assert!(error.contains("certificate"), "{error}");
    assert!(server.stop(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_pinned_fingerprint_connects_and_another_is_refused() {
    let scratch = Scratch::new("tls-pinned");
    let identity = identity(&scratch);
    let server = Server::start(Some(Arc::clone(&identity.config))).await;
    let url = format!("https://127.0.0.1:{}/", server.addr.port());

    let pin = parse_fingerprint(&identity.fingerprint).expect("parses");
    let trust = RegionTrust::Fingerprint(pin);
    let (body, local) = fetch(connector(Some(&trust), None).expect("builds"), &url)
        .await
        .expect("pinned");
    assert_eq!(body, local.to_string());

    let mut wrong = pin;
    wrong[31] ^= 1;
    let trust = RegionTrust::Fingerprint(wrong);
    let error = fetch(connector(Some(&trust), None).expect("builds"), &url)
        .await
        .expect_err("refused");
    assert!(error.contains("certificate"), "{error}");
    assert!(error.contains(&identity.fingerprint), "{error}");
    assert!(server.stop(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn failed_handshakes_do_not_stop_the_loop() {
    let scratch = Scratch::new("tls-garbage");
    let identity = identity(&scratch);
    let server = Server::start(Some(Arc::clone(&identity.config))).await;
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connects");
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("writes");
        drop(tcp);
    }
    // Connected, then silent: its handshake waits without holding up the others.
    let _silent = TcpStream::connect(server.addr).await.expect("connects");
    let trust = RegionTrust::Ca(identity.cert_path.clone());
    let url = format!("https://127.0.0.1:{}/", server.addr.port());
    let answer = fetch(connector(Some(&trust), None).expect("builds"), &url).await;
    assert!(answer.is_ok(), "{answer:?}");
    assert!(server.stop(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_stop_closes_idle_connections_and_the_listener() {
    let scratch = Scratch::new("tls-stop");
    let identity = identity(&scratch);
    let server = Server::start(Some(Arc::clone(&identity.config))).await;
    let addr = server.addr;
    let trust = RegionTrust::Ca(identity.cert_path.clone());
    // The client keeps its connection open (idle, kept alive) after the answer, and another
    // connection has not begun its handshake.
    let client = client(connector(Some(&trust), None).expect("builds"));
    let answer = fetch_with(&client, &format!("https://127.0.0.1:{}/", addr.port())).await;
    assert!(answer.is_ok(), "{answer:?}");
    let _silent = TcpStream::connect(addr).await.expect("connects");
    let started = std::time::Instant::now();
    assert!(server.stop(Duration::from_secs(5)).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}
