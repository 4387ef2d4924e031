//! The routes that manage access: who am I, users, tokens, the audit trail, racks' enrolment
//! and removal, and what machines report with their own credential.

use axum::Json;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use maas_net::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, bad_request, parse_mac};
use crate::app::App;
use crate::auth::Caller;
use crate::auth::token::TokenId;
use crate::now;
use crate::state::auth::{Principal, UserRole};

/// `GET /api/v1/whoami`: the caller.
pub(super) async fn whoami(axum::Extension(caller): Caller) -> Json<Value> {
    Json(match caller {
        Principal::User { name, role } => json!({ "kind": "user", "name": name, "role": role }),
        Principal::Rack(name) => json!({ "kind": "rack", "name": name }),
        Principal::Machine(mac) => json!({ "kind": "machine", "mac": mac }),
    })
}

pub(super) async fn users(AxumState(app): AxumState<App>) -> Json<Value> {
    Json(json!(app.state.users()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    name: String,
    role: UserRole,
}

pub(super) async fn add_user(
    AxumState(app): AxumState<App>,
    body: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(new) = body.map_err(|e| bad_request(e.body_text()))?;
    let (user, ticket) = app.state.add_user(&new.name, new.role, now())?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "user_added", user = user.name, role = %user.role);
    Ok((StatusCode::CREATED, Json(json!(user))))
}

pub(super) async fn remove_user(
    AxumState(app): AxumState<App>,
    Path(name): Path<String>,
) -> ApiResult {
    let (user, ticket) = app.state.remove_user(&name)?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "user_removed", user = user.name);
    Ok(Json(json!(user)))
}

#[derive(Deserialize)]
pub(super) struct TokenFilter {
    user: Option<String>,
}

pub(super) async fn tokens(
    AxumState(app): AxumState<App>,
    Query(filter): Query<TokenFilter>,
) -> Json<Value> {
    Json(Value::Array(
        app.state
            .tokens(filter.user.as_deref())
            .iter()
            .map(|t| t.shown())
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    user: String,
    /// Seconds from now until it stops working.
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    description: Option<String>,
}

/// `POST /api/v1/tokens`: the only answer that ever carries a token's secret.
pub(super) async fn create_token(
    AxumState(app): AxumState<App>,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(new) = body.map_err(|e| bad_request(e.body_text()))?;
    let now = now();
    let expires = new.expires_in.map(|s| Timestamp(now.0.saturating_add(s)));
    let (token, record, ticket) =
        app.state
            .create_token(&new.user, expires, new.description, now)?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "token_created", id = %record.id, user = new.user);
    let mut shown = record.shown();
    shown["token"] = json!(token.to_string());
    Ok((StatusCode::CREATED, Json(shown)))
}

pub(super) async fn revoke_token(
    AxumState(app): AxumState<App>,
    Path(id): Path<String>,
) -> ApiResult {
    let id: TokenId = id
        .parse()
        .map_err(|_| bad_request(format!("{id:?} is not a token id (16 hex digits)")))?;
    let (record, ticket) = app.state.revoke_token(id)?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "token_revoked", id = %record.id);
    Ok(Json(record.shown()))
}

