//! What the end-to-end machine tests share: the controller binary, the ephemeral
//! environment (built once per run), a BMC (ipmi_sim) whose chassis control really starts and
//! stops the QEMU machine, and API calls with curl inside the test's namespace.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::existing;
use crate::support::netns::{Daemon, Netns, run_bounded};
use crate::support::power::{peers_dir, wait_listening};

/// How long any one test process may live.
pub(crate) const LIFETIME: Duration = Duration::from_secs(900);

/// The workspace root (two levels above this package).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("tests/support/mod.rs").is_file())
        .expect("the workspace root")
        .to_path_buf()
}

pub(crate) fn controller_binary() -> PathBuf {
    existing(env!("CARGO_BIN_EXE_maas-controller"))
}

/// The ephemeral environment, built into `target/ephemeral-test` (the script keeps its
/// downloaded packages in its cache).
pub(crate) fn ephemeral() -> Option<PathBuf> {
    // The script leaves an up-to-date build alone (in a second or so), and rebuilds when the
    // agent or the script changed.
    let out = workspace_root().join("target/ephemeral-test");
    let script = workspace_root().join("scripts/build-ephemeral.sh");
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script).arg(&out);
    let started = Instant::now();
    let (lines, status) = run_bounded("build-ephemeral", cmd, Duration::from_secs(600));
    if !status.is_some_and(|s| s.success()) {
        eprintln!(
            "skipping: the ephemeral environment did not build:\n{}",
            lines.join("\n")
        );
        return None;
    }
    eprintln!(
        "the ephemeral environment built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Some(out)
}

/// A chassis control script for ipmi_sim that starts QEMU on power-on, stops it on power-off,
/// and reports power on while QEMU runs: the BMC really powers the machine.
pub(crate) fn chassis_script(dir: &Path, qemu: &str) -> PathBuf {
    let path = dir.join("chassis.sh");
    let state = dir.join("chassis");
    std::fs::create_dir_all(&state).unwrap();
    let text = format!(
        r#"#!/bin/sh
D={state}
op=$2; shift 2
running() {{ [ -f $D/pid ] && kill -0 "$(cat $D/pid)" 2>/dev/null; }}
if [ "$op" = get ]; then
  for k in "$@"; do
    if [ "$k" = power ]; then if running; then echo power:1; else echo power:0; fi
    else echo "$k:$(cat $D/$k 2>/dev/null || echo none)"; fi
  done
elif [ "$op" = set ]; then
  while [ $# -ge 2 ]; do
    echo "$(date +%s.%N) set $1 $2" >> $D/log
    if [ "$1" = power ]; then
      if [ "$2" = 1 ]; then
        running || {{ setsid {qemu} </dev/null >>$D/qemu.log 2>&1 & echo $! > $D/pid; }}
      else
        running && kill "$(cat $D/pid)"
      fi
    else
      echo "$2" > $D/$1
    fi
    shift 2
  done
fi
exit 0
"#,
        state = state.display()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// Kills the machine QEMU the chassis script started, whatever happens to the test.
pub(crate) struct Machine(pub(crate) PathBuf);

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(self.0.join("chassis/pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i64>().ok())
        {
            crate::support::netns::signal(pid, "KILL");
        }
    }
}

pub(crate) fn curl(ns: &Netns, token: &str, method: &str, path: &str, body: Option<&str>) -> Value {
    let mut cmd = ns.command("curl", LIFETIME);
    cmd.args(["-sS", "--max-time", "60", "-X", method])
        .args(["-H", &format!("authorization: Bearer {token}")]);
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "-d", b]);
    }
    cmd.arg(format!("http://127.0.0.1:5240{path}"));
    let (lines, _) = run_bounded("curl", cmd, Duration::from_secs(90));
    serde_json::from_str(&lines.join("\n")).unwrap_or_else(|_| panic!("{path}: {lines:?}"))
}

/// A BMC: OpenIPMI's ipmi_sim on 127.0.0.1:`port` in the namespace, whose chassis control
/// starts and stops `qemu`. Dropping it stops the BMC, then kills the machine.
pub(crate) struct Bmc {
    _daemon: Daemon,
    _machine: Machine,
}

/// Starts a [`Bmc`] keeping its files in `dir`, and waits (bounded) until it listens.
pub(crate) fn start_bmc(ns: &Netns, ns_name: &str, dir: &Path, qemu: &str, port: u16) -> Bmc {
    std::fs::create_dir_all(dir).unwrap();
    let script = chassis_script(dir, qemu);
    let machine = Machine(dir.to_path_buf());
    let lan = dir.join("lan.conf");
    let template = std::fs::read_to_string(peers_dir().join("ipmi-lan.conf")).unwrap();
    std::fs::write(
        &lan,
        template
            .replace("addr 127.0.0.1 9623", &format!("addr 127.0.0.1 {port}"))
            .replace("@DIR@/ipmi/chassis.sh", script.to_str().unwrap()),
    )
    .unwrap();
    let mut cmd = ns.command("ipmi_sim", LIFETIME);
    cmd.arg("-c")
        .arg(&lan)
        .arg("-f")
        .arg(peers_dir().join("ipmi-sim.emu"))
        .arg("-s")
        .arg(dir.join("simstate"))
        .arg("-n");
    let daemon = Daemon::spawn("ipmi_sim", cmd);
    wait_listening(ns_name, "ipmi_sim", "udp", port, Duration::from_secs(10));
    Bmc {
        _daemon: daemon,
        _machine: machine,
    }
}

/// Imports the boot resource built in `dir` on the store of the controller `config` names
/// (the controller stopped).
pub(crate) fn import(config: &Path, dir: &Path) {
    let mut import = std::process::Command::new(controller_binary());
    import
        .arg("--config")
        .arg(config)
        .args(["boot-resource", "import"])
        .arg(dir);
    let (lines, status) = run_bounded("import", import, Duration::from_secs(300));
    assert!(status.is_some_and(|s| s.success()), "{lines:?}");
}

/// Starts the controller of `config` in the namespace, waits (bounded) until it listens, and
/// reads the admin token its first start wrote into `state`.
pub(crate) fn start_controller(ns: &Netns, config: &Path, state: &Path) -> (Daemon, String) {
    let mut cmd = ns.command(controller_binary(), LIFETIME);
    cmd.arg("--config").arg(config);
    let controller = Daemon::spawn("controller", cmd);
    assert!(
        controller
            .wait_event(Duration::from_secs(30), |e| e["event"] == "listening")
            .is_some(),
        "{}",
        controller.transcript()
    );
    let token = std::fs::read_to_string(state.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    (controller, token)
}
