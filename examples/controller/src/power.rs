//! Power: the machines' BMC drivers in one power manager, what was last seen of each, and
//! the monitor that queries them at a bounded rate.

use std::time::Duration;

use maas_net::Mac;
use maas_power::PowerError;
use maas_power::manager::Observation;
use serde_json::json;

use crate::app::App;
use crate::now;
use crate::state::{Machine, PowerSeen};

impl App {
    /// Records what a power action or query found out about `mac`; logs changes of state.
    pub(crate) fn saw_power(&self, mac: Mac, seen: &Result<Observation, PowerError>) {
        let entry = match seen {
            Ok(o) => PowerSeen {
                state: json!(o.state).as_str().unwrap_or("unknown").to_string(),
                error: None,
                at: o
                    .at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            },
            Err(e) => PowerSeen {
                state: "error".into(),
                error: Some(e.to_string()),
                at: now().0,
            },
        };
        match self.state.saw_power(mac, entry.clone()) {
            Ok(Some((before, _ticket))) if before.as_deref() != Some(entry.state.as_str()) => {
                // Observational: made durable with the next commit, not waited for.
                tracing::info!(
                    event = "power_state",
                    mac = %mac,
                    state = entry.state,
                    was = before,
                    error = entry.error,
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(event = "state_error", error = %e),
        }
    }

    /// (Re)registers `machine`'s power driver with the manager.
    pub(crate) fn register_power(&self, machine: &Machine) -> Result<(), PowerError> {
        let id = machine.mac.to_string();
        self.power.remove(&id);
        let Some(params) = &machine.power else {
            return Ok(());
        };
        let driver = maas_power::build(params)?;
        self.power.insert(id, driver);
        Ok(())
    }

    /// One round of the power monitor: every machine with a driver is queried, at most
    /// `[power] max_concurrent_queries` at once.
    pub(crate) async fn monitor_round(&self) -> usize {
        let macs: Vec<Mac> = self
            .state
            .machines()
            .into_iter()
            .filter(|m| m.power.is_some())
            .map(|m| m.mac)
            .collect();
        let results = self
            .power
            .query_many(macs.iter().map(ToString::to_string))
            .await;
        let n = results.len();
        for (id, result) in results {
            if let Ok(mac) = id.parse::<Mac>() {
                self.saw_power(mac, &result);
            }
        }
        n
    }
}

/// Queries every machine's power state every `[power] monitor_interval_secs`, until aborted.
pub(crate) async fn monitor(app: App) {
    let every = Duration::from_secs(app.config.power.monitor_interval_secs.max(1));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = std::time::Instant::now();
        let n = app.monitor_round().await;
        if n > 0 {
            tracing::info!(
                event = "power_monitor",
                queried = n,
                secs = started.elapsed().as_secs_f64()
            );
        }
    }
}
