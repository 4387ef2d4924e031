//! A provisioning controller composed of the maas-rs crates: one config file, durable state,
//! DHCP (PXE and HTTP boot) from IPAM, iPXE scripts per machine over HTTP, machine
//! enlistment, and an HTTP JSON API with Prometheus metrics.
//!
//! ```text
//! cargo run --release --example controller --features controller -- [--config FILE] [--check]
//! cargo run --release --example controller --features controller -- cli [--api URL] COMMAND
//! ```
//!
//! Without `--config` it reads `examples/controller.toml`, which runs unprivileged on
//! loopback: the API on 127.0.0.1:5240, boot HTTP on 127.0.0.1:5248, DHCP off. To serve DHCP
//! on a real network, list the interface under `[dhcp]` and run as root. `--check` loads and
//! checks the file, prints every problem, and exits. Logs are JSON lines on stdout. `cli` is the
//! command line over the API (`cli --help` lists its commands).

mod api;
mod cli;
mod config;
mod discovery;
mod rack;
mod state;
#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use maas_net::{Mac, Timestamp};
use maas_pxe::dhcp::BootConfig;
use maas_pxe::dhcp::server::{
    InterfaceConfig, Report, Server4, Server6, ServerConfig, ServiceConfig, ServiceHandle, serve4,
    serve6,
};

use crate::api::App;
use crate::config::{Config, Role};
use crate::state::State;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "cli") {
        return cli::main(&args[1..]);
    }
    let mut path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/controller.toml"
    ));
    let mut check_only = false;
    let mut role = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => match args.next() {
                Some(p) => path = PathBuf::from(p),
                None => return usage("--config needs a file"),
            },
            "--check" => check_only = true,
            "--role" => match args.next().map(|r| r.parse::<Role>()) {
                Some(Ok(r)) => role = Some(r),
                Some(Err(e)) => return usage(&e),
                None => return usage("--role needs all, region or rack"),
            },
            "--help" | "-h" => {
                println!(
                    "usage: controller [--config FILE] [--role all|region|rack] [--check]\n       controller cli [--api URL] COMMAND"
                );
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let config = match config::load(&path, role) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("{}: {} problem(s):", path.display(), problems.len());
            for p in &problems {
                eprintln!("  - {p}");
            }
            log(&serde_json::json!({ "event": "refused", "config": path, "problems": problems }));
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!(
            "{}: ok ({} subnets, {} machines)",
            path.display(),
            config.topology.subnets().count(),
            config.machines.len()
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log(&serde_json::json!({ "event": "failed", "error": message }));
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "error: {message}\nusage: controller [--config FILE] [--role all|region|rack] [--check]"
    );
    ExitCode::from(2)
}

/// Wall-clock seconds since the Unix epoch.
pub(crate) fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// One JSON line on stdout.
pub(crate) fn log(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

async fn run(config: Config) -> Result<(), String> {
    let role = config.controller.role;
    let (app, rack) = if role == Role::Rack {
        let (app, rack) = rack::connect(config).await?;
        (app, Some(rack))
    } else {
        let state = State::open(
            &config.controller.state_dir,
            &config.topology,
            &config.machines,
        )
        .map_err(|e| e.to_string())?;
        (App::new(state, config), None)
    };
    let config = &app.config;

    let api = tokio::net::TcpListener::bind(config.controller.api)
        .await
        .map_err(|e| format!("API on {}: {e}", config.controller.api))?;
    let boot = tokio::net::TcpListener::bind(config.controller.boot_http)
        .await
        .map_err(|e| format!("boot HTTP on {}: {e}", config.controller.boot_http))?;
    let api_addr = api.local_addr().map_err(|e| e.to_string())?;
    let boot_addr = boot.local_addr().map_err(|e| e.to_string())?;
    let router = match rack {
        Some(_) => rack::router(app.clone()),
        None => api::router(app.clone()),
    };
    let api_task = tokio::spawn(axum::serve(api, router).into_future());
    let boot_task = tokio::spawn(axum::serve(boot, api::boot_router(app.clone())).into_future());

    let tftp = match config.controller.tftp {
        Some(listen) => Some(serve_tftp(&app, listen).await?),
        None => None,
    };
    let dhcp = match (&rack, config.dhcp.interfaces.is_empty()) {
        (_, true) => Vec::new(),
        (Some(rack), false) => serve_dhcp(&app, Arc::clone(&rack.leases)).await?,
        (None, false) => serve_dhcp(&app, Arc::clone(&app.state.ipam)).await?,
    };
    let mut background = Vec::new();
    if let Some(rack) = &rack {
        background.push(rack::keep_in_sync(&app, rack));
    } else if dhcp.is_empty() {
        // Nobody else ends leases here (a region's come from its racks).
        background.push(expire_leases(&app));
    }
    let mut watchers = Vec::new();
    for interface in &config.discovery.interfaces {
        watchers.push(discovery::start(&app, interface)?);
    }
    let proxy = match &config.proxy {
        Some(section) => Some(serve_proxy(&app, section).await?),
        None => None,
    };
    log(&serde_json::json!({
        "event": "listening",
        "role": role,
        "api": api_addr,
        "boot_http": boot_addr,
        "tftp": tftp.as_ref().map(|(addr, _)| addr),
        "proxy": proxy.as_ref().map(|(addr, _)| addr),
        "discovery": config.discovery.interfaces,
        "dhcp": dhcp.first().map(ServiceHandle::interfaces),
        "dhcp6": dhcp.get(1).map(ServiceHandle::interfaces),
        "state_dir": config.controller.state_dir,
        "machines": app.state.machines().len(),
    }));
    let monitor = (config.power.monitor_interval_secs > 0 && role != Role::Rack).then(|| {
        let app = app.clone();
        let every = std::time::Duration::from_secs(config.power.monitor_interval_secs);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let started = std::time::Instant::now();
                let n = app.monitor_round().await;
                if n > 0 {
                    log(&serde_json::json!({
                        "event": "power_monitor",
                        "queried": n,
                        "secs": started.elapsed().as_secs_f64(),
                    }));
                }
            }
        })
    });
    let signal = wait_for_signal().await;
    if let Some(task) = monitor {
        task.abort();
    }
    for task in watchers.into_iter().chain(background) {
        task.abort();
    }
    if let Some((_, task)) = proxy {
        task.abort();
    }
    drop(dhcp);
    api_task.abort();
    boot_task.abort();
    if let Some((_, task)) = tftp {
        task.abort();
    }
    log(&serde_json::json!({ "event": "stopped", "signal": signal }));
    Ok(())
}

