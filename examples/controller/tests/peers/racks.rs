//! A region over HTTPS and its racks: enrolment, trust in the region's certificate, the VLANs
//! each rack may report about, and a rack's removal.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::can_run;
use crate::support::netns::{Daemon, Netns, Scratch, run_bounded};
use crate::support::qemu::{self, Firmware};
use crate::{
    Api, LIFETIME, WAIT, WAIT_FIRMWARE, controller_binary, events_named, in_ns, listening,
    owner_only, pxe_lan, start_controller,
};

const RACK_SECRET: &str = "a-shared-rack-secret-77";
/// The region's API: off loopback, so HTTPS with its self-signed certificate.
const REGION: &str = "https://10.77.33.1:5240";

/// A rack's file: rack `name` of the region at `region`, trusting it as `trust` says (a
/// `region_ca` or `region_fingerprint` line), its state in `state`, its own API and boot HTTP
/// on `listen`, DHCP on `br0` when `dhcp`.
fn rack_config(
    name: &str,
    state: &Path,
    trust: &str,
    region: &str,
    (api, boot_http): (&str, &str),
    dhcp: bool,
) -> String {
    let dhcp = if dhcp {
        "[dhcp]\ninterfaces = [\"br0\"]\n"
    } else {
        ""
    };
    format!(
        r#"
[controller]
role = "rack"
state_dir = "{state}"
api = "{api}"
boot_http = "{boot_http}"

{dhcp}
[cluster]
region = "{region}"
secret = "{RACK_SECRET}"
name = "{name}"
sync_secs = 2
{trust}
"#,
        state = state.display()
    )
}

/// Starts the controller of file `config` in `ns` and waits (bounded) for it to exit by
/// itself: its exit status, and its output.
fn run_until_exit(
    ns: &Netns,
    name: &str,
    config: &Path,
) -> (Option<std::process::ExitStatus>, String) {
    let mut cmd = in_ns(ns, controller_binary());
    cmd.arg("--config").arg(config);
    let mut rack = Daemon::spawn(name, cmd);
    let status = rack.wait_exit(WAIT);
    (status, rack.transcript())
}

