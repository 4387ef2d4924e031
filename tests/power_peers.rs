//! The `power` example (maas-power's drivers behind the power manager) against real BMC
//! peers, each test in network namespaces of its own: OpenIPMI's ipmi_sim over RMCP+ cipher
//! suite 3 (and IPMI 1.5), sushy-emulator (Redfish, fake driver, basic auth), a Wake-on-LAN
//! capture with tcpdump, and a webhook server. Every action is confirmed by polling and
//! checked on the peer's side (the simulator's chassis state, `ipmitool` reading back, the
//! emulator's resources and log, the captured bytes).
//!
//! Needs root and the peers `scripts/setup.sh` installs; a test without them prints why and
//! passes. Namespaces are named `maas-pwr*`, addresses are in 10.77.160.0/20.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::netns::{Daemon, Netns, Scratch, run_bounded};
use support::power::{IpmiSim, ipmitool, pcap_udp_payloads, start_sushy, sushy_emulator};
use support::{can_run, which};

/// The hard limit on every process a test starts.
const LIFETIME: Duration = Duration::from_secs(120);

fn power_binary() -> PathBuf {
    support::example_binary("power")
}

/// Runs the `power` example inside `ns`: (stdout+stderr lines, success, elapsed).
fn power(ns: &Netns, args: &[&str]) -> (String, bool, Duration) {
    let mut cmd = ns.command(power_binary(), LIFETIME);
    cmd.args(args);
    let t0 = Instant::now();
    let (lines, status) = run_bounded("power", cmd, Duration::from_secs(90));
    (
        lines.join("\n"),
        status.is_some_and(|s| s.success()),
        t0.elapsed(),
    )
}

fn ipmi_args<'a>(port: &'a str, user: &'a str, pass: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--driver",
        "ipmi",
        "--address",
        port,
        "--user",
        user,
        "--password",
        pass,
        "--cipher-suite",
        "3",
        "--deadline",
        "20",
    ];
    a.extend_from_slice(rest);
    a
}

#[test]
fn ipmi_sim_suite3_every_action_as_operator() {
    if !can_run(
        "ipmi_sim_suite3_every_action_as_operator",
        &["ipmi_sim", "ipmitool"],
    ) {
        return;
    }
    let name = "maas-pwr-ipmi1";
    let ns = Netns::new(name);
    let scratch = Scratch::new("pwr-ipmi1");
    let sim = IpmiSim::start(&ns, name, &scratch, "127.0.0.1", 9623, LIFETIME);
    // An account limited to OPERATOR: the automatic choice is the native session code.
    every_action(&ns, &sim, &["--user", "oper", "--password", "operpass"]);

    // ADMINISTRATOR privilege, and IPMI 1.5 with MD5 authentication, read the same state.
    let addr = "127.0.0.1:9623";
    for extra in [&["--privilege", "admin"][..], &["--ipmi-1.5"]] {
        let mut rest = extra.to_vec();
        rest.push("status");
        let (out, ok, _) = power(&ns, &ipmi_args(addr, "admin", "password", &rest));
        assert!(ok && out.ends_with("off"), "{rest:?}: {out}");
    }
}

#[test]
fn ipmi_sim_suite3_every_action_on_ipmi_rs() {
    if !can_run(
        "ipmi_sim_suite3_every_action_on_ipmi_rs",
        &["ipmi_sim", "ipmitool"],
    ) {
        return;
    }
    let name = "maas-pwr-ipmi4";
    let ns = Netns::new(name);
    let scratch = Scratch::new("pwr-ipmi4");
    let sim = IpmiSim::start(&ns, name, &scratch, "127.0.0.1", 9625, LIFETIME);
    // ipmi-rs's RAKP 1 asks for ADMINISTRATOR: an ADMINISTRATOR account, whose sessions the
    // driver then sets to OPERATOR (the default) with Set Session Privilege Level.
    let admin = [
        "--user",
        "admin",
        "--password",
        "password",
        "--ipmi-backend",
        "ipmi-rs",
    ];
    every_action(&ns, &sim, &admin);
    let addr = "127.0.0.1:9625";
    // At ADMINISTRATOR privilege the automatic choice is ipmi-rs too.
    let (out, ok, _) = power(
        &ns,
        &ipmi_args(addr, "admin", "password", &["--privilege", "admin", "off"]),
    );
    assert!(ok && out.ends_with("off"), "{out}");
    assert_eq!(sim.value("power").as_deref(), Some("0"));
    // An account limited to OPERATOR cannot log in through ipmi-rs: the BMC refuses RAKP 1.
    let (out, ok, _) = power(
        &ns,
        &ipmi_args(
            addr,
            "oper",
            "operpass",
            &["--ipmi-backend", "ipmi-rs", "status"],
        ),
    );
    assert!(
        !ok && out.contains("authentication failed") && out.contains("RAKP 2"),
        "{out}"
    );
    // Cipher suite 17 and IPMI 1.5 are refused by the forced ipmi-rs backend, not attempted.
    for extra in [&["--cipher-suite", "17"][..], &["--ipmi-1.5"]] {
        let mut rest = vec!["--ipmi-backend", "ipmi-rs"];
        rest.extend_from_slice(extra);
        rest.push("status");
        let (out, ok, _) = power(&ns, &ipmi_args(addr, "admin", "password", &rest));
        assert!(
            !ok && out.contains("the ipmi-rs backend cannot do"),
            "{out}"
        );
    }
}

