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

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

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

// ---------------------------------------------------------------------------------------
// busybox udhcpc

/// What a udhcpc run got: the address, `siaddr` and the boot file.
struct UdhcpcLease {
    ip: Ipv4Addr,
    siaddr: String,
    boot_file: String,
}

/// Runs udhcpc once on `lan`'s client link with `extra` options and returns its lease.
fn udhcpc(lan: &Lan, scratch: &Scratch, extra: &[&str]) -> UdhcpcLease {
    let script = scratch.join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"udhcpc-script: $1 ip=$ip siaddr=$siaddr boot_file=$boot_file\"\n",
    )
    .unwrap();
    run_chmod_x(&script);
    let mut cmd = in_ns(&lan.cli, "busybox");
    cmd.args([
        "udhcpc", "-i", "vcli", "-n", "-q", "-f", "-t", "5", "-T", "1",
    ])
    .arg("-s")
    .arg(&script)
    .args(extra);
    let (lines, status) = run_bounded("udhcpc", cmd, WAIT);
    let bound = lines
        .iter()
        .find(|l| l.starts_with("udhcpc-script: bound"))
        .unwrap_or_else(|| panic!("udhcpc got no lease ({status:?}):\n{}", lines.join("\n")));
    // boot_file is the last field and may be empty.
    let boot_file = bound.split_once("boot_file=").unwrap().1.trim().to_string();
    UdhcpcLease {
        ip: field(bound, "ip").unwrap().parse().unwrap(),
        siaddr: field(bound, "siaddr").unwrap_or_default().to_string(),
        boot_file,
    }
}

