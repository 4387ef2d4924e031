//! Discoveries of a real ARP peer turned into devices, with each IP assignment mode.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::can_run;
use crate::support::netns::{Daemon, Netns, Scratch, run_bounded};
use crate::{Api, WAIT, admin_token, config, controller_binary, in_ns, start_controller};

const N: u8 = 63;

/// A peer namespace on the controller's bridge announces itself with `arping` under four
/// identities (MAC and address); each shows as an unknown discovery (MAC and address both)
/// and is converted, in one call each, into a device: `static` with the discovered address,
/// `static` with the next free address of the subnet, `external` (through the CLI, named by
/// its reverse DNS name, which dnsmasq serves as the configured resolver) and
/// `dynamic`, after which the peer runs `busybox udhcpc` with that MAC against the
/// controller's DHCP and the device shows the lease's address. Each device resolves by name
/// through the controller's DNS (dig: A records in `maas` and in a `lab` domain made for it,
/// a PTR record, the dynamic one's lease). Afterwards none of them is unknown, each held
/// address is in /api/v1/ipaddresses with its kind and MAC, and deleting the devices frees
/// every one. About 10 s.
#[test]
fn discovered_arp_peers_become_devices_with_each_ip_assignment() {
    if !can_run(
        "controller_devices",
        &["ip", "curl", "arping", "busybox", "dnsmasq", "dig"],
    ) {
        return;
    }
    let started = Instant::now();
    let ctl = Netns::new(&format!("maas-ctl{N}-ctl"));
    let peer = Netns::new(&format!("maas-ctl{N}-peer"));
    ctl.bridge("br0", &[&format!("10.77.{N}.1/24")]);
    ctl.attach("br0", "p1", &peer, "eth0");
    peer.sysctl("net.ipv6.conf.eth0.disable_ipv6", "1");
    let scratch = Scratch::new("controller_devices");
    let config_path = scratch.join("controller.toml");
    // dnsmasq as the resolver the controller asks for reverse names (DNS only, loopback).
    let mut dns = in_ns(&ctl, "dnsmasq");
    dns.args([
        "-k",
        "--port=5300",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--log-queries",
        "--log-facility=-",
        "--user=root",
    ])
    .arg(format!(
        "--ptr-record=20.{N}.77.10.in-addr.arpa,pdu-ext.lab.example"
    ))
    .arg(format!(
        "--pid-file={}",
        scratch.join("dnsmasq.pid").display()
    ));
    let dns = Daemon::spawn("dnsmasq", dns);
    let extra = format!(
        "\n[discovery]\ninterfaces = [\"br0\"]\nscan_interval_secs = 0\n\
         reverse_dns = \"127.0.0.1:5300\"\n\n[dns]\nlisten = [\"10.77.{N}.1:53\"]\n\
         addresses = [\"10.77.{N}.1\"]\n"
    );
    std::fs::write(&config_path, config(N, &scratch.join("state"), &extra)).unwrap();
    let controller = start_controller(&ctl, &config_path);
    let api = Api::of(&ctl, &controller);
    let token = admin_token(&scratch.join("state"));

    // The peer as `mac` at `ip`, saying so on the wire until the controller lists it as unknown.
    let announce = |mac: &str, ip: &str| {
        peer.ip(&["link", "set", "eth0", "down"]);
        peer.ip(&["addr", "flush", "dev", "eth0"]);
        peer.ip(&["link", "set", "eth0", "address", mac]);
        peer.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        peer.ip(&["link", "set", "eth0", "up"]);
        let deadline = Instant::now() + WAIT;
        loop {
            let mut arping = in_ns(&peer, "arping");
            arping.args(["-c", "2", "-w", "3", "-I", "eth0", &format!("10.77.{N}.1")]);
            let _ = run_bounded("arping", arping, Duration::from_secs(10));
            let unknown = api.get("/api/v1/discoveries?unknown=both");
            if listed(&unknown, mac, ip) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{mac} at {ip} never listed as unknown: {unknown}\n{}",
                controller.transcript()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let convert = |body: &str| -> Value {
        let made = api.send("POST", "/api/v1/discoveries/convert", Some(body));
        made["device"].clone()
    };
    let not_unknown = |mac: &str, ip: &str| {
        for filter in ["mac", "both"] {
            let list = api.get(&format!("/api/v1/discoveries?unknown={filter}"));
            assert!(
                !listed(&list, mac, ip),
                "{mac} still unknown ({filter}): {list}"
            );
        }
    };
    let record = |ip: &str| -> Option<Value> {
        api.get("/api/v1/ipaddresses")
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ip"] == ip && r["kind"] != "DISCOVERED")
            .cloned()
    };

    // What the controller's DNS answers for `name` (`qtype`), within a second or so of a
    // change: polled until `want` or WAIT.
    let resolves = |name: &str, qtype: &str, want: &str| {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut dig = in_ns(&ctl, "dig");
            dig.args([
                "+time=2",
                "+tries=1",
                "+short",
                &format!("@10.77.{N}.1"),
                name,
                qtype,
            ]);
            let (lines, _) = run_bounded("dig", dig, WAIT);
            if lines.iter().any(|l| l.trim() == want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} {qtype}: {lines:?}, expected {want}\n{}",
                controller.transcript()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    // static, the discovered address.
    let (mac1, ip1) = ("52:54:00:77:3f:51", format!("10.77.{N}.51"));
    announce(mac1, &ip1);
    let device = convert(&format!(
        r#"{{"ip": "{ip1}", "mac": "{mac1}", "as": "device", "hostname": "sw-static",
            "ip_assignment": "static"}}"#
    ));
    assert_eq!(device["addresses"][0]["ip"], ip1.as_str(), "{device}");
    let held = record(&ip1).expect("the static address is held");
    assert_eq!(
        (held["kind"].as_str(), held["mac"].as_str()),
        (Some("STICKY"), Some(mac1))
    );
    not_unknown(mac1, &ip1);
    resolves("sw-static.maas", "A", &ip1);
    let reverse = |ip: &str| {
        let mut octets: Vec<&str> = ip.split('.').collect();
        octets.reverse();
        format!("{}.in-addr.arpa", octets.join("."))
    };
    resolves(&reverse(&ip1), "PTR", "sw-static.maas.");

    // static, the next free address of the subnet, in a domain of its own (which must exist).
    api.send("POST", "/api/v1/domains", Some(r#"{"name": "lab"}"#));
    let (mac2, ip2) = ("52:54:00:77:3f:52", format!("10.77.{N}.52"));
    announce(mac2, &ip2);
    let device = convert(&format!(
        r#"{{"ip": "{ip2}", "mac": "{mac2}", "as": "device", "hostname": "sw-next",
            "ip_assignment": "static", "subnet": "10.77.{N}.0/24", "domain": "lab"}}"#
    ));
    assert_eq!(device["fqdn"], "sw-next.lab", "{device}");
    let next = device["addresses"][0]["ip"].as_str().unwrap().to_owned();
    assert!(next.starts_with(&format!("10.77.{N}.")), "{device}");
    for taken in [format!("10.77.{N}.1"), ip1.clone()] {
        assert_ne!(next, taken, "the next free address is free");
    }
    let held = record(&next).expect("the next free address is held");
    assert_eq!(
        (held["kind"].as_str(), held["mac"].as_str()),
        (Some("STICKY"), Some(mac2))
    );
    not_unknown(mac2, &ip2);
    resolves("sw-next.lab", "A", &next);

    // external, through the command line (away from the next free address just taken:
    // the first of the smallest free block, 10.77.N.53).
    let (mac3, ip3) = ("52:54:00:77:3f:53", format!("10.77.{N}.20"));
    announce(mac3, &ip3);
    // Its name comes from reverse DNS (dnsmasq's PTR record).
    let deadline = Instant::now() + WAIT;
    loop {
        let list = api.get("/api/v1/discoveries");
        let named = list.as_array().unwrap().iter().any(|d| {
            d["mac"] == mac3 && d["ip"] == ip3.as_str() && d["hostname"] == "pdu-ext.lab.example"
        });
        if named {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reverse name for {ip3}: {list}\n{}",
            dns.transcript()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut cli = in_ns(&ctl, controller_binary());
    cli.args(["cli", "--api", &api.url, "convert-discovery", &ip3, mac3])
        .args(["--ip-assignment", "external"])
        .env("MAAS_TOKEN", &token)
        .env("MAAS_PROFILE", scratch.join("profile.json"));
    let (lines, status) = run_bounded("cli", cli, WAIT);
    assert!(status.is_some_and(|s| s.success()), "{lines:?}");
    let device = api.get("/api/v1/devices/pdu-ext");
    assert_eq!(
        device["interfaces"][0]["mac"], mac3,
        "named from its PTR record: {device}"
    );
    let held = record(&ip3).expect("the external address is recorded");
    assert_eq!(
        (held["kind"].as_str(), held["mac"].as_str()),
        (Some("USER_RESERVED"), Some(mac3))
    );
    not_unknown(mac3, &ip3);
    resolves("pdu-ext.maas", "A", &ip3);

    // dynamic: nothing held; the peer's DHCP lease is the device's address.
    let (mac4, ip4) = ("52:54:00:77:3f:54", format!("10.77.{N}.40"));
    announce(mac4, &ip4);
    convert(&format!(
        r#"{{"ip": "{ip4}", "mac": "{mac4}", "as": "device", "hostname": "ct-dyn",
            "ip_assignment": "dynamic", "parent": "sw-static"}}"#
    ));
    assert!(record(&ip4).is_none(), "a dynamic device holds nothing");
    not_unknown(mac4, &ip4);
    let script = scratch.join("udhcpc.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"udhcpc-script: $1 ip=$ip\"\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut udhcpc = in_ns(&peer, "busybox");
    udhcpc
        .args([
            "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s",
        ])
        .arg(&script);
    let (lines, _) = run_bounded("udhcpc", udhcpc, WAIT);
    let leased = lines
        .iter()
        .find_map(|l| l.strip_prefix("udhcpc-script: bound ip="))
        .unwrap_or_else(|| panic!("no lease: {lines:?}\n{}", controller.transcript()))
        .to_owned();
    let device = api.get("/api/v1/devices/ct-dyn");
    assert_eq!(device["addresses"][0]["ip"], leased.as_str(), "{device}");
    assert_eq!(device["parent"]["device"], "sw-static", "{device}");
    resolves("ct-dyn.maas", "A", &leased);

    // A parent with a child stays; then every device goes and frees what it held.
    let refused = api.call("DELETE", "/api/v1/devices/sw-static", None);
    assert_eq!(refused.status, 409, "{}", refused.output);
    for name in ["ct-dyn", "sw-static", "sw-next", "pdu-ext"] {
        api.send("DELETE", &format!("/api/v1/devices/{name}"), None);
    }
    for ip in [&ip1, &next, &ip3] {
        assert!(record(ip).is_none(), "{ip} still held after the delete");
    }
    assert!(api.get("/api/v1/devices").as_array().unwrap().is_empty());
    eprintln!(
        "controller_devices: four conversions, a lease and the deletes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Whether `list` has a discovery of `mac` at `ip`.
fn listed(list: &Value, mac: &str, ip: &str) -> bool {
    list.as_array()
        .unwrap()
        .iter()
        .any(|d| d["mac"] == mac && d["ip"] == ip)
}
