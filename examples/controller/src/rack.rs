//! The rack role: DHCP, TFTP, boot HTTP, discovery and the proxy for the rack's own networks,
//! with the state held by a region.
//!
//! At start the rack fetches from its region (`GET /api/v1/rack/config`, with the shared
//! secret) the network model, the machines, the boot templates and every address record, and
//! refreshes them every `[cluster] sync_secs`. Its DHCP server offers from a mirror of the
//! region's addresses, and acknowledges a lease only after the region has recorded it (`POST
//! /api/v1/rack/leases`): the region's address manager has the last word, so an address it
//! holds for anyone else is never acknowledged twice. What machines tell DHCP and what
//! discovery sees are reported too (`/api/v1/rack/seen`, `/api/v1/rack/discoveries`).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State as AxumState;
use axum::routing::get;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use maas_ipam::{Ipam, Snapshot};
use maas_net::{ClientKey, SubnetId, Timestamp, Topology};
use maas_pxe::dhcp::server::{Bound, LeaseError, Leases};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::app::App;
use crate::config::Config;
use crate::protocol::{
    DiscoveryReport, Enrolment, LeaseBatch, LeaseBatchAnswer, LeaseOp, LeaseOutcome, LeaseReport,
    PROTOCOL_VERSION, RACK_HEADER, RackConfig, SeenReport, VERSION_HEADER,
};
use crate::state::State;

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

/// How long a report to the region may take before the lease it carries is refused.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a rack keeps trying to reach its region at start.
const CONNECT_FOR: Duration = Duration::from_secs(60);

/// The region as a rack sees it: its API, the enrolment secret, this rack's name and its
/// own credential (kept in the state directory's `rack-credential`, mode 0600).
pub(crate) struct Region {
    base: String,
    secret: String,
    rack: String,
    client: Client<crate::tls::Connector, Full<Bytes>>,
    credential: Mutex<Option<String>>,
    credential_path: std::path::PathBuf,
}