/// TFTP on `listen`: per-machine pxelinux and GRUB files generated from machine state, then
/// the boot assets directory (boot loaders), never anything outside it.
async fn serve_tftp(
    app: &App,
    listen: std::net::SocketAddr,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), String> {
    use maas_pxe::tftp::service::{Service, ServiceConfig as TftpConfig};
    use maas_pxe::tftp::{Generated, Layered, RootDir};
    let render_app = app.clone();
    let mut provider = Layered::new().with(Generated::new(
        move |file: &maas_pxe::tftp::MachineFile, _peer| api::machine_file(&render_app, file),
    ));
    if let Some(assets) = &app.config.controller.boot_assets {
        let root =
            RootDir::new(assets).map_err(|e| format!("boot assets {}: {e}", assets.display()))?;
        provider = provider.with(root);
    }
    let config = TftpConfig {
        listen,
        ..TftpConfig::default()
    };
    let mut service = Service::bind(config, Arc::new(provider))
        .await
        .map_err(|e| format!("TFTP on {listen}: {e}"))?;
    let addr = service.local_addr().map_err(|e| e.to_string())?;
    let metrics = Arc::clone(&app.metrics);
    service.on_event(move |record| {
        metrics.tftp_transfers.fetch_add(1, Ordering::Relaxed);
        let mut line = serde_json::to_value(record).unwrap_or_default();
        if let Some(object) = line.as_object_mut() {
            object.insert("source".into(), "tftp".into());
            object.insert("event".into(), "transfer".into());
        }
        log(&line);
    });
    let task = tokio::spawn(async move {
        if let Err(e) = service.run().await {
            log(&serde_json::json!({ "event": "tftp_error", "error": e.to_string() }));
        }
    });
    Ok((addr, task))
}

