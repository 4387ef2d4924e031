//! Deploying a machine, as MAAS does it: the API's `deploy` and `release`, what the ephemeral
//! environment in deploy mode fetches and reports on boot HTTP, and the deployed system's
//! NoCloud seed.
//!
//! The environment (`maas_action=deploy`) asks, with its machine credential:
//!
//! | request | answer |
//! |---|---|
//! | `GET /metadata/v1/deploy` | `key=value` lines: `image_url`, `image_sha256`, `image_size`, `image_format`, `root_partition` |
//! | `GET /metadata/v1/deploy/datasource.cfg` | cloud-init's datasource configuration: NoCloud with the seed URL (a fresh seed token each time) |
//! | `GET /metadata/v1/deploy/networking.cfg` | the machine's network configuration (`network:` version 2) |
//! | `POST /metadata/v1/deployment` | `{"status": "ok"}` once the image is written, or `{"status": "failed", "error": ...}` |
//!
//! It writes the image to the first disk (checking its SHA-256), drops the two files into the
//! root file system's `/etc/cloud/cloud.cfg.d/` (as curtin drops its own), reports, and
//! reboots; the machine is Deployed and from then on boots its own disk (DHCP sends it no boot
//! file). The deployed system's cloud-init reads `GET /metadata/v1/seed/<seed token>/`
//! `meta-data`, `user-data`, `vendor-data` and `network-config`: the token in the URL is the
//! only credential NoCloud can present, is good for that machine's deployment only, and is
//! stored hashed.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use maas_net::Mac;
use maas_net::netplan::Format;
use serde::Deserialize;

use crate::app::App;
use crate::auth::token::Token;
use crate::ephemeral::machine_caller;
use crate::now;
use crate::region::{ApiError, ApiResult, bad_request, parse_mac};
use crate::state::deploy::DeployOutcome;
use crate::state::{Machine, StateError, Status};

/// The body of `POST /api/v1/machines/{mac}/deploy`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeployRequest {
    /// The OS (`debian`); default: any imported image for the machine's architecture.
    #[serde(default)]
    osystem: Option<String>,
    /// The release (`bookworm`); default: the newest imported.
    #[serde(default)]
    distro_series: Option<String>,
    /// cloud-init user data, base64-encoded (as MAAS takes it).
    #[serde(default)]
    user_data: Option<String>,
}

/// The most user data taken (MAAS's limit is the database's; cloud-init's seed stays small).
const MAX_USER_DATA: usize = 64 * 1024;

/// `POST /api/v1/machines/{mac}/deploy`: gives the machine's `auto` links their addresses,
/// boots it into the ephemeral environment in deploy mode (powering it on through its BMC),
/// and answers the machine Deploying. It must report within
/// `[controller] deployment_timeout_secs`.
pub(crate) async fn deploy_api(
    AxumState(app): AxumState<App>,
    axum::Extension(caller): crate::auth::Caller,
    Path(mac): Path<String>,
    body: Option<Json<serde_json::Value>>,
) -> ApiResult {
    let mac = parse_mac(&mac)?;
    // Only the machine's owner (or an admin) deploys it, as MAAS has it.
    let actor = crate::region::allocation::actor(&caller)?;
    app.state.check_owner(mac, &actor)?;
    let request: DeployRequest = match body {
        Some(Json(v)) => serde_json::from_value(v).map_err(|e| bad_request(e.to_string()))?,
        None => DeployRequest::default(),
    };
    let user_data = match &request.user_data {
        None => None,
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| bad_request(format!("user_data: not base64: {e}")))?;
            if bytes.len() > MAX_USER_DATA {
                return Err(bad_request(format!(
                    "user_data: {} bytes, at most {MAX_USER_DATA}",
                    bytes.len()
                )));
            }
            Some(String::from_utf8(bytes).map_err(|_| bad_request("user_data: not UTF-8 text"))?)
        }
    };
    let machine = app.state.machine(mac).ok_or(StateError::NoMachine(mac))?;
    let arch = machine
        .architecture
        .as_deref()
        .and_then(|a| a.split('/').next())
        .unwrap_or("amd64")
        .to_owned();
    let image = app
        .state
        .os_image(
            &arch,
            request.osystem.as_deref(),
            request.distro_series.as_deref(),
        )
        .ok_or_else(|| {
            bad_request(format!(
                "no OS image for {arch}{}{} is imported (maas-controller boot-resource import DIR)",
                request
                    .osystem
                    .as_deref()
                    .map(|o| format!(", {o}"))
                    .unwrap_or_default(),
                request
                    .distro_series
                    .as_deref()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default(),
            ))
        })?;
    let now = now();
    let deadline = maas_net::Timestamp(
        now.0
            .saturating_add(app.config.controller.deployment_timeout_secs),
    );
    let (machine, ticket) = app
        .state
        .deploy(mac, image.key(), user_data, deadline, now)?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "deploying", mac = %mac, image = image.key());
    let power = crate::region::power::boot_from_network(&app, &machine).await;
    let power = match power {
        Ok(p) if p.get("error").is_none() => p,
        Ok(p) => return Err(power_failed(&app, mac, p["error"].to_string()).await),
        Err(e) => return Err(power_failed(&app, mac, e.1).await),
    };
    let mut shown = app.shown(&machine);
    shown["power_action"] = power;
    Ok(Json(shown))
}

