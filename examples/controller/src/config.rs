//! The controller's configuration file: the network model (maas-net's document: zones,
//! spaces, fabrics, VLANs, subnets, IP ranges, static routes) at the top level, plus the
//! `[controller]`, `[dhcp]`, `[dns]` and `[[machines]]` sections (among others).
//!
//! Loading checks everything and reports every problem at once; nothing starts on a file
//! with a problem.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use maas_net::{IpRangeKind, Mac, Topology};
use serde::{Deserialize, Serialize};

#[path = "dns/config.rs"]
mod dns_section;
pub(crate) use dns_section::DnsSection;

/// The whole file, checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) controller: ControllerSection,
    pub(crate) dhcp: DhcpSection,
    pub(crate) power: PowerSection,
    pub(crate) discovery: DiscoverySection,
    pub(crate) proxy: Option<ProxySection>,
    pub(crate) dns: Option<DnsSection>,
    pub(crate) cluster: ClusterSection,
    pub(crate) database: Option<DatabaseSection>,
    pub(crate) machines: Vec<MachineConfig>,
    pub(crate) topology: Topology,
}

/// `[database]`: keep a region's state in PostgreSQL, shared with other regions, instead of
/// the embedded file in the state directory.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseSection {
    /// `postgresql://user:password@host:port/database`, or
    /// `postgresql://user@/database?host=/run/postgresql` for a Unix socket.
    #[serde(default)]
    pub(crate) url: Option<String>,
    /// A file holding the URL (so that the password need not be in this file); relative to
    /// this file.
    #[serde(default)]
    pub(crate) url_file: Option<PathBuf>,
}

impl std::fmt::Debug for DatabaseSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("DatabaseSection")
            .field("url", &self.url.as_ref().map(|_| "(set)"))
            .field("url_file", &self.url_file)
            .finish()
    }
}

impl Config {
    /// The PostgreSQL URL of `[database]`, if the section is there (`None`: the embedded
    /// store in the state directory). Reading `url_file` may fail.
    pub(crate) fn database_url(&self) -> Result<Option<String>, String> {
        match &self.database {
            None => Ok(None),
            Some(DatabaseSection { url: Some(url), .. }) => Ok(Some(url.clone())),
            Some(DatabaseSection {
                url_file: Some(path),
                ..
            }) => std::fs::read_to_string(path)
                .map(|text| Some(text.trim().to_owned()))
                .map_err(|e| format!("[database] url_file {}: {e}", path.display())),
            Some(_) => Err("[database] needs url or url_file".into()),
        }
    }

    /// What the file describes, in a few words (`3 subnets, 2 machines`).
    pub fn summary(&self) -> String {
        format!(
            "{} subnets, {} machines",
            self.topology.subnets().count(),
            self.machines.len()
        )
    }
}

/// What this controller process is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in one process: state, API, and the network services.
    #[default]
    All,
    /// The state and the API (and the rack endpoints); no network service of its own.
    Region,
    /// The network services (DHCP, TFTP, boot HTTP, proxy, discovery) for its own networks,
    /// with the network model, machines and leases held by a region.
    Rack,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::All => "all",
            Self::Region => "region",
            Self::Rack => "rack",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            "region" => Ok(Self::Region),
            "rack" => Ok(Self::Rack),
            other => Err(format!("role {other:?}: use all, region or rack")),
        }
    }
}

