//! The deploy image (`scripts/build-deploy-image.sh`: Debian 12 with cloud-init on a raw disk)
//! prepared as the deploying agent will prepare it and booted by QEMU in a network namespace.
//!
//! `deployed_machine_takes_its_configuration`: the image is decompressed onto a disk, and two
//! files are written into `/etc/cloud/cloud.cfg.d/` of its root partition without mounting it
//! (`debugfs -w` on the partition cut out of the disk, written back with `dd`): a NoCloud
//! datasource whose `seedfrom` is an HTTP server of the test (Python's `http.server`, logging
//! every request), and a version-2 network document with static IPv4 and IPv6 addresses, their
//! default routes and a MAC match with `set-name`. The disk is larger than the image, so
//! cloud-init also grows the root partition. The machine boots from the disk under SeaBIOS; the
//! test then checks from the host side that it answers ping on both static addresses, that the
//! report its user-data's `runcmd` serves on TCP port 8080 (over IPv4 and IPv6) shows the
//! default routes via the configured gateways, the renamed interface, the host name from the
//! meta-data and a grown root file system, and that cloud-init fetched meta-data, user-data and
//! vendor-data from the seed URL.
//!
//! `uefi_firmware_boots_the_image`: the image as built (no cloud-init files: cloud-init finds no
//! datasource and stays out of the way) boots under OVMF to the login prompt.
//!
//! Needs root, QEMU, OVMF, python3, curl, ping, debugfs, sfdisk and what the image builder needs
//! (mmdebstrap, mkfs.vfat, mtools, syslinux and the Debian package lists; scripts/setup.sh
//! installs them); a test without them prints why and passes. The image is built once into
//! `CARGO_TARGET_TMPDIR` (about 1.5 minutes; the script leaves it alone on later runs when
//! nothing changed). Run time with the image built, measured on 2 shared cores: about 2.5
//! minutes for both, the first test's machine booting to its report in about 100 s (its first
//! boot with cloud-init under TCG) and the second's to its login prompt in about 40 s; the
//! machines boot one at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::netns::{Daemon, Netns, Scratch, run_bounded};
use support::qemu::serial_text;
use support::{can_run, which};

/// The bound on building the image (a cold cache downloads about 100 MB of packages).
const BUILD: Duration = Duration::from_secs(1800);
/// The bound on a first boot with cloud-init under TCG, to the report (about 3 minutes alone).
const BOOT: Duration = Duration::from_secs(600);
/// The bound on a boot to the login prompt without cloud-init (about 1 minute alone).
const BOOT_PLAIN: Duration = Duration::from_secs(400);
/// The bound on a peer's start and on each host-side probe.
const WAIT: Duration = Duration::from_secs(30);
/// The hard limit on every process a test starts, in case the test itself dies.
const LIFETIME: Duration = Duration::from_secs(900);

const MAC: &str = "52:54:00:77:96:10";
const GATEWAY4: &str = "10.77.150.1";
const GATEWAY6: &str = "fd77:150::1";
const ADDRESS4: &str = "10.77.150.10";
const ADDRESS6: &str = "fd77:150::10";
const SEED_PORT: u16 = 8000;
const REPORT_PORT: u16 = 8080;
/// What the disk is grown by beyond the image: cloud-init's growpart takes it.
const EXTRA_DISK: u64 = 512 << 20;

/// The tools every test needs, the image builder's included.
const TOOLS: &[&str] = &[
    "ip",
    "qemu-system-x86_64",
    "python3",
    "curl",
    "ping",
    "gzip",
    "sha256sum",
    "dd",
    "debugfs",
    "sfdisk",
    "mmdebstrap",
    "mkfs.ext4",
    "mkfs.vfat",
    "mcopy",
    "syslinux",
];

/// The image as the script wrote it: its directory and manifest.
struct Image {
    dir: PathBuf,
    manifest: Value,
}

