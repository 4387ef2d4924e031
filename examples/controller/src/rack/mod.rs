//! The rack role: DHCP, TFTP, boot HTTP, discovery and the proxy for the rack's own networks,
//! with the state held by a region.
//!
//! At start the rack fetches from a region (`GET /api/v1/rack/config`, with its credential)
//! the network model, the machines, the boot templates, every address record and its block of
//! addresses, keeps that answer in its state directory (`rack-config.json`, mode 0600), and
//! refreshes it every `[cluster] sync_secs`. Its DHCP server offers from a mirror of the
//! region's addresses, and acknowledges a lease only after a region has recorded it (`POST
//! /api/v1/rack/leases/batch`): the region's address manager has the last word, so an address
//! it holds for anyone else is never acknowledged twice. What machines tell DHCP and what
//! discovery sees are reported too (`/api/v1/rack/seen`, `/api/v1/rack/discoveries`).
//!
//! A rack may know several regions ([`region`]: one in use, failover to the next). When none
//! answers it keeps serving within the limits [`leases`] states, with what it could not
//! deliver in a durable [`queue`], and it can start from its cached configuration.

pub(crate) mod leases;
pub(crate) mod queue;
pub(crate) mod region;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State as AxumState;
use axum::routing::get;
use maas_ipam::Ipam;
use maas_net::Topology;
use serde_json::{Value, json};

use self::leases::RackLeases;
use self::queue::Queued;
pub(crate) use self::region::Region;
pub use self::region::RegionError;
use crate::app::App;
use crate::config::Config;
use crate::protocol::RackConfig;
use crate::state::State;

/// The rack's cached configuration, in the state directory.
pub(crate) const CACHE_FILE: &str = "rack-config.json";

/// How often the queue is replayed while it holds anything.
const REPLAY_EVERY: Duration = Duration::from_secs(2);

/// A rack's connection to its regions, and its lease backend.
pub(crate) struct Rack {
    pub(crate) region: Arc<Region>,
    pub(crate) leases: Arc<RackLeases>,
}

/// Connects to a region (trying every region for up to `[cluster] start_wait_secs`), takes
/// its network model, machines and templates into `config`, and opens the local cache of
/// machines in the state directory. When no region answers in that time, the rack starts
/// from the configuration it cached at its last successful fetch, if it has one.
pub(crate) async fn connect(mut config: Config) -> Result<(App, Rack), RegionError> {
    let region = Arc::new(Region::new(&config)?);
    let state_dir = config.controller.state_dir.clone();
    let cache = state_dir.join(CACHE_FILE);
    let wait = Duration::from_secs(config.cluster.start_wait_secs);
    let started = std::time::Instant::now();
    let (fetched, live) = loop {
        match async {
            region.enrol().await?;
            region.fetch().await
        }
        .await
        {
            Ok(f) => {
                save_cache(&cache, &f);
                break (f, true);
            }
            Err(e) if fatal(&e) => return Err(e),
            Err(e) if started.elapsed() < wait => {
                tracing::warn!(event = "region_unreachable", region = region.in_use(), error = %e);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => match load_cache(&cache) {
                Some(cached) => {
                    tracing::warn!(
                        event = "region_unreachable_starting_from_cache",
                        cache = %cache.display(),
                        queued = region.queue.len(),
                        error = %e,
                    );
                    // The credential is read from its file when a region answers later.
                    let _ = region.enrol().await;
                    break (cached, false);
                }
                None => return Err(e),
            },
        }
    };
    let topology = Topology::from_doc(&fetched.topology).map_err(|e| RegionError::Invalid {
        what: "network model",
        message: e.to_string(),
    })?;
    config.topology = topology.clone();
    config.controller.ipxe_script = fetched.ipxe_script;
    config.controller.pxelinux_template = fetched.pxelinux_template;
    config.controller.grub_template = fetched.grub_template;
    config.dhcp.lease_secs = fetched.lease_secs;
    config.dhcp.shares = fetched.dhcp_shares;
    if live {
        // The state directory is a cache here: the region's model replaces whatever it held.
        let _ = std::fs::remove_file(state_dir.join("ipam.redb"));
        let _ = std::fs::remove_file(state_dir.join("ipam.redb-journal"));
    }
    let tokens = fetched.machine_tokens;
    let dir = state_dir.clone();
    let model = topology.clone();
    let state = tokio::task::spawn_blocking(move || State::open(&dir, &model, &[]))
        .await
        .map_err(|e| RegionError::Invalid {
            what: "cache",
            message: e.to_string(),
        })??;
    if let Some(ticket) = state.replace_machines(fetched.machines)? {
        state.durable(ticket).await?;
    }
    state.replace_machine_tokens(&tokens);
    if live {
        region
            .sync_resources(&state, &state_dir, fetched.resources)
            .await?;
    }
    let mirror = Ipam::from_snapshot(fetched.snapshot).map_err(|e| RegionError::Invalid {
        what: "address records",
        message: e.to_string(),
    })?;
    let leases = Arc::new(RackLeases::new(
        mirror,
        fetched.block,
        Arc::clone(&region),
        &tokio::runtime::Handle::current(),
    ));
    // What was acknowledged while cut off is not in a cached snapshot yet.
    let queued: Vec<_> = region
        .queue
        .front(usize::MAX)
        .into_iter()
        .filter_map(|e| match e.item {
            Queued::Lease(r) => Some(r),
            _ => None,
        })
        .collect();
    leases.apply_queued(&queued, crate::now());
    leases.set_parts(&config.shared_vlans());
    if config.dhcp.interfaces.is_empty() {
        region.set_dhcp(crate::protocol::DhcpHealth::off("unconfigured"));
    }
    let mut app = App::new(state, config);
    app.region = Some(Arc::clone(&region));
    if live {
        tracing::info!(
            event = "region_connected",
            region = region.in_use(),
            rack = region.name()
        );
    }
    Ok((app, Rack { region, leases }))
}

/// Writes `config` to the cache file; a failure is logged (the rack serves on).
fn save_cache(path: &Path, config: &RackConfig) {
    let written = serde_json::to_vec(config)
        .map_err(std::io::Error::other)
        .and_then(|bytes| write_atomic(path, &bytes));
    if let Err(e) = written {
        tracing::warn!(event = "rack_cache_not_written", path = %path.display(), error = %e);
    }
}

/// The cached configuration, if there is one of this protocol version.
fn load_cache(path: &Path) -> Option<RackConfig> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice::<RackConfig>(&bytes) {
        Ok(c) if c.protocol == crate::protocol::PROTOCOL_VERSION => Some(c),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(event = "rack_cache_unreadable", path = %path.display(), error = %e);
            None
        }
    }
}