impl Region {
    fn new(config: &Config) -> Result<Self, RegionError> {
        let cluster = &config.cluster;
        let base = cluster
            .region
            .clone()
            .ok_or(RegionError::Missing("region"))?;
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
        let connector = crate::tls::connector(trust.as_ref())?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            secret,
            rack,
            client: Client::builder(TokioExecutor::new()).build(connector),
            credential: Mutex::new(None),
            credential_path: config.controller.state_dir.join("rack-credential"),
        })
    }

    /// Reads this rack's credential, or enrols with the shared secret once and keeps the
    /// credential the region gives. A rack the region has removed is refused from then on:
    /// it enrols again only once its credential file is deleted.
    async fn enrol(&self) -> Result<(), RegionError> {
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

    /// One request to the region with this rack's credential: the decoded answer on a 2xx,
    /// else the region's error.
    async fn call<T: DeserializeOwned>(
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

    /// One request to the region presenting `bearer`.
    async fn call_as<T: DeserializeOwned>(
        &self,
        bearer: &str,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, RegionError> {
        let uri = format!("{}{path}", self.base);
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {bearer}"))
            .header(RACK_HEADER, &self.rack)
            .header(VERSION_HEADER, PROTOCOL_VERSION.to_string());
        let bytes = match body {
            Some(b) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(b).map_err(|source| RegionError::Decode {
                    uri: uri.clone(),
                    source,
                })?)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|source| RegionError::Request {
                uri: uri.clone(),
                source,
            })?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|source| match tls_error(&source) {
                    Some(tls) => RegionError::Untrusted {
                        uri: uri.clone(),
                        source: Box::new(tls.clone()),
                    },
                    None => RegionError::Unreachable {
                        uri: uri.clone(),
                        source,
                    },
                })?;
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
        tokio::time::timeout(REPORT_TIMEOUT, exchange)
            .await
            .map_err(|_| RegionError::Timeout {
                uri: uri.clone(),
                secs: REPORT_TIMEOUT.as_secs(),
            })?
    }

    /// Downloads `path` from the region into `to` (a new file), checking its SHA-256 against
    /// `sha256`; nothing is left at `to` when it does not match.
    async fn download(
        &self,
        path: &str,
        to: &std::path::Path,
        sha256: &str,
    ) -> Result<(), RegionError> {
        use sha2::Digest as _;
        use std::io::Write as _;
        let uri = format!("{}{path}", self.base);
        let credential = self
            .credential
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        let request = Request::builder()
            .method(Method::GET)
            .uri(&uri)
            .header("authorization", format!("Bearer {credential}"))
            .header(RACK_HEADER, &self.rack)
            .header(VERSION_HEADER, PROTOCOL_VERSION.to_string())
            .body(Full::new(Bytes::new()))
            .map_err(|source| RegionError::Request {
                uri: uri.clone(),
                source,
            })?;
        let response =
            self.client
                .request(request)
                .await
                .map_err(|source| RegionError::Unreachable {
                    uri: uri.clone(),
                    source,
                })?;
        let status = response.status();
        if !status.is_success() {
            return Err(RegionError::Refused {
                uri,
                status,
                message: "the boot resource could not be fetched".into(),
            });
        }
        let failed = |source| RegionError::File {
            path: to.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::create(to).map_err(failed)?;
        let mut hasher = sha2::Sha256::new();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| RegionError::Body {
                uri: uri.clone(),
                source,
            })?;
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                file.write_all(&data).map_err(failed)?;
            }
        }
        file.sync_all().map_err(failed)?;
        let got: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !got.eq_ignore_ascii_case(sha256) {
            let _ = std::fs::remove_file(to);
            return Err(RegionError::Invalid {
                what: "boot resource",
                message: format!("{path}: SHA-256 {got}, the region says {sha256}"),
            });
        }
        Ok(())
    }

    /// Fetches the boot resources this rack lacks (or holds another version of) into its
    /// state directory, checked, and records them.
    async fn sync_resources(
        &self,
        state: &State,
        state_dir: &std::path::Path,
        wanted: Vec<crate::state::resources::BootResource>,
    ) -> Result<(), RegionError> {
        let held = state.resources();
        for resource in wanted {
            if held.contains(&resource) {
                continue;
            }
            let dir = crate::state::resources::boot_root(state_dir)
                .join("resources")
                .join(resource.key());
            std::fs::create_dir_all(&dir).map_err(|source| RegionError::File {
                path: dir.clone(),
                source,
            })?;
            for file in resource.files() {
                let target = dir.join(&file.file);
                let partial = dir.join(format!(".{}.partial", file.file));
                self.download(
                    &format!("/api/v1/rack/{}", resource.url_path(file)),
                    &partial,
                    &file.sha256,
                )
                .await?;
                std::fs::rename(&partial, &target).map_err(|source| RegionError::File {
                    path: target.clone(),
                    source,
                })?;
            }
            let ticket = state.put_resource(resource.clone())?;
            state.durable(ticket).await?;
            tracing::info!(event = "boot_resource_synced", resource = resource.key());
        }
        Ok(())
    }

    async fn fetch(&self) -> Result<RackConfig, RegionError> {
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
            Ok(answer) => (hyper::StatusCode::OK, Json(answer)).into_response(),
            Err(RegionError::Refused {
                status, message, ..
            }) => crate::region::ApiError(status, message).into_response(),
            Err(e) => crate::region::ApiError(hyper::StatusCode::BAD_GATEWAY, e.to_string())
                .into_response(),
        }
    }

    /// Reports, without waiting, what a machine told DHCP; a failure is logged.
    pub(crate) fn report_seen(self: &Arc<Self>, report: SeenReport) {
        self.report("/api/v1/rack/seen", report);
    }

    /// Reports, without waiting, a discovery; a failure is logged.
    pub(crate) fn report_discovery(self: &Arc<Self>, report: DiscoveryReport) {
        self.report("/api/v1/rack/discoveries", report);
    }

    fn report(self: &Arc<Self>, path: &'static str, body: impl Serialize + Send + Sync + 'static) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = me.call::<Value>(Method::POST, path, Some(&body)).await {
                tracing::warn!(event = "report_failed", path, error = %e);
            }
        });
    }
}

