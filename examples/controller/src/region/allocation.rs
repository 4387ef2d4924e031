//! Allocation, zones and tags: `POST /api/v1/machines/allocate`, a machine's release, the
//! machine list's filters, the zones table, a machine's zone and tags.

use axum::Json;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, bad_request, parse_mac};
use crate::app::App;
use crate::auth::{AuditTarget, Caller};
use crate::now;
use crate::state::auth::{Principal, UserRole};
use crate::state::{Actor, Constraints, MachineFilter, Status, TagChange};

type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// The user a call acts for (the role table lets only users reach these routes).
pub(crate) fn actor(caller: &Principal) -> Result<Actor, ApiError> {
    match caller {
        Principal::User { name, role } => Ok(Actor {
            name: name.clone(),
            admin: *role >= UserRole::Admin,
        }),
        other => Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("{other} is not a user"),
        )),
    }
}

/// An answer whose audit entry names `target` (routes without it in their path).
fn with_target(target: String, status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(AuditTarget(target));
    response
}

/// `GET /api/v1/machines?zone=Z&status=S&tag=T&tag=U`: machines, filtered (every tag given).
pub(super) async fn machines(
    AxumState(app): AxumState<App>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(pairs) = query.map_err(|e| bad_request(e.body_text()))?;
    let mut filter = MachineFilter::default();
    for (key, value) in pairs {
        match key.as_str() {
            "zone" => filter.zone = Some(value),
            "status" => filter.status = Some(value.parse::<Status>().map_err(bad_request)?),
            "tag" => filter.tags.push(value),
            other => {
                return Err(bad_request(format!(
                    "unknown filter {other:?}: use zone, status or tag"
                )));
            }
        }
    }
    Ok(Json(Value::Array(
        app.state
            .machines_matching(&filter)
            .iter()
            .map(|m| app.shown(m))
            .collect(),
    )))
}

/// `POST /api/v1/machines/allocate`: the smallest Ready machine meeting the constraints,
/// allocated to the caller.
pub(super) async fn allocate(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    body: Body<Constraints>,
) -> Result<Response, ApiError> {
    let Json(constraints) = body.map_err(|e| bad_request(e.body_text()))?;
    let owner = actor(&caller)?.name;
    let (machine, ticket) = app.state.allocate(&constraints, &owner, now())?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "allocated", mac = %machine.mac, owner = owner);
    Ok(with_target(
        machine.mac.to_string(),
        StatusCode::OK,
        app.shown(&machine),
    ))
}

/// `POST /api/v1/machines/{mac}/release`: back to Ready, by its owner or an admin.
pub(super) async fn release(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    Path(mac): Path<String>,
) -> ApiResult {
    let mac = parse_mac(&mac)?;
    let actor = actor(&caller)?;
    let machine = app
        .state
        .machine(mac)
        .ok_or(crate::state::StateError::NoMachine(mac))?;
    if matches!(
        machine.status,
        Status::Deploying | Status::Deployed | Status::FailedDeployment | Status::Releasing
    ) {
        // Something ran on it: powered off on its way back, its addresses freed.
        app.state.check_owner(mac, &actor)?;
        return crate::deploy::release_deployed(&app, mac).await;
    }
    let (machine, ticket) = app.state.release(mac, &actor, now())?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "released", mac = %mac, by = actor.name);
    Ok(Json(app.shown(&machine)))
}

/// `GET /api/v1/zones`.
pub(super) async fn zones(AxumState(app): AxumState<App>) -> Json<Value> {
    Json(json!(app.state.zones()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewZone {
    name: String,
    #[serde(default)]
    description: String,
}

/// `POST /api/v1/zones` (admin).
pub(super) async fn create_zone(
    AxumState(app): AxumState<App>,
    body: Body<NewZone>,
) -> Result<Response, ApiError> {
    let Json(new) = body.map_err(|e| bad_request(e.body_text()))?;
    let (zone, ticket) = app.state.create_zone(&new.name, &new.description)?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "zone_created", zone = zone.name);
    Ok(with_target(
        zone.name.clone(),
        StatusCode::CREATED,
        json!(zone),
    ))
}

/// `DELETE /api/v1/zones/{name}` (admin): not `default`, not one a machine is in.
pub(super) async fn delete_zone(
    AxumState(app): AxumState<App>,
    Path(name): Path<String>,
) -> ApiResult {
    let (zone, ticket) = app.state.delete_zone(&name)?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "zone_deleted", zone = zone.name);
    Ok(Json(json!(zone)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ZoneOf {
    zone: String,
}

/// `PUT /api/v1/machines/{mac}/zone` (admin): `{"zone": "Z"}`, a zone that exists.
pub(super) async fn set_zone(
    AxumState(app): AxumState<App>,
    Path(mac): Path<String>,
    body: Body<ZoneOf>,
) -> ApiResult {
    let mac = parse_mac(&mac)?;
    let Json(ZoneOf { zone }) = body.map_err(|e| bad_request(e.body_text()))?;
    let (machine, ticket) = app.state.set_zone(mac, &zone, now())?;
    app.state.durable(ticket).await?;
    Ok(Json(app.shown(&machine)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TagsSet {
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TagsEdit {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// `PUT /api/v1/machines/{mac}/tags` (admin): `{"tags": [...]}` replaces them all.
pub(super) async fn set_tags(
    AxumState(app): AxumState<App>,
    Path(mac): Path<String>,
    body: Body<TagsSet>,
) -> ApiResult {
    let mac = parse_mac(&mac)?;
    let Json(TagsSet { tags }) = body.map_err(|e| bad_request(e.body_text()))?;
    let (machine, ticket) = app.state.change_tags(mac, TagChange::Set(tags))?;
    app.state.durable(ticket).await?;
    Ok(Json(app.shown(&machine)))
}

/// `POST /api/v1/machines/{mac}/tags` (admin): `{"add": [...], "remove": [...]}`.
pub(super) async fn edit_tags(
    AxumState(app): AxumState<App>,
    Path(mac): Path<String>,
    body: Body<TagsEdit>,
) -> ApiResult {
    let mac = parse_mac(&mac)?;
    let Json(TagsEdit { add, remove }) = body.map_err(|e| bad_request(e.body_text()))?;
    let (machine, ticket) = app
        .state
        .change_tags(mac, TagChange::Edit { add, remove })?;
    app.state.durable(ticket).await?;
    Ok(Json(app.shown(&machine)))
}
