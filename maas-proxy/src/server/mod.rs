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
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts as RequestParts;
use http::response::Parts as ResponseParts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::acl::{Acl, AclConfig, Kind, default_denied};
use crate::error::{Refusal, ServerError};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::policy;
use crate::request::{self, FramingScanner, Limits, Target};
use crate::store::{Store, StoreConfig};

mod cache;
mod dial;
mod tunnel;

use cache::cached;
use dial::{Dialer, DialerInner, Parent, Pool, send};
use tunnel::connect;

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

struct Shared {
    config: ProxyConfig,
    store: Store,
    metrics: Metrics,
    parent: Option<Parent>,
    dialer: Dialer,
    /// Client connections (over `max_connections` a new one is closed at once), shared by
    /// every listener served.
    connections: Arc<Semaphore>,
    /// Kept-alive upstream connections (to origins, or to the parent proxy); replaced, with
    /// its idle connections, when the denied destinations change.
    pool: RwLock<Pool>,
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
                acl: RwLock::new(Arc::new(Acl::new(&config.acl))),
                parent: parent.clone(),
                timeout: config.connect_timeout,
            }),
        };
        let pool = RwLock::new(dialer.pool(&config));
        Ok(Self {
            shared: Arc::new(Shared {
                connections: Arc::new(Semaphore::new(config.max_connections)),
                dialer,
                pool,
                config,
                store,
                metrics: Metrics::default(),
                parent,
                via_value,
            }),
        })
    }

    /// The access-control list in force now: the configured one, with the denied
    /// destinations of the last [`set_denied`](Self::set_denied) if any.
    pub fn acl(&self) -> Arc<Acl> {
        self.shared.dialer.acl()
    }

    /// Replaces the denied destination networks, for every request from now on: on new
    /// client connections, the next requests of kept-alive ones, and CONNECT. Idle upstream
    /// connections are dropped so none to a newly denied origin is reused; tunnels and
    /// transfers already under way are not cut. The networks of [`DEFAULT_DENIED`](crate::acl::DEFAULT_DENIED) stay
    /// denied whatever `deny` holds; the allowed client networks are kept.
    pub fn set_denied(&self, deny: impl IntoIterator<Item = IpNet>) {
        let allow = self.shared.dialer.acl().allowed().to_vec();
        let mut denied = default_denied();
        denied.extend(deny);
        let dialer = &self.shared.dialer;
        dialer.set_acl(Acl::new(&AclConfig {
            allow,
            deny: denied,
        }));
        // An idle connection to a newly denied origin must not be reused.
        *self
            .shared
            .pool
            .write()
            .unwrap_or_else(PoisonError::into_inner) = dialer.pool(&self.shared.config);
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
                        .unwrap_or_else(PoisonError::into_inner)
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
                    .unwrap_or_else(PoisonError::into_inner)
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
    let acl = shared.dialer.acl();
    if let Err(r) = acl.check_client(client) {
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
        &acl,
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
