//! BMC power drivers and a power manager for thousands of machines.
//!
//! Layers:
//! - [`driver`]: the vocabulary ([`PowerState`], [`OffMode`], [`BootRequest`],
//!   [`Capabilities`], [`Action`]) and the driver traits: [`BlockingPowerDriver`] always,
//!   `PowerDriver` (async, object safe) with the `tokio` feature.
//! - [`params`]: driver parameters as serde types with MAAS's names (`power_address`,
//!   `power_user`, `power_pass`, `cipher_suite_id`, `privilege_level`, `k_g`, ...).
//! - Drivers: [`ipmi`] (RMCP+ cipher suites 3 and 17 and an IPMI 1.5 fallback; suite 3
//!   sessions on the `ipmi-rs` crate behind [`ipmi::guard`], the rest on our own sans-IO
//!   [`ipmi::session`]; see [`ipmi::Backend`]), `redfish`, [`wol`], `webhook`, [`manual`].
//! - `manager` (feature `tokio`): one command at a time per BMC endpoint (shared by the
//!   machines behind it), confirmation by polling,
//!   retries of connection errors only, bounded concurrent status queries.
//!
//! Errors ([`PowerError`]) carry a class ([`ErrorClass`]) that decides retrying; passwords
//! are [`Secret`]s and never appear in `Debug` or `Display` output.
//!
//! ```no_run
//! use maas_power::{BlockingPowerDriver, ipmi::IpmiBlocking, params::IpmiParams};
//!
//! let bmc = IpmiBlocking::new(IpmiParams {
//!     power_address: "10.77.160.10".into(),
//!     power_user: "maas".into(),
//!     power_pass: "secret".into(),
//!     ..IpmiParams::default()
//! })?;
//! println!("{}", bmc.power_query()?);
//! # Ok::<(), maas_power::PowerError>(())
//! ```
#![forbid(unsafe_code)]

pub mod driver;
mod error;
pub mod ipmi;
pub mod manual;
pub mod params;
pub mod redfish;
mod secret;
pub mod wol;

#[cfg(feature = "tokio")]
pub mod manager;
#[cfg(feature = "tokio")]
pub mod webhook;

pub use driver::{
    Action, BlockingPowerDriver, BootDevice, BootMode, BootPersistence, BootRequest, Capabilities,
    OffMode, PowerState,
};
#[cfg(feature = "tokio")]
pub use driver::{Blocking, PowerDriver, PowerFuture};
pub use error::{Cause, ErrorClass, PowerError};
pub use secret::Secret;

/// The async driver for `params`.
#[cfg(feature = "tokio")]
pub fn build(params: &params::DriverParams) -> Result<std::sync::Arc<dyn PowerDriver>, PowerError> {
    use params::DriverParams;
    use std::sync::Arc;
    Ok(match params {
        DriverParams::Ipmi(p) => Arc::new(ipmi::Ipmi::new(p.clone())?),
        DriverParams::Redfish(p) => Arc::new(redfish::Redfish::new(p.clone())?),
        DriverParams::Wol(p) => Arc::new(wol::Wol::new(p)?),
        DriverParams::Webhook(p) => Arc::new(webhook::Webhook::new(p.clone())?),
        DriverParams::Manual => Arc::new(manual::Manual),
    })
}
