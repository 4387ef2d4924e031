//! The HTTP JSON API (`/api/v1/...`), Prometheus `/metrics`, and the boot HTTP server (iPXE
//! scripts per machine, boot assets). Errors are JSON objects `{"error": "..."}` carrying the
//! engine's own message.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maas_ipam::{AddressKind, AssignOptions, Requested};
use maas_net::Mac;
use maas_pxe::tftp::{MachineFile, MachineId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Config, MachineConfig};
use crate::now;
use crate::state::{Machine, State, StateError, Status};
use maas_power::manager::Observation;
use maas_power::manager::{ManagerConfig, PowerManager};
use maas_power::params::DriverParams;
use maas_power::{Action, BootRequest, PowerError};

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) api_requests: AtomicU64,
    pub(crate) api_errors: AtomicU64,
    pub(crate) boot_scripts: AtomicU64,
    pub(crate) dhcp_events: std::sync::Mutex<BTreeMap<String, u64>>,
    pub(crate) enlisted: AtomicU64,
    pub(crate) tftp_transfers: AtomicU64,
    pub(crate) discoveries: AtomicU64,
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) state: Arc<State>,
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    /// One entry per machine with power parameters, keyed by its MAC.
    pub(crate) power: Arc<PowerManager>,
    /// The last power state seen of each machine (by an action, a query or the monitor).
    pub(crate) power_seen: Arc<std::sync::Mutex<BTreeMap<Mac, PowerSeen>>>,
    /// The proxy, once started (for its counters).
    pub(crate) proxy: Arc<std::sync::OnceLock<maas_proxy::server::Proxy>>,
    /// A rack's region (what the rack learns is reported there); `None` elsewhere.
    pub(crate) region: Option<Arc<crate::rack::Region>>,
    /// The racks that reported to this region: name, last contact, reports.
    pub(crate) racks: Arc<std::sync::Mutex<BTreeMap<String, RackSeen>>>,
}

/// A rack as its region saw it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct RackSeen {
    pub(crate) name: String,
    pub(crate) last_contact: u64,
    pub(crate) leases_recorded: u64,
    pub(crate) leases_refused: u64,
    pub(crate) discoveries: u64,
}

/// A machine's power state as last seen, or why it could not be.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct PowerSeen {
    /// `on`, `off`, `unknown`, or `error`.
    pub(crate) state: String,
    /// The driver's message when the query failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// When, in seconds since the Unix epoch.
    pub(crate) at: u64,
}

impl App {
    /// The controller's parts around `state`; every machine with power parameters gets its
    /// driver (a machine whose parameters do not make a driver is reported and left out).
    pub(crate) fn new(state: State, config: Config) -> Self {
        let mut manager_config = ManagerConfig::default();
        manager_config.max_concurrent_queries(config.power.max_concurrent_queries);
        let app = Self {
            state: Arc::new(state),
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            power: Arc::new(PowerManager::new(manager_config)),
            power_seen: Arc::default(),
            proxy: Arc::default(),
            region: None,
            racks: Arc::default(),
        };
        for machine in app.state.machines() {
            if let Err(e) = app.register_power(&machine) {
                crate::log(&json!({ "event": "power_error", "mac": machine.mac, "error": e }));
            }
        }
        app
    }

    /// (Re)registers `machine`'s power driver with the manager.
    fn register_power(&self, machine: &Machine) -> Result<(), String> {
        let id = machine.mac.to_string();
        self.power.remove(&id);
        let Some(power) = &machine.power else {
            return Ok(());
        };
        let params: DriverParams =
            serde_json::from_value(power.clone()).map_err(|e| format!("power parameters: {e}"))?;
        let driver = maas_power::build(&params).map_err(|e| e.to_string())?;
        self.power.insert(id, driver);
        Ok(())
    }
}

impl App {
    /// Records what a power action or query found out about `mac`; logs changes of state.
    pub(crate) fn saw_power(&self, mac: Mac, seen: &Result<Observation, PowerError>) {
        let entry = match seen {
            Ok(o) => PowerSeen {
                state: json!(o.state).as_str().unwrap_or("unknown").to_string(),
                error: None,
                at: o
                    .at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            },
            Err(e) => PowerSeen {
                state: "error".into(),
                error: Some(e.to_string()),
                at: now().0,
            },
        };
        let mut all = self
            .power_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = all.get(&mac).map(|p| p.state.clone());
        if before.as_deref() != Some(entry.state.as_str()) {
            crate::log(&json!({
                "event": "power_state",
                "mac": mac,
                "state": entry.state,
                "was": before,
                "error": entry.error,
            }));
        }
        all.insert(mac, entry);
    }

