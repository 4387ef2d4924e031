//! The `discover` example against real ARP, NDP and mDNS speakers, each test in network
//! namespaces of its own: iputils arping (requests, gratuitous ARP, duplicate address probes),
//! the Linux kernel's own neighbour discovery (ping6, DAD when an address is added, VLAN
//! links), avahi-daemon and python-zeroconf. The example captures on a bridge the hosts are
//! plugged into, and every test checks its JSON events.
//!
//! Needs root and the peers `scripts/setup.sh` installs; a test without them prints why and
//! passes. Each test uses namespaces (`maas-disc<N>-*`) and subnets (`10.77.(130+N).0/24`,
//! `fd77:(130+N)::/64`) of its own, so they run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::discovery::{LIFETIME, Lan, is};
use support::netns::{Daemon, Scratch, run_bounded};
use support::{can_run, which};

/// The bound on every wait for an event.
const WAIT: Duration = Duration::from_secs(15);

fn arping(lan: &Lan, host: u8, args: &[&str]) {
    let mut cmd = lan.host(host).command("arping", LIFETIME);
    cmd.args(["-I", "eth0"]).args(args);
    // arping -D exits 1 when the address is in use, and plain requests to an address nobody
    // has exit 1 too: the status is not what these tests check, the observer's events are.
    let (lines, status) = run_bounded("arping", cmd, Duration::from_secs(10));
    assert!(status.is_some(), "arping hung: {lines:?}");
}

fn wait(daemon: &Daemon, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    daemon
        .wait_event(WAIT, pred)
        .unwrap_or_else(|| panic!("no {what}\n{}", daemon.transcript()))
}

#[test]
fn arping_requests_gratuitous_probes_and_moves() {
    if !can_run("arping_requests_gratuitous_probes_and_moves", &["arping"]) {
        return;
    }
    let lan = Lan::new(0, 3);
    let (a, b) = (lan.v4(10), lan.v4(11));
    lan.host(1)
        .ip(&["addr", "add", &format!("{a}/24"), "dev", "eth0"]);
    lan.host(2)
        .ip(&["addr", "add", &format!("{b}/24"), "dev", "eth0"]);
    let discover = lan.discover(&["--conflict-window", "5"]);

    // A request from host 1: its sender address is bound to its MAC.
    arping(&lan, 1, &["-c", "2", "-w", "3", &b]);
    let e = wait(&discover, "NEW for the requester", |e| is(e, "NEW", &a));
    assert_eq!(e["mac"], Lan::mac(0, 1));
    assert_eq!(e["vid"], 0);
    assert_eq!(e["interface"], "br0");
    assert!(e["first_seen"].as_u64().unwrap() > 1_700_000_000);

    // Gratuitous ARP from host 2.
    arping(&lan, 2, &["-U", "-c", "2", "-w", "3", &b]);
    let e = wait(&discover, "NEW for the gratuitous ARP", |e| {
        is(e, "NEW", &b)
    });
    assert_eq!(e["mac"], Lan::mac(0, 2));

    // Host 3 probes for host 1's address: a claim for an address in use.
    arping(&lan, 3, &["-D", "-c", "2", "-w", "3", &a]);
    let e = wait(&discover, "CONFLICT for the probe", |e| {
        is(e, "CONFLICT", &a)
    });
    assert_eq!(e["mac"], Lan::mac(0, 3));
    assert_eq!(e["previous_mac"], Lan::mac(0, 1));
    // The probe did not bind the address to the prober.
    assert!(
        !discover
            .events()
            .iter()
            .any(|e| e["ip"] == "0.0.0.0" || (e["event"] == "MOVED" && e["ip"] == a)),
        "{}",
        discover.transcript()
    );

    // Host 1 gets another MAC and announces itself: MOVED, with the MAC before.
    let moved = "52:54:00:77:82:99";
    let h1 = lan.host(1);
    h1.ip(&["link", "set", "eth0", "address", moved]);
    arping(&lan, 1, &["-U", "-c", "2", "-w", "3", &a]);
    let e = wait(&discover, "MOVED", |e| is(e, "MOVED", &a));
    assert_eq!(e["mac"], moved);
    assert_eq!(e["previous_mac"], Lan::mac(0, 1));

    // And back: FLIP_FLOP.
    h1.ip(&["link", "set", "eth0", "address", &Lan::mac(0, 1)]);
    arping(&lan, 1, &["-U", "-c", "2", "-w", "3", &a]);
    let e = wait(&discover, "FLIP_FLOP", |e| is(e, "FLIP_FLOP", &a));
    assert_eq!(e["mac"], Lan::mac(0, 1));
    assert_eq!(e["previous_mac"], moved);
}

