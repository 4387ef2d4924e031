//! The proxy server on tokio and hyper: absolute-form HTTP/1.1 requests (kept alive), CONNECT
//! tunnels, the cache, and an optional parent proxy.
//!
//! Every request goes through [`crate::acl`] and [`crate::request`] first: a refused request is
//! answered by the proxy and nothing is fetched. Limits: the request head size and field
//! count (431), the number of connections (over the limit a connection is closed at once), and
//! the time a connection may take to send a request head, also between kept-alive requests
//! (slow or idle clients are disconnected).
//!
//! Upstream connections (to origins, or to the parent proxy) are pooled and kept alive for
//! [`ProxyConfig::upstream_idle_timeout`]; every new one is dialled through the ACL.
//!
//! A fresh hit's answer is remembered with the object ([`crate::policy::FreshHit`]), so later
//! hits skip the policy crate while its answer cannot differ.
//!
//! `GET /metrics` in origin form (a request to the proxy itself) answers the counters as JSON.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts as RequestParts;
use http::response::Parts as ResponseParts;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::acl::{Acl, AclConfig, Kind};
use crate::error::{Refusal, ServerError};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::policy::{self, Lookup, RangeAnswer, Revalidated};
use crate::request::{self, FramingScanner, Limits, Target};
use crate::store::{Fetch, Meta, Object, Role, Store, StoreConfig};

/// The body type of every response the proxy gives.
pub type Body = BoxBody<Bytes, io::Error>;

/// Server configuration (serde).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Clients and destinations.
    pub acl: AclConfig,
    /// The cache.
    pub store: StoreConfig,
    /// Request head limits.
    pub limits: Limits,
    /// The most client connections at once.
    pub max_connections: usize,
    /// How long a client may take to send a request head (also while idle between requests).
    pub header_timeout: Duration,
    /// How long to wait for an upstream connection.
    pub connect_timeout: Duration,
    /// How long an idle upstream connection is kept for reuse.
    pub upstream_idle_timeout: Duration,
    /// The most idle upstream connections kept per origin (or per origin through the parent).
    pub upstream_idle_per_host: usize,
    /// A parent proxy, `http://[user:password@]host:port`.
    pub upstream: Option<String>,
    /// The name in our `Via` token (loop detection).
    pub via: String,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3128)),
            acl: AclConfig::default(),
            store: StoreConfig::default(),
            limits: Limits::default(),
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            upstream_idle_timeout: Duration::from_secs(60),
            upstream_idle_per_host: 16,
            upstream: None,
            via: "maas-proxy".to_string(),
        }
    }
}

#[derive(Debug, Clone)]
struct Parent {
    addr: String,
    port: u16,
    auth: Option<HeaderValue>,
}

impl Parent {
    fn parse(url: &str) -> Result<Self, ServerError> {
        let bad = || ServerError::Upstream(url.to_string());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let auth = uri.authority().ok_or_else(bad)?;
        let credentials = auth.as_str().rsplit_once('@').map(|(c, _)| c.to_string());
        let auth_header = match credentials {
            Some(c) => Some(
                HeaderValue::from_str(&format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(c)
                ))
                .map_err(|_| bad())?,
            ),
            None => None,
        };
        Ok(Self {
            addr: auth
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: auth.port_u16().unwrap_or(3128),
            auth: auth_header,
        })
    }
}

/// Opens upstream connections: to the origin, or to the parent proxy; every address checked
/// against the ACL first. It is the connector of the pooled client too.
#[derive(Clone)]
struct Dialer {
    inner: Arc<DialerInner>,
}

struct DialerInner {
    acl: Acl,
    parent: Option<Parent>,
    timeout: Duration,
}

