//! Booting machines: DHCP (PXE and HTTP boot) on the configured interfaces, TFTP, and boot
//! HTTP, serving per-machine iPXE scripts, pxelinux and GRUB files generated from the
//! machine's state, and the boot assets directory under every name the DHCP boot table and
//! the boot loaders ask for (`/images/bootx64.efi`, lpxelinux's `ldlinux.c32` beside its
//! path prefix, `/assets/...`). A machine seen booting is recorded; an unknown one is
//! enlisted, within `[controller]`'s enlistment limits.

use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maas_net::Mac;
use maas_pxe::dhcp::BootConfig;
use maas_pxe::dhcp::server::{
    Bound, InterfaceConfig, LeaseError, Leases, Report, Server4, Server6, ServerConfig,
    ServiceConfig, ServiceHandle, serve4, serve6,
};
use maas_pxe::tftp::{MachineFile, MachineId};
use tokio::task::JoinSet;
use tower_http::services::ServeFile;

use crate::app::App;
use crate::error::Error;
use crate::now;
use crate::region::{ApiError, parse_mac};
use crate::state::{BootSeen, Machine, Seen};

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

/// The enlistment limits: at most `max_new` machines waiting as New, and at most `per_minute`
/// enlistments a minute (a token bucket).
pub(crate) struct EnlistLimits {
    max_new: usize,
    per_minute: u32,
    bucket: std::sync::Mutex<(f64, Instant)>,
}

impl EnlistLimits {
    pub(crate) fn new(max_new: usize, per_minute: u32) -> Self {
        Self {
            max_new,
            per_minute,
            bucket: std::sync::Mutex::new((f64::from(per_minute), Instant::now())),
        }
    }

    #[cfg(test)]
    pub(crate) fn admit_for_test(&self, waiting: usize) -> Result<(), String> {
        self.admit(waiting)
    }

