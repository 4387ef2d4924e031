//! A provisioning controller composed of the maas-rs crates: one configuration file, one
//! durable store, DHCP (PXE and HTTP boot) from IPAM, TFTP and boot HTTP with per-machine
//! files, machine enlistment, power through BMCs, discovery, a caching proxy, and an HTTP
//! JSON API with Prometheus metrics.
//!
//! The binary `maas-controller` parses its arguments, sets up logging ([`logging::init`])
//! and the runtime, and calls [`run`]; everything else lives here, by concern:
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the file: network model, `[controller]`, `[dhcp]`, `[power]`, `[discovery]`, `[proxy]`, `[dns]`, `[cluster]`, `[[machines]]` |
//! | `state` | the store: machines, devices, domains, discoveries and events with the address records, in one redb file |
//! | `region` | the HTTP JSON API and the endpoints racks call |
//! | `rack` | a rack's client of its region, and leases confirmed by the region |
//! | `protocol` | the typed messages between regions and racks, with their version |
//! | `boot` | DHCP, TFTP and boot HTTP wiring: per-machine iPXE, pxelinux and GRUB files, boot assets |
//! | `power` | the power manager of the machines' BMCs, and the power monitor |
//! | `discovery` | neighbours seen on the watched interfaces |
//! | `rdns` | the reverse DNS query for a neighbour's name, and its answer (no I/O) |
//! | `proxy` | the caching proxy, with the BMCs and the controller refused as destinations |
//! | `dns` | the authoritative DNS server: domains, reverse zones, leases, forwarding |
//! | `metrics` | `/metrics` |
//!
//! ```no_run
//! # async fn example() -> Result<(), maas_controller::Error> {
//! let config = maas_controller::config::load("controller.toml".as_ref(), None)
//!     .map_err(maas_controller::Error::Config)?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! maas_controller::run(config, shutdown).await
//! # }
//! ```

pub mod admin;
mod app;
pub mod auth;
mod boot;
pub mod cli;
pub mod config;
mod deploy;
mod discovery;
mod dns;
mod ephemeral;
mod error;
pub mod logging;
mod metrics;
#[cfg(test)]
#[path = "../../../maas-ipam/tests/integration/store/pg_server.rs"]
mod pg_server;
mod power;
mod protocol;
mod proxy;
mod rack;
mod rdns;
mod region;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_allocation;
#[cfg(test)]
mod tests_auth;
#[cfg(test)]
mod tests_blocks;
#[cfg(test)]
mod tests_boot;
#[cfg(test)]
mod tests_deploy;
#[cfg(test)]
mod tests_devices;
#[cfg(test)]
mod tests_domains;
#[cfg(test)]
mod tests_lifecycle;
#[cfg(test)]
mod tests_network;
#[cfg(test)]
mod tests_pg;
#[cfg(test)]
mod tests_racks;
mod tls;
mod web;

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;
pub use crate::error::{Error, RegionError, StateError};
pub use crate::state::{PgRecordsError, RecordsError};
pub use crate::tls::TlsError;

use crate::app::App;
use crate::config::Role;
use crate::state::{State, StoreAt};

