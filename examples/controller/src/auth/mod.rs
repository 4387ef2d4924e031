//! Who may call which route: the role table, and the layer that checks every request
//! against it and records state-changing calls in the audit trail.
//!
//! Every route of the API is in `ROUTES` with what it needs; a route missing from the table
//! is refused to everyone. A request presents `Authorization: Bearer <token>`: a user's token
//! (with the user's role), a rack's credential, or a machine's credential from its boot
//! configuration. Failed attempts are slowed per source address ([`throttle`]).
//!
//! A browser logged in to the web dashboard sends its session cookie instead; it stands for
//! the token the user logged in with, and a state-changing call with it must carry the
//! session's CSRF token and, when the browser names one, an `Origin` of this server.

pub mod throttle;
pub mod token;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::now;
use crate::protocol::{PROTOCOL_VERSION, VERSION_HEADER};
use crate::region::ApiError;
use crate::state::auth::{AuditEntry, Principal, UserRole};
use throttle::Throttle;
use token::{Presented, TokenError};

/// What a route needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing: health and version.
    Public,
    /// A user of at least this role.
    User(UserRole),
    /// An enrolled rack's credential.
    Rack,
    /// The cluster's shared enrolment secret (a rack's first call).
    Enrol,
    /// A machine's credential.
    Machine,
}

/// Every route of the API (`openapi.yaml` lists the same): method, path, what it needs.
pub(crate) const ROUTES: &[(&str, &str, Need)] = {
    use Need::{Enrol, Machine, Public, Rack, User};
    use UserRole::{Admin, Operator, Viewer};
    &[
        ("GET", "/api/v1/version", Public),
        // The web dashboard: a user's token exchanged for a session cookie (the handler
        // checks the token and counts failures as this layer does), and the change stream.
        ("POST", "/api/v1/session", Public),
        ("GET", "/api/v1/session", User(Viewer)),
        ("DELETE", "/api/v1/session", User(Viewer)),
        ("GET", "/api/v1/events", User(Viewer)),
        ("GET", "/api/v1/whoami", User(Viewer)),
        ("GET", "/api/v1/zones", User(Viewer)),
        ("POST", "/api/v1/zones", User(Admin)),
        ("DELETE", "/api/v1/zones/{name}", User(Admin)),
        ("GET", "/api/v1/domains", User(Viewer)),
        ("POST", "/api/v1/domains", User(Admin)),
        ("GET", "/api/v1/domains/{name}", User(Viewer)),
        ("PUT", "/api/v1/domains/{name}", User(Admin)),
        ("DELETE", "/api/v1/domains/{name}", User(Admin)),
        ("GET", "/api/v1/subnets", User(Viewer)),
        ("GET", "/api/v1/subnets/{id}/statistics", User(Viewer)),
        ("GET", "/api/v1/ipranges", User(Viewer)),
        ("GET", "/api/v1/leases", User(Viewer)),
        ("GET", "/api/v1/ipaddresses", User(Viewer)),
        ("POST", "/api/v1/ipaddresses", User(Operator)),
        ("DELETE", "/api/v1/ipaddresses/{ip}", User(Operator)),
        ("GET", "/api/v1/discoveries", User(Viewer)),
        ("POST", "/api/v1/discoveries/clear", User(Admin)),
        (
            "POST",
            "/api/v1/discoveries/clear-by-mac-and-ip",
            User(Admin),
        ),
        // MAAS: any user makes devices (and owns them); the handlers let their owner or an
        // admin change them, and only an admin add a discovery to a machine.
        ("POST", "/api/v1/discoveries/convert", User(Operator)),
        ("GET", "/api/v1/devices", User(Viewer)),
        ("POST", "/api/v1/devices", User(Operator)),
        ("GET", "/api/v1/devices/{name}", User(Viewer)),
        ("PUT", "/api/v1/devices/{name}", User(Operator)),
        ("DELETE", "/api/v1/devices/{name}", User(Operator)),
        ("POST", "/api/v1/devices/{name}/interfaces", User(Operator)),
        (
            "DELETE",
            "/api/v1/devices/{name}/interfaces/{mac}",
            User(Operator),
        ),
        ("GET", "/api/v1/machines", User(Viewer)),
        ("POST", "/api/v1/machines", User(Admin)),
        ("GET", "/api/v1/machines/{mac}", User(Viewer)),
        ("DELETE", "/api/v1/machines/{mac}", User(Admin)),
        ("POST", "/api/v1/machines/{mac}/accept", User(Operator)),
        ("POST", "/api/v1/machines/{mac}/commission", User(Operator)),
        ("POST", "/api/v1/machines/{mac}/deploy", User(Operator)),
        ("POST", "/api/v1/machines/{mac}/release", User(Operator)),
        ("GET", "/api/v1/machines/{mac}/events", User(Viewer)),
        ("GET", "/api/v1/machines/{mac}/interfaces", User(Viewer)),
        ("PUT", "/api/v1/machines/{mac}/interfaces", User(Operator)),
        ("GET", "/api/v1/machines/{mac}/netconfig", User(Viewer)),
        // MAAS: any user allocates, and releases their own machines (an admin anyone's: the
        // handler checks the owner); editing a machine's zone and tags is an admin's.
        ("POST", "/api/v1/machines/allocate", User(Operator)),
        ("PUT", "/api/v1/machines/{mac}/zone", User(Admin)),
        ("PUT", "/api/v1/machines/{mac}/domain", User(Admin)),
        ("PUT", "/api/v1/machines/{mac}/tags", User(Admin)),
        ("POST", "/api/v1/machines/{mac}/tags", User(Admin)),
        ("GET", "/api/v1/machines/{mac}/power", User(Viewer)),
        ("POST", "/api/v1/machines/{mac}/power-on", User(Operator)),
        ("POST", "/api/v1/machines/{mac}/power-off", User(Operator)),
        ("POST", "/api/v1/machines/{mac}/power-cycle", User(Operator)),
        ("POST", "/api/v1/machines/{mac}/boot", User(Operator)),
        ("GET", "/api/v1/racks", User(Viewer)),
        ("DELETE", "/api/v1/racks/{name}", User(Admin)),
        ("GET", "/api/v1/users", User(Admin)),
        ("POST", "/api/v1/users", User(Admin)),
        ("DELETE", "/api/v1/users/{name}", User(Admin)),
        ("GET", "/api/v1/tokens", User(Admin)),
        ("POST", "/api/v1/tokens", User(Admin)),
        ("DELETE", "/api/v1/tokens/{id}", User(Admin)),
        ("GET", "/api/v1/audit", User(Admin)),
        ("GET", "/api/v1/boot-resources", User(Viewer)),
        ("POST", "/api/v1/boot-resources", User(Admin)),
        ("GET", "/metrics", User(Viewer)),
        ("POST", "/api/v1/rack/enrol", Enrol),
        ("GET", "/api/v1/rack/config", Rack),
        ("POST", "/api/v1/rack/leases", Rack),
        ("POST", "/api/v1/rack/leases/batch", Rack),
        ("POST", "/api/v1/rack/seen", Rack),
        ("POST", "/api/v1/rack/discoveries", Rack),
        ("POST", "/api/v1/rack/interfaces", Rack),
        (
            "GET",
            "/api/v1/rack/resources/{name}/{arch}/{release}/{file}",
            Rack,
        ),
        ("POST", "/api/v1/metadata/events", Machine),
        ("POST", "/api/v1/metadata/commissioning", Machine),
    ]
};

