//! Discovery and the proxy, wired into the controller.

use std::time::Duration;

use serde_json::Value;

use crate::support::can_run;
use crate::support::netns::{Daemon, Netns, Scratch, run_bounded};
use crate::{Api, WAIT, in_ns, start_controller};

/// Discovery and the proxy, wired into the controller. A LAN holds the controller (bridge
/// `br0`, 10.77.29.1 in a subnet with `active_discovery` and `allow_proxy`, and 10.77.30.1 in
/// one without the proxy), a talking host h1 (10.77.29.10 and 10.77.30.10, also the HTTP
/// origin) and a silent host h2 (10.77.29.20, never sends on its own, so only the active
/// scan can find it); both are listed by the API, h2 is DISCOVERED in IPAM, and both survive
/// a restart. curl on h1 through the controller's proxy is served (a miss,
/// then a hit the origin never sees) from its allowed address and refused with 403 from the
/// other, with nothing fetched. The API (discoveries, addresses, metrics) answers the first
/// admin's token, and not a caller without one.
#[test]
fn the_controller_discovers_neighbours_and_proxies_for_allowed_subnets() {
    if !can_run("controller_discovery_proxy", &["ip", "curl", "python3"]) {
        return;
    }
    let ctl = Netns::new("maas-ctl29-ctl");
    let h1 = Netns::new("maas-ctl29-h1");
    let h2 = Netns::new("maas-ctl29-h2");
    ctl.bridge("br0", &["10.77.29.1/24", "10.77.30.1/24"]);
    for (port, host, addrs) in [
        ("p1", &h1, &["10.77.29.10/24", "10.77.30.10/24"][..]),
        ("p2", &h2, &["10.77.29.20/24"][..]),
    ] {
        ctl.attach("br0", port, host, "eth0");
        for addr in addrs {
            host.ip(&["addr", "add", addr, "dev", "eth0"]);
        }
        // No IPv6 chatter: h2 must stay silent until it is probed.
        host.sysctl("net.ipv6.conf.eth0.disable_ipv6", "1");
        host.ip(&["link", "set", "eth0", "up"]);
    }
    let scratch = Scratch::new("controller_discovery_proxy");
    let www = scratch.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("pool.deb"), "package bytes ".repeat(500)).unwrap();
    let mut origin = in_ns(&h1, "python3");
    origin
        .args([
            "-u",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "10.77.29.10",
            "--directory",
        ])
        .arg(&www);
    let origin = Daemon::spawn("origin", origin);
    assert!(
        origin
            .wait_line(WAIT, |l| l.contains("Serving HTTP"))
            .is_some(),
        "{}",
        origin.transcript()
    );

    let config_path = scratch.join("controller.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[controller]
state_dir = "{state}"
api = "127.0.0.1:5240"
boot_http = "127.0.0.1:5248"

[discovery]
interfaces = ["br0"]
scan_interval_secs = 3600
scan_rate = 500

[proxy]
listen = "0.0.0.0:8000"
cache_dir = "{cache}"

[[subnets]]
cidr = "10.77.29.0/24"
active_discovery = true
allow_proxy = true

[[subnets]]
cidr = "10.77.30.0/24"
allow_proxy = false
"#,
            state = scratch.join("state").display(),
            cache = scratch.join("cache").display(),
        ),
    )
    .unwrap();
    let mut controller = start_controller(&ctl, &config_path);
    let api = Api::of(&ctl, &controller);
    let scanned = controller.wait_event(WAIT, |e| e["event"] == "scan_done");
    assert!(
        scanned
            .as_ref()
            .is_some_and(|e| e["answered"].as_u64() >= Some(2) && e["subnet"] == "10.77.29.0/24"),
        "the scan did not find h1 and h2: {scanned:?}\n{}",
        controller.transcript()
    );

    let fetch = |source: &str| {
        let mut cmd = in_ns(&h1, "curl");
        cmd.args([
            "-sS",
            "--max-time",
            "10",
            "--interface",
            source,
            "-x",
            "http://10.77.29.1:8000",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://10.77.29.10:8080/pool.deb",
        ]);
        let (lines, _) = run_bounded("curl", cmd, WAIT);
        lines.join("\n")
    };
    let origin_gets = || {
        origin
            .lines()
            .iter()
            .filter(|l| l.contains("GET /pool.deb"))
            .count()
    };
    assert_eq!(fetch("10.77.29.10"), "200");
    assert_eq!(origin_gets(), 1, "{}", origin.transcript());
    assert_eq!(fetch("10.77.29.10"), "200");
    assert_eq!(origin_gets(), 1, "the second fetch was not a hit");
    assert_eq!(fetch("10.77.30.10"), "403");
    assert_eq!(origin_gets(), 1, "a refused client caused a fetch");
    // Metrics are for a user of the API too.
    let anonymous = api.with_token(None).call("GET", "/metrics", None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.output);
    let metrics = api.call("GET", "/metrics", None);
    assert_eq!(metrics.status, 200, "{}", metrics.output);
    let metrics = metrics.text;
    let counter = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("maas_proxy_{name}_total ")))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no maas_proxy_{name}_total in {metrics}"))
    };
    // The second fetch is a hit, or, when it came while the first was still being stored,
    // joined that fetch (a miss that went upstream with it): one upstream fetch either way.
    assert_eq!(counter("upstream_fetches"), 1, "{metrics}");
    assert_eq!(counter("hits") + counter("misses"), 2, "{metrics}");
    assert!(metrics.contains("maas_proxy_refused_total 1"), "{metrics}");

    let listed = |want: &[&str]| -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let list = api.get("/api/v1/discoveries");
            let ips: Vec<&str> = list
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|d| d["ip"].as_str())
                .collect();
            if want.iter().all(|w| ips.contains(w)) || std::time::Instant::now() > deadline {
                return list;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let list = listed(&["10.77.29.10", "10.77.29.20"]);
    let find = |list: &Value, ip: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|d| d["ip"] == ip)
            .cloned()
            .unwrap_or_else(|| panic!("{ip} not discovered: {list}"))
    };
    let h2_entry = find(&list, "10.77.29.20");
    assert_eq!(h2_entry["interface"], "br0", "{h2_entry}");
    assert_eq!(h2_entry["subnet"], "10.77.29.0/24", "{h2_entry}");
    let h1_entry = find(&list, "10.77.29.10");
    let addresses = api.get("/api/v1/ipaddresses");
    assert!(
        addresses
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ip"] == "10.77.29.20"
                && r["kind"] == "DISCOVERED"
                && r["mac"] == h2_entry["mac"]),
        "{addresses}"
    );

    // Restart: the discoveries are still there, with the same MACs.
    controller.kill_hard();
    let controller = start_controller(&ctl, &config_path);
    let list = api.get("/api/v1/discoveries");
    assert_eq!(find(&list, "10.77.29.20")["mac"], h2_entry["mac"], "{list}");
    assert_eq!(find(&list, "10.77.29.10")["mac"], h1_entry["mac"], "{list}");
    drop(controller);
}