/// Sends a gratuitous ARP for `ip` from `mac` with an 802.1Q tag `vid` out of `dev`, through
/// a raw socket from Python: for kernels built without 802.1Q support, where no vlan link can
/// be made. The encoding is the test's own, independent of the crate under test.
const INJECT_TAGGED_ARP: &str = r"
import socket, struct, sys
dev, mac, ip, vid = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', '')), socket.inet_aton(sys.argv[3]), int(sys.argv[4])
arp = struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1, mac, ip, bytes(6), ip)
frame = b'\xff' * 6 + mac + struct.pack('!HHH', 0x8100, vid, 0x0806) + arp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
for _ in range(2):
    s.send(frame.ljust(64, b'\0'))
";

#[test]
fn vlan_link_carries_its_vid() {
    if !can_run("vlan_link_carries_its_vid", &["arping", "python3"]) {
        return;
    }
    let lan = Lan::new(1, 1);
    let h = lan.host(1);
    let (tagged, untagged) = (lan.v4(42), lan.v4(10));
    h.ip(&["addr", "add", &format!("{untagged}/32"), "dev", "eth0"]);
    let discover = lan.discover(&[]);
    let vlan_link = Command::new("ip")
        .args(["-n", &format!("maas-disc{}-h1", lan.n)])
        .args([
            "link", "add", "link", "eth0", "name", "eth0.42", "type", "vlan", "id", "42",
        ])
        .output()
        .unwrap();
    if vlan_link.status.success() {
        h.ip(&["link", "set", "eth0.42", "up"]);
        h.ip(&["addr", "add", &format!("{tagged}/24"), "dev", "eth0.42"]);
        let mut cmd = h.command("arping", LIFETIME);
        cmd.args(["-I", "eth0.42", "-U", "-c", "2", "-w", "3", &tagged]);
        run_bounded("arping", cmd, Duration::from_secs(10));
    } else {
        eprintln!(
            "vlan_link_carries_its_vid: no vlan link ({}); sending tagged frames from a raw socket",
            String::from_utf8_lossy(&vlan_link.stderr).trim()
        );
        let mut cmd = h.command(which("python3").unwrap(), LIFETIME);
        cmd.args([
            "-c",
            INJECT_TAGGED_ARP,
            "eth0",
            &Lan::mac(1, 1),
            &tagged,
            "42",
        ]);
        let (lines, status) = run_bounded("inject", cmd, Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{lines:?}");
    }
    arping(&lan, 1, &["-U", "-c", "2", "-w", "3", &untagged]);
    let e = wait(&discover, "NEW on VLAN 42", |e| is(e, "NEW", &tagged));
    assert_eq!(e["vid"], 42);
    assert_eq!(e["mac"], Lan::mac(1, 1));
    let e = wait(&discover, "NEW untagged", |e| is(e, "NEW", &untagged));
    assert_eq!(e["vid"], 0);
    // The tagged address is not also seen untagged.
    assert!(
        !discover
            .events()
            .iter()
            .any(|e| e["ip"] == tagged.as_str() && e["vid"] != 42),
        "{}",
        discover.transcript()
    );
}

#[test]
fn ipv6_hosts_appear_through_ndp() {
    if !can_run("ipv6_hosts_appear_through_ndp", &["ping"]) {
        return;
    }
    let lan = Lan::new(2, 3);
    let discover = lan.discover(&[]);
    let (a, b) = (lan.v6(0xa), lan.v6(0xb));
    // Host 2 adds its address with duplicate address detection, and announces it when DAD
    // is over (ndisc_notify): an unsolicited advertisement.
    let h2 = lan.host(2);
    h2.sysctl("net.ipv6.conf.eth0.accept_dad", "1");
    h2.sysctl("net.ipv6.conf.eth0.ndisc_notify", "1");
    h2.ip(&["addr", "add", &format!("{b}/64"), "dev", "eth0"]);
    let e = wait(&discover, "NEW from DAD then announcement", |e| {
        is(e, "NEW", &b)
    });
    assert_eq!(e["mac"], Lan::mac(2, 2));

    // Host 1 pings host 2: its solicitation carries its link-layer address.
    let h1 = lan.host(1);
    h1.ip(&["addr", "add", &format!("{a}/64"), "dev", "eth0"]);
    let mut ping = h1.command("ping", LIFETIME);
    ping.args(["-6", "-c", "2", "-W", "2", &b]);
    let (lines, status) = run_bounded("ping", ping, Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "ping6 failed: {lines:?}"
    );
    let e = wait(&discover, "NEW from the solicitation", |e| is(e, "NEW", &a));
    assert_eq!(e["mac"], Lan::mac(2, 1));

    // Host 3 tries host 2's address: its DAD probe conflicts.
    let h3 = lan.host(3);
    h3.sysctl("net.ipv6.conf.eth0.accept_dad", "1");
    h3.ip(&["addr", "add", &format!("{b}/64"), "dev", "eth0"]);
    let e = wait(&discover, "CONFLICT from DAD", |e| is(e, "CONFLICT", &b));
    assert_eq!(e["mac"], Lan::mac(2, 3));
    assert_eq!(e["previous_mac"], Lan::mac(2, 2));
}

/// The system Python with the zeroconf module, if there is one.
fn zeroconf_python() -> Option<&'static str> {
    let python = "/usr/bin/python3";
    Command::new(python)
        .args(["-c", "import zeroconf"])
        .status()
        .ok()
        .filter(std::process::ExitStatus::success)
        .map(|_| python)
}