fn run_chmod_x(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// One udhcpc case: the client gets an address in the pool and `expected` boot file (`""`:
/// none), and the server's event says the same.
fn udhcpc_case(test: &str, n: u8, extra: &[&str], choice: Option<&str>, expected: &str) {
    if !can_run(test, &["ip", "busybox"]) {
        return;
    }
    let scratch = Scratch::new(test);
    let lan = Lan::new(n);
    let server = lan.dhcpd(&[]);
    let lease = udhcpc(&lan, &scratch, extra);
    assert!(
        in_range(lease.ip, lan.range()),
        "{} not in the pool",
        lease.ip
    );
    assert_eq!(lease.boot_file, expected, "boot file seen by udhcpc");
    if !expected.is_empty() && !expected.starts_with("http") {
        assert_eq!(lease.siaddr, lan.server_ip().to_string(), "next server");
    }
    let event = leased_event(&server, IpAddr::V4(lease.ip));
    assert_eq!(
        event_boot_file(&event).unwrap_or_default(),
        expected,
        "{event}"
    );
    if let Some(choice) = choice {
        assert_eq!(event["boot"]["choice"], choice, "{event}");
    }
    assert_eq!(event["mac"], Lan::mac(n), "{event}");
}

#[test]
fn udhcpc_plain_client_gets_no_boot_file() {
    udhcpc_case("udhcpc_plain", 2, &[], None, "");
}

#[test]
fn udhcpc_bios_pxe_gets_lpxelinux() {
    udhcpc_case(
        "udhcpc_bios",
        3,
        &["-x", "0x5d:0000", "-V", "PXEClient:Arch:00000:UNDI:002001"],
        Some("pxe"),
        "lpxelinux.0",
    );
}

#[test]
fn udhcpc_uefi_x64_gets_bootx64() {
    udhcpc_case(
        "udhcpc_uefi_x64",
        4,
        &["-x", "0x5d:0007"],
        Some("uefi_amd64_tftp"),
        "bootx64.efi",
    );
}

#[test]
fn udhcpc_uefi_arm64_gets_bootaa64() {
    udhcpc_case(
        "udhcpc_uefi_arm64",
        5,
        &["-x", "0x5d:000b"],
        Some("uefi_arm64_tftp"),
        "bootaa64.efi",
    );
}

#[test]
fn udhcpc_ipxe_gets_http_script() {
    udhcpc_case(
        "udhcpc_ipxe",
        6,
        &["-x", "0x5d:0000", "-x", "0x4d:046950584500"],
        Some("ipxe"),
        "http://10.77.6.1:5248/ipxe.cfg",
    );
}

#[test]
fn udhcpc_uefi_http_boot_gets_url() {
    udhcpc_case(
        "udhcpc_http_boot",
        7,
        &["-V", "HTTPClient:Arch:00016:UNDI:003000", "-x", "0x5d:0010"],
        Some("uefi_amd64_http"),
        "http://10.77.7.1:5248/images/bootx64.efi",
    );
}

// ---------------------------------------------------------------------------------------
// ISC dhclient and dhcpcd

/// A dhclient script that prints what dhclient learnt instead of configuring anything (the
/// stock script would rewrite the host's resolv.conf).
fn dhclient_script(scratch: &Scratch) -> PathBuf {
    let script = scratch.join("dhclient.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"dhclient-script: reason=$reason ip=$new_ip_address \
         ip6=$new_ip6_address file=$new_filename url6=$new_dhcp6_bootfile_url\"\n",
    )
    .unwrap();
    run_chmod_x(&script);
    script
}

/// Starts dhclient in the foreground on `lan`'s client link with `extra` options first.
fn dhclient(lan: &Lan, scratch: &Scratch, extra: &[&str]) -> Daemon {
    let script = dhclient_script(scratch);
    let mut cmd = in_ns(&lan.cli, "dhclient");
    cmd.args(extra)
        .args(["-1", "-d", "-v", "-lf"])
        .arg(scratch.join("leases"))
        .arg("-pf")
        .arg(scratch.join("pid"))
        .arg("-sf")
        .arg(&script)
        .arg("vcli");
    Daemon::spawn("dhclient", cmd)
}

#[test]
fn dhclient_gets_a_lease() {
    if !can_run("dhclient", &["ip", "dhclient"]) {
        return;
    }
    let scratch = Scratch::new("dhclient");
    let lan = Lan::new(1);
    let server = lan.dhcpd(&[]);
    let client = dhclient(&lan, &scratch, &[]);
    let bound = client
        .wait_line(WAIT, |l| l.contains("reason=BOUND "))
        .unwrap_or_else(|| {
            panic!(
                "dhclient did not bind\n{}\n{}",
                client.transcript(),
                server.transcript()
            )
        });
    let ip: Ipv4Addr = field(&bound, "ip").unwrap().parse().unwrap();
    assert!(in_range(ip, lan.range()), "{ip} not in the pool");
    assert_eq!(
        field(&bound, "file"),
        Some(""),
        "a plain client gets no boot file"
    );
    let event = leased_event(&server, IpAddr::V4(ip));
    assert_eq!(event_boot_file(&event), None, "{event}");
    assert_eq!(event["mac"], Lan::mac(1), "{event}");
}

#[test]
fn dhcpcd_gets_a_lease() {
    if !can_run("dhcpcd", &["ip", "dhcpcd"]) {
        return;
    }
    let lan = Lan::new(8);
    let server = lan.dhcpd(&[]);
    let mut cmd = in_ns(&lan.cli, "dhcpcd");
    // No hooks script: the stock one would rewrite the host's resolv.conf.
    cmd.args([
        "-4",
        "-1",
        "-B",
        "-t",
        "15",
        "-f",
        "/dev/null",
        "-c",
        "/bin/true",
        "vcli",
    ]);
    let (lines, status) = run_bounded("dhcpcd", cmd, WAIT);
    let leased = lines
        .iter()
        .find_map(|l| l.split_once("leased ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("dhcpcd got no lease ({status:?}):\n{}", lines.join("\n")));
    let ip: Ipv4Addr = leased.parse().unwrap();
    assert!(in_range(ip, lan.range()), "{ip} not in the pool");
    let event = leased_event(&server, IpAddr::V4(ip));
    assert_eq!(event_boot_file(&event), None, "{event}");
}

/// DHCPv6: dhclient -6 gets an address from the v6 pool.
#[test]
fn dhclient6_gets_an_address() {
    if !can_run("dhclient6", &["ip", "dhclient"]) {
        return;
    }
    let scratch = Scratch::new("dhclient6");
    let lan = Lan::new(9);
    let server = lan.dhcpd(&[
        "--v6",
        "--subnet6",
        "fd77:9::/64",
        "--range6",
        "fd77:9::100-fd77:9::1ff",
    ]);
    lan.cli.wait_link_local("vcli", WAIT);
    let client = dhclient(&lan, &scratch, &["-6"]);
    let bound = client
        .wait_line(WAIT, |l| l.contains("reason=BOUND6"))
        .unwrap_or_else(|| {
            panic!(
                "dhclient -6 did not bind\n{}\n{}",
                client.transcript(),
                server.transcript()
            )
        });
    let ip: Ipv6Addr = field(&bound, "ip6").unwrap().parse().unwrap();
    let range: (Ipv6Addr, Ipv6Addr) = (
        "fd77:9::100".parse().unwrap(),
        "fd77:9::1ff".parse().unwrap(),
    );
    assert!((range.0..=range.1).contains(&ip), "{ip} not in the pool");
    leased_event(&server, IpAddr::V6(ip));
}

/// dhclient -6 posing as x86-64 UEFI PXE firmware (client architecture 7 in option 61, the
/// boot-file URL in its option request) gets an address and the URL of `bootx64.efi`.
#[test]
fn dhclient6_uefi_gets_the_boot_url() {
    if !can_run("dhclient6_uefi", &["ip", "dhclient"]) {
        return;
    }
    let scratch = Scratch::new("dhclient6-uefi");
    let lan = Lan::new(10);
    let server = lan.dhcpd(&[
        "--v6",
        "--subnet6",
        "fd77:10::/64",
        "--range6",
        "fd77:10::100-fd77:10::1ff",
    ]);
    lan.cli.wait_link_local("vcli", WAIT);
    let conf = scratch.join("dhclient6.conf");
    std::fs::write(
        &conf,
        "option dhcp6.client-arch-type code 61 = unsigned integer 16;\n\
         option dhcp6.bootfile-url code 59 = string;\n\
         send dhcp6.client-arch-type 7;\n\
         also request dhcp6.bootfile-url;\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let client = dhclient(&lan, &scratch, &["-6", "-cf", &conf]);
    let bound = client
        .wait_line(WAIT, |l| l.contains("reason=BOUND6"))
        .unwrap_or_else(|| {
            panic!(
                "dhclient -6 did not bind\n{}\n{}",
                client.transcript(),
                server.transcript()
            )
        });
    let ip: Ipv6Addr = field(&bound, "ip6").unwrap().parse().unwrap();
    assert!(
        ("fd77:10::100".parse::<Ipv6Addr>().unwrap()..="fd77:10::1ff".parse().unwrap())
            .contains(&ip),
        "{ip} not in the pool"
    );
    assert_eq!(
        field(&bound, "url6"),
        Some("tftp://[fd77:10::1]/bootx64.efi"),
        "{bound}"
    );
    let event = leased_event(&server, IpAddr::V6(ip));
    assert_eq!(
        event_boot_file(&event),
        Some("tftp://[fd77:10::1]/bootx64.efi"),
        "{event}"
    );
}

// ---------------------------------------------------------------------------------------
// perfdhcp

/// A LAN for perfdhcp, which acts as a relay: the relay (perfdhcp) at `10.77.n.2/22`, the
/// pool `10.77.(n+1).0` to `10.77.(n+3).254` (766 addresses), and the server at
/// `10.77.(200+n/4).1/24`, outside that subnet: only the relay address (`giaddr`) can select
/// the subnet the server leases from.
struct RelayLan {
    n: u8,
    srv: Netns,
    cli: Netns,
}

impl RelayLan {
    fn new(n: u8) -> Self {
        assert_eq!(n % 4, 0, "a /22 starts on a multiple of 4");
        let srv = Netns::new(&format!("maas-dhcp{n}-srv"));
        let cli = Netns::new(&format!("maas-dhcp{n}-cli"));
        let lan = Self { n, srv, cli };
        lan.srv.veth("vsrv", &lan.cli, "vcli");
        let server = format!("{}/24", lan.server_ip());
        lan.srv.ip(&["addr", "add", &server, "dev", "vsrv"]);
        lan.srv.ip(&["link", "set", "vsrv", "up"]);
        let relayed = format!("10.77.{n}.0/22");
        lan.srv.ip(&["route", "add", &relayed, "dev", "vsrv"]);
        let relay = format!("{}/22", lan.relay_ip());
        lan.cli.ip(&["addr", "add", &relay, "dev", "vcli"]);
        lan.cli.ip(&["link", "set", "vcli", "up"]);
        let server_net = format!("10.77.{}.0/24", 200 + n / 4);
        lan.cli.ip(&["route", "add", &server_net, "dev", "vcli"]);
        lan
    }

    fn server_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 200 + self.n / 4, 1)
    }

    fn relay_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.n, 2)
    }

    fn range(&self) -> (Ipv4Addr, Ipv4Addr) {
        (
            Ipv4Addr::new(10, 77, self.n + 1, 0),
            Ipv4Addr::new(10, 77, self.n + 3, 254),
        )
    }

    fn dhcpd_args(&self, state: Option<&std::path::Path>) -> Vec<String> {
        let (lo, hi) = self.range();
        let mut args = vec![
            "--interface".to_string(),
            "vsrv".to_string(),
            "--subnet".to_string(),
            format!("10.77.{}.0/22", self.n),
            "--range".to_string(),
            format!("{lo}-{hi}"),
            "--gateway".to_string(),
            self.relay_ip().to_string(),
        ];
        if let Some(state) = state {
            args.push("--state".to_string());
            args.push(state.display().to_string());
        }
        args
    }

    /// Captures the DHCP traffic the relay sees, to a pcap file; ready when it returns.
    fn capture(&self, file: &std::path::Path) -> Daemon {
        let mut cmd = in_ns(&self.cli, "tcpdump");
        cmd.args([
            "-i",
            "vcli",
            "-n",
            "-U",
            "--immediate-mode",
            "-s",
            "1500",
            "-w",
        ])
        .arg(file)
        .args(["udp", "port", "67"]);
        let capture = Daemon::spawn("tcpdump", cmd);
        assert!(
            capture
                .wait_line(WAIT, |l| l.contains("listening on"))
                .is_some(),
            "tcpdump did not start\n{}",
            capture.transcript()
        );
        capture
    }

    /// Starts perfdhcp relaying from this LAN's client side.
    fn perfdhcp(&self, args: &[&str]) -> Daemon {
        let mut cmd = in_ns(&self.cli, "perfdhcp");
        cmd.args(["-4", "-l", "vcli"]).args(args);
        Daemon::spawn("perfdhcp", cmd)
    }
}

