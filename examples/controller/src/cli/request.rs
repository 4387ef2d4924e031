//! The request each command stands for.

use base64::Engine as _;
use hyper::Method;
use serde_json::{Map, Value};

use super::{Command, encode};

/// A request the command line asks for.
#[derive(Debug)]
pub(super) struct Call {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) body: Option<Value>,
}

/// The request `command` stands for.
pub(super) fn request(command: &Command) -> Result<Call, String> {
    let get = |path: String| Call {
        method: Method::GET,
        path,
        body: None,
    };
    let post = |path: String, body: Option<Value>| Call {
        method: Method::POST,
        path,
        body,
    };
    let delete = |path: String| Call {
        method: Method::DELETE,
        path,
        body: None,
    };
    let object = |pairs: &[(&str, Option<Value>)]| {
        let mut map = Map::new();
        for (key, value) in pairs {
            if let Some(value) = value {
                map.insert((*key).into(), value.clone());
            }
        }
        Some(Value::Object(map))
    };
    let text = |v: &Option<String>| v.clone().map(Value::from);
    let list = |v: &[String]| (!v.is_empty()).then(|| Value::from(v.to_vec()));
    Ok(match command {
        Command::Login | Command::Whoami => get("/api/v1/whoami".into()),
        Command::Logout => get("/api/v1/version".into()),
        Command::Users => get("/api/v1/users".into()),
        Command::AddUser { name, role } => post(
            "/api/v1/users".into(),
            object(&[
                ("name", Some(name.as_str().into())),
                ("role", Some(role.as_str().into())),
            ]),
        ),
        Command::RemoveUser { name } => delete(format!("/api/v1/users/{name}")),
        Command::Tokens { user } => get(match user {
            Some(u) => format!("/api/v1/tokens?user={u}"),
            None => "/api/v1/tokens".into(),
        }),
        Command::CreateToken {
            user,
            expires_in,
            description,
        } => post(
            "/api/v1/tokens".into(),
            object(&[
                ("user", Some(user.as_str().into())),
                ("expires_in", expires_in.map(Value::from)),
                ("description", text(description)),
            ]),
        ),
        Command::RevokeToken { id } => delete(format!("/api/v1/tokens/{id}")),
        Command::Audit {
            user,
            rack,
            machine,
        } => {
            let query: Vec<String> = [("user", user), ("rack", rack), ("machine", machine)]
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                .collect();
            get(if query.is_empty() {
                "/api/v1/audit".into()
            } else {
                format!("/api/v1/audit?{}", query.join("&"))
            })
        }
        Command::RemoveRack { name } => delete(format!("/api/v1/racks/{name}")),
        Command::Commission { mac } => post(format!("/api/v1/machines/{mac}/commission"), None),
        Command::Deploy {
            mac,
            os,
            release,
            user_data,
        } => {
            let user_data = match user_data {
                Some(path) => {
                    let bytes =
                        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                    Some(
                        base64::engine::general_purpose::STANDARD
                            .encode(bytes)
                            .into(),
                    )
                }
                None => None,
            };
            post(
                format!("/api/v1/machines/{mac}/deploy"),
                object(&[
                    ("osystem", text(os)),
                    ("distro_series", text(release)),
                    ("user_data", user_data),
                ]),
            )
        }
        Command::Interfaces { mac } => get(format!("/api/v1/machines/{mac}/interfaces")),
        Command::SetInterfaces { mac, file } => {
            let doc = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let doc: Value = serde_json::from_slice(&doc)
                .map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
            Call {
                method: Method::PUT,
                path: format!("/api/v1/machines/{mac}/interfaces"),
                body: Some(doc),
            }
        }
        Command::Netconfig { mac, format } => get(format!(
            "/api/v1/machines/{mac}/netconfig?format={}",
            format.as_deref().unwrap_or("v2")
        )),
        Command::BootResources => get("/api/v1/boot-resources".into()),
        Command::ImportBootResource { dir } => post(
            "/api/v1/boot-resources".into(),
            object(&[("dir", Some(dir.as_str().into()))]),
        ),
        Command::Machines { zone, status, tags } => {
            let query: Vec<String> = zone
                .iter()
                .map(|z| ("zone", z))
                .chain(status.iter().map(|s| ("status", s)))
                .chain(tags.iter().map(|t| ("tag", t)))
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect();
            get(if query.is_empty() {
                "/api/v1/machines".into()
            } else {
                format!("/api/v1/machines?{}", query.join("&"))
            })
        }
        Command::Allocate(a) => post(
            "/api/v1/machines/allocate".into(),
            object(&[
                ("zone", text(&a.zone)),
                ("not_in_zone", list(&a.not_in_zone)),
                ("arch", text(&a.arch)),
                ("cpu_count", a.cpu_count.map(Value::from)),
                ("mem", a.mem.map(Value::from)),
                ("tags", list(&a.tags)),
                ("not_tags", list(&a.not_tags)),
                ("hostname", text(&a.hostname)),
                ("subnets", list(&a.subnets)),
                ("vlans", list(&a.vlans)),
                ("fabrics", list(&a.fabrics)),
            ]),
        ),
        Command::ZoneCreate { name, description } => post(
            "/api/v1/zones".into(),
            object(&[
                ("name", Some(name.as_str().into())),
                ("description", text(description)),
            ]),
        ),
        Command::ZoneDelete { name } => delete(format!("/api/v1/zones/{name}")),
        Command::DomainCreate {
            name,
            non_authoritative,
            ttl,
        } => post(
            "/api/v1/domains".into(),
            object(&[
                ("name", Some(name.as_str().into())),
                ("authoritative", Some((!non_authoritative).into())),
                ("ttl", ttl.map(Value::from)),
            ]),
        ),
        Command::DomainUpdate {
            name,
            authoritative,
            ttl,
        } => Call {
            method: Method::PUT,
            path: format!("/api/v1/domains/{name}"),
            body: object(&[
                ("authoritative", authoritative.map(Value::from)),
                ("ttl", ttl.map(Value::from)),
            ]),
        },
        Command::DomainDelete { name } => delete(format!("/api/v1/domains/{name}")),
        Command::SetDomain { mac, domain } => Call {
            method: Method::PUT,
            path: format!("/api/v1/machines/{mac}/domain"),
            body: object(&[("domain", Some(domain.as_str().into()))]),
        },
        Command::SetZone { mac, zone } => Call {
            method: Method::PUT,
            path: format!("/api/v1/machines/{mac}/zone"),
            body: object(&[("zone", Some(zone.as_str().into()))]),
        },
        Command::Tag { mac, tags } => post(
            format!("/api/v1/machines/{mac}/tags"),
            object(&[("add", list(tags))]),
        ),
        Command::Untag { mac, tags } => post(
            format!("/api/v1/machines/{mac}/tags"),
            object(&[("remove", list(tags))]),
        ),
        Command::Subnets => get("/api/v1/subnets".into()),
        Command::Ipranges => get("/api/v1/ipranges".into()),
        Command::Leases => get("/api/v1/leases".into()),
        Command::Ipaddresses => get("/api/v1/ipaddresses".into()),
        Command::Zones => get("/api/v1/zones".into()),
        Command::Discoveries { unknown } => get(match unknown {
            Some(u) => format!("/api/v1/discoveries?unknown={}", encode(u)),
            None => "/api/v1/discoveries".into(),
        }),
        Command::Devices(command) => return super::devices::request(command),
        Command::Domains => get("/api/v1/domains".into()),
        Command::Racks => get("/api/v1/racks".into()),
        Command::Metrics => get("/metrics".into()),
        Command::Machine { mac } => get(format!("/api/v1/machines/{mac}")),
        Command::Statistics { subnet } => get(format!("/api/v1/subnets/{subnet}/statistics")),
        Command::Power { mac } => get(format!("/api/v1/machines/{mac}/power")),
        Command::PowerOn { mac } => post(format!("/api/v1/machines/{mac}/power-on"), None),
        Command::PowerOff { mac } => post(format!("/api/v1/machines/{mac}/power-off"), None),
        Command::PowerCycle { mac } => post(format!("/api/v1/machines/{mac}/power-cycle"), None),
        Command::Boot {
            mac,
            device,
            persistent,
            mode,
        } => post(
            format!("/api/v1/machines/{mac}/boot"),
            object(&[
                ("device", Some(device.as_str().into())),
                ("persistence", persistent.then(|| "persistent".into())),
                ("mode", text(mode)),
            ]),
        ),
        Command::DeleteMachine { mac } => delete(format!("/api/v1/machines/{mac}")),
        Command::Accept { mac } => post(format!("/api/v1/machines/{mac}/accept"), None),
        // MACs and addresses are told apart by their spelling: neither parses as the other.
        Command::Release { target } => match target.replace('-', ":").parse::<maas_net::Mac>() {
            Ok(_) => post(format!("/api/v1/machines/{target}/release"), None),
            Err(_) => delete(format!("/api/v1/ipaddresses/{target}")),
        },
        Command::AddMachine {
            mac,
            hostname,
            zone,
            architecture,
        } => post(
            "/api/v1/machines".into(),
            object(&[
                ("mac", Some(mac.as_str().into())),
                ("hostname", text(hostname)),
                ("zone", text(zone)),
                ("architecture", text(architecture)),
            ]),
        ),
        Command::Reserve {
            ip,
            subnet,
            sticky,
            mac,
            owner,
        } => post(
            "/api/v1/ipaddresses".into(),
            object(&[
                ("ip", text(ip)),
                ("subnet", subnet.map(Value::from)),
                ("kind", sticky.then(|| "sticky".into())),
                ("mac", text(mac)),
                ("owner", text(owner)),
            ]),
        ),
    })
}
