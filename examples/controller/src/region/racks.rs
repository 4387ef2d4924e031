//! The endpoints racks call (`/api/v1/rack/...`): each needs the rack's own credential (its
//! enrolment, the cluster's shared secret) and the protocol version, and a rack may report
//! only about addresses on the VLANs it serves.

use std::net::IpAddr;

use axum::Json;
use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use maas_net::Timestamp;
use serde_json::json;

use super::{ApiError, ApiResult, bad_request};
use crate::app::{App, RackSeen};
use crate::auth::RackName;
use crate::now;
use crate::protocol::{
    DHCP_HEADER, DhcpHealth, DiscoveryReport, HealthError, LeaseBatch, LeaseBatchAnswer, LeaseOp,
    LeaseOutcome, LeaseReport, PROTOCOL_VERSION, QUEUED_HEADER, RackConfig, RackInterfaces,
    SeenReport, block_client, is_block_client, parse_queued,
};
use crate::state::notify::Kinds;

/// The routes racks call, added to `router` (the auth layer checks their credential and
/// protocol version).
pub(super) fn routes(router: Router<App>) -> Router<App> {
    router
        .route("/api/v1/rack/enrol", post(super::access::enrol))
        .route("/api/v1/rack/config", get(rack_config))
        .route("/api/v1/rack/leases", post(rack_lease))
        .route("/api/v1/rack/leases/batch", post(rack_lease_batch))
        .route("/api/v1/rack/seen", post(rack_seen))
        .route("/api/v1/rack/discoveries", post(rack_discovery))
        .route("/api/v1/rack/interfaces", post(rack_interfaces))
        .route(
            "/api/v1/rack/resources/{name}/{arch}/{release}/{file}",
            get(rack_resource),
        )
}

/// A boot resource's kernel or initrd, for a rack to serve its machines.
async fn rack_resource(
    AxumState(app): AxumState<App>,
    axum::extract::Path((name, arch, release, file)): axum::extract::Path<(
        String,
        String,
        String,
        String,
    )>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let known = app.state.resources().into_iter().any(|r| {
        r.name == name
            && r.arch == arch
            && r.release == release
            && r.files().iter().any(|f| f.file == file)
    });
    let root = crate::state::resources::boot_root(&app.config.controller.state_dir);
    let path = format!("resources/{name}/{arch}/{release}/{file}");
    let Some(full) = known
        .then(|| crate::boot::asset_path(&root, &path))
        .flatten()
    else {
        return ApiError(
            StatusCode::NOT_FOUND,
            format!("{path}: no such boot resource file"),
        )
        .into_response();
    };
    match tower::ServiceExt::oneshot(tower_http::services::ServeFile::new(full), request).await {
        Ok(response) => response.into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Refuses a report about `ip` from a rack that does not serve its VLAN.
fn check_vlan(app: &App, rack: &str, ip: IpAddr) -> Result<(), ApiError> {
    if app.config.rack_serves(rack, &app.config.topology, ip) {
        return Ok(());
    }
    tracing::warn!(event = "rack_report_refused", rack, ip = %ip);
    Err(ApiError(
        StatusCode::FORBIDDEN,
        format!("rack {rack} does not serve the VLAN of {ip} (see [[cluster.racks]])"),
    ))
}

impl App {
    fn rack_count<T>(&self, name: &str, f: impl FnOnce(&mut RackSeen) -> T) -> T {
        let mut racks = self
            .racks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = racks.entry(name.to_string()).or_insert_with(|| RackSeen {
            name: name.to_string(),
            ..RackSeen::default()
        });
        f(entry)
    }

    /// Takes the health rack `name` gives in the headers of one of its calls
    /// ([`DHCP_HEADER`], [`QUEUED_HEADER`]). A header it does not send leaves what this
    /// region knew; a malformed one is ignored with a warning (the call goes on). A change is
    /// announced to the dashboard, and logged (`rack_health`) when DHCP starts or stops
    /// serving or the queue fills or empties.
    pub(crate) fn rack_reported(&self, name: &str, headers: &HeaderMap, now: Timestamp) {
        let dhcp = read_header(name, headers, DHCP_HEADER, DhcpHealth::parse);
        let queued = read_header(name, headers, QUEUED_HEADER, parse_queued);
        if dhcp.is_none() && queued.is_none() {
            return;
        }
        let (before, after) = self.rack_count(name, |r| {
            let before = (r.dhcp.clone(), r.queued_reports);
            if dhcp.is_some() {
                r.dhcp = dhcp;
            }
            if queued.is_some() {
                r.queued_reports = queued;
            }
            r.health_at = Some(now.0);
            (before, (r.dhcp.clone(), r.queued_reports))
        });
        if before == after {
            return;
        }
        let serving = |h: &(Option<DhcpHealth>, Option<u64>)| h.0.as_ref().map(|d| d.serving);
        let queueing = |h: &(Option<DhcpHealth>, Option<u64>)| h.1.map(|n| n > 0);
        if serving(&before) != serving(&after) || queueing(&before) != queueing(&after) {
            tracing::info!(
                event = "rack_health",
                rack = name,
                dhcp = after.0.as_ref().map(DhcpHealth::emit),
                queued_reports = after.1,
            );
        }
        self.state.changes.send(Kinds::RACKS);
    }
}

/// Header `header` of rack `rack`'s call, read by `parse`; `None` when it is absent or
/// malformed (with a warning).
fn read_header<T>(
    rack: &str,
    headers: &HeaderMap,
    header: &'static str,
    parse: fn(&[u8]) -> Result<T, HealthError>,
) -> Option<T> {
    let value = headers.get(header)?;
    parse(value.as_bytes())
        .map_err(|e| {
            let sent: String = String::from_utf8_lossy(value.as_bytes())
                .chars()
                .take(64)
                .collect();
            tracing::warn!(event = "rack_header_ignored", rack, header, value = ?sent, error = %e);
        })
        .ok()
}

/// What a rack needs to serve: the network model, every address record (its DHCP mirror),
/// the machines (secrets masked), the boot templates and its block, topped up.
async fn rack_config(
    AxumState(app): AxumState<App>,
    axum::Extension(RackName(rack)): axum::Extension<RackName>,
) -> Result<Json<RackConfig>, ApiError> {
    let block = top_up_block(&app, &rack).await?;
    let (topology, snapshot) = app
        .state
        .ipam
        .read(|ipam| (ipam.topology().to_doc(), ipam.snapshot()));
    let controller = &app.config.controller;
    Ok(Json(RackConfig {
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
        machine_tokens: app.state.machine_tokens(),
        resources: app.state.resources(),
        block,
        dhcp_shares: app.config.dhcp_shares_of(&rack),
    }))
}

/// How long a region holds a block address for a rack that no longer fetches its
/// configuration (a fetch renews it once half of that has passed): 30 days.
const BLOCK_HOLD_SECS: u64 = 30 * 24 * 3600;

/// Holds `[cluster] rack_block_size` free addresses of each subnet with a dynamic range on
/// rack `rack`'s VLANs for it alone, as offered DHCP records of the clients
/// [`block_client`] names (no one else is offered them), renewing those it holds and adding
/// new ones for those it handed out; the addresses, once durable.
async fn top_up_block(app: &App, rack: &str) -> Result<Vec<IpAddr>, ApiError> {
    let size = app.config.cluster.rack_block_size;
    let subnets: Vec<(maas_net::SubnetId, ipnet::IpNet)> = app.state.ipam.read(|ipam| {
        let topology = ipam.topology();
        topology
            .subnets()
            .filter(|(_, s)| app.config.rack_serves(rack, topology, s.cidr.network()))
            .map(|(id, s)| (id, s.cidr))
            .collect()
    });
    // A refused batch (another region's write in the same commit lost a race) fails this
    // top-up too, through no fault of its own: the store reloaded, so it is tried again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_top_up_block(app, rack, &subnets, size).await {
            Err(maas_ipam::DurableError::Refused(e)) if attempt < 3 => {
                tracing::debug!(event = "block_top_up_retried", rack, error = %e);
            }
            Ok(block) => return Ok(block),
            Err(e) => {
                return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
            }
        }
    }
}