/// The image, built on first use; `None` (the reason printed) when this machine cannot build it.
fn image(test: &str) -> Option<&'static Image> {
    static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
    let built = IMAGE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-image");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-deploy-image.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script).arg(&out);
        let started = Instant::now();
        let (lines, status) = run_bounded("build-deploy-image", cmd, BUILD);
        let output = lines.join("\n");
        match status.and_then(|s| s.code()) {
            Some(0) => {
                eprintln!(
                    "deploy image ready in {:.1} s:\n{output}",
                    started.elapsed().as_secs_f64()
                );
                let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
                let manifest = serde_json::from_str(&text).unwrap();
                Ok(Image { dir: out, manifest })
            }
            // What this machine lacks (root, a tool, the package lists, the mirror): skip.
            Some(3) => Err(output),
            _ => panic!("build-deploy-image.sh failed ({status:?}):\n{output}"),
        }
    });
    match built {
        Ok(image) => Some(image),
        Err(why) => {
            eprintln!("skipping {test}: the deploy image cannot be built here:\n{why}");
            None
        }
    }
}

/// One machine at a time: TCG is slow and the machine is shared.
fn one_machine_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `program args` to completion (bounded by `WAIT` unless `timeout` says otherwise) and
/// returns its output; panics when it fails.
fn run(program: &str, args: &[&str], timeout: Duration) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let (lines, status) = run_bounded(program, cmd, timeout);
    let output = lines.join("\n");
    assert!(
        status.is_some_and(|s| s.success()),
        "{program} {} ended with {status:?}:\n{output}",
        args.join(" ")
    );
    output
}

/// Runs a shell command line (for redirections); panics when it fails.
fn shell(script: &str, timeout: Duration) {
    run("sh", &["-c", script], timeout);
}

/// The manifest's value at `key`, which must be there.
fn field<'a>(manifest: &'a Value, key: &str) -> &'a Value {
    let value = &manifest[key];
    assert!(!value.is_null(), "no {key} in the manifest: {manifest:#}");
    value
}

/// Decompresses the image into `disk` after checking the manifest's size and SHA-256 of the
/// compressed file, and returns the raw size.
fn decompress(image: &Image, disk: &Path) -> u64 {
    let manifest = &image.manifest;
    assert_eq!(field(manifest, "format"), "raw.gz", "{manifest:#}");
    assert_eq!(field(manifest, "arch"), "amd64", "{manifest:#}");
    let entry = field(manifest, "image");
    let gz = image.dir.join(entry["file"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(&gz).unwrap().len(),
        entry["size"].as_u64().unwrap(),
        "{manifest:#}"
    );
    let sum = run("sha256sum", &[gz.to_str().unwrap()], WAIT * 4);
    assert_eq!(
        sum.split_whitespace().next(),
        entry["sha256"].as_str(),
        "{manifest:#}"
    );
    shell(
        &format!("gzip -dc '{}' >'{}'", gz.display(), disk.display()),
        WAIT * 10,
    );
    let raw = std::fs::metadata(disk).unwrap().len();
    assert_eq!(raw, field(manifest, "raw_size").as_u64().unwrap());
    raw
}

/// The start and size, in 512-byte sectors, of partition `number` of `disk` (`sfdisk --json`).
fn partition(disk: &Path, number: u64) -> (u64, u64) {
    let json = run("sfdisk", &["--json", disk.to_str().unwrap()], WAIT);
    let table: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(table["partitiontable"]["label"], "dos", "{table:#}");
    let part = &table["partitiontable"]["partitions"][usize::try_from(number - 1).unwrap()];
    let start = part["start"].as_u64();
    let size = part["size"].as_u64();
    assert!(start.is_some() && size.is_some(), "{table:#}");
    (start.unwrap(), size.unwrap())
}

/// Writes `files` (name, content) into `/etc/cloud/cloud.cfg.d/` of the root partition of
/// `disk` as the deploying agent does, without mounting: the partition is cut out of the disk,
/// changed with `debugfs -w` and written back in place. Checks the file system's label first.
fn write_cloud_config(image: &Image, disk: &Path, scratch: &Scratch, files: &[(&str, &str)]) {
    let number = field(&image.manifest, "root_partition").as_u64().unwrap();
    let label = field(&image.manifest, "root_label").as_str().unwrap();
    let (start, size) = partition(disk, number);
    let part = scratch.join("root.img");
    let (disk_s, part_s) = (disk.to_str().unwrap(), part.to_str().unwrap());
    run(
        "dd",
        &[
            &format!("if={disk_s}"),
            &format!("of={part_s}"),
            "bs=1M",
            "iflag=skip_bytes,count_bytes",
            &format!("skip={}", start * 512),
            &format!("count={}", size * 512),
            "conv=sparse",
            "status=none",
        ],
        WAIT * 4,
    );
    let stats = run("debugfs", &["-R", "stats", part_s], WAIT);
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("Filesystem volume name:") && l.ends_with(label)),
        "partition {number} is not labelled {label}:\n{stats}"
    );
    let mut commands = String::from("cd /etc/cloud/cloud.cfg.d\n");
    for (name, content) in files {
        let local = scratch.join(name);
        std::fs::write(&local, content).unwrap();
        commands.push_str(&format!("write {} {name}\n", local.display()));
    }
    let command_file = scratch.join("debugfs.cmd");
    std::fs::write(&command_file, commands).unwrap();
    run(
        "debugfs",
        &["-w", "-f", command_file.to_str().unwrap(), part_s],
        WAIT,
    );
    for (name, content) in files {
        let back = run(
            "debugfs",
            &["-R", &format!("cat /etc/cloud/cloud.cfg.d/{name}"), part_s],
            WAIT,
        );
        assert!(
            back.contains(content.trim_end()),
            "{name} reads back as:\n{back}"
        );
    }
    run(
        "dd",
        &[
            &format!("if={part_s}"),
            &format!("of={disk_s}"),
            "bs=1M",
            "oflag=seek_bytes",
            &format!("seek={}", start * 512),
            "conv=notrunc",
            "status=none",
        ],
        WAIT * 4,
    );
    std::fs::remove_file(&part).unwrap();
}