/// Every action through the `power` example (user, password and backend in `who`), each
/// confirmed by the simulator's state and by `ipmitool` reading it back.
fn every_action(ns: &Netns, sim: &IpmiSim, who: &[&str]) {
    let port = sim.port;
    let addr = format!("127.0.0.1:{port}");
    let run = |action: &str| {
        let mut args = vec![
            "--driver",
            "ipmi",
            "--address",
            &addr,
            "--cipher-suite",
            "3",
            "--deadline",
            "20",
        ];
        args.extend_from_slice(who);
        args.push(action);
        let (out, ok, _) = power(ns, &args);
        assert!(ok, "{action}: {out}\n{}", sim.daemon.transcript());
        out.lines().last().unwrap_or_default().to_owned()
    };
    let status = || {
        ipmitool(
            ns,
            port,
            "admin",
            "password",
            &["chassis", "power", "status"],
        )
        .join(" ")
    };

    assert_eq!(run("status"), "off");
    assert!(status().contains("is off"));

    assert_eq!(run("on"), "on");
    assert_eq!(sim.value("power").as_deref(), Some("1"));
    assert!(status().contains("is on"));

    assert_eq!(run("off"), "off");
    assert_eq!(sim.value("power").as_deref(), Some("0"));
    assert!(status().contains("is off"));

    // A cycle of a machine that is off powers it on; of one that is on, cycles it.
    assert_eq!(run("cycle"), "on");
    assert_eq!(run("cycle"), "on");
    let log = sim.log();
    assert!(
        log.ends_with(&[
            "set power 1".to_owned(),
            "set power 0".into(),
            "set power 1".into()
        ]),
        "{log:?}"
    );
    assert!(status().contains("is on"));

    assert_eq!(run("reset"), "on");
    assert_eq!(sim.log().last().map(String::as_str), Some("set reset 1"));

    // Soft-off: the simulator records the ACPI request; play the guest OS that honours it.
    let guest = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if sim.log().last().map(String::as_str) == Some("set shutdown 1") {
                    sim.set_value("power", "0");
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        });
        let state = run("soft-off");
        (watcher.join().unwrap(), state)
    });
    assert_eq!(guest, (true, "off".to_owned()));
    assert!(status().contains("is off"));

    assert_eq!(run("pxe"), "boot device set to pxe (once)");
    assert_eq!(sim.value("boot").as_deref(), Some("pxe"));
    let flags = ipmitool(
        ns,
        port,
        "admin",
        "password",
        &["chassis", "bootparam", "get", "5"],
    )
    .join("\n");
    assert!(flags.contains("Force PXE"), "{flags}");
}

