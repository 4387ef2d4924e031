//! Discovery on the `[discovery]` interfaces, through maas-discovery's watcher: every
//! ARP, NDP and mDNS frame goes through its neighbour table, whose events are recorded (the
//! discoveries and DISCOVERED addresses, committed together), and the subnets with
//! `active_discovery` that have an address on the interface are scanned every
//! `scan_interval_secs`.

use std::net::IpAddr;
use std::time::Duration;

use maas_discovery::capture::interface_ipv4_addresses;
use maas_discovery::watch::{Report, WatchConfig, Watcher};

use crate::app::App;
use crate::error::Error;
use crate::now;

/// Opens the capture on `interface` (so a missing interface or privilege stops the start),
/// then returns the task that watches it until dropped.
pub(crate) fn start(
    app: &App,
    interface: &str,
) -> Result<impl Future<Output = ()> + Send + 'static, Error> {
    let settings = &app.config.discovery;
    let mut config = WatchConfig::new(interface);
    config.scan_rate(settings.scan_rate);
    if settings.scan_interval_secs > 0 {
        config.scan_every(Duration::from_secs(settings.scan_interval_secs));
    }
    let targets_app = app.clone();
    let name = interface.to_string();
    config.scan_targets(move || scan_targets(&targets_app, &name));
    let mut watcher = Watcher::open(config).map_err(|source| Error::Discovery {
        interface: interface.to_string(),
        source,
    })?;
    // The controller's own interface is never an unknown discovery.
    let own: Vec<IpAddr> = interface_ipv4_addresses(interface)
        .unwrap_or_default()
        .into_iter()
        .map(IpAddr::V4)
        .collect();
    app.state.own_interface(Some(watcher.capture().mac()), &own);
    if let Some(region) = &app.region {
        tokio::spawn(report_interface(
            std::sync::Arc::clone(region),
            crate::protocol::RackInterface {
                mac: watcher.capture().mac(),
                ips: own.clone(),
            },
        ));
    }
    let app = app.clone();
    let interface = interface.to_string();
    Ok(async move {
        let mac = watcher.capture().mac();
        tracing::info!(event = "discovery_listening", interface, mac = %mac);
        let error = watcher
            .run(|report| on_report(&app, &interface, report))
            .await;
        tracing::error!(event = "discovery_error", interface, error = %error);
    })
}

/// The subnets to scan from `interface`: those with `active_discovery` holding one of its
/// addresses (IPv4; IPv6 prefixes are too large to sweep and are left to NDP).
fn scan_targets(app: &App, interface: &str) -> Vec<ipnet::IpNet> {
    let mine: Vec<IpAddr> = interface_ipv4_addresses(interface)
        .unwrap_or_default()
        .into_iter()
        .map(IpAddr::V4)
        .collect();
    app.state.ipam.read(|ipam| {
        ipam.topology()
            .subnets()
            .filter(|(_, s)| s.active_discovery && s.cidr.addr().is_ipv4())
            .filter(|(_, s)| mine.iter().any(|ip| s.cidr.contains(ip)))
            .map(|(_, s)| s.cidr.trunc())
            .collect()
    })
}

fn on_report(app: &App, interface: &str, report: Report) {
    match report {
        Report::Neighbour(event) => record(app, &event),
        Report::ScanStarted { subnet, targets } => {
            tracing::info!(event = "scan_started", interface, subnet = %subnet, targets);
        }
        Report::ScanDone(summary) => tracing::info!(
            event = "scan_done",
            interface,
            subnet = %summary.subnet,
            targets = summary.targets,
            sent = summary.sent,
            answered = summary.answers.len(),
        ),
        Report::ScanFailed { subnet, error } => {
            tracing::warn!(event = "scan_error", subnet = %subnet, error = %error);
        }
        Report::SendFailed { subnet, error } => {
            tracing::warn!(event = "scan_error", subnet = %subnet, error = %error);
        }
        Report::BadFrame(error) => {
            tracing::debug!(event = "bad_frame", interface, error = %error);
        }
        _ => {}
    }
}