#[test]
fn zeroconf_host_name_arrives() {
    if !can_run("zeroconf_host_name_arrives", &[]) {
        return;
    }
    let Some(python) = zeroconf_python() else {
        eprintln!(
            "skipping zeroconf_host_name_arrives: no python3 zeroconf (run scripts/setup.sh)"
        );
        return;
    };
    let lan = Lan::new(3, 1);
    let ip = lan.v4(20);
    let h = lan.host(1);
    h.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    h.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);
    let discover = lan.discover(&[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/discovery/zc-publish.py");
    let mut cmd = h.command(python, LIFETIME);
    cmd.arg(&script).args([&ip, "8"]);
    let _publisher = Daemon::spawn("zc-publish", cmd);
    let e = wait(&discover, "HOSTNAME from zeroconf", |e| {
        is(e, "HOSTNAME", &ip)
    });
    assert_eq!(e["hostname"], "node-b");
    assert_eq!(e["mac"], Lan::mac(3, 1));
}

#[test]
fn avahi_host_name_arrives() {
    if !can_run("avahi_host_name_arrives", &["avahi-daemon"]) {
        return;
    }
    let lan = Lan::new(4, 1);
    let ip = lan.v4(30);
    let h = lan.host(1);
    h.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    h.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);
    let discover = lan.discover(&[]);
    let scratch = Scratch::new("avahi");
    let conf = scratch.join("avahi.conf");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/discovery/avahi.conf"),
        &conf,
    )
    .unwrap();
    let mut cmd = h.command(which("avahi-daemon").unwrap(), LIFETIME);
    cmd.arg("-f")
        .arg(&conf)
        .args(["--no-drop-root", "--no-chroot", "--no-rlimits"]);
    let mut avahi = Daemon::spawn("avahi-daemon", cmd);
    let e = discover.wait_event(WAIT, |e| is(e, "HOSTNAME", &ip));
    let transcript = avahi.transcript();
    avahi.stop("TERM", Duration::from_secs(3));
    let e = e.unwrap_or_else(|| panic!("no HOSTNAME\n{}\n{transcript}", discover.transcript()));
    assert_eq!(e["hostname"], "node-a");
    assert_eq!(e["mac"], Lan::mac(4, 1));
}