/// The cloud-init files the deploying agent writes: the datasource and the network document.
fn cloud_config() -> [(&'static str, String); 2] {
    let datasource = format!(
        "datasource_list: [ NoCloud, None ]\n\
         datasource:\n  NoCloud:\n    seedfrom: http://{GATEWAY4}:{SEED_PORT}/seed/\n"
    );
    let network = format!(
        "network:\n  version: 2\n  ethernets:\n    lan0:\n      match:\n        \
         macaddress: \"{MAC}\"\n      set-name: lan0\n      addresses:\n        \
         - {ADDRESS4}/24\n        - \"{ADDRESS6}/64\"\n      routes:\n        \
         - to: default\n          via: {GATEWAY4}\n        - to: \"::/0\"\n          \
         via: \"{GATEWAY6}\"\n      nameservers:\n        addresses: [{GATEWAY4}]\n"
    );
    [
        ("90-maas-rs-datasource.cfg", datasource),
        ("50-maas-rs-networking.cfg", network),
    ]
}

/// The seed: meta-data, user-data whose `runcmd` serves a report on port `REPORT_PORT`, empty
/// vendor-data.
fn write_seed(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("meta-data"),
        "instance-id: maas-rs-deploy-test-1\nlocal-hostname: deployed-1\n",
    )
    .unwrap();
    let user_data = format!(
        "#cloud-config\n\
         runcmd:\n\
         \x20 - mkdir -p /run/maas-report\n\
         \x20 - ip -4 route show default >/run/maas-report/route4\n\
         \x20 - ip -6 route show default >/run/maas-report/route6\n\
         \x20 - ip -o addr show >/run/maas-report/addresses\n\
         \x20 - hostname >/run/maas-report/hostname\n\
         \x20 - df -B1 --output=size / | tail -n 1 >/run/maas-report/root-size\n\
         \x20 - echo done >/run/maas-report/ready\n\
         \x20 - [systemd-run, --unit=maas-report, python3, -m, http.server, \"{REPORT_PORT}\", \
         --bind, \"::\", --directory, /run/maas-report]\n"
    );
    std::fs::write(dir.join("user-data"), user_data).unwrap();
    std::fs::write(dir.join("vendor-data"), "").unwrap();
}

/// A namespace with bridge `br0` (10.77.150.1/24, fd77:150::1/64) and `tap0`, and the seed
/// server on 10.77.150.1:8000 serving `SCRATCH/http/seed/`.
struct Lab {
    // Fields drop in order: processes before their namespace, files last.
    seed: Daemon,
    ns: Netns,
    scratch: Scratch,
    image: &'static Image,
}

