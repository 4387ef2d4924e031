//! Two regions on one PostgreSQL database (a real server the test starts), two racks, and
//! load through both at once: nothing is given twice, and nothing acknowledged is missing
//! from the database.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use maas_ipam::postgres::{Client, NoTls};
use serde_json::json;

use crate::pg_server::PgServer;
use crate::support::netns::{Daemon, Netns, Scratch, run_bounded};
use crate::support::{can_run, dhcp};
use crate::{Api, WAIT, admin_token, events_named, in_ns, start_controller};

const SECRET: &str = "regions-rack-secret-0123456789";
/// The LAN every process is on: regions at .1, racks at .2 and .3, perfdhcp at .10 and .11.
const LAN: &str = "10.77.46";

/// A region's file: API on LAN `lan`.0/24 (plain HTTP), its state in `url`, serving `racks`.
fn region_config(
    lan: &str,
    state: &Path,
    (port, boot_port): (u16, u16),
    url: &str,
    racks: &[&str],
) -> String {
    let mut text = format!(
        r#"
[controller]
role = "region"
state_dir = "{state}"
api = "{lan}.1:{port}"
tls = "off"
boot_http = "127.0.0.1:{boot_port}"

[power]
monitor_interval_secs = 0

[database]
url = "{url}"

[cluster]
secret = "{SECRET}"

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "{lan}.0/24"
gateway_ip = "{lan}.1"

[[ip_ranges]]
subnet = "{lan}.0/24"
start = "{lan}.100"
end = "{lan}.250"
kind = "dynamic"
"#,
        state = state.display()
    );
    for rack in racks {
        text.push_str(&format!(
            "\n[[cluster.racks]]\nname = \"{rack}\"\nvlans = [{{ fabric = \"fabric-0\", vid = 0 }}]\n"
        ));
    }
    for i in 0..8 {
        text.push_str(&format!(
            "\n[[machines]]\nmac = \"52:54:00:77:46:{i:02x}\"\nhostname = \"pg{i}\"\n"
        ));
    }
    text
}

/// A rack's file: DHCP on `lan0`, its boot HTTP on `address`, reporting to `regions` (in
/// order of preference).
fn rack_config(name: &str, state: &Path, address: &str, regions: &[String]) -> String {
    let regions: Vec<String> = regions.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        r#"
[controller]
role = "rack"
state_dir = "{state}"
api = "127.0.0.1:5250"
boot_http = "{address}:5248"

[dhcp]
interfaces = ["lan0"]

[cluster]
regions = [{regions}]
secret = "{SECRET}"
name = "{name}"
sync_secs = 2
start_wait_secs = 10
"#,
        state = state.display(),
        regions = regions.join(", ")
    )
}

/// Starts the controller of `text` (written to `path`) in `ns`.
fn start(ns: &Netns, path: &Path, text: &str) -> Daemon {
    std::fs::write(path, text).unwrap();
    start_controller(ns, path)
}

/// Joins a new namespace `name` to the LAN bridge as `lan0` with `address`.
fn on_lan(lan: &Netns, name: &str, port: &str, address: &str) -> Netns {
    let ns = Netns::new(name);
    lan.attach("br0", port, &ns, "lan0");
    ns.ip(&["addr", "add", &format!("{address}/24"), "dev", "lan0"]);
    ns.ip(&["link", "set", "lan0", "up"]);
    ns
}

