//! The controller's typed records, as the store keeps them and the API shows them.

use std::net::IpAddr;

use maas_net::{Mac, Timestamp};
use maas_power::params::DriverParams;
use serde::{Deserialize, Serialize};

use crate::config::MachineConfig;

/// A machine's life cycle, with MAAS's names, as far as this controller takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Seen booting, not known before (enlisted): waiting to be commissioned or accepted.
    New,
    /// Booting the ephemeral environment, which reports the hardware it finds.
    Commissioning,
    /// Commissioning failed, or its agent did not report in time.
    FailedCommissioning,
    /// Known (configured, accepted or commissioned): a Ready machine that boots is told to
    /// power off. Only Ready machines can be allocated.
    Ready,
    /// Taken by a user (its `owner`), not yet deployed.
    Allocated,
    /// Installing its operating system.
    Deploying,
    /// Running its deployed operating system.
    Deployed,
    /// The deployment failed; still owned until released.
    FailedDeployment,
    /// Being released: its owner gave it back, and it is being cleaned before it is Ready.
    Releasing,
}

impl Status {
    /// Every status, in life-cycle order.
    pub(crate) const ALL: [Self; 9] = [
        Self::New,
        Self::Commissioning,
        Self::FailedCommissioning,
        Self::Ready,
        Self::Allocated,
        Self::Deploying,
        Self::Deployed,
        Self::FailedDeployment,
        Self::Releasing,
    ];

    /// The name the API, the templates and the metrics use.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Commissioning => "commissioning",
            Self::FailedCommissioning => "failed_commissioning",
            Self::Ready => "ready",
            Self::Allocated => "allocated",
            Self::Deploying => "deploying",
            Self::Deployed => "deployed",
            Self::FailedDeployment => "failed_deployment",
            Self::Releasing => "releasing",
        }
    }

    /// Whether a user holds the machine (from allocation until it is Ready again).
    pub(crate) const fn is_owned(self) -> bool {
        matches!(
            self,
            Self::Allocated
                | Self::Deploying
                | Self::Deployed
                | Self::FailedDeployment
                | Self::Releasing
        )
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("status {s:?}: use one of {}", names.join(", "))
            })
    }
}

/// An availability zone, as the zones table keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Zone {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
}

/// The zone every machine is in unless put elsewhere; it always exists.
pub(crate) const DEFAULT_ZONE: &str = "default";

/// Whether `name` may name a tag or a zone. MAAS checks both against the same pattern,
/// `^[\w-]+$` (tag names are at most 256 characters): one or more word characters (letters
/// and digits of any script, and the underscore) or hyphens, and nothing else: no spaces, no
/// dots, no slashes.
pub(crate) fn valid_label(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 256
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// A DNS domain, as the domains table keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Domain {
    /// `maas`, `example.org`: one or more labels.
    pub(crate) name: String,
    /// Whether the controller answers for it (otherwise it is only a name hosts carry).
    #[serde(default = "yes")]
    pub(crate) authoritative: bool,
    /// The TTL of its records in seconds; `None`: the `[dns]` default.
    #[serde(default)]
    pub(crate) ttl: Option<u32>,
}

fn yes() -> bool {
    true
}

/// The domain every machine is in unless put elsewhere; it always exists.
pub(crate) const DEFAULT_DOMAIN: &str = maas_net::DEFAULT_DOMAIN;

/// The domain of a record stored before machines had one.
pub(crate) fn default_domain() -> String {
    DEFAULT_DOMAIN.into()
}

/// Whether `name` may name a domain: labels of letters, digits and hyphens (not first or
/// last), 1 to 63 characters each, at most 253 in all, separated by single dots.
pub(crate) fn valid_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// What commissioning found, as the ephemeral environment's agent reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hardware {
    /// `amd64`, `arm64`...
    pub(crate) architecture: String,
    /// `bios` or `uefi`.
    pub(crate) firmware: String,
    pub(crate) cpu_count: u32,
    #[serde(default)]
    pub(crate) cpu_model: Option<String>,
    pub(crate) memory_bytes: u64,
    pub(crate) interfaces: Vec<NicSeen>,
    pub(crate) disks: Vec<DiskSeen>,
    #[serde(default)]
    pub(crate) dmi: Dmi,
    /// When it was reported.
    pub(crate) at: Timestamp,
}

/// A network interface commissioning found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NicSeen {
    pub(crate) name: String,
    pub(crate) mac: Mac,
    #[serde(default)]
    pub(crate) link: bool,
    #[serde(default)]
    pub(crate) speed_mbps: Option<u32>,
}

/// A disk commissioning found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DiskSeen {
    pub(crate) name: String,
    pub(crate) size_bytes: u64,
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) serial: Option<String>,
}

/// The system's DMI identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Dmi {
    #[serde(default)]
    pub(crate) system_vendor: Option<String>,
    #[serde(default)]
    pub(crate) system_product: Option<String>,
    #[serde(default)]
    pub(crate) system_serial: Option<String>,
    #[serde(default)]
    pub(crate) system_uuid: Option<String>,
}

/// Where a machine entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Origin {
    /// The configuration file.
    Config,
    /// Created through the API.
    Api,
    /// Seen booting (DHCP or a request for one of its boot files).
    Enlisted,
}

/// What a machine's firmware told DHCP: the boot method chosen and the file sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BootSeen {
    /// The boot architecture's name (`ipxe`, `uefi_amd64_tftp`...), or `none: <why>`.
    pub(crate) choice: String,
    /// The boot file or URL sent.
    #[serde(default)]
    pub(crate) file: Option<String>,
}