/// Leases from a mirror of the region's addresses, each confirmed by the region before it is
/// acknowledged.
pub(crate) struct RackLeases {
    mirror: Arc<Mutex<Ipam>>,
    /// To the reporter task, which sends what queued up meanwhile as one batch.
    queue: tokio::sync::mpsc::UnboundedSender<Pending>,
}

/// A lease operation waiting to be sent to the region.
struct Pending {
    report: LeaseReport,
    reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// How long (seconds) the mirror keeps an address the region refused out of its offers, unless
/// a refresh says otherwise first.
const REFUSED_HOLD: u64 = 600;

/// The most operations sent in one request.
const BATCH: usize = 512;

/// The region's answer to a lease report, to wait for before acknowledging.
pub(crate) type Ticket = tokio::sync::oneshot::Receiver<Result<(), String>>;

impl RackLeases {
    fn mirror(&self) -> &Mutex<Ipam> {
        &self.mirror
    }

    /// A rack's leases: `mirror` to offer from, every operation reported to `region` by a
    /// task of `runtime`, batched.
    fn new(mirror: Ipam, region: Arc<Region>, runtime: &tokio::runtime::Handle) -> Self {
        let mirror = Arc::new(Mutex::new(mirror));
        let (queue, pending) = tokio::sync::mpsc::unbounded_channel();
        runtime.spawn(report_batches(region, Arc::clone(&mirror), pending));
        Self { mirror, queue }
    }

    /// Queues `op` on `ip` for the region; the ticket resolves with the region's answer.
    fn report(&self, report: LeaseReport) -> Ticket {
        let (reply, ticket) = tokio::sync::oneshot::channel();
        let pending = Pending { report, reply };
        if let Err(unsent) = self.queue.send(pending) {
            let _ = unsent.0.reply.send(Err("the reporter has stopped".into()));
        }
        ticket
    }

    /// Replaces the mirror with the region's records.
    fn refresh(&self, snapshot: Snapshot) -> Result<(), RegionError> {
        let fresh = Ipam::from_snapshot(snapshot).map_err(|e| RegionError::Invalid {
            what: "address records",
            message: e.to_string(),
        })?;
        *self
            .mirror
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
}

/// Sends the queued lease operations to the region, as many as queued up while the previous
/// batch was on its way (group commit across the wire), and hands each its answer. On a bind
/// the region refused, the mirror holds the address out of use (quarantined, as after a
/// decline) until the next refresh says who holds it: the region refuses an address it knows
/// is held elsewhere (another rack's lease, another region's), and offering it again would
/// only be refused again. A bind no answer came for lets the address go.
async fn report_batches(
    region: Arc<Region>,
    mirror: Arc<Mutex<Ipam>>,
    mut pending: tokio::sync::mpsc::UnboundedReceiver<Pending>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        let body = LeaseBatch {
            reports: batch.iter().map(|p| p.report.clone()).collect(),
        };
        let answer = region
            .call::<LeaseBatchAnswer>(Method::POST, "/api/v1/rack/leases/batch", Some(&body))
            .await;
        // The region answered (each refusal is its decision), or no answer came.
        let answered = answer.is_ok();
        let results: Vec<Result<(), String>> = match answer {
            Ok(mut answer) => {
                answer.results.truncate(batch.len());
                let mut results: Vec<Result<(), String>> = answer
                    .results
                    .into_iter()
                    .map(|outcome| match outcome {
                        LeaseOutcome::Record(_) => Ok(()),
                        LeaseOutcome::Error(e) => Err(e),
                    })
                    .collect();
                results.resize(batch.len(), Err("the region gave no answer for it".into()));
                results
            }
            Err(e) => batch.iter().map(|_| Err(e.to_string())).collect(),
        };
        for (p, result) in batch.drain(..).zip(results) {
            if let Err(e) = &result {
                tracing::warn!(
                    event = "lease_refused_by_region",
                    op = p.report.op.as_str(),
                    ip = %p.report.ip,
                    error = e,
                );
                if p.report.op == LeaseOp::Bind {
                    let mut ipam = mirror
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if answered {
                        let now = crate::now();
                        let _ = ipam.dhcp_decline(p.report.ip, &p.report.client, now, REFUSED_HOLD);
                    } else {
                        let _ = ipam.dhcp_release(p.report.ip, &p.report.client);
                    }
                    ipam.take_changes();
                }
            }
            let _ = p.reply.send(result);
        }
    }
}

fn refused(message: String) -> LeaseError {
    LeaseError::Storage {
        message: format!("the region did not record it: {message}"),
    }
}

impl Leases for RackLeases {
    type Ticket = Ticket;