/// Captures the DHCP traffic on `ns`'s `lan0` into `file`; ready when it returns.
fn capture(ns: &Netns, file: &Path) -> Daemon {
    let mut cmd = in_ns(ns, "tcpdump");
    cmd.args([
        "-i",
        "lan0",
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

/// The DHCPACKs of a capture, as (address, client MAC), once the file stops growing.
fn acks(mut capture: Daemon, file: &Path) -> Vec<(String, String)> {
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
    let bytes = std::fs::read(file).unwrap_or_default();
    dhcp::pcap_dhcp_payloads(&bytes)
        .iter()
        .filter_map(|p| dhcp::parse_reply(p))
        .filter(|r| r.kind == 5)
        .map(|r| (r.yiaddr.to_string(), dhcp::mac_text(&r.chaddr)))
        .collect()
}

/// Two regions (`--role region`) share one PostgreSQL database; rack A reports to region A
/// and rack B to region B, both serving the same VLAN and dynamic range from their mirrors,
/// each answering the DISCOVERs of its share of the clients. At once: two perfdhcp relays
/// broadcast DHCP to both racks (60 clients each, distinct MACs), and threads
/// call both regions' APIs to reserve addresses (20 each) and allocate machines (8 each, 8
/// machines in all). Afterwards, read from the database:
/// - every lease a rack acknowledged (its `leased` line) is the lease the database holds for
///   that address, and no address was acknowledged to two clients;
/// - the reservations answered are distinct, and exactly the USER_RESERVED rows;
/// - the allocations answered are distinct machines, and exactly the allocated rows.
///
/// Then, both regions stopped, `copy-state` copies the database into a state directory, and
/// refuses to copy into it again.
///
/// About 10 s (PostgreSQL's start included).
#[test]
fn two_regions_on_one_database_give_nothing_twice() {
    if !can_run(
        "controller_regions_pg",
        &["ip", "curl", "perfdhcp", "tcpdump"],
    ) {
        return;
    }
    let Some(server) = PgServer::shared() else {
        return;
    };
    let url = server.create_database();
    let scratch = Scratch::new("controller_regions_pg");
    let lan = Netns::new("maas-ctl46-lan");
    lan.bridge("br0", &[&format!("{LAN}.1/24")]);
    let rack_a_ns = on_lan(&lan, "maas-ctl46-ra", "ra", &format!("{LAN}.2"));
    let rack_b_ns = on_lan(&lan, "maas-ctl46-rb", "rb", &format!("{LAN}.3"));
    let client_a = on_lan(&lan, "maas-ctl46-ca", "ca", &format!("{LAN}.10"));
    let client_b = on_lan(&lan, "maas-ctl46-cb", "cb", &format!("{LAN}.11"));

    let region_a = start(
        &lan,
        &scratch.join("region-a.toml"),
        &region_config(
            LAN,
            &scratch.join("region-a"),
            (5240, 5248),
            &url,
            &["rack-a", "rack-b"],
        ),
    );
    // The first region made the first admin; the second finds it in the database.
    let token = admin_token(&scratch.join("region-a"));
    let region_b = start(
        &lan,
        &scratch.join("region-b.toml"),
        &region_config(
            LAN,
            &scratch.join("region-b"),
            (5241, 5249),
            &url,
            &["rack-a", "rack-b"],
        ),
    );
    assert!(
        !scratch.join("region-b").join("admin-token").exists(),
        "the second region made another first admin"
    );
    let api_a = Api::of_url(&lan, &format!("http://{LAN}.1:5240"), &token);
    let api_b = Api::of_url(&lan, &format!("http://{LAN}.1:5241"), &token);

    let mut rack_a = start(
        &rack_a_ns,
        &scratch.join("rack-a.toml"),
        &rack_config(
            "rack-a",
            &scratch.join("rack-a"),
            &format!("{LAN}.2"),
            &[format!("http://{LAN}.1:5240")],
        ),
    );
    let mut rack_b = start(
        &rack_b_ns,
        &scratch.join("rack-b.toml"),
        &rack_config(
            "rack-b",
            &scratch.join("rack-b"),
            &format!("{LAN}.3"),
            &[format!("http://{LAN}.1:5241")],
        ),
    );

    // What the clients are acknowledged, as they see it.
    let capture_a = capture(&client_a, &scratch.join("a.pcap"));
    let capture_b = capture(&client_b, &scratch.join("b.pcap"));
    // The load: perfdhcp through each rack, and the API calls, all at once.
    let perfdhcp = |ns: &Netns, base: &str, server: &str| {
        let mut cmd = in_ns(ns, "perfdhcp");
        cmd.args([
            "-4", "-l", "lan0", "-r", "30", "-R", "60", "-n", "60", "-p", "15", "-b",
        ])
        .arg(format!("mac={base}"))
        .arg(server);
        Daemon::spawn("perfdhcp", cmd)
    };
    // Broadcast, as a relay configured with both racks (or a client on their link): both
    // racks hear every DISCOVER and split the clients between them.
    let mut perf_a = perfdhcp(&client_a, "02:77:0a:00:00:00", "all");
    let mut perf_b = perfdhcp(&client_b, "02:77:0b:00:00:00", "all");
    let subnet = api_a.get("/api/v1/subnets")[0]["id"].as_u64().unwrap();
    let (reserved, allocated) = std::thread::scope(|s| {
        let calls: Vec<_> = [&api_a, &api_b]
            .into_iter()
            .map(|api| {
                s.spawn(move || {
                    let mut reserved = Vec::new();
                    let mut allocated = Vec::new();
                    for n in 0..20 {
                        let body = json!({ "subnet": subnet, "owner": format!("r{n}") });
                        let reply =
                            api.call("POST", "/api/v1/ipaddresses", Some(&body.to_string()));
                        if (200..300).contains(&reply.status) {
                            reserved.push(reply.json["ip"].as_str().unwrap().to_string());
                        } else {
                            assert_eq!(reply.status, 409, "{}", reply.output);
                        }
                        if n < 8 {
                            let reply = api.call("POST", "/api/v1/machines/allocate", Some("{}"));
                            if reply.status == 200 {
                                allocated.push(reply.json["mac"].as_str().unwrap().to_string());
                            } else {
                                assert_eq!(reply.status, 409, "{}", reply.output);
                            }
                        }
                    }
                    (reserved, allocated)
                })
            })
            .collect();
        let mut reserved = Vec::new();
        let mut allocated = Vec::new();
        for call in calls {
            let (r, a) = call.join().unwrap();
            reserved.extend(r);
            allocated.extend(a);
        }
        (reserved, allocated)
    });
    for perf in [&mut perf_a, &mut perf_b] {
        assert!(
            perf.wait_exit(Duration::from_secs(60)).is_some(),
            "perfdhcp did not finish\n{}",
            perf.transcript()
        );
    }
    let acked_a = acks(capture_a, &scratch.join("a.pcap"));
    let acked_b = acks(capture_b, &scratch.join("b.pcap"));
    // The racks split the VLAN's new clients (`dhcp_share`, one of two each): every DISCOVER
    // was offered an address by one rack only.
    for rack in [&rack_a, &rack_b] {
        assert!(
            !events_named(rack, "dhcp_share").is_empty(),
            "{}",
            rack.transcript()
        );
    }
    for file in ["a.pcap", "b.pcap"] {
        let bytes = std::fs::read(scratch.join(file)).unwrap_or_default();
        let mut offers: BTreeMap<u32, usize> = BTreeMap::new();
        for reply in dhcp::pcap_dhcp_payloads(&bytes)
            .iter()
            .filter_map(|p| dhcp::parse_reply(p))
            .filter(|r| r.kind == 2)
        {
            *offers.entry(reply.xid).or_default() += 1;
        }
        assert!(!offers.is_empty(), "{file}: no OFFER captured");
        let twice: Vec<_> = offers.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{file}: DISCOVERs offered twice: {twice:?}"
        );
    }
    rack_a.stop("TERM", Duration::from_secs(10));
    rack_b.stop("TERM", Duration::from_secs(10));

    let mut db = Client::connect(&url, NoTls).unwrap();
    // Leases: each acknowledged one is in the database, for its client; no address twice.
    eprintln!(
        "controller_regions_pg: {} leases acknowledged through rack A, {} through rack B, \
         {} reservations, {} allocations",
        acked_a.len(),
        acked_b.len(),
        reserved.len(),
        allocated.len()
    );
    eprintln!("RACKA {}", rack_a.transcript());
    eprintln!("RACKB {}", rack_b.transcript());
    eprintln!("PERFA {}", perf_a.transcript());
    let acked: Vec<(String, String)> = acked_a.into_iter().chain(acked_b).collect();
    // An exchange can still be lost to the API's reservations and allocations, which take
    // addresses a rack's mirror shows free until its next refresh: the database refuses the
    // rack's bind (perfdhcp counts it lost; a real client asks again).
    assert!(
        acked.len() >= 30,
        "too few leases acknowledged\n{}\n{}",
        rack_a.transcript(),
        rack_b.transcript()
    );
    let mut holder: BTreeMap<&str, &str> = BTreeMap::new();
    for (ip, mac) in &acked {
        if let Some(before) = holder.insert(ip, mac) {
            assert_eq!(before, mac, "{ip} was acknowledged to two clients");
        }
    }
    for (ip, mac) in &holder {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let row = db
            .query_opt(
                "SELECT lease_client FROM ipam_records WHERE ip = $1 AND NOT discovered",
                &[&ip],
            )
            .unwrap();
        let stored: Option<String> = row.and_then(|r| r.get(0));
        // perfdhcp sends a client identifier: type 1 (Ethernet) and the MAC.
        let client_id = format!("id:01{}", mac.replace(':', ""));
        assert!(
            stored.as_deref() == Some(*mac) || stored.as_deref() == Some(client_id.as_str()),
            "the lease of {ip} is {stored:?}, acknowledged to {mac}"
        );
    }
    // Reservations: distinct, and exactly what the database holds as reserved.
    let mut answered = reserved.clone();
    answered.sort();
    answered.dedup();
    assert_eq!(
        answered.len(),
        reserved.len(),
        "an address was reserved twice"
    );
    assert!(!answered.is_empty());
    let mut stored: Vec<String> = db
        .query(
            "SELECT host(ip) FROM ipam_records WHERE kind = 'USER_RESERVED' ORDER BY ip",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    stored.sort();
    assert_eq!(stored, answered);
    // Allocations: distinct machines, exactly the allocated rows.
    let mut machines = allocated.clone();
    machines.sort();
    machines.dedup();
    assert_eq!(
        machines.len(),
        allocated.len(),
        "a machine was allocated twice"
    );
    assert!(!machines.is_empty());
    let stored: Vec<String> = db
        .query(
            "SELECT mac::text FROM ctl_machines WHERE doc->>'status' = 'allocated' ORDER BY mac",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, machines);
    // Each region lists what the other did.
    let seen_by_b = api_b.get("/api/v1/machines");
    let allocated_b = seen_by_b
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["status"] == "allocated")
        .count();
    assert_eq!(allocated_b, machines.len(), "{seen_by_b}");

    // With both regions stopped, `copy-state` takes the whole state back into a state
    // directory (the URL from a file, off the command line).
    let (mut region_a, mut region_b) = (region_a, region_b);
    region_a.stop("TERM", Duration::from_secs(10));
    region_b.stop("TERM", Duration::from_secs(10));
    let url_file = scratch.join("database-url");
    std::fs::write(&url_file, &url).unwrap();
    let backup = scratch.join("backup");
    let mut cmd = std::process::Command::new(crate::controller_binary());
    cmd.arg("copy-state")
        .arg("--from")
        .arg(format!("url-file:{}", url_file.display()))
        .arg("--to")
        .arg(&backup);
    let (lines, status) = run_bounded("copy-state", cmd, WAIT);
    let output = lines.join("\n");
    assert!(status.is_some_and(|s| s.success()), "{output}");
    assert!(output.contains(" 8 machines"), "{output}");
    assert!(backup.join("ipam.redb").exists(), "{output}");
    // Into a store that holds something already: refused.
    let mut again = std::process::Command::new(crate::controller_binary());
    again
        .arg("copy-state")
        .arg("--from")
        .arg(format!("url-file:{}", url_file.display()))
        .arg("--to")
        .arg(&backup);
    let (lines, status) = run_bounded("copy-state", again, WAIT);
    assert!(status.is_some_and(|s| !s.success()), "{lines:?}");
    assert!(lines.join("\n").contains("not empty"), "{lines:?}");
}

/// Joins a new namespace `name` to the LAN bridge as `lan0`, up, with no address (a DHCP
/// client's).
fn bare_on_lan(lan: &Netns, name: &str, port: &str, mac: &str) -> Netns {
    let ns = Netns::new(name);
    lan.attach("br0", port, &ns, "lan0");
    ns.ip(&["link", "set", "lan0", "address", mac, "up"]);
    ns
}

/// One DHCP exchange by busybox udhcpc on `lan0` in `ns` (asking for `requested` when given):
/// the address it was acknowledged, if any.
fn udhcpc(ns: &Netns, script: &Path, requested: Option<&str>) -> Option<String> {
    let mut cmd = in_ns(ns, "busybox");
    cmd.args([
        "udhcpc", "-i", "lan0", "-n", "-q", "-f", "-t", "4", "-T", "3", "-s",
    ])
    .arg(script);
    if let Some(ip) = requested {
        cmd.args(["-r", ip]);
    }
    let (lines, _) = run_bounded("udhcpc", cmd, WAIT);
    lines
        .iter()
        .find_map(|l| l.strip_prefix("udhcpc-script: bound ip="))
        .map(|ip| ip.trim().to_string())
}

/// When the lease of `ip` ends, as the database holds it (seconds since the epoch).
fn stored_expiry(db: &mut Client, ip: &str) -> Option<i64> {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    db.query_opt(
        "SELECT extract(epoch FROM lease_expires)::bigint FROM ipam_records
         WHERE ip = $1 AND NOT discovered",
        &[&ip],
    )
    .unwrap()
    .and_then(|r| r.get(0))
}

/// A rack knows both regions of one PostgreSQL database (`regions = [A, B]`). Under DHCP load
/// (perfdhcp relaying through the rack, captured with tcpdump), region A gets SIGKILL: the
/// rack fails over to region B (the bound: a call gives a region 2 s to connect and 10 s to
/// answer; the time measured is printed), leases are acknowledged again, and every lease
/// acknowledged before or after the kill is in the database for its client. Then region B
/// stops too: a busybox udhcpc client that leased through region A renews its address with
/// the rack alone; region B started again receives the rack's queued report, and the
/// database's lease of that address ends later than before.
///
/// About 25 s.
#[test]
fn a_killed_region_loses_no_acknowledged_lease_and_racks_outlive_every_region() {
    const LAN2: &str = "10.77.48";
    if !can_run(
        "controller_regions_failover",
        &["ip", "perfdhcp", "tcpdump", "busybox"],
    ) {
        return;
    }
    let Some(server) = PgServer::shared() else {
        return;
    };
    let url = server.create_database();
    let scratch = Scratch::new("controller_regions_failover");
    let lan = Netns::new("maas-ctl48-lan");
    lan.bridge("br0", &[&format!("{LAN2}.1/24")]);
    let rack_ns = on_lan(&lan, "maas-ctl48-ra", "ra", &format!("{LAN2}.2"));
    let perf_ns = on_lan(&lan, "maas-ctl48-ca", "ca", &format!("{LAN2}.10"));
    let client = bare_on_lan(&lan, "maas-ctl48-cu", "cu", "52:54:00:77:48:20");
    let script = scratch.join("udhcpc.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"udhcpc-script: $1 ip=$ip\"\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let region_text =
        |name: &str, ports| region_config(LAN2, &scratch.join(name), ports, &url, &["rack-a"]);
    let mut region_a = start(
        &lan,
        &scratch.join("region-a.toml"),
        &region_text("region-a", (5240, 5248)),
    );
    let region_b_text = region_text("region-b", (5241, 5249));
    let mut region_b = start(&lan, &scratch.join("region-b.toml"), &region_b_text);
    let rack = start(
        &rack_ns,
        &scratch.join("rack-a.toml"),
        &rack_config(
            "rack-a",
            &scratch.join("rack-a"),
            &format!("{LAN2}.2"),
            &[
                format!("http://{LAN2}.1:5240"),
                format!("http://{LAN2}.1:5241"),
            ],
        ),
    );
    let mut db = Client::connect(&url, NoTls).unwrap();

    // A client with a lease recorded through region A.
    let ip1 = udhcpc(&client, &script, None).expect("a lease through the rack");
    let first_expiry = stored_expiry(&mut db, &ip1).expect("the lease in the database");

    // Load, and region A killed once the rack has acknowledged some of it.
    let pcap = scratch.join("load.pcap");
    let capture_load = capture(&perf_ns, &pcap);
    let mut perf = in_ns(&perf_ns, "perfdhcp");
    perf.args([
        "-4",
        "-l",
        "lan0",
        "-r",
        "25",
        "-R",
        "1000",
        "-n",
        "400",
        "-p",
        "14",
        "-b",
        "mac=02:77:0c:00:00:00",
    ])
    .arg(format!("{LAN2}.2"));
    let mut perf = Daemon::spawn("perfdhcp", perf);
    let acked_so_far = || {
        let bytes = std::fs::read(&pcap).unwrap_or_default();
        dhcp::pcap_dhcp_payloads(&bytes)
            .iter()
            .filter_map(|p| dhcp::parse_reply(p))
            .filter(|r| r.kind == 5)
            .count()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while acked_so_far() < 25 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let before_kill = acked_so_far();
    assert!(before_kill >= 25, "{}", rack.transcript());
    region_a.kill_hard();
    let killed = std::time::Instant::now();
    let to_b = format!("http://{LAN2}.1:5241");
    let failed_over = rack
        .wait_event(WAIT, |e| {
            e["event"] == "region_failover" && e["to"] == to_b.as_str()
        })
        .is_some();
    let failover_took = killed.elapsed();
    assert!(failed_over, "no failover\n{}", rack.transcript());
    assert!(
        perf.wait_exit(Duration::from_secs(60)).is_some(),
        "perfdhcp did not finish\n{}",
        perf.transcript()
    );
    let acked = acks(capture_load, &pcap);
    eprintln!(
        "controller_regions_failover: {before_kill} leases acknowledged before the kill, {} in \
         all; the rack's first failover {:.1} s after the kill",
        acked.len(),
        failover_took.as_secs_f64()
    );
    assert!(
        acked.len() > before_kill,
        "nothing acknowledged after the kill\n{}",
        rack.transcript()
    );
    // Every acknowledged lease, before and after the kill, is the database's.
    let mut holder: BTreeMap<&str, &str> = BTreeMap::new();
    for (ip, mac) in &acked {
        if let Some(before) = holder.insert(ip, mac) {
            assert_eq!(before, mac, "{ip} was acknowledged to two clients");
        }
    }
    for (ip, mac) in &holder {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let stored: Option<String> = db
            .query_opt(
                "SELECT lease_client FROM ipam_records WHERE ip = $1 AND NOT discovered",
                &[&ip],
            )
            .unwrap()
            .and_then(|r| r.get(0));
        let client_id = format!("id:01{}", mac.replace(':', ""));
        assert_eq!(
            stored,
            Some(client_id),
            "the lease of {ip}, acknowledged to {mac}"
        );
    }

    // No region at all: the rack renews the lease it knows, for its owner.
    region_b.stop("TERM", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        udhcpc(&client, &script, Some(&ip1)).as_deref(),
        Some(ip1.as_str()),
        "no renewal without a region\n{}",
        rack.transcript()
    );
    assert_eq!(stored_expiry(&mut db, &ip1), Some(first_expiry));
    // Region B back: the queued renewal reaches the database.
    let _region_b = start(&lan, &scratch.join("region-b.toml"), &region_b_text);
    let deadline = std::time::Instant::now() + WAIT;
    while stored_expiry(&mut db, &ip1) == Some(first_expiry) && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let renewed = stored_expiry(&mut db, &ip1).unwrap();
    assert!(
        renewed > first_expiry,
        "the queued renewal did not arrive\n{}",
        rack.transcript()
    );
}
