//! The ephemeral environment (`scripts/build-ephemeral.sh`: the Debian kernel and an initramfs
//! with busybox, the drivers and the commissioning agent of `scripts/ephemeral/`) booted by
//! QEMU in a network namespace, against a metadata service that records what it receives
//! (`tests/peers/ephemeral/metadata-server.py`) and dnsmasq handing out the address.
//!
//! Each test boots one machine and checks what the agent reported and that the machine powered
//! itself off: commissioning a `pc` machine (virtio NIC and disk, 2 CPUs, 512 MiB) and a `q35`
//! one (e1000, SATA and NVMe disks, 1 CPU, 768 MiB), the `poweroff` action (no request at all),
//! a wrong token (refused with 401, nothing more sent), and a deployment whose image does not
//! match its checksum (written, found out, the disk's first MiB wiped, the failure reported).
//!
//! Needs root, QEMU, dnsmasq, python3 and what the image builder needs (apt-get, dpkg-deb,
//! cpio, zstd and the Debian package lists; scripts/setup.sh installs them); a test without
//! them prints why and passes. The image is built once into `CARGO_TARGET_TMPDIR` (the script
//! leaves it alone on later runs when nothing changed). The machines boot one at a time (TCG
//! on a shared machine); each test has a namespace of its own on `10.77.140.0/24`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::netns::{Daemon, Netns, Scratch, run_bounded};
use support::qemu::serial_text;
use support::{can_run, which};

/// The bound on building the image (a cold cache downloads ~70 MB of kernel package).
const BUILD: Duration = Duration::from_secs(900);
/// The bound on a machine's life from power-on to power-off under TCG (about 10 s alone).
const BOOT: Duration = Duration::from_secs(240);
/// The bound on a peer's start.
const WAIT: Duration = Duration::from_secs(30);
/// The hard limit on every process a test starts, in case the test itself dies.
const LIFETIME: Duration = Duration::from_secs(400);

const TOKEN: &str = "TEST";
const PORT: u16 = 5248;
const UUID: &str = "6c2b1a0e-77e1-4c8a-9d1e-0140a77e8c10";
/// A system serial number that needs escaping in JSON: quotes, a backslash, spaces.
const SERIAL: &str = r#"eph "7" a\b"#;

/// The tools every test needs, the image builder's included.
const TOOLS: &[&str] = &[
    "ip",
    "qemu-system-x86_64",
    "dnsmasq",
    "python3",
    "apt-get",
    "dpkg-deb",
    "cpio",
    "zstd",
];

/// The directory holding `vmlinuz`, `initrd.img` and `manifest.json`, built on first use; `None`
/// (the reason printed) when this machine cannot build it.
fn image(test: &str) -> Option<&'static Path> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = IMAGE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ephemeral");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-ephemeral.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script).arg(&out);
        let started = Instant::now();
        let (lines, status) = run_bounded("build-ephemeral", cmd, BUILD);
        let output = lines.join("\n");
        match status.and_then(|s| s.code()) {
            Some(0) => {
                eprintln!(
                    "ephemeral image ready in {:.1} s:\n{output}",
                    started.elapsed().as_secs_f64()
                );
                Ok(out)
            }
            // What this machine lacks (a tool, the package lists, the registry): skip.
            Some(3) => Err(output),
            _ => panic!("build-ephemeral.sh failed ({status:?}):\n{output}"),
        }
    });
    match built {
        Ok(dir) => Some(dir),
        Err(why) => {
            eprintln!("skipping {test}: the ephemeral image cannot be built here:\n{why}");
            None
        }
    }
}

/// One machine at a time: TCG is slow and the machine is shared.
fn one_machine_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A namespace with bridge `br0` (10.77.140.1/24) and `tap0`, dnsmasq leasing
/// 10.77.140.100-199 on it, and the metadata service on 10.77.140.1:5248 expecting `TOKEN`.
struct Lab {
    // Fields drop in order: processes before their namespace, files last.
    metadata: Daemon,
    _dnsmasq: Daemon,
    ns: Netns,
    scratch: Scratch,
    image: &'static Path,
}

