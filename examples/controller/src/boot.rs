//! Booting machines: DHCP (PXE and HTTP boot) on the configured interfaces, TFTP, and boot
//! HTTP, serving per-machine iPXE scripts, pxelinux and GRUB files generated from the
//! machine's state, and the boot assets directory under every name the DHCP boot table and
//! the boot loaders ask for (`/images/bootx64.efi`, lpxelinux's `ldlinux.c32` beside its
//! path prefix, `/assets/...`). A machine seen booting is recorded; an unknown one is
//! enlisted, within `[controller]`'s enlistment limits.

use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maas_pxe::tftp::{MachineFile, MachineId};
use tokio::task::JoinSet;
use tower_http::services::ServeFile;

use crate::app::App;
use crate::error::Error;
use crate::region::{ApiError, parse_mac};
use crate::state::Machine;

mod dhcp;
mod enlist;

pub(crate) use self::dhcp::{BootLeases, expire_leases, serve_dhcp};
pub(crate) use self::enlist::EnlistLimits;

/// The boot HTTP router.
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/ipxe.cfg", get(ipxe_chain))
        .route("/pxelinux.cfg/{name}", get(machine_file_http))
        .route("/grub/{name}", get(machine_file_http))
        .route(
            "/metadata/v1/commissioning",
            axum::routing::post(crate::ephemeral::commissioning_http),
        )
        .route(
            "/metadata/v1/events",
            axum::routing::post(crate::ephemeral::events_http),
        )
        .route("/metadata/v1/deploy", get(crate::deploy::plan_http))
        .route("/metadata/v1/deploy/{name}", get(crate::deploy::file_http))
        .route(
            "/metadata/v1/deployment",
            axum::routing::post(crate::deploy::report_http),
        )
        .route(
            "/metadata/v1/seed/{token}/{file}",
            get(crate::deploy::seed_http),
        )
        .fallback(get(boot_file))
        .with_state(app)
}

async fn ipxe_chain() -> &'static str {
    // A relative URL: iPXE resolves it against this script's own.
    "#!ipxe\nchain ipxe.cfg-${net0/mac:hexhyp}\n"
}