/// `[cluster]`: how racks and a region find and trust each other.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterSection {
    /// The shared secret racks present (`Authorization: Bearer ...`); without it a region
    /// refuses every rack.
    #[serde(default)]
    pub(crate) secret: Option<String>,
    /// A rack's region: its API URL (`http://host:5240`); the same as a one-element
    /// `regions`.
    #[serde(default)]
    pub(crate) region: Option<String>,
    /// A rack's regions, in failover order: one is used at a time, and a call the one in use
    /// does not answer (no connection in 2 s, no answer in 10 s, or a 5xx) goes to the next.
    #[serde(default)]
    pub(crate) regions: Vec<String>,
    /// How long a rack tries its regions at start before it starts from its cached
    /// configuration (or, without one, gives up).
    #[serde(default = "default_start_wait_secs")]
    pub(crate) start_wait_secs: u64,
    /// How many addresses of each dynamic range's subnet a region holds for each rack, for
    /// the rack to hand to new clients while no region answers (0: none).
    #[serde(default = "default_rack_block_size")]
    pub(crate) rack_block_size: u32,
    /// A rack's name, as the region lists it (default: the host name).
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Seconds between a rack's refreshes of the network model, machines and addresses.
    #[serde(default = "default_sync_secs")]
    pub(crate) sync_secs: u64,
    /// A rack's trust in an `https://` region: a PEM file of the certificate authority (or
    /// the region's self-signed certificate) to verify it against.
    #[serde(default)]
    pub(crate) region_ca: Option<PathBuf>,
    /// A rack's trust in an `https://` region: the SHA-256 fingerprint of the region's
    /// certificate (64 hex digits, `:` separators allowed), as the region prints it.
    #[serde(default)]
    pub(crate) region_fingerprint: Option<String>,
    /// A region's racks and the VLANs each serves: a rack may report leases, machines and
    /// discoveries only for addresses on its VLANs.
    #[serde(default)]
    pub(crate) racks: Vec<RackSection>,
}

/// `[[cluster.racks]]`: a rack and the VLANs it serves.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RackSection {
    /// The rack's name (its `[cluster] name`).
    pub(crate) name: String,
    /// The VLANs, by fabric name and VID.
    pub(crate) vlans: Vec<VlanKey>,
}

/// A VLAN by its fabric's name and its VID.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VlanKey {
    /// The fabric's name.
    pub(crate) fabric: String,
    /// The VID (0: untagged).
    pub(crate) vid: u16,
}