impl Lab {
    /// Test `test`'s lab in namespace `maas-eph{n}`, or `None` (the reason printed) when this
    /// machine cannot run it.
    fn new(test: &str, n: u8) -> Option<Self> {
        Self::serving(test, n, &[])
    }

    /// [`new`](Self::new), the metadata service started with `extra` arguments (the deployment
    /// side: an image, the checksum it claims, the raw size).
    fn serving(test: &str, n: u8, extra: &[&str]) -> Option<Self> {
        if !can_run(test, TOOLS) {
            return None;
        }
        let image = image(test)?;
        let scratch = Scratch::new(&format!("ephemeral-{test}"));
        let ns = Netns::new(&format!("maas-eph{n}"));
        ns.bridge_with_tap("br0", "10.77.140.1/24", "tap0");

        let mut cmd = ns.command("dnsmasq", LIFETIME);
        cmd.args([
            "-k",
            "--port=0",
            "--log-facility=-",
            "--interface=br0",
            "--bind-interfaces",
            "--dhcp-range=10.77.140.100,10.77.140.199,255.255.255.0,1h",
            "--dhcp-authoritative",
            "--no-ping",
            "--user=root",
        ])
        .arg(format!(
            "--dhcp-leasefile={}",
            scratch.join("dnsmasq.leases").display()
        ))
        .arg(format!(
            "--pid-file={}",
            scratch.join("dnsmasq.pid").display()
        ));
        let dnsmasq = Daemon::spawn("dnsmasq", cmd);
        assert!(
            dnsmasq
                .wait_line(WAIT, |l| l.contains("DHCP, IP range"))
                .is_some(),
            "dnsmasq did not start\n{}",
            dnsmasq.transcript()
        );

        let python = Path::new("/usr/bin/python3")
            .exists()
            .then(|| PathBuf::from("/usr/bin/python3"))
            .or_else(|| which("python3"))
            .unwrap();
        let server =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/ephemeral/metadata-server.py");
        let mut cmd = ns.command(python, LIFETIME);
        cmd.arg(server)
            .args(["10.77.140.1", &PORT.to_string(), TOKEN])
            .args(extra);
        let metadata = Daemon::spawn("metadata-server", cmd);
        assert!(
            metadata.wait_line(WAIT, |l| l == "listening").is_some(),
            "the metadata server did not start\n{}",
            metadata.transcript()
        );
        Some(Self {
            metadata,
            _dnsmasq: dnsmasq,
            ns,
            scratch,
            image,
        })
    }

    /// A sparse raw disk of `bytes` in the scratch directory.
    fn disk(&self, name: &str, bytes: u64) -> PathBuf {
        let path = self.scratch.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .set_len(bytes)
            .unwrap();
        path
    }