/// Everything else: a machine's iPXE script (`/ipxe.cfg-<mac>`), or a file of the boot
/// assets directory, under its own path, under `/images/` (the boot table's HTTP-boot
/// URLs) or under `/assets/`.
async fn boot_file(AxumState(app): AxumState<App>, request: Request) -> Response {
    let path = request.uri().path().trim_start_matches('/').to_string();
    if let Some(mac) = path.strip_prefix("ipxe.cfg-") {
        return ipxe_machine(&app, mac, request.headers()).await;
    }
    if path.starts_with("resources/") {
        // Imported boot resources: kernels and initrds of the ephemeral environment.
        let root = crate::state::resources::boot_root(&app.config.controller.state_dir);
        let Some(file) = asset_path(&root, &path) else {
            return not_found(format!("/{path}: no such boot resource file"));
        };
        return match tower::ServiceExt::oneshot(serve_file(file), request).await {
            Ok(response) => response.into_response(),
            Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        };
    }
    let Some(root) = &app.config.controller.boot_assets else {
        return not_found(format!("/{path}: no such file (no boot assets directory)"));
    };
    let candidates = [
        path.strip_prefix("images/"),
        path.strip_prefix("assets/"),
        Some(path.as_str()),
    ];
    let Some(file) = candidates
        .into_iter()
        .flatten()
        .find_map(|name| asset_path(root, name))
    else {
        return not_found(format!("/{path}: no such file"));
    };
    // Range, If-Modified-Since, Last-Modified and streaming come from tower-http.
    match tower::ServiceExt::oneshot(serve_file(file), request).await {
        Ok(response) => response.into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Boot files are big and read once: 1 MiB reads (tower-http's default is 64 KiB) take a
/// kernel and an initrd in a few dozen trips to the blocking pool instead of hundreds.
fn serve_file(file: PathBuf) -> ServeFile {
    ServeFile::new(file).with_buf_chunk_size(1 << 20)
}

fn not_found(message: String) -> Response {
    ApiError(StatusCode::NOT_FOUND, message).into_response()
}

/// `name` under `root` when it is a plain relative path (no parent, root or empty
/// components, no backslashes or NULs) naming a regular file that is inside `root` once
/// symbolic links are resolved.
pub(crate) fn asset_path(root: &FsPath, name: &str) -> Option<PathBuf> {
    let safe = !name.is_empty()
        && !name.contains(['\\', '\0'])
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !safe {
        return None;
    }
    let full = std::fs::canonicalize(root.join(name)).ok()?;
    let root = std::fs::canonicalize(root).ok()?;
    (full.starts_with(&root) && full.is_file()).then_some(full)
}

async fn ipxe_machine(app: &App, mac: &str, headers: &axum::http::HeaderMap) -> Response {
    let Ok(mac) = parse_mac(mac) else {
        return not_found(format!("ipxe.cfg-{mac}: not a MAC address"));
    };
    let machine = match app.seen_booting(mac, None, None, None).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                format!("{mac}: enlistment refused by its limits"),
            )
            .into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    app.metrics.boot_scripts.inc();
    let server = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let script = match &app.config.controller.ipxe_script {
        Some(template) => render(app, template, &machine).replace("{server}", &server),
        None => crate::ephemeral::ipxe(app, &machine, &server),
    };
    ([(header::CONTENT_TYPE, "text/plain")], script).into_response()
}

/// `template` with `{mac}`, `{hostname}`, `{status}` and `{token}` (the machine's
/// credential for what it reports back, `POST /api/v1/metadata/events`) filled in.
pub(crate) fn render(app: &App, template: &str, machine: &Machine) -> String {
    let mut text = template
        .replace("{mac}", &machine.mac.to_string())
        .replace("{hostname}", &machine.hostname)
        .replace("{status}", machine.status.as_str());
    if text.contains("{token}") {
        let token = app
            .state
            .machine_token(machine.mac)
            .map(|t| t.to_string())
            .unwrap_or_default();
        text = text.replace("{token}", &token);
    }
    text
}

/// A machine's pxelinux or GRUB file (over HTTP here, over TFTP through the same function);
/// `None` for a name that is not one, or a machine named by UUID, which is not tracked. An
/// unknown MAC is enlisted (without waiting for the store: the file acknowledges nothing).
pub(crate) fn machine_file(app: &App, file: &MachineFile, server: Option<&str>) -> Option<Vec<u8>> {
    let (MachineFile::Pxelinux(MachineId::Mac(mac)) | MachineFile::Grub(MachineId::Mac(mac))) =
        file
    else {
        return None;
    };
    let machine = app.seen_booting_now(*mac, None, None, None)?;
    let (template, generated) = match file {
        MachineFile::Pxelinux(_) => (
            &app.config.controller.pxelinux_template,
            crate::ephemeral::pxelinux as fn(&App, &Machine, Option<&str>) -> String,
        ),
        _ => (
            &app.config.controller.grub_template,
            crate::ephemeral::grub as fn(&App, &Machine, Option<&str>) -> String,
        ),
    };
    Some(
        match template {
            Some(template) => render(app, template, &machine),
            None => generated(app, &machine, server),
        }
        .into_bytes(),
    )
}

async fn machine_file_http(
    AxumState(app): AxumState<App>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let server = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    match MachineFile::parse(uri.path()).and_then(|f| machine_file(&app, &f, server.as_deref())) {
        Some(bytes) => ([(header::CONTENT_TYPE, "text/plain")], bytes).into_response(),
        None => not_found(format!("{}: no such file", uri.path())),
    }
}

/// TFTP on `listen`: per-machine pxelinux and GRUB files generated from machine state, then
/// the boot assets directory (boot loaders), never anything outside it. Its task joins
/// `tasks`; the address it listens on.
pub(crate) async fn serve_tftp(
    app: &App,
    listen: SocketAddr,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, Error> {
    use maas_pxe::tftp::service::{Service, ServiceConfig as TftpConfig};
    use maas_pxe::tftp::{Generated, Layered, RootDir};
    let render_app = app.clone();
    let mut provider = Layered::new().with(Generated::new(move |file: &MachineFile, peer| {
        let server = crate::ephemeral::server_for(&render_app, peer.ip());
        machine_file(&render_app, file, server.as_deref())
    }));
    let boot_root = crate::state::resources::boot_root(&app.config.controller.state_dir);
    std::fs::create_dir_all(boot_root.join("resources"))
        .map_err(|e| Error::io("the boot resources directory", e))?;
    let resources = RootDir::new(&boot_root).map_err(|source| Error::BootAssets {
        path: boot_root.clone(),
        source,
    })?;
    provider = provider.with(resources);
    if let Some(assets) = &app.config.controller.boot_assets {
        let root = RootDir::new(assets).map_err(|source| Error::BootAssets {
            path: assets.clone(),
            source,
        })?;
        provider = provider.with(root);
    }
    let config = TftpConfig {
        listen,
        ..TftpConfig::default()
    };
    let mut service = Service::bind(config, Arc::new(provider))
        .await
        .map_err(|source| Error::Bind {
            what: "TFTP",
            addr: listen,
            source,
        })?;
    let addr = service
        .local_addr()
        .map_err(|e| Error::io("the TFTP address", e))?;
    let metrics = Arc::clone(&app.metrics);
    service.on_event(move |record| {
        metrics.tftp_transfers.inc();
        tracing::info!(
            event = "transfer",
            source = "tftp",
            file = record.file,
            peer = %record.peer,
            outcome = record.outcome,
            bytes = record.summary.bytes,
            record = %serde_json::to_string(record).unwrap_or_default(),
        );
    });
    tasks.spawn(async move {
        if let Err(e) = service.run().await {
            tracing::error!(event = "tftp_error", error = %e);
        }
    });
    Ok(addr)
}
