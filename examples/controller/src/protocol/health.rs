//! A rack's health as its calls carry it ([`super::DHCP_HEADER`], [`super::QUEUED_HEADER`]):
//! written by the rack, read strictly by the region. Free of the rest of the crate, so that
//! the fuzz target compiles it on its own.

use serde::Serialize;

/// The longest [`DHCP_HEADER`](super::DHCP_HEADER) value a region reads.
const MAX_DHCP_HEADER: usize = 1024;

/// The most interfaces a [`DhcpHealth`] names.
const MAX_INTERFACES: usize = 64;

/// Whether a rack's DHCP serves, as [`DHCP_HEADER`](super::DHCP_HEADER) carries it: `serving` or `off`, then
/// `; name=value` parameters:
///
/// - `since=<seconds since the epoch>`: when it started serving;
/// - `interfaces=<name>,<name>...`: the interfaces it serves;
/// - `reason=<word>`: why it is off: `unconfigured` (no `[dhcp] interfaces`), `failed` (it
///   could not start), `stopped` (the rack is stopping).
///
/// For example `serving; since=1718000000; interfaces=br0,eth2` or `off; reason=unconfigured`.
/// A parameter this version does not know is skipped, so a later rack may add some; another
/// state, a known parameter repeated or malformed, or a value longer than 1 KiB make the whole
/// value malformed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct DhcpHealth {
    /// Whether it serves.
    pub(crate) serving: bool,
    /// Since when it serves (seconds since the epoch).
    pub(crate) since: Option<u64>,
    /// The interfaces it serves.
    pub(crate) interfaces: Vec<String>,
    /// Why it is off.
    pub(crate) reason: Option<String>,
}

/// Why a rack's health header was ignored.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum HealthError {
    /// Not visible ASCII, or too long.
    #[error("not short visible ASCII text")]
    Text,
    /// Neither `serving` nor `off`.
    #[error("{0:?} is neither serving nor off")]
    State(String),
    /// A known parameter repeated, without a value, or with a malformed one.
    #[error("malformed parameter {0:?}")]
    Parameter(String),
    /// Not a count in decimal digits.
    #[error("{0:?} is not a count")]
    Count(String),
}

impl DhcpHealth {
    /// Serving since `since` on `interfaces` (names a region would not read are left out).
    pub(crate) fn serving(since: u64, interfaces: impl IntoIterator<Item = String>) -> Self {
        let mut names: Vec<String> = Vec::new();
        for name in interfaces {
            if is_interface(&name) && !names.contains(&name) && names.len() < MAX_INTERFACES {
                names.push(name);
            }
        }
        Self {
            serving: true,
            since: Some(since),
            interfaces: names,
            reason: None,
        }
    }

    /// Off, for `reason` (a lowercase word).
    pub(crate) fn off(reason: &str) -> Self {
        Self {
            serving: false,
            reason: is_reason(reason).then(|| reason.to_string()),
            ..Self::default()
        }
    }

    /// Reads a [`DHCP_HEADER`](super::DHCP_HEADER) value.
    pub(crate) fn parse(value: &[u8]) -> Result<Self, HealthError> {
        let text = header_text(value, MAX_DHCP_HEADER)?;
        let mut parts = text.split(';').map(str::trim);
        let mut health = match parts.next().unwrap_or_default() {
            "serving" => Self {
                serving: true,
                ..Self::default()
            },
            "off" => Self::default(),
            other => return Err(HealthError::State(other.to_string())),
        };
        let mut seen = Vec::new();
        for part in parts {
            let malformed = || HealthError::Parameter(part.to_string());
            let (name, value) = part.split_once('=').ok_or_else(malformed)?;
            let name = name.trim_end();
            let value = value.trim_start();
            if !matches!(name, "since" | "interfaces" | "reason") {
                continue;
            }
            if seen.contains(&name) {
                return Err(malformed());
            }
            seen.push(name);
            match name {
                "since" => health.since = Some(parse_count(value).map_err(|_| malformed())?),
                "interfaces" => {
                    let names: Vec<String> = value.split(',').map(str::to_string).collect();
                    if names.len() > MAX_INTERFACES || !names.iter().all(|n| is_interface(n)) {
                        return Err(malformed());
                    }
                    health.interfaces = names;
                }
                _ => {
                    if !is_reason(value) {
                        return Err(malformed());
                    }
                    health.reason = Some(value.to_string());
                }
            }
        }
        Ok(health)
    }

    /// The [`DHCP_HEADER`](super::DHCP_HEADER) value.
    pub(crate) fn emit(&self) -> String {
        let mut out = String::from(if self.serving { "serving" } else { "off" });
        if let Some(since) = self.since {
            out.push_str(&format!("; since={since}"));
        }
        if !self.interfaces.is_empty() {
            out.push_str("; interfaces=");
            out.push_str(&self.interfaces.join(","));
        }
        if let Some(reason) = &self.reason {
            out.push_str(&format!("; reason={reason}"));
        }
        out
    }
}

