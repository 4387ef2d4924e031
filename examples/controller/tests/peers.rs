//! The controller end to end in a network namespace: a QEMU machine it has never
//! seen PXE-boots from it (iPXE on BIOS): it leases an address from the managed dynamic range,
//! fetches its own iPXE script over HTTP, and the script's marker shows on its serial console;
//! the machine is then listed as new by the API. Then the controller is killed with SIGKILL
//! and restarted: the lease and the machine are still there, and the same MAC gets the same
//! address again.
//!
//! The QEMU test needs root and the peers `scripts/setup.sh` installs; without them it prints
//! why and passes. The command-line test runs anywhere (loopback).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::netns::{Daemon, Netns, Scratch, run_bounded};
use support::power::{IpmiSim, ipmitool};
use support::qemu::{self, Firmware};
use support::{can_run, existing};

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

/// An API request with curl inside `ns`: `method` on `url`, with a bearer `secret` and a
/// JSON `body` when given; the JSON answer, or `None` with curl's output when it is not JSON.
fn request(
    ns: &Netns,
    method: &str,
    url: &str,
    secret: Option<&str>,
    body: Option<&str>,
) -> Result<Value, Vec<String>> {
    let mut cmd = in_ns(ns, "curl");
    cmd.args(["-sS", "--max-time", "90", "-X", method]);
    if let Some(secret) = secret {
        // Only the rack endpoints take a secret; they want the rack protocol's version too.
        cmd.args(["-H", &format!("authorization: Bearer {secret}")]);
        cmd.args(["-H", "x-maas-protocol: 1"]);
    }
    if let Some(body) = body {
        cmd.args(["-H", "content-type: application/json", "-d", body]);
    }
    cmd.arg(url);
    let (lines, _) = run_bounded("curl", cmd, Duration::from_secs(120));
    serde_json::from_str::<Value>(&lines.join("\n")).map_err(|_| lines)
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

/// `GET` on the controller's API from inside the namespace.
fn api(ns: &Netns, path: &str) -> Value {
    let mut cmd = in_ns(ns, "curl");
    cmd.args(["-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:5240{path}"));
    let (lines, status) = run_bounded("curl", cmd, WAIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "curl {path}: {lines:?}"
    );
    serde_json::from_str(&lines.join("\n")).unwrap_or_else(|e| panic!("{path}: {e}: {lines:?}"))
}

#[test]
fn an_unknown_qemu_machine_boots_is_enlisted_and_keeps_its_address_across_a_kill() {
    if !can_run(
        "controller_qemu",
        &["ip", "qemu-system-x86_64", "curl", "busybox", "dnsmasq"],
    ) {
        return;
    }
    if !qemu::installed("controller_qemu", Firmware::Bios) {
        return;
    }
    let n = 24;
    let scratch = Scratch::new("controller_qemu");
    let (ns, _ra) = pxe_lan(n, &scratch);
    let config_path = scratch.join("controller.toml");
    std::fs::write(&config_path, config(n, &scratch.join("state"), "")).unwrap();
    let mut controller = start_controller(&ns, &config_path);

    let serial = scratch.join("serial");
    let mac = "52:54:00:77:18:10";
    let mut vm = qemu::boot(
        &ns,
        Firmware::Bios,
        mac,
        &serial,
        &scratch.join(""),
        LIFETIME,
    );

    let line = marker_line(&serial, &controller);
    eprintln!("controller_qemu: serial says {line:?}");
    assert!(line.contains(&format!("node-771810 {mac} new")), "{line}");

    // The lease is in IPAM and the machine is listed as new, with its address and boot answer.
    let machine = api(&ns, &format!("/api/v1/machines/{mac}"));
    assert_eq!(machine["status"], "new", "{machine}");
    assert_eq!(machine["origin"], "enlisted", "{machine}");
    assert_eq!(machine["boot"]["choice"], "ipxe", "{machine}");
    let ip: Ipv4Addr = machine["ip"].as_str().unwrap().parse().unwrap();
    assert!(
        (Ipv4Addr::new(10, 77, n, 100)..=Ipv4Addr::new(10, 77, n, 199)).contains(&ip),
        "{ip}"
    );
    let leases = api(&ns, "/api/v1/leases");
    let lease = leases
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ip"] == ip.to_string())
        .unwrap_or_else(|| panic!("{ip} not among the leases: {leases}"));
    assert_eq!(lease["mac"], mac, "{lease}");
    assert_eq!(lease["lease"]["state"], "bound", "{lease}");

    // SIGKILL, restart: the machine and the lease are still there.
    vm.kill_hard();
    controller.kill_hard();
    let controller = start_controller(&ns, &config_path);
    let machine = api(&ns, &format!("/api/v1/machines/{mac}"));
    assert_eq!(machine["ip"], ip.to_string(), "{machine}");
    let leases = api(&ns, "/api/v1/leases");
    assert!(
        leases
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ip"] == ip.to_string()),
        "{leases}"
    );
    // The same MAC asks again (udhcpc on a link of the bridge) and gets the same address.
    let client = Netns::new(&format!("maas-ctl{n}-cli"));
    ns.attach("br0", "vcl", &client, "vcli");
    client.ip(&["link", "set", "vcli", "address", mac, "up"]);
    let script = scratch.join("udhcpc.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"udhcpc-script: $1 ip=$ip\"\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut udhcpc = in_ns(&client, "busybox");
    udhcpc
        .args([
            "udhcpc", "-i", "vcli", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s",
        ])
        .arg(&script);
    let (lines, _) = run_bounded("udhcpc", udhcpc, WAIT);
    let bound = lines
        .iter()
        .find(|l| l.starts_with("udhcpc-script: bound"))
        .unwrap_or_else(|| {
            panic!(
                "no lease after restart: {lines:?}\n{}",
                controller.transcript()
            )
        });
    assert!(
        bound.ends_with(&format!("ip={ip}")),
        "{bound}, expected {ip}"
    );
}

/// The command line against a running controller (no root needed: loopback, ports the
/// kernel picks).
#[test]
fn the_cli_drives_the_api() {
    let scratch = Scratch::new("controller_cli");
    let config = scratch.join("controller.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[controller]
state_dir = "{}"
api = "127.0.0.1:0"
boot_http = "127.0.0.1:0"

[[subnets]]
cidr = "10.77.25.0/24"
gateway_ip = "10.77.25.1"

[[machines]]
mac = "52:54:00:77:19:10"
hostname = "node1"
"#,
            scratch.join("state").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(controller_binary());
    cmd.arg("--config").arg(&config);
    let controller = Daemon::spawn("controller", cmd);
    let listening = controller
        .wait_event(WAIT, |e| e["event"] == "listening")
        .unwrap_or_else(|| panic!("no start\n{}", controller.transcript()));
    let api = format!("http://{}", listening["api"].as_str().unwrap());
    let cli = |args: &[&str]| -> (bool, String) {
        let mut cmd = Command::new(controller_binary());
        cmd.args(["cli", "--api", &api]).args(args);
        let (lines, status) = run_bounded("cli", cmd, WAIT);
        (status.is_some_and(|s| s.success()), lines.join("\n"))
    };
    let (ok, out) = cli(&["machines"]);
    assert!(ok && out.contains("\"hostname\": \"node1\""), "{out}");
    let (ok, out) = cli(&["add-machine", "52:54:00:77:19:11", "--hostname", "node2"]);
    assert!(ok && out.contains("\"origin\": \"api\""), "{out}");
    let (ok, out) = cli(&["add-machine", "52:54:00:77:19:11"]);
    assert!(
        !ok && out.contains("409") && out.contains("exists already"),
        "{out}"
    );
    let (ok, out) = cli(&[
        "reserve",
        "--subnet",
        "0",
        "--sticky",
        "--mac",
        "52:54:00:77:19:11",
    ]);
    assert!(ok && out.contains("\"ip\": \"10.77.25.2\""), "{out}");
    let (ok, out) = cli(&["reserve", "--ip", "10.77.25.2"]);
    assert!(!ok && out.contains("10.77.25.2"), "{out}");
    let (ok, out) = cli(&["release", "10.77.25.2"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["statistics", "0"]);
    assert!(ok && out.contains("num_available"), "{out}");
    let (ok, out) = cli(&["metrics"]);
    assert!(ok && out.contains("maas_api_requests_total"), "{out}");
    let (ok, out) = cli(&["frobnicate"]);
    assert!(!ok && out.contains("unrecognized subcommand"), "{out}");
    drop(controller);
    // Nothing listens any more: a clear error, not a hang.
    let (ok, out) = cli(&["machines"]);
    assert!(!ok && out.contains("is the controller running"), "{out}");
}

/// UEFI end to end: edk2's own PXE gets `bootx64.efi` (iPXE's EFI build, from the boot
/// assets) over the controller's TFTP, which then DHCPs as iPXE, fetches the per-machine script
/// over HTTP and prints its marker; the machine is enlisted with both boot answers' last.
#[test]
fn an_unknown_uefi_machine_boots_over_tftp_and_http() {
    const IPXE_EFI: &str = "/usr/lib/ipxe/ipxe.efi";
    if !can_run(
        "controller_uefi",
        &["ip", "qemu-system-x86_64", "curl", "dnsmasq"],
    ) {
        return;
    }
    if !qemu::installed("controller_uefi", Firmware::Uefi) {
        return;
    }
    if !Path::new(IPXE_EFI).exists() {
        eprintln!("skipping controller_uefi: no {IPXE_EFI} (ipxe)");
        return;
    }
    let n = 26;
    let scratch = Scratch::new("controller_uefi");
    let assets = scratch.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::copy(IPXE_EFI, assets.join("bootx64.efi")).unwrap();
    let (ns, _ra) = pxe_lan(n, &scratch);
    let config_path = scratch.join("controller.toml");
    let extra = format!(
        "tftp = \"0.0.0.0:69\"\nboot_assets = \"{}\"\n",
        assets.display()
    );
    std::fs::write(&config_path, config(n, &scratch.join("state"), &extra)).unwrap();
    let controller = start_controller(&ns, &config_path);

    let serial = scratch.join("serial");
    let mac = "52:54:00:77:1a:30";
    let _vm = qemu::boot(
        &ns,
        Firmware::Uefi,
        mac,
        &serial,
        &scratch.join(""),
        LIFETIME,
    );
    let line = marker_line(&serial, &controller);
    eprintln!("controller_uefi: serial says {line:?}");
    assert!(line.contains(&format!("node-771a30 {mac} new")), "{line}");
    // The boot loader went out over TFTP, whole.
    let transfer = controller
        .wait_event(WAIT, |e| {
            e["source"] == "tftp" && e["file"] == "bootx64.efi" && e["outcome"] == "completed"
        })
        .unwrap_or_else(|| panic!("no completed TFTP transfer\n{}", controller.transcript()));
    let size = std::fs::metadata(assets.join("bootx64.efi")).unwrap().len();
    assert_eq!(transfer["bytes"].as_u64(), Some(size), "{transfer}");
    let machine = api(&ns, &format!("/api/v1/machines/{mac}"));
    assert_eq!(machine["status"], "new", "{machine}");
    assert!(machine["ip"].is_string(), "{machine}");
    // Per-machine files come from machine state, over TFTP and HTTP alike.
    let mut cmd = in_ns(&ns, "curl");
    cmd.args(["-sS", "--max-time", "10"]).arg(format!(
        "tftp://10.77.{n}.1/pxelinux.cfg/01-52-54-00-77-1a-30"
    ));
    let (lines, _) = run_bounded("curl", cmd, WAIT);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("node-771a30 ({mac}) is new"))),
        "{lines:?}"
    );
}

/// Power end to end: a machine whose BMC is OpenIPMI's ipmi_sim (RMCP+ suite 3, OPERATOR) is
/// set to network-boot and powered on through the API, then off; the simulator's state and
/// `ipmitool` reading it back agree.
#[test]
fn the_api_powers_a_machine_through_ipmi() {
    if !can_run(
        "controller_ipmi",
        &["ip", "ipmi_sim", "ipmitool", "curl", "ss"],
    ) {
        return;
    }
    let name = "maas-ctl27-bmc";
    let ns = Netns::new(name);
    let scratch = Scratch::new("controller_ipmi");
    let sim = IpmiSim::start(&ns, name, &scratch, "127.0.0.1", 9627, LIFETIME);
    sim.set_value("power", "0");
    let config_path = power_config(
        &scratch,
        27,
        1,
        r#"power_type = "ipmi", power_address = "127.0.0.1:9627", power_user = "oper", power_pass = "operpass""#,
    );
    let controller = start_controller(&ns, &config_path);
    let post = |path: &str| {
        request(
            &ns,
            "POST",
            &format!("http://127.0.0.1:5240{path}"),
            None,
            None,
        )
        .unwrap_or_else(|out| panic!("{path}: {out:?}\n{}", controller.transcript()))
    };
    let chassis = || {
        let out = ipmitool(
            &ns,
            9627,
            "admin",
            "password",
            &["chassis", "power", "status"],
        );
        out.join("\n")
    };
    let on = post("/api/v1/machines/52:54:00:77:1b:10/power-on");
    assert_eq!(on["state"], "on", "{on}");
    assert_eq!(sim.value("power").as_deref(), Some("1"));
    assert_eq!(sim.value("boot").as_deref(), Some("pxe"));
    assert!(chassis().contains("is on"), "{}", chassis());
    let seen = api(&ns, "/api/v1/machines/52:54:00:77:1b:10/power");
    assert_eq!(seen["state"], "on", "{seen}");
    let off = post("/api/v1/machines/52:54:00:77:1b:10/power-off");
    assert_eq!(off["state"], "off", "{off}");
    assert_eq!(sim.value("power").as_deref(), Some("0"));
    assert!(chassis().contains("is off"), "{}", chassis());
    // The password never shows in the API.
    let machine = api(&ns, "/api/v1/machines/52:54:00:77:1b:10");
    assert_eq!(machine["power"]["power_pass"], "********", "{machine}");
    assert_eq!(machine["power_state"]["state"], "off", "{machine}");

    // Someone turns the machine on behind the controller's back: the monitor notices.
    let out = ipmitool(&ns, 9627, "admin", "password", &["chassis", "power", "on"]);
    assert!(out.join("\n").contains("Up/On"), "{out:?}");
    let seen = wait_power_state(&ns, "52:54:00:77:1b:10", "on");
    assert!(
        seen,
        "the monitor never saw the machine on\n{}",
        controller.transcript()
    );
    assert!(
        controller
            .events()
            .iter()
            .any(|e| e["event"] == "power_monitor"),
        "{}",
        controller.transcript()
    );
}

/// A controller file (in `scratch`) for subnet `10.77.n.0/24` with one machine
/// `52:54:00:77:<n>:10` powered by `power` (inline-table contents), monitored every
/// `monitor` seconds (0: never).
fn power_config(scratch: &Scratch, n: u8, monitor: u64, power: &str) -> PathBuf {
    let path = scratch.join("controller.toml");
    let text = format!(
        "[controller]\nstate_dir = \"{state}\"\napi = \"127.0.0.1:5240\"\n\
         boot_http = \"127.0.0.1:5248\"\n\n[power]\nmonitor_interval_secs = {monitor}\n\n\
         [[subnets]]\ncidr = \"10.77.{n}.0/24\"\n\n[[machines]]\nmac = \"52:54:00:77:{n:02x}:10\"\n\
         power = {{ {power} }}\n",
        state = scratch.join("state").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Polls the machine's `power_state` (what the monitor last saw) until it is `want`, for at
/// most 20 s.
fn wait_power_state(ns: &Netns, mac: &str, want: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let machine = api(ns, &format!("/api/v1/machines/{mac}"));
        if machine["power_state"]["state"] == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

/// Power end to end through Redfish: a machine whose BMC is sushy-emulator (fake driver,
/// basic auth) is set to network-boot and powered on, queried, and powered off through the
/// API; the emulator's own resource agrees each time, and the boot override is set to Pxe.
/// An explicit boot request (disk, persistent) is applied too.
#[test]
fn the_api_powers_a_machine_through_redfish() {
    if !can_run("controller_redfish", &["ip", "curl", "ss"]) {
        return;
    }
    if support::power::sushy_emulator().is_none() {
        eprintln!("skipping controller_redfish: no sushy-emulator (run scripts/setup.sh)");
        return;
    }
    let name = "maas-ctl28-rf";
    let ns = Netns::new(name);
    let scratch = Scratch::new("controller_redfish");
    let emulator = support::power::start_sushy(&ns, name, &scratch, 8628, LIFETIME);
    let config_path = power_config(
        &scratch,
        28,
        0,
        r#"power_type = "redfish", power_address = "http://127.0.0.1:8628", power_user = "admin", power_pass = "password""#,
    );
    let controller = start_controller(&ns, &config_path);
    let request = |method: &str, path: &str, body: Option<&str>| {
        let url = format!("http://127.0.0.1:5240{path}");
        request(&ns, method, &url, None, body).unwrap_or_else(|out| {
            panic!(
                "{path}: {out:?}\n{}\n{}",
                controller.transcript(),
                emulator.transcript()
            )
        })
    };
    let system = || {
        let mut cmd = in_ns(&ns, "curl");
        cmd.args(["-sS", "--max-time", "10", "-u", "admin:password"])
            .arg("http://127.0.0.1:8628/redfish/v1/Systems/00000000-0000-0000-0000-000000000001");
        let (lines, _) = run_bounded("curl", cmd, WAIT);
        serde_json::from_str::<Value>(&lines.join("\n")).unwrap()
    };
    let machine = "/api/v1/machines/52:54:00:77:1c:10";
    let off = request("POST", &format!("{machine}/power-off"), None);
    assert_eq!(off["state"], "off", "{off}");
    assert_eq!(system()["PowerState"], "Off");

    let on = request("POST", &format!("{machine}/power-on"), None);
    assert_eq!(on["state"], "on", "{on}");
    let seen = system();
    assert_eq!(seen["PowerState"], "On", "{seen}");
    assert_eq!(seen["Boot"]["BootSourceOverrideTarget"], "Pxe", "{seen}");
    let query = request("GET", &format!("{machine}/power"), None);
    assert_eq!(query["state"], "on", "{query}");

    let boot = request(
        "POST",
        &format!("{machine}/boot"),
        Some(r#"{"device": "disk", "persistence": "persistent"}"#),
    );
    assert_eq!(boot["boot"]["device"], "disk", "{boot}");
    let seen = system();
    assert_eq!(seen["Boot"]["BootSourceOverrideTarget"], "Hdd", "{seen}");
    let bad = request(
        "POST",
        &format!("{machine}/boot"),
        Some(r#"{"device": "floppy"}"#),
    );
    assert!(
        bad["error"].as_str().is_some_and(|e| e.contains("floppy")),
        "{bad}"
    );

    let off = request("POST", &format!("{machine}/power-off"), None);
    assert_eq!(off["state"], "off", "{off}");
    assert_eq!(system()["PowerState"], "Off");
    let shown = api(&ns, machine);
    assert_eq!(shown["power_state"]["state"], "off", "{shown}");
    assert_eq!(shown["power"]["power_pass"], "********", "{shown}");
}

/// Discovery and the proxy, wired into the controller. A LAN holds the controller (bridge
/// `br0`, 10.77.29.1 in a subnet with `active_discovery` and `allow_proxy`, and 10.77.30.1 in
/// one without the proxy), a talking host h1 (10.77.29.10 and 10.77.30.10, also the HTTP
/// origin) and a silent host h2 (10.77.29.20, never sends on its own, so only the active
/// scan can find it); both are listed by the API, h2 is DISCOVERED in IPAM, and both survive
/// a restart. curl on h1 through the controller's proxy is served (a miss,
/// then a hit the origin never sees) from its allowed address and refused with 403 from the
/// other, with nothing fetched.
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
    let metrics = {
        let mut cmd = in_ns(&ctl, "curl");
        cmd.args(["-sS", "--max-time", "10", "http://127.0.0.1:5240/metrics"]);
        run_bounded("curl", cmd, WAIT).0.join("\n")
    };
    assert!(metrics.contains("maas_proxy_hits_total 1"), "{metrics}");
    assert!(metrics.contains("maas_proxy_refused_total 1"), "{metrics}");

    let listed = |want: &[&str]| -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let list = api(&ctl, "/api/v1/discoveries");
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
    let addresses = api(&ctl, "/api/v1/ipaddresses");
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
    let list = api(&ctl, "/api/v1/discoveries");
    assert_eq!(find(&list, "10.77.29.20")["mac"], h2_entry["mac"], "{list}");
    assert_eq!(find(&list, "10.77.29.10")["mac"], h1_entry["mac"], "{list}");
    drop(controller);
}

const RACK_SECRET: &str = "a-shared-rack-secret-77";

/// Region and two racks, each rack on its own network namespace and LAN: a QEMU (BIOS, iPXE)
/// machine on each LAN, unknown to everyone, PXE-boots from its rack: it gets a lease from its
/// own subnet's dynamic range, which the rack acknowledged only after the region recorded it,
/// and runs the script the region's template makes. Both leases and both machines land in the
/// region; no address is handed out twice, and an address the region had leased to another
/// client before the racks started is never offered. Racks without the secret are refused.
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
            state = scratch.join("region-state").display()
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
    let region_call = |method: &str, path: &str, auth: Option<&str>, body: Option<&str>| {
        let url = format!("http://10.77.33.1:5240{path}");
        request(&region_ns, method, &url, auth, body)
            .unwrap_or_else(|out| panic!("{path}: {out:?}"))
    };
    // The first address of rack A's range is leased (by another rack, say) before these
    // racks start; a second claim on it is refused.
    let taken = r#"{"op": "bind", "ip": "10.77.31.100", "client": {"mac": "52:54:00:77:1f:99"}}"#;
    let lease = region_call(
        "POST",
        "/api/v1/rack/leases",
        Some(RACK_SECRET),
        Some(taken),
    );
    assert_eq!(lease["lease"]["state"], "bound", "{lease}");
    let again = taken.replace("1f:99", "1f:98");
    let refused = region_call(
        "POST",
        "/api/v1/rack/leases",
        Some(RACK_SECRET),
        Some(&again),
    );
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("10.77.31.100")),
        "{refused}"
    );
    // Without the secret, or with a wrong one, the rack endpoints refuse.
    let refused = region_call("GET", "/api/v1/rack/config", None, None);
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("secret")),
        "{refused}"
    );
    let refused = region_call(
        "GET",
        "/api/v1/rack/config",
        Some("not-the-secret-at-all"),
        None,
    );
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("secret")),
        "{refused}"
    );

    // Two racks, each with its LAN (bridge, tap for its machine) and a link to the region.
    let mut racks = Vec::new();
    for (n, name, link_ip) in [
        (31u8, "rack-a", "10.77.33.2/24"),
        (32, "rack-b", "10.77.33.3/24"),
    ] {
        let (lan, ra) = pxe_lan(n, &scratch);
        let port = format!("r{n}");
        region_ns.attach("br0", &port, &lan, "uplink");
        lan.ip(&["addr", "add", link_ip, "dev", "uplink"]);
        lan.ip(&["link", "set", "uplink", "up"]);
        let config_path = scratch.join(&format!("{name}.toml"));
        std::fs::write(
            &config_path,
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
region = "http://10.77.33.1:5240"
secret = "{RACK_SECRET}"
name = "{name}"
sync_secs = 2
"#,
                state = scratch.join(&format!("{name}-state")).display()
            ),
        )
        .unwrap();
        let rack = start_controller(&lan, &config_path);
        racks.push((n, name, lan, ra, rack));
    }

    // One unknown machine on each rack's LAN.
    let mut vms = Vec::new();
    for (n, _, lan, _, _) in &racks {
        let mac = format!("52:54:00:77:{n:02x}:10");
        let serial = scratch.join(&format!("serial-{n}"));
        let dir = scratch.join(&format!("vm-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let vm = qemu::boot(lan, Firmware::Bios, &mac, &serial, &dir, LIFETIME);
        vms.push((*n, mac, serial, vm));
    }
    for ((n, mac, serial, _), (_, name, _, _, rack)) in vms.iter().zip(&racks) {
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
    let leases = region_call("GET", "/api/v1/leases", None, None);
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
        let machine = region_call("GET", &format!("/api/v1/machines/{mac}"), None, None);
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
    let listed = region_call("GET", "/api/v1/racks", None, None);
    for (_, name, _, _, _) in &racks {
        let rack = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == *name)
            .unwrap_or_else(|| panic!("{name} not listed: {listed}"));
        assert!(rack["leases_recorded"].as_u64() >= Some(1), "{rack}");
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
}

/// DHCPv6: with an IPv6 subnet that has a dynamic range, the controller serves DHCPv6 on its
/// DHCP interfaces too. ISC `dhclient -6` on the LAN gets an address from the range, and the
/// lease is in the controller's IPAM; not being a network-booting machine, it is not enlisted.
#[test]
fn dhclient6_gets_its_address_from_the_controller() {
    if !can_run("controller_dhcp6", &["ip", "dhclient", "curl"]) {
        return;
    }
    let scratch = Scratch::new("controller_dhcp6");
    let lan = Netns::new("maas-ctl34-lan");
    let client = Netns::new("maas-ctl34-cli");
    lan.bridge("br0", &["10.77.34.1/24", "fd77:34::1/64"]);
    lan.attach("br0", "vcl", &client, "vcli");
    client.ip(&["link", "set", "vcli", "address", "52:54:00:77:22:10", "up"]);
    let extra = r#"
[[subnets]]
cidr = "fd77:34::/64"

[[ip_ranges]]
subnet = "fd77:34::/64"
start = "fd77:34::100"
end = "fd77:34::1ff"
kind = "dynamic"
"#;
    let config_path = scratch.join("controller.toml");
    let text = config(34, &scratch.join("state"), "") + extra;
    std::fs::write(&config_path, text).unwrap();
    let controller = start_controller(&lan, &config_path);
    assert!(
        controller
            .events()
            .iter()
            .any(|e| e["event"] == "listening" && e["dhcp6"].is_string()),
        "{}",
        controller.transcript()
    );
    lan.wait_link_local("br0", WAIT);
    client.wait_link_local("vcli", WAIT);
    let script = scratch.join("dhclient.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"dhclient-script: reason=$reason ip6=$new_ip6_address\"\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = in_ns(&client, "dhclient");
    cmd.args(["-6", "-1", "-d", "-v", "-lf"])
        .arg(scratch.join("leases"))
        .arg("-pf")
        .arg(scratch.join("pid"))
        .arg("-sf")
        .arg(&script)
        .arg("vcli");
    let dhclient = Daemon::spawn("dhclient", cmd);
    let bound = dhclient
        .wait_line(WAIT, |l| l.contains("reason=BOUND6"))
        .unwrap_or_else(|| {
            panic!(
                "dhclient -6 did not bind\n{}\n{}",
                dhclient.transcript(),
                controller.transcript()
            )
        });
    let ip: std::net::Ipv6Addr = bound
        .split("ip6=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{bound}"));
    let range: (std::net::Ipv6Addr, std::net::Ipv6Addr) = (
        "fd77:34::100".parse().unwrap(),
        "fd77:34::1ff".parse().unwrap(),
    );
    assert!(
        (range.0..=range.1).contains(&ip),
        "{ip} is not in the range"
    );
    let leases = api(&lan, "/api/v1/leases");
    let lease = leases
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ip"] == ip.to_string())
        .unwrap_or_else(|| panic!("{ip} not among the leases: {leases}"));
    assert_eq!(lease["lease"]["state"], "bound", "{lease}");
    // dhclient is not network-booting: it is no machine to enlist.
    assert_eq!(api(&lan, "/api/v1/machines"), serde_json::json!([]));
}

// ---------------------------------------------------------------------------------------
// Durability, boot URLs and enlistment limits

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
    let machines = api(&lan, "/api/v1/machines");
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
    let leases = api(&lan, "/api/v1/leases");
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
    let list = api(&lan, "/api/v1/discoveries");
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

/// Every boot file and URL in the controller's boot method table (maas-pxe's, MAAS's) is
/// served by the controller: with a boot assets directory holding a dummy file for each name
/// the table hands out (and `ldlinux.c32`, which lpxelinux fetches beside its path prefix),
/// each method's URL is fetched with curl from boot HTTP (on a port other than MAAS's) and
/// each TFTP name (after its path prefix) with tftp-hpa from TFTP; lpxelinux's HTTP path
/// prefix serves `ldlinux.c32` and the machine's `pxelinux.cfg/01-<mac>`. Then udhcpc asks as
/// a UEFI HTTP-boot client (architecture 16, vendor class `HTTPClient`) and the boot URL it
/// is given serves `bootx64.efi`'s bytes. About 3 s.
#[test]
fn every_boot_url_the_controller_hands_out_is_served() {
    use maas_pxe::dhcp::BootConfig;
    if !can_run("controller_boot_urls", &["ip", "curl", "tftp", "busybox"]) {
        return;
    }
    const HTTP_PORT: u16 = 8248;
    let server = Ipv4Addr::new(10, 77, 36, 1);
    let scratch = Scratch::new("controller_boot_urls");
    let (lan, client) = client_lan(36, "10.77.36.1/24", "10.77.36.2/24");

    // The table as the controller hands it out: boot HTTP on our port.
    let mut table = BootConfig::default();
    table.set_http_base(HTTP_PORT, Some(server.into()));
    let base = format!("http://{server}:{HTTP_PORT}/");
    // Each URL and TFTP name, with the asset it must serve (a name relative to the assets
    // directory), or `None` for a file the controller generates.
    let mut http: Vec<(String, String, Option<String>)> = Vec::new();
    let mut tftp: Vec<(String, String)> = Vec::new();
    let pxelinux_cfg = "pxelinux.cfg/01-52-54-00-77-24-10";
    for (arch, method) in &table.methods {
        let method_name = arch.name().to_string();
        let file = method.file.replace("{server}", &server.to_string());
        if file.contains("://") {
            let path = file
                .strip_prefix(&base)
                .unwrap_or_else(|| panic!("{method_name}: {file} is not on boot HTTP"));
            let asset = (path != "ipxe.cfg")
                .then(|| path.strip_prefix("images/").unwrap_or(path).to_string());
            http.push((method_name.clone(), file.clone(), asset));
        } else {
            let prefix = method
                .path_prefix
                .as_deref()
                .filter(|p| !p.contains("://"))
                .unwrap_or("");
            tftp.push((method_name.clone(), format!("{prefix}{file}")));
        }
        if let Some(prefix) = method.path_prefix.as_deref().filter(|p| p.contains("://")) {
            let prefix = prefix.replace("{server}", &server.to_string());
            http.push((
                method_name.clone(),
                format!("{prefix}ldlinux.c32"),
                Some("ldlinux.c32".to_string()),
            ));
            http.push((method_name, format!("{prefix}{pxelinux_cfg}"), None));
        }
    }
    assert!(!tftp.is_empty() && http.len() > 2, "{http:?} {tftp:?}");
    let assets = scratch.join("assets");
    let content = |name: &str| format!("dummy boot file {name}\n").repeat(40).into_bytes();
    let names = tftp
        .iter()
        .map(|(_, name)| name.as_str())
        .chain(http.iter().filter_map(|(_, _, a)| a.as_deref()));
    for name in names {
        let path = assets.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content(name)).unwrap();
    }

    let config_path = scratch.join("controller.toml");
    let extra = format!(
        "tftp = \"0.0.0.0:69\"\nboot_assets = \"{}\"\n",
        assets.display()
    );
    let text = config(36, &scratch.join("state"), &extra)
        .replace("0.0.0.0:5248", &format!("0.0.0.0:{HTTP_PORT}"));
    std::fs::write(&config_path, text).unwrap();
    let controller = start_controller(&lan, &config_path);

    let fetched = scratch.join("fetched");
    let curl = |url: &str| -> (String, Vec<u8>) {
        let _ = std::fs::remove_file(&fetched);
        let mut cmd = in_ns(&client, "curl");
        cmd.args(["-sS", "--max-time", "10", "-w", "%{http_code}", "-o"])
            .arg(&fetched)
            .arg(url);
        let (lines, _) = run_bounded("curl", cmd, WAIT);
        (
            lines.join("\n"),
            std::fs::read(&fetched).unwrap_or_default(),
        )
    };
    let mut failures = Vec::new();
    for (method, url, asset) in &http {
        let (code, body) = curl(url);
        let served = match asset {
            Some(name) => code == "200" && body == content(name),
            None if url.ends_with("ipxe.cfg") => code == "200" && body.starts_with(b"#!ipxe"),
            None => code == "200" && String::from_utf8_lossy(&body).contains("52:54:00:77:24:10"),
        };
        if !served {
            failures.push(format!(
                "{method}: {url}: {code} {:?}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    for (method, name) in &tftp {
        let _ = std::fs::remove_file(&fetched);
        let mut cmd = in_ns(&client, "tftp");
        cmd.args(["-m", "binary", &server.to_string(), "69", "-c", "get", name])
            .arg(&fetched);
        let (lines, _) = run_bounded("tftp", cmd, WAIT);
        let body = std::fs::read(&fetched).unwrap_or_default();
        if body != content(name) {
            failures.push(format!("{method}: tftp {name}: {lines:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "not served:\n{}\n{}",
        failures.join("\n"),
        controller.transcript()
    );

    eprintln!(
        "controller_boot_urls: {} URLs over HTTP and {} names over TFTP served",
        http.len(),
        tftp.len()
    );

    // A UEFI HTTP-boot client is handed a URL that serves its boot loader.
    let script = scratch.join("udhcpc.sh");
    let env_dir = scratch.join("env");
    std::fs::create_dir_all(&env_dir).unwrap();
    std::fs::write(
        &script,
        format!("#!/bin/sh\nenv > {}/\"$1\"\n", env_dir.display()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut udhcpc = in_ns(&client, "busybox");
    udhcpc
        .args([
            "udhcpc", "-i", "vcli", "-n", "-q", "-f", "-t", "5", "-T", "1",
        ])
        .args(["-V", "HTTPClient", "-x", "0x5d:0010", "-s"])
        .arg(&script);
    let (lines, _) = run_bounded("udhcpc", udhcpc, WAIT);
    let env = std::fs::read_to_string(env_dir.join("bound")).unwrap_or_else(|_| {
        panic!(
            "udhcpc got no lease: {lines:?}\n{}",
            controller.transcript()
        )
    });
    let url = ["boot_file=", "bootfile="]
        .iter()
        .find_map(|key| env.lines().find_map(|l| l.strip_prefix(key)))
        .unwrap_or_else(|| panic!("no boot file in the answer:\n{env}"))
        .trim_matches('\'')
        .to_string();
    assert!(
        url.starts_with(&base) && url.ends_with("bootx64.efi"),
        "{url}"
    );
    let (code, body) = curl(&url);
    eprintln!("controller_boot_urls: udhcpc as an HTTP-boot client was given {url}: {code}");
    assert_eq!(code, "200", "{url}\n{}", controller.transcript());
    assert_eq!(body, content("bootx64.efi"), "{url}");
}

/// A plain HTTP/1.1 `GET` of `path` from `addr`: the status code and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
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

/// Enlistment is bounded by `enlist_max_new`: with 3, the iPXE scripts of 5 unknown MACs are
/// asked for; the first 3 are answered (200) and listed as new, the other 2 get 429, are not
/// listed, and each has an `enlistment_refused` line with its MAC and a reason. A machine the
/// controller knows (configured, or one of the 3) still gets its script. Loopback, no root
/// needed; about 1 s.
#[test]
fn enlistment_is_bounded() {
    let scratch = Scratch::new("controller_enlist_bound");
    let config_path = scratch.join("controller.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[controller]
state_dir = "{}"
api = "127.0.0.1:0"
boot_http = "127.0.0.1:0"
enlist_max_new = 3
enlist_per_minute = 100000

[[subnets]]
cidr = "10.77.37.0/24"

[[machines]]
mac = "52:54:00:77:25:01"
hostname = "configured"
"#,
            scratch.join("state").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(controller_binary());
    cmd.arg("--config").arg(&config_path);
    let controller = Daemon::spawn("controller", cmd);
    let listening = controller
        .wait_event(WAIT, |e| e["event"] == "listening")
        .unwrap_or_else(|| panic!("no start\n{}", controller.transcript()));
    let boot = listening["boot_http"].as_str().unwrap().to_string();
    let api_addr = listening["api"].as_str().unwrap().to_string();

    let macs: Vec<String> = (0x10..0x15)
        .map(|i| format!("52:54:00:77:25:{i:02x}"))
        .collect();
    let script = |mac: &str| http_get(&boot, &format!("/ipxe.cfg-{}", mac.replace(':', "-")));
    for (i, mac) in macs.iter().enumerate() {
        let (status, body) = script(mac);
        let want = if i < 3 { 200 } else { 429 };
        assert_eq!(status, want, "{mac}: {body}\n{}", controller.transcript());
    }
    let (status, machines) = http_get(&api_addr, "/api/v1/machines");
    assert_eq!(status, 200, "{machines}");
    let machines: Value = serde_json::from_str(&machines).unwrap();
    let listed = |mac: &str| {
        machines
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mac"] == mac)
            .cloned()
    };
    for (i, mac) in macs.iter().enumerate() {
        match listed(mac) {
            Some(m) if i < 3 => assert_eq!(m["status"], "new", "{m}"),
            None if i >= 3 => {}
            other => panic!("{mac}: {other:?}\n{machines}"),
        }
    }
    for mac in &macs[3..] {
        let refused = controller
            .wait_event(WAIT, |e| {
                e["event"] == "enlistment_refused" && e["mac"] == mac.as_str()
            })
            .unwrap_or_else(|| panic!("no refusal for {mac}\n{}", controller.transcript()));
        assert!(
            refused["reason"]
                .as_str()
                .is_some_and(|r| r.contains("enlist_max_new")),
            "{refused}"
        );
    }
    for known in ["52:54:00:77:25:01", macs[0].as_str()] {
        let (status, body) = script(known);
        assert_eq!(status, 200, "{known}: {body}");
        assert!(body.starts_with("#!ipxe"), "{body}");
    }
}