/// How long a stop waits for the tasks to finish and for acknowledged changes to reach disk.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// Serves `config` until `shutdown` is cancelled, then stops every service, lets the store
/// commit what was handed to it (each for at most ten seconds), and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let role = config.controller.role;
    let (app, rack) = if role == Role::Rack {
        let (app, rack) = rack::connect(config).await?;
        (app, Some(rack))
    } else {
        // Opening reads and may write the file: not on an async worker.
        let (state, config) = tokio::task::spawn_blocking(move || {
            let dir = &config.controller.state_dir;
            let state = StoreAt::of(&config)
                .map_err(|e| Error::Config(vec![e]))
                .and_then(|at| {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| Error::io("the state directory", e))?;
                    State::open_at(&at, &config.topology, &config.machines).map_err(Error::from)
                })
                .and_then(|state| {
                    if let Some(path) = admin::first_admin(&state, dir)? {
                        tracing::info!(event = "first_admin", user = "admin", token_file = %path.display());
                        eprintln!(
                            "first start: user admin's token is in {0} (export MAAS_TOKEN=$(cat {0}))",
                            path.display()
                        );
                    }
                    Ok(state)
                });
            (state, config)
        })
        .await
        .map_err(|e| Error::io("opening the store", std::io::Error::other(e)))?;
        let app = App::new(state?, config);
        let follower = app.clone();
        app.state.follow(move || follower.reloaded());
        (app, None)
    };
    let config = std::sync::Arc::clone(&app.config);
    let mut tasks = JoinSet::new();

    let api = bind_tcp("API", config.controller.api).await?;
    let boot = bind_tcp("boot HTTP", config.controller.boot_http).await?;
    let api_addr = api.local_addr().map_err(|e| Error::io("API", e))?;
    let boot_addr = boot.local_addr().map_err(|e| Error::io("boot HTTP", e))?;
    let router = match rack {
        Some(_) => rack::router(app.clone()),
        None => region::router(app.clone()),
    };
    let identity = tls_identity(&config, api_addr)?;
    tasks.spawn(tls::serve(
        api,
        identity.as_ref().map(|i| std::sync::Arc::clone(&i.config)),
        router,
        shutdown.clone(),
    ));
    // Plain HTTP (firmware cannot do better), with each request's source for the throttle
    // of the metadata routes.
    tasks.spawn(tls::serve(
        boot,
        None,
        boot::router(app.clone()),
        shutdown.clone(),
    ));

    let tftp = match config.controller.tftp {
        Some(listen) => Some(boot::serve_tftp(&app, listen, &mut tasks).await?),
        None => None,
    };
    let dhcp = match (&rack, config.dhcp.interfaces.is_empty()) {
        (_, true) => None,
        (Some(rack), false) => {
            Some(boot::serve_dhcp(&app, std::sync::Arc::clone(&rack.leases)).await?)
        }
        (None, false) => {
            let leases = boot::BootLeases(std::sync::Arc::clone(&app.state));
            Some(boot::serve_dhcp(&app, std::sync::Arc::new(leases)).await?)
        }
    };
    if let Some(rack) = &rack {
        tasks.spawn(rack::keep_in_sync(app.clone(), rack));
    } else if dhcp.is_none() {
        // Nobody else ends leases here (a region's come from its racks).
        tasks.spawn(boot::expire_leases(app.clone()));
    }
    for interface in &config.discovery.interfaces {
        tasks.spawn(discovery::start(&app, interface)?);
    }
    let proxy = match &config.proxy {
        Some(section) => Some(proxy::serve(&app, section, &mut tasks).await?),
        None => None,
    };
    let dns = match config
        .dns
        .as_ref()
        .filter(|d| d.enabled && role != Role::Rack)
    {
        Some(section) => dns::serve(&app, section, &mut tasks, shutdown.clone()).await?,
        None => Vec::new(),
    };
    if role != Role::Rack {
        tasks.spawn(ephemeral::watch_commissioning(app.clone()));
        tasks.spawn(deploy::watch_deployments(app.clone()));
    }
    if config.power.monitor_interval_secs > 0 && role != Role::Rack {
        tasks.spawn(power::monitor(app.clone()));
    }
    let scheme = if identity.is_some() { "https" } else { "http" };
    tracing::info!(
        event = "listening",
        role = %role,
        api = %api_addr,
        api_url = format!("{scheme}://{api_addr}"),
        tls_fingerprint = identity.as_ref().map(|i| i.fingerprint.clone()),
        tls_certificate = identity.as_ref().map(|i| i.cert_path.display().to_string()),
        boot_http = %boot_addr,
        tftp = tftp.map(|a| a.to_string()),
        proxy = proxy.map(|a| a.to_string()),
        dns = (!dns.is_empty()).then(|| format!("{dns:?}")),
        discovery = ?config.discovery.interfaces,
        dhcp = dhcp.as_ref().map(|d| d.v4.join(",")),
        dhcp6 = dhcp.as_ref().and_then(|d| d.v6.as_ref()).map(|v6| v6.join(",")),
        state_dir = %config.controller.state_dir.display(),
        machines = app.state.machine_count(),
    );

    shutdown.cancelled().await;
    // DHCP first: no new lease is started once the stop has begun.
    drop(dhcp);
    tasks.abort_all();
    let drained = tokio::time::timeout(STOP_WITHIN, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    drop(rack);
    // The last handle on the store: its writer commits what is queued before it lets go.
    let state = std::sync::Arc::clone(&app.state);
    drop(app);
    let flushed = tokio::time::timeout(
        STOP_WITHIN,
        tokio::task::spawn_blocking(move || state.close()),
    )
    .await;
    let flushed = match flushed {
        Ok(Ok(Ok(()))) => true,
        Ok(Ok(Err(e))) => return Err(e.into()),
        _ => false,
    };
    tracing::info!(
        event = "stopped",
        tasks_drained = drained,
        store_flushed = flushed
    );
    Ok(())
}

/// The API's certificate, when it is served over HTTPS.
fn tls_identity(
    config: &Config,
    api: std::net::SocketAddr,
) -> Result<Option<tls::Identity>, Error> {
    let setting = match config.controller.tls() {
        config::TlsSetting::Off | config::TlsSetting::Auto => tls::ServerTls::Off,
        config::TlsSetting::SelfSigned => tls::ServerTls::SelfSigned,
        config::TlsSetting::Files { cert, key } => tls::ServerTls::Files { cert, key },
    };
    let mut names = Vec::new();
    if !api.ip().is_unspecified() {
        names.push(api.ip().to_string());
    }
    if let Some(ip) = config.controller.advertise {
        names.push(ip.to_string());
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(host.trim().to_string());
    }
    names.retain(|n| !n.is_empty());
    names.dedup();
    Ok(tls::server_identity(
        &setting,
        &config.controller.state_dir,
        &names,
    )?)
}

async fn bind_tcp(
    what: &'static str,
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Bind {
            what,
            addr,
            source: e,
        })
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> maas_net::Timestamp {
    maas_net::Timestamp::now()
}
