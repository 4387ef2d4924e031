//! DNS domains: `GET/POST /api/v1/domains`, `GET/PUT/DELETE /api/v1/domains/{name}`, and a
//! machine's domain, `PUT /api/v1/machines/{mac}/domain`.

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiResult, bad_request, parse_mac};
use crate::app::App;
use crate::auth::AuditTarget;
use crate::now;
use crate::state::Domain;

type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// `GET /api/v1/domains`.
pub(super) async fn list(AxumState(app): AxumState<App>) -> ApiResult {
    Ok(Json(json!(app.state.domains())))
}

/// `GET /api/v1/domains/{name}`.
pub(super) async fn get(AxumState(app): AxumState<App>, Path(name): Path<String>) -> ApiResult {
    match app.state.domain(&name) {
        Some(domain) => Ok(Json(json!(domain))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("domain {name:?} does not exist"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewDomain {
    name: String,
    #[serde(default = "yes")]
    authoritative: bool,
    #[serde(default)]
    ttl: Option<u32>,
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/domains` (admin).
pub(super) async fn create(
    AxumState(app): AxumState<App>,
    body: Body<NewDomain>,
) -> Result<Response, ApiError> {
    let Json(new) = body.map_err(|e| bad_request(e.body_text()))?;
    let (domain, ticket) = app.state.create_domain(Domain {
        name: new.name,
        authoritative: new.authoritative,
        ttl: new.ttl,
    })?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "domain_created", domain = domain.name);
    let mut response = (StatusCode::CREATED, Json(json!(domain))).into_response();
    response
        .extensions_mut()
        .insert(AuditTarget(domain.name.clone()));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DomainChange {
    #[serde(default)]
    authoritative: Option<bool>,
    /// Absent: unchanged; `null`: back to the default TTL.
    #[serde(default, deserialize_with = "some")]
    ttl: Option<Option<u32>>,
}

/// A present field, even `null`, as `Some`.
fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

/// `PUT /api/v1/domains/{name}` (admin): `{"authoritative": B, "ttl": N|null}`.
pub(super) async fn update(
    AxumState(app): AxumState<App>,
    Path(name): Path<String>,
    body: Body<DomainChange>,
) -> ApiResult {
    let Json(change) = body.map_err(|e| bad_request(e.body_text()))?;
    let (domain, ticket) = app
        .state
        .update_domain(&name, change.authoritative, change.ttl)?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "domain_changed", domain = domain.name);
    Ok(Json(json!(domain)))
}

/// `DELETE /api/v1/domains/{name}` (admin): not the default, not one a machine is in.
pub(super) async fn delete(AxumState(app): AxumState<App>, Path(name): Path<String>) -> ApiResult {
    let (domain, ticket) = app.state.delete_domain(&name)?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "domain_deleted", domain = domain.name);
    Ok(Json(json!(domain)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DomainOf {
    domain: String,
}

/// `PUT /api/v1/machines/{mac}/domain` (admin): `{"domain": "D"}`, a domain that exists.
pub(super) async fn set_machine_domain(
    AxumState(app): AxumState<App>,
    Path(mac): Path<String>,
    body: Body<DomainOf>,
) -> ApiResult {
    let mac = parse_mac(&mac)?;
    let Json(DomainOf { domain }) = body.map_err(|e| bad_request(e.body_text()))?;
    let (machine, ticket) = app.state.set_domain(mac, &domain, now())?;
    app.state.durable(ticket).await?;
    Ok(Json(app.shown(&machine)))
}
