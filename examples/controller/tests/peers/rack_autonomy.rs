//! A rack that knows two regions, fails over to the one that answers, and keeps serving
//! DHCP when no region answers: renewals for their owners, new clients from its block only,
//! everything queued on disk and replayed when the region is back; restarted while cut off,
//! it starts from its cached configuration.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::can_run;
use crate::support::netns::{Daemon, Netns, Scratch, run_bounded};
use crate::{Api, WAIT, controller_binary, events_named, in_ns, start_controller};

const RACK_SECRET: &str = "a-shared-rack-secret-77";
/// The region that answers.
const REGION: &str = "https://10.77.34.1:5240";
/// An address on the region's link nobody holds: connections to it never open.
const DEAD_REGION: &str = "https://10.77.34.9:5240";

fn region_config(state: &Path) -> String {
    format!(
        r##"
[controller]
role = "region"
state_dir = "{state}"
api = "10.77.34.1:5240"
boot_http = "127.0.0.1:5248"
ipxe_script = "#!ipxe\necho KNOWN-MARKER {{hostname}} {{mac}} {{status}}\n"

[cluster]
secret = "{RACK_SECRET}"
rack_block_size = 2

# Client 1 is a machine the region knows.
[[machines]]
mac = "52:54:00:77:23:01"
hostname = "known-one"

[[cluster.racks]]
name = "rack-x"
vlans = [{{ fabric = "fabric-0", vid = 0 }}]

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.35.0/24"
gateway_ip = "10.77.35.1"

[[ip_ranges]]
subnet = "10.77.35.0/24"
start = "10.77.35.100"
end = "10.77.35.199"
kind = "dynamic"
"##,
        state = state.display()
    )
}

fn rack_config(state: &Path, ca: &Path) -> String {
    format!(
        r#"
[controller]
role = "rack"
state_dir = "{state}"
api = "127.0.0.1:5240"
boot_http = "0.0.0.0:5248"

[dhcp]
interfaces = ["br0"]

[cluster]
regions = ["{DEAD_REGION}", "{REGION}"]
secret = "{RACK_SECRET}"
name = "rack-x"
sync_secs = 1
start_wait_secs = 5
region_ca = "{ca}"
"#,
        state = state.display(),
        ca = ca.display()
    )
}

/// One DHCP exchange by busybox udhcpc on `vcli` in `client` (asking for `requested` when
/// given): the address it was acknowledged, if any.
fn udhcpc(client: &Netns, script: &Path, requested: Option<IpAddr>) -> Option<IpAddr> {
    udhcpc_with(client, script, requested, &[])
}

/// [`udhcpc`] with more arguments (`-x` options, `-V` vendor class).
fn udhcpc_with(
    client: &Netns,
    script: &Path,
    requested: Option<IpAddr>,
    extra: &[&str],
) -> Option<IpAddr> {
    let mut cmd = in_ns(client, "busybox");
    cmd.args([
        "udhcpc", "-i", "vcli", "-n", "-q", "-f", "-t", "4", "-T", "3", "-s",
    ])
    .arg(script)
    .args(extra);
    if let Some(ip) = requested {
        cmd.args(["-r", &ip.to_string()]);
    }
    let (lines, _) = run_bounded("udhcpc", cmd, WAIT);
    lines
        .iter()
        .find_map(|l| l.strip_prefix("udhcpc-script: bound ip="))
        .and_then(|ip| ip.trim().parse().ok())
}

/// Polls `check` every 200 ms for at most `WAIT`.
/// Waits (bounded) until `region` shows rack-x serving DHCP on br0 with nothing queued.
fn assert_rack_serves_with_nothing_queued(api: &Api<'_>, region: &Daemon) {
    let expected = (
        Value::Bool(true),
        serde_json::json!(["br0"]),
        Value::from(0),
    );
    let mut health = (Value::Null, Value::Null, Value::Null);
    let shown = eventually(|| {
        let racks = api.get("/api/v1/racks");
        let rack = racks
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == "rack-x"))
            .cloned()
            .unwrap_or(Value::Null);
        health = (
            rack["dhcp_serving"].clone(),
            rack["dhcp_interfaces"].clone(),
            rack["queued_reports"].clone(),
        );
        health == expected
    });
    assert!(
        shown,
        "the region shows the rack's health as {health:?}\n{}",
        region.transcript()
    );
}

fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn start_region(ns: &Netns, config: &Path) -> Daemon {
    let mut cmd = in_ns(ns, controller_binary());
    cmd.arg("--config").arg(config);
    let region = Daemon::spawn("region", cmd);
    assert!(
        region
            .wait_event(WAIT, |e| e["event"] == "listening")
            .is_some(),
        "the region did not start\n{}",
        region.transcript()
    );
    region
}

/// A region on 10.77.34.1 (HTTPS, self-signed) and rack `rack-x` serving DHCP on LAN
/// 10.77.35.0/24, whose `[cluster] regions` lists first an address nobody answers on, then
/// the region: the rack fails over (`region_failover` from the dead URL to the region) and
/// serves through the second. Busybox udhcpc clients on the LAN:
///
/// 1. client 1 gets a lease through the rack (recorded by the region), and the rack's cached
///    configuration (`rack-config.json`, 0600) holds it and the rack's block of 2 addresses;
/// 2. the region is killed (SIGKILL by PID): client 1 asks for its address again and is
///    acknowledged; new clients 2 and 3 get the two addresses of the block; client 4 gets
///    nothing (the block is used up, although the range has free addresses); the rack's status
///    shows the region unreachable and the queued reports;
/// 3. the rack is restarted while the region is still down: it starts from its cache
///    (`region_unreachable_starting_from_cache`), and clients 1 and 2 are acknowledged their
///    addresses again; client 1, a machine the region knows, network-boots as iPXE and is
///    given its boot script's URL and, from the rack, the script the region's template makes
///    for it (host name, MAC);
/// 4. the region is started again: the rack replays its queue, and the region's
///    `GET /api/v1/leases` shows the three clients' addresses bound; client 3, which
///    network-booted (PXE options) while the region was down, is enlisted with its address;
///    the rack's queue is empty and the region reachable.
///
/// The region's `GET /api/v1/racks` shows the rack's health its calls carry: DHCP serving on
/// br0 and nothing queued once it serves (1.), and after its return (4.) it has heard the
/// queue's length on the rack's first call (`rack_health`) and then 0.
///
/// Needs root, `ip`, `busybox` and `curl`. Runs in about 30 s (28 s measured here).
#[test]
fn a_cut_off_rack_renews_leases_from_its_block_and_replays_them() {
    if !can_run("controller_rack_autonomy", &["ip", "busybox", "curl"]) {
        return;
    }
    let scratch = Scratch::new("controller_rack_autonomy");
    let region_ns = Netns::new("maas-ctl34-reg");
    region_ns.bridge("br0", &["10.77.34.1/24"]);
    let region_state = scratch.join("region-state");
    let region_file = scratch.join("region.toml");
    std::fs::write(&region_file, region_config(&region_state)).unwrap();
    let mut region = start_region(&region_ns, &region_file);
    let api = Api::of(&region_ns, &region);
    assert_eq!(api.url, REGION, "{}", region.transcript());
    let ca = region_state.join("tls").join("cert.pem");

    // The rack's LAN, linked to the region's bridge, with four client namespaces.
    let lan = Netns::new("maas-ctl35-lan");
    lan.bridge("br0", &["10.77.35.1/24"]);
    region_ns.attach("br0", "r35", &lan, "uplink");
    lan.ip(&["addr", "add", "10.77.34.2/24", "dev", "uplink"]);
    lan.ip(&["link", "set", "uplink", "up"]);
    let clients: Vec<Netns> = (1..=4u8)
        .map(|i| {
            let client = Netns::new(&format!("maas-ctl35-c{i}"));
            lan.attach("br0", &format!("vc{i}"), &client, "vcli");
            let mac = format!("52:54:00:77:23:{i:02x}");
            client.ip(&["link", "set", "vcli", "address", &mac, "up"]);
            client
        })
        .collect();
    let script = scratch.join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"udhcpc-script: $1 ip=$ip\"\necho \"udhcpc-boot: $boot_file\"\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let rack_state = scratch.join("rack-state");
    let rack_file = scratch.join("rack.toml");
    std::fs::write(&rack_file, rack_config(&rack_state, &ca)).unwrap();
    let mut rack = start_controller(&lan, &rack_file);
    let failover = events_named(&rack, "region_failover");
    assert!(
        failover
            .iter()
            .any(|e| e["from"] == DEAD_REGION && e["to"] == REGION),
        "no failover from the dead region\n{}",
        rack.transcript()
    );
    let rack_api = Api {
        ns: &lan,
        url: "http://127.0.0.1:5240".into(),
        ca: None,
        token: None,
        source: None,
    };
    let status = rack_api.get("/api/v1/rack");
    assert_eq!(
        (&status["region"], &status["region_reachable"]),
        (&Value::from(REGION), &Value::Bool(true)),
        "{status}"
    );

    // 1. A lease through the rack, recorded by the region, and cached by the rack.
    let ip1 = udhcpc(&clients[0], &script, None)
        .unwrap_or_else(|| panic!("client 1 got no lease\n{}", rack.transcript()));
    let bound_in_region = |ip: IpAddr| {
        api.get("/api/v1/leases")
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ip"] == ip.to_string() && l["lease"]["state"] == "bound")
    };
    assert!(bound_in_region(ip1), "{}", api.get("/api/v1/leases"));
    let cache_path = rack_state.join("rack-config.json");
    let mut cache = Value::Null;
    assert!(
        eventually(|| {
            cache = std::fs::read(&cache_path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            cache["snapshot"]
                .to_string()
                .contains(&format!("\"{ip1}\""))
        }),
        "the cache never held {ip1}: {cache}"
    );
    assert!(crate::owner_only(&cache_path));
    let block: Vec<IpAddr> = serde_json::from_value(cache["block"].clone()).unwrap();
    assert_eq!(block.len(), 2, "{cache}");
    assert!(!block.contains(&ip1), "{block:?}");
    // The region hears the rack's health on its calls (the refresh every second carries it):
    // DHCP serving on br0, nothing queued.
    assert_rack_serves_with_nothing_queued(&api, &region);

    // 2. The region dies; the rack notices at its next sync.
    region.kill_hard();
    assert!(
        rack.wait_event(WAIT, |e| e["event"] == "region_cut_off")
            .is_some(),
        "{}",
        rack.transcript()
    );
    assert_eq!(
        udhcpc(&clients[0], &script, Some(ip1)),
        Some(ip1),
        "client 1 was not acknowledged its address again\n{}",
        rack.transcript()
    );
    let ip2 = udhcpc(&clients[1], &script, None)
        .unwrap_or_else(|| panic!("client 2 got no lease\n{}", rack.transcript()));
    // Client 3 network-boots (a BIOS PXE client): a machine to enlist, reported later.
    let pxe = ["-x", "0x5d:0000", "-V", "PXEClient:Arch:00000:UNDI:002001"];
    let ip3 = udhcpc_with(&clients[2], &script, None, &pxe)
        .unwrap_or_else(|| panic!("client 3 got no lease\n{}", rack.transcript()));
    let mut got = vec![ip2, ip3];
    got.sort();
    let mut want = block.clone();
    want.sort();
    assert_eq!(got, want, "new clients outside the block");
    assert_eq!(
        udhcpc(&clients[3], &script, None),
        None,
        "a client past the block got a lease\n{}",
        rack.transcript()
    );
    let status = rack_api.get("/api/v1/rack");
    assert_eq!(status["region_reachable"], false, "{status}");
    assert!(status["queued_reports"].as_u64() >= Some(3), "{status}");

    // 3. Restarted while the region is down: from the cache.
    rack.stop("TERM", Duration::from_secs(5));
    drop(rack);
    let rack = start_controller(&lan, &rack_file);
    assert!(
        !events_named(&rack, "region_unreachable_starting_from_cache").is_empty(),
        "{}",
        rack.transcript()
    );
    assert_eq!(
        udhcpc(&clients[0], &script, Some(ip1)),
        Some(ip1),
        "{}",
        rack.transcript()
    );
    assert_eq!(
        udhcpc(&clients[1], &script, Some(ip2)),
        Some(ip2),
        "{}",
        rack.transcript()
    );
    // The known machine network-boots (iPXE) while every region is away: the rack answers
    // with its boot script's URL and serves the script from its cached configuration.
    let mut cmd = in_ns(&clients[0], "busybox");
    cmd.args([
        "udhcpc",
        "-i",
        "vcli",
        "-n",
        "-q",
        "-f",
        "-t",
        "4",
        "-T",
        "3",
        "-x",
        "0x4d:046950584500",
        "-r",
    ])
    .arg(ip1.to_string())
    .arg("-s")
    .arg(&script);
    let (lines, _) = run_bounded("udhcpc", cmd, WAIT);
    let boot_file = lines
        .iter()
        .filter_map(|l| l.strip_prefix("udhcpc-boot: "))
        .map(str::trim)
        .find(|f| f.starts_with("http://"))
        .unwrap_or_else(|| panic!("no boot URL for iPXE: {lines:?}\n{}", rack.transcript()))
        .to_string();
    // (The test's udhcpc script only prints: the client takes its address by hand.)
    clients[0].ip(&["addr", "add", &format!("{ip1}/24"), "dev", "vcli"]);
    let mut cmd = in_ns(&clients[0], "curl");
    cmd.args(["-sS", "--max-time", "10"]).arg(&boot_file);
    let (chain, _) = run_bounded("curl", cmd, WAIT);
    assert!(
        chain.iter().any(|l| l.contains("chain")),
        "{boot_file}: {chain:?}\n{}",
        rack.transcript()
    );
    let machine_script = format!(
        "{}/ipxe.cfg-52-54-00-77-23-01",
        boot_file.rsplit_once('/').map_or("", |(base, _)| base)
    );
    let mut cmd = in_ns(&clients[0], "curl");
    cmd.args(["-sS", "--max-time", "10"]).arg(&machine_script);
    let (text, _) = run_bounded("curl", cmd, WAIT);
    assert!(
        text.iter()
            .any(|l| l.contains("KNOWN-MARKER known-one 52:54:00:77:23:01")),
        "{machine_script}: {text:?}\n{}",
        rack.transcript()
    );

    // 4. The region is back: the queue reaches it.
    let region = start_region(&region_ns, &region_file);
    let api = Api::of(&region_ns, &region);
    assert!(
        eventually(|| {
            let status = rack_api.get("/api/v1/rack");
            status["queued_reports"] == 0 && status["region_reachable"] == true
        }),
        "the queue was not replayed\n{}\n{}",
        rack.transcript(),
        region.transcript()
    );
    for ip in [ip1, ip2, ip3] {
        assert!(
            bound_in_region(ip),
            "{ip} is not bound in the region: {}\n{}",
            api.get("/api/v1/leases"),
            rack.transcript()
        );
    }
    // The restarted region heard the queue's length on the rack's first call, and hears it
    // empty at the refresh after the replay.
    let heard = events_named(&region, "rack_health");
    assert!(
        heard
            .iter()
            .any(|e| e["rack"] == "rack-x" && e["queued_reports"].as_u64() > Some(0)),
        "the region never heard of queued reports: {heard:?}\n{}",
        region.transcript()
    );
    assert_rack_serves_with_nothing_queued(&api, &region);
    // Client 3's boot was reported when the region came back: enlisted, with its address.
    let machine = api.get("/api/v1/machines/52:54:00:77:23:03");
    assert_eq!(
        (&machine["status"], &machine["ip"]),
        (&Value::from("new"), &Value::from(ip3.to_string())),
        "{machine}"
    );
    assert!(
        !events_named(&rack, "queue_replayed").is_empty(),
        "{}",
        rack.transcript()
    );
    drop(clients);
}
