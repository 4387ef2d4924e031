//! What a machine boots, by its place in the life cycle (when no template overrides it), and
//! what the ephemeral environment sends back.
//!
//! | status | boots |
//! |---|---|
//! | Commissioning | the ephemeral environment, told to commission (`maas_action=commission`) |
//! | New, Ready, Failed commissioning | the ephemeral environment, told to power off (as MAAS does) |
//!
//! The kernel command line tells the environment where to report
//! (`maas_url=http://<boot HTTP>/metadata/v1/`) and gives it the machine's credential
//! (`maas_token=`), which is good for that machine only and revoked when its state changes.
//! Without an imported `ephemeral` boot resource for the machine's architecture, a machine
//! gets the fallback file that says its status and boots nothing.
//!
//! The environment reports on boot HTTP (the one address a booting machine is known to
//! reach): `POST /metadata/v1/events` (`{"kind": ..., "detail": ...}`) and
//! `POST /metadata/v1/commissioning` (what it found, or `{"status": "failed", "error": ...}`),
//! each with `Authorization: Bearer <its credential>`.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::auth::token::{self, Presented};
use crate::config::{FALLBACK_GRUB, FALLBACK_IPXE, FALLBACK_PXELINUX};
use crate::now;
use crate::region::{ApiError, bad_request};
use crate::state::auth::Principal;
use crate::state::{DiskSeen, Dmi, Hardware, Machine, NicSeen, Outcome, Status};

/// What the environment is told to do; `None` for a machine that boots from its own disk.
fn action(status: Status) -> Option<&'static str> {
    match status {
        Status::Commissioning => Some("commission"),
        Status::Deploying => Some("deploy"),
        Status::Deployed => None,
        Status::New
        | Status::Ready
        | Status::FailedCommissioning
        | Status::Allocated
        | Status::FailedDeployment
        | Status::Releasing => Some("poweroff"),
    }
}

/// The architecture a machine's boot files are for (`amd64` until commissioning says).
fn arch(machine: &Machine) -> String {
    machine
        .architecture
        .as_deref()
        .and_then(|a| a.split('/').next())
        .filter(|a| !a.is_empty())
        .unwrap_or("amd64")
        .to_string()
}

/// The kernel command line for `machine`, reporting to boot HTTP at `server` (`host:port`).
fn command_line(app: &App, machine: &Machine, initrd: &str, action: &str, server: &str) -> String {
    let token = app
        .state
        .machine_token(machine.mac)
        .map(|t| t.to_string())
        .unwrap_or_default();
    format!(
        "initrd={} console=tty0 console=ttyS0,115200 maas_url=http://{server}/metadata/v1/ maas_token={token} maas_action={} maas_hostname={}",
        initrd, action, machine.hostname,
    )
}

/// What every form of a machine's boot file says: a banner, the kernel's and the initrd's
/// paths, and the kernel command line; `None` without a resource (or a known server).
struct Parts {
    banner: String,
    kernel: String,
    initrd: String,
    cmdline: String,
}

fn parts(app: &App, machine: &Machine, server: Option<&str>) -> Option<Parts> {
    // A deployed machine boots its own disk: the fallback forms say so (iPXE `exit`,
    // pxelinux `LOCALBOOT 0`, GRUB `exit`), and the firmware moves on to the disk.
    let action = action(machine.status)?;
    let resource = app.state.ephemeral(&arch(machine))?;
    let (kernel, initrd) = (resource.kernel.as_ref()?, resource.initrd.as_ref()?);
    let server = server?;
    Some(Parts {
        banner: format!(
            "maas-rs: {} ({}) is {}: ephemeral {}, {action}",
            machine.hostname,
            machine.mac,
            machine.status.as_str(),
            resource.key(),
        ),
        kernel: resource.url_path(kernel),
        initrd: resource.url_path(initrd),
        cmdline: command_line(app, machine, &initrd.file, action, server),
    })
}

/// The iPXE script for `machine`, fetched from boot HTTP at `server`.
pub(crate) fn ipxe(app: &App, machine: &Machine, server: &str) -> String {
    let Some(p) = parts(app, machine, Some(server)) else {
        return crate::boot::render(app, FALLBACK_IPXE, machine);
    };
    format!(
        "#!ipxe\necho {}\nkernel http://{server}/{} {}\ninitrd http://{server}/{}\nboot\n",
        p.banner, p.kernel, p.cmdline, p.initrd
    )
}

