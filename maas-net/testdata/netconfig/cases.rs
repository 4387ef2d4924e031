//! The rendering cases shared by maas-net's tests and the netplan / cloud-init peer test: a
//! topology document each (`testdata/netconfig/<name>.toml`), the machine to render and the
//! options to render it with.

use maas_net::netplan::RenderOptions;
use maas_net::{MachineId, Topology};

/// One rendering case.
pub(crate) struct Case {
    /// The document's file name without `.toml`, and the case's name.
    pub(crate) name: &'static str,
    /// The machine rendered.
    pub(crate) hostname: &'static str,
    /// Source routing on.
    pub(crate) source_routing: bool,
    /// The commissioning form.
    pub(crate) commissioning: bool,
    /// The controller's DNS addresses.
    pub(crate) dns: &'static [&'static str],
}

const fn case(name: &'static str, hostname: &'static str) -> Case {
    Case {
        name,
        hostname,
        source_routing: false,
        commissioning: false,
        dns: &[],
    }
}

/// Every case.
pub(crate) const CASES: &[Case] = &[
    case("single", "single"),
    case("bond_lacp", "lacp"),
    case("bond_active_backup", "backup"),
    case("bridge_over_bond", "kvmhost"),
    case("routes", "router"),
    Case {
        source_routing: true,
        ..case("routes", "router")
    },
    Case {
        dns: &["10.77.18.2", "10.77.50.2", "fd77::2"],
        ..case("gateway_link_dns", "gwlink")
    },
    Case {
        dns: &["10.77.19.2", "fd77:0:0:20::2"],
        ..case("dual_stack", "dual")
    },
    case("disconnected", "spare"),
    Case {
        commissioning: true,
        ..case("commissioning", "fresh")
    },
    case("commissioning", "fresh"),
];

impl Case {
    /// The document's text.
    pub(crate) fn text(&self) -> String {
        let path = format!(
            "{}/testdata/netconfig/{}.toml",
            env!("CARGO_MANIFEST_DIR")
                .trim_end_matches("/maas-net")
                .to_owned()
                + "/maas-net",
            self.name
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    /// The topology, the machine and the options.
    pub(crate) fn load(&self) -> (Topology, MachineId, RenderOptions) {
        let topo: Topology = toml::from_str(&self.text())
            .unwrap_or_else(|e| panic!("case {} does not load: {e}", self.name));
        let machine = topo
            .machine_by_hostname(self.hostname)
            .unwrap_or_else(|| panic!("case {} has no machine {}", self.name, self.hostname));
        let mut options = RenderOptions::default();
        options
            .source_routing(self.source_routing)
            .commissioning(self.commissioning);
        for ip in self.dns {
            options.dns_server(ip.parse().expect("a DNS address"));
        }
        (topo, machine, options)
    }

    /// A label for messages: the name with the options that differ.
    pub(crate) fn label(&self) -> String {
        let mut label = self.name.to_owned();
        if self.source_routing {
            label += " (source routing)";
        }
        if self.commissioning {
            label += " (commissioning)";
        }
        label
    }
}