/// Reads a [`QUEUED_HEADER`](super::QUEUED_HEADER) value: decimal digits only (no sign, no spaces), at most
/// `u64::MAX`.
pub(crate) fn parse_queued(value: &[u8]) -> Result<u64, HealthError> {
    parse_count(header_text(value, 20)?)
}

fn parse_count(text: &str) -> Result<u64, HealthError> {
    let count = || HealthError::Count(text.to_string());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(count());
    }
    text.parse().map_err(|_| count())
}

/// `value` as text, when it is visible ASCII (spaces allowed) of at most `max` bytes.
fn header_text(value: &[u8], max: usize) -> Result<&str, HealthError> {
    if value.len() > max || !value.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err(HealthError::Text);
    }
    std::str::from_utf8(value).map_err(|_| HealthError::Text)
}

/// Whether `name` can be a network interface's name in a [`DhcpHealth`]: 1 to 15 visible
/// ASCII characters, none of those the header's syntax or the kernel reserve.
fn is_interface(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b",;=/:".contains(&b))
}

/// Whether `reason` is a word a [`DhcpHealth`] carries: 1 to 32 lowercase letters, digits or
/// hyphens.
fn is_reason(reason: &str) -> bool {
    (1..=32).contains(&reason.len())
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What the fuzz target asserts for any input: both readers answer, never panic, and what the
/// DHCP reader accepts writes back as a value it reads the same.
// Called by the fuzz target and the corpus replay only.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn check(data: &[u8]) {
    if let Ok(health) = DhcpHealth::parse(data) {
        let text = health.emit();
        assert_eq!(
            DhcpHealth::parse(text.as_bytes()).as_ref(),
            Ok(&health),
            "{text}"
        );
    }
    if let Ok(count) = parse_queued(data) {
        assert_eq!(parse_queued(count.to_string().as_bytes()), Ok(count));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_health_round_trips() {
        for health in [
            DhcpHealth::serving(1_718_000_000, ["br0".to_string(), "eth2".into()]),
            DhcpHealth::serving(7, []),
            DhcpHealth::off("unconfigured"),
            DhcpHealth::default(),
        ] {
            let text = health.emit();
            assert_eq!(DhcpHealth::parse(text.as_bytes()), Ok(health), "{text}");
        }
        assert_eq!(
            DhcpHealth::serving(1, ["br0".to_string()]).emit(),
            "serving; since=1; interfaces=br0"
        );
        assert_eq!(DhcpHealth::off("stopped").emit(), "off; reason=stopped");
    }

    /// Unknown parameters are skipped; spaces around the separators are allowed.
    #[test]
    fn dhcp_health_skips_what_it_does_not_know() {
        let health = DhcpHealth::parse(b"serving ;since = 12; v6=yes;interfaces=br0").unwrap();
        assert_eq!(health, DhcpHealth::serving(12, ["br0".to_string()]));
        assert_eq!(DhcpHealth::parse(b"off"), Ok(DhcpHealth::default()));
    }

    #[test]
    fn malformed_dhcp_health_is_refused() {
        let long = format!("serving; x={}", "a".repeat(MAX_DHCP_HEADER));
        let many = format!(
            "serving; interfaces={}",
            vec!["e"; MAX_INTERFACES + 1].join(",")
        );
        for bad in [
            "",
            "on",
            "Serving",
            "serving; since",
            "serving; since=-1",
            "serving; since=+1",
            "serving; since=1; since=2",
            "serving; since=99999999999999999999",
            "serving; interfaces=",
            "serving; interfaces=br0,,eth1",
            "serving; interfaces=a-name-of-16-chr",
            "off; reason=Not Configured",
            "off; reason=",
            "serving\x01",
            &long,
            &many,
        ] {
            assert!(DhcpHealth::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(
            DhcpHealth::parse("servinǵ".as_bytes()),
            Err(HealthError::Text)
        );
    }

    #[test]
    fn queued_counts_are_decimal_digits() {
        assert_eq!(parse_queued(b"0"), Ok(0));
        assert_eq!(parse_queued(b"17"), Ok(17));
        assert_eq!(parse_queued(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "0x10",
            "1e3",
            "18446744073709551616",
            "seven",
        ] {
            assert!(parse_queued(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    /// Names a region would refuse are left out by the rack, not sent.
    #[test]
    fn the_rack_leaves_out_names_it_cannot_send() {
        let health = DhcpHealth::serving(
            1,
            ["br0".to_string(), "a;b".into(), String::new(), "br0".into()],
        );
        assert_eq!(health.interfaces, ["br0"]);
        assert_eq!(DhcpHealth::off("Bad Reason").reason, None);
    }

    #[test]
    fn the_fuzz_corpus_replays() {
        crate::tests::replay_corpus("controller_rack_health", |_, data| check(data));
    }
}