#[test]
fn ipmi_sim_wrong_password_is_an_auth_error_without_retry() {
    if !can_run(
        "ipmi_sim_wrong_password_is_an_auth_error_without_retry",
        &["ipmi_sim", "tcpdump"],
    ) {
        return;
    }
    let name = "maas-pwr-ipmi2";
    let ns = Netns::new(name);
    let scratch = Scratch::new("pwr-ipmi2");
    let _sim = IpmiSim::start(&ns, name, &scratch, "127.0.0.1", 9624, LIFETIME);
    for backend in ["native", "ipmi-rs"] {
        let pcap = scratch.join(&format!("auth-{backend}.pcap"));
        let mut cap = ns.command(which("tcpdump").unwrap(), LIFETIME);
        cap.args(["-i", "lo", "-Z", "root", "--immediate-mode", "-U", "-w"])
            .arg(&pcap)
            .args(["udp", "port", "9624"]);
        let mut tcpdump = Daemon::spawn("tcpdump", cap);
        tcpdump.wait_line(Duration::from_secs(10), |l| l.contains("listening on"));

        let (out, ok, _) = power(
            &ns,
            &ipmi_args(
                "127.0.0.1:9624",
                "admin",
                "wrong",
                &[
                    "--privilege",
                    "admin",
                    "--ipmi-backend",
                    backend,
                    "--attempts",
                    "3",
                    "status",
                ],
            ),
        );
        assert!(!ok, "{out}");
        assert!(out.contains("authentication failed"), "{backend}: {out}");
        std::thread::sleep(Duration::from_millis(300));
        tcpdump.stop("INT", Duration::from_secs(3));
        let payloads = pcap_udp_payloads(&std::fs::read(&pcap).unwrap());
        // RMCP+ Open Session Requests (payload type 0x10) sent to the BMC: exactly one.
        let to_bmc = |p: &&Vec<u8>| p.len() > 5 && p[4] == 0x06 && p[5] & 0x3f == 0x10;
        let opens = payloads.iter().filter(to_bmc).count();
        assert_eq!(
            opens,
            1,
            "{backend}: {} datagrams captured\n{}",
            payloads.len(),
            tcpdump.transcript()
        );
        // Only ipmi-rs starts with an ASF presence ping (RMCP class 6): the backends differ
        // on the wire as they should.
        let pings = payloads
            .iter()
            .filter(|p| p.len() > 8 && p[3] == 0x06 && p[8] == 0x80)
            .count();
        assert_eq!(pings, usize::from(backend == "ipmi-rs"), "{backend}");
    }
}

#[test]
fn ipmi_unreachable_bmc_times_out_within_its_deadline() {
    if !can_run("ipmi_unreachable_bmc_times_out_within_its_deadline", &[]) {
        return;
    }
    let a = Netns::new("maas-pwr-ipmi3a");
    let b = Netns::new("maas-pwr-ipmi3b");
    a.veth("vpa", &b, "vpb");
    a.ip(&["addr", "add", "10.77.163.1/24", "dev", "vpa"]);
    a.ip(&["link", "set", "vpa", "up"]);
    b.ip(&["link", "set", "vpb", "up"]);
    // Nothing answers at 10.77.163.99: each call waits out its 2 s deadline, and the manager
    // tries twice with a 1 s back-off in between. Both backends, side by side.
    let runs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = ["native", "ipmi-rs"]
            .map(|backend| {
                let a = &a;
                s.spawn(move || {
                    let (out, ok, took) = power(
                        a,
                        &ipmi_args(
                            "10.77.163.99",
                            "admin",
                            "password",
                            &[
                                "--privilege",
                                "admin",
                                "--ipmi-backend",
                                backend,
                                "--timeout",
                                "2",
                                "--attempts",
                                "2",
                                "status",
                            ],
                        ),
                    );
                    (backend, out, ok, took)
                })
            })
            .into_iter()
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (backend, out, ok, took) in runs {
        assert!(!ok, "{backend}: {out}");
        assert!(out.contains("no answer within 2s"), "{backend}: {out}");
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_secs(15),
            "{backend}: {took:?}"
        );
    }
}