/// The caching proxy: clients from the subnets with `allow_proxy` (and loopback); the
/// controller's own listening addresses and the machines' BMCs refused as destinations,
/// besides the built-in refusals and `[proxy] deny`.
async fn serve_proxy(
    app: &App,
    section: &config::ProxySection,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), String> {
    use maas_proxy::server::{Proxy, ProxyConfig};
    let topology = app.state.ipam.read(|ipam| ipam.topology().clone());
    let mut deny = section.deny.clone();
    let own = &app.config.controller;
    for addr in [
        Some(own.api),
        Some(own.boot_http),
        own.tftp,
        Some(section.listen),
    ]
    .into_iter()
    .flatten()
    {
        if !addr.ip().is_unspecified() {
            deny.push(ipnet::IpNet::from(addr.ip()));
        }
    }
    deny.extend(own.advertise.map(ipnet::IpNet::from));
    for machine in app.state.machines() {
        if let Some(ip) = machine
            .power
            .as_ref()
            .and_then(|p| p.get("power_address"))
            .and_then(serde_json::Value::as_str)
            .and_then(bmc_address)
        {
            deny.push(ipnet::IpNet::from(ip));
        }
    }
    let acl = maas_proxy::acl::Acl::from_topology(&topology, deny);
    let mut config = ProxyConfig {
        listen: section.listen,
        upstream: section.upstream.clone(),
        ..ProxyConfig::default()
    };
    config.acl.allow = acl.allowed().to_vec();
    config.acl.deny = acl.denied().to_vec();
    config.store.dir = section.cache_dir.clone();
    config.store.max_bytes = section.cache_size;
    let proxy = Proxy::new(config).map_err(|e| format!("proxy: {e}"))?;
    let listener = proxy
        .bind()
        .await
        .map_err(|e| format!("proxy on {}: {e}", section.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let _ = app.proxy.set(proxy.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = proxy.serve(listener).await {
            log(&serde_json::json!({ "event": "proxy_error", "error": e.to_string() }));
        }
    });
    Ok((addr, task))
}

/// The IP address in a BMC's `power_address`: an address, `address:port`, `[v6]:port`, or
/// a URL with an address as its host (names are not resolved here).
fn bmc_address(text: &str) -> Option<std::net::IpAddr> {
    let rest = text.split_once("://").map_or(text, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    if let Ok(sock) = host.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    host.rsplit_once(':').and_then(|(h, _)| h.parse().ok())
}

/// Ends expired leases, offers and quarantines every 30 s (where no DHCP server does).
fn expire_leases(app: &App) -> tokio::task::JoinHandle<()> {
    use maas_pxe::dhcp::server::Leases as _;
    let app = app.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            ticks.tick().await;
            match app.state.ipam.expire(now()) {
                Ok((_, Some(ticket))) => {
                    let _ = app.state.ipam.wait_async(ticket).await;
                }
                Ok(_) => {}
                Err(e) => {
                    log(&serde_json::json!({ "event": "state_error", "error": e.to_string() }))
                }
            }
        }
    })
}

/// DHCPv4 on the configured interfaces, and DHCPv6 too when an IPv6 subnet has a dynamic
/// range to lease from; leases from `leases` (the durable IPAM, or a rack's region). Every
/// lease of a booting machine is recorded on the machine (an unknown one is enlisted).
async fn serve_dhcp<L: maas_pxe::dhcp::server::Leases + 'static>(
    app: &App,
    leases: Arc<L>,
) -> Result<Vec<ServiceHandle>, String> {
    let config = &app.config;
    let mut boot = BootConfig::default();
    // The boot table's URLs name MAAS's port; point them at ours (and the advertised
    // address).
    boot.set_http_base(
        config.controller.boot_http.port(),
        config.controller.advertise,
    );
    let server_config = ServerConfig {
        lease_secs: config.dhcp.lease_secs,
        boot,
        ..ServerConfig::default()
    };
    let server = Server4::new(
        server_config.clone(),
        config.topology.clone(),
        Arc::clone(&leases),
    )
    .map_err(|e| e.to_string())?;
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
    .map_err(|e| format!("cannot serve DHCP: {e}"))?;
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
        let server6 = Server6::new(
            ServerConfig {
                duid,
                ..server_config
            },
            topology.clone(),
            leases,
        )
        .map_err(|e| e.to_string())?;
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
        .map_err(|e| format!("cannot serve DHCPv6: {e}"))?;
        handles.push(v6);
    }
    Ok(handles)
}

fn on_dhcp(app: &App, report: &Report<'_>) {
    let Report::Event { interface, event } = report else {
        if let Report::Error { interface, error } = report {
            log(
                &serde_json::json!({ "event": "dhcp_error", "interface": interface, "error": error.to_string() }),
            );
        }
        return;
    };
    let value = serde_json::to_value(event).unwrap_or_default();
    let kind = value["event"].as_str().unwrap_or("other").to_string();
    *app.metrics
        .dhcp_events
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(kind.clone())
        .or_default() += 1;
    if kind == "leased"
        && let Some(mac) = value["mac"].as_str().and_then(|m| m.parse::<Mac>().ok())
    {
        let ip = value["ip"].as_str().and_then(|i| i.parse().ok());
        let boot = value.get("boot").cloned().filter(|b| !b.is_null());
        let known = app.state.machine(mac).is_some();
        // A client that is not network-booting (an installed OS, a switch, a phone) is not a
        // machine to enlist: its lease is all there is to record.
        if known || boot.is_some() {
            if let Some(region) = &app.region {
                region.report(
                    "/api/v1/rack/seen",
                    serde_json::json!({ "mac": mac, "ip": ip, "boot": boot }),
                );
            }
            match app.state.seen_booting(mac, ip, boot, now()) {
                Ok(machine) if !known => {
                    app.metrics.enlisted.fetch_add(1, Ordering::Relaxed);
                    log(&serde_json::json!({ "event": "enlisted", "machine": machine }));
                }
                Ok(_) => {}
                Err(e) => {
                    log(&serde_json::json!({ "event": "state_error", "error": e.to_string() }));
                }
            }
        }
    }
    let mut line = value;
    if let Some(object) = line.as_object_mut() {
        object.insert("interface".into(), (*interface).into());
        object.insert("source".into(), "dhcp".into());
    }
    log(&line);
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
