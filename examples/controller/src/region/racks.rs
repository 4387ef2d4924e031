//! The endpoints racks call (`/api/v1/rack/...`), behind the cluster secret and the protocol
//! version check, and the list of racks seen.

use axum::Json;
use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{ApiError, ApiResult, bad_request};
use crate::app::{App, RackSeen};
use crate::now;
use crate::protocol::{
    DiscoveryReport, LeaseBatch, LeaseBatchAnswer, LeaseOp, LeaseOutcome, LeaseReport,
    PROTOCOL_VERSION, RACK_HEADER, RackConfig, SeenReport, VERSION_HEADER,
};

/// The endpoints racks use, behind the shared secret.
pub(super) fn router(app: App) -> Router<App> {
    Router::new()
        .route("/config", get(rack_config))
        .route("/leases", post(rack_lease))
        .route("/leases/batch", post(rack_lease_batch))
        .route("/seen", post(rack_seen))
        .route("/discoveries", post(rack_discovery))
        .layer(axum::middleware::from_fn_with_state(app, rack_auth))
}

/// Lets a request through when it carries `Authorization: Bearer <[cluster] secret>`.
async fn rack_auth(
    AxumState(app): AxumState<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(secret) = &app.config.cluster.secret else {
        return ApiError(
            StatusCode::FORBIDDEN,
            "this controller takes no racks: [cluster] secret is not set".into(),
        )
        .into_response();
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Compared in time independent of where the first difference is.
    let same = given.len() == secret.len()
        && given
            .bytes()
            .zip(secret.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong or missing rack secret".into(),
        )
        .into_response();
    }
    let version = request
        .headers()
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    if version != Some(PROTOCOL_VERSION) {
        return ApiError(
            StatusCode::CONFLICT,
            format!(
                "this region speaks rack protocol {PROTOCOL_VERSION}; the rack sent {}: run the same version on both",
                version.map_or_else(|| "none".to_string(), |v| v.to_string())
            ),
        )
        .into_response();
    }
    let name = request
        .headers()
        .get(RACK_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unnamed")
        .chars()
        .take(64)
        .collect::<String>();
    {
        let mut racks = app
            .racks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = racks.entry(name.clone()).or_insert_with(|| {
            tracing::info!(event = "rack_connected", rack = name);
            RackSeen {
                name: name.clone(),
                ..RackSeen::default()
            }
        });
        entry.last_contact = now().0;
    }
    let mut request = request;
    request.extensions_mut().insert(RackName(name));
    next.run(request).await
}

/// The name a rack gave, for the handlers.
#[derive(Clone)]
struct RackName(String);

impl App {
    fn rack_count(&self, name: &str, f: impl FnOnce(&mut RackSeen)) {
        if let Some(entry) = self
            .racks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(name)
        {
            f(entry);
        }
    }
}

pub(super) async fn list(AxumState(app): AxumState<App>) -> Json<Value> {
    let racks = app
        .racks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .cloned()
        .collect::<Vec<_>>();
    Json(json!(racks))
}

/// What a rack needs to serve: the network model, every address record (its DHCP mirror),
/// the machines (secrets masked) and the boot templates.
async fn rack_config(AxumState(app): AxumState<App>) -> Json<RackConfig> {
    let (topology, snapshot) = app
        .state
        .ipam
        .read(|ipam| (ipam.topology().to_doc(), ipam.snapshot()));
    let controller = &app.config.controller;
    Json(RackConfig {
        protocol: PROTOCOL_VERSION,
        topology,
        snapshot,
        machines: app
            .state
            .machines()
            .iter()
            .map(crate::app::masked)
            .collect(),
        ipxe_script: controller.ipxe_script.clone(),
        pxelinux_template: controller.pxelinux_template.clone(),
        grub_template: controller.grub_template.clone(),
        lease_secs: app.config.dhcp.lease_secs,
    })
}

type StoreTicket =
    <maas_ipam::Durable<maas_ipam::RedbStore> as maas_pxe::dhcp::server::Leases>::Ticket;

/// Hands `report` to the address manager; the ticket to wait for before it is durable.
fn submit_lease(app: &App, report: &LeaseReport) -> Result<Option<StoreTicket>, ApiError> {
    use maas_pxe::dhcp::server::Leases;
    let leases = &*app.state.ipam;
    let now = now();
    let result = match report.op {
        LeaseOp::Bind => Leases::bind(
            leases,
            report.ip,
            &report.client,
            report.hostname.as_deref(),
            now,
            report.lease_secs.unwrap_or(app.config.dhcp.lease_secs),
        )
        .map(|b| b.ticket),
        LeaseOp::Release => Leases::release(leases, report.ip, &report.client),
        LeaseOp::Decline => Leases::decline(
            leases,
            report.ip,
            &report.client,
            now,
            report.quarantine_secs.unwrap_or(600),
        ),
    };
    result.map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))
}