fn redfish_get(ns: &Netns, path: &str) -> serde_json::Value {
    let mut cmd = ns.command("curl", Duration::from_secs(20));
    cmd.args([
        "-s",
        "-u",
        "admin:password",
        &format!("http://127.0.0.1:8641{path}"),
    ]);
    let (lines, status) = run_bounded("curl", cmd, Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{lines:?}");
    serde_json::from_str(&lines.join("\n")).unwrap()
}

#[test]
fn sushy_emulator_every_action_confirmed() {
    if !can_run("sushy_emulator_every_action_confirmed", &["curl"]) {
        return;
    }
    if sushy_emulator().is_none() {
        eprintln!(
            "skipping sushy_emulator_every_action_confirmed: no sushy-emulator (run scripts/setup.sh)"
        );
        return;
    }
    let name = "maas-pwr-redfish";
    let ns = Netns::new(name);
    let scratch = Scratch::new("pwr-redfish");
    let emu = start_sushy(&ns, name, &scratch, 8641, LIFETIME);
    let system = "/redfish/v1/Systems/00000000-0000-0000-0000-000000000001";
    let args = |pass: &'static str, action: &'static str| {
        vec![
            "--driver",
            "redfish",
            "--address",
            "http://127.0.0.1:8641",
            "--user",
            "admin",
            "--password",
            pass,
            "--deadline",
            "30",
            "--poll-ms",
            "250",
            action,
        ]
    };
    let run = |action: &'static str| {
        let (out, ok, _) = power(&ns, &args("password", action));
        assert!(ok, "{action}: {out}\n{}", emu.transcript());
        out.lines().last().unwrap_or_default().to_owned()
    };
    let state = || {
        redfish_get(&ns, system)["PowerState"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    assert_eq!(run("status"), "off");
    assert_eq!(run("pxe"), "boot device set to pxe (once)");
    let boot = redfish_get(&ns, system)["Boot"].clone();
    assert_eq!(boot["BootSourceOverrideTarget"], "Pxe");
    // sushy-emulator applies the target and always reports "Continuous" (its libvirt-style
    // drivers ignore BootSourceOverrideEnabled), so Once cannot be read back from it.
    assert!(
        emu.lines()
            .iter()
            .any(|l| l.contains("PATCH") && l.contains("\" 204"))
    );
    assert_eq!(run("on"), "on");
    assert_eq!(state(), "On");
    assert_eq!(run("cycle"), "on");
    assert_eq!(run("reset"), "on");
    assert_eq!(run("soft-off"), "off");
    assert_eq!(state(), "Off");
    assert_eq!(run("on"), "on");
    assert_eq!(run("off"), "off");
    assert_eq!(state(), "Off");

    let (out, ok, _) = power(&ns, &args("wrong", "status"));
    assert!(
        !ok && out.contains("authentication failed") && out.contains("401"),
        "{out}"
    );

    // Every reset the driver chose was one the emulator implements (it answers 501 to
    // PowerCycle, PushPowerButton and Nmi): all POSTs were answered 204.
    let log = emu.lines();
    let resets: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("POST") && l.contains("ComputerSystem.Reset"))
        .collect();
    assert_eq!(resets.len(), 6, "{log:?}");
    assert!(resets.iter().all(|l| l.contains("\" 204")), "{resets:?}");
    assert!(!log.iter().any(|l| l.contains("\" 501")), "{log:?}");
}

#[test]
fn wake_on_lan_magic_packet_captured() {
    if !can_run("wake_on_lan_magic_packet_captured", &["tcpdump"]) {
        return;
    }
    let a = Netns::new("maas-pwr-wol-a");
    let b = Netns::new("maas-pwr-wol-b");
    a.veth("vwa", &b, "vwb");
    a.ip(&["addr", "add", "10.77.164.1/24", "dev", "vwa"]);
    b.ip(&["addr", "add", "10.77.164.2/24", "dev", "vwb"]);
    a.ip(&["link", "set", "vwa", "up"]);
    b.ip(&["link", "set", "vwb", "up"]);
    let scratch = Scratch::new("pwr-wol");
    let pcap = scratch.join("wol.pcap");
    let mut cap = b.command(which("tcpdump").unwrap(), LIFETIME);
    cap.args(["-i", "vwb", "-Z", "root", "--immediate-mode", "-U", "-w"])
        .arg(&pcap)
        .args(["udp", "port", "9"]);
    let mut tcpdump = Daemon::spawn("tcpdump", cap);
    tcpdump.wait_line(Duration::from_secs(10), |l| l.contains("listening on"));

    let (out, ok, _) = power(
        &a,
        &[
            "--driver",
            "wol",
            "--mac",
            "52:54:00:77:a4:01",
            "--address",
            "10.77.164.255:9",
            "on",
        ],
    );
    assert!(ok && out.ends_with("unknown"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    tcpdump.stop("INT", Duration::from_secs(3));
    let payloads = pcap_udp_payloads(&std::fs::read(&pcap).unwrap());
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    let p = &payloads[0];
    assert_eq!(p.len(), 102);
    assert_eq!(&p[..6], &[0xff; 6]);
    let mac = [0x52, 0x54, 0x00, 0x77, 0xa4, 0x01];
    assert!(p[6..].chunks(6).all(|c| c == mac));
}

#[test]
fn webhook_against_a_local_http_server() {
    if !can_run("webhook_against_a_local_http_server", &["python3"]) {
        return;
    }
    let name = "maas-pwr-webhook";
    let ns = Netns::new(name);
    let script = support::power::peers_dir().join("webhook.py");
    let mut cmd = ns.command("python3", LIFETIME);
    cmd.arg(&script).args(["127.0.0.1", "8642", "Bearer t0ken"]);
    let server = Daemon::spawn("webhook", cmd);
    server
        .wait_line(Duration::from_secs(10), |l| l == "listening")
        .expect("webhook server up");
    let args = |token: &'static str, action: &'static str| {
        vec![
            "--driver",
            "webhook",
            "--on-uri",
            "http://127.0.0.1:8642/on",
            "--off-uri",
            "http://127.0.0.1:8642/off",
            "--query-uri",
            "http://127.0.0.1:8642/status",
            "--token",
            token,
            "--deadline",
            "10",
            action,
        ]
    };
    let (out, ok, _) = power(&ns, &args("t0ken", "status"));
    assert!(ok && out.ends_with("off"), "{out}");
    let (out, ok, _) = power(&ns, &args("t0ken", "on"));
    assert!(ok && out.ends_with("on"), "{out}");
    let (out, ok, _) = power(&ns, &args("t0ken", "off"));
    assert!(ok && out.ends_with("off"), "{out}");
    let (out, ok, _) = power(&ns, &args("wrong", "on"));
    assert!(!ok && out.contains("authentication failed"), "{out}");
    let events = server.events();
    assert!(
        events
            .iter()
            .any(|e| e["path"] == "/on" && e["authorized"] == true)
    );
    assert!(
        events
            .iter()
            .any(|e| e["path"] == "/on" && e["authorized"] == false)
    );
    // One unauthorized attempt only: authentication errors are not retried.
    assert_eq!(
        events.iter().filter(|e| e["authorized"] == false).count(),
        1
    );
}

#[test]
fn redfish_session_auth_and_etag() {
    if !can_run("redfish_session_auth_and_etag", &["python3"]) {
        return;
    }
    let ns = Netns::new("maas-pwr-rfsess");
    let script = support::power::peers_dir().join("redfish-session.py");
    let start = |extra: &[&str]| {
        let mut cmd = ns.command("python3", LIFETIME);
        cmd.arg(&script).args(["127.0.0.1", "8643"]).args(extra);
        let d = Daemon::spawn("redfish-session", cmd);
        d.wait_line(Duration::from_secs(10), |l| l == "listening")
            .expect("redfish service up");
        d
    };
    let args = |extra: &'static str, action: &'static str| {
        let mut a = vec![
            "--driver",
            "redfish",
            "--address",
            "http://127.0.0.1:8643",
            "--user",
            "admin",
            "--password",
            "password",
            "--session",
            "--deadline",
            "10",
            action,
        ];
        if !extra.is_empty() {
            a.insert(0, extra);
        }
        a
    };
    let mut server = start(&[]);
    let (out, ok, _) = power(&ns, &args("", "on"));
    assert!(ok && out.ends_with("on"), "{out}");
    let (out, ok, _) = power(&ns, &args("", "pxe"));
    assert!(ok, "{out}");
    let events = server.events();
    // Every session opened was deleted, and the PATCH carried the ETag.
    let logins = events.iter().filter(|e| e["login"] == true).count();
    let logouts = events.iter().filter(|e| e["logout"] == true).count();
    assert!(logins >= 3 && logins == logouts, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e["method"] == "PATCH" && e["if_match"] == "W/\"2\""),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e["authorized"] == false),
        "{events:?}"
    );
    // Opting out of ETags sends no If-Match; the service here refuses that (412).
    let (out, ok, _) = power(&ns, &args("--no-etag", "pxe"));
    assert!(!ok && out.contains("412"), "{out}");
    server.stop("TERM", Duration::from_secs(2));
    // A BMC that does not check ETags accepts the opt-out.
    let server = start(&["--no-etag-check"]);
    let (out, ok, _) = power(&ns, &args("--no-etag", "pxe"));
    assert!(ok, "{out}");
    assert!(
        server
            .events()
            .iter()
            .any(|e| e["method"] == "PATCH" && e["if_match"].is_null())
    );
}