/// The ACKs of a capture, stopping the capture once the file stops growing (tcpdump drops
/// what it has not written yet when it is stopped).
fn captured_acks(mut capture: Daemon, file: &std::path::Path) -> Vec<dhcp::Reply> {
    let size = || std::fs::metadata(file).map_or(0, |m| m.len());
    let mut last = size();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        if size() == last {
            break;
        }
        last = size();
    }
    capture.stop("INT", Duration::from_secs(5));
    read_acks(file)
}

/// The ACKs in a capture file so far.
fn read_acks(file: &std::path::Path) -> Vec<dhcp::Reply> {
    let bytes = std::fs::read(file).unwrap_or_default();
    dhcp::pcap_dhcp_payloads(&bytes)
        .iter()
        .filter_map(|p| dhcp::parse_reply(p))
        .filter(|r| r.kind == ACK)
        .collect()
}

/// A short perfdhcp run through the relay: nearly every exchange completes, every ACK is in
/// the pool with `boot_file`, and the server reports the leases.
fn perfdhcp_case(test: &str, n: u8, extra: &[&str], boot_file: Option<&str>) {
    if !can_run(test, &["ip", "perfdhcp", "tcpdump"]) {
        return;
    }
    let scratch = Scratch::new(test);
    let lan = RelayLan::new(n);
    let server = start_dhcpd(&lan.srv, &lan.dhcpd_args(None));
    let pcap = scratch.join("relay.pcap");
    let capture = lan.capture(&pcap);
    let mut args = vec!["-r", "200", "-R", "500", "-p", "3", "-W", "500000"];
    args.extend_from_slice(extra);
    let mut perf = lan.perfdhcp(&args);
    let status = perf.wait_exit(WAIT);
    let report = perf.lines();
    assert!(
        status.is_some(),
        "perfdhcp did not finish\n{}",
        perf.transcript()
    );

    let stats = dhcp::perfdhcp_stats(&report);
    let (Some(offers), Some(acks)) = (stats.get("DISCOVER-OFFER"), stats.get("REQUEST-ACK")) else {
        panic!("no perfdhcp statistics\n{}", perf.transcript());
    };
    assert!(offers.received > 0 && acks.received > 0, "{stats:?}");
    // Generous: this is a correctness test on a shared machine, not a benchmark.
    assert!(
        (offers.sent - acks.received) * 10 < offers.sent,
        "more than 10 % of exchanges unanswered: {stats:?}\n{}",
        server.transcript()
    );

    let acked = captured_acks(capture, &pcap);
    assert!(!acked.is_empty(), "no ACK captured");
    for ack in &acked {
        assert!(in_range(ack.yiaddr, lan.range()), "{ack:?} not in the pool");
        assert_eq!(ack.file, boot_file.unwrap_or(""), "{ack:?}");
    }

    // The server answered the relay: its leases are in the pool of the relay's subnet (the
    // server has no address there), and the relay saw each acknowledged.
    let leased: BTreeSet<Ipv4Addr> = server
        .events()
        .iter()
        .filter(|e| e["event"] == "leased")
        .map(|e| {
            assert_eq!(event_boot_file(e), boot_file, "{e}");
            match event_ip(e) {
                Some(IpAddr::V4(ip)) => ip,
                _ => panic!("bad leased event {e}"),
            }
        })
        .collect();
    let seen: BTreeSet<Ipv4Addr> = acked.iter().map(|a| a.yiaddr).collect();
    eprintln!(
        "{test}: {stats:?}; {} ACKs captured, {} leases reported",
        acked.len(),
        leased.len()
    );
    assert!(
        seen.is_subset(&leased),
        "ACKs without a leased event: {:?}",
        seen.difference(&leased).collect::<Vec<_>>()
    );
}