    fn offer(
        &self,
        subnet: SubnetId,
        client: &ClientKey,
        now: Timestamp,
        hold_secs: u32,
    ) -> Result<IpAddr, LeaseError> {
        Leases::offer(self.mirror(), subnet, client, now, hold_secs)
    }

    fn bind(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        hostname: Option<&str>,
        now: Timestamp,
        lease_secs: u32,
    ) -> Result<Bound<Ticket>, LeaseError> {
        let bound = Leases::bind(self.mirror(), ip, client, hostname, now, lease_secs)?;
        let ticket = self.report(LeaseReport {
            op: LeaseOp::Bind,
            ip,
            client: client.clone(),
            hostname: hostname.map(str::to_owned),
            lease_secs: Some(lease_secs),
            quarantine_secs: None,
        });
        Ok(Bound {
            ip: bound.ip,
            expires: bound.expires,
            ticket: Some(ticket),
        })
    }

    fn release(&self, ip: IpAddr, client: &ClientKey) -> Result<Option<Ticket>, LeaseError> {
        Leases::release(self.mirror(), ip, client)?;
        Ok(Some(self.report(LeaseReport {
            op: LeaseOp::Release,
            ip,
            client: client.clone(),
            hostname: None,
            lease_secs: None,
            quarantine_secs: None,
        })))
    }

    fn decline(
        &self,
        ip: IpAddr,
        client: &ClientKey,
        now: Timestamp,
        quarantine_secs: u32,
    ) -> Result<Option<Ticket>, LeaseError> {
        Leases::decline(self.mirror(), ip, client, now, quarantine_secs)?;
        Ok(Some(self.report(LeaseReport {
            op: LeaseOp::Decline,
            ip,
            client: client.clone(),
            hostname: None,
            lease_secs: None,
            quarantine_secs: Some(quarantine_secs),
        })))
    }

    fn expire(&self, now: Timestamp) -> Result<(usize, Option<Ticket>), LeaseError> {
        // The region ends its own leases; the mirror follows on its own clock meanwhile.
        let (n, _) = Leases::expire(self.mirror(), now)?;
        Ok((n, None))
    }

    fn wait(&self, mut ticket: Ticket) -> Result<(), LeaseError> {
        let deadline = std::time::Instant::now() + REPORT_TIMEOUT + Duration::from_secs(1);
        loop {
            match ticket.try_recv() {
                Ok(result) => return result.map_err(refused),
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err(refused("the report was dropped".into()));
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    return Err(refused("no answer in time".into()));
                }
            }
        }
    }