impl Config {
    /// The VLANs rack `name` serves, as configured (`None`: not listed).
    pub(crate) fn rack_vlans(&self, name: &str) -> Option<&[VlanKey]> {
        self.cluster
            .racks
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.vlans.as_slice())
    }

    /// Whether rack `name` serves the VLAN of the subnet `ip` lies in.
    /// Rack `name`'s share of each of its VLANs that `[[cluster.racks]]` gives to other racks
    /// too: the racks of a VLAN, in name order, split its new clients between them.
    pub(crate) fn dhcp_shares_of(&self, name: &str) -> Vec<DhcpShare> {
        let Some(vlans) = self.rack_vlans(name) else {
            return Vec::new();
        };
        vlans
            .iter()
            .filter_map(|vlan| {
                let mut racks: Vec<&str> = self
                    .cluster
                    .racks
                    .iter()
                    .filter(|r| r.vlans.contains(vlan))
                    .map(|r| r.name.as_str())
                    .collect();
                racks.sort_unstable();
                racks.dedup();
                let index = racks.iter().position(|r| *r == name)?;
                (racks.len() > 1).then(|| DhcpShare {
                    vlan: vlan.clone(),
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    of: u32::try_from(racks.len()).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// `dhcp.shares` resolved in the network model: each shared VLAN, with this rack's part.
    pub(crate) fn shared_vlans(&self) -> Vec<(maas_net::VlanId, u32, u32)> {
        let topology = &self.topology;
        self.dhcp
            .shares
            .iter()
            .filter(|share| share.of > 1 && share.index < share.of)
            .filter_map(|share| {
                topology
                    .vlans()
                    .find(|(_, v)| {
                        v.vid == share.vlan.vid
                            && topology
                                .fabric(v.fabric)
                                .is_some_and(|f| f.name == share.vlan.fabric)
                    })
                    .map(|(id, _)| (id, share.index, share.of))
            })
            .collect()
    }

    pub(crate) fn rack_serves(
        &self,
        name: &str,
        topology: &Topology,
        ip: std::net::IpAddr,
    ) -> bool {
        let Some(vlans) = self.rack_vlans(name) else {
            return false;
        };
        let Some(vlan) = topology
            .subnets()
            .find(|(_, s)| s.cidr.contains(&ip))
            .and_then(|(_, s)| topology.vlan(s.vlan))
        else {
            return false;
        };
        let Some(fabric) = topology.fabric(vlan.fabric) else {
            return false;
        };
        vlans
            .iter()
            .any(|k| k.vid == vlan.vid && k.fabric == fabric.name)
    }
}

/// `[controller] tls`: how the API (and the rack endpoints) are served.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) enum TlsSetting {
    /// Not set: HTTPS with a self-signed certificate when the API listens off loopback,
    /// plain HTTP on loopback.
    #[default]
    Auto,
    /// Plain HTTP, wherever the API listens (the explicit setting plain HTTP off loopback
    /// needs).
    Off,
    /// HTTPS with a certificate the controller makes on first start and keeps in its state
    /// directory (`tls/cert.pem`); its fingerprint is logged at start.
    SelfSigned,
    /// HTTPS with these PEM files (relative to the file).
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
}

impl<'de> Deserialize<'de> for TlsSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Files {
            cert: PathBuf,
            key: PathBuf,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Word(String),
            Files(Files),
        }
        match Form::deserialize(d)? {
            Form::Word(w) => match w.as_str() {
                "off" => Ok(Self::Off),
                "self-signed" => Ok(Self::SelfSigned),
                "auto" => Ok(Self::Auto),
                other => Err(serde::de::Error::custom(format!(
                    "tls {other:?}: use \"self-signed\", \"off\", or {{ cert = \"...\", key = \"...\" }}"
                ))),
            },
            Form::Files(f) => Ok(Self::Files {
                cert: f.cert,
                key: f.key,
            }),
        }
    }
}

impl ControllerSection {
    /// The TLS setting with `Auto` decided by where the API listens.
    pub(crate) fn tls(&self) -> TlsSetting {
        match &self.tls {
            TlsSetting::Auto if self.api.ip().is_loopback() => TlsSetting::Off,
            TlsSetting::Auto => TlsSetting::SelfSigned,
            other => other.clone(),
        }
    }
}

fn default_sync_secs() -> u64 {
    10
}

fn default_start_wait_secs() -> u64 {
    30
}

/// The largest `[cluster] rack_block_size`.
const MAX_RACK_BLOCK: u32 = 256;

fn default_rack_block_size() -> u32 {
    8
}

impl ClusterSection {
    /// A rack's regions, in failover order (`region` or `regions`).
    pub(crate) fn region_urls(&self) -> Vec<String> {
        self.region.iter().chain(&self.regions).cloned().collect()
    }
}

/// `[controller]`: where state lives and what the controller listens on.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ControllerSection {
    /// `all` (default), `region` or `rack`; `--role` on the command line wins.
    #[serde(default)]
    pub(crate) role: Role,
    /// The state directory (IPAM store, machines); relative paths are relative to the file.
    pub(crate) state_dir: PathBuf,
    /// The HTTP JSON API (and `/metrics`).
    #[serde(default = "default_api")]
    pub(crate) api: SocketAddr,
    /// Boot files over HTTP: the iPXE scripts and the assets directory.
    #[serde(default = "default_boot_http")]
    pub(crate) boot_http: SocketAddr,
    /// The address machines reach the controller at, in URLs handed to them; default: the
    /// address of the interface a DHCP request came in on.
    #[serde(default)]
    pub(crate) advertise: Option<std::net::IpAddr>,
    /// Boot assets served over HTTP (kernels, initrds, boot loaders); relative to the file.
    #[serde(default)]
    pub(crate) boot_assets: Option<PathBuf>,
    /// The iPXE script every machine gets, with `{mac}`, `{hostname}`, `{server}` and
    /// `{status}` replaced, and `{token}`: the machine's credential for what it reports back.
    /// Absent (the default): the script MAAS's life cycle asks for (the ephemeral
    /// environment to commission, or told to power off), see the `ephemeral` module.
    #[serde(default)]
    pub(crate) ipxe_script: Option<String>,
    /// TFTP (boot loaders from `boot_assets`, per-machine pxelinux and GRUB files); off when
    /// absent. Firmware asks on port 69.
    #[serde(default)]
    pub(crate) tftp: Option<SocketAddr>,
    /// A machine's `pxelinux.cfg/01-<mac>`, with `{mac}`, `{hostname}`, `{status}` replaced;
    /// absent, as the life cycle asks.
    #[serde(default)]
    pub(crate) pxelinux_template: Option<String>,
    /// A machine's `grub/grub.cfg-<mac>`, with the same replacements; absent, as the life
    /// cycle asks.
    #[serde(default)]
    pub(crate) grub_template: Option<String>,
    /// The most machines waiting as New: an unknown machine seen booting beyond it is not
    /// enlisted (and a log line says why).
    #[serde(default = "default_enlist_max_new")]
    pub(crate) enlist_max_new: usize,
    /// The most enlistments a minute (bursts up to as many).
    #[serde(default = "default_enlist_per_minute")]
    pub(crate) enlist_per_minute: u32,
    /// Whether machines enlisted are commissioned at once (MAAS's default); otherwise they
    /// wait as New for `commission` (or `accept`).
    #[serde(default)]
    pub(crate) commission_enlisted: bool,
    /// How long a commissioning may take before the machine is marked Failed commissioning.
    #[serde(default = "default_commissioning_timeout")]
    pub(crate) commissioning_timeout_secs: u64,
    /// How long a deployment may take (power-on to the ephemeral environment's report that the
    /// image is written) before the machine is marked Failed deployment.
    #[serde(default = "default_deployment_timeout")]
    pub(crate) deployment_timeout_secs: u64,
    /// Name servers handed to deployed machines in their network configuration, besides
    /// their subnets' own.
    #[serde(default)]
    pub(crate) dns_servers: Vec<std::net::IpAddr>,
    /// HTTPS for the API: `"self-signed"`, `{ cert = "...", key = "..." }`, or `"off"`;
    /// absent, self-signed off loopback and plain on loopback.
    #[serde(default)]
    pub(crate) tls: TlsSetting,
}