    /// Boots the image with `maas_action=action` and `token` on the kernel command line and the
    /// machine described by `args`; waits (bounded) for QEMU to exit and returns the serial
    /// console. Panics unless the machine powered itself off.
    fn boot(&self, action: &str, token: &str, args: &[&str]) -> String {
        let _one = one_machine_at_a_time();
        let serial = self.scratch.join("serial.log");
        let append = format!(
            "console=ttyS0 maas_url=http://10.77.140.1:{PORT}/metadata/v1/ \
             maas_token={token} maas_action={action}"
        );
        let mut cmd = self.ns.command("qemu-system-x86_64", LIFETIME);
        cmd.args(["-accel", "tcg", "-display", "none", "-monitor", "none"])
            // A panic or reboot ends QEMU too; the console then lacks the power-off line.
            .arg("-no-reboot")
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-kernel")
            .arg(self.image.join("vmlinuz"))
            .arg("-initrd")
            .arg(self.image.join("initrd.img"))
            .args(["-append", &append])
            .args(args);
        let started = Instant::now();
        let mut vm = Daemon::spawn("qemu", cmd);
        let status = vm.wait_exit(BOOT);
        let console =
            String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
        assert!(
            status.is_some(),
            "the machine did not power off within {BOOT:?}\n{}\n{}",
            serial_text(&serial),
            self.metadata.transcript()
        );
        assert!(
            status.unwrap().success(),
            "QEMU ended with {status:?}\n{}\n{}",
            vm.transcript(),
            serial_text(&serial)
        );
        let last = console
            .lines()
            .rfind(|l| l.contains("maas-ephemeral:"))
            .unwrap_or_default();
        assert!(
            last.ends_with("maas-ephemeral: powering off"),
            "the agent did not power the machine off (last line: {last:?})\n{}",
            serial_text(&serial)
        );
        assert!(
            !console.contains("Kernel panic"),
            "{}",
            serial_text(&serial)
        );
        eprintln!(
            "{action}: powered on to off in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        console
    }

    /// The requests the metadata service received.
    fn requests(&self) -> Vec<Value> {
        self.metadata
            .events()
            .into_iter()
            .filter(|e| e.get("method").is_some())
            .collect()
    }

    /// Checks the two requests of a commissioning run (the start event, then the report, both
    /// with the token and the JSON content type) and returns the report.
    fn report(&self, console: &str) -> Value {
        let requests = self.requests();
        let context = || format!("{}\n--- serial ---\n{console}", self.metadata.transcript());
        assert_eq!(requests.len(), 2, "{}", context());
        for request in &requests {
            assert_eq!(request["method"], "POST", "{}", context());
            assert_eq!(
                request["authorization"],
                format!("Bearer {TOKEN}"),
                "{}",
                context()
            );
            assert_eq!(request["content_type"], "application/json", "{}", context());
            assert_eq!(request["status"], 200, "{}", context());
        }
        assert_eq!(requests[0]["path"], "/metadata/v1/events", "{}", context());
        assert_eq!(
            requests[0]["body"],
            json!({"kind": "commissioning_started"}),
            "{}",
            context()
        );
        assert_eq!(
            requests[1]["path"],
            "/metadata/v1/commissioning",
            "{}",
            context()
        );
        assert!(
            console.contains("maas-ephemeral: commissioning reported"),
            "{}",
            context()
        );
        let report = requests[1]["body"].clone();
        assert_eq!(report["status"], "ok", "{report:#}");
        assert_eq!(report["architecture"], "amd64", "{report:#}");
        assert_eq!(report["firmware"], "bios", "{report:#}");
        assert!(
            report["cpu"]["model"]
                .as_str()
                .is_some_and(|m| m.starts_with("QEMU")),
            "{report:#}"
        );
        assert_eq!(report["dmi"]["system_vendor"], "QEMU", "{report:#}");
        report
    }
}

/// The interface with MAC address `mac` in the report.
fn interface<'a>(report: &'a Value, mac: &str) -> &'a Value {
    report["interfaces"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["mac"] == mac))
        .unwrap_or_else(|| panic!("no interface {mac} in {report:#}"))
}

/// The disk named `name` in the report.
fn disk<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["disks"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["name"] == name))
        .unwrap_or_else(|| panic!("no disk {name} in {report:#}"))
}