#[test]
fn perfdhcp_through_a_relay() {
    perfdhcp_case("perfdhcp_relay", 40, &[], None);
}

#[test]
fn perfdhcp_uefi_clients_get_bootx64() {
    perfdhcp_case("perfdhcp_pxe", 44, &["-o", "93,0007"], Some("bootx64.efi"));
}

// ---------------------------------------------------------------------------------------
// Durability

/// Environment variable that turns [`relay_probe_helper`] on.
const PROBE_ENV: &str = "MAAS_PEERS_PROBE";

/// Not a test by itself: [`acknowledged_leases_survive_sigkill`] runs this binary again
/// inside its client namespace with `MAAS_PEERS_PROBE=FILE` to send relayed DISCOVERs from
/// there (a test process cannot enter a namespace itself without unsafe code). FILE holds
/// the server, the relay address and one MAC per line; the offers go to FILE.out.
#[test]
fn relay_probe_helper() {
    let Some(file) = std::env::var_os(PROBE_ENV) else {
        return;
    };
    let file = PathBuf::from(file);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    let mut addrs = lines.next().unwrap().split_whitespace();
    let server: Ipv4Addr = addrs.next().unwrap().parse().unwrap();
    let relay: Ipv4Addr = addrs.next().unwrap().parse().unwrap();
    let clients: Vec<[u8; 6]> = lines.map(|l| dhcp::parse_mac(l).unwrap()).collect();
    let out: String = dhcp::probe_offers(server, relay, &clients)
        .iter()
        .map(|(mac, ip)| {
            let ip = ip.map_or_else(|| "none".to_string(), |ip| ip.to_string());
            format!("{} {ip}\n", dhcp::mac_text(mac))
        })
        .collect();
    std::fs::write(file.with_extension("out"), out).unwrap();
}