/// Region and two racks, each rack on its own network namespace and LAN: a QEMU (BIOS, iPXE)
/// machine on each LAN, unknown to everyone, PXE-boots from its rack: it gets a lease from its
/// own subnet's dynamic range, which the rack acknowledged only after the region recorded it,
/// and runs the script the region's template makes. Both leases and both machines land in the
/// region; no address is handed out twice, and an address the region had leased to another
/// client before the racks started is never offered.
///
/// The region listens off loopback, so on HTTPS with a self-signed certificate: curl trusts
/// it with `--cacert` and refuses it without; rack A trusts it with `region_ca`, rack B with
/// `region_fingerprint` (from the region's `listening` line). Racks enrol
/// once with the shared secret and use their own credential (a 0600 file) from then on: the
/// rack endpoints refuse no token, the shared secret itself and a wrong secret (401), and a
/// name enrolled already (409). The region lists each rack's VLANs: rack A reporting a lease
/// on rack B's VLAN is refused (403) and the refusal is in the audit trail. Last, an admin
/// removes rack B with `cli remove-rack --ca`: its next sync is refused (401), the region no
/// longer lists it, and restarted it exits with that refusal.
#[test]
fn a_region_and_two_racks_boot_a_machine_on_each_rack() {
    if !can_run(
        "controller_racks",
        &["ip", "qemu-system-x86_64", "curl", "dnsmasq"],
    ) {
        return;
    }
    if !qemu::installed("controller_racks", Firmware::Bios) {
        return;
    }
    let scratch = Scratch::new("controller_racks");
    // The region's network: a bridge the racks join.
    let region_ns = Netns::new("maas-ctl33-reg");
    region_ns.bridge("br0", &["10.77.33.1/24"]);
    let region_state = scratch.join("region-state");
    let region_config = scratch.join("region.toml");
    std::fs::write(
        &region_config,
        format!(
            r##"
[controller]
role = "region"
state_dir = "{state}"
api = "10.77.33.1:5240"
boot_http = "127.0.0.1:5248"
ipxe_script = "#!ipxe\necho CONTROLLER-MARKER {{hostname}} {{mac}} {{status}}\nsleep 60\n"

[cluster]
secret = "{RACK_SECRET}"

[[cluster.racks]]
name = "rack-a"
vlans = [{{ fabric = "fabric-a", vid = 0 }}]

[[cluster.racks]]
name = "rack-b"
vlans = [{{ fabric = "fabric-b", vid = 0 }}]

# A rack that served fabric A before these two.
[[cluster.racks]]
name = "rack-old"
vlans = [{{ fabric = "fabric-a", vid = 0 }}]

[[fabrics]]
name = "fabric-a"

[[fabrics]]
name = "fabric-b"

[[vlans]]
fabric = "fabric-a"
vid = 0
dhcp_on = true

[[vlans]]
fabric = "fabric-b"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.31.0/24"
fabric = "fabric-a"
gateway_ip = "10.77.31.1"

[[subnets]]
cidr = "10.77.32.0/24"
fabric = "fabric-b"
gateway_ip = "10.77.32.1"

[[ip_ranges]]
subnet = "10.77.31.0/24"
start = "10.77.31.100"
end = "10.77.31.199"
kind = "dynamic"

[[ip_ranges]]
subnet = "10.77.32.0/24"
start = "10.77.32.100"
end = "10.77.32.199"
kind = "dynamic"
"##,
            state = region_state.display()
        ),
    )
    .unwrap();
    let mut cmd = in_ns(&region_ns, controller_binary());
    cmd.arg("--config").arg(&region_config);
    let region = Daemon::spawn("region", cmd);
    assert!(
        region
            .wait_event(WAIT, |e| e["event"] == "listening")
            .is_some(),
        "the region did not start\n{}",
        region.transcript()
    );

    // HTTPS with the self-signed certificate: curl trusts it with --cacert only.
    let api = Api::of(&region_ns, &region);
    assert_eq!(api.url, REGION, "{}", region.transcript());
    let cert = region_state.join("tls").join("cert.pem");
    assert_eq!(api.ca.as_deref(), Some(cert.to_str().unwrap()));
    let fingerprint = listening(&region)["tls_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let me = api.get("/api/v1/whoami");
    assert_eq!(me["role"], "admin", "{me}");
    let untrusted = Api {
        ca: None,
        ..api.clone()
    }
    .call("GET", "/api/v1/version", None);
    assert_eq!(untrusted.exit, Some(60), "{}", untrusted.output);
    assert!(
        untrusted.output.contains("certificate"),
        "{}",
        untrusted.output
    );

    // A rack enrols with the shared secret, once, and reports with its own credential.
    let enrol = |name: &str, secret: &str| {
        api.with_token(Some(secret))
            .rack_call(name, "POST", "/api/v1/rack/enrol", None)
    };
    let old = enrol("rack-old", RACK_SECRET);
    assert_eq!(old.status, 201, "{}", old.output);
    let old_credential = old.json["credential"].as_str().unwrap().to_string();
    assert!(old_credential.starts_with("maas_"), "{}", old.output);
    let rack_old = api.with_token(Some(&old_credential));
    // The first address of rack A's range is leased by the old rack before these racks
    // start; a second claim on it is refused.
    let taken = r#"{"op": "bind", "ip": "10.77.31.100", "client": {"mac": "52:54:00:77:1f:99"}}"#;
    let lease = rack_old.rack_call("rack-old", "POST", "/api/v1/rack/leases", Some(taken));
    assert_eq!(lease.status, 200, "{}", lease.output);
    assert_eq!(lease.json["lease"]["state"], "bound", "{}", lease.output);
    let again = taken.replace("1f:99", "1f:98");
    let refused = rack_old.rack_call("rack-old", "POST", "/api/v1/rack/leases", Some(&again));
    assert_eq!(refused.status, 409, "{}", refused.output);
    assert!(
        refused.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("10.77.31.100")),
        "{}",
        refused.output
    );
    // Without a credential, with the shared secret instead of one, or enrolling with a wrong
    // secret: 401. A name enrolled already: 409.
    for (who, reply) in [
        (
            "no credential",
            api.with_token(None)
                .rack_call("rack-old", "GET", "/api/v1/rack/config", None),
        ),
        (
            "the shared secret",
            api.with_token(Some(RACK_SECRET)).rack_call(
                "rack-old",
                "GET",
                "/api/v1/rack/config",
                None,
            ),
        ),
        ("a wrong secret", enrol("rack-new", "not-the-secret-at-all")),
    ] {
        assert_eq!(reply.status, 401, "{who}: {}", reply.output);
    }
    let twice = enrol("rack-old", RACK_SECRET);
    assert_eq!(twice.status, 409, "{}", twice.output);

    // Two racks, each with its LAN (bridge, tap for its machine) and a link to the region;
    // rack A trusts the region's certificate file, rack B its fingerprint.
    let mut racks = Vec::new();
    for (n, name, link_ip, trust) in [
        (
            31u8,
            "rack-a",
            "10.77.33.2/24",
            format!("region_ca = \"{}\"", cert.display()),
        ),
        (
            32,
            "rack-b",
            "10.77.33.3/24",
            format!("region_fingerprint = \"{fingerprint}\""),
        ),
    ] {
        let (lan, ra) = pxe_lan(n, &scratch);
        let port = format!("r{n}");
        region_ns.attach("br0", &port, &lan, "uplink");
        lan.ip(&["addr", "add", link_ip, "dev", "uplink"]);
        lan.ip(&["link", "set", "uplink", "up"]);
        let config_path = scratch.join(&format!("{name}.toml"));
        let state = scratch.join(&format!("{name}-state"));
        let text = rack_config(
            name,
            &state,
            &trust,
            REGION,
            ("127.0.0.1:5240", "0.0.0.0:5248"),
            true,
        );
        std::fs::write(&config_path, text).unwrap();
        let rack = start_controller(&lan, &config_path);
        let credential = state.join("rack-credential");
        assert!(
            events_named(&rack, "rack_enrolled").len() == 1 && owner_only(&credential),
            "{name} did not enrol, or its credential file is not 0600\n{}",
            rack.transcript()
        );
        racks.push((n, name, lan, ra, rack, config_path, credential));
    }

    // One unknown machine on each rack's LAN.
    let mut vms = Vec::new();
    for (n, _, lan, ..) in &racks {
        let mac = format!("52:54:00:77:{n:02x}:10");
        let serial = scratch.join(&format!("serial-{n}"));
        let dir = scratch.join(&format!("vm-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let vm = qemu::boot(lan, Firmware::Bios, &mac, &serial, &dir, LIFETIME);
        vms.push((*n, mac, serial, vm));
    }

    // While they boot: rack A, with its own credential, reports a lease on rack B's VLAN:
    // refused, and the refusal is in the audit trail. Its name cannot be enrolled again.
    let (_, _, lan_a, _, _, _, credential_a) = &racks[0];
    let credential_a = std::fs::read_to_string(credential_a).unwrap();
    let from_a = api.seen_from(lan_a).with_token(Some(credential_a.trim()));
    let off_vlan =
        r#"{"op": "bind", "ip": "10.77.32.150", "client": {"mac": "52:54:00:77:20:77"}}"#;
    let refused = from_a.rack_call("rack-a", "POST", "/api/v1/rack/leases", Some(off_vlan));
    assert_eq!(refused.status, 403, "{}", refused.output);
    assert!(
        refused.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("rack-a") && e.contains("10.77.32.150")),
        "{}",
        refused.output
    );
    let audit = api.get("/api/v1/audit?rack=rack-a");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["who"] == "rack:rack-a"
                && e["action"] == "POST /api/v1/rack/leases"
                && e["status"] == 403),
        "{audit}"
    );
    let twice = enrol("rack-a", RACK_SECRET);
    assert_eq!(twice.status, 409, "{}", twice.output);
    // A rack refuses the deploy endpoints (it would act on its copy of the region's state)
    // rather than half-serving them.
    for path in ["/metadata/v1/deploy", "/metadata/v1/seed/maas_x/meta-data"] {
        let mut cmd = lan_a.command("curl", LIFETIME);
        cmd.args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:5248{path}"));
        let (lines, _) = run_bounded("curl", cmd, WAIT);
        assert_eq!(lines.join(""), "501", "{path}: {lines:?}");
    }

    for ((n, mac, serial, _), (_, name, _, _, rack, ..)) in vms.iter().zip(&racks) {
        let line =
            qemu::wait_serial(serial, "CONTROLLER-MARKER", WAIT_FIRMWARE).unwrap_or_else(|| {
                panic!(
                    "the machine on {name} did not run its script\n{}\n{}\n{}",
                    rack.transcript(),
                    region.transcript(),
                    qemu::serial_text(serial)
                )
            });
        assert!(
            line.contains(mac.as_str()) && line.contains("new"),
            "{n}: {line}"
        );
    }

    // Both leases are in the region, each in its rack's range, none twice, not the
    // reserved one; both machines are enlisted there with their addresses.
    let leases = api.get("/api/v1/leases");
    let mut seen_ips = std::collections::BTreeSet::new();
    for (n, mac, _, _) in &vms {
        let lease = leases
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["mac"] == mac.as_str() && l["lease"]["state"] == "bound")
            .unwrap_or_else(|| panic!("no lease for {mac} in the region: {leases}"));
        let ip: Ipv4Addr = lease["ip"].as_str().unwrap().parse().unwrap();
        // Rack A's first address was taken before the racks started.
        let first = if *n == 31 { 101 } else { 100 };
        assert!(
            (Ipv4Addr::new(10, 77, *n, first)..=Ipv4Addr::new(10, 77, *n, 199)).contains(&ip),
            "{mac} got {ip}"
        );
        assert!(seen_ips.insert(ip), "{ip} handed out twice: {leases}");
        let machine = api.get(&format!("/api/v1/machines/{mac}"));
        assert_eq!(machine["status"], "new", "{machine}");
        assert_eq!(machine["ip"], ip.to_string(), "{machine}");
    }
    let addresses: Vec<&str> = leases
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ip"].as_str())
        .collect();
    let unique: std::collections::BTreeSet<&&str> = addresses.iter().collect();
    assert_eq!(unique.len(), addresses.len(), "{leases}");
    assert!(!addresses.contains(&"10.77.32.150"), "{leases}");
    let listed = api.get("/api/v1/racks");
    let find = |listed: &Value, name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
    };
    for (n, name, ..) in &racks {
        let rack = find(&listed, name).unwrap_or_else(|| panic!("{name} not listed: {listed}"));
        assert!(rack["leases_recorded"].as_u64() >= Some(1), "{rack}");
        let fabric = if *n == 31 { "fabric-a" } else { "fabric-b" };
        assert_eq!(
            rack["vlans"],
            serde_json::json!([{ "fabric": fabric, "vid": 0 }]),
            "{rack}"
        );
    }
    // The address leased before is still the other client's.
    let first = leases
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ip"] == "10.77.31.100")
        .unwrap_or_else(|| panic!("{leases}"));
    assert_eq!(first["mac"], "52:54:00:77:1f:99", "{first}");
    drop(vms);

    // The command line, trusting the region by fingerprint, then by its certificate
    // file, lists the racks and removes rack B.
    let cli = |trust: &[&str], args: &[&str]| {
        let mut cmd = in_ns(&region_ns, controller_binary());
        cmd.args(["cli", "--api", REGION])
            .args(trust)
            .args(args)
            .env("MAAS_TOKEN", api.token.as_deref().unwrap())
            .env("MAAS_PROFILE", scratch.join("profile.json"));
        let (lines, status) = run_bounded("cli", cmd, WAIT);
        (status.is_some_and(|s| s.success()), lines.join("\n"))
    };
    let (ok, out) = cli(&["--fingerprint", &fingerprint], &["racks"]);
    assert!(ok && out.contains("rack-b"), "{out}");
    let (ok, out) = cli(
        &["--ca", cert.to_str().unwrap()],
        &["remove-rack", "rack-b"],
    );
    assert!(ok && out.contains("rack-b"), "{out}");
    // Its credential is refused at once: its next sync says so.
    let (_, _, lan_b, _, rack_b, config_b, _) = &mut racks[1];
    let refusal = rack_b.wait_event(WAIT, |e| {
        e["event"] == "region_unreachable" && e["error"].as_str().is_some_and(|e| e.contains("401"))
    });
    assert!(
        refusal.is_some(),
        "rack-b's sync was not refused\n{}",
        rack_b.transcript()
    );
    let listed = api.get("/api/v1/racks");
    assert!(find(&listed, "rack-b").is_none(), "{listed}");
    let audit = api.get("/api/v1/audit?user=admin");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "DELETE /api/v1/racks/{name}"
                && e["target"] == "rack-b"
                && e["status"] == 200),
        "{audit}"
    );
    // Restarted, it exits at once with the refusal (no retry).
    rack_b.stop("TERM", Duration::from_secs(5));
    let (status, output) = run_until_exit(lan_b, "rack-b", config_b);
    assert!(
        status.is_some_and(|s| !s.success()),
        "removed rack-b started again ({status:?})\n{output}"
    );
    assert!(output.contains("401"), "{output}");
}