/// A `pc` machine with a virtio NIC and a 1 GiB virtio disk, 2 CPUs and 512 MiB commissions:
/// the report has the CPU count, the exact memory size, the MAC, the disk, BIOS firmware and
/// the SMBIOS UUID and serial number (the latter escaped), and the machine powers off.
#[test]
fn commission_reports_a_pc_machine() {
    let Some(lab) = Lab::new("commission_reports_a_pc_machine", 1) else {
        return;
    };
    let disk_raw = lab.disk("disk.raw", 1 << 30);
    let console = lab.boot(
        "commission",
        TOKEN,
        &[
            "-machine",
            "pc",
            "-smp",
            "2",
            "-m",
            "512",
            "-uuid",
            UUID,
            "-smbios",
            &format!("type=1,serial={SERIAL}"),
            "-nic",
            "tap,ifname=tap0,script=no,downscript=no,mac=52:54:00:77:8c:10,model=virtio-net-pci",
            "-drive",
            &format!("file={},format=raw,if=virtio", disk_raw.display()),
        ],
    );
    let report = lab.report(&console);
    assert_eq!(report["cpu"]["count"], 2, "{report:#}");
    assert_eq!(report["memory_bytes"], 536_870_912_u64, "{report:#}");
    let interfaces = report["interfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), 1, "{report:#}");
    let nic = interface(&report, "52:54:00:77:8c:10");
    assert_eq!(nic["name"], "eth0", "{report:#}");
    assert_eq!(nic["link"], true, "{report:#}");
    // virtio-net does not report a speed.
    assert!(nic["speed_mbps"].is_null(), "{report:#}");
    let disks = report["disks"].as_array().unwrap();
    assert_eq!(disks.len(), 1, "{report:#}");
    assert_eq!(
        disk(&report, "vda")["size_bytes"],
        1_u64 << 30,
        "{report:#}"
    );
    assert_eq!(report["dmi"]["system_uuid"], UUID, "{report:#}");
    assert_eq!(report["dmi"]["system_serial"], SERIAL, "{report:#}");
    assert!(
        report["dmi"]["system_product"]
            .as_str()
            .is_some_and(|p| p.contains("i440FX")),
        "{report:#}"
    );
}

/// A `q35` machine with an e1000 NIC, a SATA disk on its AHCI controller and an NVMe disk,
/// 1 CPU and 768 MiB commissions: other drivers load, the memory size is exact again, the
/// NIC's speed and the disks' models and serial numbers (a model with quotes) are reported.
#[test]
fn commission_reports_a_q35_machine() {
    let Some(lab) = Lab::new("commission_reports_a_q35_machine", 2) else {
        return;
    };
    let sata = lab.disk("sata.raw", 2 << 30);
    let nvme = lab.disk("nvme.raw", 1 << 30);
    let console = lab.boot(
        "commission",
        TOKEN,
        &[
            "-machine",
            "q35",
            "-smp",
            "1",
            "-m",
            "768",
            "-nic",
            "tap,ifname=tap0,script=no,downscript=no,mac=52:54:00:77:8c:11,model=e1000",
            "-drive",
            &format!("if=none,id=d0,file={},format=raw", sata.display()),
            "-device",
            r#"ide-hd,drive=d0,bus=ide.0,serial=EPH-SATA-1,model=Eph "SATA" 1"#,
            "-drive",
            &format!("if=none,id=d1,file={},format=raw", nvme.display()),
            "-device",
            "nvme,drive=d1,serial=EPH-NVME-1",
        ],
    );
    let report = lab.report(&console);
    assert_eq!(report["cpu"]["count"], 1, "{report:#}");
    assert_eq!(report["memory_bytes"], 805_306_368_u64, "{report:#}");
    let nic = interface(&report, "52:54:00:77:8c:11");
    assert_eq!(nic["link"], true, "{report:#}");
    assert_eq!(nic["speed_mbps"], 1000, "{report:#}");
    let sda = disk(&report, "sda");
    assert_eq!(sda["size_bytes"], 2_u64 << 30, "{report:#}");
    assert_eq!(sda["model"], r#"Eph "SATA" 1"#, "{report:#}");
    assert_eq!(sda["serial"], "EPH-SATA-1", "{report:#}");
    let nvme = disk(&report, "nvme0n1");
    assert_eq!(nvme["size_bytes"], 1_u64 << 30, "{report:#}");
    assert_eq!(nvme["serial"], "EPH-NVME-1", "{report:#}");
    assert_eq!(report["disks"].as_array().unwrap().len(), 2, "{report:#}");
    assert!(
        report["dmi"]["system_product"]
            .as_str()
            .is_some_and(|p| p.contains("Q35")),
        "{report:#}"
    );
}

/// `maas_action=poweroff`: the machine says so and powers off without a single request.
#[test]
fn poweroff_action_sends_nothing() {
    let Some(lab) = Lab::new("poweroff_action_sends_nothing", 3) else {
        return;
    };
    let console = lab.boot(
        "poweroff",
        TOKEN,
        &[
            "-smp",
            "2",
            "-m",
            "512",
            "-nic",
            "tap,ifname=tap0,script=no,downscript=no,mac=52:54:00:77:8c:12,model=virtio-net-pci",
        ],
    );
    assert!(
        console.contains("maas-ephemeral: action: poweroff"),
        "{console}"
    );
    assert!(lab.requests().is_empty(), "{}", lab.metadata.transcript());
}

/// A wrong token: the start event is answered 401, the agent prints the refusal and powers off
/// without sending the report (or anything else).
#[test]
fn wrong_token_is_refused_and_powers_off() {
    let Some(lab) = Lab::new("wrong_token_is_refused_and_powers_off", 4) else {
        return;
    };
    let console = lab.boot(
        "commission",
        "WRONG",
        &[
            "-smp",
            "2",
            "-m",
            "512",
            "-nic",
            "tap,ifname=tap0,script=no,downscript=no,mac=52:54:00:77:8c:13,model=virtio-net-pci",
        ],
    );
    let requests = lab.requests();
    assert_eq!(requests.len(), 1, "{}", lab.metadata.transcript());
    assert_eq!(requests[0]["path"], "/metadata/v1/events");
    assert_eq!(requests[0]["authorization"], "Bearer WRONG");
    assert_eq!(requests[0]["status"], 401);
    assert!(
        console.contains("maas-ephemeral: the metadata service refused the token: HTTP 401"),
        "{console}"
    );
    assert!(
        console.contains("maas-ephemeral: commissioning failed: HTTP 401"),
        "{console}"
    );
}

/// Deploy mode with an image whose SHA-256 is not the one the plan gives: the agent fetches the
/// plan and both files with its token, streams the image onto the disk, finds the mismatch,
/// zeroes the disk's first MiB (the half-checked image must never boot), reports the failure
/// and powers off; nothing is reported as deployed.
#[test]
fn deploy_with_a_wrong_checksum_wipes_the_disk_and_reports_failure() {
    let test = "deploy_with_a_wrong_checksum_wipes_the_disk_and_reports_failure";
    if !can_run(test, &["gzip"]) {
        return;
    }
    let files = Scratch::new("ephemeral-deploy-files");
    // Two MiB of a pattern, gzipped: what the controller would serve as a raw.gz image.
    let raw = files.join("disk.img");
    std::fs::write(&raw, vec![0x5a_u8; 2 << 20]).unwrap();
    let mut gzip = Command::new("gzip");
    gzip.args(["-k", "-n"]).arg(&raw);
    let (lines, status) = run_bounded("gzip", gzip, WAIT);
    assert!(status.is_some_and(|s| s.success()), "{lines:?}");
    let image = files.join("disk.img.gz");
    let claimed = "0".repeat(64);
    let Some(lab) = Lab::serving(
        test,
        5,
        &[image.to_str().unwrap(), &claimed, &(2u64 << 20).to_string()],
    ) else {
        return;
    };
    let disk_raw = lab.disk("disk.raw", 64 << 20);
    // Something to wipe: the disk starts with a recognisable first MiB.
    std::fs::write(&disk_raw, vec![0xa5_u8; 1 << 20]).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk_raw)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let console = lab.boot(
        "deploy",
        TOKEN,
        &[
            "-m",
            "512",
            "-nic",
            "tap,ifname=tap0,script=no,downscript=no,mac=52:54:00:77:8c:14,model=virtio-net-pci",
            "-drive",
            &format!("file={},format=raw,if=virtio", disk_raw.display()),
        ],
    );
    let requests = lab.requests();
    let paths: Vec<&str> = requests.iter().filter_map(|r| r["path"].as_str()).collect();
    assert_eq!(
        paths,
        [
            "/metadata/v1/deploy",
            "/metadata/v1/deploy/datasource.cfg",
            "/metadata/v1/deploy/networking.cfg",
            "/image.gz",
            "/metadata/v1/deployment",
        ],
        "{}\n--- serial ---\n{console}",
        lab.metadata.transcript()
    );
    let report = &requests[4]["body"];
    assert_eq!(report["status"], "failed", "{report}");
    let why = report["error"].as_str().unwrap();
    assert!(
        why.contains("SHA-256") && why.contains(&claimed) && why.contains("wiped"),
        "{why}"
    );
    assert!(
        console.contains("maas-ephemeral: deployment failed: the image's SHA-256"),
        "{console}"
    );
    let written = std::fs::read(&disk_raw).unwrap();
    assert!(
        written[..1 << 20].iter().all(|b| *b == 0),
        "the first MiB was not wiped"
    );
    // The rest of the image went to the disk before the checksum was known.
    assert!(written[(1 << 20)..(2 << 20)].iter().all(|b| *b == 0x5a));
}
