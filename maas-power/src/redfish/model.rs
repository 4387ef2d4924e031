//! The parts of Redfish resources the driver reads, parsed from JSON without I/O.

use serde::Deserialize;

use crate::PowerState;

/// A Redfish resource could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// Not JSON, or not the expected shape.
    #[error("malformed Redfish JSON: {0}")]
    Json(String),
    /// A required member is missing.
    #[error("the Redfish resource has no {0}")]
    Missing(&'static str),
}

#[derive(Deserialize)]
struct Link {
    #[serde(rename = "@odata.id")]
    id: String,
}

#[derive(Deserialize)]
struct Collection {
    #[serde(rename = "Members", default)]
    members: Vec<Link>,
}

/// The member URIs (`@odata.id`) of a collection such as `/redfish/v1/Systems`.
pub fn parse_members(body: &[u8]) -> Result<Vec<String>, ModelError> {
    let c: Collection =
        serde_json::from_slice(body).map_err(|e| ModelError::Json(e.to_string()))?;
    Ok(c.members.into_iter().map(|l| l.id).collect())
}

#[derive(Deserialize)]
struct ResetAction {
    target: Option<String>,
    #[serde(rename = "ResetType@Redfish.AllowableValues", default)]
    allowable: Vec<String>,
}

#[derive(Deserialize, Default)]
struct Actions {
    #[serde(rename = "#ComputerSystem.Reset")]
    reset: Option<ResetAction>,
}

#[derive(Deserialize, Default)]
struct Boot {
    #[serde(rename = "BootSourceOverrideTarget")]
    target: Option<String>,
    #[serde(rename = "BootSourceOverrideEnabled")]
    enabled: Option<String>,
    #[serde(rename = "BootSourceOverrideMode")]
    mode: Option<String>,
}

#[derive(Deserialize)]
struct RawSystem {
    #[serde(rename = "PowerState")]
    power_state: Option<String>,
    #[serde(rename = "Actions", default)]
    actions: Actions,
    #[serde(rename = "Boot", default)]
    boot: Boot,
    #[serde(rename = "@odata.etag")]
    etag: Option<String>,
}

/// What the driver needs from a ComputerSystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    /// `PowerState` mapped: On, Off, or Unknown (PoweringOn/PoweringOff/absent).
    pub power: PowerState,
    /// The raw `PowerState`.
    pub power_text: Option<String>,
    /// The ComputerSystem.Reset action target URI.
    pub reset_target: Option<String>,
    /// `ResetType@Redfish.AllowableValues` (empty when the BMC does not say).
    pub reset_types: Vec<String>,
    /// `Boot.BootSourceOverrideTarget`.
    pub boot_target: Option<String>,
    /// `Boot.BootSourceOverrideEnabled`.
    pub boot_enabled: Option<String>,
    /// `Boot.BootSourceOverrideMode`.
    pub boot_mode: Option<String>,
    /// `@odata.etag`.
    pub etag: Option<String>,
}

/// Parses a ComputerSystem resource.
pub fn parse_system(body: &[u8]) -> Result<System, ModelError> {
    let s: RawSystem = serde_json::from_slice(body).map_err(|e| ModelError::Json(e.to_string()))?;
    let power = match s.power_state.as_deref() {
        Some("On") => PowerState::On,
        Some("Off") => PowerState::Off,
        _ => PowerState::Unknown,
    };
    let (reset_target, reset_types) = match s.actions.reset {
        Some(r) => (r.target, r.allowable),
        None => (None, Vec::new()),
    };
    Ok(System {
        power,
        power_text: s.power_state,
        reset_target,
        reset_types,
        boot_target: s.boot.target,
        boot_enabled: s.boot.enabled,
        boot_mode: s.boot.mode,
        etag: s.etag,
    })
}

/// The message of a Redfish error body (`error.message` or the first extended info), if any.
pub fn parse_error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    e.get("@Message.ExtendedInfo")
        .and_then(|i| i.get(0))
        .and_then(|i| i.get("Message"))
        .or_else(|| e.get("message"))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
}

/// Picks the first of `preferred` that the BMC allows; with no list from the BMC, the first
/// preferred value.
pub fn choose_reset_type<'a>(allowable: &[String], preferred: &[&'a str]) -> Option<&'a str> {
    if allowable.is_empty() {
        return preferred.first().copied();
    }
    preferred
        .iter()
        .copied()
        .find(|p| allowable.iter().any(|a| a == p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: &str = r##"{
        "@odata.id": "/redfish/v1/Systems/1", "PowerState": "On",
        "Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"},
        "Actions": {"#ComputerSystem.Reset": {
            "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "GracefulShutdown", "PowerCycle", "Nmi"]}}
    }"##;

    #[test]
    fn system_fields() {
        let s = parse_system(SYSTEM.as_bytes()).unwrap();
        assert_eq!(s.power, PowerState::On);
        assert_eq!(s.reset_types.len(), 5);
        assert_eq!(s.boot_target.as_deref(), Some("Pxe"));
        assert_eq!(
            choose_reset_type(&s.reset_types, &["ForceRestart", "PowerCycle"]),
            Some("PowerCycle")
        );
        assert_eq!(choose_reset_type(&s.reset_types, &["ForceOn"]), None);
        assert_eq!(choose_reset_type(&[], &["ForceOff"]), Some("ForceOff"));
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(parse_system(b"{").is_err());
        assert!(parse_system(b"[]").is_err());
        assert!(parse_members(br#"{"Members": [{"x": 1}]}"#).is_err());
        assert_eq!(
            parse_members(br#"{"Members": [{"@odata.id": "/a"}]}"#).unwrap(),
            ["/a"]
        );
    }
}
