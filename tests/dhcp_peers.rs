//! The `dhcpd` example against real DHCP clients and PXE firmware, each test in network
//! namespaces of its own.
//!
//! Clients: ISC dhclient (v4 and v6), busybox udhcpc (plain and posing as BIOS, UEFI x64 and
//! arm64 PXE, iPXE and UEFI HTTP boot), dhcpcd, perfdhcp (as a relay; also the load for the
//! durability test), and QEMU firmware (iPXE on BIOS, edk2's own PXE on UEFI), also in
//! ProxyDHCP mode beside dnsmasq as the address server. Every test checks the lease and the
//! boot answer from the client's side and in the server's JSON events.
//!
//! Needs root and the peers `scripts/setup.sh` installs; a test without them prints why and
//! passes. Each test uses namespaces and subnets of its own (in `10.77.0.0/16` and
//! `fd77::/16`), so they run in parallel.
//!
//! This file holds the shared harness; the tests are in `udhcpc`, `dhclient` (and dhcpcd),
//! `perfdhcp` (also the SIGKILL durability test) and `firmware` (QEMU).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "dhcp_peers/dhclient.rs"]
mod dhclient;
#[path = "dhcp_peers/firmware.rs"]
mod firmware;
#[path = "dhcp_peers/perfdhcp.rs"]
mod perfdhcp;
#[path = "dhcp_peers/udhcpc.rs"]
mod udhcpc;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::can_run;
use support::dhcp::{self, ACK};
use support::netns::{Daemon, Netns, Scratch, run_bounded};
use support::qemu::{self, Firmware};

/// The bound on every wait for a peer that answers in a few seconds.
const WAIT: Duration = Duration::from_secs(30);
/// The bound for QEMU firmware under TCG (10-25 s to the boot file request).
const WAIT_FIRMWARE: Duration = Duration::from_secs(120);
/// The hard limit on every process a test starts, in case the test itself dies.
const LIFETIME: Duration = Duration::from_secs(300);

/// The `dhcpd` example, built next to this test binary (`target/<profile>/examples`).
fn dhcpd_binary() -> PathBuf {
    support::example_binary("dhcpd")
}

/// A command run inside `ns`, killed after [`LIFETIME`] whatever happens to the test.
fn in_ns(ns: &Netns, program: impl AsRef<std::ffi::OsStr>) -> Command {
    ns.command(program, LIFETIME)
}

/// A server namespace and a client namespace joined by `vsrv`/`vcli`.
struct Lan {
    n: u8,
    srv: Netns,
    cli: Netns,
}

impl Lan {
    /// Test `n`'s namespaces: the server at `10.77.n.1/24` (and `fd77:n::1/64`), the client
    /// link up with MAC `52:54:00:77:n:10` and no address.
    fn new(n: u8) -> Self {
        let srv = Netns::new(&format!("maas-dhcp{n}-srv"));
        let cli = Netns::new(&format!("maas-dhcp{n}-cli"));
        srv.veth("vsrv", &cli, "vcli");
        srv.ip(&["addr", "add", &format!("10.77.{n}.1/24"), "dev", "vsrv"]);
        srv.ip(&["addr", "add", &format!("fd77:{n}::1/64"), "dev", "vsrv"]);
        srv.ip(&["link", "set", "vsrv", "up"]);
        cli.ip(&["link", "set", "vcli", "address", &Self::mac(n), "up"]);
        Self { n, srv, cli }
    }

    fn mac(n: u8) -> String {
        format!("52:54:00:77:{n:02x}:10")
    }

    fn server_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.n, 1)
    }

    /// The pool: `.100` to `.199`.
    fn range(&self) -> (Ipv4Addr, Ipv4Addr) {
        (
            Ipv4Addr::new(10, 77, self.n, 100),
            Ipv4Addr::new(10, 77, self.n, 199),
        )
    }

    /// Starts the server on `vsrv` for this LAN's subnet and pool, plus `extra` arguments.
    fn dhcpd(&self, extra: &[&str]) -> Daemon {
        let (lo, hi) = self.range();
        let mut args = vec![
            "--interface".to_string(),
            "vsrv".to_string(),
            "--subnet".to_string(),
            format!("10.77.{}.0/24", self.n),
            "--range".to_string(),
            format!("{lo}-{hi}"),
            "--gateway".to_string(),
            self.server_ip().to_string(),
        ];
        args.extend(extra.iter().map(ToString::to_string));
        start_dhcpd(&self.srv, &args)
    }
}

/// Starts the server in `ns` and waits until it says it is listening.
fn start_dhcpd(ns: &Netns, args: &[String]) -> Daemon {
    let mut cmd = in_ns(ns, dhcpd_binary());
    cmd.args(args).env("RUST_BACKTRACE", "1");
    let server = Daemon::spawn("dhcpd", cmd);
    let first = server.wait_event(WAIT, |_| true);
    assert!(
        first.is_some_and(|e| e["event"] == "listening"),
        "dhcpd did not start listening\n{}",
        server.transcript()
    );
    server
}

/// The server's `leased` event for `ip`, waiting for it.
fn leased_event(server: &Daemon, ip: IpAddr) -> Value {
    server
        .wait_event(WAIT, |e| e["event"] == "leased" && event_ip(e) == Some(ip))
        .unwrap_or_else(|| panic!("no leased event for {ip}\n{}", server.transcript()))
}

fn event_ip(event: &Value) -> Option<IpAddr> {
    event["ip"].as_str()?.parse().ok()
}

/// The boot file of an event, `None` when it has no boot answer.
fn event_boot_file(event: &Value) -> Option<&str> {
    event["boot"]["file"].as_str()
}

fn in_range(ip: Ipv4Addr, (lo, hi): (Ipv4Addr, Ipv4Addr)) -> bool {
    (lo..=hi).contains(&ip)
}

/// `key=value` from a line of `key=value` words.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn run_chmod_x(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