/// Refreshes the mirror and the machines from a region every `[cluster] sync_secs` (after
/// sending what the queue holds, so the region's records include it), and replays the queue
/// every [`REPLAY_EVERY`] while it holds anything.
pub(crate) fn keep_in_sync(app: App, rack: &Rack) -> impl Future<Output = ()> + Send + 'static {
    let region = Arc::clone(&rack.region);
    let leases = Arc::clone(&rack.leases);
    let every = Duration::from_secs(app.config.cluster.sync_secs.max(1));
    let cache = app.config.controller.state_dir.join(CACHE_FILE);
    async move {
        let mut next_sync = tokio::time::Instant::now() + every;
        loop {
            tokio::time::sleep_until(next_sync.min(tokio::time::Instant::now() + REPLAY_EVERY))
                .await;
            if !region.queue.is_empty()
                && let Err(e) = leases::replay(&region, leases.mirror_handle()).await
            {
                tracing::debug!(event = "queue_not_replayed", error = %e);
            }
            if tokio::time::Instant::now() < next_sync {
                continue;
            }
            next_sync = tokio::time::Instant::now() + every;
            let result = async {
                leases::replay(&region, leases.mirror_handle()).await?;
                let fetched = region.fetch().await?;
                save_cache(&cache, &fetched);
                leases.refresh(fetched.snapshot, fetched.block)?;
                if let Some(ticket) = app.state.replace_machines(fetched.machines)? {
                    app.state.durable(ticket).await?;
                }
                app.state.replace_machine_tokens(&fetched.machine_tokens);
                region
                    .sync_resources(
                        &app.state,
                        &app.config.controller.state_dir,
                        fetched.resources,
                    )
                    .await?;
                app.machines_changed();
                Ok::<(), RegionError>(())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(event = "region_unreachable", region = region.in_use(), error = %e);
            }
        }
    }
}

/// Errors a rack does not retry at start: another version, a certificate it does not trust,
/// a credential or secret the region refuses.
fn fatal(e: &RegionError) -> bool {
    match e {
        RegionError::Version { .. }
        | RegionError::Untrusted { .. }
        | RegionError::Tls(_)
        | RegionError::File { .. } => true,
        RegionError::Refused { status, .. } => [
            hyper::StatusCode::UNAUTHORIZED,
            hyper::StatusCode::FORBIDDEN,
            hyper::StatusCode::CONFLICT,
        ]
        .contains(status),
        _ => false,
    }
}

/// Writes `bytes` to `path`, readable by its owner only, atomically: a temporary file beside
/// it, synced, renamed over it, and the directory synced.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&temporary);
    write_private(&temporary, bytes)?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Writes `bytes` to a new file at `path` readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A rack's own API: its version (to anyone), and what it serves and its metrics (to
/// loopback only: a rack keeps no users; the region's API is the one to manage machines and
/// addresses with).
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/api/v1/rack", get(status))
        .route("/metrics", get(crate::metrics::handler))
        .route_layer(axum::middleware::from_fn(loopback_only))
        .route("/api/v1/version", get(version))
        .with_state(app)
}

async fn loopback_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let local = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    if local {
        return next.run(request).await;
    }
    crate::region::ApiError(
        hyper::StatusCode::FORBIDDEN,
        "a rack serves its status and metrics to loopback only: ask its region".into(),
    )
    .into_response()
}

async fn version() -> Json<Value> {
    Json(json!({ "name": "maas-rs controller (rack)", "version": env!("CARGO_PKG_VERSION") }))
}

async fn status(AxumState(app): AxumState<App>) -> Json<Value> {
    let region = app.region.as_ref().map(|r| r.status());
    Json(json!({
        "rack": app.region.as_ref().map(|r| r.name()),
        "region": region.as_ref().map(|r| &r.region),
        "regions": region.as_ref().map(|r| &r.regions),
        "region_reachable": region.as_ref().map(|r| r.reachable),
        "last_contact": region.as_ref().and_then(|r| r.last_contact),
        "queued_reports": region.as_ref().map(|r| r.queued),
        "dhcp_serving": app.region.as_ref().and_then(|r| r.dhcp()).map(|d| d.serving),
        "failovers": region.as_ref().map(|r| r.failovers),
        "dhcp": app.config.dhcp.interfaces,
        "discovery": app.config.discovery.interfaces,
        "machines": app.state.machine_count(),
    }))
}

#[cfg(test)]
mod tests;