    /// One round of the power monitor: every machine with a driver is queried, at most
    /// `[power] max_concurrent_queries` at once.
    pub(crate) async fn monitor_round(&self) -> usize {
        let macs: Vec<Mac> = self
            .state
            .machines()
            .into_iter()
            .filter(|m| m.power.is_some())
            .map(|m| m.mac)
            .collect();
        let results = self
            .power
            .query_many(macs.iter().map(ToString::to_string))
            .await;
        let n = results.len();
        for (id, result) in results {
            if let Ok(mac) = id.parse::<Mac>() {
                self.saw_power(mac, &result);
            }
        }
        n
    }

    /// A machine as the API shows it: secrets masked, its last power state added.
    fn shown(&self, machine: &Machine) -> Value {
        let mut value = shown(machine);
        let seen = self
            .power_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&machine.mac)
            .cloned();
        if let Some(object) = value.as_object_mut() {
            object.insert("power_state".into(), json!(seen));
        }
        value
    }
}

/// A machine with the secrets in its power parameters masked.
fn shown(machine: &Machine) -> Value {
    let mut value = json!(machine);
    if let Some(power) = value.get_mut("power").and_then(Value::as_object_mut) {
        for (key, v) in power.iter_mut() {
            if ["pass", "k_g", "token", "secret"]
                .iter()
                .any(|s| key.contains(s))
                && !v.is_null()
            {
                *v = json!("********");
            }
        }
    }
    value
}

/// An error answer: a status and the message.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        let status = match e {
            StateError::NoMachine(_) => StatusCode::NOT_FOUND,
            StateError::Exists(_) => StatusCode::CONFLICT,
            StateError::Invalid(_) => StatusCode::BAD_REQUEST,
            StateError::Io { .. } | StateError::Ipam(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, e.to_string())
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn ipam_error(e: impl std::fmt::Display) -> ApiError {
    // The engine's refusals (in use, outside the subnet, exhausted) are the caller's to fix.
    ApiError(StatusCode::CONFLICT, e.to_string())
}

type ApiResult = Result<Json<Value>, ApiError>;

/// The API router.
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/api/v1/version", get(version))
        .route("/api/v1/zones", get(zones))
        .route("/api/v1/subnets", get(subnets))
        .route("/api/v1/subnets/{id}/statistics", get(subnet_statistics))
        .route("/api/v1/ipranges", get(ip_ranges))
        .route("/api/v1/leases", get(leases))
        .route(
            "/api/v1/ipaddresses",
            get(ip_addresses).post(reserve_ip_address),
        )
        .route(
            "/api/v1/ipaddresses/{ip}",
            axum::routing::delete(release_ip_address),
        )
        .route("/api/v1/discoveries", get(discoveries))
        .route("/api/v1/machines", get(machines).post(create_machine))
        .route(
            "/api/v1/machines/{mac}",
            get(machine).delete(delete_machine),
        )
        .route("/api/v1/machines/{mac}/accept", post(accept_machine))
        .route("/api/v1/machines/{mac}/power", get(power_query))
        .route("/api/v1/machines/{mac}/power-on", post(power_on))
        .route("/api/v1/machines/{mac}/power-off", post(power_off))
        .route("/api/v1/machines/{mac}/power-cycle", post(power_cycle))
        .route("/api/v1/machines/{mac}/boot", post(set_boot))
        .route("/api/v1/racks", get(racks))
        .nest("/api/v1/rack", rack_router(app.clone()))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint (see examples/controller/openapi.yaml)".into(),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            count_requests,
        ))
        .with_state(app)
}

async fn count_requests(
    AxumState(app): AxumState<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    app.metrics.api_requests.fetch_add(1, Ordering::Relaxed);
    let response = next.run(request).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        app.metrics.api_errors.fetch_add(1, Ordering::Relaxed);
    }
    response
}

