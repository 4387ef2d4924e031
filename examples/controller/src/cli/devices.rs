//! The devices and discoveries commands, and the requests they stand for.

use hyper::Method;
use serde_json::{Map, Value, json};

use super::request::Call;

/// Devices, and what to do with discoveries.
#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// List devices.
    Devices,
    /// Show one device.
    Device {
        /// Its name.
        name: String,
    },
    /// Make a device (owned by you), with one interface if `--mac` is given.
    AddDevice {
        /// Its host name.
        name: String,
        /// Its domain (default maas).
        #[arg(long)]
        domain: Option<String>,
        /// Its zone (default default).
        #[arg(long)]
        zone: Option<String>,
        /// Its parent: a machine's MAC or a device's name.
        #[arg(long)]
        parent: Option<String>,
        /// What it is.
        #[arg(long)]
        description: Option<String>,
        /// Its interface.
        #[command(flatten)]
        interface: InterfaceArgs,
    },
    /// Change a device (its owner or an admin).
    UpdateDevice {
        /// Its name.
        name: String,
        /// A new name.
        #[arg(long = "name")]
        rename: Option<String>,
        /// Its domain.
        #[arg(long)]
        domain: Option<String>,
        /// Its zone.
        #[arg(long)]
        zone: Option<String>,
        /// Its parent ("" removes it).
        #[arg(long)]
        parent: Option<String>,
        /// What it is.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a device, freeing its addresses (its owner or an admin).
    DeleteDevice {
        /// Its name.
        name: String,
    },
    /// Add an interface to a device.
    AddDeviceInterface {
        /// The device's name.
        name: String,
        /// Its interface.
        #[command(flatten)]
        interface: InterfaceArgs,
    },
    /// Remove a device's interface, freeing what it held.
    RemoveDeviceInterface {
        /// The device's name.
        name: String,
        /// The interface's MAC.
        mac: String,
    },
    /// Clear discoveries (admin): everything, the neighbours, or their mDNS names.
    ClearDiscoveries {
        /// Everything.
        #[arg(long)]
        all: bool,
        /// The neighbours.
        #[arg(long)]
        neighbours: bool,
        /// Their host names.
        #[arg(long)]
        mdns: bool,
    },
    /// Clear the discoveries of one MAC at one address (admin).
    ClearDiscovery {
        /// The MAC.
        mac: String,
        /// The address.
        ip: String,
    },
    /// Turn a discovery into a device, or into an interface of a machine or device.
    ConvertDiscovery {
        /// The discovery's address.
        ip: String,
        /// The discovery's MAC.
        mac: String,
        /// device or interface.
        #[arg(long = "as", default_value = "device")]
        kind: String,
        /// static, dynamic or external.
        #[arg(long)]
        ip_assignment: String,
        /// The device's host name.
        #[arg(long)]
        hostname: Option<String>,
        /// The device's domain.
        #[arg(long)]
        domain: Option<String>,
        /// The device's zone.
        #[arg(long)]
        zone: Option<String>,
        /// static: take the next free address of this subnet (CIDR or id).
        #[arg(long)]
        subnet: Option<String>,
        /// The device's parent: a machine's MAC or a device's name.
        #[arg(long)]
        parent: Option<String>,
        /// With --as interface: the machine's MAC or the device's name.
        #[arg(long)]
        target: Option<String>,
        /// The interface's name.
        #[arg(long)]
        interface: Option<String>,
    },
}

/// One interface of a device.
#[derive(Debug, clap::Args)]
pub struct InterfaceArgs {
    /// Its MAC.
    #[arg(long)]
    pub mac: Option<String>,
    /// Its name (default: the first free ethN).
    #[arg(long = "interface")]
    pub interface_name: Option<String>,
    /// static, dynamic (default) or external.
    #[arg(long)]
    pub ip_assignment: Option<String>,
    /// The address (static: else the next free one of --subnet; external: required).
    #[arg(long)]
    pub ip: Option<String>,
    /// static: the subnet (CIDR or id) to take the next free address of.
    #[arg(long)]
    pub subnet: Option<String>,
}

