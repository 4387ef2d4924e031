//! The controller end to end against real peers, in network namespaces, with authentication
//! on: every API call presents a token (the first admin's, read from `<state_dir>/admin-token`
//! after the first start, or one made for a narrower role), racks enrol and then use their own
//! credential, and the API is HTTPS wherever it listens off loopback (or is told to).
//!
//! | module | what |
//! |---|---|
//! | `boot` | QEMU machines (BIOS, UEFI) the controller has never seen boot from it and keep their address across a kill; every boot URL served; DHCPv6; bounded enlistment |
//! | `cli` | the command line: tokens from `MAAS_TOKEN` or a profile, tokens made and revoked, the audit trail, the store held by a running controller |
//! | `power` | power through ipmi_sim and sushy-emulator, over HTTPS, with a viewer refused |
//! | `discovery` | discovery and the proxy |
//! | `dns` | the DNS server against dig (forward, reverse by zone kind, leases, AXFR, recursion, TCP fallback) and BIND as the forwarder |
//! | `racks` | a region over HTTPS and two racks that trust it (CA file, pinned fingerprint), each booting a machine; a rack with a wrong pin, a report off a rack's VLANs, a rack removed |
//! | `rack_autonomy` | a rack with two regions (the first dead) fails over; cut off from every region it renews leases, gives new clients only its block, restarts from its cache, and replays its queue when the region is back |
//! | `durability` | `kill -9` loses nothing acknowledged |
//! | `regions` | two regions on one PostgreSQL database and two racks under load: nothing given twice, nothing acknowledged lost; a region killed under load (failover), every region stopped (renewals queued, replayed) |
//! | `auth` | failed tokens slowed per source address |
//! | `web` | the web dashboard in headless Chromium: login, live updates, roles, CSRF, discoveries turned into devices, a booting QEMU machine shown as New, screenshots |
//!
//! The tests need root and the peers `scripts/setup.sh` installs; without them they print why
//! and pass. The command-line and enlistment tests run anywhere (loopback).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/support/mod.rs"]
mod support;

mod browser;

#[path = "peers/auth.rs"]
mod auth;
#[path = "peers/boot.rs"]
mod boot;
#[path = "peers/cli.rs"]
mod cli;
#[path = "peers/devices.rs"]
mod devices;
#[path = "peers/discovery.rs"]
mod discovery;
#[path = "peers/dns.rs"]
mod dns;
#[path = "peers/durability.rs"]
mod durability;
#[path = "peers/power.rs"]
mod power;
#[path = "peers/rack_autonomy.rs"]
mod rack_autonomy;
#[path = "peers/racks.rs"]
mod racks;
#[path = "peers/regions.rs"]
mod regions;
#[path = "peers/web.rs"]
mod web;

/// A throwaway PostgreSQL server (the address manager's tests' own).
#[path = "../../../maas-ipam/tests/integration/store/pg_server.rs"]
mod pg_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::existing;
use support::netns::{Daemon, Netns, Scratch, run_bounded};
use support::qemu;

const WAIT: Duration = Duration::from_secs(30);
const WAIT_FIRMWARE: Duration = Duration::from_secs(120);
const LIFETIME: Duration = Duration::from_secs(300);

/// The `maas-controller` binary cargo built for these tests.
fn controller_binary() -> PathBuf {
    existing(env!("CARGO_BIN_EXE_maas-controller"))
}

fn in_ns(ns: &Netns, program: impl AsRef<std::ffi::OsStr>) -> Command {
    ns.command(program, LIFETIME)
}

/// The controller's configuration for LAN `10.77.n.0/24` served on `br0`.
fn config(n: u8, state: &Path, extra: &str) -> String {
    format!(
        r##"
[controller]
state_dir = "{state}"
api = "127.0.0.1:5240"
boot_http = "0.0.0.0:5248"
ipxe_script = "#!ipxe\necho CONTROLLER-MARKER {{hostname}} {{mac}} {{status}}\nsleep 60\n"
{extra}

[dhcp]
interfaces = ["br0"]

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.{n}.0/24"
gateway_ip = "10.77.{n}.1"

[[ip_ranges]]
subnet = "10.77.{n}.0/24"
start = "10.77.{n}.100"
end = "10.77.{n}.199"
kind = "dynamic"
"##,
        state = state.display()
    )
}

/// LAN `10.77.n.0/24` (and `fd77:n::/64` with router advertisements) on bridge `br0` in a
/// namespace of its own, with `tap0` for a QEMU machine.
fn pxe_lan(n: u8, scratch: &Scratch) -> (Netns, Option<Daemon>) {
    let ns = Netns::new(&format!("maas-ctl{n}-lan"));
    ns.bridge_with_tap("br0", &format!("10.77.{n}.1/24"), "tap0");
    ns.ip(&["addr", "add", &format!("fd77:{n}::1/64"), "dev", "br0"]);
    let ra = qemu::router_advertisements(&ns, "br0", n, &scratch.join(""), LIFETIME);
    (ns, ra)
}

