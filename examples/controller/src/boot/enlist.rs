//! Machines seen booting: recorded, and an unknown one enlisted within `[controller]`'s
//! enlistment limits.

use std::time::Instant;

use maas_net::Mac;

use crate::app::App;
use crate::now;
use crate::state::{BootSeen, Machine, Seen};

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