/// Asks the server, through the relay, what it offers each of `clients`.
fn probe(
    lan: &RelayLan,
    scratch: &Scratch,
    clients: &[[u8; 6]],
) -> Vec<([u8; 6], Option<Ipv4Addr>)> {
    let request = scratch.join("probe.txt");
    let mut text = format!("{} {}\n", lan.server_ip(), lan.relay_ip());
    for mac in clients {
        text.push_str(&dhcp::mac_text(mac));
        text.push('\n');
    }
    std::fs::write(&request, text).unwrap();
    let mut cmd = in_ns(&lan.cli, std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "relay_probe_helper",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(PROBE_ENV, &request);
    let (lines, status) = run_bounded("probe", cmd, Duration::from_secs(90));
    assert!(
        status.is_some_and(|s| s.success()),
        "probe failed\n{}",
        lines.join("\n")
    );
    std::fs::read_to_string(request.with_extension("out"))
        .unwrap()
        .lines()
        .map(|l| {
            let (mac, ip) = l.split_once(' ').unwrap();
            (dhcp::parse_mac(mac).unwrap(), ip.parse().ok())
        })
        .collect()
}

/// `kill -9` in the middle of a perfdhcp run loses no lease a client saw acknowledged: after
/// a restart on the same state file every such client is offered its address again, no
/// address was acknowledged to two clients, and a new client gets none of them.
#[test]
fn acknowledged_leases_survive_sigkill() {
    if !can_run("durability", &["ip", "perfdhcp", "tcpdump"]) {
        return;
    }
    let scratch = Scratch::new("durability");
    let lan = RelayLan::new(48);
    let state = scratch.join("state");
    let args = lan.dhcpd_args(Some(&state));
    let mut server = start_dhcpd(&lan.srv, &args);
    let pcap = scratch.join("acks.pcap");
    let capture = lan.capture(&pcap);
    // At most 500 clients, so the 766-address pool keeps room for the newcomers below.
    let mut perf = lan.perfdhcp(&["-r", "300", "-R", "100000", "-n", "500", "-p", "20"]);
    // Kill once clients hold a good number of ACKs (the capture is written packet by packet).
    let deadline = Instant::now() + WAIT;
    while read_acks(&pcap).len() < 150 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill_hard();
    perf.stop("TERM", Duration::from_secs(5));
    let acked = captured_acks(capture, &pcap);
    assert!(
        acked.len() >= 50,
        "only {} ACKs captured\n{}\n{}",
        acked.len(),
        server.transcript(),
        perf.transcript()
    );

    // Each client's last acknowledged address; no address acknowledged to two clients.
    let mut holder: BTreeMap<Ipv4Addr, [u8; 6]> = BTreeMap::new();
    let mut latest: BTreeMap<[u8; 6], Ipv4Addr> = BTreeMap::new();
    for ack in &acked {
        assert!(in_range(ack.yiaddr, lan.range()), "{ack:?}");
        let first = *holder.entry(ack.yiaddr).or_insert(ack.chaddr);
        assert_eq!(
            first, ack.chaddr,
            "{} acknowledged to two clients",
            ack.yiaddr
        );
        latest.insert(ack.chaddr, ack.yiaddr);
    }

    let restarted = start_dhcpd(&lan.srv, &args);
    // New clients first: a server that forgot the leases would hand them the lowest
    // addresses, which the first clients hold.
    let newcomers: Vec<[u8; 6]> = (0..32).map(|i| [0x52, 0x54, 0, 0x77, 0x48, i]).collect();
    for (mac, offered) in probe(&lan, &scratch, &newcomers) {
        let offered = offered.unwrap_or_else(|| {
            panic!(
                "no offer for new client {}\n{}",
                dhcp::mac_text(&mac),
                restarted.transcript()
            )
        });
        assert!(in_range(offered, lan.range()), "{offered}");
        assert!(
            !holder.contains_key(&offered),
            "{offered}, acknowledged to {} before the kill, offered to new client {}",
            dhcp::mac_text(&holder[&offered]),
            dhcp::mac_text(&mac)
        );
    }
    // Then the known clients, in the reverse of the order they came in (perfdhcp numbers
    // its clients in sequence): a server allocating afresh would not pair them up again.
    let mut clients: Vec<[u8; 6]> = latest.keys().copied().collect();
    clients.reverse();
    let mut lost = Vec::new();
    for (mac, offered) in probe(&lan, &scratch, &clients) {
        if offered != Some(latest[&mac]) {
            lost.push(format!(
                "{} had {} now offered {offered:?}",
                dhcp::mac_text(&mac),
                latest[&mac]
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged leases lost:\n{}\n{}",
        lost.len(),
        clients.len(),
        lost.join("\n"),
        restarted.transcript()
    );
    eprintln!(
        "durability: {} ACKs to {} clients before SIGKILL, all offered again after restart",
        acked.len(),
        clients.len()
    );
}

// ---------------------------------------------------------------------------------------
// QEMU firmware

/// A namespace with bridge `br0` (`10.77.n.1/24`, `fd77:n::1/64`) and `tap0` on it, the
/// server on the bridge, and a router advertisement on the link (iPXE otherwise waits for
/// IPv6 autoconfiguration to time out before it boots).
struct PxeLan {
    // Fields drop in order: the processes before their namespaces.
    server: Daemon,
    _ra: Option<Daemon>,
    /// ProxyDHCP only: the other server, which hands out the addresses.
    addresses: Option<AddressServer>,
    ns: Netns,
    /// The LAN's number: `10.77.n.0/24`.
    n: u8,
}

/// dnsmasq as a plain DHCP server (addresses, no boot information) in a namespace of its own
/// at `10.77.n.2`, on the PXE bridge through a veth, as the site's own DHCP server would be
/// where ProxyDHCP is used.
struct AddressServer {
    dnsmasq: Daemon,
    leases: PathBuf,
    _ns: Netns,
}

impl PxeLan {
    /// The server hands out addresses and boot answers.
    fn new(n: u8, scratch: &Scratch) -> Self {
        Self::start(n, scratch, false)
    }

    /// The server is a ProxyDHCP server (boot answers only, ports 67 and 4011) and dnsmasq,
    /// on another host of the link, hands out the addresses.
    fn proxy(n: u8, scratch: &Scratch) -> Self {
        Self::start(n, scratch, true)
    }

    fn start(n: u8, scratch: &Scratch, proxy: bool) -> Self {
        let ns = Netns::new(&format!("maas-dhcp{n}-pxe"));
        ns.bridge_with_tap("br0", &format!("10.77.{n}.1/24"), "tap0");
        ns.ip(&["addr", "add", &format!("fd77:{n}::1/64"), "dev", "br0"]);
        let addresses = proxy.then(|| {
            let other = Netns::new(&format!("maas-dhcp{n}-addr"));
            ns.veth("vaddr", &other, "vsrv");
            ns.ip(&["link", "set", "vaddr", "master", "br0"]);
            ns.ip(&["link", "set", "vaddr", "up"]);
            other.ip(&["addr", "add", &format!("10.77.{n}.2/24"), "dev", "vsrv"]);
            other.ip(&["link", "set", "vsrv", "up"]);
            let leases = scratch.join("dnsmasq.leases");
            let mut cmd = in_ns(&other, "dnsmasq");
            cmd.args([
                "-k",
                "--port=0",
                "--interface=vsrv",
                "--bind-interfaces",
                &format!("--dhcp-range=10.77.{n}.100,10.77.{n}.199,255.255.255.0,1h"),
                &format!("--dhcp-option=option:router,10.77.{n}.2"),
                &format!("--dhcp-leasefile={}", leases.display()),
                &format!("--pid-file={}", scratch.join("dnsmasq-dhcp.pid").display()),
                "--no-ping",
                "--log-dhcp",
                "--log-facility=-",
                "--user=root",
            ]);
            AddressServer {
                dnsmasq: Daemon::spawn("dnsmasq-dhcp", cmd),
                leases,
                _ns: other,
            }
        });
        let mut args = vec![
            "--interface".to_string(),
            "br0".into(),
            "--subnet".into(),
            format!("10.77.{n}.0/24"),
            "--range".into(),
            format!("10.77.{n}.100-10.77.{n}.199"),
            "--gateway".into(),
            format!("10.77.{n}.1"),
        ];
        if proxy {
            args.push("--proxy-dhcp".into());
        }
        let server = start_dhcpd(&ns, &args);
        let ra = qemu::router_advertisements(&ns, "br0", n, &scratch.join(""), LIFETIME);
        Self {
            server,
            _ra: ra,
            addresses,
            ns,
            n,
        }
    }

    /// The address the ProxyDHCP LAN's dnsmasq leased to `mac` (from its lease file, read
    /// until the lease appears, within [`WAIT`]), checked to lie in its range `.100-.199`.
    fn dnsmasq_lease(&self, mac: &str) -> Ipv4Addr {
        let other = self.addresses.as_ref().expect("a ProxyDHCP LAN");
        let deadline = Instant::now() + WAIT;
        let ip = loop {
            // "<expiry> <mac> <ip> <hostname> <client-id>" per line.
            let text = std::fs::read_to_string(&other.leases).unwrap_or_default();
            let found: Option<Ipv4Addr> = text.lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(1) == Some(&mac))
                    .then(|| fields.get(2)?.parse().ok())
                    .flatten()
            });
            match found {
                Some(ip) => break ip,
                None if Instant::now() >= deadline => {
                    panic!("no dnsmasq lease for {mac}\n{}", other.dnsmasq.transcript())
                }
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let n = self.n;
        let range = (Ipv4Addr::new(10, 77, n, 100), Ipv4Addr::new(10, 77, n, 199));
        assert!(in_range(ip, range), "{ip} outside dnsmasq's range");
        ip
    }

    /// What the ProxyDHCP LAN's dnsmasq said, for failure messages.
    fn dnsmasq_transcript(&self) -> String {
        self.addresses
            .as_ref()
            .map(|a| a.dnsmasq.transcript())
            .unwrap_or_default()
    }

    /// Records the TFTP read requests that reach the server's address.
    fn tftp_requests(&self) -> Daemon {
        let mut cmd = in_ns(&self.ns, "tcpdump");
        cmd.args(["-l", "-n", "-i", "br0", "udp", "dst", "port", "69"]);
        let tcpdump = Daemon::spawn("tcpdump", cmd);
        assert!(
            tcpdump
                .wait_line(WAIT, |l| l.contains("listening on"))
                .is_some(),
            "tcpdump did not start\n{}",
            tcpdump.transcript()
        );
        tcpdump
    }

    /// Records the first HTTP request line to port 5248 (MAAS's boot HTTP port).
    fn http_requests(&self) -> Daemon {
        let mut cmd = in_ns(&self.ns, "busybox");
        cmd.args(["nc", "-l", "-p", "5248"]);
        Daemon::spawn("http", cmd)
    }

    /// Boots a QEMU machine with `firmware` on `tap0`.
    fn boot(&self, firmware: Firmware, mac: &str, scratch: &Scratch) -> (Daemon, PathBuf) {
        let serial = scratch.join("serial");
        let vm = qemu::boot(
            &self.ns,
            firmware,
            mac,
            &serial,
            &scratch.join(""),
            LIFETIME,
        );
        (vm, serial)
    }
}

/// QEMU's BIOS boots its iPXE ROM, which asks for the iPXE script over HTTP.
#[test]
fn qemu_bios_ipxe_fetches_the_boot_script() {
    if !can_run("qemu_bios", &["ip", "qemu-system-x86_64", "busybox"]) {
        return;
    }
    if !qemu::installed("qemu_bios", Firmware::Bios) {
        return;
    }
    let scratch = Scratch::new("qemu_bios");
    let lan = PxeLan::new(20, &scratch);
    let http = lan.http_requests();
    let mac = "52:54:00:77:14:10";
    let (_vm, serial) = lan.boot(Firmware::Bios, mac, &scratch);
    let request = http
        .wait_line(WAIT_FIRMWARE, |l| l.starts_with("GET "))
        .unwrap_or_else(|| {
            panic!(
                "no HTTP request from iPXE\n{}\n{}",
                lan.server.transcript(),
                qemu::serial_text(&serial)
            )
        });
    let event = lan
        .server
        .wait_event(WAIT, |e| e["event"] == "leased" && e["mac"] == mac)
        .unwrap_or_else(|| panic!("no lease for the VM\n{}", lan.server.transcript()));
    eprintln!("qemu_bios: iPXE sent {request:?} after {event}");
    assert_eq!(event["boot"]["choice"], "ipxe", "{event}");
    let url = event_boot_file(&event).unwrap();
    assert_eq!(url, "http://10.77.20.1:5248/ipxe.cfg");
    assert_eq!(
        request.split_whitespace().nth(1),
        Some("/ipxe.cfg"),
        "{request}"
    );
    match event_ip(&event) {
        Some(IpAddr::V4(ip)) => assert!(in_range(
            ip,
            (
                Ipv4Addr::new(10, 77, 20, 100),
                Ipv4Addr::new(10, 77, 20, 199)
            )
        )),
        other => panic!("{other:?}"),
    }
}

/// OVMF's own PXE (edk2, no iPXE ROM) asks for bootx64.efi over TFTP.
#[test]
fn qemu_uefi_edk2_requests_bootx64() {
    if !can_run("qemu_uefi", &["ip", "qemu-system-x86_64", "tcpdump"]) {
        return;
    }
    if !qemu::installed("qemu_uefi", Firmware::Uefi) {
        return;
    }
    let scratch = Scratch::new("qemu_uefi");
    let lan = PxeLan::new(21, &scratch);
    let tftp = lan.tftp_requests();
    let mac = "52:54:00:77:15:30";
    let (_vm, serial) = lan.boot(Firmware::Uefi, mac, &scratch);
    let rrq = tftp
        .wait_line(WAIT_FIRMWARE, |l| l.contains("RRQ"))
        .unwrap_or_else(|| {
            panic!(
                "no TFTP request from edk2\n{}\n{}",
                lan.server.transcript(),
                qemu::serial_text(&serial)
            )
        });
    eprintln!("qemu_uefi: edk2 sent {rrq:?}");
    assert!(rrq.contains("RRQ \"bootx64.efi\""), "{rrq}");
    assert!(rrq.contains("> 10.77.21.1.69"), "{rrq}");
    let event = lan
        .server
        .wait_event(WAIT, |e| e["event"] == "leased" && e["mac"] == mac)
        .unwrap_or_else(|| panic!("no lease for the VM\n{}", lan.server.transcript()));
    assert_eq!(event["boot"]["choice"], "uefi_amd64_tftp", "{event}");
    assert_eq!(event_boot_file(&event), Some("bootx64.efi"), "{event}");
}

/// ProxyDHCP: dnsmasq on another host of the link hands out the address, the server only the
/// boot answer. QEMU's iPXE takes the address from one and the script URL from the other, and
/// fetches the script.
#[test]
fn qemu_bios_ipxe_boots_through_proxydhcp() {
    if !can_run(
        "qemu_bios_proxydhcp",
        &["ip", "qemu-system-x86_64", "busybox", "dnsmasq"],
    ) {
        return;
    }
    if !qemu::installed("qemu_bios_proxydhcp", Firmware::Bios) {
        return;
    }
    let scratch = Scratch::new("qemu_bios_proxydhcp");
    let lan = PxeLan::proxy(22, &scratch);
    let http = lan.http_requests();
    let mac = "52:54:00:77:16:10";
    let (_vm, serial) = lan.boot(Firmware::Bios, mac, &scratch);
    let request = http
        .wait_line(WAIT_FIRMWARE, |l| l.starts_with("GET "))
        .unwrap_or_else(|| {
            panic!(
                "no HTTP request from iPXE\n{}\n{}\n{}",
                lan.server.transcript(),
                lan.dnsmasq_transcript(),
                qemu::serial_text(&serial)
            )
        });
    assert_eq!(
        request.split_whitespace().nth(1),
        Some("/ipxe.cfg"),
        "{request}"
    );
    let answer = lan
        .server
        .wait_event(WAIT, |e| e["event"] == "proxy_answered" && e["mac"] == mac)
        .unwrap_or_else(|| panic!("no ProxyDHCP answer\n{}", lan.server.transcript()));
    assert_eq!(answer["boot"]["choice"], "ipxe", "{answer}");
    assert_eq!(
        event_boot_file(&answer),
        Some("http://10.77.22.1:5248/ipxe.cfg"),
        "{answer}"
    );
    // The address came from dnsmasq's range, and the server handed out none.
    let ip = lan.dnsmasq_lease(mac);
    let events = lan.server.events();
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "offered" || e["event"] == "leased"),
        "a ProxyDHCP server handed out an address\n{}",
        lan.server.transcript()
    );
    eprintln!("qemu_bios_proxydhcp: {ip} from dnsmasq, {answer}");
}

/// ProxyDHCP with edk2's own PXE: the address from dnsmasq, `bootx64.efi` over TFTP from the
/// ProxyDHCP server's answer.
#[test]
fn qemu_uefi_edk2_boots_through_proxydhcp() {
    if !can_run(
        "qemu_uefi_proxydhcp",
        &["ip", "qemu-system-x86_64", "tcpdump", "dnsmasq"],
    ) {
        return;
    }
    if !qemu::installed("qemu_uefi_proxydhcp", Firmware::Uefi) {
        return;
    }
    let scratch = Scratch::new("qemu_uefi_proxydhcp");
    let lan = PxeLan::proxy(23, &scratch);
    let tftp = lan.tftp_requests();
    let mac = "52:54:00:77:17:30";
    let (_vm, serial) = lan.boot(Firmware::Uefi, mac, &scratch);
    let rrq = tftp
        .wait_line(WAIT_FIRMWARE, |l| l.contains("RRQ"))
        .unwrap_or_else(|| {
            panic!(
                "no TFTP request from edk2\n{}\n{}\n{}",
                lan.server.transcript(),
                lan.dnsmasq_transcript(),
                qemu::serial_text(&serial)
            )
        });
    eprintln!("qemu_uefi_proxydhcp: edk2 sent {rrq:?}");
    assert!(rrq.contains("RRQ \"bootx64.efi\""), "{rrq}");
    assert!(rrq.contains("> 10.77.23.1.69"), "{rrq}");
    let answer = lan
        .server
        .wait_event(WAIT, |e| e["event"] == "proxy_answered" && e["mac"] == mac)
        .unwrap_or_else(|| panic!("no ProxyDHCP answer\n{}", lan.server.transcript()));
    assert_eq!(answer["boot"]["choice"], "uefi_amd64_tftp", "{answer}");
    let ip = lan.dnsmasq_lease(mac);
    // The TFTP request came from the address dnsmasq leased.
    assert!(rrq.contains(&format!("{ip}.")), "{rrq} not from {ip}");
}