/// A power-on that failed ends the deployment at once (Failed deployment, with the BMC's
/// words); the answer says so.
async fn power_failed(app: &App, mac: Mac, why: String) -> ApiError {
    let reason = format!("powering on failed: {why}");
    if let Ok((_, ticket)) =
        app.state
            .deployment_reported(mac, DeployOutcome::Failed(reason.clone()), now())
    {
        let _ = app.state.durable(ticket).await;
    }
    tracing::warn!(event = "deployment_failed", mac = %mac, reason = %reason);
    ApiError(StatusCode::BAD_GATEWAY, reason)
}

/// Releases a machine that ran something (the release route's path for Deploying, Deployed,
/// Failed deployment and Releasing machines): Releasing, powered off, the addresses its
/// deployment took freed, owner cleared, Ready.
pub(crate) async fn release_deployed(app: &App, mac: Mac) -> ApiResult {
    let (machine, ticket) = app.state.releasing(mac, now())?;
    app.state.durable(ticket).await?;
    let power = crate::region::power::power_off(app, &machine).await;
    let (machine, ticket) = app.state.released(mac, now())?;
    app.state.durable(ticket).await?;
    tracing::info!(event = "released", mac = %mac);
    let mut shown = app.shown(&machine);
    shown["power_action"] = power;
    Ok(Json(shown))
}

fn source_of(connect: Option<&axum::Extension<ConnectInfo<std::net::SocketAddr>>>) -> IpAddr {
    crate::ephemeral::source_of(connect.map(|c| &c.0))
}

/// The deploying machine a request's credential belongs to, or the refusal.
fn deploying_caller(
    app: &App,
    headers: &HeaderMap,
    connect: Option<&axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
) -> Result<Machine, Box<Response>> {
    let refuse = |e: ApiError| Box::new(e.into_response());
    let mac = machine_caller(app, headers, source_of(connect))?;
    let machine = app
        .state
        .machine(mac)
        .ok_or_else(|| refuse(StateError::NoMachine(mac).into()))?;
    if machine.status != Status::Deploying {
        return Err(refuse(ApiError(
            StatusCode::CONFLICT,
            format!(
                "machine {mac} is {}, not deploying",
                machine.status.as_str()
            ),
        )));
    }
    Ok(machine)
}

/// On a rack, the deploy endpoints would act on its copy of the region's state, where a
/// report or a seed would be lost: they are refused until racks forward them.
fn on_rack(app: &App) -> Option<Response> {
    app.region.as_ref().map(|_| {
        ApiError(
            StatusCode::NOT_IMPLEMENTED,
            "deployment through a rack is not supported yet: deploy on a network the region \
             serves itself (role all)"
                .into(),
        )
        .into_response()
    })
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The `host:port` the machine reached boot HTTP at.
fn server_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        })
        .map(str::to_owned)
}

