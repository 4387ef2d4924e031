//! Peers of the power tests: OpenIPMI's ipmi_sim, sushy-emulator, a webhook server, and
//! reading UDP payloads out of a tcpdump capture.

// Test binaries other than the power tests include this module without using it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::netns::{Daemon, Netns, Scratch, run_bounded};
use super::which;

/// The repository's copies of the peer configurations.
pub(crate) fn peers_dir() -> PathBuf {
    workspace_root().join("tests/peers/power")
}

/// Copies a peer template into the scratch directory, replacing `@DIR@` and extra pairs.
pub(crate) fn template(scratch: &Scratch, name: &str, to: &str, extra: &[(&str, &str)]) -> PathBuf {
    let dir = scratch.join("");
    let mut text = std::fs::read_to_string(peers_dir().join(name)).unwrap();
    for (from, with) in extra {
        text = text.replace(from, with);
    }
    text = text.replace("@DIR@", dir.to_str().unwrap().trim_end_matches('/'));
    let path = scratch.join(to);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits (bounded) until something listens on `proto` port `port` inside `ns`.
pub(crate) fn wait_listening(ns: &str, name: &str, proto: &str, port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let flag = if proto == "udp" { "-uln" } else { "-tln" };
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", flag])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} ")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is not listening on {proto} {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running ipmi_sim with its chassis state directory.
pub(crate) struct IpmiSim {
    pub(crate) daemon: Daemon,
    pub(crate) state: PathBuf,
    pub(crate) port: u16,
}

impl IpmiSim {
    /// Starts ipmi_sim inside `ns` on `addr:port` (users admin/password and oper/operpass).
    pub(crate) fn start(
        ns: &Netns,
        ns_name: &str,
        scratch: &Scratch,
        addr: &str,
        port: u16,
        lifetime: Duration,
    ) -> Self {
        let tag = format!("ipmi{port}");
        let script = template(
            scratch,
            "ipmi-chassis.sh",
            &format!("{tag}/chassis.sh"),
            &[(
                "@DIR@/ipmi/state/chassis",
                &format!("@DIR@/{tag}/state/chassis"),
            )],
        );
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let conf = template(
            scratch,
            "ipmi-lan.conf",
            &format!("{tag}/lan.conf"),
            &[
                ("addr 127.0.0.1 9623", &format!("addr {addr} {port}")),
                ("@DIR@/ipmi/chassis.sh", script.to_str().unwrap()),
            ],
        );
        let emu = peers_dir().join("ipmi-sim.emu");
        let mut cmd = ns.command(which("ipmi_sim").unwrap(), lifetime);
        cmd.arg("-c")
            .arg(&conf)
            .arg("-f")
            .arg(&emu)
            .arg("-s")
            .arg(scratch.join(&format!("{tag}/simstate")))
            .arg("-n");
        let daemon = Daemon::spawn(&tag, cmd);
        wait_listening(ns_name, &tag, "udp", port, Duration::from_secs(10));
        Self {
            daemon,
            state: scratch.join(&format!("{tag}/state/chassis")),
            port,
        }
    }

    /// A chassis value the simulator's control script stored (`power`, `boot`, ...).
    pub(crate) fn value(&self, key: &str) -> Option<String> {
        std::fs::read_to_string(self.state.join(key))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Sets a chassis value as the machine would (a guest honouring ACPI soft-off).
    pub(crate) fn set_value(&self, key: &str, value: &str) {
        std::fs::create_dir_all(&self.state).unwrap();
        std::fs::write(self.state.join(key), format!("{value}\n")).unwrap();
    }

    /// The control script's log: one `TIME set KEY VALUE` line per change.
    pub(crate) fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_owned())
            .collect()
    }
}

/// `ipmitool` against the simulator inside `ns`; its output lines.
pub(crate) fn ipmitool(
    ns: &Netns,
    port: u16,
    user: &str,
    pass: &str,
    args: &[&str],
) -> Vec<String> {
    let mut cmd = ns.command(which("ipmitool").unwrap(), Duration::from_secs(30));
    cmd.args([
        "-I",
        "lanplus",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        user,
        "-P",
        pass,
        "-C",
        "3",
    ])
    .args(args);
    let (lines, status) = run_bounded("ipmitool", cmd, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "ipmitool {args:?}: {lines:?}"
    );
    lines
}

/// The sushy-emulator executable: in the virtualenv scripts/setup.sh makes, or on PATH.
pub(crate) fn sushy_emulator() -> Option<PathBuf> {
    let venv = std::env::var_os("MAAS_PEERS_VENV")
        .map_or_else(|| PathBuf::from("/opt/maas-rs-peers"), PathBuf::from);
    let p = venv.join("bin/sushy-emulator");
    if p.is_file() {
        return Some(p);
    }
    which("sushy-emulator")
}

/// A running sushy-emulator (fake driver, basic auth admin/password, power changes applied
/// 1-2 s after the request).
pub(crate) fn start_sushy(
    ns: &Netns,
    ns_name: &str,
    scratch: &Scratch,
    port: u16,
    lifetime: Duration,
) -> Daemon {
    let exe = sushy_emulator().unwrap();
    let python = exe.parent().unwrap().join("python3");
    // An htpasswd entry with few bcrypt rounds, made by the emulator's own bcrypt.
    let out = Command::new(&python)
        .args([
            "-c",
            "import bcrypt; print('admin:' + bcrypt.hashpw(b'password', bcrypt.gensalt(4)).decode())",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bcrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::create_dir_all(scratch.join("redfish/state")).unwrap();
    std::fs::write(scratch.join("redfish/htpasswd"), &out.stdout).unwrap();
    let conf = template(
        scratch,
        "redfish-emulator.conf",
        "redfish/emulator.conf",
        &[(
            "SUSHY_EMULATOR_LISTEN_PORT = 8000",
            &format!("SUSHY_EMULATOR_LISTEN_PORT = {port}"),
        )],
    );
    // The fake driver applies a power change 1 to 11 s (at random) after the request; the
    // tests pin that delay to 2 s, as sushy-tools' own tests do, so every change still takes
    // 1-2 s and is confirmed by polling, without up to 11 s of waiting per action.
    let mut cmd = ns.command(&python, lifetime);
    cmd.arg("-c")
        .arg(
            "import random, sys\n\
             random.randint = lambda a, b: 2\n\
             from sushy_tools.emulator.main import main\n\
             sys.argv[0] = 'sushy-emulator'\n\
             sys.exit(main())",
        )
        .arg("--config")
        .arg(conf);
    let d = Daemon::spawn("sushy-emulator", cmd);
    wait_listening(
        ns_name,
        "sushy-emulator",
        "tcp",
        port,
        Duration::from_secs(20),
    );
    d
}

/// The UDP payloads in a classic pcap file (Ethernet or Linux cooked capture).
pub(crate) fn pcap_udp_payloads(file: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if file.len() < 24 {
        return out;
    }
    let link = u32::from_le_bytes(file[20..24].try_into().unwrap());
    let l2 = match link {
        1 => 14,
        113 => 16,
        _ => return out,
    };
    let mut off = 24;
    while off + 16 <= file.len() {
        let incl = u32::from_le_bytes(file[off + 8..off + 12].try_into().unwrap()) as usize;
        let Some(pkt) = file.get(off + 16..off + 16 + incl) else {
            break;
        };
        off += 16 + incl;
        let Some(ip) = pkt.get(l2..) else { continue };
        if ip.first().is_none_or(|b| b >> 4 != 4) || ip.get(9) != Some(&17) {
            continue;
        }
        let ihl = usize::from(ip[0] & 15) * 4;
        if let Some(udp) = ip.get(ihl..).filter(|u| u.len() >= 8) {
            out.push(udp[8..].to_vec());
        }
    }
    out
}

/// The workspace root, whichever package includes these helpers: the nearest ancestor of the
/// package's directory that holds `tests/support`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("tests/support/mod.rs").is_file())
        .expect("the workspace root")
        .to_path_buf()
}
