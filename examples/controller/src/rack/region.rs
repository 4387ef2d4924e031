//! The rack's regions: the calls, failover from one region to the next, and the errors.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::Method;
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::queue::{QUEUE_FILE, Queue, Queued};
use super::write_private;
use crate::config::Config;
use crate::protocol::{
    DHCP_HEADER, DhcpHealth, DiscoveryReport, Enrolment, PROTOCOL_VERSION, QUEUED_HEADER,
    RACK_HEADER, RackConfig, SeenReport, VERSION_HEADER,
};

mod error;
mod resources;

pub use self::error::RegionError;
use self::error::unreachable;

/// How long one request to one region may take, its connection included.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection to one region may take to open before the next region is tried.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The regions as a rack sees them: their API URLs (one in use at a time), the enrolment
/// secret, this rack's name and its own credential (kept in the state directory's
/// `rack-credential`, mode 0600), and the queue of what could not be delivered yet.
///
/// Every call names the rack ([`RACK_HEADER`]) and its protocol version, and carries its
/// health: how many reports its queue holds ([`QUEUED_HEADER`]) and, once known, whether its
/// DHCP serves ([`DHCP_HEADER`]). The configuration refresh every `[cluster] sync_secs` keeps
/// the region's picture fresh while the rack is otherwise idle.
///
/// Every call goes to the region in use; when it cannot be reached (no connection within
/// [`CONNECT_TIMEOUT`], no answer within [`CALL_TIMEOUT`]) or answers 5xx, the call goes on
/// to the next region of the list, round robin, each at most once per call. A refusal (4xx)
/// or another protocol version is an answer, not a reason to try another region.
pub(crate) struct Region {
    bases: Vec<String>,
    current: AtomicUsize,
    health: Mutex<Health>,
    failovers: AtomicU64,
    secret: String,
    rack: String,
    client: Client<crate::tls::Connector, Full<Bytes>>,
    credential: Mutex<Option<String>>,
    credential_path: std::path::PathBuf,
    /// What waits for a region to answer again, on disk.
    pub(crate) queue: Queue,
    /// Held while the queue is replayed, so its entries go out once and in order.
    pub(crate) replaying: tokio::sync::Mutex<()>,
    /// Whether this rack's DHCP serves; `None` until it is known (while the rack starts).
    dhcp: Mutex<Option<DhcpHealth>>,
}

/// Whether the last call reached a region, and when one last answered.
#[derive(Clone, Copy, Debug, Default)]
struct Health {
    reachable: bool,
    last_contact: Option<u64>,
}

/// What the rack's status shows of its regions.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RegionStatus {
    /// The region in use.
    pub(crate) region: String,
    /// Every region, in failover order.
    pub(crate) regions: Vec<String>,
    /// Whether the last call reached a region.
    pub(crate) reachable: bool,
    /// When a region last answered (seconds since the epoch).
    pub(crate) last_contact: Option<u64>,
    /// How many reports wait in the queue.
    pub(crate) queued: usize,
    /// How many times a call moved on to the next region.
    pub(crate) failovers: u64,
}