impl BootSeen {
    /// What the DHCP server decided.
    pub(crate) fn from_decision(decision: &maas_pxe::dhcp::server::BootDecision) -> Self {
        Self {
            choice: match &decision.choice {
                Ok(arch) => arch.name().to_string(),
                Err(why) => format!("none: {why}"),
            },
            file: decision.file.clone(),
        }
    }
}

/// A machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) mac: Mac,
    pub(crate) hostname: String,
    pub(crate) architecture: Option<String>,
    pub(crate) zone: String,
    /// Its DNS domain.
    #[serde(default = "default_domain")]
    pub(crate) domain: String,
    pub(crate) status: Status,
    pub(crate) origin: Origin,
    /// Power driver and parameters (`power_type` plus MAAS's parameter names).
    pub(crate) power: Option<DriverParams>,
    /// Its address, from its last DHCP lease.
    pub(crate) ip: Option<IpAddr>,
    /// What its firmware told DHCP.
    pub(crate) boot: Option<BootSeen>,
    pub(crate) first_seen: Option<Timestamp>,
    pub(crate) last_seen: Option<Timestamp>,
    /// What the last commissioning found.
    #[serde(default)]
    pub(crate) hardware: Option<Hardware>,
    /// When a commissioning under way fails if its agent has not reported.
    #[serde(default)]
    pub(crate) commissioning_deadline: Option<Timestamp>,
    /// Its interfaces and their links in the maas-net model (from commissioning or the API);
    /// `None` before the first commissioning.
    #[serde(default)]
    pub(crate) network: Option<maas_net::doc::MachineDoc>,
    /// The deployment under way or done, while the machine is deploying or deployed.
    #[serde(default)]
    pub(crate) deployment: Option<super::deploy::Deployment>,
    /// The user it is allocated to (from allocation until release).
    #[serde(default)]
    pub(crate) owner: Option<String>,
    /// Its tags, sorted, each once.
    #[serde(default)]
    pub(crate) tags: Vec<String>,
}

impl Machine {
    /// A machine as the file or the API describes it (its power parameters checked already).
    pub(crate) fn from_config(c: &MachineConfig) -> Self {
        Self {
            mac: c.mac,
            hostname: c
                .hostname
                .clone()
                .unwrap_or_else(|| default_hostname(c.mac)),
            architecture: c.architecture.clone(),
            zone: c.zone.clone().unwrap_or_else(|| DEFAULT_ZONE.into()),
            domain: default_domain(),
            status: Status::Ready,
            origin: Origin::Config,
            power: c
                .power
                .as_ref()
                .and_then(|t| crate::config::power_params(t).ok()),
            ip: None,
            boot: None,
            first_seen: None,
            last_seen: None,
            hardware: None,
            commissioning_deadline: None,
            network: None,
            deployment: None,
            owner: None,
            tags: Vec::new(),
        }
    }

    /// A machine seen booting for the first time.
    pub(crate) fn enlisted(mac: Mac, now: Timestamp) -> Self {
        Self {
            mac,
            hostname: default_hostname(mac),
            architecture: None,
            zone: DEFAULT_ZONE.into(),
            domain: default_domain(),
            status: Status::New,
            origin: Origin::Enlisted,
            power: None,
            ip: None,
            boot: None,
            first_seen: Some(now),
            last_seen: Some(now),
            hardware: None,
            commissioning_deadline: None,
            network: None,
            deployment: None,
            owner: None,
            tags: Vec::new(),
        }
    }
}

/// `node-` and the MAC's last three bytes: a stable name for an enlisted machine.
pub(crate) fn default_hostname(mac: Mac) -> String {
    let b = mac.octets();
    format!("node-{:02x}{:02x}{:02x}", b[3], b[4], b[5])
}

/// A neighbour seen on a watched interface (passively, or answering an active scan), keyed
/// as the observer keys it: by VLAN and address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Discovery {
    pub(crate) ip: IpAddr,
    pub(crate) mac: Mac,
    /// The MAC before the last move, or the other claimant of a conflict.
    pub(crate) previous_mac: Option<Mac>,
    /// From mDNS, or reverse DNS (`[discovery] reverse_dns`).
    pub(crate) hostname: Option<String>,
    pub(crate) interface: String,
    pub(crate) vid: u16,
    /// The subnet the address lies in, if any.
    pub(crate) subnet: Option<String>,
    /// The last event about it (`NEW`, `REFRESHED`, `MOVED`, `FLIP_FLOP`, `CONFLICT`,
    /// `HOSTNAME`).
    pub(crate) last_event: String,
    pub(crate) first_seen: Timestamp,
    pub(crate) last_seen: Timestamp,
}

/// Something that happened to a machine, kept in its history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MachineEvent {
    /// The machine.
    pub(crate) mac: Mac,
    /// When.
    pub(crate) at: Timestamp,
    /// What: `enlisted`, `created`, `accepted`, `deleted`, `power_on`, `power_off`...
    pub(crate) kind: String,
    /// Details for a person.
    #[serde(default)]
    pub(crate) detail: Option<String>,
}

/// A machine's power state as last seen, or why it could not be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PowerSeen {
    /// `on`, `off`, `unknown`, or `error`.
    pub(crate) state: String,
    /// The driver's message when the query failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) error: Option<String>,
    /// When, in seconds since the Unix epoch.
    pub(crate) at: u64,
}