impl InterfaceArgs {
    fn body(&self) -> Option<Value> {
        let mac = self.mac.as_ref()?;
        let mut map = Map::new();
        map.insert("mac".into(), json!(mac));
        for (key, value) in [
            ("name", &self.interface_name),
            ("ip_assignment", &self.ip_assignment),
            ("ip", &self.ip),
            ("subnet", &self.subnet),
        ] {
            if let Some(v) = value {
                map.insert(key.into(), json!(v));
            }
        }
        Some(Value::Object(map))
    }
}

/// `pairs` with a value, as a JSON object.
fn object(pairs: &[(&str, Option<Value>)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| ((*k).to_owned(), v)))
            .collect(),
    )
}

fn text(v: &Option<String>) -> Option<Value> {
    v.clone().map(Value::from)
}

fn call(method: Method, path: String, body: Option<Value>) -> Call {
    Call { method, path, body }
}

/// The request `command` stands for.
pub(super) fn request(command: &DeviceCommand) -> Result<Call, String> {
    Ok(match command {
        DeviceCommand::Devices => call(Method::GET, "/api/v1/devices".into(), None),
        DeviceCommand::Device { name } => {
            call(Method::GET, format!("/api/v1/devices/{name}"), None)
        }
        DeviceCommand::AddDevice {
            name,
            domain,
            zone,
            parent,
            description,
            interface,
        } => {
            if interface.mac.is_none()
                && (interface.ip.is_some()
                    || interface.subnet.is_some()
                    || interface.ip_assignment.is_some())
            {
                return Err("an interface needs its --mac".into());
            }
            call(
                Method::POST,
                "/api/v1/devices".into(),
                Some(object(&[
                    ("name", Some(name.as_str().into())),
                    ("domain", text(domain)),
                    ("zone", text(zone)),
                    ("parent", text(parent)),
                    ("description", text(description)),
                    (
                        "interfaces",
                        Some(Value::Array(interface.body().into_iter().collect())),
                    ),
                ])),
            )
        }
        DeviceCommand::UpdateDevice {
            name,
            rename,
            domain,
            zone,
            parent,
            description,
        } => call(
            Method::PUT,
            format!("/api/v1/devices/{name}"),
            Some(object(&[
                ("name", text(rename)),
                ("domain", text(domain)),
                ("zone", text(zone)),
                ("parent", text(parent)),
                ("description", text(description)),
            ])),
        ),
        DeviceCommand::DeleteDevice { name } => {
            call(Method::DELETE, format!("/api/v1/devices/{name}"), None)
        }
        DeviceCommand::AddDeviceInterface { name, interface } => call(
            Method::POST,
            format!("/api/v1/devices/{name}/interfaces"),
            Some(interface.body().ok_or("give the interface's --mac")?),
        ),
        DeviceCommand::RemoveDeviceInterface { name, mac } => call(
            Method::DELETE,
            format!("/api/v1/devices/{name}/interfaces/{mac}"),
            None,
        ),
        DeviceCommand::ClearDiscoveries {
            all,
            neighbours,
            mdns,
        } => call(
            Method::POST,
            "/api/v1/discoveries/clear".into(),
            Some(json!({ "all": all, "neighbours": neighbours, "mdns": mdns })),
        ),
        DeviceCommand::ClearDiscovery { mac, ip } => call(
            Method::POST,
            "/api/v1/discoveries/clear-by-mac-and-ip".into(),
            Some(json!({ "mac": mac, "ip": ip })),
        ),
        DeviceCommand::ConvertDiscovery {
            ip,
            mac,
            kind,
            ip_assignment,
            hostname,
            domain,
            zone,
            subnet,
            parent,
            target,
            interface,
        } => call(
            Method::POST,
            "/api/v1/discoveries/convert".into(),
            Some(object(&[
                ("ip", Some(ip.as_str().into())),
                ("mac", Some(mac.as_str().into())),
                ("as", Some(kind.as_str().into())),
                ("ip_assignment", Some(ip_assignment.as_str().into())),
                ("hostname", text(hostname)),
                ("domain", text(domain)),
                ("zone", text(zone)),
                ("subnet", text(subnet)),
                ("parent", text(parent)),
                ("target", text(target)),
                ("interface", text(interface)),
            ])),
        ),
    })
}