/// One try of [`top_up_block`].
async fn try_top_up_block(
    app: &App,
    rack: &str,
    subnets: &[(maas_net::SubnetId, ipnet::IpNet)],
    size: u32,
) -> Result<Vec<IpAddr>, maas_ipam::DurableError> {
    let now = now();
    let (block, ticket) = app.state.ipam.submit(|ipam| {
        // What is held already, and until when: renewed only past half its time, so a
        // fetch that changes nothing commits nothing.
        let held: std::collections::HashMap<maas_net::ClientKey, (IpAddr, Timestamp)> = ipam
            .leases()
            .filter_map(|r| {
                r.lease
                    .as_ref()
                    .map(|l| (l.client.clone(), (r.ip, l.expires)))
            })
            .filter(|(c, _)| is_block_client(rack, c))
            .collect();
        let renew_after = now.plus(BLOCK_HOLD_SECS / 2);
        let mut block = Vec::new();
        for (id, cidr) in subnets {
            for slot in 0..size {
                let client = block_client(rack, cidr, slot);
                if let Some((ip, expires)) = held.get(&client)
                    && *expires > renew_after
                {
                    block.push(*ip);
                    continue;
                }
                match ipam.dhcp_offer(*id, &client, now, BLOCK_HOLD_SECS) {
                    Ok(ip) => block.push(ip),
                    Err(_) => break,
                }
            }
        }
        // Slots past the size (it was lowered) are given back.
        let extra: Vec<(IpAddr, maas_net::ClientKey)> = ipam
            .leases()
            .filter_map(|r| r.lease.as_ref().map(|l| (r.ip, l.client.clone())))
            .filter(|(ip, c)| is_block_client(rack, c) && !block.contains(ip))
            .collect();
        for (ip, client) in extra {
            ipam.dhcp_release(ip, &client)?;
        }
        Ok(block)
    })?;
    app.state.ipam.wait_async(ticket).await?;
    Ok(block)
}