async fn version() -> Json<Value> {
    Json(json!({ "name": "maas-rs controller", "version": env!("CARGO_PKG_VERSION") }))
}

async fn zones(AxumState(app): AxumState<App>) -> Json<Value> {
    let topology = app.state.ipam.read(|ipam| ipam.topology().clone());
    Json(json!(
        topology
            .zones()
            .map(|(id, z)| json!({ "id": id, "name": z.name, "description": z.description }))
            .collect::<Vec<_>>()
    ))
}

async fn subnets(AxumState(app): AxumState<App>) -> Json<Value> {
    let list = app.state.ipam.read(|ipam| {
        ipam.topology()
            .subnets()
            .map(|(id, s)| {
                let stats = ipam.statistics(id, false, false).ok();
                json!({
                    "id": id,
                    "cidr": s.cidr,
                    "vlan": s.vlan,
                    "gateway_ip": s.gateway_ip,
                    "dns_servers": s.dns_servers,
                    "managed": s.managed,
                    "allow_proxy": s.allow_proxy,
                    "active_discovery": s.active_discovery,
                    "statistics": stats,
                })
            })
            .collect::<Vec<_>>()
    });
    Json(json!(list))
}

async fn subnet_statistics(AxumState(app): AxumState<App>, Path(id): Path<String>) -> ApiResult {
    let id: maas_net::SubnetId = id
        .parse::<u32>()
        .map_err(|_| bad_request(format!("{id:?} is not a subnet id")))?
        .into();
    app.state
        .ipam
        .read(|ipam| ipam.statistics(id, true, true))
        .map(|s| Json(json!(s)))
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))
}

async fn ip_ranges(AxumState(app): AxumState<App>) -> Json<Value> {
    let topology = app.state.ipam.read(|ipam| ipam.topology().clone());
    Json(json!(
        topology
            .ip_ranges()
            .map(|(id, r)| json!({
                "id": id,
                "subnet": r.subnet,
                "start": r.start,
                "end": r.end,
                "type": r.kind,
                "comment": r.comment,
            }))
            .collect::<Vec<_>>()
    ))
}

async fn leases(AxumState(app): AxumState<App>) -> Json<Value> {
    let list = app
        .state
        .ipam
        .read(|ipam| ipam.leases().map(|r| json!(r)).collect::<Vec<_>>());
    Json(json!(list))
}

async fn ip_addresses(AxumState(app): AxumState<App>) -> Json<Value> {
    let list = app.state.ipam.read(|ipam| {
        ipam.records()
            .filter(|r| r.kind != AddressKind::Dhcp)
            .chain(ipam.discoveries())
            .map(|r| json!(r))
            .collect::<Vec<_>>()
    });
    Json(json!(list))
}

/// `POST /api/v1/ipaddresses`: reserve an address (`ip`), or the next free one of a subnet
/// (`subnet`, MAAS's AUTO choice), as sticky (a machine's) or user-reserved.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reserve {
    ip: Option<IpAddr>,
    subnet: Option<u32>,
    #[serde(default)]
    kind: Option<String>,
    mac: Option<Mac>,
    owner: Option<String>,
}

async fn reserve_ip_address(
    AxumState(app): AxumState<App>,
    body: Result<Json<Reserve>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(req) = body.map_err(|e| bad_request(e.body_text()))?;
    let kind = match req.kind.as_deref().unwrap_or("user_reserved") {
        "user_reserved" => Requested::UserReserved,
        "sticky" => Requested::Sticky,
        other => {
            return Err(bad_request(format!(
                "kind {other:?}: use sticky or user_reserved"
            )));
        }
    };
    let options = AssignOptions {
        mac: req.mac,
        owner: req.owner.clone(),
        allow_reserved: false,
    };
    let now = now();
    let ip = match (req.ip, req.subnet) {
        (Some(ip), None) => {
            app.state
                .ipam
                .apply(|ipam| ipam.assign(ip, kind, &options, now))
                .map_err(ipam_error)?;
            ip
        }
        (None, Some(subnet)) => {
            let subnet: maas_net::SubnetId = subnet.into();
            let request = maas_ipam::AutoRequest {
                count: 1,
                mac: req.mac,
                owner: req.owner.clone(),
                ..Default::default()
            };
            let chosen = app
                .state
                .ipam
                .apply(|ipam| {
                    let ips = ipam.allocate(subnet, &request, now)?;
                    // AUTO picks the address; the record takes the kind asked for.
                    for ip in &ips {
                        ipam.release(*ip)?;
                        ipam.assign(*ip, kind, &options, now)?;
                    }
                    Ok(ips)
                })
                .map_err(ipam_error)?;
            *chosen
                .first()
                .ok_or_else(|| ipam_error("no address was chosen"))?
        }
        _ => return Err(bad_request("give exactly one of ip and subnet")),
    };
    let record = app.state.ipam.read(|ipam| ipam.record(ip).cloned());
    Ok((StatusCode::CREATED, Json(json!(record))))
}

