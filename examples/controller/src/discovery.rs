//! Discovery on the `[discovery]` interfaces: every ARP, NDP and mDNS frame goes through a
//! maas-discovery observer, whose events are recorded (the neighbour table and DISCOVERED
//! addresses in IPAM), and the subnets with `active_discovery` that have an address on the
//! interface are scanned every `scan_interval_secs`.

use std::net::IpAddr;
use std::time::Duration;

use maas_discovery::capture::{AsyncCapture, CaptureConfig};
use maas_discovery::scan::{Scan, ScanConfig};
use maas_discovery::{Observer, ObserverConfig};
use maas_net::Timestamp;
use tokio::time::Instant;

use crate::app::App;
use crate::error::Error;
use crate::now;

/// How long after start the first scan begins (the capture is open by then).
const FIRST_SCAN_AFTER: Duration = Duration::from_secs(1);

/// Opens the capture on `interface` (so a missing interface or privilege stops the start),
/// then returns the task that watches it until aborted.
pub(crate) fn start(
    app: &App,
    interface: &str,
) -> Result<impl Future<Output = ()> + Send + 'static, Error> {
    let capture =
        AsyncCapture::open(&CaptureConfig::new(interface)).map_err(|source| Error::Discovery {
            interface: interface.to_string(),
            source,
        })?;
    let app = app.clone();
    let interface = interface.to_string();
    Ok(async move {
        if let Err(e) = watch(&app, &interface, &capture).await {
            tracing::error!(event = "discovery_error", interface, error = e);
        }
    })
}

/// The subnets to scan from `interface`: those with `active_discovery` holding one of its
/// addresses (IPv4; IPv6 prefixes are too large to sweep and are left to NDP).
fn scan_targets(app: &App, interface: &str) -> Vec<ipnet::IpNet> {
    let mine: Vec<IpAddr> = match nix::ifaddrs::getifaddrs() {
        Ok(list) => list
            .filter(|a| a.interface_name == interface)
            .filter_map(|a| a.address?.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
            .collect(),
        Err(_) => Vec::new(),
    };
    app.state.ipam.read(|ipam| {
        ipam.topology()
            .subnets()
            .filter(|(_, s)| s.active_discovery && s.cidr.addr().is_ipv4())
            .filter(|(_, s)| mine.iter().any(|ip| s.cidr.contains(ip)))
            .map(|(_, s)| s.cidr.trunc())
            .collect()
    })
}

async fn watch(app: &App, interface: &str, capture: &AsyncCapture) -> Result<(), String> {
    let settings = &app.config.discovery;
    let mut observer = Observer::new(ObserverConfig::new(interface));
    let own_mac = capture.get_ref().mac();
    let every = Duration::from_secs(settings.scan_interval_secs);
    let mut next_scan =
        (settings.scan_interval_secs > 0).then(|| Instant::now() + FIRST_SCAN_AFTER);
    // Subnets still to sweep in this round, and the sweep under way.
    let mut pending: Vec<ipnet::IpNet> = Vec::new();
    let mut scan: Option<(ipnet::IpNet, Scan)> = None;
    tracing::info!(event = "discovery_listening", interface, mac = %own_mac);
    let mut buf = vec![0u8; 65536];
    loop {
        let at = Instant::now();
        if next_scan.is_some_and(|t| t <= at) {
            pending = scan_targets(app, interface);
            next_scan = Some(at + every);
        }
        if scan.is_none()
            && let Some(net) = pending.pop()
        {
            let mut config = ScanConfig::new(own_mac);
            config.rate(settings.scan_rate);
            match Scan::subnet(config, net) {
                Ok(s) => {
                    tracing::info!(event = "scan_started", interface, subnet = %net);
                    scan = Some((net, s));
                }
                Err(e) => tracing::warn!(event = "scan_error", subnet = %net, error = %e),
            }
        }
        if let Some((net, s)) = scan.as_mut() {
            let std_now = Instant::now().into_std();
            while let Some(frame) = s.poll_transmit(std_now) {
                if let Err(e) = capture.send(&frame).await {
                    tracing::warn!(event = "scan_error", subnet = %net, error = %e);
                    break;
                }
            }
            if s.is_done(std_now) {
                tracing::info!(
                    event = "scan_done",
                    interface,
                    subnet = %net,
                    targets = s.len(),
                    answered = s.answers().count(),
                );
                scan = None;
                continue;
            }
        }
        let wake = [
            scan.as_ref().and_then(|(_, s)| s.poll_timeout()),
            observer.poll_timeout(),
            next_scan.map(Instant::into_std),
        ]
        .into_iter()
        .flatten()
        .min()
        .map_or_else(
            || Instant::now() + Duration::from_secs(3600),
            Instant::from_std,
        );
        tokio::select! {
            received = capture.recv(&mut buf) => {
                let received = received.map_err(|e| format!("receiving: {e}"))?;
                if received.outgoing {
                    continue;
                }
                let std_now = Instant::now().into_std();
                if let Ok(Some(frame)) = received.decode(&buf) {
                    observer.handle_frame(std_now, Timestamp::now(), &frame);
                    if let Some((_, s)) = scan.as_mut() {
                        s.handle_frame(std_now, &frame);
                    }
                }
            }
            () = tokio::time::sleep_until(wake) => {
                let std_now = Instant::now().into_std();
                if observer.poll_timeout().is_some_and(|t| t <= std_now) {
                    observer.handle_timeout(std_now);
                }
            }
        }
        while let Some(event) = observer.poll_event() {
            record(app, &event);
        }
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
