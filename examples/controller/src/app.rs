//! What every part of the controller shares: the store, the configuration, the metrics, the
//! power manager, and what is known of racks and BMCs.

use std::collections::BTreeMap;
use std::sync::Arc;

use maas_power::manager::{ManagerConfig, PowerManager};
use serde_json::{Value, json};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::{Machine, State};

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) state: Arc<State>,
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    /// One entry per machine with power parameters, keyed by its MAC.
    pub(crate) power: Arc<PowerManager>,
    /// The proxy, once started (for its counters).
    pub(crate) proxy: Arc<std::sync::OnceLock<maas_proxy::server::Proxy>>,
    /// A rack's region (what the rack learns is reported there); `None` elsewhere.
    pub(crate) region: Option<Arc<crate::rack::Region>>,
    /// The racks that reported to this region: name, last contact, reports.
    pub(crate) racks: Arc<std::sync::Mutex<BTreeMap<String, RackSeen>>>,
    /// How many unknown machines may be enlisted, and how fast.
    pub(crate) enlist_limits: Arc<crate::boot::EnlistLimits>,
    /// Failed authentications per source address.
    pub(crate) guard: Arc<crate::auth::Guard>,
    /// The web dashboard's logged-in browsers.
    pub(crate) sessions: Arc<crate::web::Sessions>,
}

/// A rack as this region saw it since it started: what it reported, and the health its
/// calls carry (`None` until a call carried it, as an older rack's never do).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct RackSeen {
    pub(crate) name: String,
    pub(crate) leases_recorded: u64,
    pub(crate) leases_refused: u64,
    pub(crate) discoveries: u64,
    /// Whether its DHCP serves.
    pub(crate) dhcp: Option<crate::protocol::DhcpHealth>,
    /// How many reports its queue holds.
    pub(crate) queued_reports: Option<u64>,
    /// When a call last carried either (seconds since the epoch).
    pub(crate) health_at: Option<u64>,
}

impl App {
    /// The controller's parts around `state`; every machine with power parameters gets its
    /// driver (a machine whose parameters do not make a driver is reported and left out).
    pub(crate) fn new(state: State, config: Config) -> Self {
        let mut manager_config = ManagerConfig::default();
        manager_config.max_concurrent_queries(config.power.max_concurrent_queries);
        let app = Self {
            state: Arc::new(state),
            metrics: Arc::new(Metrics::default()),
            power: Arc::new(PowerManager::new(manager_config)),
            proxy: Arc::default(),
            region: None,
            racks: Arc::default(),
            enlist_limits: Arc::new(crate::boot::EnlistLimits::new(
                config.controller.enlist_max_new,
                config.controller.enlist_per_minute,
            )),
            guard: Arc::default(),
            sessions: Arc::default(),
            config: Arc::new(config),
        };
        for machine in app.state.machines() {
            if let Err(e) = app.register_power(&machine) {
                tracing::warn!(event = "power_error", mac = %machine.mac, error = %e);
            }
        }
        app
    }
}

/// A machine as the API shows it: the secrets in its power parameters masked.
pub(crate) fn shown(machine: &Machine) -> Value {
    let mut value = json!(machine);
    if let Some(power) = value.get_mut("power").and_then(Value::as_object_mut) {
        for (key, v) in power.iter_mut() {
            if ["pass", "k_g", "token", "secret"]
                .iter()
                .any(|s| key.contains(s))
                && !v.is_null()
            {
                *v = json!("********");
            }
        }
    }
    value
}

impl App {
    /// How machines' network configurations are rendered: the configured name servers and
    /// the `maas` search domain's followers (none yet).
    pub(crate) fn render_options(&self) -> maas_net::netplan::RenderOptions {
        let mut options = maas_net::netplan::RenderOptions::default();
        for ip in &self.config.controller.dns_servers {
            options.dns_server(*ip);
        }
        // The controller's own DNS, where its subnets allow it (the renderer picks by
        // family and subnet, and honours allow_dns).
        if let Some(dns) = self.config.dns.as_ref().filter(|d| d.enabled) {
            for ip in dns
                .addresses
                .iter()
                .chain(&self.config.controller.advertise)
            {
                options.dns_server(*ip);
            }
        }
        options
    }

    /// A machine as the API shows it: secrets masked, its last power state added.
    pub(crate) fn shown(&self, machine: &Machine) -> Value {
        let mut value = shown(machine);
        let seen = self.state.power(machine.mac);
        if let Some(object) = value.as_object_mut() {
            object.insert("power_state".into(), json!(seen));
        }
        value
    }
}

impl App {
    /// After the state was reloaded from a database other regions share: drivers for the
    /// machines they added, and what follows the machines.
    pub(crate) fn reloaded(&self) {
        for machine in self.state.machines() {
            if let Err(e) = self.register_power(&machine) {
                tracing::debug!(event = "power_error", mac = %machine.mac, error = %e);
            }
        }
        self.machines_changed();
        self.state.changes.send(crate::state::notify::Kinds::ALL);
    }

    /// After machines were added, removed or changed: the proxy's refused destinations follow
    /// the machines' BMC addresses at once.
    pub(crate) fn machines_changed(&self) {
        if let (Some(proxy), Some(section)) = (self.proxy.get(), &self.config.proxy) {
            proxy.set_denied(crate::proxy::denied(self, section));
        }
    }
}

/// `machine` with the secrets in its power parameters masked, as racks get it.
pub(crate) fn masked(machine: &Machine) -> Machine {
    serde_json::from_value(shown(machine)).unwrap_or_else(|_| Machine {
        power: None,
        ..machine.clone()
    })
}