impl Region {
    /// The regions of `config`'s `[cluster]`, the first in use; the queue is opened from the
    /// state directory.
    pub(crate) fn new(config: &Config) -> Result<Self, RegionError> {
        let cluster = &config.cluster;
        let bases: Vec<String> = cluster
            .region_urls()
            .iter()
            .map(|b| b.trim_end_matches('/').to_string())
            .collect();
        if bases.is_empty() {
            return Err(RegionError::Missing("regions"));
        }
        let secret = cluster
            .secret
            .clone()
            .ok_or(RegionError::Missing("secret"))?;
        let rack = cluster.name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|| "rack".into())
        });
        let trust = match (&cluster.region_ca, &cluster.region_fingerprint) {
            (Some(ca), _) => Some(crate::tls::RegionTrust::Ca(ca.clone())),
            (None, Some(f)) => Some(crate::tls::RegionTrust::Fingerprint(
                crate::tls::parse_fingerprint(f)?,
            )),
            (None, None) => None,
        };
        let connector = crate::tls::connector(trust.as_ref(), Some(CONNECT_TIMEOUT))?;
        let dir = &config.controller.state_dir;
        std::fs::create_dir_all(dir).map_err(|source| RegionError::File {
            path: dir.clone(),
            source,
        })?;
        let queue_path = dir.join(QUEUE_FILE);
        let queue = Queue::open(&queue_path).map_err(|source| RegionError::File {
            path: queue_path,
            source,
        })?;
        Ok(Self {
            bases,
            current: AtomicUsize::new(0),
            health: Mutex::default(),
            failovers: AtomicU64::new(0),
            secret,
            rack,
            client: Client::builder(TokioExecutor::new()).build(connector),
            credential: Mutex::new(None),
            credential_path: dir.join("rack-credential"),
            queue,
            replaying: tokio::sync::Mutex::new(()),
            dhcp: Mutex::new(None),
        })
    }

    /// Reads this rack's credential, or enrols with the shared secret once and keeps the
    /// credential the region gives. A rack the region has removed is refused from then on:
    /// it enrols again only once its credential file is deleted.
    pub(crate) async fn enrol(&self) -> Result<(), RegionError> {
        let path = &self.credential_path;
        let failed = |source| RegionError::File {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                *self
                    .credential
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(text.trim().to_string());
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(e)),
        }
        let enrolment: Enrolment = self
            .call_as(
                &self.secret,
                Method::POST,
                "/api/v1/rack/enrol",
                None::<&()>,
            )
            .await?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        write_private(path, enrolment.credential.as_bytes()).map_err(failed)?;
        tracing::info!(event = "rack_enrolled", rack = self.rack, credential_file = %path.display());
        *self
            .credential
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(enrolment.credential);
        Ok(())
    }

    /// This rack's name.
    pub(crate) fn name(&self) -> &str {
        &self.rack
    }

    /// How many regions this rack knows.
    pub(crate) fn count(&self) -> usize {
        self.bases.len()
    }

    /// The region in use.
    pub(crate) fn in_use(&self) -> &str {
        &self.bases[self.current.load(Ordering::Acquire) % self.bases.len()]
    }

    /// Whether the last call found no region to answer it.
    pub(crate) fn cut_off(&self) -> bool {
        !self.health().reachable
    }

    fn health(&self) -> Health {
        *self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the rack's status shows.
    pub(crate) fn status(&self) -> RegionStatus {
        let health = self.health();
        RegionStatus {
            region: self.in_use().to_string(),
            regions: self.bases.clone(),
            reachable: health.reachable,
            last_contact: health.last_contact,
            queued: self.queue.len(),
            failovers: self.failovers.load(Ordering::Relaxed),
        }
    }

    /// Records whether this rack's DHCP serves: its next calls tell the region.
    pub(crate) fn set_dhcp(&self, health: DhcpHealth) {
        tracing::debug!(event = "rack_dhcp_health", dhcp = health.emit());
        *self
            .dhcp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(health);
    }

    /// Whether this rack's DHCP serves, once known.
    pub(crate) fn dhcp(&self) -> Option<DhcpHealth> {
        self.dhcp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A request to a region: the rack's name, version and health, and `bearer`.
    fn request(&self, method: Method, uri: &str, bearer: &str) -> hyper::http::request::Builder {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {bearer}"))
            .header(RACK_HEADER, &self.rack)
            .header(VERSION_HEADER, PROTOCOL_VERSION.to_string())
            .header(QUEUED_HEADER, self.queue.len().to_string());
        if let Some(dhcp) = self.dhcp() {
            request = request.header(DHCP_HEADER, dhcp.emit());
        }
        request
    }

    /// Runs `attempt` against the region in use and, while it fails in a way that
    /// [fails over](RegionError::fails_over), against the next ones: each region at most once.
    async fn with_failover<T, F, Fut>(&self, attempt: F) -> Result<T, RegionError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, RegionError>>,
    {
        let n = self.bases.len();
        let first = self.current.load(Ordering::Acquire) % n;
        let mut last = None;
        for step in 0..n {
            let index = (first + step) % n;
            let result = attempt(self.bases[index].clone()).await;
            match result {
                Err(e) if e.fails_over() => {
                    let next = (index + 1) % n;
                    if n > 1
                        && self
                            .current
                            .compare_exchange(index, next, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                    {
                        self.failovers.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            event = "region_failover",
                            from = self.bases[index],
                            to = self.bases[next],
                            error = %e,
                        );
                    }
                    last = Some(e);
                }
                other => {
                    self.set_reachable(true);
                    return other;
                }
            }
        }
        self.set_reachable(false);
        Err(last.unwrap_or(RegionError::Missing("regions")))
    }

    /// Records whether a region answered the last call.
    pub(crate) fn set_reachable(&self, reachable: bool) {
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if reachable && !health.reachable {
            tracing::info!(event = "region_reachable", region = self.in_use());
        } else if !reachable && health.reachable {
            tracing::warn!(event = "region_cut_off", regions = ?self.bases);
        }
        health.reachable = reachable;
        if reachable {
            health.last_contact = Some(crate::now().0);
        }
    }

    /// One request to the regions with this rack's credential: the decoded answer on a 2xx,
    /// else the region's error.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, RegionError> {
        let credential = self
            .credential
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        self.call_as(&credential, method, path, body).await
    }

    /// One request to the regions presenting `bearer`.
    async fn call_as<T: DeserializeOwned>(
        &self,
        bearer: &str,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, RegionError> {
        let bytes = match body {
            Some(b) => Some(Bytes::from(serde_json::to_vec(b).map_err(|source| {
                RegionError::Decode {
                    uri: path.to_string(),
                    source,
                }
            })?)),
            None => None,
        };
        self.with_failover(|base| {
            let (method, bytes) = (method.clone(), bytes.clone());
            async move {
                self.exchange(&format!("{base}{path}"), bearer, method, bytes)
                    .await
            }
        })
        .await
    }

    /// One request to one region's `uri`.
    async fn exchange<T: DeserializeOwned>(
        &self,
        uri: &str,
        bearer: &str,
        method: Method,
        body: Option<Bytes>,
    ) -> Result<T, RegionError> {
        let uri = uri.to_string();
        let mut request = self.request(method, &uri, bearer);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|source| RegionError::Request {
                uri: uri.clone(),
                source,
            })?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|source| unreachable(&uri, source))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|source| RegionError::Body {
                    uri: uri.clone(),
                    source,
                })?
                .to_bytes();
            if !status.is_success() {
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                return Err(RegionError::Refused {
                    uri: uri.clone(),
                    status,
                    message: value["error"].as_str().unwrap_or_default().to_string(),
                });
            }
            serde_json::from_slice(&body).map_err(|source| RegionError::Decode {
                uri: uri.clone(),
                source,
            })
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| RegionError::Timeout {
                uri: uri.clone(),
                secs: CALL_TIMEOUT.as_secs(),
            })?
    }

    /// This rack's configuration from the regions, of this protocol version.
    pub(crate) async fn fetch(&self) -> Result<RackConfig, RegionError> {
        let config: RackConfig = self
            .call(Method::GET, "/api/v1/rack/config", None::<&()>)
            .await?;
        if config.protocol != PROTOCOL_VERSION {
            return Err(RegionError::Version {
                region: config.protocol,
                rack: PROTOCOL_VERSION,
            });
        }
        Ok(config)
    }

    /// Passes what a booted machine sends to the rack's boot HTTP (`/metadata/v1/...`) on to
    /// the region's `path`, with the machine's own credential, and hands back the region's
    /// answer (the rack adds no authority of its own).
    pub(crate) async fn forward(
        &self,
        path: &str,
        headers: &axum::http::HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let bearer = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        let value: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return crate::region::bad_request(e.to_string()).into_response(),
        };
        match self
            .call_as::<Value>(&bearer, Method::POST, path, Some(&value))
            .await
        {
            Ok(answer) => (hyper::StatusCode::OK, axum::Json(answer)).into_response(),
            Err(RegionError::Refused {
                status, message, ..
            }) => crate::region::ApiError(status, message).into_response(),
            Err(e) => crate::region::ApiError(hyper::StatusCode::BAD_GATEWAY, e.to_string())
                .into_response(),
        }
    }

    /// Reports what a machine told DHCP, without waiting; queued when no region answers.
    pub(crate) fn report_seen(self: &Arc<Self>, report: SeenReport) {
        self.report(Queued::Seen(report));
    }

    /// Reports a discovery, without waiting; queued when no region answers.
    pub(crate) fn report_discovery(self: &Arc<Self>, report: DiscoveryReport) {
        self.report(Queued::Discovery(report));
    }

    fn report(self: &Arc<Self>, item: Queued) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            // Behind what is queued already, so reports reach the region in order.
            if me.cut_off() || !me.queue.is_empty() {
                let _ = me.enqueue(vec![item]);
                return;
            }
            match me.send_report(&item).await {
                Ok(()) => {}
                Err(e) if e.fails_over() => {
                    let _ = me.enqueue(vec![item]);
                }
                Err(e) => tracing::warn!(event = "report_failed", kind = item.kind(), error = %e),
            }
        });
    }

    /// Appends `items` to the queue (on disk before this returns); a failure is logged.
    pub(crate) fn enqueue(&self, items: Vec<Queued>) -> bool {
        match self.queue.push(items) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(event = "queue_write_failed", error = %e);
                false
            }
        }
    }

    /// Sends one seen or discovery report (a lease operation goes in a batch instead).
    pub(crate) async fn send_report(&self, item: &Queued) -> Result<(), RegionError> {
        match item {
            Queued::Seen(r) => self
                .call::<Value>(Method::POST, "/api/v1/rack/seen", Some(r))
                .await
                .map(drop),
            Queued::Discovery(r) => self
                .call::<Value>(Method::POST, "/api/v1/rack/discoveries", Some(r))
                .await
                .map(drop),
            Queued::Lease(r) => self
                .call::<Value>(Method::POST, "/api/v1/rack/leases", Some(r))
                .await
                .map(drop),
        }
    }
}
