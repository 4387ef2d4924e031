//! Renders the network configuration a deployed machine gets, as MAAS renders it for
//! cloud-init and netplan.
//!
//! ```text
//! cargo run --example netconfig -- FILE.toml --machine HOSTNAME [--format v2|v1]
//!     [--source-routing] [--commissioning] [--dns IP]... [--search DOMAIN]...
//! ```
//!
//! FILE is a topology document (the format of `examples/topology.toml`) with `[[machines]]`;
//! `--dns` gives the controller's own DNS addresses, `--search` more search domains. The
//! document is printed with `network:` at the top. A document that breaks a rule is refused
//! with every problem listed, and the exit status is 1; bad arguments exit with 2.

use std::net::IpAddr;
use std::process::ExitCode;

use maas_net::Topology;
use maas_net::netplan::{self, Format, RenderOptions};

const USAGE: &str = "usage: netconfig FILE.toml --machine HOSTNAME [--format v2|v1] \
                     [--source-routing] [--commissioning] [--dns IP]... [--search DOMAIN]...";

struct Args {
    path: String,
    machine: String,
    format: Format,
    options: RenderOptions,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut machine = None;
    let mut format = Format::V2;
    let mut options = RenderOptions::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--machine" => machine = Some(value("--machine")?),
            "--format" => {
                format = match value("--format")?.as_str() {
                    "v2" | "2" => Format::V2,
                    "v1" | "1" => Format::V1,
                    other => return Err(format!("unknown format {other:?}: use v2 or v1")),
                }
            }
            "--source-routing" => {
                options.source_routing(true);
            }
            "--commissioning" => {
                options.commissioning(true);
            }
            "--dns" => {
                let text = value("--dns")?;
                let ip: IpAddr = text.parse().map_err(|e| format!("--dns {text:?}: {e}"))?;
                options.dns_server(ip);
            }
            "--search" => {
                options.search_domain(value("--search")?);
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            file if path.is_none() => path = Some(file.to_owned()),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    Ok(Args {
        path: path.ok_or("a topology file is needed")?,
        machine: machine.ok_or("--machine is needed")?,
        format,
        options,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("netconfig: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(&args.path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args.path);
            return ExitCode::FAILURE;
        }
    };
    let topo: Topology = match toml::from_str(&text) {
        Ok(topo) => topo,
        Err(e) => {
            eprintln!("{}: {e}", args.path);
            return ExitCode::FAILURE;
        }
    };
    let Some(machine) = topo.machine_by_hostname(&args.machine) else {
        eprintln!("{}: no machine named {:?}", args.path, args.machine);
        return ExitCode::FAILURE;
    };
    match netplan::render(&topo, machine, &args.options, args.format) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {}: {e}", args.path, args.machine);
            ExitCode::FAILURE
        }
    }
}
