//! Durability: what the controller acknowledged survives `kill -9`.

use std::time::Duration;

use serde_json::Value;

use crate::support::can_run;
use crate::support::netns::{Daemon, Scratch};
use crate::{Api, WAIT, client_lan, events_named, in_ns, shell, start_controller};

/// `kill -9` while enlistments, DHCP leases and discoveries are being written loses none
/// that was acknowledged. A LAN (`10.77.80.0/20` on `br0`) holds the controller (DHCP and
/// discovery on the bridge, boot HTTP); from a client namespace, at once: four curl
/// processes request the iPXE scripts of 6,000 unknown MACs (a 200 acknowledges an
/// enlistment), perfdhcp relays DHCP for random clients (a `leased` log line acknowledges a
/// lease), and arping sends ARP from 190 source addresses (a `discovered` log line
/// acknowledges a discovery). Once each kind has been acknowledged many times, with the load
/// still running, the controller gets SIGKILL; restarted on the same state directory, its
/// API lists every acknowledged machine, lease and discovery. About 2 s.
#[test]
fn kill_9_loses_nothing_acknowledged() {
    if !can_run(
        "controller_kill9",
        &["ip", "curl", "perfdhcp", "arping", "sh"],
    ) {
        return;
    }
    let scratch = Scratch::new("controller_kill9");
    let (lan, client) = client_lan(35, "10.77.80.1/20", "10.77.80.2/20");
    // arping sends from addresses the client does not hold.
    client.sysctl("net.ipv4.ip_nonlocal_bind", "1");
    let config_path = scratch.join("controller.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[controller]
state_dir = "{state}"
api = "127.0.0.1:5240"
boot_http = "0.0.0.0:5248"
enlist_max_new = 1000000
enlist_per_minute = 10000000

[dhcp]
interfaces = ["br0"]

[discovery]
interfaces = ["br0"]
scan_interval_secs = 0

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.80.0/20"
gateway_ip = "10.77.80.1"

[[ip_ranges]]
subnet = "10.77.80.0/20"
start = "10.77.81.0"
end = "10.77.95.254"
kind = "dynamic"
"#,
            state = scratch.join("state").display()
        ),
    )
    .unwrap();
    let mut controller = start_controller(&lan, &config_path);

    // (a) Enlistments: four curl processes, 1,500 MACs each, one connection each.
    let mut curls = Vec::new();
    for worker in 0..4u32 {
        let mut cmd = in_ns(&client, "curl");
        cmd.args([
            "-s",
            "--max-time",
            "20",
            "-w",
            "%{url_effective} %{http_code}\\n",
        ]);
        for i in 0..1500u32 {
            let id = worker * 1500 + i;
            cmd.args(["-o", "/dev/null"]).arg(format!(
                "http://10.77.80.1:5248/ipxe.cfg-52-54-00-23-{:02x}-{:02x}",
                id >> 8,
                id & 0xff
            ));
        }
        curls.push(Daemon::spawn("curl", cmd));
    }
    // (b) Leases: perfdhcp relaying from 10.77.80.2 for random clients.
    let mut perf = in_ns(&client, "perfdhcp");
    perf.args(["-4", "-l", "vcli", "-r", "200", "-R", "1000000", "-p", "30"]);
    let mut perf = Daemon::spawn("perfdhcp", perf);
    // (c) Discoveries: ARP from 10.77.80.10 to 10.77.80.199, one address after the other.
    let mut arping = Daemon::spawn(
        "arping",
        shell(
            &client,
            "i=10; while [ $i -lt 200 ]; do \
             arping -q -c 1 -w 1 -I vcli -s 10.77.80.$i 10.77.80.1; \
             i=$((i+1)); sleep 0.02; done",
        ),
    );

    // Kill once each kind has been acknowledged often (or after WAIT, checked below).
    let deadline = std::time::Instant::now() + WAIT;
    let counts = |c: &Daemon| {
        let events = c.events();
        let count = |kind: &str| events.iter().filter(|e| e["event"] == kind).count();
        (count("enlisted"), count("leased"), count("discovered"))
    };
    loop {
        let (enlisted, leased, discovered) = counts(&controller);
        if (enlisted >= 200 && leased >= 100 && discovered >= 30)
            || std::time::Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let load_running = curls
        .iter_mut()
        .all(|c| c.wait_exit(Duration::ZERO).is_none())
        && perf.wait_exit(Duration::ZERO).is_none()
        && arping.wait_exit(Duration::ZERO).is_none();
    controller.kill_hard();
    assert!(
        load_running,
        "the load had ended before the kill\n{}",
        controller.transcript()
    );
    let (enlisted_logged, leased_logged, discovered_logged) = counts(&controller);
    eprintln!(
        "controller_kill9: killed after {enlisted_logged} enlistments, {leased_logged} leases, \
         {discovered_logged} discoveries were logged"
    );
    perf.stop("TERM", Duration::from_secs(5));
    arping.stop("TERM", Duration::from_secs(5));

    // What was acknowledged before the kill.
    let mut acked_macs = Vec::new();
    let mut failed = 0;
    for mut curl in curls {
        assert!(
            curl.wait_exit(WAIT).is_some(),
            "curl did not finish\n{}",
            curl.transcript()
        );
        for line in curl.lines() {
            let Some((url, code)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some(mac) = url.split("ipxe.cfg-").nth(1) else {
                continue;
            };
            if code == "200" {
                acked_macs.push(mac.replace('-', ":"));
            } else {
                failed += 1;
            }
        }
    }
    let leased: Vec<(String, String)> = events_named(&controller, "leased")
        .iter()
        .map(|e| {
            let detail: Value = serde_json::from_str(e["detail"].as_str().unwrap()).unwrap();
            (
                e["ip"].as_str().unwrap().to_string(),
                detail["mac"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let discovered: Vec<(u64, String, String)> = events_named(&controller, "discovered")
        .iter()
        .map(|e| {
            (
                e["vid"].as_u64().unwrap(),
                e["ip"].as_str().unwrap().to_string(),
                e["mac"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    eprintln!(
        "controller_kill9: {} enlistments answered 200 ({failed} not), {} leases and {} \
         discoveries acknowledged",
        acked_macs.len(),
        leased.len(),
        discovered.len()
    );
    // Not vacuous: each kind was acknowledged, and requests were still being made when
    // the controller died.
    assert!(acked_macs.len() >= 10, "{}", controller.transcript());
    assert!(
        failed > 0,
        "every enlistment was answered: no kill in flight"
    );
    assert!(leased.len() >= 10, "{}", controller.transcript());
    assert!(discovered.len() >= 5, "{}", controller.transcript());

    let controller = start_controller(&lan, &config_path);
    let api = Api::of(&lan, &controller);
    let machines = api.get("/api/v1/machines");
    let known: std::collections::BTreeSet<&str> = machines
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["mac"].as_str())
        .collect();
    let lost: Vec<&String> = acked_macs
        .iter()
        .filter(|m| !known.contains(m.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} enlistments answered 200 are gone: {lost:?}",
        lost.len(),
        acked_macs.len()
    );
    let leases = api.get("/api/v1/leases");
    let held: std::collections::BTreeSet<(&str, &str)> = leases
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| Some((l["ip"].as_str()?, l["mac"].as_str()?)))
        .collect();
    let lost: Vec<&(String, String)> = leased
        .iter()
        .filter(|(ip, mac)| !held.contains(&(ip.as_str(), mac.as_str())))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged leases are gone: {lost:?}",
        lost.len(),
        leased.len()
    );
    let list = api.get("/api/v1/discoveries");
    let seen: std::collections::BTreeSet<(u64, &str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| Some((d["vid"].as_u64()?, d["ip"].as_str()?, d["mac"].as_str()?)))
        .collect();
    let lost: Vec<&(u64, String, String)> = discovered
        .iter()
        .filter(|(vid, ip, mac)| !seen.contains(&(*vid, ip.as_str(), mac.as_str())))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} logged discoveries are gone: {lost:?}\n{}",
        lost.len(),
        discovered.len(),
        controller.transcript()
    );
}