#[derive(Deserialize)]
pub(super) struct AuditFilter {
    user: Option<String>,
    rack: Option<String>,
    machine: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/audit`: the latest entries, oldest first.
pub(super) async fn audit(
    AxumState(app): AxumState<App>,
    Query(filter): Query<AuditFilter>,
) -> ApiResult {
    let who = match (&filter.user, &filter.rack) {
        (Some(_), Some(_)) => return Err(bad_request("give user or rack, not both")),
        (Some(u), None) => Some(format!("user:{u}")),
        (None, Some(r)) => Some(format!("rack:{r}")),
        (None, None) => None,
    };
    let target = filter
        .machine
        .as_deref()
        .map(|m| parse_mac(m).map(|mac| mac.to_string()))
        .transpose()?;
    let limit = filter.limit.unwrap_or(1000).min(10_000);
    Ok(Json(json!(app.state.audit_entries(
        who.as_deref(),
        target.as_deref(),
        limit
    ))))
}

/// `GET /api/v1/racks`: the enrolled racks, with what they reported since this region
/// started and the health their last calls to it carried (`null` for what a rack never
/// sent).
pub(super) async fn racks(AxumState(app): AxumState<App>) -> Json<Value> {
    let counters = app
        .racks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Json(Value::Array(
        app.state
            .racks()
            .into_iter()
            .map(|r| {
                let seen = counters.get(&r.name);
                let dhcp = seen.and_then(|s| s.dhcp.as_ref());
                json!({
                    "name": r.name,
                    "enrolled": r.enrolled,
                    "last_contact": r.last_contact,
                    "address": r.address,
                    "vlans": app.config.rack_vlans(&r.name),
                    "leases_recorded": seen.map_or(0, |s| s.leases_recorded),
                    "leases_refused": seen.map_or(0, |s| s.leases_refused),
                    "discoveries": seen.map_or(0, |s| s.discoveries),
                    "dhcp_serving": dhcp.map(|d| d.serving),
                    "dhcp_since": dhcp.and_then(|d| d.since),
                    "dhcp_interfaces": dhcp.map(|d| &d.interfaces),
                    "dhcp_reason": dhcp.and_then(|d| d.reason.as_ref()),
                    "queued_reports": seen.and_then(|s| s.queued_reports),
                    "health_at": seen.and_then(|s| s.health_at),
                })
            })
            .collect(),
    ))
}

pub(super) async fn remove_rack(
    AxumState(app): AxumState<App>,
    Path(name): Path<String>,
) -> ApiResult {
    let (rack, ticket) = app.state.remove_rack(&name)?;
    app.state.durable(ticket).await?;
    let freed = super::racks::free_block(&app, &name).await?;
    app.racks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&name);
    tracing::info!(
        event = "rack_removed",
        rack = rack.name,
        block_freed = freed
    );
    Ok(Json(
        json!({ "name": rack.name, "enrolled": rack.enrolled }),
    ))
}

/// `POST /api/v1/rack/enrol`, with the cluster's shared secret: the rack's own credential,
/// once. A name enrolled already is refused (409).
pub(super) async fn enrol(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Principal::Rack(name) = caller else {
        return Err(ApiError(StatusCode::FORBIDDEN, "racks only".into()));
    };
    let (token, ticket) = app
        .state
        .enrol_rack(&name, connect.map(|c| c.0.0.ip()), now())?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "rack_enrolled", rack = name);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "credential": token.to_string() })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineReport {
    /// What happened (`commissioning`, `installing`...): letters, digits, `_`, `-`.
    kind: String,
    #[serde(default)]
    detail: Option<String>,
}

/// Adds what machine `mac` reported (`{"kind": ..., "detail": ...}`) to its history.
pub(crate) async fn machine_event_for(
    app: &App,
    mac: maas_net::Mac,
    body: Value,
) -> Result<crate::state::MachineEvent, ApiError> {
    let report: MachineReport =
        serde_json::from_value(body).map_err(|e| bad_request(e.to_string()))?;
    let kind_ok = (1..=40).contains(&report.kind.len())
        && report
            .kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !kind_ok {
        return Err(bad_request("kind: 1 to 40 of letters, digits, '_' and '-'"));
    }
    if report.detail.as_ref().is_some_and(|d| d.len() > 4096) {
        return Err(bad_request("detail: at most 4096 bytes"));
    }
    let (event, ticket) = app.state.machine_reported(
        mac,
        &format!("machine_{}", report.kind),
        report.detail,
        now(),
    )?;
    app.state.durable(ticket).await?;
    Ok(event)
}

/// `POST /api/v1/metadata/events`: a booted machine reports to its own history, with the
/// credential its boot configuration gave it.
pub(super) async fn machine_event(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Principal::Machine(mac) = caller else {
        return Err(ApiError(StatusCode::FORBIDDEN, "machines only".into()));
    };
    let Json(body) = body.map_err(|e| bad_request(e.body_text()))?;
    let event = machine_event_for(&app, mac, body).await?;
    Ok((StatusCode::CREATED, Json(json!(event))))
}

/// `POST /api/v1/metadata/commissioning`: a commissioning machine's report.
pub(super) async fn machine_commissioning(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    body: Result<Json<crate::ephemeral::Report>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Principal::Machine(mac) = caller else {
        return Err(ApiError(StatusCode::FORBIDDEN, "machines only".into()));
    };
    let Json(report) = body.map_err(|e| bad_request(e.body_text()))?;
    let machine = crate::ephemeral::commissioning_reported(&app, mac, report).await?;
    Ok(Json(app.shown(&machine)))
}

/// `GET /api/v1/boot-resources`.
pub(super) async fn boot_resources(AxumState(app): AxumState<App>) -> Json<Value> {
    Json(json!(app.state.resources()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Import {
    /// A directory on the controller's host holding `manifest.json` and its files.
    dir: std::path::PathBuf,
}

/// `POST /api/v1/boot-resources`: imports a resource from a directory on this host.
pub(super) async fn import_boot_resource(
    AxumState(app): AxumState<App>,
    body: Result<Json<Import>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(import) = body.map_err(|e| bad_request(e.body_text()))?;
    let state_dir = app.config.controller.state_dir.clone();
    let resource = tokio::task::spawn_blocking(move || {
        crate::state::resources::import(&state_dir, &import.dir, now())
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| bad_request(e.to_string()))?;
    let ticket = app.state.put_resource(resource.clone())?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "boot_resource_imported", resource = resource.key());
    Ok((StatusCode::CREATED, Json(json!(resource))))
}