#[test]
fn scan_of_a_24_finds_exactly_the_live_hosts() {
    if !can_run("scan_of_a_24_finds_exactly_the_live_hosts", &[]) {
        return;
    }
    let lan = Lan::new(5, 3);
    let live: BTreeSet<String> = [10u8, 77, 200].iter().map(|&l| lan.v4(l)).collect();
    for (i, ip) in live.iter().enumerate() {
        let host = lan.host(u8::try_from(i + 1).unwrap());
        host.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    }
    let net = format!("{}/24", lan.v4(0));
    let discover = lan.discover(&["--scan", &net, "--rate", "1000"]);
    let done = wait(&discover, "SCAN_DONE", |e| e["event"] == "SCAN_DONE");
    assert_eq!(done["targets"], 254);
    let answered: BTreeSet<String> = discover
        .events()
        .iter()
        .filter(|e| e["event"] == "SCAN_ANSWER")
        .map(|e| e["ip"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(answered, live, "{}", discover.transcript());
    for (i, ip) in live.iter().enumerate() {
        let answer = discover
            .events()
            .into_iter()
            .find(|e| e["event"] == "SCAN_ANSWER" && e["ip"] == ip.as_str())
            .unwrap();
        assert_eq!(answer["mac"], Lan::mac(5, u8::try_from(i + 1).unwrap()));
    }
    assert_eq!(done["answered"], 3);
}

#[test]
fn without_cap_net_raw_the_error_says_so() {
    if !can_run("without_cap_net_raw_the_error_says_so", &["setpriv"]) {
        return;
    }
    let lan = Lan::new(6, 0);
    // A copy anybody may run, wherever the build tree is.
    let scratch = Scratch::new("nocap");
    let binary = scratch.join("discover");
    std::fs::copy(support::discovery::discover_binary(), &binary).unwrap();
    let mut cmd = lan.obs.command("setpriv", LIFETIME);
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(&binary)
    .args(["--interface", "br0"]);
    let (lines, status) = run_bounded("discover", cmd, Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("needs CAP_NET_RAW")),
        "{lines:?}"
    );
}

#[test]
fn ndp_scan_finds_the_ipv6_hosts() {
    if !can_run("ndp_scan_finds_the_ipv6_hosts", &[]) {
        return;
    }
    let lan = Lan::new(7, 2);
    let live: BTreeSet<String> = [0xa, 0x7b].iter().map(|&l| lan.v6(l)).collect();
    for (i, ip) in live.iter().enumerate() {
        let host = lan.host(u8::try_from(i + 1).unwrap());
        host.ip(&["addr", "add", &format!("{ip}/64"), "dev", "eth0"]);
    }
    let net = format!("{}/120", lan.v6(0));
    let discover = lan.discover(&["--scan", &net, "--rate", "1000"]);
    let done = wait(&discover, "SCAN_DONE", |e| e["event"] == "SCAN_DONE");
    assert_eq!(done["targets"], 256);
    let answered: BTreeSet<String> = discover
        .events()
        .iter()
        .filter(|e| e["event"] == "SCAN_ANSWER")
        .map(|e| e["ip"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(answered, live, "{}", discover.transcript());
    // The answers are advertisements: the hosts are in the table too.
    for ip in &live {
        wait(&discover, "NEW from the answer", |e| is(e, "NEW", ip));
    }
}