/// What `method` on the route `path` needs; `None` for a route missing from the table.
pub(crate) fn need(method: &Method, path: &str) -> Option<Need> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, n)| *n)
}

/// Failed attempts per source, on a monotonic clock.
pub(crate) struct Guard {
    throttle: Mutex<Throttle>,
    clock: Instant,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            throttle: Mutex::default(),
            clock: Instant::now(),
        }
    }
}

impl Guard {
    /// Forgets every failure (tests that make many on purpose).
    #[cfg(test)]
    pub(crate) fn forget_all(&self) {
        *self.throttle() = Throttle::default();
    }

    /// The time on the throttle's clock.
    pub(crate) fn elapsed(&self) -> std::time::Duration {
        self.clock.elapsed()
    }

    /// `Err(wait)` while `source` is barred.
    pub(crate) fn check(
        &self,
        source: IpAddr,
        elapsed: std::time::Duration,
    ) -> Result<(), std::time::Duration> {
        self.throttle().check(source, elapsed)
    }

    /// Counts a failure from `source`.
    pub(crate) fn failed(&self, source: IpAddr, elapsed: std::time::Duration) {
        self.throttle().failed(source, elapsed);
    }

    /// A success from `source`.
    pub(crate) fn succeeded(&self, source: IpAddr) {
        self.throttle().succeeded(source);
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn refused(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = ApiError(status, message.into()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Whether `principal` may do what `need` asks.
fn allowed(need: Need, principal: &Principal) -> bool {
    match (need, principal) {
        (Need::Public, _) => true,
        (Need::User(wanted), Principal::User { role, .. }) => *role >= wanted,
        (Need::Rack, Principal::Rack(_)) | (Need::Machine, Principal::Machine(_)) => true,
        _ => false,
    }
}

fn what_is_needed(need: Need) -> String {
    match need {
        Need::User(role) => format!("a user with role {role} or above"),
        Need::Rack => "an enrolled rack's credential".into(),
        Need::Machine => "a machine's credential".into(),
        Need::Enrol => "the cluster's enrolment secret".into(),
        Need::Public => "nothing".into(),
    }
}

/// The layer on every route: checks the caller against [`ROUTES`], slows failed attempts,
/// and records state-changing calls in the audit trail before answering.
pub(crate) async fn layer(
    AxumState(app): AxumState<App>,
    path: MatchedPath,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let route = path.as_str().to_string();
    let Some(need) = need(&method, &route) else {
        return refused(
            StatusCode::FORBIDDEN,
            format!("{method} {route} is in no role's table"),
        );
    };
    if need == Need::Public {
        return next.run(request).await;
    }
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let elapsed = app.guard.clock.elapsed();
    if let Err(wait) = app.guard.throttle().check(source, elapsed) {
        app.metrics.auth_refused.inc();
        let mut response = refused(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed attempts from this address: wait and try again",
        );
        if let Ok(v) = HeaderValue::from_str(
            &(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
                .max(1)
                .to_string(),
        ) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    // A browser's session cookie stands for its user's token when no Authorization is sent.
    let cookie = if request.headers().contains_key(header::AUTHORIZATION) {
        None
    } else {
        crate::web::session::cookie_of(request.headers())
    };
    let mut session = None;
    let principal = match cookie {
        Some(id) => match app.sessions.find(&id, now()) {
            Some((key, found)) => match app.state.authenticate(&found.token, now()) {
                Some(user @ Principal::User { .. }) if need != Need::Enrol => {
                    session = Some((key, found.csrf));
                    Ok(user)
                }
                _ => {
                    // The token was revoked or its user removed: the session ends with it.
                    app.sessions.remove(key);
                    Err(
                        "the session's token was revoked or its user removed: log in again"
                            .to_string(),
                    )
                }
            },
            None => Err("unknown or expired session: log in again".to_string()),
        },
        None => bearer(&app, need, &request).map_err(|e| match e {
            TokenError::Malformed => match need {
                Need::Enrol => "wrong enrolment secret".to_string(),
                _ => "invalid, expired or revoked token".to_string(),
            },
            other => other.to_string(),
        }),
    };
    let principal = match principal {
        Ok(p) => p,
        Err(reason) => {
            let wait = app.guard.throttle().failed(source, elapsed);
            app.metrics.auth_refused.inc();
            tracing::warn!(
                event = "auth_refused",
                source = %source,
                route = %route,
                method = %method,
                reason = %reason,
                barred_secs = wait.as_secs(),
            );
            return refused(StatusCode::UNAUTHORIZED, reason);
        }
    };
    app.guard.throttle().succeeded(source);
    let target = params.ok().and_then(|p| {
        p.iter()
            .next()
            .map(|(name, value)| normalise_target(name, value))
    });
    let state_changing = !matches!(method, Method::GET | Method::HEAD);
    if let Some((key, csrf)) = session {
        if let Some(reason) = crate::web::session::csrf_refusal(&method, request.headers(), &csrf) {
            app.metrics.auth_refused.inc();
            tracing::warn!(
                event = "csrf_refused",
                who = %principal,
                route = %route,
                method = %method,
                reason = %reason,
            );
            let response = refused(StatusCode::FORBIDDEN, reason);
            return audited(&app, &principal, &method, &route, target, response).await;
        }
        request.extensions_mut().insert(key);
    }
    if need != Need::Enrol && !allowed(need, &principal) {
        app.metrics.auth_refused.inc();
        tracing::warn!(
            event = "forbidden",
            who = %principal,
            route = %route,
            method = %method,
        );
        let response = refused(
            StatusCode::FORBIDDEN,
            format!(
                "{principal} may not {method} {route}: it needs {}",
                what_is_needed(need)
            ),
        );
        if state_changing {
            return audited(&app, &principal, &method, &route, target, response).await;
        }
        return response;
    }
    if let Principal::Rack(name) = &principal {
        if let Some(version) = wrong_version(&request) {
            return refused(
                StatusCode::CONFLICT,
                format!(
                    "this region speaks rack protocol {PROTOCOL_VERSION}; the rack sent {version}: run the same version on both"
                ),
            );
        }
        if need == Need::Rack {
            let now = now();
            let _ = app.state.rack_contact(name, Some(source), now);
            app.rack_reported(name, request.headers(), now);
        }
    }
    if let Principal::Rack(name) = &principal {
        request.extensions_mut().insert(RackName(name.clone()));
    }
    request.extensions_mut().insert(principal.clone());
    let response = next.run(request).await;
    // A route without its subject in the path (an allocation) names it in the answer.
    let target = target.or_else(|| {
        response
            .extensions()
            .get::<AuditTarget>()
            .map(|t| t.0.clone())
    });
    // Racks' lease, boot and discovery reports are recorded as what they are (leases,
    // machines, discoveries); the trail keeps every other change, and refused reports.
    let audit =
        state_changing && (need != Need::Rack || response.status() == StatusCode::FORBIDDEN);
    if audit {
        return audited(&app, &principal, &method, &route, target, response).await;
    }
    response
}

/// Who a bearer token (or, for enrolment, the shared secret) names.
fn bearer(
    app: &App,
    need: Need,
    request: &axum::extract::Request,
) -> Result<Principal, TokenError> {
    let presented = token::parse_authorization(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    );
    match (need, presented) {
        (Need::Enrol, Ok(Presented::Other(secret))) => {
            let expected = app.config.cluster.secret.as_deref().unwrap_or_default();
            (!expected.is_empty() && token::same_secret(secret, expected.as_bytes()))
                .then(|| Principal::Rack(rack_name(request)))
                .ok_or(TokenError::Malformed)
        }
        (Need::Enrol, Ok(Presented::Token(_))) => Err(TokenError::Malformed),
        (_, Ok(Presented::Token(t))) => app
            .state
            .authenticate(&t, now())
            .ok_or(TokenError::Malformed),
        (_, Ok(Presented::Other(_))) => Err(TokenError::Malformed),
        (_, Err(e)) => Err(e),
    }
}

/// Records the call and answers once the entry is durable (a 500 if it cannot be kept).
async fn audited(
    app: &App,
    principal: &Principal,
    method: &Method,
    route: &str,
    target: Option<String>,
    response: Response,
) -> Response {
    let entry = AuditEntry {
        at: now(),
        who: principal.to_string(),
        action: format!("{method} {route}"),
        target,
        status: response.status().as_u16(),
    };
    // A batch another region's write made the database refuse takes this entry with it: the
    // entry alone conflicts with nothing, so it is written again (a few times at most).
    let mut kept = Err(crate::state::StateError::Random);
    for _ in 0..3 {
        kept = match app.state.audit(entry.clone()) {
            Ok(ticket) => app.state.durable(ticket).await,
            Err(e) => Err(e),
        };
        if !matches!(
            kept,
            Err(crate::state::StateError::Ipam(
                maas_ipam::DurableError::Refused(_)
            ))
        ) {
            break;
        }
    }
    match kept {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(event = "audit_failed", error = %e);
            refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the audit trail could not be written: {e}"),
            )
        }
    }
}

/// The rack name a request gives (`x-maas-rack`).
fn rack_name(request: &axum::extract::Request) -> String {
    request
        .headers()
        .get(crate::protocol::RACK_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(64)
        .collect()
}

/// The protocol version a rack sent, when it is not ours.
fn wrong_version(request: &axum::extract::Request) -> Option<String> {
    let sent = request
        .headers()
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok());
    match sent.and_then(|v| v.parse::<u32>().ok()) {
        Some(PROTOCOL_VERSION) => None,
        Some(other) => Some(other.to_string()),
        None => Some(sent.map_or_else(|| "none".into(), |s| format!("{s:?}"))),
    }
}

/// A path parameter as the audit trail keeps it: MACs in one spelling.
fn normalise_target(name: &str, value: &str) -> String {
    if name == "mac"
        && let Ok(mac) = value.replace('-', ":").parse::<maas_net::Mac>()
    {
        return mac.to_string();
    }
    value.chars().take(128).collect()
}

/// What a state-changing call was about, when its path does not say: a handler puts it in
/// its answer's extensions for the audit trail.
#[derive(Clone, Debug)]
pub(crate) struct AuditTarget(pub(crate) String);

/// The name of the rack calling, for the rack routes' handlers.
#[derive(Clone, Debug)]
pub(crate) struct RackName(pub(crate) String);

/// The caller, as the layer found it (for handlers).
pub(crate) type Caller = axum::Extension<Principal>;
