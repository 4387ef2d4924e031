//! Devices and discoveries: `/api/v1/devices...` (a user makes a device and owns it; its
//! owner or an admin changes or deletes it) and `/api/v1/discoveries...` (the unknown ones,
//! clearing them, turning one into a device or an interface).

use axum::Json;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::allocation::actor;
use super::{ApiError, ApiResult, bad_request, parse_mac};
use crate::app::App;
use crate::auth::{AuditTarget, Caller};
use crate::now;
use crate::state::{
    Clear, Convert, Converted, Device, DeviceUpdate, NewDevice, NewInterface, Unknown,
};

type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// A device as the API shows it: the record, each interface's address now (`dynamic`: its
/// bound lease), and its fully qualified name.
pub(crate) fn shown_device(app: &App, device: &Device) -> Value {
    let mut value = json!(device);
    let addresses: Vec<Value> = app
        .state
        .device_addresses(device)
        .into_iter()
        .map(|(mac, mode, ip)| json!({ "mac": mac, "ip_assignment": mode, "ip": ip }))
        .collect();
    value["addresses"] = json!(addresses);
    value["fqdn"] = json!(format!("{}.{}", device.name, device.domain));
    value
}

fn created(target: &str, body: Value) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response
        .extensions_mut()
        .insert(AuditTarget(target.to_owned()));
    response
}

/// `GET /api/v1/devices`.
pub(super) async fn list(AxumState(app): AxumState<App>) -> Json<Value> {
    let list: Vec<Value> = app
        .state
        .devices()
        .iter()
        .map(|d| shown_device(&app, d))
        .collect();
    Json(Value::Array(list))
}

/// `GET /api/v1/devices/{name}`.
pub(super) async fn get(AxumState(app): AxumState<App>, Path(name): Path<String>) -> ApiResult {
    app.state
        .device(&name)
        .map(|d| Json(shown_device(&app, &d)))
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("device {name:?} does not exist"),
            )
        })
}

/// `POST /api/v1/devices`: a device owned by the caller.
pub(super) async fn create(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    body: Body<NewDevice>,
) -> Result<Response, ApiError> {
    let Json(new) = body.map_err(|e| bad_request(e.body_text()))?;
    let owner = actor(&caller)?.name;
    let (device, ticket) = app.state.create_device(new, &owner, now())?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "device_created", device = device.name, owner);
    Ok(created(&device.name, shown_device(&app, &device)))
}

/// `PUT /api/v1/devices/{name}`: its owner or an admin.
pub(super) async fn update(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    Path(name): Path<String>,
    body: Body<DeviceUpdate>,
) -> ApiResult {
    let Json(change) = body.map_err(|e| bad_request(e.body_text()))?;
    let (device, ticket) = app.state.update_device(&name, change, &actor(&caller)?)?;
    app.state.durable(ticket).await?;
    Ok(Json(shown_device(&app, &device)))
}

/// `DELETE /api/v1/devices/{name}`: its owner or an admin; frees its addresses.
pub(super) async fn delete(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    Path(name): Path<String>,
) -> ApiResult {
    let (device, ticket) = app.state.delete_device(&name, &actor(&caller)?)?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "device_deleted", device = device.name);
    Ok(Json(json!(device)))
}

/// `POST /api/v1/devices/{name}/interfaces`.
pub(super) async fn add_interface(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    Path(name): Path<String>,
    body: Body<NewInterface>,
) -> Result<Response, ApiError> {
    let Json(new) = body.map_err(|e| bad_request(e.body_text()))?;
    let (device, ticket) = app
        .state
        .add_device_interface(&name, new, &actor(&caller)?, now())?;
    app.state.durable(ticket).await?;
    Ok(created(&device.name, shown_device(&app, &device)))
}

/// `DELETE /api/v1/devices/{name}/interfaces/{mac}`: frees what it held.
pub(super) async fn remove_interface(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    Path((name, mac)): Path<(String, String)>,
) -> ApiResult {
    let mac = parse_mac(&mac)?;
    let (device, ticket) = app
        .state
        .remove_device_interface(&name, mac, &actor(&caller)?)?;
    app.state.durable(ticket).await?;
    Ok(Json(shown_device(&app, &device)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiscoveryQuery {
    #[serde(default)]
    unknown: Option<String>,
}

/// `GET /api/v1/discoveries?unknown=mac|ip|both`.
pub(super) async fn discoveries(
    AxumState(app): AxumState<App>,
    query: Result<Query<DiscoveryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    let unknown = q
        .unknown
        .as_deref()
        .map(str::parse::<Unknown>)
        .transpose()
        .map_err(bad_request)?;
    Ok(Json(json!(app.state.discoveries_filtered(unknown))))
}

/// `POST /api/v1/discoveries/clear` (admin): `{"all": true}`, or `neighbours` and/or `mdns`.
pub(super) async fn clear(AxumState(app): AxumState<App>, body: Body<Clear>) -> ApiResult {
    let Json(what) = body.map_err(|e| bad_request(e.body_text()))?;
    let (count, ticket) = app.state.clear_discoveries(what)?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "discoveries_cleared", count);
    Ok(Json(json!({ "cleared": count })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MacAndIp {
    mac: maas_net::Mac,
    ip: std::net::IpAddr,
}

/// `POST /api/v1/discoveries/clear-by-mac-and-ip` (admin).
pub(super) async fn clear_one(AxumState(app): AxumState<App>, body: Body<MacAndIp>) -> ApiResult {
    let Json(MacAndIp { mac, ip }) = body.map_err(|e| bad_request(e.body_text()))?;
    let (count, ticket) = app.state.clear_discovery(mac, ip)?;
    app.state.durable(ticket).await?;
    Ok(Json(json!({ "cleared": count })))
}

/// `POST /api/v1/discoveries/convert`: a discovery made a device, or an interface of a
/// device (its owner or an admin) or of a machine (an admin), in one commit.
pub(super) async fn convert(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): Caller,
    body: Body<Convert>,
) -> Result<Response, ApiError> {
    let Json(c) = body.map_err(|e| bad_request(e.body_text()))?;
    let (made, ticket) = app.state.convert_discovery(c, &actor(&caller)?, now())?;
    app.state.durable(ticket).await?;
    Ok(match made {
        Converted::Device(d) => created(&d.name, json!({ "device": shown_device(&app, &d) })),
        Converted::Machine(m) => {
            app.machines_changed();
            created(&m.mac.to_string(), json!({ "machine": app.shown(&m) }))
        }
    })
}