    /// Whether one more machine may be enlisted now, with `waiting` machines New already;
    /// takes a token when it may. The reason when it may not.
    fn admit(&self, waiting: usize) -> Result<(), String> {
        if waiting >= self.max_new {
            return Err(format!(
                "{waiting} machines are waiting as new (enlist_max_new = {})",
                self.max_new
            ));
        }
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, at) = &mut *bucket;
        let rate = f64::from(self.per_minute) / 60.0;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate)
            .min(f64::from(self.per_minute.max(1)));
        *at = now;
        if *tokens < 1.0 {
            return Err(format!(
                "more than {} enlistments a minute (enlist_per_minute)",
                self.per_minute
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }
}

impl App {
    /// Records that `mac` was seen booting; enlists an unknown machine within the limits.
    /// Returns once the change is durable: the machine, or `None` when the limits refused it.
    pub(crate) async fn seen_booting(
        &self,
        mac: Mac,
        ip: Option<std::net::IpAddr>,
        boot: Option<BootSeen>,
        rack: Option<&str>,
    ) -> Result<Option<Machine>, crate::state::StateError> {
        match self.record_seen(mac, ip, boot, rack)? {
            Some((machine, ticket, enlisted)) => {
                if let Some(ticket) = ticket {
                    self.state.durable(ticket).await?;
                }
                if enlisted {
                    self.enlisted(&machine, rack);
                }
                Ok(Some(machine))
            }
            None => Ok(None),
        }
    }

    /// [`seen_booting`](Self::seen_booting) for callers that cannot wait (a generated TFTP
    /// file): the change is made durable by the store's writer meanwhile.
    pub(crate) fn seen_booting_now(
        &self,
        mac: Mac,
        ip: Option<std::net::IpAddr>,
        boot: Option<BootSeen>,
        rack: Option<&str>,
    ) -> Option<Machine> {
        match self.record_seen(mac, ip, boot, rack) {
            Ok(Some((machine, ticket, enlisted))) => {
                if enlisted {
                    let app = self.clone();
                    let logged = machine.clone();
                    let rack = rack.map(str::to_owned);
                    tokio::spawn(async move {
                        if let Some(ticket) = ticket
                            && let Err(e) = app.state.durable(ticket).await
                        {
                            tracing::error!(event = "state_error", error = %e);
                            return;
                        }
                        app.enlisted(&logged, rack.as_deref());
                    });
                }
                Some(machine)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(event = "state_error", error = %e);
                None
            }
        }
    }

    /// Records `mac` as seen booting, outside a runtime (tests).
    #[cfg(test)]
    pub(crate) fn seen_booting_now_blocking(&self, mac: Mac) -> Machine {
        match self.record_seen(mac, None, None, None) {
            Ok(Some((machine, _, _))) => machine,
            other => panic!("not recorded: {:?}", other.map(|o| o.map(|(m, _, _)| m))),
        }
    }

    #[allow(clippy::type_complexity)]
    fn record_seen(
        &self,
        mac: Mac,
        ip: Option<std::net::IpAddr>,
        boot: Option<BootSeen>,
        rack: Option<&str>,
    ) -> Result<Option<(Machine, Option<maas_ipam::Ticket>, bool)>, crate::state::StateError> {
        let mut refusal = None;
        let now = now();
        let commission_by = self.config.controller.commission_enlisted.then(|| {
            maas_net::Timestamp(
                now.0
                    .saturating_add(self.config.controller.commissioning_timeout_secs),
            )
        });
        let seen =
            self.state
                .seen_booting(mac, ip, boot, now, commission_by, |waiting| {
                    match self.enlist_limits.admit(waiting) {
                        Ok(()) => true,
                        Err(why) => {
                            refusal = Some(why);
                            false
                        }
                    }
                })?;
        match seen {
            Seen::Known {
                machine,
                enlisted,
                ticket,
            } => Ok(Some((*machine, ticket, enlisted))),
            Seen::Refused => {
                self.metrics.enlistments_refused.inc();
                tracing::warn!(
                    event = "enlistment_refused",
                    mac = %mac,
                    rack,
                    reason = refusal.unwrap_or_default(),
                );
                Ok(None)
            }
        }
    }

    fn enlisted(&self, machine: &Machine, rack: Option<&str>) {
        self.metrics.enlisted.inc();
        tracing::info!(
            event = "enlisted",
            mac = %machine.mac,
            hostname = machine.hostname,
            rack,
            machine = %serde_json::to_string(machine).unwrap_or_default(),
        );
    }
}

/// The store as the DHCP server's lease store: the address manager's leases, with one
/// addition. An acknowledgement also waits for the enlistments recorded before it: the
/// service reports a lease (and the report enlists an unknown booting machine) before it
/// waits to send the reply, so a new machine's first lease is never acknowledged before its
/// enlistment is durable.
pub(crate) struct BootLeases(pub(crate) Arc<crate::state::State>);

impl Leases for BootLeases {
    type Ticket = maas_ipam::Ticket;

    fn offer(
        &self,
        subnet: maas_net::SubnetId,
        client: &maas_net::ClientKey,
        now: maas_net::Timestamp,
        hold_secs: u32,
    ) -> Result<std::net::IpAddr, LeaseError> {
        Leases::offer(&*self.0.ipam, subnet, client, now, hold_secs)
    }

    fn bind(
        &self,
        ip: std::net::IpAddr,
        client: &maas_net::ClientKey,
        hostname: Option<&str>,
        now: maas_net::Timestamp,
        lease_secs: u32,
    ) -> Result<Bound<Self::Ticket>, LeaseError> {
        Leases::bind(&*self.0.ipam, ip, client, hostname, now, lease_secs)
    }

    fn release(
        &self,
        ip: std::net::IpAddr,
        client: &maas_net::ClientKey,
    ) -> Result<Option<Self::Ticket>, LeaseError> {
        Leases::release(&*self.0.ipam, ip, client)
    }

    fn decline(
        &self,
        ip: std::net::IpAddr,
        client: &maas_net::ClientKey,
        now: maas_net::Timestamp,
        quarantine_secs: u32,
    ) -> Result<Option<Self::Ticket>, LeaseError> {
        Leases::decline(&*self.0.ipam, ip, client, now, quarantine_secs)
    }

    fn expire(
        &self,
        now: maas_net::Timestamp,
    ) -> Result<(usize, Option<Self::Ticket>), LeaseError> {
        Leases::expire(&*self.0.ipam, now)
    }

    fn wait(&self, ticket: Self::Ticket) -> Result<(), LeaseError> {
        Leases::wait(&*self.0.ipam, ticket)?;
        match self.0.latest_enlistment() {
            Some(enlisted) => Leases::wait(&*self.0.ipam, enlisted),
            None => Ok(()),
        }
    }

    async fn wait_async(&self, ticket: Self::Ticket) -> Result<(), LeaseError> {
        Leases::wait_async(&*self.0.ipam, ticket).await?;
        match self.0.latest_enlistment() {
            Some(enlisted) => Leases::wait_async(&*self.0.ipam, enlisted).await,
            None => Ok(()),
        }
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

/// The DHCPv4 server's share of each VLAN it serves with other racks ([`Config`]'s
/// `dhcp.shares`, from the region).
fn load_balance(config: &crate::config::Config) -> maas_pxe::dhcp::server::LoadBalance {
    let mut balance = maas_pxe::dhcp::server::LoadBalance::none();
    for (vlan, index, of) in config.shared_vlans() {
        if let Some(part) = maas_pxe::dhcp::server::Share::new(index, of) {
            tracing::info!(event = "dhcp_share", vlan = ?vlan, index, of);
            balance.shares.insert(vlan, part);
        }
    }
    balance
}

/// Ends expired leases, offers and quarantines every 30 s (where no DHCP server does).
pub(crate) async fn expire_leases(app: App) {
    let mut ticks = tokio::time::interval(Duration::from_secs(30));
    loop {
        ticks.tick().await;
        match app.state.ipam.expire(now()) {
            Ok((_, Some(ticket))) => {
                let _ = app.state.ipam.wait_async(ticket).await;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(event = "state_error", error = %e),
        }
    }
}

/// The DHCP services, on a thread of their own: see [`serve_dhcp`]. Dropping it stops them.
pub(crate) struct DhcpThread {
    /// The interfaces DHCPv4 serves.
    pub(crate) v4: Vec<String>,
    /// The interfaces DHCPv6 serves, when it runs.
    pub(crate) v6: Option<Vec<String>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for DhcpThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The thread only drops the services and its runtime: it ends at once.
            let _ = thread.join();
        }
    }
}

/// DHCPv4 on the configured interfaces, and DHCPv6 too when an IPv6 subnet has a dynamic
/// range to lease from; leases from `leases` (the durable IPAM, or a rack's region). Every
/// lease of a booting machine is recorded on the machine (an unknown one is enlisted).
///
/// The services run on a thread of their own with a single-threaded runtime, as the `dhcpd`
/// example does: under load one thread takes datagrams in batches and nothing else wakes it,
/// where on the shared runtime its wake-ups bounced between cores (a lease cost 1.6 times the
/// example's CPU time). Tasks the services start (enlistment's) run there too.
pub(crate) async fn serve_dhcp<L: Leases + 'static>(
    app: &App,
    leases: Arc<L>,
) -> Result<DhcpThread, Error> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = app.clone();
    let thread = std::thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::io("cannot start the DHCP runtime", e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let handles = match start_dhcp(&app, leases).await {
                    Ok(handles) => handles,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let names = |h: &ServiceHandle| -> Vec<String> {
                    h.interfaces().iter().map(|i| i.name.clone()).collect()
                };
                let v4 = handles.first().map(names).unwrap_or_default();
                let v6 = handles.get(1).map(names);
                if ready_tx.send(Ok((v4, v6))).is_err() {
                    return;
                }
                // Until the controller stops (or drops the thread's handle).
                let _ = stop_rx.await;
                drop(handles);
            });
        })
        .map_err(|e| Error::io("cannot start the DHCP thread", e))?;
    let mut dhcp = DhcpThread {
        v4: Vec::new(),
        v6: None,
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    match ready_rx.await {
        Ok(Ok((v4, v6))) => {
            (dhcp.v4, dhcp.v6) = (v4, v6);
            Ok(dhcp)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::io(
            "the DHCP thread ended before serving",
            std::io::Error::other("no answer from the DHCP thread"),
        )),
    }
}