/// Waits for `ticket`, counts and logs the outcome; the address's record once durable.
async fn finish_lease(
    app: &App,
    rack: &str,
    report: &LeaseReport,
    submitted: Result<Option<StoreTicket>, ApiError>,
) -> Result<Option<maas_ipam::Record>, ApiError> {
    use maas_pxe::dhcp::server::Leases;
    let result = match submitted {
        Ok(Some(ticket)) => Leases::wait_async(&*app.state.ipam, ticket)
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        app.rack_count(rack, |r| r.leases_refused += 1);
        tracing::warn!(
            event = "rack_lease_refused",
            rack,
            op = report.op.as_str(),
            ip = %report.ip,
            error = e.1,
        );
    } else {
        app.rack_count(rack, |r| r.leases_recorded += 1);
        tracing::info!(
            event = "rack_lease",
            rack,
            op = report.op.as_str(),
            ip = %report.ip,
            client = %report.client,
        );
    }
    result?;
    Ok(app.state.ipam.read(|ipam| ipam.record(report.ip).cloned()))
}

/// One lease operation: recorded (durably) before the answer, or refused with the address
/// manager's reason.
async fn rack_lease(
    AxumState(app): AxumState<App>,
    axum::Extension(RackName(rack)): axum::Extension<RackName>,
    body: Result<Json<LeaseReport>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(report) = body.map_err(|e| bad_request(e.body_text()))?;
    let submitted = submit_lease(&app, &report);
    finish_lease(&app, &rack, &report, submitted)
        .await
        .map(|record| Json(json!(record)))
}

/// The most operations one batch may carry.
const MAX_BATCH: usize = 4096;

/// Many lease operations, applied in order and committed together; the answer lists, in
/// the same order, `{"record": ...}` or `{"error": ...}` for each.
async fn rack_lease_batch(
    AxumState(app): AxumState<App>,
    axum::Extension(RackName(rack)): axum::Extension<RackName>,
    body: Result<Json<LeaseBatch>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<LeaseBatchAnswer>, ApiError> {
    let Json(batch) = body.map_err(|e| bad_request(e.body_text()))?;
    if batch.reports.len() > MAX_BATCH {
        return Err(bad_request(format!(
            "{} reports: at most {MAX_BATCH} per batch",
            batch.reports.len()
        )));
    }
    // Everything is handed to the store first, so one commit covers the whole batch.
    let submitted: Vec<_> = batch
        .reports
        .iter()
        .map(|report| submit_lease(&app, report))
        .collect();
    let mut results = Vec::with_capacity(submitted.len());
    for (report, submitted) in batch.reports.iter().zip(submitted) {
        results.push(match finish_lease(&app, &rack, report, submitted).await {
            Ok(record) => LeaseOutcome::Record(record),
            Err(e) => LeaseOutcome::Error(e.1),
        });
    }
    Ok(Json(LeaseBatchAnswer { results }))
}

async fn rack_seen(
    AxumState(app): AxumState<App>,
    axum::Extension(RackName(rack)): axum::Extension<RackName>,
    body: Result<Json<SeenReport>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(seen) = body.map_err(|e| bad_request(e.body_text()))?;
    match app
        .seen_booting(seen.mac, seen.ip, seen.boot, Some(&rack))
        .await?
    {
        Some(machine) => Ok(Json(app.shown(&machine))),
        None => Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{}: enlistment refused by its limits", seen.mac),
        )),
    }
}

async fn rack_discovery(
    AxumState(app): AxumState<App>,
    axum::Extension(RackName(rack)): axum::Extension<RackName>,
    body: Result<Json<DiscoveryReport>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(event) = body.map_err(|e| bad_request(e.body_text()))?;
    let (entry, ticket) = app.state.discovered(&event, now())?;
    app.state.durable(ticket).await?;
    app.metrics.discoveries.inc();
    app.rack_count(&rack, |r| r.discoveries += 1);
    Ok(Json(json!(entry)))
}
