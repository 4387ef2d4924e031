//! Driver parameters as serde types, with MAAS's parameter names.
//!
//! ```
//! use maas_power::params::{DriverParams, Privilege};
//!
//! let p: DriverParams = serde_json::from_str(r#"{
//!     "power_type": "ipmi", "power_address": "10.77.160.10", "power_user": "maas",
//!     "power_pass": "s3cret", "cipher_suite_id": "17", "privilege_level": "OPERATOR"
//! }"#).unwrap();
//! let DriverParams::Ipmi(ipmi) = &p else { unreachable!() };
//! assert_eq!(ipmi.privilege_level, Privilege::Operator);
//! assert!(!format!("{p:?}").contains("s3cret"));
//! ```

use serde::{Deserialize, Serialize};

use crate::{BootMode, OffMode, Secret};

/// The parameters of one machine's power driver, tagged by MAAS's `power_type`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "power_type", rename_all = "lowercase")]
#[non_exhaustive]
pub enum DriverParams {
    /// IPMI over LAN.
    Ipmi(IpmiParams),
    /// Redfish.
    Redfish(RedfishParams),
    /// Wake-on-LAN.
    Wol(WolParams),
    /// HTTP webhook.
    Webhook(WebhookParams),
    /// Manual: an operator presses the button.
    Manual,
}

/// IPMI protocol version: MAAS's `power_driver`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpmiVersion {
    /// IPMI 2.0 (RMCP+), falling back to IPMI 1.5 when the BMC has no RMCP+.
    #[default]
    #[serde(rename = "LAN_2_0")]
    Lan20,
    /// IPMI 1.5 only (MD5 authentication).
    #[serde(rename = "LAN")]
    Lan15,
}

/// RMCP+ cipher suite: MAAS's `cipher_suite_id`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CipherSuite {
    /// RAKP-HMAC-SHA1, HMAC-SHA1-96 integrity, AES-CBC-128 confidentiality.
    #[default]
    #[serde(rename = "3")]
    Suite3,
    /// RAKP-HMAC-SHA256, HMAC-SHA256-128 integrity, AES-CBC-128 confidentiality.
    #[serde(rename = "17")]
    Suite17,
}

impl CipherSuite {
    /// The suite's number.
    pub fn id(self) -> u8 {
        match self {
            Self::Suite3 => 3,
            Self::Suite17 => 17,
        }
    }

    /// The suite numbered `id`, if supported.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            3 => Some(Self::Suite3),
            17 => Some(Self::Suite17),
            _ => None,
        }
    }
}

/// IPMI session privilege: MAAS's `privilege_level`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Privilege {
    /// USER: can read the power state only.
    User,
    /// OPERATOR: enough for chassis control and boot options (MAAS's default).
    #[default]
    Operator,
    /// ADMINISTRATOR.
    #[serde(alias = "ADMINISTRATOR")]
    Admin,
}

impl Privilege {
    /// The IPMI privilege level code.
    pub fn code(self) -> u8 {
        match self {
            Self::User => 2,
            Self::Operator => 3,
            Self::Admin => 4,
        }
    }
}

fn default_true() -> bool {
    true
}

/// IPMI over LAN parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpmiParams {
    /// `HOST` or `HOST:PORT` (port 623 by default).
    pub power_address: String,
    /// The BMC user.
    #[serde(default)]
    pub power_user: String,
    /// The BMC password.
    #[serde(default)]
    pub power_pass: Secret,
    /// IPMI 2.0 (default) or 1.5.
    #[serde(default)]
    pub power_driver: IpmiVersion,
    /// RMCP+ cipher suite (3 by default).
    #[serde(default)]
    pub cipher_suite_id: CipherSuite,
    /// Session privilege (OPERATOR by default).
    #[serde(default)]
    pub privilege_level: Privilege,
    /// The BMC key Kg (empty: the user's password is used).
    #[serde(default)]
    pub k_g: Secret,
    /// Firmware mode of the PXE boot override.
    #[serde(default)]
    pub power_boot_type: BootMode,
    /// How `power_off` is done by callers that do not say.
    #[serde(default)]
    pub power_off_mode: OffMode,
    /// The machine's boot MAC (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}

/// Redfish authentication scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedfishAuth {
    /// HTTP basic authentication on every request.
    #[default]
    Basic,
    /// A session from the SessionService, deleted when the driver is done.
    Session,
}

