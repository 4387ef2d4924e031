//! `maas-controller cli ...`: the command line over the HTTP JSON API.
//!
//! ```text
//! maas-controller cli [--api URL] machines | machine MAC | add-machine MAC [--hostname H]
//!     [--zone Z] [--architecture A] | delete-machine MAC | accept MAC | subnets |
//!     statistics SUBNET-ID | ipranges | leases | ipaddresses | discoveries | racks |
//!     reserve (--ip IP | --subnet ID)
//!     [--sticky] [--mac MAC] [--owner TEXT] | release IP | zones | metrics | power MAC |
//!     power-on MAC | power-off MAC | power-cycle MAC | boot MAC DEVICE [--persistent]
//!     [--mode M]
//! ```
//!
//! Prints the API's answer (JSON, pretty) and exits 0, or prints its error and exits 1.

use std::process::ExitCode;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

/// The command line over the API: `maas-controller cli [--api URL] COMMAND`.
#[derive(Debug, clap::Args)]
pub struct CliArgs {
    /// The controller's API.
    #[arg(long, default_value = "http://127.0.0.1:5240", env = "MAAS_API")]
    pub api: String,
    /// What to ask.
    #[command(subcommand)]
    pub command: Command,
}

/// One request to the API.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List machines.
    Machines,
    /// Show one machine.
    Machine {
        /// Its MAC address.
        mac: String,
    },
    /// Add a machine.
    AddMachine {
        /// Its MAC address.
        mac: String,
        /// Its host name.
        #[arg(long)]
        hostname: Option<String>,
        /// Its zone.
        #[arg(long)]
        zone: Option<String>,
        /// Its architecture (`amd64/generic`...).
        #[arg(long)]
        architecture: Option<String>,
    },
    /// Remove a machine.
    DeleteMachine {
        /// Its MAC address.
        mac: String,
    },
    /// Accept an enlisted machine.
    Accept {
        /// Its MAC address.
        mac: String,
    },
    /// Subnets with statistics.
    Subnets,
    /// One subnet's statistics, ranges and suggestions.
    Statistics {
        /// The subnet's id.
        subnet: u32,
    },
    /// IP ranges.
    Ipranges,
    /// DHCP leases.
    Leases,
    /// Addresses other than leases.
    Ipaddresses,
    /// Zones.
    Zones,
    /// Neighbours seen by discovery.
    Discoveries,
    /// Racks that reported to this region.
    Racks,
    /// The Prometheus metrics.
    Metrics,
    /// Reserve an address, or the next free one of a subnet.
    Reserve {
        /// The address.
        #[arg(long, conflicts_with = "subnet", required_unless_present = "subnet")]
        ip: Option<String>,
        /// The subnet to take the next free address of.
        #[arg(long)]
        subnet: Option<u32>,
        /// A machine's address (STICKY) instead of a user reservation.
        #[arg(long)]
        sticky: bool,
        /// The MAC it belongs to.
        #[arg(long)]
        mac: Option<String>,
        /// Who holds it.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Release a reservation.
    Release {
        /// The address.
        ip: String,
    },
    /// Ask the machine's BMC for its power state.
    Power {
        /// Its MAC address.
        mac: String,
    },
    /// Power a machine on (network boot first).
    PowerOn {
        /// Its MAC address.
        mac: String,
    },
    /// Power a machine off.
    PowerOff {
        /// Its MAC address.
        mac: String,
    },
    /// Power-cycle a machine.
    PowerCycle {
        /// Its MAC address.
        mac: String,
    },
    /// Set the boot device (pxe, disk, cdrom, biossetup, none).
    Boot {
        /// Its MAC address.
        mac: String,
        /// The device.
        device: String,
        /// Keep it for every boot, not only the next.
        #[arg(long)]
        persistent: bool,
        /// auto, legacy or efi.
        #[arg(long)]
        mode: Option<String>,
    },
}

/// Runs one command and prints the answer: exit 0 with the API's JSON (pretty), or 1 with
/// its error.
pub fn main(args: &CliArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A request the command line asks for.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
}

/// The request `command` stands for.
fn request(command: &Command) -> Call {
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
    match command {
        Command::Machines => get("/api/v1/machines".into()),
        Command::Subnets => get("/api/v1/subnets".into()),
        Command::Ipranges => get("/api/v1/ipranges".into()),
        Command::Leases => get("/api/v1/leases".into()),
        Command::Ipaddresses => get("/api/v1/ipaddresses".into()),
        Command::Zones => get("/api/v1/zones".into()),
        Command::Discoveries => get("/api/v1/discoveries".into()),
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
        Command::Release { ip } => delete(format!("/api/v1/ipaddresses/{ip}")),
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
    }
}

async fn run(args: &CliArgs) -> Result<String, String> {
    let api = args.api.trim_end_matches('/');
    let call = request(&args.command);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri = format!("{api}{}", call.path);
    let mut request = Request::builder().method(call.method).uri(&uri);
    let body = match &call.body {
        Some(b) => {
            request = request.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("{uri}: {e}"))?;
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
            .await
            .map_err(|_| format!("{uri}: no answer within 30 s"))?
            .map_err(|e| format!("{uri}: {e} (is the controller running?)"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{uri}: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let pretty = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    if status.is_success() {
        Ok(pretty.unwrap_or_else(|| text.trim_end().to_string()))
    } else {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.into_owned());
        Err(format!("{status}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use serde_json::json;

    use super::*;

    #[derive(clap::Parser)]
    struct Top {
        #[command(flatten)]
        cli: CliArgs,
    }

    fn parse(text: &str) -> Result<(String, Call), clap::Error> {
        let top = Top::try_parse_from(std::iter::once("cli").chain(text.split_whitespace()))?;
        Ok((top.cli.api.clone(), request(&top.cli.command)))
    }

    #[test]
    fn commands_become_requests() {
        let (api, call) = parse("--api http://10.77.0.1:5240/ machine 52:54:00:77:00:01").unwrap();
        assert_eq!(api, "http://10.77.0.1:5240/");
        assert_eq!(
            (call.method, call.path.as_str()),
            (Method::GET, "/api/v1/machines/52:54:00:77:00:01")
        );
        let (_, call) = parse("reserve --subnet 0 --sticky --mac 52:54:00:77:00:02").unwrap();
        assert_eq!(call.method, Method::POST);
        assert_eq!(
            call.body,
            Some(json!({ "subnet": 0, "kind": "sticky", "mac": "52:54:00:77:00:02" }))
        );
        let (_, call) = parse("add-machine 52:54:00:77:00:03 --hostname n3").unwrap();
        assert_eq!(
            call.body,
            Some(json!({ "mac": "52:54:00:77:00:03", "hostname": "n3" }))
        );
        for bad in [
            "",
            "machine",
            "frobnicate",
            "reserve --subnet x",
            "reserve",
            "add-machine m --colour red",
            "release",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