/// A connection the pooled client made: to a parent proxy it is "proxied", so requests keep
/// their absolute form.
struct Upstream {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

/// A connector failure, carried through the pooled client's error.
#[derive(Debug)]
struct DialError(Failure);

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Failure::Refused(r) => write!(f, "{r}"),
            Failure::Upstream(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DialError {}

type Pool = hyper_util::client::legacy::Client<Dialer, Body>;

struct Shared {
    config: ProxyConfig,
    acl: Acl,
    store: Store,
    metrics: Metrics,
    parent: Option<Parent>,
    dialer: Dialer,
    /// Client connections (over `max_connections` a new one is closed at once), shared by
    /// every listener served.
    connections: Arc<Semaphore>,
    /// Kept-alive upstream connections (to origins, or to the parent proxy).
    pool: Pool,
    /// Our `Via` field value for responses.
    via_value: Option<HeaderValue>,
}

/// The proxy: bind it, then [`Proxy::serve`].
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listen", &self.shared.config.listen)
            .field("metrics", &self.shared.metrics.snapshot())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Opens the store and checks the configuration.
    pub fn new(config: ProxyConfig) -> Result<Self, ServerError> {
        let parent = config.upstream.as_deref().map(Parent::parse).transpose()?;
        let store = Store::open(config.store.clone())?;
        let via_value = HeaderValue::from_str(&format!("1.1 {}", config.via)).ok();
        let dialer = Dialer {
            inner: Arc::new(DialerInner {
                acl: Acl::new(&config.acl),
                parent: parent.clone(),
                timeout: config.connect_timeout,
            }),
        };
        let pool =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(config.upstream_idle_timeout)
                .pool_max_idle_per_host(config.upstream_idle_per_host)
                .set_host(false)
                .build(dialer.clone());
        Ok(Self {
            shared: Arc::new(Shared {
                connections: Arc::new(Semaphore::new(config.max_connections)),
                dialer,
                pool,
                acl: Acl::new(&config.acl),
                config,
                store,
                metrics: Metrics::default(),
                parent,
                via_value,
            }),
        })
    }

    /// The counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Binds the configured address.
    pub async fn bind(&self) -> Result<TcpListener, ServerError> {
        let addr = self.shared.config.listen;
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Listen { addr, source })
    }

    /// Serves connections from `listener` until the task is dropped. Several listeners (one
    /// per runtime, say) may be served at once; they share the connection limit and the
    /// cache.
    pub async fn serve(&self, listener: TcpListener) -> Result<(), ServerError> {
        let limit = &self.shared.connections;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) if is_transient(&e) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(source) => {
                    return Err(ServerError::Listen {
                        addr: self.shared.config.listen,
                        source,
                    });
                }
            };
            let Ok(permit) = Arc::clone(limit).try_acquire_owned() else {
                self.shared.metrics.add_refused(1);
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move {
                let config = &shared.config;
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(config.header_timeout)
                    .max_buf_size(config.limits.max_head_bytes.max(8192) + 8192)
                    .max_header_size(config.limits.max_head_bytes)
                    .max_headers(config.limits.max_headers)
                    .keep_alive(true);
                let scanner = Arc::new(std::sync::Mutex::new(FramingScanner::new(&config.limits)));
                let io = Inspect {
                    inner: stream,
                    scanner: Arc::clone(&scanner),
                };
                let svc_shared = Arc::clone(&shared);
                let count = std::sync::atomic::AtomicU64::new(0);
                let svc = hyper::service::service_fn(move |req| {
                    let shared = Arc::clone(&svc_shared);
                    let index = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let framing = scanner
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .refusal(index);
                    async move {
                        Ok::<_, Infallible>(match framing {
                            Some(r) => refusal(&shared, r),
                            None => handle(shared, peer.ip(), req).await,
                        })
                    }
                });
                let _ = builder
                    .serve_connection(TokioIo::new(io), svc)
                    .with_upgrades()
                    .await;
                drop(permit);
            });
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error().is_some_and(|c| c == 24 || c == 23)
}

/// The client's socket, with every byte read also fed to the connection's framing scanner.
struct Inspect {
    inner: TcpStream,
    scanner: Arc<std::sync::Mutex<FramingScanner>>,
}

impl tokio::io::AsyncRead for Inspect {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                self.scanner
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .feed(new);
            }
        }
        poll
    }
}