/// `GET /metadata/v1/deploy`: what to write.
pub(crate) async fn plan_http(
    AxumState(app): AxumState<App>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = on_rack(&app) {
        return refused;
    }
    let machine = match deploying_caller(&app, &headers, connect.as_ref()) {
        Ok(m) => m,
        Err(refused) => return *refused,
    };
    let Some(server) = server_of(&headers) else {
        return bad_request("no usable Host header").into_response();
    };
    let key = machine
        .deployment
        .as_ref()
        .map(|d| d.image.clone())
        .unwrap_or_default();
    let Some(resource) = app.state.resources().into_iter().find(|r| r.key() == key) else {
        return ApiError(
            StatusCode::CONFLICT,
            format!("the image {key} is no longer imported"),
        )
        .into_response();
    };
    let Some(image) = &resource.image else {
        return ApiError(StatusCode::CONFLICT, format!("{key} is not an OS image")).into_response();
    };
    text(format!(
        "image_url=http://{server}/{}\nimage_sha256={}\nimage_size={}\nimage_format={}\nimage_raw_size={}\nroot_partition={}\n",
        resource.url_path(&image.file),
        image.file.sha256,
        image.file.size,
        image.format,
        image.raw_size,
        image.root_partition,
    ))
}

/// `GET /metadata/v1/deploy/datasource.cfg` and `.../networking.cfg`: the files the
/// environment drops into the deployed system's `/etc/cloud/cloud.cfg.d/`.
pub(crate) async fn file_http(
    AxumState(app): AxumState<App>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(refused) = on_rack(&app) {
        return refused;
    }
    let machine = match deploying_caller(&app, &headers, connect.as_ref()) {
        Ok(m) => m,
        Err(refused) => return *refused,
    };
    let Some(server) = server_of(&headers) else {
        return bad_request("no usable Host header").into_response();
    };
    match name.as_str() {
        "datasource.cfg" => {
            let (token, ticket) = match app.state.new_seed(machine.mac) {
                Ok(t) => t,
                Err(e) => return ApiError::from(e).into_response(),
            };
            if let Err(e) = app.state.durable(ticket).await {
                return ApiError::from(e).into_response();
            }
            text(format!(
                "# Written at deployment by maas-rs: where cloud-init finds this machine's \
                 configuration.\ndatasource_list: [NoCloud, None]\ndatasource:\n  NoCloud:\n    \
                 seedfrom: http://{server}/metadata/v1/seed/{token}/\n"
            ))
        }
        "networking.cfg" => {
            match app
                .state
                .render_network(machine.mac, &app.render_options(), Format::V2)
            {
                Ok(doc) => text(format!(
                    "# Written at deployment by maas-rs: this machine's network configuration.\n{doc}"
                )),
                Err(e) => ApiError::from(e).into_response(),
            }
        }
        other => ApiError(StatusCode::NOT_FOUND, format!("{other}: no such file")).into_response(),
    }
}

/// What the environment reports at the end.
#[derive(Debug, Deserialize)]
pub(crate) struct DeployReport {
    status: String,
    #[serde(default)]
    error: Option<String>,
}