    async fn wait_async(&self, ticket: Ticket) -> Result<(), LeaseError> {
        match tokio::time::timeout(REPORT_TIMEOUT + Duration::from_secs(1), ticket).await {
            Ok(Ok(result)) => result.map_err(refused),
            Ok(Err(_)) => Err(refused("the report was dropped".into())),
            Err(_) => Err(refused("no answer in time".into())),
        }
    }
}

/// A rack's connection to its region, and its lease backend.
pub(crate) struct Rack {
    pub(crate) region: Arc<Region>,
    pub(crate) leases: Arc<RackLeases>,
}

/// Connects to the region (retrying for up to a minute), takes its network model, machines
/// and templates into `config`, and opens the local cache of machines in the state
/// directory.
pub(crate) async fn connect(mut config: Config) -> Result<(App, Rack), RegionError> {
    let region = Arc::new(Region::new(&config)?);
    let started = std::time::Instant::now();
    let fetched = loop {
        match async {
            region.enrol().await?;
            region.fetch().await
        }
        .await
        {
            Ok(f) => break f,
            Err(e) if fatal(&e) => return Err(e),
            Err(e) if started.elapsed() < CONNECT_FOR => {
                tracing::warn!(event = "region_unreachable", region = region.base, error = %e);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let topology = Topology::from_doc(&fetched.topology).map_err(|e| RegionError::Invalid {
        what: "network model",
        message: e.to_string(),
    })?;
    config.topology = topology.clone();
    config.controller.ipxe_script = fetched.ipxe_script;
    config.controller.pxelinux_template = fetched.pxelinux_template;
    config.controller.grub_template = fetched.grub_template;
    config.dhcp.lease_secs = fetched.lease_secs;
    // The state directory is a cache here: the region's model replaces whatever it held.
    let _ = std::fs::remove_file(config.controller.state_dir.join("ipam.redb"));
    let tokens = fetched.machine_tokens;
    let dir = config.controller.state_dir.clone();
    let model = topology.clone();
    let state = tokio::task::spawn_blocking(move || State::open(&dir, &model, &[]))
        .await
        .map_err(|e| RegionError::Invalid {
            what: "cache",
            message: e.to_string(),
        })??;
    if let Some(ticket) = state.replace_machines(fetched.machines)? {
        state.durable(ticket).await?;
    }
    state.replace_machine_tokens(&tokens);
    region
        .sync_resources(&state, &config.controller.state_dir, fetched.resources)
        .await?;
    let mirror = Ipam::from_snapshot(fetched.snapshot).map_err(|e| RegionError::Invalid {
        what: "address records",
        message: e.to_string(),
    })?;
    let leases = Arc::new(RackLeases::new(
        mirror,
        Arc::clone(&region),
        &tokio::runtime::Handle::current(),
    ));
    let mut app = App::new(state, config);
    app.region = Some(Arc::clone(&region));
    tracing::info!(
        event = "region_connected",
        region = region.base,
        rack = region.rack
    );
    Ok((app, Rack { region, leases }))
}

/// Refreshes the mirror and the machines from the region every `[cluster] sync_secs`.
pub(crate) fn keep_in_sync(app: App, rack: &Rack) -> impl Future<Output = ()> + Send + 'static {
    let region = Arc::clone(&rack.region);
    let leases = Arc::clone(&rack.leases);
    let every = Duration::from_secs(app.config.cluster.sync_secs.max(1));
    async move {
        let mut healthy = true;
        loop {
            tokio::time::sleep(every).await;
            let result = async {
                let fetched = region.fetch().await?;
                leases.refresh(fetched.snapshot)?;
                if let Some(ticket) = app.state.replace_machines(fetched.machines)? {
                    app.state.durable(ticket).await?;
                }
                app.state.replace_machine_tokens(&fetched.machine_tokens);
                region
                    .sync_resources(
                        &app.state,
                        &app.config.controller.state_dir,
                        fetched.resources,
                    )
                    .await?;
                app.machines_changed();
                Ok::<(), RegionError>(())
            }
            .await;
            match result {
                Ok(()) if !healthy => {
                    healthy = true;
                    tracing::info!(event = "region_connected", region = region.base);
                }
                Ok(()) => {}
                Err(e) => {
                    healthy = false;
                    tracing::warn!(event = "region_unreachable", region = region.base, error = %e);
                }
            }
        }
    }
}

/// Errors a rack does not retry at start: another version, a certificate it does not trust,
/// a credential or secret the region refuses.
fn fatal(e: &RegionError) -> bool {
    match e {
        RegionError::Version { .. }
        | RegionError::Untrusted { .. }
        | RegionError::Tls(_)
        | RegionError::File { .. } => true,
        RegionError::Refused { status, .. } => [
            hyper::StatusCode::UNAUTHORIZED,
            hyper::StatusCode::FORBIDDEN,
            hyper::StatusCode::CONFLICT,
        ]
        .contains(status),
        _ => false,
    }
}

/// Writes `bytes` to a new file at `path` readable by its owner only.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A rack's own API: its version (to anyone), and what it serves and its metrics (to
/// loopback only: a rack keeps no users; the region's API is the one to manage machines and
/// addresses with).
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/api/v1/rack", get(status))
        .route("/metrics", get(crate::metrics::handler))
        .route_layer(axum::middleware::from_fn(loopback_only))
        .route("/api/v1/version", get(version))
        .with_state(app)
}

async fn loopback_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let local = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    if local {
        return next.run(request).await;
    }
    crate::region::ApiError(
        hyper::StatusCode::FORBIDDEN,
        "a rack serves its status and metrics to loopback only: ask its region".into(),
    )
    .into_response()
}