impl Lab {
    fn new(test: &str, n: u8) -> Option<Self> {
        if !can_run(test, TOOLS) {
            return None;
        }
        let image = image(test)?;
        let scratch = Scratch::new(&format!("deploy-image-{test}"));
        let ns = Netns::new(&format!("maas-dimg{n}"));
        ns.bridge_with_tap("br0", &format!("{GATEWAY4}/24"), "tap0");
        ns.ip(&["-6", "addr", "add", &format!("{GATEWAY6}/64"), "dev", "br0"]);
        let http = scratch.join("http");
        write_seed(&http.join("seed"));
        let python = Path::new("/usr/bin/python3")
            .exists()
            .then(|| PathBuf::from("/usr/bin/python3"))
            .or_else(|| which("python3"))
            .unwrap();
        let mut cmd = ns.command(python, LIFETIME);
        cmd.args(["-u", "-m", "http.server", &SEED_PORT.to_string()])
            .args(["--bind", GATEWAY4, "--directory"])
            .arg(&http);
        let seed = Daemon::spawn("seed-server", cmd);
        assert!(
            seed.wait_line(WAIT, |l| l.starts_with("Serving HTTP"))
                .is_some(),
            "the seed server did not start\n{}",
            seed.transcript()
        );
        Some(Self {
            seed,
            ns,
            scratch,
            image,
        })
    }

    /// Runs `program args` in the namespace, bounded by `WAIT`; its output when it succeeds.
    fn probe(&self, program: &str, args: &[&str]) -> Option<String> {
        let mut cmd = self.ns.command(program, WAIT);
        cmd.args(args);
        let (lines, status) = run_bounded(program, cmd, WAIT);
        status
            .is_some_and(|s| s.success())
            .then(|| lines.join("\n"))
    }

    /// A file of the machine's report, fetched from `host` over HTTP.
    fn report(&self, host: &str, file: &str) -> Option<String> {
        self.probe(
            "curl",
            &[
                "-fsS",
                "--max-time",
                "5",
                &format!("http://{host}:{REPORT_PORT}/{file}"),
            ],
        )
    }