impl tokio::io::AsyncWrite for Inspect {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The answer to a refused request (framing refusals also close the connection).
fn refusal(shared: &Shared, r: Refusal) -> Response<Body> {
    shared.metrics.add_refused(1);
    let close = matches!(
        r,
        Refusal::TransferEncodingAndLength
            | Refusal::BadTransferEncoding(_)
            | Refusal::BadContentLength
    );
    let mut res = text(r.status(), &format!("{r}\n"));
    if close {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

async fn handle(shared: Arc<Shared>, client: IpAddr, req: Request<Incoming>) -> Response<Body> {
    let refuse = refusal;
    if let Err(r) = shared.acl.check_client(client) {
        return refuse(&shared, r);
    }
    if req.uri().scheme().is_none()
        && req.method() == Method::GET
        && req.uri().path() == "/metrics"
        && req.headers().get(header::VIA).is_none()
    {
        let body = serde_json::to_string(&shared.metrics.snapshot()).unwrap_or_default();
        let mut res = text(StatusCode::OK, &body);
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return res;
    }
    let checked = match request::check(
        &shared.acl,
        req.method(),
        req.uri(),
        req.version(),
        req.headers(),
        &shared.config.via,
    ) {
        Ok(c) => c,
        Err(r) => return refuse(&shared, r),
    };
    if checked.target.kind == Kind::Connect {
        return connect(shared, checked.target, req).await;
    }
    let (mut parts, body) = req.into_parts();
    parts.uri = checked.target.uri.clone();
    parts.headers = checked.headers;
    let result = if policy::request_cacheable(&parts) {
        cached(&shared, &checked.target, parts).await
    } else {
        pass_through(
            &shared,
            &checked.target,
            parts,
            body.map_err(io::Error::other).boxed(),
        )
        .await
    };
    match result {
        Ok(res) => res,
        Err(Failure::Refused(r)) => refuse(&shared, r),
        Err(Failure::Upstream(msg)) => text(StatusCode::BAD_GATEWAY, &format!("upstream: {msg}\n")),
    }
}

#[derive(Debug, Clone)]
enum Failure {
    Refused(Refusal),
    Upstream(String),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut res = Response::new(full(Bytes::copy_from_slice(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Connects to the target (or the parent proxy), refusing denied addresses: the name is
/// resolved here and only an address that passed the ACL is connected to.
async fn dial(dialer: &Dialer, host: &str, port: u16) -> Result<TcpStream, Failure> {
    let d = &dialer.inner;
    let (host, port) = match &d.parent {
        Some(p) => (p.addr.as_str(), p.port),
        None => (host, port),
    };
    let timeout = d.timeout;
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Failure::Upstream(format!("resolving {host} timed out")))?
            .map_err(|e| Failure::Upstream(format!("resolving {host}: {e}")))?
            .collect();
    let mut last = Failure::Upstream(format!("{host} has no address"));
    for addr in addrs {
        if d.parent.is_none()
            && let Err(r) = d.acl.check_destination(addr.ip())
        {
            last = Failure::Refused(r);
            continue;
        }
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = Failure::Upstream(format!("connecting to {addr}: {e}")),
            Err(_) => last = Failure::Upstream(format!("connecting to {addr} timed out")),
        }
    }
    Err(last)
}

impl tower_service::Service<Uri> for Dialer {
    type Response = Upstream;
    type Error = DialError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Upstream, DialError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), DialError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
                .ok_or_else(|| DialError(Failure::Upstream(format!("no host in {uri}"))))?;
            let port = uri.port_u16().unwrap_or(80);
            let stream = dial(&dialer, &host, port).await.map_err(DialError)?;
            Ok(Upstream {
                io: TokioIo::new(stream),
                proxied: dialer.inner.parent.is_some(),
            })
        })
    }
}

impl hyper_util::client::legacy::connect::Connection for Upstream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new().proxy(self.proxied)
    }
}

impl hyper::rt::Read for Upstream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Upstream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Sends one request upstream on a pooled, kept-alive connection: origin form to the
/// origin, absolute form (with credentials) to a parent proxy.
async fn send(
    shared: &Shared,
    target: &Target,
    method: Method,
    mut headers: HeaderMap,
    body: Body,
) -> Result<Response<Incoming>, Failure> {
    if let Some(a) = shared.parent.as_ref().and_then(|p| p.auth.as_ref()) {
        headers.insert(header::PROXY_AUTHORIZATION, a.clone());
    }
    if let Some(auth) = target.uri.authority()
        && let Ok(v) = HeaderValue::from_str(auth.as_str())
    {
        headers.insert(header::HOST, v);
    }
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = target.uri.clone();
    *req.headers_mut() = headers;
    shared.metrics.add_upstream_fetches(1);
    shared.pool.request(req).await.map_err(|e| {
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            if let Some(DialError(f)) = s.downcast_ref::<DialError>() {
                return f.clone();
            }
            source = s.source();
        }
        Failure::Upstream(e.to_string())
    })
}

/// The response head for the client: hop-by-hop fields removed, our `Via` added.
fn client_head(shared: &Shared, mut parts: ResponseParts, cache: &'static str) -> ResponseParts {
    request::strip_hop_by_hop(&mut parts.headers);
    if let Some(v) = &shared.via_value {
        parts.headers.append(header::VIA, v.clone());
    }
    parts
        .headers
        .insert("x-cache", HeaderValue::from_static(cache));
    parts
}

