//! `[[machines]]`: the machines known before they boot, their power parameters and host
//! names.

use maas_net::Mac;
use serde::{Deserialize, Serialize};

/// `[[machines]]`: a machine the controller knows before it boots.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct MachineConfig {
    /// Its boot interface.
    pub(crate) mac: Mac,
    /// Host name.
    #[serde(default)]
    pub(crate) hostname: Option<String>,
    /// Architecture, MAAS style (`amd64/generic`).
    #[serde(default)]
    pub(crate) architecture: Option<String>,
    /// Zone name (`default` when absent).
    #[serde(default)]
    pub(crate) zone: Option<String>,
    /// Power driver and its parameters (`driver = "ipmi"`, `power_address = ...`).
    #[serde(default)]
    pub(crate) power: Option<toml::Table>,
}

/// A machine's power parameters, MAAS style: `power_type` (`ipmi`, `redfish`, `wol`,
/// `webhook`, `manual`) and the driver's parameters (`power_address`, `power_user`, ...).
pub(crate) fn power_params(
    table: &toml::Table,
) -> Result<maas_power::params::DriverParams, String> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())
}

/// A DNS label: what MAAS accepts as a machine's host name.
pub(crate) fn valid_hostname(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