async fn release_ip_address(AxumState(app): AxumState<App>, Path(ip): Path<String>) -> ApiResult {
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| bad_request(format!("{ip:?} is not an IP address")))?;
    let is_lease = app
        .state
        .ipam
        .read(|ipam| ipam.record(ip).map(|r| r.kind == AddressKind::Dhcp));
    match is_lease {
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{ip} is not recorded"),
        )),
        Some(true) => Err(ipam_error(format!(
            "{ip} is a DHCP lease: it ends when the client releases it or it expires"
        ))),
        Some(false) => {
            let record = app
                .state
                .ipam
                .apply(|ipam| ipam.release(ip))
                .map_err(ipam_error)?;
            Ok(Json(json!(record)))
        }
    }
}

async fn discoveries(AxumState(app): AxumState<App>) -> Json<Value> {
    Json(json!(app.state.discoveries()))
}

async fn machines(AxumState(app): AxumState<App>) -> Json<Value> {
    Json(Value::Array(
        app.state.machines().iter().map(|m| app.shown(m)).collect(),
    ))
}

fn parse_mac(text: &str) -> Result<Mac, ApiError> {
    text.replace('-', ":")
        .parse()
        .map_err(|e| bad_request(format!("{text:?}: {e}")))
}

async fn machine(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let mac = parse_mac(&mac)?;
    app.state
        .machine(mac)
        .map(|m| Json(app.shown(&m)))
        .ok_or_else(|| StateError::NoMachine(mac).into())
}

async fn create_machine(
    AxumState(app): AxumState<App>,
    body: Result<Json<MachineConfig>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(config) = body.map_err(|e| bad_request(e.body_text()))?;
    let zones: Vec<String> = app.state.ipam.read(|ipam| {
        ipam.topology()
            .zones()
            .map(|(_, z)| z.name.clone())
            .collect()
    });
    if let Some(power) = &config.power {
        crate::config::power_params(power).map_err(|e| bad_request(format!("power: {e}")))?;
    }
    let machine = app.state.create(&config, &zones)?;
    app.register_power(&machine).map_err(bad_request)?;
    Ok((StatusCode::CREATED, Json(app.shown(&machine))))
}

async fn delete_machine(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let mac = parse_mac(&mac)?;
    let machine = app.state.delete(mac)?;
    app.power.remove(&mac.to_string());
    Ok(Json(shown(&machine)))
}

async fn accept_machine(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let mac = parse_mac(&mac)?;
    Ok(Json(app.shown(&app.state.accept(mac)?)))
}

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

async fn power_query(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let id = powered(&app, &mac)?;
    let seen = app.power.query(&id).await;
    power_answer(&app, &id, seen)
}