async fn pass_through(
    shared: &Shared,
    target: &Target,
    parts: RequestParts,
    body: Body,
) -> Result<Response<Body>, Failure> {
    shared.metrics.add_misses(1);
    let res = send(shared, target, parts.method, parts.headers, body).await?;
    let (head, body) = res.into_parts();
    let head = client_head(shared, head, "MISS");
    Ok(Response::from_parts(
        head,
        body.map_err(io::Error::other).boxed(),
    ))
}

async fn cached(
    shared: &Arc<Shared>,
    target: &Target,
    req: RequestParts,
) -> Result<Response<Body>, Failure> {
    let url = target.uri.to_string();
    let now = SystemTime::now();
    let mut upstream_headers = None;
    let mut stored = None;
    if let Some(obj) = shared.store.get(&url) {
        // A remembered fresh answer, while the policy would give the same one.
        if let Some(head) = obj.hit.as_ref().and_then(|h| h.answer(&req, now)) {
            shared.metrics.add_hits(1);
            return Ok(serve_object(shared, &req, head, obj, "HIT"));
        }
        match policy::lookup(&obj.meta.policy, &req, now) {
            Lookup::Fresh(mut head) => {
                if let Some(hit) = policy::FreshHit::new(&obj.meta.policy, &req, &head, now) {
                    shared.store.remember_hit(&url, &obj.meta, hit);
                }
                // hyper writes its own (cached) Date, in the HTTP-date format.
                head.headers.remove(header::DATE);
                shared.metrics.add_hits(1);
                return Ok(serve_object(shared, &req, head, obj, "HIT"));
            }
            Lookup::Revalidate(r) => {
                let mut h = r.headers;
                h.remove(header::RANGE);
                h.remove(header::IF_RANGE);
                upstream_headers = Some(h);
                stored = Some(obj);
            }
            Lookup::Mismatch => {}
        }
    }
    let upstream_headers = upstream_headers.unwrap_or_else(|| miss_headers(&req.headers));
    let role = shared
        .store
        .begin(&url)
        .map_err(|e| Failure::Upstream(e.to_string()))?;
    let fetch = match role {
        Role::Leader(fetch) => {
            let task_shared = Arc::clone(shared);
            let (task_target, task_req) = (target.clone(), req.clone());
            let f = Arc::clone(&fetch);
            let stored_meta = stored.as_ref().map(|o| Arc::clone(&o.meta));
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let refused = run_fetch(
                    &task_shared,
                    &f,
                    &task_target,
                    &task_req,
                    upstream_headers,
                    stored_meta,
                )
                .await;
                let _ = tx.send(refused);
            });
            // The leader's own failure to connect (refused destination) is reported as such.
            let mut progress = fetch.subscribe();
            let _ = progress
                .wait_for(|p| p.head.is_some() || p.done.is_some())
                .await;
            if progress.borrow().head.is_none()
                && let Ok(Some(f)) = rx.await
            {
                return Err(f);
            }
            return follow(shared, target, req, fetch, true).await;
        }
        Role::Follower(fetch) => fetch,
    };
    follow(shared, target, req, fetch, false).await
}

/// Conditional fields of the client are not sent on a miss: the full object is fetched so it
/// can be stored (the client's conditions are answered from it). Range likewise.
fn miss_headers(headers: &HeaderMap) -> HeaderMap {
    let mut h = headers.clone();
    for name in [
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "range",
    ] {
        h.remove(name);
    }
    h
}

