//! QEMU firmware (iPXE on BIOS, edk2 on UEFI) booting from the `tftpd` example, with the
//! `dhcpd` example handing out addresses and boot files.

use super::*;

/// A namespace with bridge `br0` (`10.77.(100+n).1/24`) and `tap0`, `dhcpd` (the repo's DHCP
/// example) and `tftpd` on the bridge.
struct PxeLan {
    tftpd: Daemon,
    _dhcpd: Daemon,
    ns: Netns,
    scratch: Scratch,
}

impl PxeLan {
    fn new(n: u8, name: &str, dhcp_extra: &[&str]) -> Option<Self> {
        let dhcpd = example("dhcpd");
        if !dhcpd.exists() {
            eprintln!("skipping {name}: the dhcpd example is not built (feature dhcpd)");
            return None;
        }
        let scratch = Scratch::new(&format!("tftp-{name}"));
        std::fs::create_dir_all(scratch.join("root")).unwrap();
        let net = 100 + n;
        let ns = Netns::new(&format!("maas-tftp{n}-pxe"));
        ns.bridge_with_tap("br0", &format!("10.77.{net}.1/24"), "tap0");
        let mut cmd = ns.command(&dhcpd, LIFETIME);
        cmd.args([
            "--interface",
            "br0",
            "--subnet",
            &format!("10.77.{net}.0/24"),
            "--range",
            &format!("10.77.{net}.100-10.77.{net}.199"),
            "--gateway",
            &format!("10.77.{net}.1"),
        ])
        .args(dhcp_extra);
        let dhcp = Daemon::spawn("dhcpd", cmd);
        assert!(
            dhcp.wait_event(WAIT, |e| e["event"] == "listening")
                .is_some(),
            "dhcpd did not start\n{}",
            dhcp.transcript()
        );
        let mut cmd = ns.command(existing(example("tftpd")), LIFETIME);
        cmd.arg("--root")
            .arg(scratch.join("root"))
            .args(["--listen", &format!("10.77.{net}.1:69")]);
        let tftpd = Daemon::spawn("tftpd", cmd);
        assert!(
            tftpd
                .wait_event(WAIT, |e| e["event"] == "listening")
                .is_some(),
            "tftpd did not start\n{}",
            tftpd.transcript()
        );
        Some(Self {
            tftpd,
            _dhcpd: dhcp,
            ns,
            scratch,
        })
    }

    fn qemu(&self, serial: &Path, args: &[&str]) -> Daemon {
        let mut cmd = self.ns.command("qemu-system-x86_64", LIFETIME);
        cmd.args([
            "-accel", "tcg", "-display", "none", "-monitor", "none", "-serial",
        ])
        .arg(format!("file:{}", serial.display()))
        .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
        .args(args);
        Daemon::spawn("qemu", cmd)
    }