/// The pxelinux file for `machine` (kernel and initrd over TFTP, or over HTTP for
/// lpxelinux, relative to where the file came from), reporting to `server`.
pub(crate) fn pxelinux(app: &App, machine: &Machine, server: Option<&str>) -> String {
    let Some(p) = parts(app, machine, server) else {
        return crate::boot::render(app, FALLBACK_PXELINUX, machine);
    };
    format!(
        "DEFAULT ephemeral\nSAY {}\nLABEL ephemeral\n  KERNEL /{}\n  INITRD /{}\n  APPEND {}\n  IPAPPEND 2\n",
        p.banner, p.kernel, p.initrd, p.cmdline
    )
}

/// The GRUB file for `machine` (kernel and initrd from the server GRUB loaded from),
/// reporting to `server`.
pub(crate) fn grub(app: &App, machine: &Machine, server: Option<&str>) -> String {
    let Some(p) = parts(app, machine, server) else {
        return crate::boot::render(app, FALLBACK_GRUB, machine);
    };
    format!(
        "set default=0\nset timeout=0\necho '{}'\nmenuentry 'Ephemeral' {{\n  linux /{} {}\n  initrd /{}\n}}\n",
        p.banner, p.kernel, p.cmdline, p.initrd
    )
}

/// The boot HTTP address (`host:port`) a machine at `peer` reaches this controller at:
/// `[controller] advertise`, else this host's address on the subnet of `peer`.
pub(crate) fn server_for(app: &App, peer: IpAddr) -> Option<String> {
    let port = app.config.controller.boot_http.port();
    if let Some(ip) = app.config.controller.advertise {
        return Some(format!("{ip}:{port}"));
    }
    let listen = app.config.controller.boot_http.ip();
    if !listen.is_unspecified() {
        return Some(format!("{listen}:{port}"));
    }
    let cidr = app.state.ipam.read(|ipam| {
        ipam.topology()
            .subnets()
            .find(|(_, s)| s.cidr.contains(&peer))
            .map(|(_, s)| s.cidr)
    })?;
    app.config
        .dhcp
        .interfaces
        .iter()
        .chain(&app.config.discovery.interfaces)
        .flat_map(|name| {
            maas_discovery::capture::interface_ipv4_addresses(name).unwrap_or_default()
        })
        .map(IpAddr::V4)
        .find(|ip| cidr.contains(ip))
        .map(|ip| format!("{ip}:{port}"))
}

/// The answer to a source that failed too often lately (429 with `Retry-After`), or `None`
/// when it may try.
pub(crate) fn throttled(
    app: &App,
    source: IpAddr,
    elapsed: std::time::Duration,
) -> Option<Response> {
    let wait = app.guard.check(source, elapsed).err()?;
    let mut response = ApiError(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed attempts from this address: wait and try again".into(),
    )
    .into_response();
    if let Ok(v) = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        .max(1)
        .to_string()
        .parse()
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(response)
}

/// The machine a request's bearer credential belongs to, or the refusal.
pub(crate) fn machine_caller(
    app: &App,
    headers: &HeaderMap,
    source: IpAddr,
) -> Result<maas_net::Mac, Box<Response>> {
    let elapsed = app.guard.elapsed();
    if let Some(slowed) = throttled(app, source, elapsed) {
        return Err(Box::new(slowed));
    }
    let presented =
        token::parse_authorization(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()));
    let principal = match presented {
        Ok(Presented::Token(t)) => app.state.authenticate(&t, now()),
        _ => None,
    };
    match principal {
        Some(Principal::Machine(mac)) => {
            app.guard.succeeded(source);
            Ok(mac)
        }
        _ => {
            app.guard.failed(source, elapsed);
            app.metrics.auth_refused.inc();
            tracing::warn!(event = "auth_refused", source = %source, route = "/metadata/v1", reason = "not a machine's current credential");
            Err(Box::new(
                ApiError(
                    StatusCode::UNAUTHORIZED,
                    "not this machine's current credential (it changes with the machine's state)"
                        .into(),
                )
                .into_response(),
            ))
        }
    }
}

/// What the agent sends to `/metadata/v1/commissioning`.
#[derive(Debug, Deserialize)]
pub(crate) struct Report {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    firmware: Option<String>,
    #[serde(default)]
    cpu: Option<Cpu>,
    #[serde(default)]
    memory_bytes: Option<u64>,
    #[serde(default)]
    interfaces: Vec<NicSeen>,
    #[serde(default)]
    disks: Vec<DiskSeen>,
    #[serde(default)]
    dmi: Dmi,
}

#[derive(Debug, Deserialize)]
struct Cpu {
    count: u32,
    #[serde(default)]
    model: Option<String>,
}

/// The longest text kept from a report's fields.
const MAX_TEXT: usize = 256;

