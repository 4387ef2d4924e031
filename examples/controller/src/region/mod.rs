//! The region: the HTTP JSON API (`/api/v1/...`, `/metrics`), the endpoints its racks
//! call (`/api/v1/rack/...`), and the web dashboard's pages ([`crate::web`]). Errors are JSON objects `{"error": "..."}` carrying the
//! engine's own message.

mod access;
pub(crate) mod allocation;
mod devices;
mod domains;
mod network;
pub(crate) mod power;
mod racks;

pub(crate) use access::machine_event_for;

use std::net::IpAddr;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use maas_ipam::{AddressKind, AssignOptions, Requested};
use maas_net::Mac;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::config::MachineConfig;
use crate::now;
use crate::state::StateError;

/// An error answer: a status and the message.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        let status = match e {
            StateError::NoMachine(_) | StateError::NotFound(_) => StatusCode::NOT_FOUND,
            StateError::Exists(_) | StateError::Conflict(_) => StatusCode::CONFLICT,
            // Another region sharing the database got there first: the caller may try again.
            StateError::Ipam(maas_ipam::DurableError::Refused(_)) => StatusCode::CONFLICT,
            StateError::Invalid(_) => StatusCode::BAD_REQUEST,
            StateError::Forbidden(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, e.to_string())
    }
}

pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn ipam_error(e: impl std::fmt::Display) -> ApiError {
    // The engine's refusals (in use, outside the subnet, exhausted) are the caller's to fix.
    ApiError(StatusCode::CONFLICT, e.to_string())
}

pub(crate) type ApiResult = Result<Json<Value>, ApiError>;

/// The API router: every route behind the auth layer ([`crate::auth`]).
pub(crate) fn router(app: App) -> Router {
    let router = Router::new()
        .route("/api/v1/version", get(version))
        .route("/api/v1/whoami", get(access::whoami))
        .route(
            "/api/v1/session",
            get(crate::web::session::whoami)
                .post(crate::web::session::login)
                .delete(crate::web::session::logout),
        )
        .route("/api/v1/events", get(crate::web::events::stream))
        .route(
            "/api/v1/zones",
            get(allocation::zones).post(allocation::create_zone),
        )
        .route("/api/v1/zones/{name}", delete(allocation::delete_zone))
        .route("/api/v1/domains", get(domains::list).post(domains::create))
        .route(
            "/api/v1/domains/{name}",
            get(domains::get)
                .put(domains::update)
                .delete(domains::delete),
        )
        .route("/api/v1/subnets", get(subnets))
        .route("/api/v1/subnets/{id}/statistics", get(subnet_statistics))
        .route("/api/v1/ipranges", get(ip_ranges))
        .route("/api/v1/leases", get(leases))
        .route(
            "/api/v1/ipaddresses",
            get(ip_addresses).post(reserve_ip_address),
        )
        .route("/api/v1/ipaddresses/{ip}", delete(release_ip_address))
        .route("/api/v1/discoveries", get(devices::discoveries))
        .route("/api/v1/discoveries/clear", post(devices::clear))
        .route(
            "/api/v1/discoveries/clear-by-mac-and-ip",
            post(devices::clear_one),
        )
        .route("/api/v1/discoveries/convert", post(devices::convert))
        .route("/api/v1/devices", get(devices::list).post(devices::create))
        .route(
            "/api/v1/devices/{name}",
            get(devices::get)
                .put(devices::update)
                .delete(devices::delete),
        )
        .route(
            "/api/v1/devices/{name}/interfaces",
            post(devices::add_interface),
        )
        .route(
            "/api/v1/devices/{name}/interfaces/{mac}",
            delete(devices::remove_interface),
        )
        .route(
            "/api/v1/machines",
            get(allocation::machines).post(create_machine),
        )
        .route("/api/v1/machines/allocate", post(allocation::allocate))
        .route("/api/v1/machines/{mac}/release", post(allocation::release))
        .route("/api/v1/machines/{mac}/zone", put(allocation::set_zone))
        .route(
            "/api/v1/machines/{mac}/domain",
            put(domains::set_machine_domain),
        )
        .route(
            "/api/v1/machines/{mac}/tags",
            put(allocation::set_tags).post(allocation::edit_tags),
        )
        .route(
            "/api/v1/machines/{mac}",
            get(machine).delete(delete_machine),
        )
        .route("/api/v1/machines/{mac}/accept", post(accept_machine))
        .route("/api/v1/machines/{mac}/events", get(machine_events))
        .route(
            "/api/v1/machines/{mac}/interfaces",
            get(network::get).put(network::put),
        )
        .route("/api/v1/machines/{mac}/netconfig", get(network::netconfig))
        .route("/api/v1/machines/{mac}/power", get(power::query))
        .route("/api/v1/machines/{mac}/power-on", post(power::on))
        .route("/api/v1/machines/{mac}/power-off", post(power::off))
        .route("/api/v1/machines/{mac}/power-cycle", post(power::cycle))
        .route("/api/v1/machines/{mac}/boot", post(power::set_boot))
        .route("/api/v1/racks", get(access::racks))
        .route("/api/v1/racks/{name}", delete(access::remove_rack))
        .route("/api/v1/users", get(access::users).post(access::add_user))
        .route("/api/v1/users/{name}", delete(access::remove_user))
        .route(
            "/api/v1/tokens",
            get(access::tokens).post(access::create_token),
        )
        .route("/api/v1/tokens/{id}", delete(access::revoke_token))
        .route("/api/v1/audit", get(access::audit))
        .route("/api/v1/metadata/events", post(access::machine_event))
        .route(
            "/api/v1/metadata/commissioning",
            post(access::machine_commissioning),
        )
        .route("/api/v1/machines/{mac}/commission", post(power::commission))
        .route(
            "/api/v1/machines/{mac}/deploy",
            post(crate::deploy::deploy_api),
        )
        .route(
            "/api/v1/boot-resources",
            get(access::boot_resources).post(access::import_boot_resource),
        )
        .route("/metrics", get(crate::metrics::handler));
    racks::routes(router)
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::auth::layer,
        ))
        .merge(crate::web::routes())
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
    app.metrics.api_requests.inc();
    let response = next.run(request).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        app.metrics.api_errors.inc();
    }
    response
}