/// Redfish parameters. `Default` verifies TLS and uses ETags, as deserializing does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedfishParams {
    /// The BMC's base URL, `https://host[:port]` (or `http://`).
    pub power_address: String,
    /// The BMC user.
    #[serde(default)]
    pub power_user: String,
    /// The BMC password.
    #[serde(default)]
    pub power_pass: Secret,
    /// The ComputerSystem id (empty: the first member of /redfish/v1/Systems).
    #[serde(default)]
    pub node_id: String,
    /// Verify the BMC's TLS certificate (on by default).
    #[serde(default = "default_true")]
    pub power_verify_ssl: bool,
    /// Send `If-Match` with the resource's ETag on PATCH (on by default; some BMCs reject it).
    #[serde(default = "default_true")]
    pub use_etag: bool,
    /// Basic or session authentication.
    #[serde(default)]
    pub auth: RedfishAuth,
    /// Firmware mode of the PXE boot override.
    #[serde(default)]
    pub power_boot_type: BootMode,
}

/// Wake-on-LAN parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WolParams {
    /// The machine's MAC address, in any spelling `maas_net::Mac` parses.
    pub mac_address: String,
    /// Where to send the magic packet, `IP[:PORT]` (default `255.255.255.255:9`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_address: Option<String>,
}

/// Webhook parameters (MAAS's webhook driver). `Default` has MAAS's regular expressions and
/// verifies TLS, as deserializing does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookParams {
    /// URI POSTed to power on.
    pub power_on_uri: String,
    /// URI POSTed to power off.
    pub power_off_uri: String,
    /// URI fetched (GET) to query the state.
    #[serde(default)]
    pub power_query_uri: String,
    /// Regular expression that marks the query body as "on".
    #[serde(default = "default_on_regex")]
    pub power_on_regex: String,
    /// Regular expression that marks the query body as "off".
    #[serde(default = "default_off_regex")]
    pub power_off_regex: String,
    /// User for basic authentication.
    #[serde(default)]
    pub power_user: String,
    /// Password for basic authentication.
    #[serde(default)]
    pub power_pass: Secret,
    /// Bearer token (used instead of basic authentication when set).
    #[serde(default)]
    pub power_token: Secret,
    /// Verify TLS certificates (on by default).
    #[serde(default = "default_true")]
    pub power_verify_ssl: bool,
}

impl Default for RedfishParams {
    fn default() -> Self {
        Self {
            power_address: String::new(),
            power_user: String::new(),
            power_pass: Secret::default(),
            node_id: String::new(),
            power_verify_ssl: true,
            use_etag: true,
            auth: RedfishAuth::default(),
            power_boot_type: BootMode::default(),
        }
    }
}

impl Default for WebhookParams {
    fn default() -> Self {
        Self {
            power_on_uri: String::new(),
            power_off_uri: String::new(),
            power_query_uri: String::new(),
            power_on_regex: default_on_regex(),
            power_off_regex: default_off_regex(),
            power_user: String::new(),
            power_pass: Secret::default(),
            power_token: Secret::default(),
            power_verify_ssl: true,
        }
    }
}

fn default_on_regex() -> String {
    r"status.*:.*running".to_owned()
}

fn default_off_regex() -> String {
    r"status.*:.*stopped".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maas_names_round_trip() {
        let p = DriverParams::Ipmi(IpmiParams {
            power_address: "10.77.160.9:623".into(),
            power_user: "maas".into(),
            power_pass: "pw".into(),
            cipher_suite_id: CipherSuite::Suite17,
            ..IpmiParams::default()
        });
        let j = serde_json::to_value(&p).unwrap();
        assert_eq!(j["power_type"], "ipmi");
        assert_eq!(j["cipher_suite_id"], "17");
        assert_eq!(j["privilege_level"], "OPERATOR");
        assert_eq!(j["power_driver"], "LAN_2_0");
        let back: DriverParams = serde_json::from_value(j).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn redfish_defaults_verify_tls() {
        let p: RedfishParams = serde_json::from_str(r#"{"power_address":"https://bmc"}"#).unwrap();
        assert!(p.power_verify_ssl && p.use_etag);
        assert!(RedfishParams::default().power_verify_ssl);
        let w = WebhookParams::default();
        assert!(w.power_verify_ssl && !w.power_on_regex.is_empty());
    }

    #[test]
    fn unknown_suite_is_an_error() {
        let r: Result<IpmiParams, _> =
            serde_json::from_str(r#"{"power_address":"h","cipher_suite_id":"2"}"#);
        assert!(r.is_err());
    }
}