/// Runs the upstream request of a fetch and feeds its body to the file. Returns the refusal
/// or failure when upstream could not be reached.
async fn run_fetch(
    shared: &Arc<Shared>,
    fetch: &Arc<Fetch>,
    target: &Target,
    req: &RequestParts,
    headers: HeaderMap,
    stored: Option<Arc<Meta>>,
) -> Option<Failure> {
    let sent = headers.clone();
    let res = match send(shared, target, Method::GET, headers, empty()).await {
        Ok(r) => r,
        Err(f) => {
            finish(shared, fetch, false).await;
            return Some(f);
        }
    };
    let now = SystemTime::now();
    let (head, mut body) = res.into_parts();
    if head.status == StatusCode::NOT_MODIFIED {
        if let Some(meta) = &stored
            && let Revalidated::NotModified(policy, merged) =
                policy::revalidated(&meta.policy, req, &sent, &head, now)
        {
            let (s, url) = (Arc::clone(shared), fetch.url().to_string());
            // Not persisted (a full disk, say): served from memory now, revalidated again
            // after a restart.
            let _ = tokio::task::spawn_blocking(move || s.store.update_policy(&url, *policy)).await;
            fetch.set_not_modified(merged);
            finish(shared, fetch, false).await;
            return None;
        }
        // A 304 that matches nothing stored cannot be given to a client that did not ask
        // conditionally: drop the stored object, the next request fetches it whole.
        shared.store.remove(fetch.url());
        finish(shared, fetch, false).await;
        return Some(Failure::Upstream(
            "upstream answered 304 for an object not stored".into(),
        ));
    }
    let expected = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let meta = policy::new_policy(req, &head, now).map(|policy| Meta {
        url: fetch.url().to_string(),
        policy,
    });
    let too_big = expected.is_some_and(|n| n > shared.store.config().object_max);
    let meta = meta.filter(|_| !too_big);
    if fetch.set_head(head, meta.as_ref()).is_err() {
        finish(shared, fetch, false).await;
        return None;
    }
    let mut ok = true;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    shared.metrics.add_bytes_from_upstream(data.len() as u64);
                    if fetch.write(&data).is_err() {
                        ok = false;
                        break;
                    }
                }
            }
            Some(Err(_)) => {
                ok = false;
                break;
            }
        }
    }
    let written = fetch.subscribe().borrow().written;
    if expected.is_some_and(|n| n != written) {
        ok = false;
    }
    finish(shared, fetch, ok).await;
    None
}

async fn finish(shared: &Arc<Shared>, fetch: &Arc<Fetch>, complete: bool) {
    let (s, f) = (Arc::clone(shared), Arc::clone(fetch));
    let _ = tokio::task::spawn_blocking(move || s.store.finish(&f, complete)).await;
}

/// Streams a fetch's response to one client, from the file as it grows.
async fn follow(
    shared: &Arc<Shared>,
    target: &Target,
    req: RequestParts,
    fetch: Arc<Fetch>,
    leader: bool,
) -> Result<Response<Body>, Failure> {
    let mut rx = fetch.subscribe();
    let _ = rx.wait_for(|p| p.head.is_some() || p.done.is_some()).await;
    let progress = rx.borrow().clone();
    let Some(head) = progress.head.clone() else {
        return Err(Failure::Upstream(format!(
            "fetching {} failed",
            fetch.url()
        )));
    };
    if progress.not_modified {
        let Some(obj) = shared.store.get(fetch.url()) else {
            return Err(Failure::Upstream("stored object went away".into()));
        };
        shared.metrics.add_revalidated(1);
        return Ok(serve_object(
            shared,
            &req,
            (*head).clone(),
            obj,
            "REVALIDATED",
        ));
    }
    if !progress.shareable && !leader {
        // Not storable: this client's request goes upstream on its own.
        return pass_through(shared, target, req, empty()).await;
    }
    shared.metrics.add_misses(1);
    let head = client_head(shared, (*head).clone(), "MISS");
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, io::Error>::new(4);
    let metrics = Arc::clone(shared);
    tokio::spawn(async move {
        let mut at = 0u64;
        loop {
            let _ = rx.wait_for(|p| p.written > at || p.done.is_some()).await;
            let p = rx.borrow().clone();
            if p.written > at {
                let n = (p.written - at).min(1 << 20);
                let f = Arc::clone(&fetch);
                let offset = p.body_offset + at;
                let chunk = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
                    std::os::unix::fs::FileExt::read_exact_at(f.file(), &mut buf, offset)
                        .map(|()| buf)
                })
                .await;
                match chunk {
                    Ok(Ok(buf)) => {
                        at += buf.len() as u64;
                        metrics.metrics.add_bytes_to_clients(buf.len() as u64);
                        if tx.send_data(Bytes::from(buf)).await.is_err() {
                            return;
                        }
                    }
                    _ => {
                        tx.abort(io::Error::other("reading the cache file failed"));
                        return;
                    }
                }
            } else if p.done == Some(true) {
                return;
            } else {
                tx.abort(io::Error::other("upstream response was cut short"));
                return;
            }
        }
    });
    Ok(Response::from_parts(head, body.boxed()))
}