/// `POST /metadata/v1/deployment`.
pub(crate) async fn report_http(
    AxumState(app): AxumState<App>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = on_rack(&app) {
        return refused;
    }
    let mac = match machine_caller(&app, &headers, source_of(connect.as_ref())) {
        Ok(mac) => mac,
        Err(refused) => return *refused,
    };
    let report: DeployReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e.to_string()).into_response(),
    };
    let outcome = match report.status.as_str() {
        "ok" => DeployOutcome::Deployed,
        "failed" => DeployOutcome::Failed(
            report
                .error
                .map(|e| e.chars().take(256).collect())
                .unwrap_or_else(|| "the environment gave no reason".into()),
        ),
        other => return bad_request(format!("status {other:?}: ok or failed")).into_response(),
    };
    match app.state.deployment_reported(mac, outcome, now()) {
        Ok((machine, ticket)) => {
            if let Err(e) = app.state.durable(ticket).await {
                return ApiError::from(e).into_response();
            }
            tracing::info!(event = "deployment_reported", mac = %mac, status = machine.status.as_str());
            (StatusCode::OK, Json(app.shown(&machine))).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /metadata/v1/seed/{token}/{file}`: the deployed system's NoCloud seed.
pub(crate) async fn seed_http(
    AxumState(app): AxumState<App>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Path((token, file)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = on_rack(&app) {
        return refused;
    }
    let source = source_of(connect.as_ref());
    let elapsed = app.guard.elapsed();
    if let Some(slowed) = crate::ephemeral::throttled(&app, source, elapsed) {
        return slowed;
    }
    let machine = Token::parse(token.as_bytes())
        .ok()
        .and_then(|t| app.state.seed_owner(&t));
    let Some(machine) = machine else {
        app.guard.failed(source, elapsed);
        app.metrics.auth_refused.inc();
        // The path is a secret: it is not logged.
        tracing::warn!(event = "auth_refused", source = %source, route = "/metadata/v1/seed", reason = "not a current seed");
        return ApiError(StatusCode::NOT_FOUND, "no such seed".into()).into_response();
    };
    app.guard.succeeded(source);
    let deployment =
        machine
            .deployment
            .clone()
            .unwrap_or_else(|| crate::state::deploy::Deployment {
                image: String::new(),
                user_data: None,
                started: now(),
                deadline: None,
                seed_hash: None,
            });
    match file.as_str() {
        "meta-data" => text(format!(
            "instance-id: {}-{}\nlocal-hostname: {}\n",
            machine.hostname, deployment.started.0, machine.hostname
        )),
        "user-data" => text(
            deployment
                .user_data
                .unwrap_or_else(|| "#cloud-config\n{}\n".to_owned()),
        ),
        "vendor-data" => text(vendor_data(&app, &machine, server_of(&headers).as_deref())),
        "network-config" => {
            match app
                .state
                .render_network(machine.mac, &app.render_options(), Format::V2)
            {
                Ok(doc) => text(doc),
                Err(e) => ApiError::from(e).into_response(),
            }
        }
        other => {
            ApiError(StatusCode::NOT_FOUND, format!("{other}: no such seed file")).into_response()
        }
    }
}

/// The vendor data: the proxy for apt when the machine's subnet allows it and the controller
/// runs one (reached at the address the machine reached boot HTTP at).
fn vendor_data(app: &App, machine: &Machine, server: Option<&str>) -> String {
    let mut out = String::from("#cloud-config\n");
    let allowed = machine.ip.is_some_and(|ip| {
        app.state.ipam.read(|ipam| {
            ipam.topology()
                .subnet_containing(ip)
                .and_then(|s| ipam.topology().subnet(s))
                .is_some_and(|s| s.allow_proxy)
        })
    });
    let host = server.map(|s| match s.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h.to_owned(),
        _ => s.to_owned(),
    });
    match (&app.config.proxy, host) {
        (Some(proxy), Some(host)) if allowed => {
            out.push_str(&format!(
                "apt:\n  http_proxy: http://{host}:{port}/\n  https_proxy: http://{host}:{port}/\n",
                port = proxy.listen.port()
            ));
        }
        _ => out.push_str("{}\n"),
    }
    out
}

/// Fails deployments whose environment did not report in time, every 10 s.
pub(crate) async fn watch_deployments(app: App) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        ticks.tick().await;
        match app.state.deployment_overdue(now()) {
            Ok((failed, Some(ticket))) => {
                if app.state.durable(ticket).await.is_ok() {
                    for m in failed {
                        tracing::warn!(event = "deployment_failed", mac = %m.mac, reason = "timeout");
                    }
                }
            }
            Ok((_, None)) => {}
            Err(e) => tracing::error!(event = "store_error", error = %e),
        }
    }
}