/// Network boot once, then on, confirmed by polling (MAAS's order for deploying a machine).
async fn power_on(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
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

async fn power_off(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let id = powered(&app, &mac)?;
    let seen = app.power.perform(&id, Action::Off).await;
    power_answer(&app, &id, seen)
}

async fn power_cycle(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let id = powered(&app, &mac)?;
    let seen = app.power.perform(&id, Action::Cycle).await;
    power_answer(&app, &id, seen)
}

/// Sets the machine's boot device: `{"device": "pxe", "persistence": "once", "mode":
/// "efi"}` (persistence `once` or `persistent`, mode `auto`, `legacy` or `efi`).
async fn set_boot(
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

/// The endpoints racks use, behind the shared secret.
fn rack_router(app: App) -> Router<App> {
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
    let name = request
        .headers()
        .get("x-maas-rack")
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
            crate::log(&json!({ "event": "rack_connected", "rack": name }));
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

async fn racks(AxumState(app): AxumState<App>) -> Json<Value> {
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
async fn rack_config(AxumState(app): AxumState<App>) -> Json<Value> {
    let (topology, snapshot) = app
        .state
        .ipam
        .read(|ipam| (ipam.topology().to_doc(), ipam.snapshot()));
    let controller = &app.config.controller;
    Json(json!({
        "topology": topology,
        "snapshot": snapshot,
        "machines": app.state.machines().iter().map(shown).collect::<Vec<_>>(),
        "ipxe_script": controller.ipxe_script,
        "pxelinux_template": controller.pxelinux_template,
        "grub_template": controller.grub_template,
        "lease_secs": app.config.dhcp.lease_secs,
    }))
}

/// A lease operation a rack's DHCP server wants recorded before it acknowledges it.
#[derive(Deserialize)]
struct LeaseReport {
    op: String,
    ip: IpAddr,
    client: maas_net::ClientKey,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    lease_secs: Option<u32>,
    #[serde(default)]
    quarantine_secs: Option<u32>,
}

type StoreTicket =
    <maas_ipam::Durable<maas_ipam::RedbStore> as maas_pxe::dhcp::server::Leases>::Ticket;

/// Hands `report` to the address manager; the ticket to wait for before it is durable.
fn submit_lease(app: &App, report: &LeaseReport) -> Result<Option<StoreTicket>, ApiError> {
    use maas_pxe::dhcp::server::Leases;
    let leases = &*app.state.ipam;
    let now = now();
    let result = match report.op.as_str() {
        "bind" => Leases::bind(
            leases,
            report.ip,
            &report.client,
            report.hostname.as_deref(),
            now,
            report.lease_secs.unwrap_or(app.config.dhcp.lease_secs),
        )
        .map(|b| b.ticket),
        "release" => Leases::release(leases, report.ip, &report.client),
        "decline" => Leases::decline(
            leases,
            report.ip,
            &report.client,
            now,
            report.quarantine_secs.unwrap_or(600),
        ),
        other => {
            return Err(bad_request(format!(
                "op {other:?}: use bind, release or decline"
            )));
        }
    };
    result.map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))
}

/// Waits for `ticket`, counts and logs the outcome; the address's record once durable.
async fn finish_lease(
    app: &App,
    rack: &str,
    report: &LeaseReport,
    submitted: Result<Option<StoreTicket>, ApiError>,
) -> Result<Value, ApiError> {
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
        crate::log(&json!({
            "event": "rack_lease_refused", "rack": rack, "op": report.op, "ip": report.ip,
            "error": e.1,
        }));
    } else {
        app.rack_count(rack, |r| r.leases_recorded += 1);
        crate::log(&json!({
            "event": "rack_lease", "rack": rack, "op": report.op, "ip": report.ip,
            "client": report.client,
        }));
    }
    result?;
    Ok(json!(
        app.state.ipam.read(|ipam| ipam.record(report.ip).cloned())
    ))
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
        .map(Json)
}

/// Many lease operations (`{"reports": [...]}`), applied in order and committed together;
/// the answer lists, in the same order, `{"record": ...}` or `{"error": ...}` for each.
#[derive(Deserialize)]
struct LeaseBatch {
    reports: Vec<LeaseReport>,
}

/// The most operations one batch may carry.
const MAX_BATCH: usize = 4096;

async fn rack_lease_batch(
    AxumState(app): AxumState<App>,
    axum::Extension(RackName(rack)): axum::Extension<RackName>,
    body: Result<Json<LeaseBatch>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
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
            Ok(record) => json!({ "record": record }),
            Err(e) => json!({ "error": e.1 }),
        });
    }
    Ok(Json(json!({ "results": results })))
}

/// What a machine told a rack's DHCP server.
#[derive(Deserialize)]
struct SeenReport {
    mac: Mac,
    #[serde(default)]
    ip: Option<IpAddr>,
    #[serde(default)]
    boot: Option<Value>,
}