fn short(text: Option<String>) -> Option<String> {
    text.map(|t| t.chars().take(MAX_TEXT).collect())
}

impl Report {
    /// The outcome it reports, or why it cannot be taken.
    pub(crate) fn outcome(self) -> Result<Outcome, String> {
        match self.status.as_str() {
            "failed" => Ok(Outcome::Failed(
                short(self.error).unwrap_or_else(|| "the agent gave no reason".into()),
            )),
            "ok" => {
                let cpu = self.cpu.ok_or("cpu is missing")?;
                let memory_bytes = self.memory_bytes.ok_or("memory_bytes is missing")?;
                if self.interfaces.len() > 1024 || self.disks.len() > 1024 {
                    return Err("more than 1024 interfaces or disks".into());
                }
                let firmware = self.firmware.unwrap_or_default();
                if !["bios", "uefi"].contains(&firmware.as_str()) {
                    return Err(format!("firmware {firmware:?}: bios or uefi"));
                }
                Ok(Outcome::Found(Box::new(Hardware {
                    architecture: short(self.architecture).unwrap_or_default(),
                    firmware,
                    cpu_count: cpu.count,
                    cpu_model: short(cpu.model),
                    memory_bytes,
                    interfaces: self
                        .interfaces
                        .into_iter()
                        .map(|n| NicSeen {
                            name: n.name.chars().take(MAX_TEXT).collect(),
                            ..n
                        })
                        .collect(),
                    disks: self
                        .disks
                        .into_iter()
                        .map(|d| DiskSeen {
                            name: d.name.chars().take(MAX_TEXT).collect(),
                            model: short(d.model),
                            serial: short(d.serial),
                            ..d
                        })
                        .collect(),
                    dmi: Dmi {
                        system_vendor: short(self.dmi.system_vendor),
                        system_product: short(self.dmi.system_product),
                        system_serial: short(self.dmi.system_serial),
                        system_uuid: short(self.dmi.system_uuid),
                    },
                    at: now(),
                })))
            }
            other => Err(format!("status {other:?}: ok or failed")),
        }
    }
}

/// Applies a commissioning report of `mac`'s agent; the machine as it is now.
pub(crate) async fn commissioning_reported(
    app: &App,
    mac: maas_net::Mac,
    report: Report,
) -> Result<Machine, ApiError> {
    let outcome = report.outcome().map_err(bad_request)?;
    let (machine, ticket) = app.state.commissioning_reported(mac, outcome, now())?;
    app.state.durable(ticket).await?;
    tracing::info!(
        event = "commissioned",
        mac = %mac,
        status = machine.status.as_str(),
        hardware = %serde_json::to_string(&machine.hardware).unwrap_or_default(),
    );
    Ok(machine)
}

pub(crate) fn source_of(connect: Option<&ConnectInfo<std::net::SocketAddr>>) -> IpAddr {
    connect.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// `POST /metadata/v1/commissioning` on boot HTTP.
pub(crate) async fn commissioning_http(
    AxumState(app): AxumState<App>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(region) = &app.region {
        return region
            .forward("/api/v1/metadata/commissioning", &headers, body)
            .await;
    }
    let mac = match machine_caller(&app, &headers, source_of(connect.as_ref().map(|c| &c.0))) {
        Ok(mac) => mac,
        Err(refused) => return *refused,
    };
    let report: Report = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e.to_string()).into_response(),
    };
    match commissioning_reported(&app, mac, report).await {
        Ok(machine) => (StatusCode::OK, Json(app.shown(&machine))).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /metadata/v1/events` on boot HTTP.
pub(crate) async fn events_http(
    AxumState(app): AxumState<App>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(region) = &app.region {
        return region
            .forward("/api/v1/metadata/events", &headers, body)
            .await;
    }
    let mac = match machine_caller(&app, &headers, source_of(connect.as_ref().map(|c| &c.0))) {
        Ok(mac) => mac,
        Err(refused) => return *refused,
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(e.to_string()).into_response(),
    };
    match crate::region::machine_event_for(&app, mac, value).await {
        Ok(event) => (StatusCode::CREATED, Json(json!(event))).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Fails commissionings whose agent did not report in time, every 10 s.
pub(crate) async fn watch_commissioning(app: App) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        ticks.tick().await;
        match app.state.commissioning_overdue(now()) {
            Ok((failed, Some(ticket))) => {
                if app.state.durable(ticket).await.is_ok() {
                    for m in failed {
                        tracing::warn!(event = "commissioning_failed", mac = %m.mac, reason = "timeout");
                    }
                }
            }
            Ok((_, None)) => {}
            Err(e) => tracing::error!(event = "store_error", error = %e),
        }
    }
}