    /// Waits for `text` in the serial output.
    fn wait_serial(&self, serial: &Path, text: &str) -> bool {
        let deadline = std::time::Instant::now() + WAIT_FIRMWARE;
        while std::time::Instant::now() < deadline {
            if String::from_utf8_lossy(&std::fs::read(serial).unwrap_or_default()).contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    }

    fn completed(&self, file: &str) -> Option<Value> {
        self.tftpd.wait_event(WAIT_FIRMWARE, |e| {
            e["event"] == "completed" && e["file"] == file
        })
    }

    fn failure(&self, serial: &Path) -> String {
        format!(
            "--- tftpd ---\n{}\n--- serial ---\n{}",
            self.tftpd.transcript(),
            String::from_utf8_lossy(&std::fs::read(serial).unwrap_or_default())
        )
    }
}

const IPXE_SCRIPT: &str = "#!ipxe\necho BOOT-IPXE-SCRIPT-REACHED ${net0/mac} ${platform}\nimgfetch tftp://${next-server}/payload.bin && echo PAYLOAD-OK || echo PAYLOAD-FAIL\necho DONE-PXE-TEST\nsleep 30\n";

/// BIOS iPXE (QEMU's e1000 ROM) loads its boot script and a payload over TFTP from tftpd: the
/// DHCP server points iPXE's script URL at `tftp://`, and the script's output on the serial
/// console shows it ran.
#[test]
fn qemu_bios_ipxe_boots_from_tftpd() {
    if !can_run("qemu_bios_tftp", &["ip", "qemu-system-x86_64"]) {
        return;
    }
    if !Path::new("/usr/lib/ipxe/qemu/pxe-e1000.rom").exists() {
        eprintln!("skipping qemu_bios_tftp: no iPXE ROM for QEMU (ipxe-qemu)");
        return;
    }
    let Some(lan) = PxeLan::new(9, "qemu-bios", &["--http-boot", "tftp://10.77.109.1/"]) else {
        return;
    };
    std::fs::write(lan.scratch.join("root/ipxe.cfg"), IPXE_SCRIPT).unwrap();
    let payload = pseudo_random(300_000, 9);
    std::fs::write(lan.scratch.join("root/payload.bin"), &payload).unwrap();
    let serial = lan.scratch.join("serial");
    let _vm = lan.qemu(
        &serial,
        &[
            "-m",
            "256",
            "-machine",
            "pc,graphics=off",
            "-device",
            "e1000,netdev=n0,mac=52:54:00:77:6d:10",
            "-boot",
            "n",
        ],
    );
    assert!(
        lan.wait_serial(&serial, "DONE-PXE-TEST"),
        "iPXE did not run the script\n{}",
        lan.failure(&serial)
    );
    let text = String::from_utf8_lossy(&std::fs::read(&serial).unwrap()).into_owned();
    assert!(
        text.contains("BOOT-IPXE-SCRIPT-REACHED"),
        "{}",
        lan.failure(&serial)
    );
    assert!(text.contains("PAYLOAD-OK"), "{}", lan.failure(&serial));
    let script = lan.completed("ipxe.cfg").expect("no completed ipxe.cfg");
    assert_eq!(script["bytes"], IPXE_SCRIPT.len() as u64, "{script}");
    let e = lan
        .completed("payload.bin")
        .expect("no completed payload.bin");
    assert_eq!(e["bytes"], payload.len() as u64, "{e}");
    eprintln!("qemu_bios_tftp: {e}");
}

/// UEFI edk2 (OVMF, its own PXE) loads bootx64.efi from tftpd: first a tsize probe it aborts
/// with error 8, then the whole file; the file is iPXE's EFI build, whose banner on the serial
/// console shows the firmware ran what it loaded.
#[test]
fn qemu_uefi_edk2_boots_from_tftpd() {
    let code = Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd");
    let vars = Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd");
    let efi = Path::new("/usr/lib/ipxe/ipxe.efi");
    if !can_run("qemu_uefi_tftp", &["ip", "qemu-system-x86_64"]) {
        return;
    }
    if !code.exists() || !vars.exists() || !efi.exists() {
        eprintln!("skipping qemu_uefi_tftp: no OVMF firmware (ovmf) or ipxe.efi (ipxe)");
        return;
    }
    let Some(lan) = PxeLan::new(10, "qemu-uefi", &["--http-boot", "tftp://10.77.110.1/"]) else {
        return;
    };
    std::fs::copy(efi, lan.scratch.join("root/bootx64.efi")).unwrap();
    std::fs::write(lan.scratch.join("root/ipxe.cfg"), IPXE_SCRIPT).unwrap();
    std::fs::write(
        lan.scratch.join("root/payload.bin"),
        pseudo_random(100_000, 10),
    )
    .unwrap();
    let serial = lan.scratch.join("serial");
    let my_vars = lan.scratch.join("vars.fd");
    std::fs::copy(vars, &my_vars).unwrap();
    let _vm = lan.qemu(
        &serial,
        &[
            "-m",
            "512",
            "-machine",
            "q35,graphics=off",
            "-drive",
            &format!("if=pflash,format=raw,readonly=on,file={}", code.display()),
            "-drive",
            &format!("if=pflash,format=raw,file={}", my_vars.display()),
            "-device",
            "virtio-net-pci,netdev=n0,mac=52:54:00:77:6e:30,romfile=,bootindex=1",
        ],
    );
    let e = lan
        .completed("bootx64.efi")
        .unwrap_or_else(|| panic!("bootx64.efi not transferred\n{}", lan.failure(&serial)));
    let size = std::fs::metadata(efi).unwrap().len();
    assert_eq!(e["bytes"], size, "{e}");
    eprintln!("qemu_uefi_tftp: {e}");
    // The tsize probe edk2 aborts with error 8, before the transfer.
    let aborted = lan
        .tftpd
        .events()
        .into_iter()
        .find(|e| e["event"] == "aborted" && e["file"] == "bootx64.efi")
        .unwrap_or_else(|| panic!("no tsize probe from edk2\n{}", lan.failure(&serial)));
    assert_eq!(aborted["error_code"], 8, "{aborted}");
    assert_eq!(aborted["packets"], 0, "no data before ACK(0): {aborted}");
    assert!(
        lan.wait_serial(&serial, "iPXE"),
        "the loaded bootx64.efi did not run\n{}",
        lan.failure(&serial)
    );
}