async fn start_dhcp<L: Leases + 'static>(
    app: &App,
    leases: Arc<L>,
) -> Result<Vec<ServiceHandle>, Error> {
    let config = &app.config;
    let mut boot = BootConfig::default();
    // The boot table's URLs name MAAS's port; point them at ours (and at the advertised
    // address, on any port).
    boot.set_http_base(
        config.controller.boot_http.port(),
        config.controller.advertise,
    );
    let dns_on = config.dns.as_ref().is_some_and(|d| d.enabled);
    let server_config = ServerConfig {
        lease_secs: config.dhcp.lease_secs,
        boot,
        // Option 15: the default domain the controller's DNS answers for.
        domain: dns_on.then(|| crate::state::DEFAULT_DOMAIN.to_owned()),
        ..ServerConfig::default()
    };
    // The subnets' DNS servers with the controller's own first, where DNS is allowed.
    let dhcp_topology = crate::dns::dhcp_topology(config);
    let mut server = Server4::new(
        server_config.clone(),
        dhcp_topology.clone(),
        Arc::clone(&leases),
    )?;
    // Deployed machines boot their own disk: DHCP sends them no boot file.
    let state = Arc::clone(&app.state);
    let local_boot: maas_pxe::dhcp::server::LocalBoot =
        Arc::new(move |mac| state.status(mac) == Some(crate::state::Status::Deployed));
    server.set_local_boot(Arc::clone(&local_boot));
    server.set_load_balance(load_balance(config));
    let interfaces: Vec<InterfaceConfig> = config
        .dhcp
        .interfaces
        .iter()
        .map(|name| InterfaceConfig::new(name.clone()))
        .collect();
    let mut service = ServiceConfig::default();
    let reporter = app.clone();
    let v4 = serve4(
        Arc::new(server),
        &interfaces,
        &service,
        move |report: &Report<'_>| on_dhcp(&reporter, report),
    )
    .await
    .map_err(|e| Error::io("cannot serve DHCP", e))?;
    let mut handles = vec![v4];
    let topology = &config.topology;
    let leases_v6 = topology.subnets().any(|(id, s)| {
        s.cidr.addr().is_ipv6()
            && s.managed
            && topology.vlan(s.vlan).is_some_and(|v| v.dhcp_on)
            && topology
                .ip_ranges_in(id)
                .any(|(_, r)| r.kind == maas_net::IpRangeKind::Dynamic)
    });
    if leases_v6 {
        // A stable server DUID (DUID-LL of the first interface), so clients keep renewing
        // with it across restarts.
        let duid = interfaces
            .first()
            .and_then(|i| maas_pxe::dhcp::server::Duid::from_interface(&i.name).ok());
        let mut server6 = Server6::new(
            ServerConfig {
                duid,
                ..server_config
            },
            dhcp_topology,
            leases,
        )?;
        server6.set_local_boot(local_boot);
        // Expiry runs once, on the DHCPv4 side: both servers share the leases.
        service.expire_every(None);
        let reporter = app.clone();
        let v6 = serve6(
            Arc::new(server6),
            &interfaces,
            &service,
            move |report: &Report<'_>| on_dhcp(&reporter, report),
        )
        .await
        .map_err(|e| Error::io("cannot serve DHCPv6", e))?;
        handles.push(v6);
    }
    Ok(handles)
}

