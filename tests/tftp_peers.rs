//! The `tftpd` example against real TFTP clients and PXE firmware, each test in network
//! namespaces of its own.
//!
//! Clients: tftp-hpa (netascii and binary), curl (blksize), busybox tftp, atftp (windowsize 1,
//! 4, 16 and 64 by blksize 512, 1468 and 8192), the crate's own client (`tftp` example) for
//! 1,000 concurrent transfers, and QEMU firmware (iPXE on BIOS, edk2 on UEFI) loading what it
//! boots from the server. Every file is compared with the original; the server's JSON events
//! and metrics are checked too. Uploads: tftp-hpa `put` into `--allow-write`. Robustness: 5 %
//! loss with reordering (nftables and an HTB class, no netem needed), block-number rollover,
//! requests that never acknowledge (no amplification) and a request flood.
//!
//! Needs root and the peers `scripts/setup.sh` installs; a test without them prints why and
//! passes. Each test uses namespaces and a subnet of its own (`10.77.100.0/24` and up), so
//! they run in parallel.
//!
//! This file holds the harness (`Lan`: a server and a client namespace); the tests are in
//! `clients` (the real clients, windows, small buffers, rollover), `lossy` (the lossy link),
//! `limits` (concurrency, amplification, floods), `firmware` (QEMU) and `modes` (single port,
//! uploads).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "tftp_peers/clients.rs"]
mod clients;
#[path = "tftp_peers/firmware.rs"]
mod firmware;
#[path = "tftp_peers/limits.rs"]
mod limits;
#[path = "tftp_peers/lossy.rs"]
mod lossy;
#[path = "tftp_peers/modes.rs"]
mod modes;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::netns::{Daemon, Netns, Scratch, run_bounded};
use support::{can_run, existing};

/// The bound on every wait for a peer that answers in a few seconds.
const WAIT: Duration = Duration::from_secs(30);
/// The bound for QEMU firmware under TCG.
const WAIT_FIRMWARE: Duration = Duration::from_secs(150);
/// The hard limit on every process a test starts, in case the test itself dies.
const LIFETIME: Duration = Duration::from_secs(300);

fn example(name: &str) -> PathBuf {
    support::example_binary(name)
}

/// A server namespace and a client namespace joined by `vsrv`/`vcli`, and the `tftpd`
/// example serving a scratch directory in the server namespace on port 69.
struct Lan {
    // Fields drop in order: processes before their namespaces, files last.
    server: Option<Daemon>,
    n: u8,
    cli: Netns,
    srv: Netns,
    scratch: Scratch,
}

impl Lan {
    /// Test `n`'s namespaces: the server at `10.77.(100+n).1/24`, the client at `.2`.
    fn new(n: u8, name: &str) -> Self {
        let scratch = Scratch::new(&format!("tftp-{name}"));
        std::fs::create_dir_all(scratch.join("root")).unwrap();
        let srv = Netns::new(&format!("maas-tftp{n}-srv"));
        let cli = Netns::new(&format!("maas-tftp{n}-cli"));
        srv.veth("vsrv", &cli, "vcli");
        let net = 100 + n;
        srv.ip(&["addr", "add", &format!("10.77.{net}.1/24"), "dev", "vsrv"]);
        srv.ip(&["link", "set", "vsrv", "up"]);
        cli.ip(&["addr", "add", &format!("10.77.{net}.2/24"), "dev", "vcli"]);
        cli.ip(&["link", "set", "vcli", "up"]);
        Self {
            server: None,
            n,
            cli,
            srv,
            scratch,
        }
    }

    fn server_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 100 + self.n, 1)
    }

    fn root(&self) -> PathBuf {
        self.scratch.join("root")
    }

    /// Writes `len` pseudo-random bytes to `root/name` and returns them.
    fn file(&self, name: &str, len: usize) -> Vec<u8> {
        let data = pseudo_random(len, name.len() as u64);
        std::fs::write(self.root().join(name), &data).unwrap();
        data
    }

    /// Starts `tftpd` with `extra` flags and waits until it listens.
    fn serve(&mut self, extra: &[&str]) {
        let mut cmd = self.srv.command(existing(example("tftpd")), LIFETIME);
        cmd.arg("--root")
            .arg(self.root())
            .args(["--listen", &format!("{}:69", self.server_ip())])
            .args(extra)
            .env("RUST_BACKTRACE", "1");
        let server = Daemon::spawn("tftpd", cmd);
        let first = server.wait_event(WAIT, |_| true);
        assert!(
            first.is_some_and(|e| e["event"] == "listening"),
            "tftpd did not start\n{}",
            server.transcript()
        );
        self.server = Some(server);
    }

    fn server(&self) -> &Daemon {
        self.server.as_ref().unwrap()
    }

    /// Runs `program args` in the client namespace (working directory: the scratch
    /// directory), bounded, and returns its output, panicking if it fails.
    fn client(&self, program: &str, args: &[&str]) -> Vec<String> {
        let mut cmd = self.cli.command(program, LIFETIME);
        cmd.args(args).current_dir(self.scratch.join(""));
        let (lines, status) = run_bounded(program, cmd, WAIT);
        assert!(
            status.is_some_and(|s| s.success()),
            "{program} {args:?} failed ({status:?}):\n{}\n--- server ---\n{}",
            lines.join("\n"),
            self.server
                .as_ref()
                .map(Daemon::transcript)
                .unwrap_or_default()
        );
        lines
    }

    fn out(&self, name: &str) -> String {
        self.scratch.join(name).display().to_string()
    }

    /// Asserts the client wrote exactly `expected` to `name` in the scratch directory.
    fn assert_received(&self, name: &str, expected: &[u8], what: &str) {
        let got = std::fs::read(self.scratch.join(name))
            .unwrap_or_else(|e| panic!("{what}: no output file {name}: {e}"));
        assert_eq!(got.len(), expected.len(), "{what}: length differs");
        assert!(
            fnv(&got) == fnv(expected),
            "{what}: content differs (checksum)"
        );
    }

    /// The server's `completed` event for `file` from its `n`th transfer, waiting for it.
    fn completed(&self, file: &str, n: usize) -> Value {
        let server = self.server();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let events: Vec<Value> = server
                .events()
                .into_iter()
                .filter(|e| e["event"] == "completed" && e["file"] == file)
                .collect();
            if let Some(e) = events.get(n) {
                return e.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no completed event #{n} for {file}\n{}",
                server.transcript()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's `n`th event that ends a transfer of `file`, however it ended.
    fn ended(&self, file: &str, n: usize) -> Value {
        let server = self.server();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let events: Vec<Value> = server
                .events()
                .into_iter()
                .filter(|e| e["file"] == file && e["outcome"].is_string())
                .collect();
            if let Some(e) = events.get(n) {
                return e.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no end of transfer #{n} for {file}\n{}",
                server.transcript()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server and returns its final metrics.
    fn stop(&mut self) -> Value {
        let server = self.server.as_mut().unwrap();
        server.stop("TERM", Duration::from_secs(5));
        let stopped = server
            .events()
            .into_iter()
            .find(|e| e["event"] == "stopped")
            .unwrap_or_else(|| panic!("no stopped event\n{}", server.transcript()));
        stopped["metrics"].clone()
    }
}

/// Deterministic bytes (xorshift), different per seed.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// FNV-1a 64, the checksum compared (the lengths are compared too).
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