fn default_commissioning_timeout() -> u64 {
    1200
}

fn default_deployment_timeout() -> u64 {
    1800
}

fn default_enlist_max_new() -> usize {
    1000
}

fn default_enlist_per_minute() -> u32 {
    120
}

/// The pxelinux file when no boot resource is imported.
pub(crate) const FALLBACK_PXELINUX: &str =
    "DEFAULT local\nSAY maas-rs: {hostname} ({mac}) is {status}\nLABEL local\n  LOCALBOOT 0\n";

/// The GRUB file when no boot resource is imported.
pub(crate) const FALLBACK_GRUB: &str = "set default=0\nset timeout=0\necho 'maas-rs: {hostname} ({mac}) is {status}'\nmenuentry 'Local disk' {\n  exit\n}\n";

/// The iPXE script when no boot resource is imported.
pub(crate) const FALLBACK_IPXE: &str =
    "#!ipxe\necho maas-rs: {hostname} ({mac}) is {status}\nexit\n";

fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5240))
}

fn default_boot_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5248))
}

/// `[dhcp]`: the interfaces DHCP is served on (none: DHCP off).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DhcpSection {
    /// Interface names.
    #[serde(default)]
    pub(crate) interfaces: Vec<String>,
    /// Lease time in seconds.
    #[serde(default = "default_lease_secs")]
    pub(crate) lease_secs: u32,
    /// A rack's share of the new clients of each VLAN it serves with other racks, from its
    /// region ([`Config::dhcp_shares_of`]); not in the file.
    #[serde(skip)]
    pub(crate) shares: Vec<DhcpShare>,
}

/// A rack's part of the new DHCP clients of a VLAN that several racks serve: part `index`
/// of `of`, by a hash of the client's identity (see `maas_pxe::dhcp::server::LoadBalance`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub(crate) struct DhcpShare {
    /// The VLAN.
    #[serde(flatten)]
    pub(crate) vlan: VlanKey,
    /// Which part (0-based, in the order of the racks' names).
    pub(crate) index: u32,
    /// How many racks serve the VLAN.
    pub(crate) of: u32,
}

fn default_lease_secs() -> u32 {
    3600
}

impl Default for DhcpSection {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            lease_secs: default_lease_secs(),
            shares: Vec::new(),
        }
    }
}