/// Frees every address held for rack `rack`'s block (the rack was removed).
pub(super) async fn free_block(app: &App, rack: &str) -> Result<usize, ApiError> {
    let (freed, ticket) = app
        .state
        .ipam
        .submit(|ipam| {
            let held: Vec<(IpAddr, maas_net::ClientKey)> = ipam
                .leases()
                .filter_map(|r| r.lease.as_ref().map(|l| (r.ip, l.client.clone())))
                .filter(|(_, c)| is_block_client(rack, c))
                .collect();
            for (ip, client) in &held {
                ipam.dhcp_release(*ip, client)?;
            }
            Ok(held.len())
        })
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    app.state
        .ipam
        .wait_async(ticket)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(freed)
}

type StoreTicket =
    <maas_ipam::Durable<maas_ipam::RedbStore> as maas_pxe::dhcp::server::Leases>::Ticket;

/// Hands `report` from rack `rack` to the address manager; the ticket to wait for before it
/// is durable. A bind of an address of the rack's own block turns the reservation into the
/// client's lease.
fn submit_lease(
    app: &App,
    rack: &str,
    report: &LeaseReport,
) -> Result<Option<StoreTicket>, ApiError> {
    use maas_pxe::dhcp::server::Leases;
    let leases = &*app.state.ipam;
    let now = now();
    let lease_secs = report.lease_secs.unwrap_or(app.config.dhcp.lease_secs);
    let reserved = || {
        app.state
            .ipam
            .read(|ipam| crate::rack::leases::reservation(ipam, rack, report.ip).is_some())
    };
    if report.op == LeaseOp::Bind && reserved() {
        return app
            .state
            .ipam
            .submit(|ipam| {
                if let Some(slot) = crate::rack::leases::reservation(ipam, rack, report.ip) {
                    ipam.dhcp_release(report.ip, &slot)?;
                }
                ipam.dhcp_request_with_hostname(
                    report.ip,
                    &report.client,
                    report.hostname.as_deref(),
                    now,
                    lease_secs.into(),
                )
            })
            .map(|(_, ticket)| {
                tracing::info!(event = "rack_block_leased", rack, ip = %report.ip, client = %report.client);
                Some(ticket)
            })
            .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()));
    }
    let result = match report.op {
        LeaseOp::Bind => Leases::bind(
            leases,
            report.ip,
            &report.client,
            report.hostname.as_deref(),
            now,
            lease_secs,
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
    check_vlan(&app, &rack, report.ip)?;
    let submitted = submit_lease(&app, &rack, &report);
    let finished = finish_lease(&app, &rack, &report, submitted).await;
    app.state.changes.send(Kinds::NETWORK);
    finished.map(|record| Json(json!(record)))
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
    // A rack that reports outside its VLANs is refused whole: a rack that serves as it
    // should never does.
    for report in &batch.reports {
        check_vlan(&app, &rack, report.ip)?;
    }
    // Everything is handed to the store first, so one commit covers the whole batch.
    let submitted: Vec<_> = batch
        .reports
        .iter()
        .map(|report| submit_lease(&app, &rack, report))
        .collect();
    let mut results = Vec::with_capacity(submitted.len());
    for (report, submitted) in batch.reports.iter().zip(submitted) {
        results.push(match finish_lease(&app, &rack, report, submitted).await {
            Ok(record) => LeaseOutcome::Record(record),
            Err(e) => LeaseOutcome::Error(e.1),
        });
    }
    app.state.changes.send(Kinds::NETWORK);
    Ok(Json(LeaseBatchAnswer { results }))
}

async fn rack_seen(
    AxumState(app): AxumState<App>,
    axum::Extension(RackName(rack)): axum::Extension<RackName>,
    body: Result<Json<SeenReport>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(seen) = body.map_err(|e| bad_request(e.body_text()))?;
    if let Some(ip) = seen.ip {
        check_vlan(&app, &rack, ip)?;
    }
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
    check_vlan(&app, &rack, event.ip)?;
    let (entry, ticket) = app.state.discovered(&event, now())?;
    app.state.durable(ticket).await?;
    app.metrics.discoveries.inc();
    app.rack_count(&rack, |r| r.discoveries += 1);
    Ok(Json(json!(entry)))
}

/// The rack's own interfaces: known from now on (kept in memory; racks send them again
/// periodically).
async fn rack_interfaces(
    AxumState(app): AxumState<App>,
    axum::Extension(RackName(rack)): axum::Extension<RackName>,
    body: Result<Json<RackInterfaces>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(report) = body.map_err(|e| bad_request(e.body_text()))?;
    for iface in &report.interfaces {
        for ip in &iface.ips {
            check_vlan(&app, &rack, *ip)?;
        }
    }
    for iface in &report.interfaces {
        app.state.own_interface(Some(iface.mac), &iface.ips);
    }
    Ok(Json(json!({ "interfaces": report.interfaces.len() })))
}