fn start_controller(ns: &Netns, config: &Path) -> Daemon {
    let mut cmd = in_ns(ns, controller_binary());
    cmd.arg("--config").arg(config).env("RUST_BACKTRACE", "1");
    let daemon = Daemon::spawn("controller", cmd);
    assert!(
        daemon
            .wait_event(WAIT, |e| e["event"] == "listening")
            .is_some(),
        "the controller did not start\n{}",
        daemon.transcript()
    );
    daemon
}

/// The `listening` line of a started controller.
fn listening(controller: &Daemon) -> Value {
    controller
        .events()
        .into_iter()
        .find(|e| e["event"] == "listening")
        .unwrap_or_else(|| panic!("no listening line\n{}", controller.transcript()))
}

/// The first admin's token, which the first start of a store without users writes to
/// `<state>/admin-token` (mode 0600).
fn admin_token(state: &Path) -> String {
    let path = state.join("admin-token");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim().to_string()
}

/// The rack protocol version racks send in `x-maas-protocol`.
const RACK_PROTOCOL: &str = "4";

/// What curl got back: the HTTP status (0: no answer), the body (as JSON too, `Null` when
/// it is not), two headers, curl's exit code, and its whole output for messages.
#[derive(Debug)]
struct Reply {
    status: u16,
    json: Value,
    text: String,
    retry_after: Option<String>,
    www_authenticate: Option<String>,
    exit: Option<i32>,
    output: String,
}

/// The line curl's `--write-out` adds after the body.
const STATUS_MARK: &str = "curl-status:";

/// One request with curl inside `ns`: `method` on `url`, with `args` (headers, `--cacert`...)
/// and a JSON `body` when given.
fn curl(ns: &Netns, method: &str, url: &str, args: &[String], body: Option<&str>) -> Reply {
    let mut cmd = in_ns(ns, "curl");
    cmd.args(["-sS", "--max-time", "60", "-X", method])
        .args(args);
    if let Some(body) = body {
        cmd.args([
            "-H",
            "content-type: application/json",
            "--data-binary",
            body,
        ]);
    }
    cmd.args([
        "-w",
        &format!(
            "\n{STATUS_MARK}%{{http_code}}|%header{{retry-after}}|%header{{www-authenticate}}\n"
        ),
    ])
    .arg(url);
    let (lines, exit) = run_bounded("curl", cmd, Duration::from_secs(90));
    let output = lines.join("\n");
    let mark = lines
        .iter()
        .find_map(|l| l.strip_prefix(STATUS_MARK))
        .unwrap_or_else(|| panic!("curl {method} {url}: no status line: {output}"));
    let mut fields = mark.split('|');
    let status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let header = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_string);
    let retry_after = header(fields.next());
    let www_authenticate = header(fields.next());
    let text = lines
        .iter()
        .filter(|l| !l.starts_with(STATUS_MARK))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string();
    Reply {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        retry_after,
        www_authenticate,
        exit: exit.and_then(|s| s.code()),
        output,
    }
}

/// A controller's API as seen from a namespace: its URL, the certificate to trust when it is
/// HTTPS, the token to present, and the source address to call from.
#[derive(Clone, Debug)]
struct Api<'a> {
    ns: &'a Netns,
    url: String,
    ca: Option<String>,
    token: Option<String>,
    source: Option<String>,
}

impl<'a> Api<'a> {
    /// The API `controller` announced in its `listening` line (`api_url`, and
    /// `tls_certificate` when HTTPS), called from `ns` with the first admin's token.
    fn of(ns: &'a Netns, controller: &Daemon) -> Self {
        let listening = listening(controller);
        let state = PathBuf::from(listening["state_dir"].as_str().unwrap());
        Self {
            ns,
            url: listening["api_url"].as_str().unwrap().to_string(),
            ca: listening["tls_certificate"].as_str().map(str::to_string),
            token: Some(admin_token(&state)),
            source: None,
        }
    }

    /// The API at `url` (plain HTTP), called from `ns` with `token`.
    fn of_url(ns: &'a Netns, url: &str, token: &str) -> Self {
        Self {
            ns,
            url: url.to_string(),
            ca: None,
            token: Some(token.to_string()),
            source: None,
        }
    }

