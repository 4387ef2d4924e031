//! The controller's configuration file: the network model (maas-net's document: zones,
//! spaces, fabrics, VLANs, subnets, IP ranges, static routes) at the top level, plus the
//! `[controller]`, `[dhcp]` and `[[machines]]` sections.
//!
//! Loading checks everything and reports every problem at once; nothing starts on a file
//! with a problem.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use maas_net::{IpRangeKind, Mac, Topology};
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) controller: ControllerSection,
    pub(crate) dhcp: DhcpSection,
    pub(crate) power: PowerSection,
    pub(crate) discovery: DiscoverySection,
    pub(crate) proxy: Option<ProxySection>,
    pub(crate) machines: Vec<MachineConfig>,
    pub(crate) topology: Topology,
}

/// `[controller]`: where state lives and what the controller listens on.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ControllerSection {
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
    /// The iPXE script a machine gets, with `{mac}`, `{hostname}`, `{server}` and
    /// `{status}` replaced.
    #[serde(default = "default_ipxe_script")]
    pub(crate) ipxe_script: String,
    /// TFTP (boot loaders from `boot_assets`, per-machine pxelinux and GRUB files); off when
    /// absent. Firmware asks on port 69.
    #[serde(default)]
    pub(crate) tftp: Option<SocketAddr>,
    /// A machine's `pxelinux.cfg/01-<mac>`, with `{mac}`, `{hostname}`, `{status}` replaced.
    #[serde(default = "default_pxelinux")]
    pub(crate) pxelinux_template: String,
    /// A machine's `grub/grub.cfg-<mac>`, with the same replacements.
    #[serde(default = "default_grub")]
    pub(crate) grub_template: String,
}

fn default_pxelinux() -> String {
    "DEFAULT local\nSAY maas-rs: {hostname} ({mac}) is {status}\nLABEL local\n  LOCALBOOT 0\n"
        .to_string()
}

fn default_grub() -> String {
    "set default=0\nset timeout=0\necho 'maas-rs: {hostname} ({mac}) is {status}'\nmenuentry 'Local disk' {\n  exit\n}\n".to_string()
}

fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5240))
}

fn default_boot_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5248))
}

fn default_ipxe_script() -> String {
    "#!ipxe\necho maas-rs: {hostname} ({mac}) is {status}\nexit\n".to_string()
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
}

fn default_lease_secs() -> u32 {
    3600
}

impl Default for DhcpSection {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            lease_secs: default_lease_secs(),
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
const SECTIONS: [&str; 6] = [
    "controller",
    "dhcp",
    "power",
    "discovery",
    "proxy",
    "machines",
];

/// Reads and checks `path`. Every problem found is listed.
pub(crate) fn load(path: &Path) -> Result<Config, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base)
}

/// Parses and checks a configuration; relative paths are taken from `base`.
pub(crate) fn parse(text: &str, base: &Path) -> Result<Config, Vec<String>> {
    let mut table: toml::Table = text.parse().map_err(|e| vec![format!("{e}")])?;
    let mut problems = Vec::new();
    let mut take = |key: &str| table.remove(key);

    let controller = match take("controller") {
        Some(value) => value
            .try_into::<ControllerSection>()
            .map_err(|e| problems.push(format!("[controller]: {e}")))
            .ok(),
        None => {
            problems.push("[controller] is missing (it needs at least state_dir)".into());
            None
        }
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
    if let (Some(dhcp), Some(topology)) = (&dhcp, &topology) {
        check_dhcp(dhcp, topology, &mut problems);
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
        controller, dhcp, power, discovery, proxy, machines, topology,
    ) {
        (
            Some(mut controller),
            Some(dhcp),
            Some(power),
            Some(discovery),
            Some(mut proxy),
            Some(machines),
            Some(topology),
        ) if problems.is_empty() => {
            controller.state_dir = base.join(&controller.state_dir);
            controller.boot_assets = controller.boot_assets.map(|p| base.join(p));
            if let Some(proxy) = &mut proxy {
                proxy.cache_dir = base.join(&proxy.cache_dir);
            }
            Ok(Config {
                controller,
                dhcp,
                power,
                discovery,
                proxy,
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
mod tests {
    use super::*;

    const GOOD: &str = r#"
[controller]
state_dir = "state"

[dhcp]
interfaces = ["br0"]

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.90.0/24"
gateway_ip = "10.77.90.1"

[[ip_ranges]]
subnet = "10.77.90.0/24"
start = "10.77.90.100"
end = "10.77.90.199"
kind = "dynamic"

[[machines]]
mac = "52:54:00:77:90:10"
hostname = "node1"
power = { power_type = "manual" }
"#;

    #[test]
    fn a_good_file_loads() {
        let config = parse(GOOD, Path::new("/etc/maas")).unwrap();
        assert_eq!(config.controller.state_dir, Path::new("/etc/maas/state"));
        assert_eq!(config.machines.len(), 1);
        assert_eq!(config.dhcp.interfaces, ["br0"]);
        assert_eq!(config.topology.subnets().count(), 1);
    }

    #[test]
    fn every_problem_is_listed() {
        let bad = GOOD.replace(
            "[[machines]]\nmac = \"52:54:00:77:90:10\"",
            "[[machines]]\nmac = \"52:54:00:77:90:10\"\nzone = \"nowhere\"\n\n\
             [[machines]]\nmac = \"52:54:00:77:90:10\"\nhostname = \"-bad\"\n\n[[machines]]\nmac = \"52:54:00:77:90:11\"",
        ) + "\n[[subnets]]\ncidr = \"10.77.90.0/25\"\n";
        let problems = parse(&bad, Path::new(".")).unwrap_err();
        // The overlapping subnet is a model error; machines are checked only on a valid
        // model, so fix that to see the rest.
        assert!(
            problems.iter().any(|p| p.contains("network model")),
            "{problems:?}"
        );
        let bad = bad.replace("\n[[subnets]]\ncidr = \"10.77.90.0/25\"\n", "");
        let problems = parse(&bad, Path::new(".")).unwrap_err();
        let text = problems.join("\n");
        assert!(text.contains("zone \"nowhere\" does not exist"), "{text}");
        assert!(text.contains("listed twice"), "{text}");
        assert!(text.contains("\"-bad\" is not a DNS label"), "{text}");
        assert!(problems.len() >= 3, "{text}");
    }

    #[test]
    fn unknown_keys_and_missing_sections_are_refused() {
        let problems = parse(
            "[controller]\nstate_dir = \"s\"\napi_port = 1\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(problems[0].contains("api_port"), "{problems:?}");
        let problems = parse("", Path::new(".")).unwrap_err();
        assert!(
            problems[0].contains("[controller] is missing"),
            "{problems:?}"
        );
        let problems = parse(
            "[controller]\nstate_dir = \"s\"\n[dhcp]\ninterfaces = [\"eth0\"]\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(problems[0].contains("no managed subnet"), "{problems:?}");
    }
}