    /// The paths the seed server answered 200 to (from its request log).
    fn seed_requests(&self) -> Vec<String> {
        self.seed
            .lines()
            .iter()
            .filter(|l| l.ends_with("\" 200 -"))
            .filter_map(|l| l.split('"').nth(1))
            .filter_map(|request| request.split_whitespace().nth(1))
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn deployed_machine_takes_its_configuration() {
    let Some(lab) = Lab::new("deployed_machine_takes_its_configuration", 1) else {
        return;
    };
    let disk = lab.scratch.join("disk.raw");
    let raw = decompress(lab.image, &disk);
    let [datasource, network] = cloud_config();
    write_cloud_config(
        lab.image,
        &disk,
        &lab.scratch,
        &[(datasource.0, &datasource.1), (network.0, &network.1)],
    );
    let root_number = field(&lab.image.manifest, "root_partition")
        .as_u64()
        .unwrap();
    let (_, root_sectors) = partition(&disk, root_number);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(raw + EXTRA_DISK)
        .unwrap();

    let _one = one_machine_at_a_time();
    let serial = lab.scratch.join("serial.log");
    let mut cmd = lab.ns.command("qemu-system-x86_64", LIFETIME);
    cmd.args(["-accel", "tcg", "-m", "1024", "-machine", "pc"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .arg("-nic")
        .arg(format!(
            "tap,ifname=tap0,script=no,downscript=no,mac={MAC},model=virtio-net-pci"
        ));
    let started = Instant::now();
    let mut vm = Daemon::spawn("qemu", cmd);
    let context = |vm: &Daemon| {
        format!(
            "{}\n{}\n{}",
            vm.transcript(),
            lab.seed.transcript(),
            serial_text(&serial)
        )
    };

    // The report appears once user-data's runcmd ran, which is after the network came up.
    let deadline = started + BOOT;
    while lab.report(ADDRESS4, "ready").is_none() {
        assert!(
            vm.wait_exit(Duration::ZERO).is_none(),
            "the machine stopped\n{}",
            context(&vm)
        );
        assert!(
            Instant::now() < deadline,
            "no report from {ADDRESS4}:{REPORT_PORT} within {BOOT:?}\n{}",
            context(&vm)
        );
        thread::sleep(Duration::from_secs(3));
    }
    eprintln!(
        "booted to the report in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    for (address, family) in [(ADDRESS4, "-4"), (ADDRESS6, "-6")] {
        assert!(
            lab.probe("ping", &[family, "-c", "1", "-W", "5", address])
                .is_some(),
            "no answer to ping at {address}\n{}",
            context(&vm)
        );
    }
    let route4 = lab.report(ADDRESS4, "route4").unwrap();
    // The same TCP service over IPv6.
    let route6 = lab
        .report(&format!("[{ADDRESS6}]"), "route6")
        .unwrap_or_else(|| panic!("no report over IPv6\n{}", context(&vm)));
    assert!(
        route4.starts_with(&format!("default via {GATEWAY4} dev lan0")),
        "{route4}"
    );
    assert!(
        route6.starts_with(&format!("default via {GATEWAY6} dev lan0")),
        "{route6}"
    );
    let addresses = lab.report(ADDRESS4, "addresses").unwrap();
    for address in [format!("{ADDRESS4}/24"), format!("{ADDRESS6}/64")] {
        assert!(
            addresses
                .lines()
                .any(|l| l.contains(" lan0 ") && l.contains(&address)),
            "{address} is not on lan0:\n{addresses}"
        );
    }
    assert_eq!(lab.report(ADDRESS4, "hostname").unwrap(), "deployed-1");
    let root_size: u64 = lab
        .report(ADDRESS4, "root-size")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        root_size > root_sectors * 512,
        "the root file system ({root_size} bytes) did not grow past its partition's \
         {} bytes\n{}",
        root_sectors * 512,
        context(&vm)
    );

    let requests = lab.seed_requests();
    for file in ["meta-data", "user-data", "vendor-data"] {
        assert!(
            requests.iter().any(|p| p == &format!("/seed/{file}")),
            "cloud-init did not fetch {file}: {requests:?}\n{}",
            lab.seed.transcript()
        );
    }
    vm.stop("TERM", Duration::from_secs(5));
}

#[test]
fn uefi_firmware_boots_the_image() {
    const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
    let test = "uefi_firmware_boots_the_image";
    if !can_run(test, TOOLS) {
        return;
    }
    if !Path::new(OVMF_CODE).exists() || !Path::new(OVMF_VARS).exists() {
        eprintln!("skipping {test}: no UEFI firmware (ovmf)");
        return;
    }
    let Some(image) = image(test) else {
        return;
    };
    let firmware = field(&image.manifest, "firmware");
    assert!(
        firmware.as_array().unwrap().iter().any(|f| f == "uefi"),
        "{firmware}"
    );
    let scratch = Scratch::new(&format!("deploy-image-{test}"));
    let disk = scratch.join("disk.raw");
    decompress(image, &disk);
    let vars = scratch.join("ovmf-vars.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();

    let _one = one_machine_at_a_time();
    let serial = scratch.join("serial.log");
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &LIFETIME.as_secs().to_string()])
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "1024", "-machine", "q35"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .args(["-nic", "none"])
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()));
    let started = Instant::now();
    let mut vm = Daemon::spawn("qemu", cmd);
    // The prompt ends without a newline: look for it anywhere in the console.
    let deadline = started + BOOT_PLAIN;
    let mut console = serial_text(&serial);
    while !console.contains("login: ") && Instant::now() < deadline {
        assert!(
            vm.wait_exit(Duration::ZERO).is_none(),
            "the machine stopped\n{}\n{console}",
            vm.transcript()
        );
        thread::sleep(Duration::from_secs(2));
        console = serial_text(&serial);
    }
    assert!(
        console.contains("login: "),
        "no login prompt within {BOOT_PLAIN:?}\n{}\n{console}",
        vm.transcript()
    );
    eprintln!(
        "UEFI boot to the login prompt in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(console.contains("EFI stub"), "{console}");
    let uuid = field(&image.manifest, "root_uuid").as_str().unwrap();
    assert!(console.contains(&format!("root=UUID={uuid}")), "{console}");
    vm.stop("TERM", Duration::from_secs(5));
}