    /// The same API with another token (or none).
    fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    /// The same API called from another namespace.
    fn seen_from<'b>(&self, ns: &'b Netns) -> Api<'b> {
        Api {
            ns,
            url: self.url.clone(),
            ca: self.ca.clone(),
            token: self.token.clone(),
            source: self.source.clone(),
        }
    }

    /// The same API called from source address `ip`.
    fn with_source(&self, ip: &str) -> Self {
        Self {
            source: Some(ip.to_string()),
            ..self.clone()
        }
    }

    /// `method` on `path` with the token, the extra `headers` and a JSON `body`.
    fn call_with(&self, method: &str, path: &str, body: Option<&str>, headers: &[String]) -> Reply {
        let mut args = Vec::new();
        if let Some(ca) = &self.ca {
            args.extend(["--cacert".to_string(), ca.clone()]);
        }
        if let Some(source) = &self.source {
            args.extend(["--interface".to_string(), source.clone()]);
        }
        if let Some(token) = &self.token {
            args.extend(["-H".to_string(), format!("authorization: Bearer {token}")]);
        }
        for header in headers {
            args.extend(["-H".to_string(), header.clone()]);
        }
        curl(self.ns, method, &format!("{}{path}", self.url), &args, body)
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.call_with(method, path, body, &[])
    }

    /// `method` on `path`: the JSON answer of a 2xx, else the test fails.
    fn send(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        let reply = self.call(method, path, body);
        assert!(
            (200..300).contains(&reply.status),
            "{method} {path}: {}",
            reply.output
        );
        reply.json
    }

    /// `GET` on `path`: the JSON answer, else the test fails.
    fn get(&self, path: &str) -> Value {
        self.send("GET", path, None)
    }

    /// A rack's call: its credential as the token, its name and the protocol version.
    fn rack_call(&self, rack: &str, method: &str, path: &str, body: Option<&str>) -> Reply {
        let headers = [
            format!("x-maas-rack: {rack}"),
            format!("x-maas-protocol: {RACK_PROTOCOL}"),
        ];
        self.call_with(method, path, body, &headers)
    }

    /// A new user `name` with `role`, made by this (admin) caller, and the API with a token
    /// of theirs.
    fn new_user(&self, name: &str, role: &str) -> Self {
        let user = self.send(
            "POST",
            "/api/v1/users",
            Some(&format!(r#"{{"name": "{name}", "role": "{role}"}}"#)),
        );
        assert_eq!(user["role"], role, "{user}");
        let token = self.send(
            "POST",
            "/api/v1/tokens",
            Some(&format!(r#"{{"user": "{name}", "description": "peers"}}"#)),
        );
        self.with_token(Some(token["token"].as_str().unwrap()))
    }
}

/// The line of the machine's serial console with the script's marker, once it shows (at
/// most `WAIT_FIRMWARE`); the test fails with `controller`'s output and the console if not.
fn marker_line(serial: &Path, controller: &Daemon) -> String {
    qemu::wait_serial(serial, "CONTROLLER-MARKER", WAIT_FIRMWARE).unwrap_or_else(|| {
        panic!(
            "the machine's script did not run\n{}\n{}",
            controller.transcript(),
            qemu::serial_text(serial)
        )
    })
}

/// A namespace `maas-ctl<n>-lan` with bridge `br0` holding `lan_cidr`, and a client namespace
/// `maas-ctl<n>-cli` joined to it (`vcli`, MAC `52:54:00:77:<n>:02`, address `client_cidr`),
/// links up.
fn client_lan(n: u8, lan_cidr: &str, client_cidr: &str) -> (Netns, Netns) {
    let lan = Netns::new(&format!("maas-ctl{n}-lan"));
    let client = Netns::new(&format!("maas-ctl{n}-cli"));
    lan.bridge("br0", &[lan_cidr]);
    lan.attach("br0", "vcl", &client, "vcli");
    client.ip(&["addr", "add", client_cidr, "dev", "vcli"]);
    let mac = format!("52:54:00:77:{n:02x}:02");
    client.ip(&["link", "set", "vcli", "address", &mac, "up"]);
    (lan, client)
}

/// The JSON lines of `daemon` whose `event` is `kind`.
fn events_named(daemon: &Daemon, kind: &str) -> Vec<Value> {
    daemon
        .events()
        .into_iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

/// A shell command run inside `ns` (`sh -c script`).
fn shell(ns: &Netns, script: &str) -> Command {
    let mut cmd = in_ns(ns, "sh");
    cmd.args(["-c", script]);
    cmd
}

/// A plain HTTP/1.1 `GET` of `path` from `addr`, with a bearer `token` when given: the status
/// code and the body.
fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let authorization =
        token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Whether `path` is readable and writable by its owner only.
fn owner_only(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600)
}