/// Serves a stored object: the whole body, a range of it, or 304 for the client's own
/// conditions.
fn serve_object(
    shared: &Arc<Shared>,
    req: &RequestParts,
    head: ResponseParts,
    obj: Object,
    cache: &'static str,
) -> Response<Body> {
    let mut head = client_head(shared, head, cache);
    if head.status == StatusCode::OK && policy::client_not_modified(&req.headers, &head.headers) {
        head.status = StatusCode::NOT_MODIFIED;
        head.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(head, empty());
    }
    let len = obj.body_len;
    let (start, end) = match (head.status, policy::range(&req.headers, len)) {
        (StatusCode::OK, RangeAnswer::Partial { start, end }) => {
            head.status = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                head.headers.insert(header::CONTENT_RANGE, v);
            }
            (start, end + 1)
        }
        (StatusCode::OK, RangeAnswer::Unsatisfiable) => {
            let mut res = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return res;
        }
        _ => (0, len),
    };
    head.headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    head.headers.remove(header::TRANSFER_ENCODING);
    shared.metrics.add_bytes_to_clients(end - start);
    if let Some(mem) = &obj.memory {
        let s = usize::try_from(start).unwrap_or(0);
        let e = usize::try_from(end).unwrap_or(0).min(mem.len());
        return Response::from_parts(head, full(mem.slice(s..e)));
    }
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, io::Error>::new(2);
    let shared = Arc::clone(shared);
    let promote = len <= shared.store.config().memory_object_max && start == 0 && end == len;
    tokio::spawn(async move {
        let path = obj.path.clone();
        let file = match tokio::task::spawn_blocking(move || std::fs::File::open(path)).await {
            Ok(Ok(f)) => Arc::new(f),
            _ => {
                tx.abort(io::Error::other("opening the cache file failed"));
                return;
            }
        };
        let mut at = start;
        let mut whole = Vec::new();
        while at < end {
            let n = (end - at).min(1 << 20);
            let f = Arc::clone(&file);
            let offset = obj.body_offset + at;
            let chunk = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
                std::os::unix::fs::FileExt::read_exact_at(&*f, &mut buf, offset).map(|()| buf)
            })
            .await;
            let Ok(Ok(buf)) = chunk else {
                tx.abort(io::Error::other("reading the cache file failed"));
                return;
            };
            at += buf.len() as u64;
            if promote {
                whole.extend_from_slice(&buf);
            }
            if tx.send_data(Bytes::from(buf)).await.is_err() {
                return;
            }
        }
        if promote {
            shared.store.promote(&obj.meta.url, Bytes::from(whole));
        }
    });
    Response::from_parts(head, body.boxed())
}

/// Opens a CONNECT tunnel: dials the target (ACL-checked), answers 200, then copies bytes
/// both ways.
async fn connect(shared: Arc<Shared>, target: Target, req: Request<Incoming>) -> Response<Body> {
    let upstream = match &shared.parent {
        None => dial(&shared.dialer, &target.host, target.port).await,
        Some(p) => parent_connect(&shared, p.clone(), &target).await,
    };
    let mut upstream = match upstream {
        Ok(s) => s,
        Err(Failure::Refused(r)) => {
            shared.metrics.add_refused(1);
            return text(r.status(), &format!("{r}\n"));
        }
        Err(Failure::Upstream(m)) => {
            return text(StatusCode::BAD_GATEWAY, &format!("upstream: {m}\n"));
        }
    };
    shared.metrics.add_tunnels(1);
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            let mut client = TokioIo::new(upgraded);
            if let Ok((_, down)) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                shared.metrics.add_bytes_to_clients(down);
                shared.metrics.add_bytes_from_upstream(down);
            }
        }
    });
    Response::new(empty())
}

/// A tunnel through the parent proxy: CONNECT there, with credentials.
async fn parent_connect(
    shared: &Shared,
    parent: Parent,
    target: &Target,
) -> Result<TcpStream, Failure> {
    let mut s = dial(&shared.dialer, &target.host, target.port).await?;
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    let mut head = format!(
        "CONNECT {host}:{} HTTP/1.1\r\nHost: {host}:{}\r\n",
        target.port, target.port
    );
    if let Some(a) = parent.auth.as_ref().and_then(|a| a.to_str().ok()) {
        head.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| Failure::Upstream(e.to_string()))?;
    let mut buf = Vec::with_capacity(1024);
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 16 * 1024
            || s.read(&mut byte)
                .await
                .map_err(|e| Failure::Upstream(e.to_string()))?
                == 0
        {
            return Err(Failure::Upstream(
                "parent proxy closed the tunnel request".into(),
            ));
        }
        buf.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&buf);
    if line.split_whitespace().nth(1) != Some("200") {
        return Err(Failure::Upstream(format!(
            "parent proxy refused the tunnel: {}",
            line.lines().next().unwrap_or_default()
        )));
    }
    Ok(s)
}
