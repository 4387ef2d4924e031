//! Upstream connections: dialling origins or the parent proxy through the ACL, and the
//! pooled client that keeps them alive.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::acl::Acl;
use crate::error::ServerError;
use crate::request::Target;

use super::{Body, Failure, ProxyConfig, Shared};

#[derive(Debug, Clone)]
pub(super) struct Parent {
    addr: String,
    port: u16,
    pub(super) auth: Option<HeaderValue>,
}

impl Parent {
    pub(super) fn parse(url: &str) -> Result<Self, ServerError> {
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
pub(super) struct Dialer {
    pub(super) inner: Arc<DialerInner>,
}

pub(super) struct DialerInner {
    /// Replaced whole when the denied destinations change; readers clone the `Arc` and
    /// never hold the lock across an await.
    pub(super) acl: RwLock<Arc<Acl>>,
    pub(super) parent: Option<Parent>,
    pub(super) timeout: Duration,
}

impl Dialer {
    /// The access-control list in force now.
    pub(super) fn acl(&self) -> Arc<Acl> {
        Arc::clone(
            &self
                .inner
                .acl
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// A pooled client that connects through this dialer, keeping connections alive as
    /// `config` says.
    pub(super) fn pool(&self, config: &ProxyConfig) -> Pool {
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(config.upstream_idle_timeout)
            .pool_max_idle_per_host(config.upstream_idle_per_host)
            .set_host(false)
            .build(self.clone())
    }

    /// Puts `acl` in force for every check from now on.
    pub(super) fn set_acl(&self, acl: Acl) {
        *self
            .inner
            .acl
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(acl);
    }
}

/// A connection the pooled client made: to a parent proxy it is "proxied", so requests keep
/// their absolute form.
pub(super) struct Upstream {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

/// A connector failure, carried through the pooled client's error.
#[derive(Debug)]
pub(super) struct DialError(Failure);

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Failure::Refused(r) => write!(f, "{r}"),
            Failure::Upstream(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DialError {}

pub(super) type Pool = hyper_util::client::legacy::Client<Dialer, Body>;

/// Connects to the target (or the parent proxy), refusing denied addresses: the name is
/// resolved here and only an address that passed the ACL is connected to.
pub(super) async fn dial(dialer: &Dialer, host: &str, port: u16) -> Result<TcpStream, Failure> {
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
            && let Err(r) = dialer.acl().check_destination(addr.ip())
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
pub(super) async fn send(
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
    let pool = shared
        .pool
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    pool.request(req).await.map_err(|e| {
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