/// A rack that does not trust its region's certificate exits at start, with an error about
/// the certificate, and never enrols. The region listens off loopback (10.77.39.1: HTTPS with
/// its self-signed certificate); one rack pins a fingerprint that is not the region's, another
/// trusts a CA file holding another certificate. Both exit by themselves (no retry) with a
/// failure status, their output mentions the certificate, neither has a credential file, and
/// the region lists no rack. The command line pinning the wrong fingerprint fails the same way.
#[test]
fn a_rack_that_does_not_trust_the_region_certificate_exits_at_start() {
    if !can_run("controller_rack_trust", &["ip", "curl", "openssl"]) {
        return;
    }
    let scratch = Scratch::new("controller_rack_trust");
    let ns = Netns::new("maas-ctl39-reg");
    ns.bridge("br0", &["10.77.39.1/24"]);
    let region_config = scratch.join("region.toml");
    std::fs::write(
        &region_config,
        format!(
            r#"
[controller]
role = "region"
state_dir = "{state}"
api = "10.77.39.1:5240"
boot_http = "127.0.0.1:5248"

[cluster]
secret = "{RACK_SECRET}"

[[cluster.racks]]
name = "rack-pin"
vlans = [{{ fabric = "fabric-0", vid = 0 }}]

[[cluster.racks]]
name = "rack-ca"
vlans = [{{ fabric = "fabric-0", vid = 0 }}]

[[vlans]]
fabric = "fabric-0"
vid = 0

[[subnets]]
cidr = "10.77.39.0/24"
"#,
            state = scratch.join("region-state").display()
        ),
    )
    .unwrap();
    let region = start_controller(&ns, &region_config);
    let api = Api::of(&ns, &region);
    let region_url = "https://10.77.39.1:5240";
    assert_eq!(api.url, region_url, "{}", region.transcript());
    let fingerprint = listening(&region)["tls_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = {
        let mut hex = fingerprint.clone();
        let first = if hex.starts_with("00") { "11" } else { "00" };
        hex.replace_range(..2, first);
        hex
    };
    // Another self-signed certificate, for the same address.
    let other = scratch.join("other.pem");
    let mut openssl = Command::new("openssl");
    openssl
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=10.77.39.1"])
        .args(["-addext", "subjectAltName=IP:10.77.39.1", "-keyout"])
        .arg(scratch.join("other.key"))
        .arg("-out")
        .arg(&other);
    let (lines, status) = run_bounded("openssl", openssl, WAIT);
    assert!(status.is_some_and(|s| s.success()), "{lines:?}");

    // The command line pinning the wrong fingerprint is refused, about the certificate.
    let mut cli = in_ns(&ns, controller_binary());
    cli.args(["cli", "--api", region_url, "--fingerprint", &wrong, "racks"])
        .env("MAAS_TOKEN", api.token.as_deref().unwrap())
        .env("MAAS_PROFILE", scratch.join("profile.json"));
    let (lines, status) = run_bounded("cli", cli, WAIT);
    assert!(
        status.is_some_and(|s| !s.success()) && lines.join("\n").contains("certificate"),
        "{lines:?}"
    );

    let mut racks = Vec::new();
    for (i, (name, trust)) in [
        ("rack-pin", format!("region_fingerprint = \"{wrong}\"")),
        ("rack-ca", format!("region_ca = \"{}\"", other.display())),
    ]
    .into_iter()
    .enumerate()
    {
        let config = scratch.join(&format!("{name}.toml"));
        let state = scratch.join(&format!("{name}-state"));
        let api = format!("127.0.0.1:{}", 5250 + 2 * i);
        let boot_http = format!("127.0.0.1:{}", 5251 + 2 * i);
        let text = rack_config(name, &state, &trust, region_url, (&api, &boot_http), false);
        std::fs::write(&config, text).unwrap();
        let mut cmd = in_ns(&ns, controller_binary());
        cmd.arg("--config").arg(&config);
        racks.push((name, state, Daemon::spawn(name, cmd)));
    }
    for (name, state, rack) in &mut racks {
        let status = rack.wait_exit(WAIT);
        let output = rack.transcript();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{name}, not trusting the region, did not exit by itself ({status:?})\n{output}"
        );
        assert!(output.contains("certificate"), "{output}");
        assert!(!state.join("rack-credential").exists(), "{output}");
    }
    assert_eq!(api.get("/api/v1/racks"), serde_json::json!([]));
    assert!(
        events_named(&region, "rack_enrolled").is_empty(),
        "{}",
        region.transcript()
    );
}
