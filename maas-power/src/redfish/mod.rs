//! Redfish: system discovery, PowerState, ComputerSystem.Reset chosen from the BMC's
//! allowable values, the boot source override, ETag `If-Match`, basic or session
//! authentication, TLS verified unless the BMC's parameters opt out.

pub mod model;

#[cfg(feature = "tokio")]
mod client;
#[cfg(feature = "tokio")]
pub use client::{HttpClients, Redfish};

/// Reset types tried for each operation, best first. Types the Redfish specification marks as
/// optional and many BMCs leave unimplemented (PowerCycle, PushPowerButton, Nmi) come last.
pub mod preference {
    /// Power on.
    pub const ON: &[&str] = &["On", "ForceOn"];
    /// Hard power off.
    pub const OFF: &[&str] = &["ForceOff", "PushPowerButton"];
    /// Soft power off.
    pub const SOFT_OFF: &[&str] = &["GracefulShutdown"];
    /// Power cycle of a running machine.
    pub const CYCLE: &[&str] = &["ForceRestart", "GracefulRestart", "PowerCycle"];
    /// Hard reset of a running machine.
    pub const RESET: &[&str] = &["ForceRestart", "GracefulRestart"];
}