async fn version() -> Json<Value> {
    Json(json!({ "name": "maas-rs controller (rack)", "version": env!("CARGO_PKG_VERSION") }))
}

async fn status(AxumState(app): AxumState<App>) -> Json<Value> {
    Json(json!({
        "rack": app.region.as_ref().map(|r| r.name()),
        "region": app.config.cluster.region,
        "dhcp": app.config.dhcp.interfaces,
        "discovery": app.config.discovery.interfaces,
        "machines": app.state.machine_count(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A region that cannot be reached: the lease is refused (nothing may be acknowledged)
    /// and the mirror lets the address go, so it can be offered again.
    #[test]
    fn a_lease_the_region_did_not_record_is_refused_and_freed() {
        let text = r#"
[controller]
state_dir = "s"
role = "rack"

[cluster]
region = "http://127.0.0.1:1"
secret = "0123456789abcdef"
"#;
        let config = crate::config::parse(text, std::path::Path::new(".")).unwrap();
        let topology: Topology = toml::from_str(
            r#"
[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.92.0/24"

[[ip_ranges]]
subnet = "10.77.92.0/24"
start = "10.77.92.100"
end = "10.77.92.100"
kind = "dynamic"
"#,
        )
        .unwrap();
        let subnet = topology.subnets().next().unwrap().0;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let leases = RackLeases::new(
                Ipam::new(topology),
                Arc::new(Region::new(&config).unwrap()),
                &tokio::runtime::Handle::current(),
            );
            let client = ClientKey::Mac("52:54:00:77:92:10".parse().unwrap());
            let now = Timestamp(1_000);
            let ip = leases.offer(subnet, &client, now, 30).unwrap();
            let bound = leases.bind(ip, &client, None, now, 600).unwrap();
            let error = leases.wait_async(bound.ticket.unwrap()).await.unwrap_err();
            assert!(
                matches!(&error, LeaseError::Storage { message } if message.contains("region")),
                "{error}"
            );
            // The only address of the range is free again for another client.
            tokio::task::yield_now().await;
            let other = ClientKey::Mac("52:54:00:77:92:11".parse().unwrap());
            assert_eq!(leases.offer(subnet, &other, now, 30), Ok(ip));
        });
    }
}
