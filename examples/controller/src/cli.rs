//! `maas-controller cli ...`: the command line over the HTTP JSON API.
//!
//! ```text
//! maas-controller cli [--api URL] machines | machine MAC | add-machine MAC [--hostname H]
//!     [--zone Z] [--architecture A] | delete-machine MAC | accept MAC | subnets |
//!     statistics SUBNET-ID | ipranges | leases | ipaddresses | discoveries | racks |
//!     reserve (--ip IP | --subnet ID)
//!     [--sticky] [--mac MAC] [--owner TEXT] | release IP | zones | metrics | power MAC |
//!     power-on MAC | power-off MAC | power-cycle MAC | boot MAC DEVICE [--persistent]
//!     [--mode M] | machines [--zone Z] [--status S] [--tag T]... |
//!     allocate [--zone Z] [--not-in-zone Z]... [--arch A] [--cpu-count N] [--mem MiB]
//!     [--tag T]... [--not-tag T]... [--hostname H] [--subnet CIDR]... [--vlan V]...
//!     [--fabric F]... | release MAC | zone-create NAME [--description D] | zone-delete NAME |
//!     set-zone MAC ZONE | tag MAC TAG... | untag MAC TAG... | discoveries [--unknown mac|ip|both] |
//!     devices | device NAME | add-device NAME [--domain D] [--zone Z] [--parent P]
//!     [--description D] [--mac MAC [--interface N] [--ip-assignment M] [--ip IP] [--subnet S]] |
//!     update-device NAME [--name N] [--domain D] [--zone Z] [--parent P] [--description D] |
//!     delete-device NAME | add-device-interface NAME --mac MAC [...] |
//!     remove-device-interface NAME MAC | clear-discoveries [--all] [--neighbours] [--mdns] |
//!     clear-discovery MAC IP | convert-discovery IP MAC [--as device|interface]
//!     --ip-assignment M [--hostname H] [--domain D] [--zone Z] [--subnet S] [--parent P]
//!     [--target T] [--interface N]
//!     | domains | domain-create NAME [--non-authoritative] [--ttl N] |
//!     domain-update NAME [--authoritative B] [--ttl N] | domain-delete NAME |
//!     set-domain MAC DOMAIN
//! ```
//!
//! `release` takes a MAC (a machine, back to Ready) or an address (a reservation).
//!
//! Prints the API's answer (JSON, pretty) and exits 0, or prints its error and exits 1.
//!
//! Every call but `version` needs a token: `MAAS_TOKEN`, or the profile `cli login` writes
//! (`$MAAS_PROFILE`, default `~/.config/maas-controller/profile.json`, mode 0600, holding the
//! API URL, the token and the CA file to trust). An `https://` API is verified against `--ca`
//! (`MAAS_CA`) or pinned with `--fingerprint` (`MAAS_FINGERPRINT`).

use std::process::ExitCode;

use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

mod devices;
mod profile;
mod request;

pub use devices::{DeviceCommand, InterfaceArgs};
use profile::{Profile, profile_path, read_profile, write_profile};
use request::request;

/// The command line over the API: `maas-controller cli [--api URL] COMMAND`.
#[derive(Debug, clap::Args)]
pub struct CliArgs {
    /// The controller's API (default: the profile's, else http://127.0.0.1:5240).
    #[arg(long, env = "MAAS_API")]
    pub api: Option<String>,
    /// A PEM file to verify an https:// API against (the region's tls/cert.pem).
    #[arg(long, env = "MAAS_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// The SHA-256 fingerprint of an https:// API's certificate, as the controller logs it.
    #[arg(long, env = "MAAS_FINGERPRINT", conflicts_with = "ca")]
    pub fingerprint: Option<String>,
    /// What to ask.
    #[command(subcommand)]
    pub command: Command,
}

