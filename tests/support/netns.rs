//! Network namespaces, links and processes for tests against real peers.
//!
//! Everything here cleans up after itself on `Drop`, also when a test panics: a [`Netns`]
//! kills what still runs inside it (by PID, from `ip netns pids`) and deletes itself, a
//! [`Daemon`] kills its process group, a [`Scratch`] directory is removed. Every wait is
//! bounded by a timeout.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs a setup command, panicking with its output when it fails.
pub(crate) fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip` with `args` (setup: panics on failure).
pub(crate) fn ip(args: &[&str]) {
    run("ip", args);
}

/// Sends `signal` (a name such as `TERM`) to a PID, or to a process group when `pid` is
/// negative. Errors (the process is gone) are ignored.
pub(crate) fn signal(pid: i64, signal: &str) {
    let target = pid.to_string();
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A network namespace, deleted on `Drop` together with its links, after the processes
/// still running in it have been killed.
#[derive(Debug)]
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (removing a stale one a crashed run left behind) with `lo`
    /// up and IPv6 duplicate address detection off, so addresses are usable at once.
    pub(crate) fn new(name: &str) -> Self {
        if Path::new("/run/netns").join(name).exists() {
            Self::kill_all(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
        ip(&["netns", "add", name]);
        let ns = Self {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        for key in ["all", "default"] {
            ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0");
        }
        ns
    }

    /// Runs `ip -n NAME args` (setup: panics on failure).
    pub(crate) fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Sets a sysctl inside the namespace.
    pub(crate) fn sysctl(&self, key: &str, value: &str) {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.name,
                "sysctl",
                "-q",
                "-w",
                &format!("{key}={value}"),
            ],
        );
    }

    /// A command that runs `program` inside the namespace, killed after `lifetime` even
    /// if the test that started it dies without cleaning up.
    pub(crate) fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        lifetime: Duration,
    ) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &lifetime.as_secs().to_string()])
            .args(["ip", "netns", "exec", &self.name])
            .arg(program);
        cmd
    }

    /// Waits (bounded) until `dev` has a usable IPv6 link-local address: DHCPv6 clients
    /// refuse to start without one.
    pub(crate) fn wait_link_local(&self, dev: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = Command::new("ip")
                .args([
                    "-n", &self.name, "-6", "addr", "show", "dev", dev, "scope", "link",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains("inet6 fe80") && !text.contains("tentative") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{dev} has no link-local address: {text}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Joins `self` and `peer` with a veth pair: `if_here` in `self`, `if_there` in `peer`.
    /// Both ends are left down.
    pub(crate) fn veth(&self, if_here: &str, peer: &Self, if_there: &str) {
        ip(&[
            "link", "add", if_here, "netns", &self.name, "type", "veth", "peer", "name", if_there,
            "netns", &peer.name,
        ]);
    }

    /// Adds bridge `bridge` with the addresses `cidrs`, up.
    pub(crate) fn bridge(&self, bridge: &str, cidrs: &[&str]) {
        self.ip(&["link", "add", bridge, "type", "bridge"]);
        for cidr in cidrs {
            self.ip(&["addr", "add", cidr, "dev", bridge]);
        }
        self.ip(&["link", "set", bridge, "up"]);
    }

    /// Joins `peer` to `bridge` here: a veth pair, `port` enslaved to the bridge and up,
    /// `if_there` in `peer` left down.
    pub(crate) fn attach(&self, bridge: &str, port: &str, peer: &Self, if_there: &str) {
        self.veth(port, peer, if_there);
        self.ip(&["link", "set", port, "master", bridge]);
        self.ip(&["link", "set", port, "up"]);
    }

    /// Adds bridge `bridge` with address `cidr` and a tap `tap` enslaved to it, all up.
    pub(crate) fn bridge_with_tap(&self, bridge: &str, cidr: &str, tap: &str) {
        self.bridge(bridge, &[cidr]);
        run(
            "ip",
            &[
                "netns", "exec", &self.name, "ip", "tuntap", "add", "dev", tap, "mode", "tap",
            ],
        );
        self.ip(&["link", "set", tap, "master", bridge]);
        self.ip(&["link", "set", tap, "up"]);
    }

    fn kill_all(name: &str) {
        let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i64>() {
                signal(pid, "KILL");
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Daemonized children (dhclient after binding, dhcpcd helpers) outlive their
        // process group leader; whatever still runs in the namespace is ours.
        Self::kill_all(&self.name);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A private scratch directory, removed on `Drop`.
#[derive(Debug)]
pub(crate) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates a fresh directory for the test `name`.
    pub(crate) fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("maas-peers-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    /// A path inside the directory.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Output lines, and how many of the two output streams have closed.
type Lines = Arc<(Mutex<(Vec<String>, usize)>, Condvar)>;

/// A process that runs until the test ends: its stdout and stderr lines are collected as
/// they come, and its process group is killed on `Drop`.
#[derive(Debug)]
pub(crate) struct Daemon {
    name: String,
    child: Child,
    lines: Lines,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// Spawns `cmd` in a process group of its own, reading its output lines.
    pub(crate) fn spawn(name: &str, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let lines: Lines = Arc::default();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        collect(stdout, &lines);
        collect(stderr, &lines);
        Self {
            name: name.to_string(),
            child,
            lines,
            status: None,
        }
    }

    /// The process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The output lines so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().0.clone()
    }

    /// The output lines that are JSON objects.
    pub(crate) fn events(&self) -> Vec<Value> {
        self.lines().iter().filter_map(|l| json_object(l)).collect()
    }

    /// Waits up to `timeout` for an output line that satisfies `pred`; gives up early when
    /// the process has closed its output.
    pub(crate) fn wait_line(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let mut found = None;
        self.wait_until(timeout, |lines| {
            found = lines.iter().find(|l| pred(l)).cloned();
            found.is_some()
        });
        found
    }

    /// Waits up to `timeout` for a JSON output line that satisfies `pred`.
    pub(crate) fn wait_event(
        &self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        self.wait_line(timeout, |l| json_object(l).is_some_and(|v| pred(&v)))
            .and_then(|l| json_object(&l))
    }

    /// Waits until `done` holds for the output so far, the output is closed, or `timeout`.
    fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, ready) = &*self.lines;
        let mut state = lock.lock().unwrap();
        loop {
            if done(&state.0) {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            if state.1 == 2 {
                return false;
            }
            state = ready.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status {
                return Some(status);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                self.status = Some(status);
                // Let the reader threads drain what the process wrote last (its children
                // may hold the pipes open: bounded).
                self.wait_until(Duration::from_millis(500), |_| false);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `SIGKILL` to the process group (no chance to flush or sync), and reaps it.
    pub(crate) fn kill_hard(&mut self) {
        signal(-i64::from(self.pid()), "KILL");
        assert!(
            self.wait_exit(Duration::from_secs(5)).is_some(),
            "{} survived SIGKILL",
            self.name
        );
    }

    /// Asks the process to stop (`SIGTERM`, or `SIGINT` for tools that flush on it), then
    /// kills its process group if it is still there after `grace`.
    pub(crate) fn stop(&mut self, signal_name: &str, grace: Duration) {
        if self.status.is_none() {
            signal(i64::from(self.pid()), signal_name);
            let _ = self.wait_exit(grace);
        }
        self.kill_group();
    }

    fn kill_group(&mut self) {
        signal(-i64::from(self.pid()), "KILL");
        if self.status.is_none() {
            let _ = self.wait_exit(Duration::from_secs(5));
        }
    }

    /// The output so far, for assertion messages.
    pub(crate) fn transcript(&self) -> String {
        format!("--- {} output ---\n{}", self.name, self.lines().join("\n"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop("TERM", Duration::from_secs(2));
    }
}

fn collect(stream: impl Read + Send + 'static, lines: &Lines) {
    let lines = Arc::clone(lines);
    thread::spawn(move || {
        let (lock, ready) = &*lines;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            lock.lock().unwrap().0.push(line);
            ready.notify_all();
        }
        lock.lock().unwrap().1 += 1;
        ready.notify_all();
    });
}

/// The line parsed as a JSON object, if it is one.
pub(crate) fn json_object(line: &str) -> Option<Value> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

/// Runs `cmd` to completion in a process group of its own, killing the group if it takes
/// longer than `timeout`. Returns its output lines (stdout and stderr interleaved) and its exit
/// status, `None` when it had to be killed.
pub(crate) fn run_bounded(
    name: &str,
    cmd: Command,
    timeout: Duration,
) -> (Vec<String>, Option<ExitStatus>) {
    let mut daemon = Daemon::spawn(name, cmd);
    let finished = daemon.wait_exit(timeout);
    daemon.kill_group();
    (daemon.lines(), finished)
}
