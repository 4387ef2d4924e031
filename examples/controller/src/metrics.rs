//! `/metrics`: the controller's counters and gauges in the OpenMetrics text format, through
//! prometheus-client.

use std::sync::atomic::AtomicU64;

use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::app::App;
use crate::state::Status;

/// A DHCP event's kind, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EventLabel {
    pub(crate) event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CidrLabel {
    cidr: String,
}

/// The counters the controller's parts increment as they work.
#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) api_requests: Counter,
    pub(crate) api_errors: Counter,
    pub(crate) auth_refused: Counter,
    pub(crate) boot_scripts: Counter,
    pub(crate) dhcp_events: Family<EventLabel, Counter>,
    pub(crate) enlisted: Counter,
    pub(crate) enlistments_refused: Counter,
    pub(crate) tftp_transfers: Counter,
    pub(crate) discoveries: Counter,
}

impl Metrics {
    /// Counts one DHCP event of kind `event`.
    pub(crate) fn dhcp_event(&self, event: &'static str) {
        self.dhcp_events.get_or_create(&EventLabel { event }).inc();
    }

    /// The counters, and the gauges read off `app` now, encoded.
    fn encode(&self, app: &App) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register(
            "maas_api_requests",
            "API requests served",
            self.api_requests.clone(),
        );
        registry.register(
            "maas_api_errors",
            "API requests answered with an error",
            self.api_errors.clone(),
        );
        registry.register(
            "maas_api_auth_refused",
            "API requests refused for their credential or role (401, 403, 429)",
            self.auth_refused.clone(),
        );
        registry.register(
            "maas_boot_scripts",
            "iPXE scripts served",
            self.boot_scripts.clone(),
        );
        registry.register(
            "maas_tftp_transfers",
            "TFTP transfers ended (completed, aborted, timed out or failed)",
            self.tftp_transfers.clone(),
        );
        registry.register(
            "maas_machines_enlisted",
            "Unknown machines recorded as new",
            self.enlisted.clone(),
        );
        registry.register(
            "maas_enlistments_refused",
            "Unknown machines not recorded because of the enlistment limits",
            self.enlistments_refused.clone(),
        );
        registry.register(
            "maas_discovery_events",
            "Discovery events recorded (new, refreshed, moved, conflict, host name)",
            self.discoveries.clone(),
        );
        registry.register(
            "maas_dhcp_events",
            "DHCP server events by kind",
            self.dhcp_events.clone(),
        );
        if let Some(proxy) = app.proxy.get()
            && let Value::Object(fields) = json!(proxy.metrics())
        {
            for (name, value) in fields {
                if let Some(n) = value.as_u64() {
                    registry.register(
                        format!("maas_proxy_{name}"),
                        format!("Proxy counter {name}"),
                        ConstCounter::new(n),
                    );
                }
            }
        }
        if let Some(region) = &app.region {
            let status = region.status();
            let reachable: Gauge = Gauge::default();
            reachable.set(i64::from(status.reachable));
            registry.register(
                "maas_rack_region_reachable",
                "Whether the rack's last call reached a region (1) or none answered (0)",
                reachable,
            );
            let queued: Gauge = Gauge::default();
            queued.set(i64::try_from(status.queued).unwrap_or(i64::MAX));
            registry.register(
                "maas_rack_queued_reports",
                "Reports (lease operations, seen reports, discoveries) waiting for a region",
                queued,
            );
            registry.register(
                "maas_rack_region_failovers",
                "Calls the rack moved on to its next region",
                ConstCounter::new(status.failovers),
            );
        }
        let machines: Family<StatusLabel, Gauge> = Family::default();
        let all = app.state.machines();
        for status in Status::ALL {
            let n = all.iter().filter(|m| m.status == status).count();
            machines
                .get_or_create(&StatusLabel {
                    status: status.as_str().to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        registry.register("maas_machines", "Machines by status", machines);
        let leases: Gauge = Gauge::default();
        let usage: Family<CidrLabel, Gauge<f64, AtomicU64>> = Family::default();
        app.state.ipam.read(|ipam| {
            leases.set(i64::try_from(ipam.leases().count()).unwrap_or(i64::MAX));
            for (id, subnet) in ipam.topology().subnets() {
                if let Ok(stats) = ipam.statistics(id, false, false) {
                    usage
                        .get_or_create(&CidrLabel {
                            cidr: subnet.cidr.to_string(),
                        })
                        .set(stats.usage);
                }
            }
        });
        registry.register("maas_dhcp_leases", "DHCP leases and offers held", leases);
        registry.register(
            "maas_subnet_usage",
            "Share of a subnet's addresses in use",
            usage,
        );
        let mut out = String::new();
        encode(&mut out, &registry)?;
        Ok(out)
    }
}

/// `GET /metrics`.
pub(crate) async fn handler(AxumState(app): AxumState<App>) -> Response {
    match app.metrics.encode(&app) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
