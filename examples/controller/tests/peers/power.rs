//! Power through BMCs (ipmi_sim, sushy-emulator), through the API over HTTPS.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::support::can_run;
use crate::support::netns::{Daemon, Netns, Scratch, run_bounded};
use crate::support::power::{IpmiSim, ipmitool, start_sushy, sushy_emulator};
use crate::{Api, LIFETIME, WAIT, in_ns, start_controller};

/// The API of a controller from [`power_config`]: HTTPS on loopback with its self-signed
/// certificate (curl trusts it with `--cacert`, and not without), the first admin's token.
fn https_api<'a>(ns: &'a Netns, controller: &Daemon) -> Api<'a> {
    let api = Api::of(ns, controller);
    assert_eq!(api.url, "https://127.0.0.1:5240", "{api:?}");
    let ca = api.ca.clone().unwrap();
    assert!(ca.ends_with("/state/tls/cert.pem"), "{ca}");
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
    api
}

/// A viewer may read the machine's power state but not power it on: 403, and the BMC is left
/// alone (`unchanged` checks that).
fn viewer_may_not_power_on(api: &Api<'_>, mac: &str, unchanged: impl Fn() -> bool) {
    let viewer = api.new_user("v", "viewer");
    let refused = viewer.call("POST", &format!("/api/v1/machines/{mac}/power-on"), None);
    assert_eq!(refused.status, 403, "{}", refused.output);
    assert!(
        refused.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("operator")),
        "{}",
        refused.output
    );
    assert!(unchanged(), "a viewer's power-on reached the BMC");
    let read = viewer.call("GET", &format!("/api/v1/machines/{mac}"), None);
    assert_eq!(read.status, 200, "{}", read.output);
}

/// Power end to end: a machine whose BMC is OpenIPMI's ipmi_sim (RMCP+ suite 3, OPERATOR) is
/// set to network-boot and powered on through the API, then off; the simulator's state and
/// `ipmitool` reading it back agree. The API is HTTPS on loopback (`tls = "self-signed"`):
/// curl verifies it with `--cacert` and fails without; no token is 401 and a viewer's
/// power-on 403 (the BMC untouched, the refusal in the audit trail), the admin's works.
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
    let api = https_api(&ns, &controller);
    let mac = "52:54:00:77:1b:10";
    let anonymous =
        api.with_token(None)
            .call("POST", &format!("/api/v1/machines/{mac}/power-on"), None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.output);
    assert_eq!(
        anonymous.www_authenticate.as_deref(),
        Some("Bearer"),
        "{anonymous:?}"
    );
    viewer_may_not_power_on(&api, mac, || sim.value("power").as_deref() == Some("0"));
    let audit = api.get("/api/v1/audit?user=v");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "POST /api/v1/machines/{mac}/power-on"
                && e["target"] == mac
                && e["status"] == 403),
        "{audit}"
    );
    let post = |path: &str| {
        let reply = api.call("POST", path, None);
        assert_eq!(
            reply.status,
            200,
            "{path}: {}\n{}",
            reply.output,
            controller.transcript()
        );
        reply.json
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
    let seen = api.get("/api/v1/machines/52:54:00:77:1b:10/power");
    assert_eq!(seen["state"], "on", "{seen}");
    let off = post("/api/v1/machines/52:54:00:77:1b:10/power-off");
    assert_eq!(off["state"], "off", "{off}");
    assert_eq!(sim.value("power").as_deref(), Some("0"));
    assert!(chassis().contains("is off"), "{}", chassis());
    // The password never shows in the API.
    let machine = api.get("/api/v1/machines/52:54:00:77:1b:10");
    assert_eq!(machine["power"]["power_pass"], "********", "{machine}");
    assert_eq!(machine["power_state"]["state"], "off", "{machine}");

    // Someone turns the machine on behind the controller's back: the monitor notices.
    let out = ipmitool(&ns, 9627, "admin", "password", &["chassis", "power", "on"]);
    assert!(out.join("\n").contains("Up/On"), "{out:?}");
    let seen = wait_power_state(&api, "52:54:00:77:1b:10", "on");
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
/// `monitor` seconds (0: never). The API is HTTPS on loopback with a self-signed certificate.
fn power_config(scratch: &Scratch, n: u8, monitor: u64, power: &str) -> PathBuf {
    let path = scratch.join("controller.toml");
    let text = format!(
        "[controller]\nstate_dir = \"{state}\"\napi = \"127.0.0.1:5240\"\n\
         tls = \"self-signed\"\nboot_http = \"127.0.0.1:5248\"\n\n[power]\nmonitor_interval_secs = {monitor}\n\n\
         [[subnets]]\ncidr = \"10.77.{n}.0/24\"\n\n[[machines]]\nmac = \"52:54:00:77:{n:02x}:10\"\n\
         power = {{ {power} }}\n",
        state = scratch.join("state").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Polls the machine's `power_state` (what the monitor last saw) until it is `want`, for at
/// most 20 s.
fn wait_power_state(api: &Api<'_>, mac: &str, want: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let machine = api.get(&format!("/api/v1/machines/{mac}"));
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
/// An explicit boot request (disk, persistent) is applied too. Over HTTPS on loopback with
/// the first admin's token; a viewer's power-on is refused (403) and leaves the emulator
/// alone.
#[test]
fn the_api_powers_a_machine_through_redfish() {
    if !can_run("controller_redfish", &["ip", "curl", "ss"]) {
        return;
    }
    if sushy_emulator().is_none() {
        eprintln!("skipping controller_redfish: no sushy-emulator (run scripts/setup.sh)");
        return;
    }
    let name = "maas-ctl28-rf";
    let ns = Netns::new(name);
    let scratch = Scratch::new("controller_redfish");
    let emulator = start_sushy(&ns, name, &scratch, 8628, LIFETIME);
    let config_path = power_config(
        &scratch,
        28,
        0,
        r#"power_type = "redfish", power_address = "http://127.0.0.1:8628", power_user = "admin", power_pass = "password""#,
    );
    let controller = start_controller(&ns, &config_path);
    let api = https_api(&ns, &controller);
    let request = |method: &str, path: &str, body: Option<&str>| {
        let reply = api.call(method, path, body);
        assert!(
            reply.json.is_object(),
            "{path}: {}\n{}\n{}",
            reply.output,
            controller.transcript(),
            emulator.transcript()
        );
        reply.json
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
    viewer_may_not_power_on(&api, "52:54:00:77:1c:10", || {
        system()["PowerState"] == "Off"
    });

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
    let shown = api.get(machine);
    assert_eq!(shown["power_state"]["state"], "off", "{shown}");
    assert_eq!(shown["power"]["power_pass"], "********", "{shown}");
}
