//! Browser sessions: a user's token exchanged once for a session cookie, and the checks a
//! request carrying that cookie passes (the CSRF token and the origin of state-changing calls).
//!
//! A session keeps the user's token in the region's memory and nothing else of the user: every
//! request authenticates that token again, so a revoked token, a removed user or a changed
//! role takes effect on the session's next request. Sessions are found by the SHA-256 of their
//! id, so a lookup's timing says nothing of the ids kept.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use axum::Json;
use axum::extract::{ConnectInfo, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use maas_net::Timestamp;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::auth::Caller;
use crate::auth::token::Token;
use crate::config::TlsSetting;
use crate::now;
use crate::region::{ApiError, bad_request};
use crate::state::auth::Principal;

use super::csrf;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "maas_session";
/// The header a state-changing call with the cookie carries.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// A session unused this long ends (seconds).
pub(crate) const IDLE_SECS: u64 = 12 * 3600;
/// The most sessions kept; the least recently used goes first.
const MAX_SESSIONS: usize = 10_000;

/// The key a session is kept under: the hash of its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SessionKey([u8; 32]);

impl SessionKey {
    fn of(id: &str) -> Self {
        Self(Sha256::digest(id.as_bytes()).into())
    }
}

/// One logged-in browser.
#[derive(Clone)]
pub(crate) struct Session {
    /// The token the user logged in with.
    pub(crate) token: Token,
    /// What state-changing calls must carry in [`CSRF_HEADER`].
    pub(crate) csrf: String,
    last_used: Timestamp,
}

/// The region's sessions, in memory (a restart logs everyone out).
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<SessionKey, Session>>);

impl Sessions {
    /// A new session for `token`: its id (for the cookie only) and its CSRF token.
    pub(crate) fn create(&self, token: Token, now: Timestamp) -> Option<(String, String)> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut map = self.lock();
        map.retain(|_, s| !expired(s, now));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            SessionKey::of(&id),
            Session {
                token,
                csrf: csrf.clone(),
                last_used: now,
            },
        );
        Some((id, csrf))
    }

    /// The live session `id` names, marked used at `now`; an expired one is forgotten.
    pub(crate) fn find(&self, id: &str, now: Timestamp) -> Option<(SessionKey, Session)> {
        let key = SessionKey::of(id);
        let mut map = self.lock();
        let session = map.get_mut(&key)?;
        if expired(session, now) {
            map.remove(&key);
            return None;
        }
        session.last_used = now;
        Some((key, session.clone()))
    }

    /// The CSRF token of the session under `key`.
    pub(crate) fn csrf(&self, key: SessionKey) -> Option<String> {
        self.lock().get(&key).map(|s| s.csrf.clone())
    }

    /// Ends the session under `key`.
    pub(crate) fn remove(&self, key: SessionKey) {
        self.lock().remove(&key);
    }

    /// How many sessions are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Session>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn expired(session: &Session, now: Timestamp) -> bool {
    now.0.saturating_sub(session.last_used.0) >= IDLE_SECS
}

/// 256 bits from the system's random source, as hex.
fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The session id a request's `Cookie` headers carry, if any.
pub(crate) fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| csrf::cookie_value(v, COOKIE))
}

/// Why a state-changing call with the session cookie is refused, if it is: it must carry the
/// session's CSRF token, and come from a page of this server when the browser says where
/// from (`Origin`).
pub(crate) fn csrf_refusal(method: &Method, headers: &HeaderMap, csrf: &str) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    let Some(sent) = headers.get(CSRF_HEADER) else {
        return Some(format!(
            "a {method} with the session cookie needs the {CSRF_HEADER} header (GET /api/v1/session gives it)"
        ));
    };
    if !csrf::same_token(sent.as_bytes(), csrf.as_bytes()) {
        return Some(format!(
            "wrong {CSRF_HEADER}: log in again or reload the page"
        ));
    }
    let origin = headers.get(header::ORIGIN)?;
    let host = headers
        .get(header::HOST)
        .map_or(&b""[..], HeaderValue::as_bytes);
    if csrf::same_origin(origin.as_bytes(), host) {
        return None;
    }
    Some(format!(
        "the request comes from another site (Origin {:?}): refused",
        String::from_utf8_lossy(origin.as_bytes())
    ))
}

/// `POST /api/v1/session`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    token: String,
}

/// `POST /api/v1/session`: a user's token for a session cookie. Failed attempts count in
/// the same throttle as bearer tokens; a browser that names another site as its origin is
/// refused.
pub(crate) async fn login(
    AxumState(app): AxumState<App>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let source = connect.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.0.ip());
    // Another site may not log a browser in (to an account of its choosing) either.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .map_or(&b""[..], HeaderValue::as_bytes);
        if !csrf::same_origin(origin.as_bytes(), host) {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                "a login from another site (Origin) is refused".into(),
            ));
        }
    }
    let elapsed = app.guard.elapsed();
    if app.guard.check(source, elapsed).is_err() {
        app.metrics.auth_refused.inc();
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed attempts from this address: wait and try again".into(),
        ));
    }
    let Json(login) = body.map_err(|e| bad_request(e.body_text()))?;
    let now = now();
    let user = Token::parse(login.token.trim().as_bytes())
        .ok()
        .and_then(|token| match app.state.authenticate(&token, now) {
            Some(Principal::User { name, role }) => Some((token, name, role)),
            _ => None,
        });
    let Some((token, name, role)) = user else {
        app.guard.failed(source, elapsed);
        app.metrics.auth_refused.inc();
        tracing::warn!(event = "auth_refused", source = %source, route = "/api/v1/session", method = "POST", reason = "login with a bad token");
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "invalid, expired or revoked token (a user's token logs in)".into(),
        ));
    };
    app.guard.succeeded(source);
    let (id, csrf) = app.sessions.create(token, now).ok_or_else(|| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the system's random source failed".into(),
        )
    })?;
    tracing::info!(event = "session_started", user = %name, source = %source);
    let cookie = Cookie::build((COOKIE, id))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(served_over_tls(&app))
        .build();
    let mut response = (
        StatusCode::CREATED,
        Json(json!({ "user": name, "role": role, "csrf_token": csrf })),
    )
        .into_response();
    set_cookie(&mut response, &cookie);
    Ok(response)
}

/// `GET /api/v1/session`: who is logged in, the role, and the session's CSRF token (`null`
/// for a bearer token, which needs none).
pub(crate) async fn whoami(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    key: Option<axum::Extension<SessionKey>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Principal::User { name, role } = caller else {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "only users have sessions".into(),
        ));
    };
    let csrf = key.and_then(|k| app.sessions.csrf(k.0));
    Ok(Json(json!({
        "user": name,
        "role": role,
        "session": csrf.is_some(),
        "csrf_token": csrf,
    })))
}

/// `DELETE /api/v1/session`: logs out (the cookie is cleared).
pub(crate) async fn logout(
    AxumState(app): AxumState<App>,
    key: Option<axum::Extension<SessionKey>>,
) -> Response {
    if let Some(key) = key {
        app.sessions.remove(key.0);
    }
    let cookie = Cookie::build((COOKIE, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(served_over_tls(&app))
        .max_age(time::Duration::ZERO)
        .build();
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &cookie);
    response
}

fn served_over_tls(app: &App) -> bool {
    app.config.controller.tls() != TlsSetting::Off
}

fn set_cookie(response: &mut Response, cookie: &Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}