async fn version() -> Json<Value> {
    Json(json!({ "name": "maas-rs controller", "version": env!("CARGO_PKG_VERSION") }))
}

async fn subnets(AxumState(app): AxumState<App>) -> Json<Value> {
    let list = app.state.ipam.read(|ipam| {
        ipam.topology()
            .subnets()
            .map(|(id, s)| {
                let stats = ipam.statistics(id, false, false).ok();
                let topology = ipam.topology();
                let vlan = topology.vlan(s.vlan);
                let fabric = vlan.and_then(|v| topology.fabric(v.fabric));
                json!({
                    "id": id,
                    "cidr": s.cidr,
                    "vlan": s.vlan,
                    "vid": vlan.map(|v| v.vid),
                    "fabric": fabric.map(|f| f.name.clone()),
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
    app.state.changes.send(crate::state::notify::Kinds::NETWORK);
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
            app.state.changes.send(crate::state::notify::Kinds::NETWORK);
            Ok(Json(json!(record)))
        }
    }
}

pub(crate) fn parse_mac(text: &str) -> Result<Mac, ApiError> {
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
    if let Some(power) = &config.power {
        crate::config::power_params(power).map_err(|e| bad_request(format!("power: {e}")))?;
    }
    let (machine, ticket) = app.state.create(&config, now())?;
    app.state.durable(ticket).await?;
    app.register_power(&machine)
        .map_err(|e| bad_request(e.to_string()))?;
    app.machines_changed();
    Ok((StatusCode::CREATED, Json(app.shown(&machine))))
}

async fn delete_machine(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let mac = parse_mac(&mac)?;
    let (machine, ticket) = app.state.delete(mac, now())?;
    app.state.durable(ticket).await?;
    app.power.remove(&mac.to_string());
    app.machines_changed();
    Ok(Json(crate::app::shown(&machine)))
}

async fn accept_machine(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let mac = parse_mac(&mac)?;
    let (machine, ticket) = app.state.accept(mac, now())?;
    app.state.durable(ticket).await?;
    Ok(Json(app.shown(&machine)))
}

/// `GET /api/v1/machines/{mac}/events`: the machine's history, oldest first.
async fn machine_events(AxumState(app): AxumState<App>, Path(mac): Path<String>) -> ApiResult {
    let mac = parse_mac(&mac)?;
    if !app.state.has_machine(mac) {
        return Err(StateError::NoMachine(mac).into());
    }
    Ok(Json(json!(app.state.events(mac))))
}