/// One request to the API.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a token (read from standard input) against the API and keep it, with the API's
    /// URL and CA, in the profile (mode 0600).
    Login,
    /// Forget the profile.
    Logout,
    /// Who the token speaks for.
    Whoami,
    /// List users (admin).
    Users,
    /// Add a user (admin).
    AddUser {
        /// The name.
        name: String,
        /// admin, operator or viewer.
        #[arg(long)]
        role: String,
    },
    /// Remove a user and their tokens (admin).
    RemoveUser {
        /// The name.
        name: String,
    },
    /// List tokens, never their secrets (admin).
    Tokens {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Make a token for a user and print it, once (admin).
    CreateToken {
        /// The user.
        #[arg(long)]
        user: String,
        /// Seconds until it stops working.
        #[arg(long)]
        expires_in: Option<u64>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// Revoke a token by its id (admin).
    RevokeToken {
        /// The id.
        id: String,
    },
    /// The audit trail (admin).
    Audit {
        /// Only this user's calls.
        #[arg(long)]
        user: Option<String>,
        /// Only this rack's calls.
        #[arg(long)]
        rack: Option<String>,
        /// Only calls about this machine.
        #[arg(long)]
        machine: Option<String>,
    },
    /// Commission a machine: it boots the ephemeral environment and reports its hardware.
    Commission {
        /// Its MAC address.
        mac: String,
    },
    /// Deploy an allocated machine: it boots the ephemeral environment, which writes the OS
    /// image to its disk; it then runs from its disk with the addresses IPAM gave it.
    Deploy {
        /// Its MAC address.
        mac: String,
        /// The OS image's name (debian); default any imported for its architecture.
        #[arg(long)]
        os: Option<String>,
        /// The release (bookworm); default the newest imported.
        #[arg(long)]
        release: Option<String>,
        /// A file of cloud-init user data (sent base64-encoded).
        #[arg(long)]
        user_data: Option<std::path::PathBuf>,
    },
    /// A machine's interfaces and links (the topology document's `[[machines]]` form, as JSON).
    Interfaces {
        /// Its MAC address.
        mac: String,
    },
    /// Replace a machine's interfaces with a JSON file of the form `interfaces` prints.
    SetInterfaces {
        /// Its MAC address.
        mac: String,
        /// The file.
        file: std::path::PathBuf,
    },
    /// The network configuration a machine's deployed system gets (YAML).
    Netconfig {
        /// Its MAC address.
        mac: String,
        /// v2 (netplan, the default) or v1.
        #[arg(long)]
        format: Option<String>,
    },
    /// Imported boot resources.
    BootResources,
    /// Import a boot resource from a directory on the controller's host (admin).
    ImportBootResource {
        /// The directory holding manifest.json, the kernel and the initrd.
        dir: String,
    },
    /// Remove a rack: its credential stops working at once (admin).
    RemoveRack {
        /// Its name.
        name: String,
    },
    /// List machines.
    Machines {
        /// Only those in this zone.
        #[arg(long)]
        zone: Option<String>,
        /// Only those with this status (ready, allocated...).
        #[arg(long)]
        status: Option<String>,
        /// Only those with this tag (repeat: every one).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Allocate the smallest Ready machine meeting every constraint.
    Allocate(Box<AllocateArgs>),
    /// Make a zone (admin).
    ZoneCreate {
        /// Its name.
        name: String,
        /// What it is.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a zone no machine is in (admin).
    ZoneDelete {
        /// Its name.
        name: String,
    },
    /// Make a DNS domain (admin).
    DomainCreate {
        /// Its name (`example.org`).
        name: String,
        /// Not answered by the controller's DNS.
        #[arg(long)]
        non_authoritative: bool,
        /// Its records' TTL in seconds.
        #[arg(long)]
        ttl: Option<u32>,
    },
    /// Change a DNS domain (admin).
    DomainUpdate {
        /// Its name.
        name: String,
        /// Whether the controller's DNS answers for it.
        #[arg(long)]
        authoritative: Option<bool>,
        /// Its records' TTL in seconds.
        #[arg(long)]
        ttl: Option<u32>,
    },
    /// Delete a DNS domain no machine is in (admin).
    DomainDelete {
        /// Its name.
        name: String,
    },
    /// Put a machine in a DNS domain (admin).
    SetDomain {
        /// Its MAC address.
        mac: String,
        /// The domain.
        domain: String,
    },
    /// Put a machine in a zone (admin).
    SetZone {
        /// Its MAC address.
        mac: String,
        /// The zone.
        zone: String,
    },
    /// Add tags to a machine (admin).
    Tag {
        /// Its MAC address.
        mac: String,
        /// The tags.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Remove tags from a machine (admin).
    Untag {
        /// Its MAC address.
        mac: String,
        /// The tags.
        #[arg(required = true)]
        tags: Vec<String>,
    },
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
    /// DNS domains.
    Domains,
    /// Neighbours seen by discovery.
    Discoveries {
        /// Only those whose MAC, address or both are unknown: mac, ip or both.
        #[arg(long)]
        unknown: Option<String>,
    },
    /// Devices, and converting and clearing discoveries.
    #[command(flatten)]
    Devices(Box<DeviceCommand>),
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
    /// Release a machine (MAC: back to Ready) or a reservation (IP address).
    Release {
        /// The machine's MAC, or the address.
        #[arg(value_name = "MAC|IP")]
        target: String,
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

/// What `allocate` asks for: every constraint ANDed.
#[derive(Debug, clap::Args)]
pub struct AllocateArgs {
    /// In this zone.
    #[arg(long)]
    pub zone: Option<String>,
    /// Not in this zone (repeatable).
    #[arg(long = "not-in-zone")]
    pub not_in_zone: Vec<String>,
    /// This architecture (`amd64`, `amd64/generic`).
    #[arg(long)]
    pub arch: Option<String>,
    /// At least this many CPUs.
    #[arg(long)]
    pub cpu_count: Option<u32>,
    /// At least this much memory, in MiB.
    #[arg(long)]
    pub mem: Option<u64>,
    /// With this tag (repeatable: every one).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Without this tag (repeatable).
    #[arg(long = "not-tag")]
    pub not_tags: Vec<String>,
    /// This host name.
    #[arg(long)]
    pub hostname: Option<String>,
    /// On this subnet: a CIDR or an id (repeatable).
    #[arg(long = "subnet")]
    pub subnets: Vec<String>,
    /// On this VLAN: an id, `vid:N` or a name (repeatable).
    #[arg(long = "vlan")]
    pub vlans: Vec<String>,
    /// On this fabric: a name or an id (repeatable).
    #[arg(long = "fabric")]
    pub fabrics: Vec<String>,
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

/// `text` for a query string: unreserved characters as they are, the rest percent-encoded.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn run(args: &CliArgs) -> Result<String, String> {
    let profile = read_profile();
    if matches!(args.command, Command::Logout) {
        let path = profile_path().ok_or("no profile location: set MAAS_PROFILE or HOME")?;
        return match std::fs::remove_file(&path) {
            Ok(()) => Ok(format!("removed {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("no profile".into()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        };
    }
    let api = args
        .api
        .clone()
        .or_else(|| profile.api.clone())
        .unwrap_or_else(|| "http://127.0.0.1:5240".into());
    let api = api.trim_end_matches('/');
    let ca = args.ca.clone().or_else(|| profile.ca.clone());
    let fingerprint = args
        .fingerprint
        .clone()
        .or_else(|| profile.fingerprint.clone());
    let token = if matches!(args.command, Command::Login) {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("reading the token from standard input: {e}"))?;
        Some(line.trim().to_string())
    } else {
        std::env::var("MAAS_TOKEN")
            .ok()
            .or_else(|| profile.token.clone())
    };
    let trust = match (&ca, &fingerprint) {
        (Some(ca), _) => Some(crate::tls::RegionTrust::Ca(ca.clone())),
        (None, Some(f)) => Some(crate::tls::RegionTrust::Fingerprint(
            crate::tls::parse_fingerprint(f).map_err(|e| e.to_string())?,
        )),
        (None, None) => None,
    };
    let connector = crate::tls::connector(trust.as_ref(), None).map_err(|e| e.to_string())?;
    let call = request(&args.command)?;
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let uri = format!("{api}{}", call.path);
    let mut request = Request::builder().method(call.method).uri(&uri);
    if let Some(token) = &token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
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
            .map_err(|e| format!("{uri}: {} (is the controller running?)", error_chain(&e)))?;
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
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.into_owned());
        let hint = if status == hyper::StatusCode::UNAUTHORIZED && token.is_none() {
            " (set MAAS_TOKEN or run `cli login`)"
        } else {
            ""
        };
        return Err(format!("{status}: {message}{hint}"));
    }
    if matches!(args.command, Command::Login) {
        let path = write_profile(&Profile {
            api: Some(api.to_string()),
            token,
            ca,
            fingerprint,
        })?;
        return Ok(format!(
            "{}\nkept in {}",
            pretty.unwrap_or_default(),
            path.display()
        ));
    }
    Ok(pretty.unwrap_or_else(|| text.trim_end().to_string()))
}

/// An error and its sources, on one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

#[cfg(test)]
mod tests;