/// `[power]`: the background power monitor.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PowerSection {
    /// Seconds between two rounds of power queries of every machine with a power driver;
    /// 0 turns the monitor off.
    #[serde(default = "default_monitor_interval")]
    pub(crate) monitor_interval_secs: u64,
    /// At most this many BMCs are queried at once.
    #[serde(default = "default_monitor_concurrency")]
    pub(crate) max_concurrent_queries: usize,
}

fn default_monitor_interval() -> u64 {
    300
}

fn default_monitor_concurrency() -> usize {
    32
}

impl Default for PowerSection {
    fn default() -> Self {
        Self {
            monitor_interval_secs: default_monitor_interval(),
            max_concurrent_queries: default_monitor_concurrency(),
        }
    }
}

/// `[discovery]`: passive observation of the network and active scans.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscoverySection {
    /// Interfaces watched for ARP, NDP and mDNS (needs CAP_NET_RAW); none: discovery off.
    #[serde(default)]
    pub(crate) interfaces: Vec<String>,
    /// Seconds between active scans of the subnets with `active_discovery` that have an
    /// address on a watched interface (MAAS's default: 3 hours); 0 turns scanning off.
    #[serde(default = "default_scan_interval")]
    pub(crate) scan_interval_secs: u64,
    /// Probes per second of a scan.
    #[serde(default = "default_scan_rate")]
    pub(crate) scan_rate: u32,
    /// A DNS resolver (`IP:port`) asked for the reverse name (PTR) of each new neighbour
    /// that announced no name over mDNS; none: no lookups.
    #[serde(default)]
    pub(crate) reverse_dns: Option<SocketAddr>,
}

fn default_scan_interval() -> u64 {
    3 * 3600
}

fn default_scan_rate() -> u32 {
    200
}

impl Default for DiscoverySection {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            scan_interval_secs: default_scan_interval(),
            scan_rate: default_scan_rate(),
            reverse_dns: None,
        }
    }
}

/// `[proxy]`: the caching HTTP proxy for machines of subnets with `allow_proxy` (off when
/// the section is absent).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxySection {
    /// Where it listens (MAAS: port 8000).
    pub(crate) listen: SocketAddr,
    /// The cache directory; relative to the file.
    pub(crate) cache_dir: PathBuf,
    /// The most bytes the cache keeps on disk.
    #[serde(default = "default_cache_size")]
    pub(crate) cache_size: u64,
    /// A parent proxy, `http://[user:password@]host:port`.
    #[serde(default)]
    pub(crate) upstream: Option<String>,
    /// Destinations refused besides the built-in ones (loopback, link-local, ...), the
    /// controller's own listening addresses and the machines' BMCs.
    #[serde(default)]
    pub(crate) deny: Vec<ipnet::IpNet>,
}

fn default_cache_size() -> u64 {
    10 << 30
}

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

/// The sections that are not part of the network model.
const SECTIONS: [&str; 9] = [
    "controller",
    "dns",
    "cluster",
    "database",
    "dhcp",
    "power",
    "discovery",
    "proxy",
    "machines",
];

/// Reads and checks `path`, with `role` (from the command line) overriding the file's.
/// Every problem found is listed.
pub fn load(path: &Path, role: Option<Role>) -> Result<Config, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_as(&text, base, role)
}

/// Parses and checks a configuration; relative paths are taken from `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<String>> {
    parse_as(text, base, None)
}