async fn rack_seen(
    AxumState(app): AxumState<App>,
    axum::Extension(RackName(rack)): axum::Extension<RackName>,
    body: Result<Json<SeenReport>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(seen) = body.map_err(|e| bad_request(e.body_text()))?;
    let known = app.state.machine(seen.mac).is_some();
    let machine = app
        .state
        .seen_booting(seen.mac, seen.ip, seen.boot, now())?;
    if !known {
        app.metrics.enlisted.fetch_add(1, Ordering::Relaxed);
        crate::log(&json!({ "event": "enlisted", "rack": rack, "machine": machine }));
    }
    Ok(Json(app.shown(&machine)))
}

async fn rack_discovery(
    AxumState(app): AxumState<App>,
    axum::Extension(RackName(rack)): axum::Extension<RackName>,
    body: Result<Json<maas_discovery::Event>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(event) = body.map_err(|e| bad_request(e.body_text()))?;
    let entry = app.state.discovered(&event, now())?;
    app.metrics.discoveries.fetch_add(1, Ordering::Relaxed);
    app.rack_count(&rack, |r| r.discoveries += 1);
    Ok(Json(json!(entry)))
}

pub(crate) async fn metrics(AxumState(app): AxumState<App>) -> Response {
    let m = &app.metrics;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        out += &format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
    };
    counter(
        "maas_api_requests_total",
        "API requests served.",
        m.api_requests.load(Ordering::Relaxed),
    );
    counter(
        "maas_api_errors_total",
        "API requests answered with an error.",
        m.api_errors.load(Ordering::Relaxed),
    );
    counter(
        "maas_boot_scripts_total",
        "iPXE scripts served.",
        m.boot_scripts.load(Ordering::Relaxed),
    );
    counter(
        "maas_tftp_transfers_total",
        "TFTP transfers ended (completed, aborted, timed out or failed).",
        m.tftp_transfers.load(Ordering::Relaxed),
    );
    counter(
        "maas_machines_enlisted_total",
        "Unknown machines recorded as new.",
        m.enlisted.load(Ordering::Relaxed),
    );
    counter(
        "maas_discovery_events_total",
        "Discovery events recorded (new, refreshed, moved, conflict, host name).",
        m.discoveries.load(Ordering::Relaxed),
    );
    if let Some(proxy) = app.proxy.get()
        && let Value::Object(fields) = json!(proxy.metrics())
    {
        for (name, value) in fields {
            if let Some(n) = value.as_u64() {
                counter(
                    &format!("maas_proxy_{name}_total"),
                    &format!("Proxy counter {name}."),
                    n,
                );
            }
        }
    }
    out += "# HELP maas_dhcp_events_total DHCP server events by kind.\n# TYPE maas_dhcp_events_total counter\n";
    for (event, n) in m
        .dhcp_events
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        out += &format!("maas_dhcp_events_total{{event=\"{event}\"}} {n}\n");
    }
    let machines = app.state.machines();
    out += "# HELP maas_machines Machines by status.\n# TYPE maas_machines gauge\n";
    for status in [Status::New, Status::Ready] {
        let n = machines.iter().filter(|m| m.status == status).count();
        let name = serde_json::to_value(status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        out += &format!("maas_machines{{status=\"{name}\"}} {n}\n");
    }
    let (leases, subnets) = app.state.ipam.read(|ipam| {
        let leases = ipam.leases().count();
        let subnets: Vec<(String, f64)> = ipam
            .topology()
            .subnets()
            .filter_map(|(id, s)| {
                Some((
                    s.cidr.to_string(),
                    ipam.statistics(id, false, false).ok()?.usage,
                ))
            })
            .collect();
        (leases, subnets)
    });
    out += &format!(
        "# HELP maas_dhcp_leases DHCP leases and offers held.\n# TYPE maas_dhcp_leases gauge\nmaas_dhcp_leases {leases}\n"
    );
    out += "# HELP maas_subnet_usage Share of a subnet's addresses in use.\n# TYPE maas_subnet_usage gauge\n";
    for (cidr, usage) in subnets {
        out += &format!("maas_subnet_usage{{cidr=\"{cidr}\"}} {usage}\n");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The boot HTTP router: `/ipxe.cfg` (chains to the per-machine script),
/// `/ipxe.cfg-<mac>` (the machine's script; an unknown machine is enlisted) and
/// `/assets/...` (files under the boot assets directory).
pub(crate) fn boot_router(app: App) -> Router {
    Router::new()
        .route("/ipxe.cfg", get(ipxe_chain))
        .route("/{name}", get(ipxe_machine))
        .route("/pxelinux.cfg/{name}", get(machine_file_http))
        .route("/grub/{name}", get(machine_file_http))
        .route("/assets/{*path}", get(asset))
        .with_state(app)
}

async fn ipxe_chain() -> &'static str {
    // A relative URL: iPXE resolves it against this script's own.
    "#!ipxe\nchain ipxe.cfg-${net0/mac:hexhyp}\n"
}

async fn ipxe_machine(
    AxumState(app): AxumState<App>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(mac) = name.strip_prefix("ipxe.cfg-") else {
        return ApiError(StatusCode::NOT_FOUND, format!("{name}: no such file")).into_response();
    };
    let Ok(mac) = parse_mac(mac) else {
        return ApiError(StatusCode::NOT_FOUND, format!("{name}: not a MAC address"))
            .into_response();
    };
    let before = app.state.machine(mac).is_some();
    let machine = match app.state.seen_booting(mac, None, None, now()) {
        Ok(m) => m,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if !before {
        app.metrics.enlisted.fetch_add(1, Ordering::Relaxed);
    }
    app.metrics.boot_scripts.fetch_add(1, Ordering::Relaxed);
    let server = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = serde_json::to_value(machine.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let script = app
        .config
        .controller
        .ipxe_script
        .replace("{mac}", &machine.mac.to_string())
        .replace("{hostname}", &machine.hostname)
        .replace("{server}", &server)
        .replace("{status}", &status);
    ([(header::CONTENT_TYPE, "text/plain")], script).into_response()
}

/// A machine's pxelinux or GRUB file (over HTTP here, over TFTP through the same function);
/// `None` for a name that is not one or a machine named by UUID, which is not tracked. An
/// unknown MAC is enlisted.
pub(crate) fn machine_file(app: &App, file: &MachineFile) -> Option<Vec<u8>> {
    let (MachineFile::Pxelinux(MachineId::Mac(mac)) | MachineFile::Grub(MachineId::Mac(mac))) =
        file
    else {
        return None;
    };
    let before = app.state.machine(*mac).is_some();
    let machine = app.state.seen_booting(*mac, None, None, now()).ok()?;
    if !before {
        app.metrics.enlisted.fetch_add(1, Ordering::Relaxed);
    }
    let template = match file {
        MachineFile::Pxelinux(_) => &app.config.controller.pxelinux_template,
        _ => &app.config.controller.grub_template,
    };
    let status = serde_json::to_value(machine.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Some(
        template
            .replace("{mac}", &machine.mac.to_string())
            .replace("{hostname}", &machine.hostname)
            .replace("{status}", &status)
            .into_bytes(),
    )
}

async fn machine_file_http(AxumState(app): AxumState<App>, uri: axum::http::Uri) -> Response {
    match MachineFile::parse(uri.path()).and_then(|f| machine_file(&app, &f)) {
        Some(bytes) => ([(header::CONTENT_TYPE, "text/plain")], bytes).into_response(),
        None => ApiError(
            StatusCode::NOT_FOUND,
            format!("{}: no such file", uri.path()),
        )
        .into_response(),
    }
}

async fn asset(AxumState(app): AxumState<App>, Path(path): Path<String>) -> Response {
    let Some(root) = &app.config.controller.boot_assets else {
        return ApiError(
            StatusCode::NOT_FOUND,
            "no boot assets directory is configured".into(),
        )
        .into_response();
    };
    // Plain names only: no parent, root or empty components, no backslashes or NULs.
    let safe = !path.is_empty()
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    let full = root.join(&path);
    let inside = safe
        && std::fs::canonicalize(&full)
            .ok()
            .zip(std::fs::canonicalize(root).ok())
            .is_some_and(|(f, r)| f.starts_with(r) && f.is_file());
    if !inside {
        return ApiError(StatusCode::NOT_FOUND, format!("{path}: no such asset")).into_response();
    }
    match tokio::fs::read(&full).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => ApiError(StatusCode::NOT_FOUND, format!("{path}: {e}")).into_response(),
    }
}