fn record(app: &App, event: &maas_discovery::Event) {
    let refreshed = event.event == maas_discovery::EventKind::Refreshed;
    if let Some(region) = &app.region {
        region.report_discovery(event.clone());
    }
    match app.state.discovered(event, now()) {
        Ok((entry, ticket)) => {
            app.metrics.discoveries.inc();
            if let Some(resolver) = app.config.discovery.reverse_dns
                && entry.hostname.is_none()
                && event.event == maas_discovery::EventKind::New
            {
                tokio::spawn(reverse_name(app.clone(), resolver, entry.clone()));
            }
            if !refreshed {
                // Logged once durable: the line is what says it was recorded.
                let app = app.clone();
                tokio::spawn(async move {
                    match app.state.durable(ticket).await {
                        Ok(()) => tracing::info!(
                            event = "discovered",
                            ip = %entry.ip,
                            mac = %entry.mac,
                            vid = entry.vid,
                            discovery = %serde_json::to_string(&entry).unwrap_or_default(),
                        ),
                        Err(e) => tracing::error!(event = "state_error", error = %e),
                    }
                });
            }
        }
        Err(e) => tracing::error!(event = "state_error", error = %e),
    }
}

/// How long a reverse lookup may take.
const REVERSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks `resolver` for the reverse name of `entry`'s address and records it as the
/// discovery's host name; a failure is logged and leaves the discovery as it is.
async fn reverse_name(app: App, resolver: std::net::SocketAddr, entry: crate::state::Discovery) {
    let id = u16::from_be_bytes(entry.mac.octets()[4..6].try_into().unwrap_or([0, 0]));
    let lookup = async {
        let local: std::net::SocketAddr = if resolver.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = tokio::net::UdpSocket::bind(local).await?;
        socket.connect(resolver).await?;
        socket.send(&crate::rdns::query(entry.ip, id)).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await?;
            match crate::rdns::answer(&buf[..n], id, entry.ip) {
                Err(crate::rdns::RdnsError::Unrelated(_)) => continue,
                other => return other.map_err(std::io::Error::other),
            }
        }
    };
    let name = match tokio::time::timeout(REVERSE_TIMEOUT, lookup).await {
        Ok(Ok(Some(name))) => name,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(event = "reverse_dns_failed", ip = %entry.ip, error = %e);
            return;
        }
        Err(_) => {
            tracing::debug!(event = "reverse_dns_failed", ip = %entry.ip, error = "timed out");
            return;
        }
    };
    match app
        .state
        .discovery_named(entry.vid, entry.ip, entry.mac, &name)
    {
        Ok(Some(ticket)) => match app.state.durable(ticket).await {
            Ok(()) => tracing::info!(event = "discovery_named", ip = %entry.ip, hostname = name),
            Err(e) => tracing::error!(event = "state_error", error = %e),
        },
        Ok(None) => {}
        Err(e) => tracing::error!(event = "state_error", error = %e),
    }
}

/// How often a rack tells its region about its discovery interface again (a restarted region
/// has forgotten it).
const REPORT_INTERFACE_EVERY: Duration = Duration::from_secs(300);

/// Tells the region about this rack's discovery interface, now and every
/// [`REPORT_INTERFACE_EVERY`] (sooner again after a failure), until the task is dropped.
async fn report_interface(
    region: std::sync::Arc<crate::rack::Region>,
    iface: crate::protocol::RackInterface,
) {
    let report = crate::protocol::RackInterfaces {
        interfaces: vec![iface],
    };
    loop {
        let wait = match region
            .call::<serde_json::Value>(
                hyper::Method::POST,
                "/api/v1/rack/interfaces",
                Some(&report),
            )
            .await
        {
            Ok(_) => REPORT_INTERFACE_EVERY,
            Err(e) => {
                tracing::debug!(event = "report_failed", kind = "interfaces", error = %e);
                Duration::from_secs(10)
            }
        };
        tokio::time::sleep(wait).await;
    }
}