/// [`parse`], with `role` overriding the file's `[controller] role`.
pub(crate) fn parse_as(text: &str, base: &Path, role: Option<Role>) -> Result<Config, Vec<String>> {
    let mut table: toml::Table = text.parse().map_err(|e| vec![format!("{e}")])?;
    let mut problems = Vec::new();
    let mut take = |key: &str| table.remove(key);

    let controller = match take("controller") {
        Some(value) => value
            .try_into::<ControllerSection>()
            .map(|mut c| {
                c.role = role.unwrap_or(c.role);
                c
            })
            .map_err(|e| problems.push(format!("[controller]: {e}")))
            .ok(),
        None => {
            problems.push("[controller] is missing (it needs at least state_dir)".into());
            None
        }
    };
    let role = controller.as_ref().map_or(Role::All, |c| c.role);
    let cluster = match take("cluster") {
        Some(value) => value
            .try_into::<ClusterSection>()
            .map_err(|e| problems.push(format!("[cluster]: {e}")))
            .ok(),
        None => Some(ClusterSection::default()),
    };
    if let Some(cluster) = &cluster {
        check_cluster(role, cluster, &mut problems);
        let mut names = BTreeSet::new();
        for rack in &cluster.racks {
            if !names.insert(rack.name.as_str()) {
                problems.push(format!("[[cluster.racks]]: {} is listed twice", rack.name));
            }
        }
    }
    let database = match take("database") {
        Some(value) => match value.try_into::<DatabaseSection>() {
            Ok(d) if d.url.is_some() == d.url_file.is_some() => {
                problems.push("[database]: give url or url_file, not both".into());
                None
            }
            Ok(_) if role == Role::Rack => {
                problems.push(
                    "[database]: a rack keeps no state of its own: give it to its regions".into(),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                // Not `{e}`: the parser's message may quote the URL, password included.
                let _ = e;
                problems.push(
                    "[database]: takes url = \"postgresql://...\" or url_file = \"...\"".into(),
                );
                None
            }
        },
        None => None,
    };
    let dhcp = match take("dhcp") {
        Some(value) => value
            .try_into::<DhcpSection>()
            .map_err(|e| problems.push(format!("[dhcp]: {e}")))
            .ok(),
        None => Some(DhcpSection::default()),
    };
    let power = match take("power") {
        Some(value) => value
            .try_into::<PowerSection>()
            .map_err(|e| problems.push(format!("[power]: {e}")))
            .ok(),
        None => Some(PowerSection::default()),
    };
    if let Some(power) = &power
        && power.max_concurrent_queries == 0
    {
        problems.push("[power]: max_concurrent_queries must be at least 1".into());
    }
    let discovery = match take("discovery") {
        Some(value) => value
            .try_into::<DiscoverySection>()
            .map_err(|e| problems.push(format!("[discovery]: {e}")))
            .ok(),
        None => Some(DiscoverySection::default()),
    };
    if let Some(discovery) = &discovery {
        check_interfaces("[discovery]", &discovery.interfaces, &mut problems);
        if discovery.scan_rate == 0 {
            problems.push("[discovery]: scan_rate must be at least 1".into());
        }
    }
    let proxy = match take("proxy") {
        Some(value) => value
            .try_into::<ProxySection>()
            .map(Some)
            .map_err(|e| problems.push(format!("[proxy]: {e}")))
            .ok(),
        None => Some(None),
    };
    let dns = match take("dns") {
        Some(value) => value
            .try_into::<DnsSection>()
            .map(|d| {
                problems.extend(d.problems());
                Some(d)
            })
            .map_err(|e| problems.push(format!("[dns]: {e}")))
            .ok(),
        None => Some(None),
    };
    let machines = match take("machines") {
        Some(value) => value
            .try_into::<Vec<MachineConfig>>()
            .map_err(|e| problems.push(format!("[[machines]]: {e}")))
            .ok(),
        None => Some(Vec::new()),
    };
    debug_assert!(SECTIONS.iter().all(|s| !table.contains_key(*s)));
    let topology = toml::Value::Table(table)
        .try_into::<Topology>()
        .map_err(|e| problems.push(format!("network model: {e}")))
        .ok();

    if let (Some(machines), Some(topology)) = (&machines, &topology) {
        check_machines(machines, topology, &mut problems);
    }
    if let (Some(cluster), Some(topology)) = (&cluster, &topology)
        && role != Role::Rack
    {
        for rack in &cluster.racks {
            for key in &rack.vlans {
                let known = topology.vlans().any(|(_, v)| {
                    v.vid == key.vid
                        && topology
                            .fabric(v.fabric)
                            .is_some_and(|f| f.name == key.fabric)
                });
                if !known {
                    problems.push(format!(
                        "[[cluster.racks]] {}: no VLAN {} on fabric {:?}",
                        rack.name, key.vid, key.fabric
                    ));
                }
            }
        }
    }
    if let (Some(dhcp), Some(topology)) = (&dhcp, &topology) {
        // A rack's network model comes from its region: checked once it has it.
        if role != Role::Rack {
            check_dhcp(dhcp, topology, &mut problems);
        }
    }
    if role == Role::Region {
        let serves = [
            dhcp.as_ref()
                .is_some_and(|d| !d.interfaces.is_empty())
                .then_some("[dhcp] interfaces"),
            discovery
                .as_ref()
                .is_some_and(|d| !d.interfaces.is_empty())
                .then_some("[discovery] interfaces"),
            proxy
                .as_ref()
                .is_some_and(Option::is_some)
                .then_some("[proxy]"),
            controller
                .as_ref()
                .is_some_and(|c| c.tftp.is_some())
                .then_some("[controller] tftp"),
        ];
        for what in serves.into_iter().flatten() {
            problems.push(format!(
                "{what}: a region serves no network itself (racks do); use role all or rack"
            ));
        }
    }
    if role == Role::Rack {
        if let Some(topology) = &topology
            && topology.subnets().count() > 0
        {
            problems.push(
                "a rack takes its network model from its region: remove the subnets (and \
                 fabrics, VLANs, ranges) from this file"
                    .into(),
            );
        }
        if machines.as_ref().is_some_and(|m| !m.is_empty()) {
            problems.push(
                "[[machines]]: a rack takes its machines from its region: list them there".into(),
            );
        }
    }
    if let Some(controller) = &controller
        && let Some(assets) = &controller.boot_assets
        && !base.join(assets).is_dir()
    {
        problems.push(format!(
            "[controller]: boot_assets {} is not a directory",
            base.join(assets).display()
        ));
    }
    if let Some(controller) = &controller
        && controller.api == controller.boot_http
        && controller.api.port() != 0
    {
        problems.push(format!(
            "[controller]: api and boot_http are both {}",
            controller.api
        ));
    }
    match (
        controller, cluster, dhcp, power, discovery, proxy, dns, machines, topology,
    ) {
        (
            Some(mut controller),
            Some(cluster),
            Some(dhcp),
            Some(power),
            Some(discovery),
            Some(mut proxy),
            Some(dns),
            Some(machines),
            Some(topology),
        ) if problems.is_empty() => {
            controller.state_dir = base.join(&controller.state_dir);
            controller.boot_assets = controller.boot_assets.map(|p| base.join(p));
            if let TlsSetting::Files { cert, key } = &mut controller.tls {
                *cert = base.join(&*cert);
                *key = base.join(&*key);
            }
            let mut cluster = cluster;
            cluster.region_ca = cluster.region_ca.map(|p| base.join(p));
            if let Some(proxy) = &mut proxy {
                proxy.cache_dir = base.join(&proxy.cache_dir);
            }
            let mut database = database;
            if let Some(d) = &mut database {
                d.url_file = d.url_file.take().map(|p| base.join(p));
            }
            Ok(Config {
                controller,
                dhcp,
                power,
                discovery,
                proxy,
                dns,
                cluster,
                database,
                machines,
                topology,
            })
        }
        _ => Err(problems),
    }
}

fn check_machines(machines: &[MachineConfig], topology: &Topology, problems: &mut Vec<String>) {
    let zones: BTreeSet<&str> = topology.zones().map(|(_, z)| z.name.as_str()).collect();
    let mut macs = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (n, machine) in machines.iter().enumerate() {
        let at = format!("[[machines]] #{} ({})", n + 1, machine.mac);
        if !macs.insert(machine.mac) {
            problems.push(format!("{at}: MAC {} is listed twice", machine.mac));
        }
        if let Some(zone) = &machine.zone
            && !zones.contains(zone.as_str())
        {
            problems.push(format!(
                "{at}: zone {zone:?} does not exist (zones: {})",
                zones.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(name) = &machine.hostname {
            if !valid_hostname(name) {
                problems.push(format!(
                    "{at}: hostname {name:?} is not a DNS label (letters, digits, '-', 1-63)"
                ));
            } else if !names.insert(name.clone()) {
                problems.push(format!("{at}: hostname {name:?} is used twice"));
            }
        }
        if let Some(power) = &machine.power
            && let Err(e) = power_params(power)
        {
            problems.push(format!("{at}: power: {e}"));
        }
    }
}

fn check_cluster(role: Role, cluster: &ClusterSection, problems: &mut Vec<String>) {
    if let Some(secret) = &cluster.secret
        && secret.len() < 16
    {
        problems.push("[cluster]: secret must be at least 16 characters".into());
    }
    if cluster.rack_block_size > MAX_RACK_BLOCK {
        problems.push(format!(
            "[cluster]: rack_block_size is at most {MAX_RACK_BLOCK} addresses per subnet"
        ));
    }
    match role {
        Role::Rack => {
            if cluster.region.is_some() && !cluster.regions.is_empty() {
                problems.push("[cluster]: give region or regions, not both".into());
            }
            let urls = cluster.region_urls();
            if urls.is_empty() {
                problems.push(
                    "[cluster]: a rack needs region or regions (the region's API URLs)".into(),
                );
            }
            let mut seen = BTreeSet::new();
            for url in &urls {
                if !seen.insert(url.trim_end_matches('/')) {
                    problems.push(format!("[cluster]: region {url:?} is listed twice"));
                }
                if url.starts_with("https://") {
                    if cluster.region_ca.is_none() && cluster.region_fingerprint.is_none() {
                        problems.push(format!(
                            "[cluster]: region {url:?} is https: give region_ca (a PEM file) or region_fingerprint (the region prints it at start)"
                        ));
                    }
                } else if !url.starts_with("http://") {
                    problems.push(format!(
                        "[cluster]: region {url:?} must be an https:// or http:// URL"
                    ));
                }
            }
            if let Some(f) = &cluster.region_fingerprint {
                let hex: String = f
                    .trim_start_matches("sha256:")
                    .chars()
                    .filter(|c| *c != ':')
                    .collect();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    problems.push(
                        "[cluster]: region_fingerprint must be 64 hex digits (':' separators allowed)"
                            .into(),
                    );
                }
            }
            if cluster.region_ca.is_some() && cluster.region_fingerprint.is_some() {
                problems.push("[cluster]: give region_ca or region_fingerprint, not both".into());
            }
            if cluster.secret.is_none() {
                problems.push("[cluster]: a rack needs the region's secret".into());
            }
            if cluster.sync_secs == 0 {
                problems.push("[cluster]: sync_secs must be at least 1".into());
            }
        }
        Role::Region if cluster.secret.is_none() => {
            problems.push("[cluster]: a region needs a secret for its racks".into());
        }
        Role::Region => {}
        Role::All => {
            if cluster.region.is_some() || !cluster.regions.is_empty() {
                problems.push("[cluster]: region is for racks (role = \"rack\")".into());
            }
        }
    }
}

fn check_interfaces(section: &str, interfaces: &[String], problems: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    for name in interfaces {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
            problems.push(format!("{section}: {name:?} is not an interface name"));
        }
        if !seen.insert(name) {
            problems.push(format!("{section}: interface {name} is listed twice"));
        }
    }
}

fn check_dhcp(dhcp: &DhcpSection, topology: &Topology, problems: &mut Vec<String>) {
    check_interfaces("[dhcp]", &dhcp.interfaces, problems);
    if dhcp.lease_secs < 60 {
        problems.push(format!(
            "[dhcp]: lease_secs {} is under a minute",
            dhcp.lease_secs
        ));
    }
    if !dhcp.interfaces.is_empty() {
        let served = topology.subnets().any(|(id, s)| {
            s.managed
                && topology.vlan(s.vlan).is_some_and(|v| v.dhcp_on)
                && topology
                    .ip_ranges_in(id)
                    .any(|(_, r)| r.kind == IpRangeKind::Dynamic)
        });
        if !served {
            problems.push(
                "[dhcp]: interfaces are given but no managed subnet on a VLAN with dhcp_on has \
                 a dynamic range"
                    .into(),
            );
        }
    }
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

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
