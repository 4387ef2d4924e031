//! The power endpoints: query, on, off, cycle, boot device.

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use maas_net::Mac;
use maas_power::manager::Observation;
use maas_power::{Action, BootRequest, PowerError};
use serde_json::json;

use super::{ApiError, ApiResult, bad_request, parse_mac};
use crate::app::App;
use crate::state::StateError;

/// A BMC's refusal or failure as an answer: the driver's own message, with a status that
/// says whose problem it is.
fn power_error(e: &PowerError) -> ApiError {
    use maas_power::ErrorClass;
    let status = match e.class() {
        ErrorClass::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorClass::Connection => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError(status, e.to_string())
}

/// Records the outcome of a power command and turns it into an answer.
fn power_answer(app: &App, id: &str, seen: Result<Observation, PowerError>) -> ApiResult {
    if let Ok(mac) = id.parse::<Mac>() {
        app.saw_power(mac, &seen);
    }
    seen.map(|o| Json(json!(o))).map_err(|e| power_error(&e))
}

/// The machine's MAC, checked to have a power driver.
fn powered(app: &App, mac: &str) -> Result<String, ApiError> {
    let mac = parse_mac(mac)?;
    let machine = app.state.machine(mac).ok_or(StateError::NoMachine(mac))?;
    if machine.power.is_none() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("machine {mac} has no power parameters"),
        ));
    }
    Ok(mac.to_string())
}

pub(super) async fn query(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let id = powered(&app, &mac)?;
    let seen = app.power.query(&id).await;
    power_answer(&app, &id, seen)
}

/// Network boot once, then on, confirmed by polling (MAAS's order for deploying a machine).
pub(super) async fn on(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let id = powered(&app, &mac)?;
    match app
        .power
        .set_boot_device(&id, BootRequest::pxe_once())
        .await
    {
        // Wake-on-LAN and manual machines boot what they boot.
        Err(e) if e.class() == maas_power::ErrorClass::Unsupported => {}
        other => other.map_err(|e| power_error(&e))?,
    }
    let seen = app.power.perform(&id, Action::On).await;
    power_answer(&app, &id, seen)
}

pub(super) async fn off(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let id = powered(&app, &mac)?;
    let seen = app.power.perform(&id, Action::Off).await;
    power_answer(&app, &id, seen)
}

pub(super) async fn cycle(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let id = powered(&app, &mac)?;
    let seen = app.power.perform(&id, Action::Cycle).await;
    power_answer(&app, &id, seen)
}

/// Sets the machine's boot device: `{"device": "pxe", "persistence": "once", "mode":
/// "efi"}` (persistence `once` or `persistent`, mode `auto`, `legacy` or `efi`).
pub(super) async fn set_boot(
    AxumState(app): AxumState<App>,
    Path(mac): Path<String>,
    body: Result<Json<BootRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let id = powered(&app, &mac)?;
    let Json(boot) = body.map_err(|e| bad_request(e.body_text()))?;
    app.power
        .set_boot_device(&id, boot)
        .await
        .map_err(|e| power_error(&e))?;
    Ok(Json(json!({ "mac": id, "boot": boot })))
}

/// `POST /api/v1/machines/{mac}/commission`: the machine boots the ephemeral environment next
/// and must report within `[controller] commissioning_timeout_secs`. With power parameters it
/// is powered on (network boot first), or power-cycled when it is on.
pub(super) async fn commission(
    AxumState(app): AxumState<App>,
    Path(mac): Path<String>,
) -> ApiResult {
    let mac = parse_mac(&mac)?;
    let now = crate::now();
    let deadline = maas_net::Timestamp(
        now.0
            .saturating_add(app.config.controller.commissioning_timeout_secs),
    );
    let (machine, ticket) = app.state.commission(mac, deadline, now)?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "commissioning", mac = %mac);
    let power = boot_from_network(&app, &machine).await?;
    let mut shown = app.shown(&machine);
    shown["power_action"] = power;
    Ok(Json(shown))
}

/// Boots `machine` from the network next (once), then powers it on, or cycles it when it is
/// on; what the BMC said (`null` without power parameters). A BMC's refusal of the boot
/// device (other than "unsupported") is the answer.
pub(crate) async fn boot_from_network(
    app: &App,
    machine: &crate::state::Machine,
) -> Result<serde_json::Value, ApiError> {
    let mac = machine.mac;
    let mut power = json!(null);
    if machine.power.is_some() {
        let id = mac.to_string();
        match app
            .power
            .set_boot_device(&id, BootRequest::pxe_once())
            .await
        {
            Err(e) if e.class() != maas_power::ErrorClass::Unsupported => {
                return Err(power_error(&e));
            }
            _ => {}
        }
        let on = matches!(
            app.power.query(&id).await,
            Ok(Observation {
                state: maas_power::PowerState::On,
                ..
            })
        );
        let action = if on { Action::Cycle } else { Action::On };
        let seen = app.power.perform(&id, action).await;
        app.saw_power(mac, &seen);
        power = match seen {
            Ok(o) => json!(o),
            Err(e) => json!({ "error": e.to_string() }),
        };
    }
    Ok(power)
}

/// Powers `machine` off when it has power parameters; what the BMC said (`null` without).
pub(crate) async fn power_off(app: &App, machine: &crate::state::Machine) -> serde_json::Value {
    if machine.power.is_none() {
        return json!(null);
    }
    let id = machine.mac.to_string();
    let seen = app.power.perform(&id, Action::Off).await;
    app.saw_power(machine.mac, &seen);
    match seen {
        Ok(o) => json!(o),
        Err(e) => json!({ "error": e.to_string() }),
    }
}
