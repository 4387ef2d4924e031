//! Reading the file: each section taken from the document and checked, the rest read as the
//! network model, and every problem listed.

use std::collections::BTreeSet;
use std::path::Path;

use maas_net::{IpRangeKind, Topology};

use super::cluster::MAX_RACK_BLOCK;
use super::{
    ClusterSection, Config, ControllerSection, DatabaseSection, DhcpSection, DiscoverySection,
    DnsSection, MachineConfig, PowerSection, ProxySection, Role, TlsSetting, power_params,
    valid_hostname,
};

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

/// [`parse`](super::parse), with `role` overriding the file's `[controller] role`.
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