fn on_dhcp(app: &App, report: &Report<'_>) {
    use maas_pxe::dhcp::server::Event;
    let (interface, event) = match report {
        Report::Event { interface, event } => (*interface, event),
        Report::Error { interface, error } => {
            tracing::warn!(event = "dhcp_error", interface, error = %error);
            return;
        }
        _ => return,
    };
    let kind = event.kind();
    app.metrics.dhcp_event(kind);
    if let Event::Leased {
        mac: Some(mac),
        ip,
        boot,
        ..
    } = event
    {
        let boot = boot.as_ref().map(BootSeen::from_decision);
        let known = app.state.machine(*mac).is_some();
        // A client that is not network-booting (an installed OS, a switch, a phone) is not a
        // machine to enlist: its lease is all there is to record.
        if known || boot.is_some() {
            if let Some(region) = &app.region {
                region.report_seen(crate::protocol::SeenReport {
                    mac: *mac,
                    ip: Some(*ip),
                    boot: boot.clone(),
                });
            }
            app.seen_booting_now(*mac, Some(*ip), boot, None);
        }
    }
    // The service reports a lease change once it is durable, so the line says it was recorded.
    // An offer changes nothing that lasts (the lease that follows is logged): it is a debug
    // line, which spares a busy server half its log lines.
    let ip = event.ip().map(|ip| ip.to_string());
    if matches!(event, Event::Offered { .. }) {
        tracing::debug!(event = kind, source = "dhcp", interface, ip, detail = %Json(event));
    } else {
        tracing::info!(event = kind, source = "dhcp", interface, ip, detail = %Json(event));
    }
}

/// Writes a value as JSON when (and only if) a log line is written.
struct Json<'a, T>(&'a T);

impl<T: serde::Serialize> std::fmt::Display for Json<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_string(self.0).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}
